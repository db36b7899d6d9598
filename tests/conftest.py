"""Shared test fixtures. Test images are generated at test time, never committed.

System programs (Debian's chromium, PostgreSQL) are skipped with a reason when missing, but CI sets
GAN_HARNESS_REQUIRE_SYSTEM_TOOLS=1 so that a missing program fails instead.
"""
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from harness_base.home import harness_home

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]

REQUIRE_SYSTEM_TOOLS = os.environ.get("GAN_HARNESS_REQUIRE_SYSTEM_TOOLS") == "1"


@pytest.fixture(scope="session", autouse=True)
def decoded_datasets_in_a_temp_dir(tmp_path_factory):
    """Training sets loaded by the tests are decoded into a throwaway folder, not the user's cache
    (set in os.environ so that subprocesses, e.g. torchrun workers, use it too)."""
    previous = os.environ.get("GAN_HARNESS_DATASETS")
    os.environ["GAN_HARNESS_DATASETS"] = str(tmp_path_factory.mktemp("decoded-datasets"))
    yield
    if previous is None:
        del os.environ["GAN_HARNESS_DATASETS"]
    else:
        os.environ["GAN_HARNESS_DATASETS"] = previous


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


@pytest.fixture(scope="session")
def require_system_program():
    return require_program


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def chromium_path():
    """Debian's chromium (Playwright cannot download browsers here). Skips when missing, fails in CI."""
    path = require_program("chromium", "chromium-browser", "/usr/bin/chromium")
    pytest.importorskip("playwright.sync_api", reason="the playwright Python package is not installed")
    return path


@pytest.fixture
def browser(chromium_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


SERVE_ADMIN_PASSWORD = "test-admin-password"   # `study-app serve` refuses one under 12 characters


@pytest.fixture
def serve_study(tmp_path):
    """serve_study(study_dir, ...) -> base URL of `study-app serve` on a free port (several dirs: several
    studies on one server); servers stop after the test."""
    servers = []

    def start(*study_dirs):
        port = free_port()
        log_path = tmp_path / f"server-{port}.log"
        log = open(log_path, "w")
        env = dict(os.environ, STUDY_ADMIN_PASSWORD=SERVE_ADMIN_PASSWORD)
        server = subprocess.Popen([sys.executable, "-m", "study_app.cli", "serve", *map(str, study_dirs),
                                   "--port", str(port)],
                                  stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        servers.append((server, log))
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if urllib.request.urlopen(f"{base}/_stcore/health", timeout=2).status == 200:
                    return base
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"streamlit did not start:\n{log_path.read_text()}")
            time.sleep(0.3)

    yield start
    for server, log in servers:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
        log.close()


def consent_in_browser(page, base: str, path: str = "/") -> str:
    """Briefing and consent in a real page (at base + path, e.g. "/?study=NAME"); returns the participant
    token from the resume link. Either design: the instructions end with "Start the practice pairs" or
    "... images", or just "Start" without practice."""
    import re
    from urllib.parse import parse_qs, urlsplit

    from playwright.sync_api import expect

    page.set_default_timeout(60_000)   # a Streamlit rerun on a loaded 2-core CI machine once took > 20 s
    page.goto(base + path)
    page.get_by_role("button", name="Continue to consent").click()
    boxes = page.locator("[data-testid='stCheckbox'] label")
    expect(boxes.first).to_be_visible()
    for i in range(boxes.count()):
        boxes.nth(i).click()
        expect(page.get_by_role("checkbox").nth(i)).to_be_checked()
    page.get_by_role("button", name="I agree — start the study").click()
    page.get_by_role("button", name=re.compile(r"^Start( the practice (pairs|images))?")).click()
    page.wait_for_url(re.compile(r"[?&]p="))   # other parameters (study=NAME) may come first
    return parse_qs(urlsplit(page.url).query)["p"][0]


@pytest.fixture
def browser_consent():
    return consent_in_browser


# -- a harness home with the real weights and an empty cache (evalkit and harness tests use it) --

def _real_weights_dir() -> Path:
    return harness_home() / "weights"


@pytest.fixture(scope="session")
def real_weights_dir():
    """The weights installed by the README's install command (`evalkit weights install`)."""
    d = _real_weights_dir()
    if not (d / "inception-2015-12-05.pt").is_file():
        pytest.fail("Inception weights are not installed: run `evalkit weights install` (the README's install "
                    "command does) before the tests.")
    return d


@pytest.fixture(scope="session")
def session_home(tmp_path_factory, real_weights_dir):
    """A harness home for the whole session: the real weights, an empty feature cache."""
    home = tmp_path_factory.mktemp("harness-home")
    (home / "weights").symlink_to(real_weights_dir, target_is_directory=True)
    return home
