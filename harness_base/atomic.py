"""Atomic file writes: write a uniquely named temporary file in the target's folder, fsync it, then
`os.replace` it onto the target. Readers see the old file or the new one, never half of one, and a
process killed mid-write leaves at most a stray `.NAME.tmp-*` file (`remove_stale_temp_files`).
"""
from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

TEMP_MARK = ".tmp-"


@contextmanager
def atomic_path(target: str | Path, suffix: str = ""):
    """Yield a temporary path next to `target`; when the block succeeds the file is fsynced and
    replaces `target` atomically, otherwise it is removed. `suffix` keeps an extension some
    writers insist on (numpy's savez appends `.npz` to any other name)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}{TEMP_MARK}", suffix=suffix, dir=target.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_bytes_atomic(target: str | Path, data: bytes) -> Path:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)
    return Path(target)


def write_text_atomic(target: str | Path, text: str, encoding: str = "utf-8") -> Path:
    return write_bytes_atomic(target, text.encode(encoding))


def remove_stale_temp_files(folder: str | Path) -> list[Path]:
    """Temp files left in `folder` by processes killed mid-write (never valid files); removed."""
    folder = Path(folder)
    stale = sorted(p for p in folder.glob(f".*{TEMP_MARK}*") if p.is_file()) if folder.is_dir() else []
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def check_writable_dir(folder: str | Path, what: str = "the output folder") -> Path:
    """Create `folder` if needed and prove that a file can be written in it, before any work is
    done; raises OSError (which the CLIs turn into a message naming the folder) if not."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    fd, probe = tempfile.mkstemp(prefix=f".write-check{TEMP_MARK}", dir=folder)
    os.close(fd)
    os.unlink(probe)
    return folder
