"""Evaluation of generative image models: FID matching clean-fid, KID, precision/recall,
density/coverage, copying checks, truncation sweeps and checkpoint reports."""
