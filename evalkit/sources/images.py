"""Image folders (searched recursively) and zips of images.

Files are matched by extension as clean-fid does ({bmp, jpg, jpeg, pgm, png, ppm, tif, tiff,
webp, npy}, any case) and read in sorted order. Every image is converted with PIL's
`convert("RGB")`, again exactly as clean-fid does: grayscale is replicated, palette images are
expanded, and an alpha channel is dropped (not composited). The source records which modes it
met so the report can say so.

A source's fingerprint is a hash of its content (file names and bytes; for a zip, member names,
sizes and CRC-32s), which keys the feature cache. Hashing a large folder twice is avoided with a
memo keyed by the folder's listing (names, sizes, modification times), the way git's index
avoids re-reading unchanged files.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from harness_base.atomic import write_text_atomic
from harness_base.home import features_dir

IMAGE_EXTENSIONS = {"bmp", "jpg", "jpeg", "pgm", "png", "ppm", "tif", "tiff", "webp", "npy"}


def is_image_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower().lstrip(".") in IMAGE_EXTENSIONS


class DecodeError(Exception):
    pass


def decode_image(data: bytes, name: str) -> tuple[np.ndarray, str]:
    """Bytes of one file -> (uint8 RGB array (H, W, 3), the file's original PIL mode)."""
    if name.lower().endswith(".npy"):
        try:
            array = np.load(io.BytesIO(data), allow_pickle=False)
        except Exception as err:  # numpy raises several types for a bad file
            raise DecodeError(f"not a readable .npy array ({err})") from None
        if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3:
            raise DecodeError(f".npy image must be uint8 (H, W, 3), got {array.dtype} {array.shape}")
        return np.ascontiguousarray(array), "npy"
    try:
        with Image.open(io.BytesIO(data)) as img:
            mode = img.mode
            img.load()  # decode fully here so truncation is caught now, not later
            rgb = img.convert("RGB")
    except Exception as err:  # PIL raises OSError, SyntaxError, ValueError, DecompressionBombError...
        reason = str(err) or type(err).__name__
        raise DecodeError(reason) from None
    return np.asarray(rgb), mode


@dataclass
class ImageSource:
    """A folder or zip of images. `names` are paths relative to the folder (or zip members)."""
    kind: str                       # "folder" or "zip"
    path: Path
    names: list[str]
    ignored: list[str] = field(default_factory=list)   # files that are not images, by extension
    _zip: zipfile.ZipFile | None = field(default=None, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.names)

    def __getstate__(self):  # sent to DataLoader workers: each opens its own zip handle
        state = dict(self.__dict__)
        state["_zip"] = None
        return state

    def read_bytes(self, i: int) -> bytes:
        name = self.names[i]
        if self.kind == "zip":
            if self._zip is None:
                self._zip = zipfile.ZipFile(self.path)
            return self._zip.read(name)
        return (self.path / name).read_bytes()

    def load(self, i: int) -> tuple[np.ndarray, str]:
        return decode_image(self._read_for_decoding(i), self.names[i])

    def _read_for_decoding(self, i: int) -> bytes:
        """The file's bytes, or a DecodeError naming why it cannot be read (a broken or looping
        symbolic link, a damaged zip member): such files are reported like undecodable ones."""
        import zlib

        try:
            return self.read_bytes(i)
        except (zipfile.BadZipFile, zlib.error, EOFError) as err:
            raise DecodeError(f"damaged zip member ({err})") from None
        except OSError as err:
            raise DecodeError(unreadable_reason(self.path / self.names[i], err)) from None

    def describe(self) -> str:
        return f"{self.kind} {self.path} ({len(self.names)} images)"

    def fingerprint(self, progress: bool = False, remember: bool = True) -> str:
        """Hash of the content; `remember=False` neither reads nor writes the memo in the cache."""
        if self.kind == "zip":
            digest = hashlib.sha256(b"zip-v1")
            with zipfile.ZipFile(self.path) as zf:
                infos = {info.filename: info for info in zf.infolist()}
            for name in self.names:
                info = infos[name]
                digest.update(f"{name}\0{info.file_size}\0{info.CRC:08x}\n".encode())
            return digest.hexdigest()
        return _folder_fingerprint(self.path, self.names, progress, remember)


def unreadable_reason(path: Path, err: OSError) -> str:
    import errno

    if os.path.islink(path):
        if err.errno == errno.ELOOP:
            return "symbolic link that leads back to itself (a loop)"
        return f"broken symbolic link (points to {os.readlink(path)}, which does not exist)"
    return f"cannot be read ({err.strerror or err})"


def memoized_content_hash(listing: str, compute, remember: bool = True) -> str:
    """`compute()` (an expensive content hash), remembered under `listing` (a cheap hash of names,
    sizes and modification times) so unchanged files are not read again. With `remember=False`
    the cache folder is not touched at all (`--no-cache`)."""
    if not remember:
        return compute()
    memo_path = features_dir() / "fingerprints" / f"{listing}.json"
    if memo_path.is_file():
        try:
            return json.loads(memo_path.read_text())["content"]
        except (ValueError, KeyError):
            pass  # a damaged memo is simply recomputed
    content = compute()
    try:
        write_text_atomic(memo_path, json.dumps({"content": content}))
    except OSError as err:  # a read-only or full cache only costs re-hashing next time
        warnings.warn(f"could not remember the content hash in {memo_path.parent} ({err.strerror}); the files "
                      "will be hashed again next time", RuntimeWarning, stacklevel=2)
    return content


def stat_listing(paths: list[Path], names: list[str]) -> str:
    listing = hashlib.sha256(b"listing-v1")
    for path, name in zip(paths, names):
        try:
            st = path.stat()
        except OSError:  # a broken or looping link: its own entry stands for it
            st = path.lstat()
            name = f"{name}\0unreadable"
        listing.update(f"{name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return listing.hexdigest()


def _folder_fingerprint(root: Path, names: list[str], progress: bool, remember: bool = True) -> str:
    def compute() -> str:
        from tqdm import tqdm

        content = hashlib.sha256(b"folder-v1")
        for name in tqdm(names, desc=f"hashing {root.name}", unit="file",
                         disable=not progress or len(names) < 2000, leave=False):
            try:
                digest = hashlib.sha256((root / name).read_bytes()).digest()
            except OSError as err:  # reported as an unreadable file when features are extracted
                digest = f"unreadable {err.errno}".encode()
            content.update(name.encode() + b"\0" + digest)
        return content.hexdigest()

    return memoized_content_hash(stat_listing([root / n for n in names], names), compute, remember)


def list_folder(root: Path) -> tuple[list[str], list[str]]:
    """(image files, other files), relative to `root`, sorted. Sub-folders are searched, symbolic
    links to folders followed (as glob's `**` does for clean-fid), each real folder once, so a link
    loop ends; hidden files and folders are skipped."""
    images, others = [], []
    seen = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for fn in filenames:
            if fn.startswith("."):
                continue
            rel = os.path.relpath(os.path.join(dirpath, fn), root)
            (images if is_image_name(fn) else others).append(rel)
    return sorted(images), sorted(others)
