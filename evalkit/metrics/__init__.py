"""Metrics as small pure functions over feature arrays (no I/O, no models): `fid`, `kid`, `prdc`,
`bootstrap`, `copying`, on the numpy/torch back ends of `backend`. (Called, this package is the
all-metrics API; see `evalkit/__init__.py`.)"""
