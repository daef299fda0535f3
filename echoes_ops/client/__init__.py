"""Connections to Redis and PostgreSQL, and the translation of their errors."""
