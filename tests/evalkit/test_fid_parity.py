"""FID and features agree with clean-fid (mode="clean") run on the same images with the same weights."""
import numpy as np
import pytest
import torch

from evalkit import api
from evalkit.extract import weights
from evalkit.extract.resize import pil_bicubic_matrix, resize_pil, resize_torch
from evalkit.sources import open_source
from evalkit.extract.features import source_features


def _clean_fid_extractor():
    """clean-fid's InceptionV3W.forward (resize_inside=False) on the harness's verified weight file."""
    path, _ = weights.require("inception")
    jit = torch.jit.load(str(path), map_location="cpu").eval()
    layers = jit.net.layers if hasattr(jit, "net") else jit.layers  # fid-helper vs NVIDIA packaging

    def extract(x):
        return layers.forward((x - 128) / 128).view(x.shape[0], 2048)
    return extract


@pytest.fixture(scope="module")
def clean_fid_features(avatars_a, avatars_b):
    from cleanfid import fid as cfid

    extractor = _clean_fid_extractor()
    cpu = torch.device("cpu")
    return {d: cfid.get_folder_features(str(d), extractor, num_workers=0, batch_size=32, device=cpu,
                                        mode="clean", verbose=False) for d in (avatars_a, avatars_b)}


def test_features_match_clean_fid(avatars_a, avatars_b, clean_fid_features):
    for d in (avatars_a, avatars_b):
        ours = source_features(open_source(d), device=torch.device("cpu"), progress=False).features
        ref = clean_fid_features[d]
        assert ours.shape == ref.shape
        # BN folding and channels-last change rounding only: relative error ~1e-6
        rel = np.abs(ours - ref).max() / np.abs(ref).max()
        assert rel < 1e-4, rel


def test_fid_matches_clean_fid(avatars_a, avatars_b, clean_fid_features):
    from cleanfid import fid as cfid

    f1, f2 = clean_fid_features[avatars_a], clean_fid_features[avatars_b]
    reference = cfid.frechet_distance(np.mean(f1, axis=0), np.cov(f1, rowvar=False),
                                      np.mean(f2, axis=0), np.cov(f2, rowvar=False))
    ours = api.fid(avatars_a, avatars_b, device=torch.device("cpu"), progress=False)["fid"]
    assert reference > 10  # the two sets really differ: a meaningful comparison
    assert abs(ours - reference) / reference <= 1e-4, (ours, reference)


def test_clean_fid_compute_fid_end_to_end_agrees(avatars_a, avatars_b):
    """The whole clean-fid pipeline (its own file listing, resize and loader), not just its features."""
    from cleanfid import fid as cfid

    reference = cfid.compute_fid(str(avatars_a), str(avatars_b), mode="clean", device=torch.device("cpu"),
                                 num_workers=0, batch_size=32, custom_feat_extractor=_clean_fid_extractor(),
                                 verbose=False)
    ours = api.fid(avatars_a, avatars_b, device=torch.device("cpu"), progress=False)["fid"]
    assert abs(ours - reference) / reference <= 1e-4, (ours, reference)


@pytest.mark.parametrize("shape", [(64, 64), (25, 25), (48, 80), (299, 299), (512, 384)])
def test_resize_is_clean_fids(shape):
    from cleanfid.resize import make_resizer

    rng = np.random.default_rng(shape[0] * 1000 + shape[1])
    img = rng.integers(0, 256, size=(*shape, 3), dtype=np.uint8)
    reference = make_resizer("PIL", False, "bicubic", (299, 299))(img).transpose(2, 0, 1)
    ours_pil = resize_pil(img)
    ours_torch = resize_torch(torch.from_numpy(img).permute(2, 0, 1)[None])[0].numpy()
    assert np.array_equal(ours_pil, reference)
    assert np.array_equal(ours_torch, reference)   # the device-side resize too, bit for bit


@pytest.mark.parametrize("shape", [(1024, 1024), (256, 256), (512, 384), (37, 301), (300, 299), (299, 64)])
def test_resize_torch_is_bit_exact_with_resize_pil(shape):
    """Same coefficients, same tap order, same roundings: equal floats at every pixel, for down- and
    upscaling and for one unchanged axis. uint8 and float inputs alike."""
    rng = np.random.default_rng(sum(shape))
    imgs = rng.integers(0, 256, size=(2, *shape, 3), dtype=np.uint8)
    batch = torch.from_numpy(imgs).permute(0, 3, 1, 2)
    ours = resize_torch(batch).numpy()
    for i, img in enumerate(imgs):
        expected = resize_pil(img)
        assert ours[i].dtype == expected.dtype == np.float32
        assert np.array_equal(ours[i], expected), f"{np.count_nonzero(ours[i] != expected)} values differ"
    np.testing.assert_array_equal(resize_torch(batch.float()).numpy(), ours)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_resize_on_cuda_is_bit_exact_with_resize_pil():
    rng = np.random.default_rng(5)
    for shape in ((1024, 1024), (256, 256), (48, 80)):
        imgs = rng.integers(0, 256, size=(4, *shape, 3), dtype=np.uint8)
        ours = resize_torch(torch.from_numpy(imgs).cuda().permute(0, 3, 1, 2)).cpu().numpy()
        for i, img in enumerate(imgs):
            assert np.array_equal(ours[i], resize_pil(img))


def test_resize_matrix_rows_sum_to_one_and_antialias():
    m = pil_bicubic_matrix(1024, 299)
    assert np.allclose(m.sum(axis=1), 1.0)
    # downscaling by 3.4x widens the bicubic support to ~4*3.4 input pixels (PIL's antialiasing)
    assert (m[150] != 0).sum() >= 13
    up = pil_bicubic_matrix(64, 299)
    assert (up[150] != 0).sum() <= 4
