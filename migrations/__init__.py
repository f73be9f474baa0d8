"""Alembic migrations of the jpki store (a package so that installed copies carry them)."""
