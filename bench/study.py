"""`python -m bench study`: simulated concurrent participants answering a study.

Four rows, each ending in a database check that every planned answer is stored exactly once:
- storage-layer threads on SQLite (WAL): one thread per participant, every fifth answer sent twice
  (a double click) and every seventh followed by a stale answer to the previous trial; once as a
  burst (no pause between answers: a stress test) and once paced like people (random pauses);
- the same on PostgreSQL, when a local server can be started (Debian's `postgresql`);
- AppTest sessions: each participant drives the real Streamlit app (consent, practice, trials),
  split across worker processes that write one SQLite file at once; now and then a second tab on
  the same link answers a pair that the first tab already answered.
Latency is per `record_answer` call (storage rows) or per answer click including the app's rerun
(AppTest row). Exit status 1 if anything was lost or duplicated.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import random
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np


def _make_study(root: Path, trials_per_condition: int, practice: int, attention: int) -> Path:
    from study_app import init_study
    from study_app.simulate import write_synthetic_images

    real = write_synthetic_images(root / "src" / "real", 60, seed=1)
    fakes = [(label, write_synthetic_images(root / "src" / label, 40, seed=2 + i)) for i, label in enumerate(("A", "B"))]
    return init_study(root / "study", real, fakes, trials_per_condition=trials_per_condition, practice_trials=practice,
                      attention_checks=attention, seed=1, min_response_ms=0, exclude_median_rt_below_ms=0)


def _tally(store, expected: int) -> dict:
    rows = store.trial_rows()
    unique = len({(r["participant"], r["trial_index"]) for r in rows})
    return {"expected": expected, "written": len(rows), "lost": expected - unique, "duplicated": len(rows) - unique}


def storage_threads(study_dir: Path, participants: int, db_url: str | None = None, think_s: float = 0.0) -> dict:
    """One thread per participant answering through StudyStore, with double and stale submits;
    think_s > 0 pauses a random 0..think_s before each answer (people are not machines)."""
    from study_app import Study
    from study_app.simulate import run_concurrently

    study = Study(study_dir, db_url)
    states = [study.new_participant() for _ in range(participants)]
    latencies: list[float] = []
    refused = [0]
    lock = threading.Lock()
    start = threading.Barrier(participants)

    def participant(state, seed):
        rng = random.Random(seed)
        local, local_refused = [], 0
        start.wait()
        try:
            for trial in state.plan:
                if think_s:
                    time.sleep(rng.uniform(0, think_s))
                side = rng.choice(("left", "right"))
                t0 = time.perf_counter()
                outcome = study.store.record_answer(state.token, trial.index, side, rt_ms=rng.gauss(1200, 300))
                local.append(time.perf_counter() - t0)
                if outcome.status != "recorded":
                    raise RuntimeError(f"answer {trial.index} of participant {state.id} was not recorded: {outcome}")
                if trial.index % 5 == 0:      # double click
                    local_refused += study.store.record_answer(state.token, trial.index, side).status == "duplicate"
                if trial.index % 7 == 3:      # stale tab answering the previous pair
                    local_refused += study.store.record_answer(state.token, trial.index - 1, "left").status == "duplicate"
        finally:
            with lock:
                latencies.extend(local)
                refused[0] += local_refused

    t0 = time.perf_counter()
    errors = run_concurrently(participant, [(s, i) for i, s in enumerate(states)])
    wall = time.perf_counter() - t0
    result = _tally(study.store, sum(len(s.plan) for s in states))
    study.store.dispose()
    return dict(result, participants=participants, refused=refused[0], errors=errors, latencies=latencies, wall=wall)


def _app_worker(args) -> dict:
    """Worker process: drive its participants' AppTest sessions round-robin, one action each per round."""
    study_dir, n_participants, seed = args
    from study_app import Study
    from study_app.simulate import AppSession

    rng = random.Random(seed)
    study = Study(study_dir)
    sessions = [AppSession(study_dir).consent() for _ in range(n_participants)]
    plans = {s.token: study.store.get_participant(s.token).plan for s in sessions}
    latencies, refused, errors = [], 0, []
    active = list(sessions)
    while active:
        for session in list(active):
            try:
                index = session.current_trial()
                if index is None:
                    if session.step(lambda i: "left") is None:
                        active.remove(session)
                    continue
                plan = plans[session.token]
                side = plan[index].real_side if rng.random() < 0.7 else rng.choice(("left", "right"))
                # Now and then a second tab on the same link shows this pair too, and answers it late.
                stale_tab = AppSession(study_dir, {"p": session.token}) if rng.random() < 0.1 else None
                t0 = time.perf_counter()
                session.answer(side)
                latencies.append(time.perf_counter() - t0)
                if stale_tab is not None and stale_tab.current_trial() == index:
                    stale_tab.answer("left" if side == "right" else "right")
                    refused += "already answered" in stale_tab.texts()
            except Exception as exc:  # counted, reported, never hidden
                errors.append(f"{exc.__class__.__name__}: {exc}")
                active.remove(session)
    study.store.dispose()
    return {"latencies": latencies, "refused": refused, "errors": errors, "tokens": list(plans),
            "expected": sum(len(p) for p in plans.values())}


