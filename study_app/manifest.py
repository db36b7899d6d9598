"""Image manifest: every image a study may show, with its content hash, size and format.

The app serves only images listed here, and only when the bytes on disk still have the recorded
sha256; the participant's browser receives exactly those bytes. `build_manifest` checks the sets
against each other: real and fake images that differ in resolution, format, colour mode or JPEG
quality let people answer from the file, not the content. When the sets differ in format or colour
mode, every image is re-encoded once, at init, as a lossless PNG in one colour mode (`normalise`),
so that real and generated images reach the browser in one format and MIME type; the manifest
records this (`Manifest.normalisation`, and each entry's `source_*` fields).
"""
from __future__ import annotations

import hashlib
import json
import shutil
import threading
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from harness_base.atomic import write_text_atomic
from harness_base.errors import HarnessError

from .config import MANIFEST_FILENAME

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
RESERVED_SET_NAMES = ("real", "attention")
MANIFEST_VERSION = 1
ATTENTION_TILES = 4  # a 4x4 tile shuffle of a real image: unmistakably not a real photo or drawing


class ManifestError(HarnessError, ValueError):
    """Images missing, unreadable, duplicated between sets, or changed since `study-app init`."""


@dataclass
class ImageEntry:
    id: str                 # "<set>/<path inside the source folder>", e.g. "real/0001.png", "psi0.7/seed12.png"
    role: str               # "real", "fake" or "attention" (the obvious fake of an attention check)
    condition: str          # the fake set's label; "" for real and attention images
    path: str               # relative to the study dir (copied) or absolute (referenced in place)
    sha256: str
    width: int
    height: int
    format: str             # PIL format name: PNG, JPEG, ...
    mode: str               # PIL colour mode: RGB, RGBA, L, ...
    bytes: int
    jpeg_quality: int | None = None  # estimated from the quantisation tables
    derived_from: str = ""  # attention images: id of the real image they scramble
    source_sha256: str = ""  # normalised images: the original file's sha256, format and colour mode
    source_format: str = ""
    source_mode: str = ""


@dataclass
class Manifest:
    images: list[ImageEntry]
    warnings: list[str] = field(default_factory=list)
    version: int = MANIFEST_VERSION
    normalisation: dict = field(default_factory=dict)   # {} or {"format", "mode", "reason", "alpha"}

    def __post_init__(self):
        self._by_id = {img.id: img for img in self.images}

    def get(self, image_id: str) -> ImageEntry:
        try:
            return self._by_id[image_id]
        except KeyError:
            raise ManifestError(f"image {image_id!r} is not in the manifest") from None

    def ids(self, role: str, condition: str = "") -> list[str]:
        return [img.id for img in self.images if img.role == role and (not condition or img.condition == condition)]

    def conditions(self) -> list[str]:
        return sorted({img.condition for img in self.images if img.role == "fake"})

    def fingerprint(self) -> str:
        blob = json.dumps(sorted((img.id, img.sha256) for img in self.images)).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def shown(self) -> list[ImageEntry]:
        """The real and generated images (not the attention checks' scrambled ones)."""
        return [img for img in self.images if img.role != "attention"]

    def to_json(self) -> str:
        return json.dumps({"manifest_version": self.version, "warnings": self.warnings,
                           "normalisation": self.normalisation,
                           "images": [asdict(img) for img in self.images]}, indent=1)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# IJG standard luminance table (quality 50); libjpeg scales it by quality.
_STD_LUMINANCE = np.array([
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99], dtype=float)


def estimate_jpeg_quality(img: Image.Image) -> int | None:
    """libjpeg-style quality (1-100) that best explains the luminance quantisation table."""
    tables = getattr(img, "quantization", None)
    if not tables or 0 not in tables:
        return None
    table = np.asarray(tables[0], dtype=float)
    scale = float(np.mean(table / _STD_LUMINANCE)) * 100  # libjpeg: scale = 5000/q (q<50) or 200-2q
    quality = 5000 / scale if scale > 100 else (200 - scale) / 2
    return int(round(min(100, max(1, quality))))


