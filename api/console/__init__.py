"""The operator console (api.console.pages)."""
