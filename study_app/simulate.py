"""Simulated participants, for the tests and `python -m bench study`.

- `AppSession` drives the real Streamlit app headlessly (streamlit.testing.v1.AppTest) the way a
  participant would: briefing, consent, instructions, practice with feedback, trials, debrief.
- `write_synthetic_images` draws small image sets, so no image set is ever committed;
- `simulated_rows` makes trial rows with a known accuracy and a known within-participant
  correlation (beta-binomial), to check that the statistics recover what was put in;
  `simulated_single_rows` does the same for the single-image design with known hit and
  false-alarm rates, `simulated_pairwise_rows` for the pairwise design with known Bradley–Terry
  strengths.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
from PIL import Image

from .study import STUDY_DIR_ENV

APP_PATH = Path(__file__).with_name("app.py")


def run_concurrently(fn: Callable, argument_tuples: Iterable[tuple]) -> list[str]:
    """Run fn(*args) for every tuple in its own thread, all at once; return the errors raised."""
    errors: list[str] = []
    lock = threading.Lock()

    def guarded(*args):
        try:
            fn(*args)
        except Exception as exc:  # collected and returned: a simulated participant must not vanish silently
            with lock:
                errors.append(f"{exc.__class__.__name__}: {exc}")

    threads = [threading.Thread(target=guarded, args=args) for args in argument_tuples]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def write_synthetic_images(folder: str | Path, n: int, *, seed: int, size=(32, 32), fmt: str = "PNG",
                           quality: int = 90) -> Path:
    """n small distinct images (smooth random blobs, so JPEG compresses them like photos)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    suffix = ".jpg" if fmt == "JPEG" else ".png"
    for i in range(n):
        coarse = rng.integers(0, 256, size=(4, 4, 3), dtype=np.uint8)
        img = Image.fromarray(coarse).resize(size, Image.BILINEAR)
        img.save(folder / f"img{i:03d}{suffix}", format=fmt, **({"quality": quality} if fmt == "JPEG" else {}))
    return folder


