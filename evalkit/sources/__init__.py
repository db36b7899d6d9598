"""Where images come from: folders (searched recursively) and zips of images (`images`), saved
statistics (`statsfile`), and a `gan` checkpoint or run dir sampled on the fly (`generator`).

`open_source` turns a command-line argument into one of them, or explains why it cannot.
"""
from __future__ import annotations

import os
import zipfile
from pathlib import Path

from ..errors import SourceError
from .generator import GenerationOptions, GeneratorSource, is_checkpoint, is_run_dir, open_run, run_snapshots
from .images import IMAGE_EXTENSIONS, DecodeError, ImageSource, list_folder, decode_image, is_image_name
from .statsfile import StatsSource, load_stats_file

Source = ImageSource | StatsSource | GeneratorSource


def open_source(spec: str | os.PathLike) -> ImageSource | StatsSource:
    """Resolve a command-line source argument to an image or statistics source, or explain why not."""
    path = Path(spec).expanduser()
    if not path.exists():
        raise SourceError(f"{path} does not exist. Give an image folder, a .zip of images, or an .npz "
                          "statistics file.")
    if path.is_dir():
        images, others = list_folder(path)
        if not images:
            if not others:
                raise SourceError(f"{path} is empty. Put the images (png, jpg, webp, ...) in it, in any "
                                  "sub-folders.")
            examples = ", ".join(others[:5])
            raise SourceError(
                f"No images found in {path} (looked recursively for "
                f"{', '.join(sorted(IMAGE_EXTENSIONS))}); it holds {len(others)} other file(s) such as "
                f"{examples}.")
        return ImageSource("folder", path.resolve(), images, others)
    suffix = path.suffix.lower()
    if suffix == ".zip":
        try:
            with zipfile.ZipFile(path) as zf:
                members = [n for n in zf.namelist() if not n.endswith("/")]
        except zipfile.BadZipFile as err:
            raise SourceError(f"{path} is not a readable zip file ({err}).") from None
        images = sorted({m for m in members if is_image_name(m)})
        others = sorted(m for m in members if not is_image_name(m))
        if not images:
            raise SourceError(f"{path} contains no images (members: {', '.join(others[:5]) or 'none'}).")
        return ImageSource("zip", path.resolve(), images, others)
    if suffix == ".npz":
        return load_stats_file(path)
    raise SourceError(f"{path} is a file with an unsupported type '{suffix}'. Give an image folder, a .zip "
                      "of images, or an .npz statistics file.")


def resolve_source(spec: str | os.PathLike | Source, gen: GenerationOptions | None = None) -> Source:
    """A checkpoint file or run dir (its latest snapshot) becomes a generator source sampled with
    `gen`; anything else goes to `open_source` (folder, zip, .npz). Sources pass through."""
    if isinstance(spec, (ImageSource, StatsSource, GeneratorSource)):
        return spec
    path = Path(spec)
    if is_run_dir(path):
        path = run_snapshots(open_run(path))[-1].path
    if is_checkpoint(path):
        return GeneratorSource(path, gen or GenerationOptions())
    return open_source(path)


__all__ = ["IMAGE_EXTENSIONS", "DecodeError", "GenerationOptions", "GeneratorSource", "ImageSource", "Source",
           "StatsSource", "decode_image", "is_checkpoint", "is_image_name", "is_run_dir", "load_stats_file",
           "open_source", "resolve_source"]
