"""The DINOv2 and CLIP feature extractors and CMMD, against the reference implementations' steps.

The real weights (Meta's dinov2_vitl14_pretrain.pth, OpenAI's ViT-L-14-336px.pt) are not available
to the tests. The networks are tested with random weights of the same architecture, written in the
official files' formats (key names, shapes, fp16 TorchScript for CLIP) and loaded through the same
code as the real files; where a test has to install such a file, the pinned sha256 is replaced by
the random file's (`accept_random_vits`). Preprocessing is compared with the reference calls
themselves (torchvision and PIL exactly as dgm-eval, EDM2 and CMMD call them), CMMD with a
transcription of `cmmd/distance.py`.
"""
import dataclasses
import json
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision.transforms as TF
from PIL import Image

from evalkit import api, cli
from evalkit.errors import EvalkitError, WeightsError
from evalkit.extract import clip, dinov2, weights
from evalkit.extract.cache import FeatureCache
from evalkit.extract.featureset import FeatureSet
from evalkit.extract.registry import get_extractor
from evalkit.extract.resize_uint8 import resize_uint8_pil, resize_uint8_torch, vertical_pass_first
from evalkit.metrics.cmmd import cmmd
from evalkit.reports.evaluate import compute_metrics
from harness_base.home import HOME_ENV

WIDTH = 1024  # ViT-L
PIL_MAJOR = int(Image.__version__.split(".")[0])
rng = np.random.default_rng(0)

# (height, width) of test images: generator sizes (up), downscales, non-square both ways.
SIZES = [(32, 32), (64, 64), (25, 25), (256, 256), (400, 400), (61, 64), (120, 300), (300, 120), (500, 337),
         (337, 500), (224, 224), (336, 336), (230, 40)]


def random_image(h, w):
    img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    img[: h // 3] = 255   # flat and extreme areas too, where rounding and clipping show
    img[-h // 4:, : w // 2] = 0
    return img


def chw(image):
    return torch.from_numpy(image).permute(2, 0, 1)[None]


# ----------------------------------------------------------------------------------------------
# Preprocessing


def test_pil_uint8_resize_on_torch_equals_pil():
    orders = set()
    for h, w in SIZES:
        for size in (224, 336):
            img = random_image(h, w)
            ours = resize_uint8_torch(chw(img), size)[0].permute(1, 2, 0).numpy()
            assert np.array_equal(ours, resize_uint8_pil(img, size)), (h, w, size)
            orders.add(vertical_pass_first(h, w, size))
    assert orders == ({True, False} if PIL_MAJOR >= 13 else {False})   # Pillow 13 runs some vertical passes first


def dgm_eval_transform(image):
    """layer6ai-labs/dgm-eval `DINOv2Encoder.transform` (clean_resize=False), on the PIL image its loader opens."""
    pil = Image.fromarray(image).convert("RGB")
    x = TF.Compose([TF.Resize((224, 224), TF.InterpolationMode.BICUBIC), TF.ToTensor()])(pil)
    return TF.Normalize(np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225]))(x)


def edm2_pil_mode(images):
    """NVlabs/edm2 `DINOv2Detector.__call__` with resize_mode='pil' (on the CPU), before the network."""
    x = images.to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    x = np.stack([np.uint8(Image.fromarray(xx, "RGB").resize((224, 224), Image.Resampling.BICUBIC)) for xx in x])
    x = torch.from_numpy(x).permute(0, 3, 1, 2).to(torch.float32) / 255
    x = x - torch.tensor([0.485, 0.456, 0.406]).reshape(1, -1, 1, 1)
    return x / torch.tensor([0.229, 0.224, 0.225]).reshape(1, -1, 1, 1)


def test_dinov2_preprocessing_equals_dgm_eval_and_edm2():
    for h, w in SIZES:
        img = random_image(h, w)
        cpu = dinov2.preprocess_cpu(img)
        assert cpu.shape == (3, 224, 224) and cpu.dtype == np.float32
        assert np.abs(cpu - dgm_eval_transform(img).numpy()).max() == 0, (h, w)
        assert np.abs(cpu - dinov2.preprocess_torch(chw(img))[0].numpy()).max() == 0, (h, w)
        if h == w:  # EDM2 takes square batches
            assert np.abs(cpu - edm2_pil_mode(chw(img))[0].numpy()).max() == 0, (h, w)


