"""`study-app` command line and the Python API other packages call."""
import csv
import json
import os
import shlex
import subprocess
import sys

import pytest

from study_app import Study, analyse_study, format_report, init_study, serve_command
from study_app.cli import main
from study_app.simulate import write_synthetic_images


def test_init_stats_export_round_trip(tmp_path, image_sets, capsys):
    study_dir = tmp_path / "study"
    rc = main(["init", str(study_dir), "--real", str(image_sets["real"]), "--fake", str(image_sets["A"]),
               "--fake", str(image_sets["B"]), "--label", "psi0.5", "--label", "psi1.0", "--trials", "5",
               "--practice", "1", "--attention", "1", "--seed", "11", "--margin", "0.04"])
    out = capsys.readouterr().out
    assert rc == 0 and "16 fakes for 'psi0.5'" in out and "study-app serve" in out
    study = Study(study_dir)
    assert study.config.condition_labels() == ["psi0.5", "psi1.0"] and study.config.design.seed == 11
    assert study.config.analysis.equivalence_margin == 0.04
    for _ in range(3):
        state = study.new_participant()
        for trial in state.plan:
            study.store.record_answer(state.token, trial.index, trial.real_side)

    assert main(["stats", str(study_dir)]) == 0
    text = capsys.readouterr().out
    assert "psi0.5" in text and "VERDICT" in text and "Power plan" in text
    assert main(["stats", str(study_dir), "--json"]) == 0
    assert '"conditions"' in capsys.readouterr().out

    out_csv = tmp_path / "out" / "trials.csv"
    assert main(["export", str(study_dir), "--out", str(out_csv)]) == 0
    rows = list(csv.DictReader(out_csv.open()))
    codebook = [r["column"] for r in csv.DictReader((tmp_path / "out" / "trials_codebook.csv").open())]
    assert len(rows) == 3 * (10 + 1 + 1) and list(rows[0]) == codebook


def test_power_command_reproduces_the_small_studys_figures(capsys):
    assert main(["power", "--accuracy", "0.55", "--trials-per-participant", "12", "--observed", "153", "312"]) == 0
    out = capsys.readouterr().out
    assert "786 independent trials = 85 participants x 12" in out
    assert "43.4%–54.7%" in out and "p = 0.777" in out and "to detect 55.0%: 0.42" in out


