"""``lameta.v1`` messages and services."""