def cmmd_reference_preprocess(image):
    """google-research cmmd: `io_util._read_image` (centre crop + PIL bicubic to 336, float32), `/ 255.0` in
    `compute_embeddings_for_dir`, then scenic's `normalize_image` (float32 arrays under JAX's default)."""
    im = Image.fromarray(image)
    w, h = im.size
    side = min(w, h)
    top, left = (h - side) // 2, (w - side) // 2
    im = im.crop((left, top, left + side, top + side)).resize((336, 336), resample=Image.BICUBIC)
    x = np.asarray(im).astype(np.float32) / 255.0
    mean = np.array([0.48145466, 0.4578275, 0.40821073]).astype(np.float32)
    std = np.array([0.26862954, 0.26130258, 0.27577711]).astype(np.float32)
    return ((x - mean) / std).transpose(2, 0, 1)


def test_clip_preprocessing_equals_cmmd():
    for h, w in SIZES:
        img = random_image(h, w)
        cpu = clip.preprocess_cpu(img)
        assert cpu.shape == (3, 336, 336) and cpu.dtype == np.float32
        assert np.abs(cpu - cmmd_reference_preprocess(img)).max() == 0, (h, w)
        assert np.abs(cpu - clip.preprocess_torch(chw(img))[0].numpy()).max() == 0, (h, w)


# ----------------------------------------------------------------------------------------------
# Networks with random weights in the official formats


def dinov2_official_state_dict(depth, seed=0, device="cpu"):
    """Random tensors under the names and shapes of `dinov2_vitl14_pretrain.pth` (37x37 grid at 518 px)."""
    g = torch.Generator().manual_seed(seed)

    def r(*shape, std=0.02, mean=0.0):
        if device == "meta":
            return torch.empty(*shape, device="meta")
        return torch.randn(*shape, generator=g) * std + mean

    sd = {"cls_token": r(1, 1, WIDTH, std=1.0), "pos_embed": r(1, 1 + 37 * 37, WIDTH, std=0.5),
          "mask_token": r(1, WIDTH), "patch_embed.proj.weight": r(WIDTH, 3, 14, 14), "patch_embed.proj.bias": r(WIDTH),
          "norm.weight": r(WIDTH, std=0.1, mean=1.0), "norm.bias": r(WIDTH, std=0.1)}
    for i in range(depth):
        b = f"blocks.{i}."
        sd.update({b + "norm1.weight": r(WIDTH, std=0.1, mean=1.0), b + "norm1.bias": r(WIDTH, std=0.1),
                   b + "attn.qkv.weight": r(3 * WIDTH, WIDTH), b + "attn.qkv.bias": r(3 * WIDTH),
                   b + "attn.proj.weight": r(WIDTH, WIDTH), b + "attn.proj.bias": r(WIDTH),
                   b + "ls1.gamma": r(WIDTH, std=0.3), b + "norm2.weight": r(WIDTH, std=0.1, mean=1.0),
                   b + "norm2.bias": r(WIDTH, std=0.1), b + "mlp.fc1.weight": r(4 * WIDTH, WIDTH),
                   b + "mlp.fc1.bias": r(4 * WIDTH), b + "mlp.fc2.weight": r(WIDTH, 4 * WIDTH),
                   b + "mlp.fc2.bias": r(WIDTH), b + "ls2.gamma": r(WIDTH, std=0.3)})
    return sd