def app_sessions(study_dir: Path, participants: int, workers: int) -> dict:
    from study_app import Study

    shares = [participants // workers + (i < participants % workers) for i in range(workers)]
    t0 = time.perf_counter()
    with mp.get_context("spawn").Pool(workers) as pool:
        parts = pool.map(_app_worker, [(str(study_dir), n, i) for i, n in enumerate(shares) if n])
    wall = time.perf_counter() - t0
    study = Study(study_dir)
    result = _tally(study.store, sum(p["expected"] for p in parts))
    study.store.dispose()
    return dict(result, participants=participants, refused=sum(p["refused"] for p in parts),
                errors=[e for p in parts for e in p["errors"]], latencies=[x for p in parts for x in p["latencies"]],
                wall=wall)


def _row(name: str, r: dict) -> str:
    lat = np.asarray(r["latencies"]) * 1000
    p50, p95 = (np.percentile(lat, 50), np.percentile(lat, 95)) if lat.size else (float("nan"),) * 2
    return (f"{name:<38} {r['participants']:>6} {r['expected']:>8} {r['written']:>8} {r['lost']:>5} {r['duplicated']:>6} "
            f"{r['refused']:>8} {p50:>7.1f} {p95:>7.1f} {r['written'] / r['wall']:>9.0f}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench study", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--participants", type=int, default=50)
    parser.add_argument("--trials-per-condition", type=int, default=10, help="storage rows (2 conditions)")
    parser.add_argument("--app-trials-per-condition", type=int, default=4, help="AppTest row (2 conditions)")
    parser.add_argument("--workers", type=int, default=2, help="processes for the AppTest sessions")
    parser.add_argument("--think-ms", type=int, default=200, help="pause before each answer in the paced row")
    parser.add_argument("--skip-postgres", action="store_true")
    parser.add_argument("--skip-app", action="store_true")
    args = parser.parse_args(argv)

    from study_app.simulate import find_postgres_programs, temporary_postgres

    results: list[tuple[str, dict]] = []
    with tempfile.TemporaryDirectory(prefix="bench-study-") as tmp:
        tmp = Path(tmp)
        print(f"[study] {args.participants} participants x {2 * args.trials_per_condition} pairs + 2 practice + "
              "2 attention checks, storage threads on SQLite ...", flush=True)
        study_dir = _make_study(tmp / "sqlite", args.trials_per_condition, 2, 2)
        results.append(("storage threads, SQLite, burst", storage_threads(study_dir, args.participants)))
        study_dir = _make_study(tmp / "sqlite-paced", args.trials_per_condition, 2, 2)
        results.append((f"storage threads, SQLite, think≤{args.think_ms}ms",
                        storage_threads(study_dir, args.participants, think_s=args.think_ms / 1000)))

        programs = None if args.skip_postgres else find_postgres_programs()
        if programs:
            print("[study] the same on a throwaway PostgreSQL server ...", flush=True)
            try:
                with temporary_postgres(*programs) as url:
                    study_dir = _make_study(tmp / "pg", args.trials_per_condition, 2, 2)
                    results.append(("storage threads, PostgreSQL, burst",
                                    storage_threads(study_dir, args.participants, url)))
            except Exception as exc:  # a missing driver or a server that will not start: say so, go on
                print(f"[study] PostgreSQL row skipped: {exc.__class__.__name__}: {exc}", flush=True)
        elif not args.skip_postgres:
            print("[study] PostgreSQL row skipped: no local PostgreSQL (apt-get install postgresql)", flush=True)

        if not args.skip_app:
            print(f"[study] {args.participants} AppTest sessions x {2 * args.app_trials_per_condition} pairs + 2 practice "
                  f"+ 1 attention check in {args.workers} processes on one SQLite file ...", flush=True)
            study_dir = _make_study(tmp / "app", args.app_trials_per_condition, 2, 1)
            results.append((f"AppTest sessions ({args.workers} procs), SQLite", app_sessions(study_dir, args.participants,
                                                                                           args.workers)))

    print()
    print(f"{'path':<38} {'people':>6} {'expected':>8} {'written':>8} {'lost':>5} {'dupl.':>6} "
          f"{'refused':>8} {'p50 ms':>7} {'p95 ms':>7} {'answers/s':>9}")
    for name, r in results:
        print(_row(name, r))
    print("\nexpected/written: answers planned/stored; lost: planned answers missing; dupl.: extra rows for one "
          "trial;\nrefused: repeated or stale submits answered 'duplicate' (nothing written); latency per answer "
          "(storage: record_answer; AppTest: click + app rerun).")
    failed = False
    for name, r in results:
        for error in r["errors"][:5]:
            print(f"  error in {name}: {error}")
        failed |= bool(r["lost"] or r["duplicated"] or r["errors"])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