class AppSession:
    """One browser session of one participant, driven through AppTest (each instance = one session).
    `study_dir` may be a list of dirs: several studies served together, as `study-app serve A B`
    (the session then picks one with query_params={"study": NAME})."""

    def __init__(self, study_dir: str | Path | list[str | Path], query_params: dict[str, str] | None = None, *,
                 timeout: float = 60):
        import logging

        from streamlit.testing.v1 import AppTest

        # AppTest's own constructor touches session state outside a script run and logs a warning
        # about it each time; it is harmless and would drown the benchmark's output.
        logging.getLogger("streamlit.runtime.scriptrunner_utils.script_run_context").setLevel(logging.ERROR)
        dirs = study_dir if isinstance(study_dir, (list, tuple)) else [study_dir]
        # What `study-app serve` puts in STUDY_APP_DIR: one dir, or several joined with os.pathsep.
        self.study_dir = os.pathsep.join(str(Path(d).resolve()) for d in dirs)
        self.at = AppTest.from_file(str(APP_PATH), default_timeout=timeout)
        self.at.query_params.update(query_params or {})
        self.run_ended = time.monotonic()
        self.run()

    def run(self, widget_states=None) -> "AppSession":
        """Rerun the app (with explicit widget states: what a browser would send, see answer_timed)."""
        previous = os.environ.get(STUDY_DIR_ENV)
        os.environ[STUDY_DIR_ENV] = self.study_dir  # the app finds its study dir here, as under `serve`
        try:
            if widget_states is None:
                self.at.run()
            else:
                self.at._run(widget_states)
        finally:
            if previous is None:
                os.environ.pop(STUDY_DIR_ENV, None)
            else:
                os.environ[STUDY_DIR_ENV] = previous
        self.run_ended = time.monotonic()   # the page is "on screen" from here (answer_timed's clock)
        if self.at.exception:
            raise RuntimeError(f"the app raised: {[e.value for e in self.at.exception]}")
        return self

    # -- what is on screen ------------------------------------------------------------------------
    def button_keys(self) -> list[str]:
        return [b.key for b in self.at.button]

    @property
    def token(self) -> str | None:
        return self.at.query_params.get("p")

    def current_trial(self) -> int | None:
        """Index of the trial on screen (a pair or a single image), or None when none is shown."""
        data = self.timed_data()
        return data["trial"] if data is not None else None

    def answer_options(self) -> list[str]:
        """The answers the trial on screen offers: ["left", "right"] or ["real", "fake"]."""
        data = self.timed_data()
        return [c["value"] for c in data["choices"]] if data is not None else []

    def timed_component(self):
        """The trial component on screen (every presentation draws trials with it), or None."""
        from .views.component import COMPONENT_NAME

        return next((c for c in self.at.get("bidi_component") if c.proto.component_name == COMPONENT_NAME), None)

    def timed_data(self) -> dict | None:
        """The data the trial component on screen was given (trial, images, exposure_ms, ...), or None."""
        component = self.timed_component()
        return json.loads(component.proto.json) if component is not None else None

    def texts(self) -> str:
        """Every text on screen, the trial component's notice line included."""
        parts = [e.value for kind in ("title", "markdown", "info", "success", "error", "caption", "warning")
                 for e in getattr(self.at, kind)]
        data = self.timed_data()
        if data and data.get("notice"):
            parts.append(data["notice"])
        return "\n".join(str(p) for p in parts)

    # -- actions ----------------------------------------------------------------------------------
    def click(self, key: str) -> "AppSession":
        self.at.button(key=key).click()
        return self.run()

    def consent(self, agree: bool = True, tick_all: bool = True) -> "AppSession":
        self.click("to-consent")
        if tick_all:
            for box in self.at.checkbox:
                box.check()
        return self.click("agree" if agree else "decline")

    def answer(self, side: str) -> "AppSession":
        """Answer the trial on screen ("left"/"right", or "real"/"fake") as the component would."""
        return self.answer_timed(side)

    def answer_timed(self, answer: str, *, rt_ms: float | None = None, focus_losses: int = 0,
                     window: str = "1280x800", scale: float = 8.0, too_fast: int = 0) -> "AppSession":
        """Answer the trial component's trial the way its JavaScript would: a trigger value on the
        component's "answer" event, sent with the next run (AppTest cannot run the component's JS).
        rt_ms defaults to the time since the page was drawn (what a browser could measure, within
        the server's own time); the reported exposure is the component's own limit, or the response
        time without one."""
        from streamlit.components.v2.bidi_component.main import _make_trigger_id

        component, data = self.timed_component(), self.timed_data()
        if component is None:
            raise RuntimeError(f"no trial on screen (buttons: {self.button_keys()})")
        if rt_ms is None:
            rt_ms = (time.monotonic() - self.run_ended) * 1000
        exposure = min(data["exposure_ms"], rt_ms) if data["exposure_ms"] else rt_ms
        payload = {"trial": data["trial"], "answer": answer, "rt_ms": rt_ms, "exposure_ms": exposure,
                   "focus_losses": focus_losses, "window": window, "scale": scale, "too_fast": too_fast}
        states = self.at._tree.get_widget_states()
        trigger = states.widgets.add()
        trigger.id = _make_trigger_id(component.proto.id, "events")
        trigger.json_trigger_value = json.dumps([{"event": "answer", "value": payload}])
        return self.run(states)

    def step(self, choose: Callable[[int], str] | None = None) -> str | None:
        """Take the next action the screen asks for; returns what was done, None at the debrief.
        choose(trial index) gives the answer; by default the first button ("left" or "real")."""
        keys = self.button_keys()
        timed = self.timed_data()
        if timed is not None:
            self.answer_timed(choose(timed["trial"]) if choose else timed["choices"][0]["value"])
            return "answer"
        for key, action in (("start-trials", "start"), ("start-main", "start-main")):
            if key in keys:
                self.click(key)
                return action
        feedback = [k for k in keys if k and k.startswith("feedback-next-")]
        if feedback:
            self.click(feedback[0])
            return "feedback"
        return None

    def run_to_end(self, choose: Callable[[int], str] | None = None, max_steps: int = 10_000) -> int:
        """Answer until the debrief; returns the number of answers given."""
        answers = 0
        for _ in range(max_steps):
            action = self.step(choose)
            if action is None:
                return answers
            answers += action == "answer"
        raise RuntimeError("the participant never reached the debrief")


