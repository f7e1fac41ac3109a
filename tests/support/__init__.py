"""Shared test support, loaded as plugins by tests/conftest.py."""