def test_bad_input_gets_a_clear_error(tmp_path, image_sets, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["init", str(tmp_path / "s"), "--real", str(empty), "--fake", str(image_sets["A"])]) == 1
    assert "no images found" in capsys.readouterr().err
    assert main(["init", str(tmp_path / "s"), "--real", str(image_sets["real"]), "--fake", str(image_sets["A"]),
                 "--label", "a", "--label", "b"]) == 2                  # a usage error, found before any work
    assert "--label" in capsys.readouterr().err and not (tmp_path / "s").exists()
    assert main(["stats", str(tmp_path / "nowhere")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("study-app stats: error: ") and "study-app init" in err
    assert "Traceback" not in err and err.count("\n") == 1
    assert main(["--debug", "stats", str(tmp_path / "nowhere")]) == 1
    assert "Traceback" in capsys.readouterr().err


@pytest.fixture
def read_only_dir(tmp_path):
    """A folder no one can write in: a read-only tmpfs when running as root (root ignores file
    permissions), else a folder without write permission."""
    folder = tmp_path / "ro"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(folder)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a read-only tmpfs: {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=False)


def test_a_read_only_folder_gets_a_message_and_nothing_is_left(read_only_dir, image_sets, make_study, capsys):
    study_dir = read_only_dir / "st"
    assert main(["init", str(study_dir), "--real", str(image_sets["real"]), "--fake", str(image_sets["A"])]) == 1
    err = capsys.readouterr().err
    assert err.startswith("study-app init: error: cannot write ") and str(study_dir) in err
    assert "Choose a folder you can write to" in err and "Traceback" not in err and err.count("\n") == 1
    assert not study_dir.exists()
    assert main(["export", str(make_study()), "--out", str(read_only_dir / "out" / "trials.csv")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("study-app export: error: cannot write ") and "Traceback" not in err
    assert list(read_only_dir.iterdir()) == []


@pytest.mark.parametrize("argv, message", [
    (["power", "--alpha", "0.7"], "0.7 is out of range: a finite number in (0, 0.5) is needed"),
    (["power", "--accuracy", "nan"], "not a finite number"),
    (["power", "--trials-per-participant", "0"], "a whole number >= 1 is needed"),
    (["power", "--observed", "12", "-3"], "a whole number >= 0 is needed"),
    (["serve", "s", "--port", "70000"], "a whole number in [1, 65535] is needed"),
    (["init", "s", "--real", "r", "--fake", "f", "--trials", "0"], "a whole number >= 1 is needed"),
    (["init", "s", "--real", "r", "--fake", "f", "--margin", "0.5"], "in (0, 0.5) is needed"),
])
def test_out_of_range_options_are_usage_errors_before_any_work(argv, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2 and message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_observed_counts_are_checked_before_any_work(capsys):
    assert main(["power", "--observed", "13", "12"]) == 2
    assert "0 <= CORRECT <= TRIALS" in capsys.readouterr().err


def test_help_shows_defaults_and_version(capsys):
    for argv in (["--version"], ["power", "--help"], ["init", "--help"]):
        with pytest.raises(SystemExit) as stop:
            main(argv)
        assert stop.value.code == 0
    out = " ".join(capsys.readouterr().out.split())     # help lines wrap at the terminal's width
    assert out.startswith("study-app ")
    assert "target power (valid: finite number in (0, 1); default: 0.8)" in out and "default: 0.027)" in out
    assert "default: 20)" in out and "(default: a random one" in out


def test_a_database_error_is_one_paragraph(make_study, capsys):
    assert main(["stats", str(make_study()), "--db", "nosuchdriver://x/y"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("study-app stats: error: the response database cannot be used (NoSuchModuleError")
    assert "Check --db or storage.database_url" in err and err.count("\n") == 1


def test_every_command_that_prints_a_result_has_json(tmp_path, image_sets, capsys):
    study_dir = tmp_path / "study"
    assert main(["init", str(study_dir), "--real", str(image_sets["real"]), "--fake", str(image_sets["A"]),
                 "--label", "A", "--trials", "3", "--json"]) == 0
    created = json.loads(capsys.readouterr().out)
    assert created["study_dir"] == str(study_dir) and created["fake_images"] == {"A": 16}
    assert created["serve_command"].startswith("study-app serve ")
    study = Study(study_dir)
    state = study.new_participant()
    for trial in state.plan:
        study.store.record_answer(state.token, trial.index, trial.real_side)

    def run(*argv):
        code = main([*argv, "--json"])
        return code, json.loads(capsys.readouterr().out)

    assert run("check", str(study_dir)) == (0, {"images": len(study.manifest.images), "problems": [],
                                                "warnings": study.manifest.warnings, "database": study.store.counts(),
                                                "fingerprints": {study.manifest_fingerprint: 1},
                                                "manifest_fingerprint": study.manifest_fingerprint})
    out = tmp_path / "trials.csv"
    assert run("export", str(study_dir), "--out", str(out)) == (
        0, {"rows": len(state.plan), "csv": str(out), "codebook": str(tmp_path / "trials_codebook.csv")})
    assert run("close", str(study_dir)) == (0, {"open": False})
    assert run("open", str(study_dir)) == (0, {"open": True})
    code, plan = run("power", "--accuracy", "0.55", "--trials-per-participant", "12", "--observed", "153", "312")
    assert code == 0 and plan["plan"]["participants_to_detect"] == 85
    assert plan["observed"]["ci_exact"] == pytest.approx([0.434, 0.547], abs=5e-4)
    assert run("withdraw", str(study_dir), state.deletion_code) == (0, {"deleted": True, "status": "deleted"})
    assert run("withdraw", str(study_dir), state.deletion_code) == (0, {"deleted": False, "status": "already_withdrawn"})
    assert run("withdraw", str(study_dir), "AAAA-BBBB-CCCC") == (1, {"deleted": False, "status": "unknown"})


def test_the_command_line_loads_no_heavy_library_and_a_closed_pipe_is_quiet():
    # `study-app --help` stays fast because building the parser imports neither scipy, SQLAlchemy,
    # pandas nor Streamlit (study_app/__init__.py loads its names on first use).
    probe = ("import sys, study_app.cli as c; c.build_parser(); "
             "print(sorted(m for m in ('scipy', 'sqlalchemy', 'pandas', 'streamlit', 'numpy') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
    # The reader (`true`) is gone long before the command writes: it exits 141, silently.
    command = f"{shlex.quote(sys.executable)} -m study_app.cli power --json | true; echo ${{PIPESTATUS[0]}}"
    result = subprocess.run(["bash", "-c", command], capture_output=True, text=True)
    assert result.stdout == "141\n" and result.stderr == ""


def test_check_open_close_withdraw_and_serve_refuses_a_tampered_study(make_study, capsys):
    study_dir = make_study()
    study = Study(study_dir)
    assert main(["check", str(study_dir)]) == 0
    assert main(["close", str(study_dir)]) == 0 and not study.store.is_open()
    assert main(["open", str(study_dir)]) == 0 and study.store.is_open()
    state = study.new_participant()
    study.store.record_answer(state.token, 0, "left")
    assert main(["withdraw", str(study_dir), state.deletion_code]) == 0
    assert "deleted the participant's answers" in capsys.readouterr().out
    assert main(["withdraw", str(study_dir), state.deletion_code]) == 0       # used before: nothing left to delete
    assert "already used" in capsys.readouterr().out
    assert main(["withdraw", str(study_dir), "AAAA-BBBB-CCCC"]) == 1
    assert "no participant has ever had that deletion code" in capsys.readouterr().out
    assert study.store.trial_rows() == []
    image = study.images.path("real/img000.png")
    image.write_bytes(study.images.read("real/img001.png"))
    capsys.readouterr()
    assert main(["check", str(study_dir)]) == 1
    assert main(["serve", str(study_dir), "--port", "1"]) == 1      # refuses before starting Streamlit
    assert "changed since" in capsys.readouterr().err


def test_python_api_for_the_demo(tmp_path):
    real = write_synthetic_images(tmp_path / "r", 6, seed=1)
    fakes = [("gen-a", write_synthetic_images(tmp_path / "a", 6, seed=2)),
             ("gen-b", write_synthetic_images(tmp_path / "b", 6, seed=3))]
    path = init_study(tmp_path / "demo", real, fakes, trials_per_condition=3, title="Demo")
    assert path == tmp_path / "demo" and (path / "study.toml").is_file() and (path / "manifest.json").is_file()
    assert serve_command(path) == f"study-app serve {path} --port 8501"
    report = analyse_study(path)
    assert [c.condition for c in report.conditions] == ["gen-a", "gen-b"]
    assert "No analysable answers yet" in format_report(report)
    with pytest.raises(Exception, match="unknown study setting"):
        init_study(tmp_path / "demo2", real, fakes, trails=3)
    assert not (tmp_path / "demo2").exists()


def test_stats_json_is_strict_json(make_study, capsys):
    import json

    study_dir = make_study()
    assert main(["stats", str(study_dir), "--json"]) == 0     # no answers: many values undefined
    data = json.loads(capsys.readouterr().out)               # strict parse: no NaN tokens
    assert data["conditions"][0]["accuracy"] is None and data["power"]["trials_to_detect"] == 786
