"""Veix: payment and business infrastructure behind one GraphQL API."""

__version__ = "0.1.0"
