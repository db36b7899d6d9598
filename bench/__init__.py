"""Benchmarks: `python -m bench NAME` (NAME: fid, metrics, gan, study, or all)."""
