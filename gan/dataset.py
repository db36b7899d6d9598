"""Data set preparation (`gan dataset`, `gan avatars`) and loading a prepared folder for training.

Preparation: every readable image becomes RGB (transparency composited on white, EXIF rotation
applied), is made square by a centre crop (default) or by padding the short side with black
bars (`mode="pad"`, nothing cut off), and is resized to res x res with Lanczos. Images whose
short side (crop) or long side (pad) is below `min_size` (default: res, i.e. no upscaling) are
rejected as too small; files PIL cannot decode are rejected as unreadable; an image whose
decoded pixels equal an earlier one's is dropped as an exact duplicate; a zip member whose data
is damaged (bad CRC) or a file that cannot be read (a broken link) is rejected with the reason.
Output: `000000.png`, ... plus `dataset.json` listing what was kept (with its source) and rejected
(with the reason). The folder is built next to its destination and renamed into place when it is
complete, so a failure (a full disk, Ctrl-C, no usable image) leaves nothing behind.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from harness_base.atomic import TEMP_MARK, atomic_path, write_text_atomic
from harness_base.errors import HarnessError
from harness_base.home import DATASETS_ENV, datasets_dir

from .config import is_power_of_two

IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
DATASET_JSON = "dataset.json"


class DatasetError(HarnessError, ValueError):
    """Images that cannot become or serve as a training set; the message says which and what to do."""


def _iter_sources(src: Path):
    """(name, bytes or the OSError/BadZipFile that reading it raised) for every file under a folder
    (recursively, sorted) or inside a zip."""
    if src.is_file() and zipfile.is_zipfile(src):
        with zipfile.ZipFile(src) as zf:
            for info in sorted(zf.infolist(), key=lambda i: i.filename):
                if info.is_dir() or info.filename.startswith("__MACOSX/"):
                    continue
                try:
                    yield info.filename, zf.read(info)
                except (zipfile.BadZipFile, OSError) as exc:  # a damaged member: bad CRC, bad header
                    yield info.filename, exc
    elif src.is_dir():
        for path in sorted(p for p in src.rglob("*") if p.is_file() or p.is_symlink()):
            try:
                yield str(path.relative_to(src)), path.read_bytes()
            except OSError as exc:  # a broken or looping symbolic link, a file without read permission
                yield str(path.relative_to(src)), exc
    else:
        raise DatasetError(f"{src} is neither a folder nor a zip file of images")


@contextlib.contextmanager
def _building(out: Path):
    """A temporary folder next to `out`, renamed onto it when the block succeeds, removed otherwise."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}{TEMP_MARK}", dir=out.parent))
    try:
        yield tmp
        if out.is_dir():
            out.rmdir()  # empty (checked before the work began)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def to_rgb(img: Image.Image) -> Image.Image:
    img = ImageOps.exif_transpose(img)
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        canvas.alpha_composite(rgba)
        return canvas.convert("RGB")
    return img.convert("RGB")


