"""Fixtures that start a real Distribution registry (filled in by the connectors work)."""