def dinov2_reference_forward(sd, x):
    """facebookresearch/dinov2 `DinoVisionTransformer.forward` (eval), transcribed: patch embedding,
    CLS token, `interpolate_pos_encoding` (bicubic, scale (g + 0.1) / 37, no antialias), blocks with
    LayerScale, final norm, CLS token."""
    n = x.shape[0]
    t = F.conv2d(x, sd["patch_embed.proj.weight"], sd["patch_embed.proj.bias"], stride=14).flatten(2).transpose(1, 2)
    t = torch.cat([sd["cls_token"].expand(n, -1, -1), t], 1)
    grid, m = x.shape[-1] // 14, 37
    patch = F.interpolate(sd["pos_embed"][:, 1:].reshape(1, m, m, -1).permute(0, 3, 1, 2),
                          scale_factor=((grid + 0.1) / m, (grid + 0.1) / m), mode="bicubic", antialias=False)
    t = t + torch.cat([sd["pos_embed"][:, :1], patch.permute(0, 2, 3, 1).reshape(1, grid * grid, -1)], 1)
    depth = sum(k.endswith("ls1.gamma") for k in sd)
    for i in range(depth):
        p = lambda name: sd[f"blocks.{i}.{name}"]  # noqa: E731
        h = F.layer_norm(t, (WIDTH,), p("norm1.weight"), p("norm1.bias"), 1e-6)
        qkv = F.linear(h, p("attn.qkv.weight"), p("attn.qkv.bias")).reshape(n, -1, 3, 16, 64).permute(2, 0, 3, 1, 4)
        a = ((qkv[0] * 64 ** -0.5) @ qkv[1].transpose(-2, -1)).softmax(-1) @ qkv[2]
        t = t + p("ls1.gamma") * F.linear(a.transpose(1, 2).reshape(n, -1, WIDTH), p("attn.proj.weight"),
                                          p("attn.proj.bias"))
        h = F.layer_norm(t, (WIDTH,), p("norm2.weight"), p("norm2.bias"), 1e-6)
        h = F.linear(F.gelu(F.linear(h, p("mlp.fc1.weight"), p("mlp.fc1.bias"))), p("mlp.fc2.weight"), p("mlp.fc2.bias"))
        t = t + p("ls2.gamma") * h
    return F.layer_norm(t, (WIDTH,), sd["norm.weight"], sd["norm.bias"], 1e-6)[:, 0]


def openai_clip_state_dict(depth, seed=0):
    """Random fp16 tensors under the names and shapes of OpenAI's ViT-L-14-336px.pt (the image tower, and
    a few of the text tower's and bookkeeping entries that must be left out)."""
    g = torch.Generator().manual_seed(seed)

    def r(*shape, std=0.02, mean=0.0):
        return (torch.randn(*shape, generator=g) * std + mean).half()

    v = "visual."
    sd = {v + "class_embedding": r(WIDTH, std=1.0), v + "positional_embedding": r(577, WIDTH, std=0.5),
          v + "proj": r(WIDTH, 768, std=0.03), v + "conv1.weight": r(WIDTH, 3, 14, 14),
          v + "ln_pre.weight": r(WIDTH, std=0.1, mean=1.0), v + "ln_pre.bias": r(WIDTH, std=0.1),
          v + "ln_post.weight": r(WIDTH, std=0.1, mean=1.0), v + "ln_post.bias": r(WIDTH, std=0.1),
          "positional_embedding": r(77, 768), "text_projection": r(768, 768), "logit_scale": r(1).squeeze(),
          "ln_final.weight": r(768), "transformer.resblocks.0.ln_1.weight": r(768),
          "input_resolution": torch.tensor(336), "context_length": torch.tensor(77), "vocab_size": torch.tensor(49408)}
    for i in range(depth):
        b = f"{v}transformer.resblocks.{i}."
        sd.update({b + "attn.in_proj_weight": r(3 * WIDTH, WIDTH), b + "attn.in_proj_bias": r(3 * WIDTH),
                   b + "attn.out_proj.weight": r(WIDTH, WIDTH), b + "attn.out_proj.bias": r(WIDTH),
                   b + "ln_1.weight": r(WIDTH, std=0.1, mean=1.0), b + "ln_1.bias": r(WIDTH, std=0.1),
                   b + "mlp.c_fc.weight": r(4 * WIDTH, WIDTH), b + "mlp.c_fc.bias": r(4 * WIDTH),
                   b + "mlp.c_proj.weight": r(WIDTH, 4 * WIDTH), b + "mlp.c_proj.bias": r(WIDTH),
                   b + "ln_2.weight": r(WIDTH, std=0.1, mean=1.0), b + "ln_2.bias": r(WIDTH, std=0.1)})
    return sd