def make_square(img: Image.Image, res: int, mode: str) -> Image.Image:
    w, h = img.size
    if mode == "crop":
        s = min(w, h)
        left, top = (w - s) // 2, (h - s) // 2
        img = img.crop((left, top, left + s, top + s))
    elif mode == "pad":
        s = max(w, h)
        canvas = Image.new("RGB", (s, s), (0, 0, 0))
        canvas.paste(img, ((s - w) // 2, (s - h) // 2))
        img = canvas
    else:
        raise DatasetError(f"mode must be 'crop' or 'pad', not {mode!r}")
    return img if img.size == (res, res) else img.resize((res, res), Image.LANCZOS)


def prepare_dataset(src: str | Path, out: str | Path, res: int, mode: str = "crop",
                    min_size: int | None = None, progress: bool = False) -> dict:
    """Build a training folder from arbitrary images; returns the dataset.json summary."""
    src, out = Path(src), Path(out)
    if not is_power_of_two(res) or res < 8:
        raise DatasetError(f"--res {res} is not a power of two >= 8 (use 16, 32, 64, 128, 256, ...)")
    if not src.exists():
        raise FileNotFoundError(f"source {src} does not exist")
    _require_empty_output(out)
    min_size = res if min_size is None else min_size
    with _building(out) as tmp:
        summary = _prepare_into(src, tmp, res, mode, min_size, progress)
        summary["source"] = str(src.resolve())
        if not summary["kept"]:
            raise DatasetError(f"no usable images in {src}: {len(summary['rejected'])} file(s) rejected"
                               + "".join(f"; {r['source']}: {r['reason']}" for r in summary["rejected"][:3])
                               + ". Nothing was written; add images and run the same command again.")
        write_text_atomic(tmp / DATASET_JSON, json.dumps(summary, indent=1))
    return summary


def _prepare_into(src: Path, out: Path, res: int, mode: str, min_size: int, progress: bool) -> dict:
    from tqdm import tqdm

    kept, rejected, duplicates, seen = [], [], [], {}
    for name, data in tqdm(_iter_sources(src), desc="dataset", unit="file", disable=not progress):
        if isinstance(data, BaseException):
            what = "damaged zip member" if isinstance(data, zipfile.BadZipFile) else "cannot be read"
            rejected.append({"source": name, "reason": f"{what} ({data})"})
            continue
        try:
            with Image.open(io.BytesIO(data)) as im:
                im.load()
                img = to_rgb(im)
        except Exception as exc:  # PIL raises many types for broken/non-image files
            rejected.append({"source": name, "reason": f"unreadable ({type(exc).__name__}: {exc})"})
            continue
        w, h = img.size
        size = min(w, h) if mode == "crop" else max(w, h)
        if size < min_size:
            rejected.append({"source": name, "reason": f"too small ({w}x{h}; needs {min_size} px)"})
            continue
        digest = hashlib.sha256(f"{w}x{h}".encode() + img.tobytes()).hexdigest()
        if digest in seen:
            duplicates.append({"source": name, "duplicate_of": seen[digest]})
            continue
        seen[digest] = name
        file = f"{len(kept):06d}.png"
        make_square(img, res, mode).save(out / file)
        kept.append({"file": file, "source": name})
    return {"resolution": res, "count": len(kept), "mode": mode, "min_size": min_size,
            "source": str(src), "kept": kept, "rejected": rejected, "duplicates": duplicates}


def write_avatar_dataset(out: str | Path, n: int, res: int = 64, seed: int = 0, progress: bool = False) -> dict:
    """The built-in demo set (gan/avatars.py) plus the same dataset.json as `prepare_dataset`."""
    from .avatars import write_avatars

    out = Path(out)
    if not is_power_of_two(res) or res < 8:
        raise DatasetError(f"--res {res} is not a power of two >= 8")
    _require_empty_output(out)
    with _building(out) as tmp:
        paths = write_avatars(tmp, n, seed=seed, res=res, progress=progress)
        summary = {"resolution": res, "count": len(paths), "mode": "avatars", "seed": seed,
                   "source": f"python-avatars seed {seed}",
                   "kept": [{"file": p.name, "source": f"avatar {i} (seed {seed})"} for i, p in enumerate(paths)],
                   "rejected": [], "duplicates": []}
        write_text_atomic(tmp / DATASET_JSON, json.dumps(summary, indent=1))
    return summary


def _require_empty_output(out: Path) -> None:
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"output folder {out} is not empty; choose a new folder so that "
                              "old and new images do not mix")


def find_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


@dataclass
class ImageData:
    """A training set as uint8 [N, 3, R, R], memory-mapped from the decoded-image cache: the operating
    system pages it in and shares it between the processes of a torchrun job, so a data set larger
    than RAM still trains (70k images at 256 px are 13.8 GB)."""
    images: torch.Tensor
    folder: Path
    cache_file: Path | None = None
    listing: str = ""     # sha256 of the images' relative names and sizes: the same data, wherever it lies

    @property
    def resolution(self) -> int:
        return self.images.shape[-1]

    def __len__(self) -> int:
        return self.images.shape[0]


CACHE_VERSION = 1


def _check_sizes(folder: Path, paths: list[Path], resolution: int | None, progress: bool) -> int:
    """Read only the image headers; all must share one square power-of-two size. Returns it."""
    from tqdm import tqdm

    by_size: dict[tuple[int, int], list[str]] = {}
    for p in tqdm(paths, desc="checking data", unit="img", disable=not progress):
        try:
            with Image.open(p) as im:
                size = im.size
        except (OSError, SyntaxError) as exc:
            raise DatasetError(f"{p} cannot be read as an image ({exc}); remove it or rebuild the data with "
                             f"`gan dataset {folder} OUT --res N`") from exc
        by_size.setdefault(size, []).append(str(p.relative_to(folder)))
    if len(by_size) > 1:
        listing = "; ".join(f"{w}x{h}: {len(names)} (e.g. {', '.join(names[:3])})"
                            for (w, h), names in sorted(by_size.items(), key=lambda kv: -len(kv[1])))
        raise DatasetError(f"{folder} mixes image sizes ({listing}). Prepare it with "
                         f"`gan dataset {folder} OUT --res N` to get one square power-of-two size.")
    (w, h), = by_size
    if w != h or not is_power_of_two(w):
        raise DatasetError(f"images in {folder} are {w}x{h}; training needs square power-of-two images. "
                         f"Prepare them with `gan dataset {folder} OUT --res N`.")
    if resolution is not None and w != resolution:
        raise DatasetError(f"images in {folder} are {w}x{w} but --res is {resolution}; use --res {w} "
                         f"or rebuild the data with `gan dataset SRC OUT --res {resolution}`.")
    return w


DATASET_CACHE_ENV = DATASETS_ENV


def dataset_cache_dir() -> Path:
    """GAN_HARNESS_DATASETS, else GAN_HARNESS_HOME/datasets: the decoded copy of a training set is as
    large as its pixels (N × 3 × R × R bytes), so point it at a large, fast local disk if need be."""
    return datasets_dir()


def _cache_file(folder: Path, paths: list[Path]) -> Path:
    """Keyed by the folder and every file's name, size and modification time: editing, adding or
    removing an image gives a new key, and the old cache of that folder is removed."""
    listing = hashlib.sha256(json.dumps(
        [CACHE_VERSION] + [[str(p.relative_to(folder)), p.stat().st_size, p.stat().st_mtime_ns] for p in paths]
    ).encode()).hexdigest()[:16]
    folder_key = hashlib.sha256(str(folder).encode()).hexdigest()[:16]
    return dataset_cache_dir() / f"{folder_key}-{listing}.npy"


def _require_data_folder(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise FileNotFoundError(f"data folder {folder} does not exist "
                                "(build one with `gan dataset SRC OUT --res N` or `gan avatars OUT`)")
    paths = find_images(folder.resolve())
    if not paths:
        raise DatasetError(f"no images in {folder} (looked for {', '.join(sorted(IMAGE_EXTENSIONS))})")
    return paths


def folder_resolution(folder: str | Path) -> int:
    """The one square power-of-two size of a training folder's images, from their headers alone."""
    folder = Path(folder)
    paths = _require_data_folder(folder)
    return _check_sizes(folder.resolve(), paths, None, progress=False)


def load_image_folder(folder: str | Path, resolution: int | None = None, progress: bool = False) -> ImageData:
    """Load every image under `folder`; all must be square RGB of one power-of-two size.

    The first load decodes the images once into a uint8 file under GAN_HARNESS_HOME/datasets
    (written atomically); later loads of the unchanged folder map that file without decoding."""
    from tqdm import tqdm

    folder = Path(folder)
    paths = _require_data_folder(folder)
    folder = folder.resolve()
    cache = _cache_file(folder, paths)
    if not cache.exists():
        res = _check_sizes(folder, paths, resolution, progress)
        with atomic_path(cache) as tmp:
            out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(paths), 3, res, res))
            for i, p in enumerate(tqdm(paths, desc="decoding data", unit="img", disable=not progress)):
                try:
                    with Image.open(p) as im:
                        out[i] = np.asarray(im.convert("RGB")).transpose(2, 0, 1)
                except OSError as exc:
                    raise DatasetError(f"{p} cannot be decoded ({exc}); remove it or rebuild the data with "
                                     f"`gan dataset {folder} OUT --res N`") from exc
            out.flush()
            del out
        for stale in cache.parent.glob(cache.name.split("-")[0] + "-*.npy"):
            if stale != cache:
                stale.unlink(missing_ok=True)
    # Copy-on-write: the tensor is writable for torch, the file never changes.
    array = np.load(cache, mmap_mode="c")
    if array.ndim != 4 or array.shape[:2] != (len(paths), 3) or array.dtype != np.uint8:
        raise DatasetError(f"the decoded-image cache {cache} does not match {folder}; delete it and retry")
    res = array.shape[-1]
    if resolution is not None and res != resolution:  # checked here too: the cache may predate --res
        raise DatasetError(f"images in {folder} are {res}x{res} but --res is {resolution}; use --res {res} "
                         f"or rebuild the data with `gan dataset SRC OUT --res {resolution}`.")
    return ImageData(images=torch.from_numpy(array), folder=folder, cache_file=cache, listing=_listing(folder, paths))


def _listing(folder: Path, paths: list[Path]) -> str:
    """Names and sizes only (not times): a copied or moved data set keeps its listing."""
    return hashlib.sha256(json.dumps([[p.relative_to(folder).as_posix(), p.stat().st_size] for p in paths])
                          .encode()).hexdigest()
