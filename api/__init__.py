"""The adapters that face people: the FastAPI app, the operator CLI, and their composition root."""