def clip_reference_forward(sd, x):
    """openai/CLIP `VisionTransformer.forward` (clip/model.py; nn.MultiheadAttention, QuickGELU), in float32
    as scenic computes the converted weights, then `encode_image(normalize=True)`'s division by the norm."""
    sd = {k: v.float() for k, v in sd.items()}
    v = "visual."
    n = x.shape[0]
    t = F.conv2d(x, sd[v + "conv1.weight"], stride=14).reshape(n, WIDTH, -1).permute(0, 2, 1)
    t = torch.cat([sd[v + "class_embedding"] + torch.zeros(n, 1, WIDTH), t], 1) + sd[v + "positional_embedding"]
    t = F.layer_norm(t, (WIDTH,), sd[v + "ln_pre.weight"], sd[v + "ln_pre.bias"]).permute(1, 0, 2)  # NLD -> LND
    depth = sum(k.endswith("attn.in_proj_bias") for k in sd)
    for i in range(depth):
        p = lambda name: sd[f"{v}transformer.resblocks.{i}.{name}"]  # noqa: E731
        h = F.layer_norm(t, (WIDTH,), p("ln_1.weight"), p("ln_1.bias"))
        a, _ = F.multi_head_attention_forward(h, h, h, WIDTH, 16, p("attn.in_proj_weight"), p("attn.in_proj_bias"),
                                              None, None, False, 0.0, p("attn.out_proj.weight"),
                                              p("attn.out_proj.bias"), training=False, need_weights=False)
        t = t + a
        h = F.linear(F.layer_norm(t, (WIDTH,), p("ln_2.weight"), p("ln_2.bias")), p("mlp.c_fc.weight"),
                     p("mlp.c_fc.bias"))
        t = t + F.linear(h * torch.sigmoid(1.702 * h), p("mlp.c_proj.weight"), p("mlp.c_proj.bias"))
    e = F.layer_norm(t.permute(1, 0, 2)[:, 0], (WIDTH,), sd[v + "ln_post.weight"], sd[v + "ln_post.bias"])
    e = e @ sd[v + "proj"]
    return e / e.norm(dim=-1, keepdim=True)


def write_torchscript_archive(state_dict, path):
    """A TorchScript archive whose state_dict() is `state_dict`, as OpenAI ships CLIP."""
    root = torch.nn.Module()
    for key, value in state_dict.items():
        *path_parts, leaf = key.split(".")
        module = root
        for part in path_parts:
            if not hasattr(module, part):
                module.add_module(part, torch.nn.Module())
            module = getattr(module, part)
        module.register_parameter(leaf, torch.nn.Parameter(value, requires_grad=False))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)   # torch.jit is deprecated; OpenAI's file is TorchScript
        torch.jit.save(torch.jit.script(root), str(path))
    return path


def ours_and_reference(module, model, reference_forward, state_dict, sizes=((32, 32), (300, 120))):
    """Features of random images from the loaded network and from the transcribed reference forward pass."""
    x = torch.from_numpy(np.stack([module.preprocess_cpu(random_image(h, w)) for h, w in sizes]))
    with torch.inference_mode():
        return model(x), reference_forward(state_dict, x)


def test_dinov2_network_matches_the_reference_forward(tmp_path):
    sd = dinov2_official_state_dict(depth=2)
    path = tmp_path / "dinov2_vitl14_random.pth"
    torch.save(sd, path)
    ours, ref = ours_and_reference(dinov2, dinov2.load_dinov2(path, "cpu"), dinov2_reference_forward, sd)
    assert ours.shape == (2, dinov2.FEATURE_DIM) == (2, get_extractor("dinov2").dims)
    assert ref.abs().max() > 0.5 and (ours - ref).abs().max() < 1e-5   # float32 rounding (measured 5e-7)
    # The full 24-block network takes exactly the file's tensors (keys and shapes), mask token aside.
    full = dinov2.timm_state_dict(dinov2_official_state_dict(depth=24, device="meta"))
    import timm

    with torch.device("meta"):
        net = timm.create_model("vit_large_patch14_dinov2", pretrained=False, img_size=224, num_classes=0)
    assert {k: v.shape for k, v in net.state_dict().items()} == {k: v.shape for k, v in full.items()}