def simulated_rows(n_participants: int, trials_per_participant: int, accuracy: float, *, icc: float = 0.0,
                   condition: str = "A", seed: int = 0, first_participant: int = 1, attention_checks: int = 0,
                   attention_accuracy: float = 1.0) -> list[dict]:
    """Trial rows (the shape StudyStore.trial_rows returns) for simulated participants whose
    accuracies are Beta-distributed with mean `accuracy` and intra-class correlation `icc`."""
    rng = np.random.default_rng(seed)
    if icc > 0:
        strength = (1 - icc) / icc
        p = rng.beta(accuracy * strength, (1 - accuracy) * strength, size=n_participants)
    else:
        p = np.full(n_participants, accuracy)
    rows = []
    for i in range(n_participants):
        pid = first_participant + i
        kinds = ["main"] * trials_per_participant + ["attention"] * attention_checks
        for t, kind in enumerate(kinds):
            real_side = "left" if rng.random() < 0.5 else "right"
            correct = rng.random() < (p[i] if kind == "main" else attention_accuracy)
            chosen = real_side if correct else ("right" if real_side == "left" else "left")
            rows.append(dict(
                participant=pid, participant_status="completed", trial_index=t, trial_kind=kind,
                condition=condition if kind == "main" else "", real_image=f"real/{rng.integers(200)}.png",
                fake_image=f"{condition}/{rng.integers(200)}.png", real_side=real_side, chosen_side=chosen,
                correct=bool(correct), rt_ms=float(rng.gamma(4, 300))))
    return rows


