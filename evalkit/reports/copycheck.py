"""`evalkit copycheck`: is the generator copying its training set?

For each generated sample: its nearest training images by Inception features, re-ranked with
LPIPS-AlexNet; a copy threshold calibrated on held-out real images for a stated false-alarm rate
(without them, the uncalibrated train→train rule, with a warning); AuthPct; with held-out images
the C_T test of Meehan et al. (in `ct_extractor`'s feature space); an image grid (sample, then its 3
nearest with distances) and a table. The verdict line is "no sign of copying" or "N of M samples
look copied — see grid". `SEES` says, in the output and copycheck.json, what each test can and
cannot detect.
"""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np

from harness_base.atomic import write_text_atomic

from ..errors import EvalkitError, SampleSizeError, SourceError
from ..extract.featureset import feature_set
from ..sources import GenerationOptions, GeneratorSource, ImageSource, resolve_source

GRID_ROWS = 16

# What each test can and cannot see (README "What each copy test can see"). Measured on 64 px
# cartoon faces (100 training faces): ±4-level noise copies sit 9.7 (median) from their source in
# Inception space and JPEG-75 re-encodes 10.7, against 11.5 from a fresh face to its nearest
# training face, while their LPIPS distances (≤ 0.001 and ≤ 0.02) are far below any fresh face's
# (≥ 0.06).
SEES = {
    "lpips_copy_check": "sees pixel-level near copies of training images (exact, mild noise, 1 px shifts, JPEG "
                        "re-encodes, small crops); cannot see semantic copying (the same face in another pose, "
                        "colour or style), and only examines the Inception candidates of each sample",
    "c_t": "works in the {extractor} feature space: sees generated samples that are, as a population, closer to "
           "the training set than held-out images are; cannot see pixel-level near copies that {extractor} maps "
           "as far from their source as a different image, nor a few copies among many samples (its power "
           "depends on N; see README)",
    "authpct": "works in the {extractor} feature space, with the same blind spot for pixel-level near copies; "
               "compare it with the held-out images' AuthPct, not with 100%",
}


def _images_of(source, device, size: int | None = None) -> np.ndarray:
    """All images of a source as uint8 (N, S, S, 3), resized to `size` if given (LPIPS compares equal sizes)."""
    from PIL import Image

    if isinstance(source, GeneratorSource):
        images = np.concatenate(list(source.batches(device)))
    elif isinstance(source, ImageSource):
        images = []
        for i in range(len(source)):
            try:
                images.append(source.load(i)[0])
            except Exception:  # unreadable files were reported (and skipped) by the feature pass
                continue
        shapes = {im.shape for im in images}
        if len(shapes) > 1 and size is None:
            size = max(max(s[:2]) for s in shapes)
        if size is not None:
            images = [im if im.shape[:2] == (size, size) else
                      np.asarray(Image.fromarray(im).resize((size, size), Image.BICUBIC)) for im in images]
        images = np.stack(images)
    else:
        raise SourceError(f"{source.describe()} holds no images; the copy check needs the images themselves.")
    if size is not None and images.shape[1:3] != (size, size):
        images = np.stack([np.asarray(Image.fromarray(im).resize((size, size), Image.BICUBIC)) for im in images])
    return images


