"""Shared test fixtures. Test images are generated at test time, never committed."""
import os
import shutil

import pytest

REQUIRE_SYSTEM_TOOLS = os.environ.get("GAN_HARNESS_REQUIRE_SYSTEM_TOOLS") == "1"


def require_program(name: str, *candidates: str) -> str:
    """Path of a system program, or skip (fail in CI, where .ci/run installs it)."""
    for cand in (name, *candidates):
        path = shutil.which(cand) or (cand if os.path.isabs(cand) and os.path.exists(cand) else None)
        if path:
            return path
    message = f"{name} is not installed (Debian package; .ci/run installs it)"
    if REQUIRE_SYSTEM_TOOLS:
        pytest.fail(message)
    pytest.skip(message)
