"""Metrics as small pure functions over feature arrays (no I/O, no models)."""