def _scan_folder(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise ManifestError(f"{folder}: not a folder")
    files = sorted(p for p in folder.rglob("*")
                   if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                   and not any(part.startswith(".") for part in p.relative_to(folder).parts))
    if not files:
        raise ManifestError(f"{folder}: no images found (looked for {' '.join(IMAGE_SUFFIXES)}, in subfolders too)")
    return files


def _describe(path: Path) -> dict:
    try:
        with Image.open(path) as img:
            img.load()  # decode fully: a truncated file must fail here, not in front of a participant
            return dict(width=img.width, height=img.height, format=img.format or path.suffix[1:].upper(),
                        mode=img.mode, jpeg_quality=estimate_jpeg_quality(img))
    except Exception as exc:  # PIL raises many types for broken files
        raise ManifestError(f"{path}: not a readable image ({exc})") from exc


def _common(values) -> tuple:
    counts = Counter(values)
    value, n = counts.most_common(1)[0]
    return value, n, len(counts)


def _compare_sets(entries: list[ImageEntry]) -> list[str]:
    """Warnings where a fake set differs from the reals in something other than content."""
    warnings = []
    sets: dict[str, list[ImageEntry]] = {}
    for e in entries:
        if e.role != "attention":
            sets.setdefault("real" if e.role == "real" else e.condition, []).append(e)
    summary = {}
    for name, items in sets.items():
        size, n, kinds = _common((e.width, e.height) for e in items)
        if kinds > 1:
            warnings.append(f"{name}: images have {kinds} different sizes (most are {size[0]}x{size[1]}); "
                            "mixed sizes are a cue people can use")
        summary[name] = dict(size=size, format=_common(e.format for e in items)[0],
                             mode=_common(e.mode for e in items)[0],
                             quality=[e.jpeg_quality for e in items if e.jpeg_quality is not None],
                             bpp=float(np.median([8 * e.bytes / (e.width * e.height) for e in items])))
    real = summary.pop("real")
    for name, fake in summary.items():
        if fake["size"] != real["size"]:
            warnings.append(f"resolution differs: real images are {real['size'][0]}x{real['size'][1]}, "
                            f"'{name}' fakes are {fake['size'][0]}x{fake['size'][1]}; resize one set so size "
                            "cannot give the answer away")
        if fake["format"] != real["format"]:
            warnings.append(f"format differs: real images are {real['format']}, '{name}' fakes are {fake['format']}; "
                            "compression artefacts may give the answer away (re-encode both sets the same way)")
        elif real["quality"] and fake["quality"]:
            q_real, q_fake = np.median(real["quality"]), np.median(fake["quality"])
            if abs(q_real - q_fake) >= 10:
                warnings.append(f"JPEG quality differs: real ≈ {q_real:.0f}, '{name}' ≈ {q_fake:.0f}; "
                                "re-encode both sets at one quality")
        if fake["mode"] != real["mode"]:
            warnings.append(f"colour mode differs: real images are {real['mode']}, '{name}' fakes are {fake['mode']}")
        ratio = fake["bpp"] / real["bpp"] if real["bpp"] else 1.0
        if fake["format"] == real["format"] and not 0.5 <= ratio <= 2.0:
            warnings.append(f"file size per pixel differs {ratio:.1f}x between '{name}' fakes and real images: "
                            "a sign of different compression or noise; check both sets were saved the same way")
    return warnings


NORMALISED_FORMAT = "PNG"
MIME_TYPES = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp", "BMP": "image/bmp", "GIF": "image/gif"}
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")


def _common_mode(modes: set[str]) -> str:
    """The one colour mode of normalised images: grey ("L") only when every image is grey, else RGB."""
    return "L" if modes <= {"L", "1"} else "RGB"


def _flatten(img: Image.Image, mode: str) -> Image.Image:
    """The image in `mode`, transparency composited over white (the page the images are shown on)."""
    if img.mode in _ALPHA_MODES or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(white, rgba)
    return img.convert(mode)


def _normalise(entries: list[ImageEntry], study_dir: Path, mode: str) -> None:
    """Re-encode every entry as a lossless PNG in `mode`, in place under STUDY_DIR/images, and point
    the entries at the new files (their original hash, format and mode are kept in source_*)."""
    taken: set[Path] = set()
    for e in entries:
        src = Path(e.path) if Path(e.path).is_absolute() else study_dir / e.path
        dest = (study_dir / "images" / e.id).with_suffix(".png")
        if dest in taken:   # a.jpg and a.png in one folder
            dest = study_dir / "images" / f"{e.id}.png"
        taken.add(dest)
        with Image.open(src) as img:
            out = _flatten(img, mode)
        dest.parent.mkdir(parents=True, exist_ok=True)
        out.save(dest, format=NORMALISED_FORMAT, optimize=False)
        if src != dest and src.is_relative_to(study_dir / "images"):
            src.unlink()   # the copy made a moment ago; never an original outside the study dir
        e.source_sha256, e.source_format, e.source_mode = e.sha256, e.format, e.mode
        e.path = dest.relative_to(study_dir).as_posix()
        e.sha256, e.bytes, e.format, e.mode, e.jpeg_quality = _sha256(dest), dest.stat().st_size, NORMALISED_FORMAT, \
            out.mode, None


def _save_like(img: Image.Image, dest: Path, image_format: str, mode: str) -> Path:
    """Save an attention-check image in the format and colour mode the study's images are served in,
    so that its MIME type is the same as theirs."""
    suffix = {"JPEG": ".jpg", "WEBP": ".webp", "BMP": ".bmp", "GIF": ".gif"}.get(image_format, ".png")
    dest = dest.with_suffix(suffix)
    options = {"JPEG": {"quality": 95}, "WEBP": {"lossless": True}}.get(image_format, {})
    img.convert(mode).save(dest, format=image_format if image_format in MIME_TYPES else "PNG", **options)
    return dest


def scale_warning(entries: list[ImageEntry], slot_px: int, image_filter: str) -> str | None:
    """A warning when the images are so small that a `slot_px` display enlarges them 3x or more:
    with the nearest-neighbour filter they look blocky, with a smooth one blurry."""
    if not entries:
        return None
    width, height = Counter((e.width, e.height) for e in entries).most_common(1)[0][0]
    scale = slot_px // max(width, height)
    if scale < 3:
        return None
    look = "blocky (nearest-neighbour filter)" if image_filter == "nearest" else "blurry (smooth filter)"
    return (f"the images are only {width}x{height} px: shown about {slot_px} px wide they are enlarged {scale}x and "
            f"look {look}, which limits what people can judge; use larger images (at least {slot_px // 2} px), or "
            "set design.image_width to show them smaller")


def scramble_image(img: Image.Image, seed: int, tiles: int = ATTENTION_TILES) -> Image.Image:
    """The image cut into tiles x tiles blocks and shuffled (no block stays in place)."""
    arr = np.asarray(img.convert("RGB"))
    h, w = (arr.shape[0] // tiles) * tiles, (arr.shape[1] // tiles) * tiles
    arr = arr[:h, :w]
    th, tw = h // tiles, w // tiles
    blocks = [arr[r * th:(r + 1) * th, c * tw:(c + 1) * tw] for r in range(tiles) for c in range(tiles)]
    rng = np.random.default_rng(seed)
    n = len(blocks)
    order = rng.permutation(n)
    while np.any(order == np.arange(n)):  # a derangement: no block stays where it was
        order = rng.permutation(n)
    flips = rng.integers(0, 2, size=n)
    out = np.zeros_like(arr)
    for dst, src in enumerate(order):
        block = blocks[src][::-1] if flips[dst] else blocks[src]  # some blocks upside down
        r, c = divmod(dst, tiles)
        out[r * th:(r + 1) * th, c * tw:(c + 1) * tw] = block
    return Image.fromarray(out).resize(img.size)


def build_manifest(study_dir: str | Path, real_dir: str | Path, fakes: list[tuple[str, str | Path]], *,
                   copy_images: bool = True, attention_images: int = 10, seed: int = 0,
                   progress=None) -> Manifest:
    """Scan, check and (by default) copy the image sets into STUDY_DIR/images; write nothing else."""
    study_dir = Path(study_dir)
    if not fakes:
        raise ManifestError("at least one fake-image folder is needed (--fake DIR)")
    labels = [label for label, _ in fakes]
    for label in labels:
        if label in RESERVED_SET_NAMES:
            raise ManifestError(f"'{label}' cannot be a condition label (reserved)")
    if len(set(labels)) != len(labels):
        raise ManifestError(f"condition labels must be unique, got {labels}")

    sources = [("real", "real", "", Path(real_dir))] + [("fake", label, label, Path(d)) for label, d in fakes]
    entries: list[ImageEntry] = []
    seen: dict[str, str] = {}
    warnings: list[str] = []
    for role, set_name, condition, folder in sources:
        files = _scan_folder(folder)
        for i, src in enumerate(files):
            rel = src.relative_to(folder).as_posix()
            digest = _sha256(src)
            image_id = f"{set_name}/{rel}"
            if digest in seen:
                other = seen[digest]
                if other.split("/")[0] != set_name and "real" in (set_name, other.split("/")[0]):
                    raise ManifestError(f"the same image is both real and fake: {other} and {image_id}")
                warnings.append(f"duplicate image content: {image_id} is the same as {other}")
            seen.setdefault(digest, image_id)
            if copy_images:
                dest = study_dir / "images" / set_name / rel
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, dest)
                stored = dest.relative_to(study_dir).as_posix()
            else:
                stored = str(src.resolve())
            entries.append(ImageEntry(id=image_id, role=role, condition=condition, path=stored, sha256=digest,
                                      bytes=src.stat().st_size, **_describe(src)))
            if progress:
                progress(f"{set_name}: {i + 1}/{len(files)}")
    warnings += _compare_sets(entries)

    normalisation: dict = {}
    formats, modes = {e.format for e in entries}, {e.mode for e in entries}
    if len(formats) > 1 or len(modes) > 1:
        mode = _common_mode(modes)
        differ = [f"formats {', '.join(sorted(formats))}"] * (len(formats) > 1) + \
                 [f"colour modes {', '.join(sorted(modes))}"] * (len(modes) > 1)
        _normalise(entries, study_dir, mode)
        normalisation = {"format": NORMALISED_FORMAT, "mode": mode, "reason": f"the image sets differ in {' and '.join(differ)}",
                         "alpha": "composited over white"}
        warnings.append(f"{normalisation['reason']}: every image was re-encoded as a lossless PNG ({mode}) so that "
                        "all reach the browser in one format (the originals' sha256 are kept in the manifest); "
                        "re-encoding cannot remove compression artefacts already in the pixels")
    served_format = _common((e.format for e in entries))[0]
    served_mode = _common((e.mode for e in entries))[0]

    reals = [e for e in entries if e.role == "real"]
    rng = np.random.default_rng(seed)
    for k, idx in enumerate(rng.permutation(len(reals))[:attention_images]):
        source = reals[int(idx)]
        path = Path(source.path)
        with Image.open(path if path.is_absolute() else study_dir / path) as img:
            scrambled = scramble_image(img, seed=seed * 1000 + k)
        dest = study_dir / "images" / "attention" / Path(source.id.split("/", 1)[1])
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest = _save_like(scrambled, dest, served_format, served_mode)
        entries.append(ImageEntry(id=f"attention/{dest.name}", role="attention", condition="",
                                  path=dest.relative_to(study_dir).as_posix(), sha256=_sha256(dest),
                                  bytes=dest.stat().st_size, derived_from=source.id, **_describe(dest)))
    return Manifest(images=entries, warnings=warnings, normalisation=normalisation)


def save_manifest(manifest: Manifest, study_dir: str | Path) -> Path:
    return write_text_atomic(Path(study_dir) / MANIFEST_FILENAME, manifest.to_json())


def load_manifest(study_dir: str | Path) -> Manifest:
    path = Path(study_dir) / MANIFEST_FILENAME
    if not path.is_file():
        raise ManifestError(f"{path} not found: create the study with `study-app init`")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        images = [ImageEntry(**item) for item in data["images"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise ManifestError(f"{path}: not a valid manifest ({exc})") from exc
    if data.get("manifest_version") != MANIFEST_VERSION:
        raise ManifestError(f"{path}: manifest_version {data.get('manifest_version')} is not supported")
    return Manifest(images=images, warnings=list(data.get("warnings", [])),
                    normalisation=dict(data.get("normalisation") or {}))


class ImageStore:
    """Reads images for the app: only manifest entries, only with the recorded hash. Thread-safe."""

    def __init__(self, study_dir: str | Path, manifest: Manifest):
        self.study_dir = Path(study_dir).resolve()
        self.manifest = manifest
        self._cache: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def path(self, image_id: str) -> Path:
        entry = self.manifest.get(image_id)
        path = Path(entry.path)
        if not path.is_absolute():
            path = (self.study_dir / path).resolve()
            if self.study_dir not in path.parents:
                raise ManifestError(f"image {image_id!r} points outside the study dir")
        return path

    def read(self, image_id: str) -> bytes:
        with self._lock:
            cached = self._cache.get(image_id)
        if cached is not None:
            return cached
        entry = self.manifest.get(image_id)
        path = self.path(image_id)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ManifestError(f"image {image_id!r} cannot be read from {path}: {exc}") from exc
        if hashlib.sha256(data).hexdigest() != entry.sha256:
            raise ManifestError(f"image {image_id!r} at {path} changed since `study-app init` (sha256 differs)")
        with self._lock:
            self._cache[image_id] = data
        return data

    def verify_all(self) -> list[str]:
        """Problems with any manifest image (missing or changed); empty when all are intact."""
        problems = []
        for entry in self.manifest.images:
            try:
                self.read(entry.id)
            except ManifestError as exc:
                problems.append(str(exc))
        return problems
