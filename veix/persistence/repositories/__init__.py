"""Repositories implementing the domain's ports over one SQLAlchemy connection."""
