"""`study-app` command line and the Python API other packages call."""
import csv

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


def test_power_command_reproduces_the_thesis_figures(capsys):
    assert main(["power", "--accuracy", "0.55", "--trials-per-participant", "12", "--observed", "153", "312"]) == 0
    out = capsys.readouterr().out
    assert "786 independent trials = 85 participants x 12" in out
    assert "43.4%–54.7%" in out and "p = 0.777" in out and "to detect 55.0%: 0.42" in out


def test_bad_input_gets_a_clear_error(tmp_path, image_sets, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["init", str(tmp_path / "s"), "--real", str(empty), "--fake", str(image_sets["A"])]) == 2
    assert "no images found" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="--label"):
        main(["init", str(tmp_path / "s"), "--real", str(image_sets["real"]), "--fake", str(image_sets["A"]),
              "--label", "a", "--label", "b"])
    assert main(["stats", str(tmp_path / "nowhere")]) == 2
    assert "study-app init" in capsys.readouterr().err


def test_check_open_close_withdraw_and_serve_refuses_a_tampered_study(make_study, capsys):
    study_dir = make_study()
    study = Study(study_dir)
    assert main(["check", str(study_dir)]) == 0
    assert main(["close", str(study_dir)]) == 0 and not study.store.is_open()
    assert main(["open", str(study_dir)]) == 0 and study.store.is_open()
    state = study.new_participant()
    study.store.record_answer(state.token, 0, "left")
    assert main(["withdraw", str(study_dir), state.deletion_code]) == 0
    assert main(["withdraw", str(study_dir), state.deletion_code]) == 1
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
