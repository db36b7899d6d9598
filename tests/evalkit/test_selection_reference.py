"""Selection vs report seeds, the separate training / reference / held-out sets of `evalkit report`, and
the refusal of a held-out set that shares images with the training data."""
import shutil

import pytest
import torch

from evalkit import cli
from evalkit.errors import SourceError
from evalkit.sources import GenerationOptions, GeneratorSource
from evalkit.sources.generator import REPORT_SEED_OFFSET, check_disjoint_seeds, report_options
from evalkit.sources.overlap import assert_disjoint

CPU = {"device": torch.device("cpu"), "progress": False}


def test_report_seeds_are_a_fresh_disjoint_range():
    gen = GenerationOptions(num_gen=300, seed=7)
    report = report_options(gen)
    assert gen.seed_range() == [7, 306] and report.seed_range() == [REPORT_SEED_OFFSET + 7, REPORT_SEED_OFFSET + 306]
    assert set(gen.seeds).isdisjoint(report.seeds) and report.num_gen == 300
    with pytest.raises(SourceError, match="selection seeds 0..999999 and the report seeds .* overlap"):
        check_disjoint_seeds(GenerationOptions(num_gen=REPORT_SEED_OFFSET), GenerationOptions(seed=999_000))


def test_random_noise_is_the_default_and_reproducible_per_seed(tiny_runs):
    from gan.api import list_snapshots

    ckpt = list_snapshots(tiny_runs["vit"])[-1].path
    source = GeneratorSource(ckpt, GenerationOptions(num_gen=4))
    assert source.options.noise_mode == "random"
    first = next(iter(source.batches(torch.device("cpu"), batch_size=4)))
    torch.manual_seed(123)   # the caller's RNG state neither matters nor is consumed
    state = torch.random.get_rng_state()
    again = next(iter(source.batches(torch.device("cpu"), batch_size=4)))
    assert (first == again).all() and torch.equal(state, torch.random.get_rng_state())
    const = next(iter(GeneratorSource(ckpt, GenerationOptions(num_gen=4, noise_mode="const"))
                      .batches(torch.device("cpu"), batch_size=4)))
    assert not (first == const).all()


def test_overlapping_heldout_is_refused(tmp_path, avatars32):
    heldout = tmp_path / "heldout"
    from gan.avatars import write_avatars

    write_avatars(heldout, 6, seed=11, res=32)
    assert_disjoint(avatars32, heldout)  # separately drawn: accepted
    one = sorted(avatars32.glob("*.png"))[5]
    shutil.copy(one, heldout / "renamed.png")   # same bytes under another name
    with pytest.raises(SourceError) as err:
        assert_disjoint(avatars32, heldout)
    message = str(err.value)
    assert "share 1 identical image file(s)" in message and f"renamed.png = {one.name}" in message
    assert "\n" not in message
    with pytest.raises(SourceError, match="is the training set itself"):
        assert_disjoint(avatars32, avatars32)


def test_report_cli_refuses_overlap_before_any_work(tmp_path, tiny_runs, avatars32, capsys):
    heldout = tmp_path / "heldout"
    heldout.mkdir()
    shutil.copy(sorted(avatars32.glob("*.png"))[0], heldout / "a.png")
    code = cli.main(["report", str(tiny_runs["resnet"]), "--out", str(tmp_path / "r"), "--heldout", str(heldout),
                     "--device", "cpu", "--quiet"])
    assert code == 1
    err = capsys.readouterr().err
    assert "identical image file" in err and "Traceback" not in err


def test_copycheck_cli_refuses_overlap_before_any_work(tmp_path, tiny_runs, avatars32, capsys):
    heldout = tmp_path / "heldout"
    heldout.mkdir()
    shutil.copy(sorted(avatars32.glob("*.png"))[3], heldout / "renamed.png")
    out = tmp_path / "cc"
    code = cli.main(["copycheck", str(tiny_runs["vit"]), "--train", str(avatars32), "--heldout", str(heldout),
                     "--out", str(out), "--num-gen", "8", "--device", "cpu", "--quiet"])
    assert code == 1
    err = capsys.readouterr().err
    assert "identical image file" in err and "renamed.png" in err and "Traceback" not in err
    assert not out.exists() or not any(out.iterdir())


def test_reference_heldout_keeps_the_copy_check_on_the_training_set(tmp_path, tiny_runs, avatars32):
    """A generator whose training set is its own samples copies 100%: with FID against a held-out reference, the
    copy check must still look at the training set and flag every sample."""
    from PIL import Image

    from evalkit.reports.report import ReportOptions, analyse_item
    from gan.api import list_snapshots

    ckpt = list_snapshots(tiny_runs["vit"])[-1].path
    opts = ReportOptions(num_gen=16, sweep_num_gen=16, copycheck_num_gen=16, psis=(1.0,), bootstrap=2,
                         train_queries=16, reference=str(avatars32), ppl_num=0)
    train = tmp_path / "train"   # the training data: exactly the samples the copy check will draw
    train.mkdir()
    source = GeneratorSource(ckpt, opts.report_gen().replace(num_gen=16))
    for i, image in enumerate(next(iter(source.batches(torch.device("cpu"), batch_size=16)))):
        Image.fromarray(image).save(train / f"{i:03d}.png")
    item = analyse_item(ckpt, "vit", train, tmp_path / "out", opts, log=lambda *a: None, batch_size=16, **CPU)
    assert item["reference"] == str(avatars32) and item["train"] == str(train)
    assert item["metrics"]["sources"][0]["path"] == str(avatars32.resolve())
    assert item["copycheck"]["train"]["path"] == str(train.resolve())
    assert item["copycheck"]["n_flagged"] == 16, item["copycheck"]["verdict"]
    assert item["report_seeds"] == [REPORT_SEED_OFFSET, REPORT_SEED_OFFSET + 15] and item["selection_seeds"] is None


def test_fid_run_no_cache_leaves_no_fingerprint_memo(tmp_path, tiny_runs, avatars32, isolated_home):
    """`--no-cache` touches nothing in the cache: not even the content-hash memo of the data or the snapshots."""
    from evalkit.reports.fid_run import fid_over_run

    run, data = tmp_path / "run", tmp_path / "data"
    shutil.copytree(tiny_runs["resnet"], run)   # new modification times: any memo would be a new file
    shutil.copytree(avatars32, data)
    memo = isolated_home / "features" / "fingerprints"
    before = set(memo.glob("*.json")) if memo.is_dir() else set()
    result = fid_over_run(run, tmp_path / "fid", data, GenerationOptions(num_gen=8), use_cache=False,
                          log=lambda *a: None, **CPU)
    assert (set(memo.glob("*.json")) if memo.is_dir() else set()) == before
    assert result["computed"] == 2 and result["report_seeds"] == [REPORT_SEED_OFFSET, REPORT_SEED_OFFSET + 7]