def test_clip_network_matches_the_reference_forward(tmp_path):
    sd = openai_clip_state_dict(depth=2)
    path = write_torchscript_archive(sd, tmp_path / "ViT-L-14-336px-random.pt")
    ours, ref = ours_and_reference(clip, clip.load_clip(path, "cpu"), clip_reference_forward, sd)
    assert ours.shape == (2, clip.FEATURE_DIM) == (2, get_extractor("clip").dims)
    assert torch.allclose(ours.norm(dim=1), torch.ones(2), atol=1e-6)
    assert (ours - ref).abs().max() < 1e-5


# ----------------------------------------------------------------------------------------------
# CMMD


def cmmd_reference(x, y, dtype=np.float64):
    """google-research cmmd/distance.py `mmd`, transcribed to numpy (full matrices, diagonals included)."""
    x, y = np.asarray(x, dtype), np.asarray(y, dtype)
    x_sq, y_sq = np.diag(x @ x.T), np.diag(y @ y.T)
    gamma = dtype(1 / (2 * 10 ** 2))
    k_xx = np.mean(np.exp(-gamma * (-2 * (x @ x.T) + x_sq[:, None] + x_sq[None, :])))
    k_xy = np.mean(np.exp(-gamma * (-2 * (x @ y.T) + x_sq[:, None] + y_sq[None, :])))
    k_yy = np.mean(np.exp(-gamma * (-2 * (y @ y.T) + y_sq[:, None] + y_sq[None, :])))
    return 1000 * (k_xx + k_yy - 2 * k_xy)


def unit_rows(n, dims, shift=0.0, seed=0):
    x = np.random.default_rng(seed).normal(size=(n, dims)) + shift
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_cmmd_equals_the_reference_formula():
    x, y = unit_rows(300, 768, seed=1), unit_rows(300, 768, shift=0.03, seed=2)
    value = cmmd(x, y)
    assert value > 0
    assert value == pytest.approx(cmmd_reference(x, y), rel=1e-10)
    assert cmmd(x, y, block=7) == pytest.approx(value, rel=1e-12)            # row blocks change nothing
    assert cmmd(torch.from_numpy(x), torch.from_numpy(y)) == pytest.approx(value, rel=1e-12)
    assert cmmd(x, x) == pytest.approx(0.0, abs=1e-9)                        # biased form: exactly 0 at x = y
    # The reference computes in float32 (JAX's default): means of n² kernel values near 1 that cancel to a
    # small difference, so it is off by a few 1e-4 here — inside the 3 decimals it prints, not exact.
    assert abs(cmmd_reference(x.astype(np.float32), y.astype(np.float32), np.float32) - value) < 1e-3
    y_small = unit_rows(120, 768, shift=0.03, seed=3)                         # unequal sizes: each mean over its pairs
    assert cmmd(x, y_small) == pytest.approx(cmmd_reference(x, y_small), rel=1e-10)


def feature_set(features, extractor):
    f = np.asarray(features, np.float64)
    return FeatureSet("x", "npz", "x.npz", f, f.mean(0), np.cov(f, rowvar=False), len(f), extractor=extractor)


def test_cmmd_needs_the_clip_feature_space(avatars_a, capsys):
    inception = feature_set(unit_rows(10, 2048), "inception")
    with pytest.raises(EvalkitError, match="--extractor clip"):
        compute_metrics(inception, inception, ("fid", "cmmd"))
    cached = len(FeatureCache().entries())
    assert cli.main(["metrics", str(avatars_a), str(avatars_a), "--metrics", "fid,cmmd"]) == 1
    one_paragraph_error(capsys.readouterr().err, "metrics")
    assert len(FeatureCache().entries()) == cached   # refused before any feature was computed


