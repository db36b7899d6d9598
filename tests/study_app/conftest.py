"""Fixtures for study_app: image sets drawn at test time, study dirs, a throwaway PostgreSQL server."""
from __future__ import annotations

import os
import shutil
import time

import pytest

from study_app.simulate import find_postgres_programs, temporary_postgres
from study_app.simulate import write_synthetic_images as write_images

@pytest.fixture(autouse=True)
def fresh_server_guards(request):
    """The admin lockout and the new-participant cap live in the server process (st.cache_resource),
    which AppTest sessions of one test run share: each test starts with none."""
    if "make_study" not in request.fixturenames:
        yield
        return
    from study_app.views.common import participant_limiter, sign_in_guard

    sign_in_guard.clear()
    participant_limiter.clear()
    yield
    sign_in_guard.clear()
    participant_limiter.clear()


ADMIN_PASSWORD = "correct horse battery"


@pytest.fixture
def signed_in_admin(monkeypatch):
    """signed_in_admin(study_dir or [dirs], params=None) -> an AppSession on the admin page, signed in."""
    from study_app.simulate import AppSession

    def sign_in(study_dirs, params=None):
        monkeypatch.setenv("STUDY_ADMIN_PASSWORD", ADMIN_PASSWORD)
        session = AppSession(study_dirs, params)
        session.at.switch_page("views/admin.py")
        session.run()
        session.at.text_input(key="admin-password").input(ADMIN_PASSWORD)
        return session.click("admin-sign-in")

    return sign_in


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
    """make_study(**overrides) -> Study dir with conditions A and B (small defaults; fast answers allowed,
    and no response-time exclusion: AppTest answers in milliseconds)."""
    from study_app import init_study

    counter = iter(range(1000))

    def make(conditions=("A", "B"), **overrides):
        settings = dict(trials_per_condition=4, practice_trials=2, attention_checks=1, seed=7, min_response_ms=0,
                        exclude_median_rt_below_ms=0)
        settings.update(overrides)
        return init_study(tmp_path / f"study{next(counter)}", image_sets["real"],
                          [(c, image_sets[c]) for c in conditions], **settings)

    return make


# -- PostgreSQL ------------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def postgres_url(require_system_program):
    """A throwaway PostgreSQL server (unix socket only), stopped after the session.
    Skips when PostgreSQL is not installed (fails under GAN_HARNESS_REQUIRE_SYSTEM_TOOLS=1)."""
    programs = find_postgres_programs()
    initdb = require_system_program("initdb", programs[0] if programs else "/usr/lib/postgresql/15/bin/initdb")
    pg_ctl = require_system_program("pg_ctl", programs[1] if programs else "/usr/lib/postgresql/15/bin/pg_ctl")
    pytest.importorskip("psycopg", reason="psycopg (PostgreSQL driver) is not installed")
    if os.geteuid() == 0 and not shutil.which("runuser"):
        pytest.skip("running as root without runuser: cannot start PostgreSQL as another user")
    with temporary_postgres(initdb, pg_ctl) as url:
        yield url


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
