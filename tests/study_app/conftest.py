"""Fixtures for study_app: image sets drawn at test time, study dirs, a throwaway PostgreSQL server."""
from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from study_app.simulate import write_synthetic_images as write_images

_spec = importlib.util.spec_from_file_location("_tests_root_conftest", Path(__file__).parents[1] / "conftest.py")
_root = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_root)
require_program = _root.require_program


@pytest.fixture
def image_sets(tmp_path):
    """A real folder and two fake folders ('A', 'B') of 32x32 PNGs."""
    return {
        "real": write_images(tmp_path / "src" / "real", 24, seed=1),
        "A": write_images(tmp_path / "src" / "fakeA", 16, seed=2),
        "B": write_images(tmp_path / "src" / "fakeB", 16, seed=3),
    }


@pytest.fixture
def make_study(tmp_path, image_sets):
    """make_study(**overrides) -> Study dir with conditions A and B (small defaults; fast answers allowed)."""
    from study_app import init_study

    counter = iter(range(1000))

    def make(conditions=("A", "B"), **overrides):
        settings = dict(trials_per_condition=4, practice_trials=2, attention_checks=1, seed=7, min_response_ms=0)
        settings.update(overrides)
        return init_study(tmp_path / f"study{next(counter)}", image_sets["real"],
                          [(c, image_sets[c]) for c in conditions], **settings)

    return make


# -- PostgreSQL ------------------------------------------------------------------------------------------

def _pg_bin(name: str) -> str:
    candidates = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), reverse=True)
    return require_program(name, *(str(c) for c in candidates))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def postgres_url():
    """A throwaway PostgreSQL server in a temp dir (unix socket only), stopped after the session.
    Skips when PostgreSQL is not installed (fails under GAN_HARNESS_REQUIRE_SYSTEM_TOOLS=1)."""
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    pytest.importorskip("psycopg")
    base = Path(tempfile.mkdtemp(prefix="study-pg-"))
    run_as: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root
        user = "postgres" if shutil.which("runuser") else None
        if user is None:
            pytest.skip("running as root without runuser: cannot start PostgreSQL as another user")
        shutil.chown(base, user=user)
        run_as = ["runuser", "-u", user, "--"]
    data, port = base / "data", _free_port()
    subprocess.run(run_as + [initdb, "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"],
                   check=True, capture_output=True)
    subprocess.run(run_as + [pg_ctl, "-D", str(data), "-l", str(base / "server.log"), "-w", "-t", "60", "-o",
                             f"-p {port} -k {base} -c listen_addresses='' -c fsync=off -c max_connections=120",
                             "start"], check=True, capture_output=True)
    try:
        yield f"postgresql+psycopg://postgres@/postgres?host={base}&port={port}"
    finally:
        subprocess.run(run_as + [pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def postgres_db(postgres_url):
    """A fresh database on the session's server for one test."""
    import sqlalchemy as sa

    name = f"study_{int(time.time() * 1e6) % 10**12}"
    admin = sa.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = postgres_url.replace("/postgres?", f"/{name}?")
    yield url
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE "{name}" WITH (FORCE)')
    admin.dispose()


@pytest.fixture(scope="session")
def chromium_path():
    """Debian's chromium (Playwright cannot download browsers here). Skips when missing, fails in CI."""
    path = require_program("chromium", "chromium-browser", "/usr/bin/chromium")
    pytest.importorskip("playwright.sync_api", reason="the playwright Python package is not installed")
    return path