# ----------------------------------------------------------------------------------------------
# Weights: missing, status, install, a wrong file


def one_paragraph_error(err: str, prog: str) -> str:
    assert err.startswith(f"evalkit {prog}: error: ") and "Traceback" not in err
    assert err.strip().count("\n") == 0
    return err


@pytest.mark.parametrize("extractor, command, file, flag", [
    ("dinov2", "fid", "dinov2_vitl14_pretrain.pth", "--dinov2"),
    ("clip", "metrics", "ViT-L-14-336px.pt", "--clip")])
def test_missing_optional_weights_name_the_file_and_the_install_command(env_without_weights, avatars_a, capsys,
                                                                       extractor, command, file, flag):
    extra = ["--metrics", "cmmd"] if extractor == "clip" else []
    assert cli.main([command, str(avatars_a), str(avatars_a), "--extractor", extractor, *extra]) == 1
    err = one_paragraph_error(capsys.readouterr().err, command)
    assert file in err and f"evalkit weights install {flag} FILE" in err and "https://" in err


def required_only_home(tmp_path, monkeypatch, real_weights_dir):
    home = tmp_path / "home"
    (home / "weights").mkdir(parents=True)
    for name in ("inception-2015-12-05.pt", "lpips-alexnet.ckpt", "lpips-vgg16.ckpt"):
        (home / "weights" / name).symlink_to(real_weights_dir / name)
    monkeypatch.setenv(HOME_ENV, str(home))
    weights.clear_process_cache()
    return home


