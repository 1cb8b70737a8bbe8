"""The SQL store: one schema, SQLite by default and PostgreSQL for scale-out."""

from capstan.store.engine import Store, create_store

__all__ = ["Store", "create_store"]