def simulated_single_rows(n_participants: int, trials_per_participant: int, hit_rate: float,
                          false_alarm_rate: float, *, icc: float = 0.0, condition: str = "A", seed: int = 0,
                          first_participant: int = 1, attention_checks: int = 0,
                          attention_accuracy: float = 1.0) -> list[dict]:
    """Trial rows of the single-image design: half the main trials show a real image, judged real with
    probability hit_rate, half a generated one, judged real with probability false_alarm_rate. With
    icc > 0 each participant's two rates are Beta-distributed around those means (the mean over
    participants stays hit_rate and false_alarm_rate)."""
    rng = np.random.default_rng(seed)

    def rates(mean):
        if icc > 0:
            strength = (1 - icc) / icc
            return rng.beta(mean * strength, (1 - mean) * strength, size=n_participants)
        return np.full(n_participants, mean)

    h, f = rates(hit_rate), rates(false_alarm_rate)
    rows = []
    for i in range(n_participants):
        pid = first_participant + i
        truths = ["real"] * (trials_per_participant - trials_per_participant // 2) + ["fake"] * (trials_per_participant // 2)
        truths = [truths[j] for j in rng.permutation(len(truths))] + ["attention"] * attention_checks
        for t, truth in enumerate(truths):
            if truth == "attention":
                says_real = rng.random() >= attention_accuracy
                real, fake, kind, cond, truth = "", f"attention/{rng.integers(20)}.png", "attention", "", "fake"
            else:
                says_real = rng.random() < (h[i] if truth == "real" else f[i])
                real = f"real/{rng.integers(200)}.png" if truth == "real" else ""
                fake = "" if truth == "real" else f"{condition}/{rng.integers(200)}.png"
                kind, cond = "main", condition
            answer = "real" if says_real else "fake"
            rows.append(dict(
                participant=pid, participant_status="completed", trial_index=t, trial_kind=kind, condition=cond,
                real_image=real, fake_image=fake, real_side=truth, chosen_side=answer, correct=answer == truth,
                rt_ms=float(rng.gamma(4, 300))))
    return rows


def simulated_pairwise_rows(n_participants: int, comparisons_per_pair: int, strengths: dict[str, float], *,
                            seed: int = 0, side_bias: float = 0.0, sd_participant: float = 0.0,
                            first_participant: int = 1, images_per_condition: int = 30) -> list[dict]:
    """Pairwise-design trial rows: every participant compares every pair of conditions
    comparisons_per_pair times; the left image is chosen with probability
    expit(side_bias + u + s[left] − s[right]) (Bradley–Terry with a side bias, and a participant's
    own side bias u ~ N(0, sd_participant))."""
    import itertools

    rng = np.random.default_rng(seed)
    labels = list(strengths)
    rows = []
    for i in range(n_participants):
        pid = first_participant + i
        u = rng.normal(0, sd_participant) if sd_participant else 0.0
        t = 0
        for a, b in itertools.combinations(labels, 2):
            for k in range(comparisons_per_pair):
                left, right = (a, b) if k % 2 == 0 else (b, a)
                p_left = 1 / (1 + np.exp(-(side_bias + u + strengths[left] - strengths[right])))
                chose_left = bool(rng.random() < p_left)
                rows.append(dict(
                    participant=pid, participant_status="completed", trial_index=t, trial_kind="main", condition="",
                    real_image=f"{left}/{rng.integers(images_per_condition)}.png",
                    fake_image=f"{right}/{rng.integers(images_per_condition)}.png", real_side="",
                    chosen_side="left" if chose_left else "right", correct=False, rt_ms=float(rng.gamma(4, 300)),
                    left_condition=left, right_condition=right, study_fingerprint="x-y"))
                t += 1
    return rows


def find_postgres_programs() -> tuple[str, str] | None:
    """(initdb, pg_ctl) of the newest local PostgreSQL (Debian keeps them off PATH), or None."""
    for bindir in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (bindir / "initdb").exists() and (bindir / "pg_ctl").exists():
            return str(bindir / "initdb"), str(bindir / "pg_ctl")
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    return (initdb, pg_ctl) if initdb and pg_ctl else None


@contextlib.contextmanager
def temporary_postgres(initdb: str, pg_ctl: str, *, max_connections: int = 120) -> Iterator[str]:
    """A throwaway PostgreSQL server in a temp dir, reachable only by unix socket; yields its
    SQLAlchemy URL and deletes everything on exit. As root it runs as the `postgres` user
    (initdb refuses root)."""
    base = Path(tempfile.mkdtemp(prefix="study-pg-"))
    run_as: list[str] = []
    if os.geteuid() == 0:
        if not shutil.which("runuser"):
            raise RuntimeError("running as root without runuser: cannot start PostgreSQL as another user")
        shutil.chown(base, user="postgres")
        run_as = ["runuser", "-u", "postgres", "--"]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # the port names the unix socket file; nothing listens on TCP
    data = base / "data"
    started = False
    try:
        subprocess.run(run_as + [initdb, "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"],
                       check=True, capture_output=True)
        subprocess.run(run_as + [pg_ctl, "-D", str(data), "-l", str(base / "server.log"), "-w", "-t", "60", "-o",
                                 f"-p {port} -k {base} -c listen_addresses='' -c fsync=off "
                                 f"-c max_connections={max_connections}", "start"], check=True, capture_output=True)
        started = True
        yield f"postgresql+psycopg://postgres@/postgres?host={base}&port={port}"
    finally:
        if started:
            subprocess.run(run_as + [pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)