def test_optional_weights_fail_nothing_when_absent(tmp_path, monkeypatch, real_weights_dir, capsys):
    home = required_only_home(tmp_path, monkeypatch, real_weights_dir)
    assert cli.main(["weights", "status"]) == 0
    out = capsys.readouterr().out
    assert "dinov2-vitl14   not installed" in out and "evalkit weights install --clip FILE" in out
    assert cli.main(["weights", "status", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["dinov2-vitl14"]["optional"] and not rows["dinov2-vitl14"]["verified"]
    assert cli.main(["weights", "install"]) == 0   # the required ones are there; nothing tries to fetch the others
    out = capsys.readouterr().out
    assert "already installed" in out and "dinov2" not in out and "clip" not in out
    assert cli.main(["weights", "install", "--only", "dinov2-vitl14"]) == 1
    one_paragraph_error(capsys.readouterr().err, "weights")
    assert sorted(p.name for p in (home / "weights").iterdir()) == ["inception-2015-12-05.pt", "lpips-alexnet.ckpt",
                                                                 "lpips-vgg16.ckpt"]


def test_a_wrong_local_file_is_refused(tmp_path, monkeypatch, real_weights_dir, capsys):
    home = required_only_home(tmp_path, monkeypatch, real_weights_dir)
    wrong = tmp_path / "dinov2_vitl14_pretrain.pth"
    torch.save(dinov2_official_state_dict(depth=1), wrong)   # right name and format, not the pinned file
    assert cli.main(["weights", "install", "--dinov2", str(wrong)]) == 1
    err = capsys.readouterr().err
    assert "is not an accepted dinov2-vitl14 file" in err and weights.DINOV2_VITL14.variants[0].sha256 in err
    assert not (home / "weights" / "dinov2_vitl14_pretrain.pth").exists()
    with pytest.raises(WeightsError, match="not installed"):
        weights.require("dinov2-vitl14")


# ----------------------------------------------------------------------------------------------
# The registry round trip with random weights installed


@pytest.fixture(scope="module")
def random_vit_files(tmp_path_factory):
    """One-block random networks in the official formats, and their sha256."""
    d = tmp_path_factory.mktemp("random-vits")
    files = {"dinov2-vitl14": d / "dinov2_vitl14_random.pth", "clip-vitl14-336": d / "ViT-L-14-336px-random.pt"}
    torch.save(dinov2_official_state_dict(depth=1, seed=5), files["dinov2-vitl14"])
    write_torchscript_archive(openai_clip_state_dict(depth=1, seed=6), files["clip-vitl14-336"])
    return {name: (path, weights.sha256_file(path)) for name, path in files.items()}


@pytest.fixture
def vit_home(tmp_path, monkeypatch, real_weights_dir, random_vit_files, capsys):
    """A home with the real Inception/LPIPS files and the random DINOv2/CLIP files installed through the
    CLI, their specs pinned to the random files' sha256 (the only change to the code under test)."""
    for name, (_, sha) in random_vit_files.items():
        variant = weights.Variant("random weights of the same architecture (test)", sha)
        monkeypatch.setitem(weights.WEIGHTS, name, dataclasses.replace(weights.WEIGHTS[name], variants=(variant,)))
    home = required_only_home(tmp_path, monkeypatch, real_weights_dir)
    assert cli.main(["weights", "install", "--dinov2", str(random_vit_files["dinov2-vitl14"][0]),
                     "--clip", str(random_vit_files["clip-vitl14-336"][0])]) == 0
    capsys.readouterr()
    return home


@pytest.fixture(scope="module")
def six_images(tmp_path_factory):
    from gan.avatars import write_avatars

    a, b = tmp_path_factory.mktemp("six-a"), tmp_path_factory.mktemp("six-b")
    write_avatars(a, 6, seed=10, res=32)
    write_avatars(b, 6, seed=11, res=48)
    return a, b


def test_the_extractor_is_part_of_the_cache_key_and_of_statistics_files(vit_home, six_images, tmp_path, capsys):
    a, b = map(str, six_images)
    assert cli.main(["weights", "status"]) == 0
    assert "dinov2-vitl14   ok" in capsys.readouterr().out
    cpu = ["--device", "cpu", "--quiet"]
    assert cli.main(["fid", a, b, "--extractor", "dinov2", *cpu]) == 0
    out = capsys.readouterr().out
    assert out.startswith("FD-DINOv2 ") and "dinov2-vitl14-lvd142m/cls, resize=dgm-eval" in out  # FID in DINOv2's space
    fd = float(out.split()[1])
    api.feature_set(a, "A", extractor="inception", device=torch.device("cpu"), progress=False)
    keys = {}
    for entry in FeatureCache().entries():
        keys.setdefault(entry["source"], {})[entry["extractor"]] = entry["key"]
    assert set(keys[a]) == {"dinov2-vitl14-lvd142m/cls", "inception-v3-tf-2015-12-05/pool3"}   # two entries for a
    assert len(set(keys[a].values())) == 2 and list(keys[b]) == ["dinov2-vitl14-lvd142m/cls"]

    stats = tmp_path / "a_dinov2.npz"
    assert cli.main(["stats", a, "-o", str(stats), "--extractor", "dinov2", *cpu]) == 0
    capsys.readouterr()
    assert cli.main(["fid", str(stats), b, *cpu]) == 1                           # refused in Inception's space
    err = one_paragraph_error(capsys.readouterr().err, "fid")
    assert "extractor 'dinov2-vitl14-lvd142m/cls'" in err and "Recompute it" in err
    assert cli.main(["fid", str(stats), b, "--extractor", "dinov2", *cpu]) == 0  # accepted in its own
    assert float(capsys.readouterr().out.split()[1]) == pytest.approx(fd, abs=2e-6)


def test_cmmd_through_the_cli_in_the_clip_space(vit_home, six_images, capsys):
    a, b = map(str, six_images)
    assert cli.main(["metrics", a, b, "--extractor", "clip", "--metrics", "fid,cmmd", "--device", "cpu",
                     "--quiet", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    opts = {"device": torch.device("cpu"), "progress": False, "extractor": "clip"}
    fa, fb = api.feature_set(a, "real", **opts).features, api.feature_set(b, "generated", **opts).features
    assert fa.shape == (6, 768) and np.allclose(np.linalg.norm(fa, axis=1), 1, atol=1e-5)
    assert result["cmmd"] == pytest.approx(cmmd_reference(fa, fb), rel=1e-9)
    assert result["feature_extractor"]["name"] == "clip" and result["resize"] == "cmmd"
