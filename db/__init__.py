"""Persistence: SQLAlchemy models, engine/sessions, repository functions and migrations."""
