"""The store adapter: SQLAlchemy 2.0 over SQLite (default) or PostgreSQL."""

from jpki.store.engine import create_store_engine, normalise_url
from jpki.store.uow import SqlUnitOfWork, UnitOfWorkFactory

__all__ = ["SqlUnitOfWork", "UnitOfWorkFactory", "create_store_engine", "normalise_url"]
