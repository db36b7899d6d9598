"""Running one timed measurement in a subprocess of its own.

Peak memory is the child's VmHWM (/proc/self/status), the high-water mark of its own address space.
`getrusage(...).ru_maxrss` would be wrong here: Linux carries the maximum over `execve`, so a child
started from a parent that has imported torch reports the parent's ~700 MB even if it never
imports torch itself.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time

# Prepended to every child script: `peak_rss_mb()` is the child's own peak resident memory.
PRELUDE = r"""
def peak_rss_mb():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024
"""


def run_json(code: str, args: list, env: dict | None = None) -> dict:
    """Run `PRELUDE + code` with `args`; return the JSON object it prints last, plus its wall time."""
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", PRELUDE + code, *map(str, args)], capture_output=True, text=True,
                          env=env)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark subprocess failed:\n{proc.stderr[-3000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["process_s"] = wall
    return out