def copy_report(generated, train, heldout=None, gen: GenerationOptions | None = None,
                out_dir: str | Path = "copycheck",
                *, device=None, candidates: int = 10, keep: int = 3, train_queries: int = 1000, seed: int = 0,
                rows: int = GRID_ROWS, progress: bool = True, log=print, false_alarm: float = 0.01,
                ct_extractor: str | None = None, **extraction) -> dict:
    """Run the copy check, AuthPct and C_T; write neighbours.png, copycheck.csv and copycheck.json into `out_dir`.

    With `heldout` (real images not used in training) the LPIPS copy threshold is calibrated on them
    for a `false_alarm` rate of flagged fresh images, and C_T runs in the `ct_extractor` feature space
    (default: Inception); without, the threshold is the uncalibrated train→train rule (warned)."""
    import torch

    from ..extract.lpips import pair_distance_fn
    from ..extract.registry import extractor_info, get_extractor
    from ..metrics.copying import authenticity, copy_check, data_copying_ct

    from .copycheck_grid import render_neighbour_grid

    device = torch.device(device) if device else None
    extraction = {**extraction, "skip_bad": True}  # unreadable files cannot be neighbours; they are listed
    gen = gen or GenerationOptions(num_gen=1000)
    out = Path(out_dir)
    gen_source = resolve_source(generated, gen)
    train_source = resolve_source(train)
    if not isinstance(train_source, ImageSource):
        raise SourceError(f"--train must be an image folder or zip (the grid shows training images); got {train}.")
    if not 0 < false_alarm < 1:
        raise EvalkitError(f"--false-alarm must be a rate between 0 and 1 (e.g. 0.01 for 1%), got {false_alarm}.")
    if heldout is not None:   # a held-out image that was trained on would calibrate the threshold on a copy
        from ..sources.overlap import assert_disjoint

        assert_disjoint(train_source, heldout)
    candidate_ex = get_extractor(extraction.get("extractor"))
    ct_ex = get_extractor(ct_extractor)
    if heldout is not None and ct_ex.name != candidate_ex.name:
        extractor_info(ct_ex)  # missing weights: say so (and how to install them) before the long passes
    g = feature_set(gen_source, "generated", device=device, progress=progress, **extraction)
    t = feature_set(train_source, "training", device=device, progress=progress, **extraction)

    gen_images = _images_of(gen_source, device)
    train_images = _images_of(train_source, device, size=gen_images.shape[1])
    heldout_source = h = heldout_images = None
    if heldout is not None:
        heldout_source = resolve_source(heldout)
        if not isinstance(heldout_source, ImageSource):
            raise SourceError(f"--heldout must be an image folder or zip (its images calibrate the LPIPS "
                              f"threshold); got {heldout}.")
        h = feature_set(heldout_source, "held-out", device=device, progress=progress, **extraction)
        heldout_images = _images_of(heldout_source, device, size=gen_images.shape[1])
    log(f"comparing {len(gen_images)} generated samples with {len(train_images)} training images "
        f"({candidates} {candidate_ex.name} candidates each, re-ranked by LPIPS)")
    check = copy_check(g.features, t.features,
                       gen_pairs=pair_distance_fn(gen_images, train_images, device),
                       train_pairs=pair_distance_fn(train_images, train_images, device),
                       candidates=candidates, keep=keep, train_queries=train_queries, seed=seed, device=device,
                       heldout_features=None if h is None else h.features,
                       heldout_pairs=None if h is None else pair_distance_fn(heldout_images, train_images, device),
                       false_alarm=false_alarm)
    th = check.threshold
    if th.warning:
        log(f"warning: {th.warning}")
    sees = {k: v.format(extractor=candidate_ex.name if k == "authpct" else ct_ex.name) for k, v in SEES.items()}
    result = {"generated": g.summary(), "train": t.summary(), "verdict": check.verdict, "copy_score": check.score,
              "n_flagged": check.n_flagged, "num_samples": len(g.features), "threshold": check.tau,
              "threshold_rule": check.rule, "threshold_calibrated": th.calibrated,
              "false_alarm": th.false_alarm, "false_alarm_requested": false_alarm if th.calibrated else None,
              "threshold_n": th.n, "threshold_warning": th.warning, "distance": check.metric,
              "candidate_extractor": candidate_ex.name, "params": check.params,
              "authpct": authenticity(g.features, t.features, device).authpct, "what_each_test_sees": sees}
    if h is not None:
        result["authpct_heldout"] = authenticity(h.features, t.features, device).authpct  # what real images score
        if ct_ex.name == candidate_ex.name:
            ct_t, ct_h, ct_g = t, h, g
        else:
            ct_kw = {**extraction, "extractor": ct_ex.name}
            ct_g = feature_set(gen_source, "generated", device=device, progress=progress, **ct_kw)
            ct_t = feature_set(train_source, "training", device=device, progress=progress, **ct_kw)
            ct_h = feature_set(heldout_source, "held-out", device=device, progress=progress, **ct_kw)
        try:
            ct = data_copying_ct(ct_t.features, ct_h.features, ct_g.features, seed=seed, device=device)
            result["c_t"] = {"value": ct.c_t, "z": ct.z, "null_sd": ct.null_sd, "verdict": ct.verdict,
                             "interpretation": ct.interpretation, "n_cells": ct.n_cells,
                             "cells_used": ct.params["cells_used"], "pca_dims": ct.pca_dims, "tau_n": ct.tau_n,
                             "num_heldout": h.num, "num_generated": len(ct_g.features), "extractor": ct_ex.name,
                             "cells": [{"cell": c.cell, "n_train": c.n_train, "n_test": c.n_test, "n_gen": c.n_gen,
                                        "weight": c.test_share, "included": c.included,
                                        "z_u": None if np.isnan(c.z) else c.z} for c in ct.cells]}
        except SampleSizeError as err:  # too few samples for any cell: say so, keep the rest of the check
            result["c_t"] = {"value": None, "z": None, "verdict": None, "interpretation": f"C_T not computed: {err}",
                             "num_heldout": h.num, "extractor": ct_ex.name}
            log(f"C_T not computed: {err}")

    nn = check.neighbours
    order = np.lexsort((nn.distances[:, 0], ~check.flags))  # flagged first, then the closest
    shown = order[:rows]
    gen_names = [_short(n) for n in g.names]
    kept_train = t.names
    out.mkdir(parents=True, exist_ok=True)
    grid = render_neighbour_grid(
        gen_images[shown], [[train_images[j] for j in nn.indices[i]] for i in shown], nn.distances[shown],
        check.flags[shown], out / "neighbours.png", feature_distances=nn.feature_distances[shown],
        titles=[gen_names[i] for i in shown],
        neighbour_titles=[[_short(kept_train[j]) for j in nn.indices[i]] for i in shown],
        caption=check.verdict)
    buf = io.StringIO()
    writer = csv.writer(buf)
    header = ["sample", "flagged"]
    for r in range(nn.indices.shape[1]):
        header += [f"nn{r + 1}", f"nn{r + 1}_lpips", f"nn{r + 1}_inception_l2"]
    writer.writerow(header)
    for i in np.argsort(nn.distances[:, 0]):
        row = [gen_names[i], int(check.flags[i])]
        for r in range(nn.indices.shape[1]):
            row += [kept_train[nn.indices[i, r]], f"{nn.distances[i, r]:.5f}", f"{nn.feature_distances[i, r]:.4f}"]
        writer.writerow(row)
    write_text_atomic(out / "copycheck.csv", buf.getvalue())
    result.update({"grid": str(grid), "table": str(out / "copycheck.csv"), "out_dir": str(out)})
    write_text_atomic(out / "copycheck.json", json.dumps(result, indent=2))
    return result


def _short(name: str, width: int = 18) -> str:
    name = Path(name).name
    return name if len(name) <= width else "…" + name[-(width - 1):]
