"""Refuse a held-out set that shares images with the training set.

A held-out image that is also a training image makes held-out FID reward memorisation exactly like
training-set FID, and gives C_T (Meehan et al. 2020) a "test" sample the generator may have copied,
so every train/held-out comparison silently loses its meaning. Images are compared by the SHA-256 of
their file bytes (the content hash `images.py` fingerprints folders with): identical files are
caught whatever their names; re-encoded or resized copies are not (that is the copy check's job).
"""
from __future__ import annotations

import hashlib
import os

from ..errors import SourceError
from .images import ImageSource


def content_hashes(source: ImageSource) -> dict[str, str]:
    """SHA-256 of each file's bytes -> the first name holding it."""
    hashes: dict[str, str] = {}
    for i, name in enumerate(source.names):
        try:
            digest = hashlib.sha256(source.read_bytes(i)).hexdigest()
        except OSError:  # unreadable files are reported when their features are extracted
            continue
        hashes.setdefault(digest, name)
    return hashes


def assert_disjoint(train, heldout) -> None:
    """Raise SourceError if the two image sets (paths or sources) share an identical image file.

    Statistics files (.npz) hold no images and are not checked."""
    from . import open_source

    train_src = train if isinstance(train, ImageSource) else open_source(train)
    heldout_src = heldout if isinstance(heldout, ImageSource) else open_source(heldout)
    if not (isinstance(train_src, ImageSource) and isinstance(heldout_src, ImageSource)):
        return
    if os.path.realpath(train_src.path) == os.path.realpath(heldout_src.path):
        raise SourceError(f"The held-out set {heldout_src.path} is the training set itself. Held-out images must "
                          "be real images the generator never trained on; give a separate folder to --heldout.")
    train_hashes = content_hashes(train_src)
    shared = [(name, train_hashes[h]) for h, name in content_hashes(heldout_src).items() if h in train_hashes]
    if shared:
        examples = ", ".join(f"{h} = {t}" for h, t in shared[:3])
        raise SourceError(
            f"The held-out set {heldout_src.path} and the training set {train_src.path} share {len(shared)} "
            f"identical image file(s) (same bytes, e.g. held-out {examples}). A held-out image that was trained on "
            "makes held-out FID and the C_T copying test reward memorisation, so the comparison would be "
            "meaningless. Remove the shared files from one of the sets, or give a held-out set drawn separately "
            "from the training data.")
