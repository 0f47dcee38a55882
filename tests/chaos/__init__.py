"""Chaos scenarios (see conftest.py)."""
