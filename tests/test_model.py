"""EDVR against the reference implementation's outputs, through every checkpoint format; presets vs official keys."""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import edvr
from edvr.errors import CheckpointError
from edvr.models.convert import infer_config, read_checkpoint, save_checkpoint, to_our_names
from edvr.models.edvr import EDVR, EDVRConfig, pad_to_multiple
from edvr.models.zoo import MODELS
from edvr.ops.deform_conv import torchvision_available
from edvr.training.checkpoint import save_training_state

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference"
FIXTURES = ["public_sr_tiny", "public_deblur_tiny"]
BASICSR_TO_PRESET = {
    "sr_m": "edvr-m-reds", "sr_m_wotsa": "edvr-m-wotsa-reds", "sr_l": "edvr-l-reds", "sr_l_wotsa": "edvr-l-wotsa-reds",
    "sr_l_vimeo90k_7f": "edvr-l-vimeo90k", "srblur_l": "edvr-l-srblur-reds", "deblur_l": "edvr-l-deblur-reds",
}
ORIGINAL_TO_PRESET = {**BASICSR_TO_PRESET, "stage2_sr": "edvr-stage2-sr-reds", "stage2_predeblur": "edvr-stage2-deblur-reds"}

pytestmark = pytest.mark.skipif(not REFERENCE.is_dir(), reason=f"reference data not found at {REFERENCE}")


def load_fixture(name: str) -> dict:
    return torch.load(REFERENCE / f"{name}.pt")


def manifests() -> tuple[dict, dict]:
    basicsr = json.loads((REFERENCE / "keys_basicsr.json").read_text())["configs"]
    original = json.loads((REFERENCE / "keys_original.json").read_text())["configs"]
    return basicsr, original


def to_original_names(sd: dict) -> dict:
    """Our (BasicSR) names -> the original repo's, using the official manifest's name pairs (external truth)."""
    _, original = manifests()
    inverse = {b: o for cfg in original.values() for o, _, b in cfg["keys"] if b is not None}
    return {inverse[k]: v for k, v in sd.items()}


# mmagic's EDVRNet wraps these convs in ConvModule (key '<name>.conv.weight'); facts from mmagic's edvr_net.py.
_MMAGIC_CONVMODULE = re.compile(
    r"^(pcd_align\.(offset_conv[123]|feat_conv)\.l[123]|pcd_align\.cas_offset_conv[12]|fusion\.feat_fusion|"
    r"fusion\.spatial_attn[1-4]|fusion\.spatial_attn_l[123]|fusion\.spatial_attn_add1)\.(weight|bias)$"
)


def to_mmagic_names(sd: dict) -> dict:
    out = {}
    for k, v in sd.items():
        if _MMAGIC_CONVMODULE.match(k):
            k = re.sub(r"\.(weight|bias)$", r".conv.\1", k)
        k = re.sub(r"^conv_l([23])_([12])\.", r"feat_l\1_conv\2.conv.", k)
        k = re.sub(r"^upconv([12])\.", r"upsample\1.upsample_conv.", k)
        k = k.replace("pcd_align.", "pcd_alignment.")
        out["generator." + k] = v
    return out


def run(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x)


@pytest.mark.parametrize("name", FIXTURES)
@pytest.mark.parametrize("fmt", ["basicsr", "basicsr_ema", "original", "original_module", "mmagic", "ours", "bare",
                                 "train_state", "train_state_ema"])
def test_reference_outputs_reproduced_through_every_format(name, fmt, tmp_path):
    fx = load_fixture(name)
    sd = fx["state_dict"]
    path = tmp_path / "weights.pth"
    if fmt == "basicsr":
        torch.save({"params": sd}, path)
    elif fmt == "basicsr_ema":
        torch.save({"params": {k: torch.zeros_like(v) for k, v in sd.items()}, "params_ema": sd}, path)
    elif fmt == "original":
        torch.save(to_original_names(sd), path)
    elif fmt == "original_module":
        torch.save({"module." + k: v for k, v in to_original_names(sd).items()}, path)
    elif fmt == "mmagic":
        if fx["config"]["with_predeblur"]:
            pytest.skip("mmagic's EDVRNet has no PreDeblur")
        torch.save({"meta": {"epoch": 1}, "state_dict": {**to_mmagic_names(sd), "step_counter": torch.zeros(1)}}, path)
    elif fmt == "ours":
        path = tmp_path / "weights.safetensors"
        cfg = dict(fx["config"])
        cfg["num_frames"] = cfg.pop("num_frame")
        save_checkpoint(sd, EDVRConfig(**cfg), path)
    elif fmt.startswith("train_state"):  # edvr's own latest.pt; with EMA, its weights are the EMA's
        zeros = {k: torch.zeros_like(v) for k, v in sd.items()}
        state = {"model": zeros, "ema": sd} if fmt == "train_state_ema" else {"model": sd, "ema": None}
        path = save_training_state({**state, "optimizer": {}}, tmp_path / "checkpoints", 100, keep=1)
    else:
        torch.save(sd, path)
    model = edvr.load_model(path, dcn_backend="torch", device="auto")  # "auto" as restore takes it (CPU here)
    assert not model.training
    err = (run(model, fx["input"]) - fx["output"]).abs().max().item()
    assert err < 1e-4, f"{name} via {fmt}: max abs error {err}"


@pytest.mark.skipif(not torchvision_available(), reason="torchvision not installed beside this torch")
@pytest.mark.parametrize("name", FIXTURES)
def test_reference_outputs_with_torchvision_backend(name, tmp_path):
    fx = load_fixture(name)
    torch.save({"params": fx["state_dict"]}, tmp_path / "w.pth")
    model = edvr.load_model(tmp_path / "w.pth", dcn_backend="torchvision")
    assert (run(model, fx["input"]) - fx["output"]).abs().max().item() < 1e-4


@pytest.mark.parametrize("name", FIXTURES)
def test_reference_outputs_with_compiled_backend(name, tmp_path, monkeypatch):
    from edvr.models import blocks
    from edvr.ops import compiled, deform_conv

    monkeypatch.setattr(compiled, "_state", {"fns": {}, "error": None})
    fx = load_fixture(name)
    torch.save({"params": fx["state_dict"]}, tmp_path / "w.pth")
    model = edvr.load_model(tmp_path / "w.pth", dcn_backend="compiled")
    with torch.inference_mode():
        out = model(fx["input"])
    assert compiled.error() is None
    # It really ran compiled: the sampling at each pyramid level, the two shuffles and the last conv of the tail.
    assert compiled.variants(deform_conv._sample_taps) == 3
    assert compiled.variants(blocks._lrelu_shuffle) == 2 and compiled.variants(blocks._sum_taps_add) == 1
    assert (out - fx["output"]).abs().max().item() < 1e-4
    # The x4 tail in bands of 2 rows (one band shape: one more variant of each tail kernel): the same output.
    from edvr.models import edvr as edvr_module

    monkeypatch.setattr(edvr_module, "TAIL_MIN_ROWS", 1)
    model.tail_band_pixels = 2 * fx["input"].shape[0] * fx["input"].shape[-1] // (4 if model.config.hr_in else 1)
    with torch.inference_mode():
        banded = model(fx["input"])
    assert compiled.variants(blocks._lrelu_shuffle) == 4 and compiled.variants(blocks._sum_taps_add) == 2
    assert (banded - out).abs().max().item() < 1e-5


def test_reference_output_with_winograd_convs(tmp_path, monkeypatch):
    """The compiled backend with Winograd on every 3x3 conv over the full-size maps (the pyramid's finest level and
    the x4 tail; by default only maps of >= 128x128 pixels): still the reference's output within 1e-4."""
    from edvr.ops import compiled, winograd

    monkeypatch.setattr(compiled, "_state", {"fns": {}, "error": None})
    fx = load_fixture("public_sr_tiny")
    x, expected = fx["input"][:1], fx["output"][:1]  # Winograd runs on batch 1, as restore does
    monkeypatch.setattr(winograd, "MIN_PIXELS", x.shape[-2] * x.shape[-1])
    monkeypatch.setattr(winograd, "ENABLED", True)
    torch.save({"params": fx["state_dict"]}, tmp_path / "w.pth")
    model = edvr.load_model(tmp_path / "w.pth", dcn_backend="compiled")
    with torch.inference_mode():
        out = model(x)
    assert compiled.error() is None
    # It really ran: the output transforms of the 16-output convs, the DCN offset convs (216, split), upconv1 (64),
    # upconv2 (256) and conv_hr (64 at the output size).
    assert compiled.variants(winograd._output_tiles) == 5
    assert (out - expected).abs().max().item() < 1e-4


def test_wrong_convention_is_caught_by_the_fixture():
    """The fixture is sensitive: swapping dy/dx moves the output by far more than the tolerance."""
    fx = load_fixture("public_sr_tiny")
    cfg = dict(fx["config"])
    cfg["num_frames"] = cfg.pop("num_frame")
    model = EDVR(**cfg).eval()
    model.load_state_dict(fx["state_dict"])
    for module in model.dcn_modules():
        w = module.conv_offset.weight.data
        groups = w.shape[0] // 3
        half = w[: 2 * groups].view(groups, 2, *w.shape[1:])
        w[: 2 * groups] = half.flip(1).reshape(2 * groups, *w.shape[1:])
    assert (run(model, fx["input"]) - fx["output"]).abs().max().item() > 0.02


@pytest.mark.parametrize("config", list(BASICSR_TO_PRESET))
def test_presets_have_exactly_the_official_basicsr_keys(config, tmp_path):
    basicsr, _ = manifests()
    spec = basicsr[config]
    record = MODELS[BASICSR_TO_PRESET[config]]
    with torch.device("meta"):
        model_sd = EDVR(**record.config.to_dict()).state_dict()
    assert [(k, list(v.shape)) for k, v in model_sd.items()] == [(k, s) for k, s in spec["keys"]]
    assert record.num_params() == spec["num_params"]
    # A file with exactly those keys loads (architecture inferred from keys alone) and runs.
    sd = {k: torch.randn(s) * 0.01 for k, s in spec["keys"]}
    torch.save({"params": sd}, tmp_path / "official.pth")
    model = edvr.load_model(tmp_path / "official.pth")
    assert model.config == record.config
    size = 16 if record.config.hr_in else 8
    out = run(model, torch.rand(1, record.config.num_frames, 3, size, size))
    assert out.shape == (1, 3, size * record.scale, size * record.scale) and torch.isfinite(out).all()


@pytest.mark.parametrize("config", ["sr_m", "sr_m_wotsa", "sr_l", "srblur_l", "deblur_l", "stage2_sr", "stage2_predeblur"])
def test_original_repo_keys_convert_to_the_presets(config, tmp_path):
    _, original = manifests()
    spec = original[config]
    record = MODELS[ORIGINAL_TO_PRESET[config]]
    sd, naming = to_our_names({k: torch.empty(s, device="meta") for k, s, _ in spec["keys"]})
    assert naming == "original"
    with torch.device("meta"):
        model_sd = EDVR(**record.config.to_dict()).state_dict()
    assert {k: list(v.shape) for k, v in sd.items()} == {k: list(v.shape) for k, v in model_sd.items()}
    assert infer_config(sd) == record.config
    assert record.num_params() == spec["num_params"]
    for orig, _, basicsr_name in spec["keys"]:  # the manifest's own mapping agrees with our rules
        if basicsr_name is not None:
            assert basicsr_name in sd, orig


@pytest.mark.parametrize("config", ["stage2_sr", "stage2_predeblur"])
def test_stage2_original_files_load_and_run(config, tmp_path):
    _, original = manifests()
    torch.manual_seed(0)
    sd = {"module." + k: torch.randn(s) * 0.01 for k, s, _ in original[config]["keys"]}
    torch.save(sd, tmp_path / "stage2.pth")
    model = edvr.load_model(tmp_path / "stage2.pth")
    assert model.config.hr_in and model.config.num_reconstruct_block == 20
    x = torch.rand(1, 5, 3, 32, 48)
    assert run(model, x).shape == (1, 3, 32, 48)


def tiny(**kw) -> EDVR:
    args = dict(num_feat=8, num_extract_block=1, num_reconstruct_block=1, deformable_groups=2)
    args.update(kw)
    torch.manual_seed(0)
    return EDVR(**args).eval()


@pytest.mark.parametrize(
    "kw,shape,expected",
    [
        (dict(), (1, 5, 3, 30, 45), (1, 3, 120, 180)),
        (dict(num_frames=7), (2, 7, 3, 13, 8), (2, 3, 52, 32)),
        (dict(num_frames=3, center_frame_idx=0), (1, 3, 3, 5, 6), (1, 3, 20, 24)),
        (dict(with_tsa=False), (1, 5, 3, 9, 9), (1, 3, 36, 36)),
        (dict(hr_in=True, with_predeblur=True), (1, 5, 3, 50, 70), (1, 3, 50, 70)),
        (dict(hr_in=True), (1, 5, 3, 17, 33), (1, 3, 17, 33)),
        (dict(with_predeblur=True), (1, 5, 3, 10, 14), (1, 3, 40, 56)),
        (dict(num_frames=1), (1, 1, 3, 4, 4), (1, 3, 16, 16)),
        (dict(with_alignment=False), (1, 5, 3, 9, 10), (1, 3, 36, 40)),
        (dict(with_alignment=False, with_tsa=False), (1, 5, 3, 9, 10), (1, 3, 36, 40)),
    ],
)
def test_any_frame_size_and_frame_count(kw, shape, expected):
    out = run(tiny(**kw), torch.rand(shape))
    assert out.shape == expected and torch.isfinite(out).all()


def test_padding_leaves_aligned_sizes_untouched():
    model = tiny()
    x = torch.rand(1, 5, 3, 16, 20)
    out = run(model, x)
    out_cropped_input = run(model, x[..., :15, :19])
    assert out.shape == (1, 3, 64, 80) and out_cropped_input.shape == (1, 3, 60, 76)
    padded, pads = pad_to_multiple(x, 4)
    assert padded is x and pads == (0, 0)


def test_odd_sizes_are_padded_at_the_bottom_and_right_by_reflection():
    """The model on a 9x11 frame is the model on that frame mirrored (numpy's "reflect": the edge row not repeated) to
    12x12 at the bottom and right, cropped back; padding on another side or by another rule moves the output."""
    model = tiny()
    x = torch.rand(1, 5, 3, 9, 11, generator=torch.Generator().manual_seed(3))
    by_hand = torch.from_numpy(np.pad(x.numpy(), [(0, 0)] * 3 + [(0, 3), (0, 1)], mode="reflect"))
    assert torch.equal(run(model, x), run(model, by_hand)[..., :36, :44])


@pytest.mark.parametrize("kw", [{}, {"hr_in": True, "with_predeblur": True}])
def test_x4_tail_in_bands_equals_whole_frames(kw, monkeypatch):
    """The x4 tail runs in bands of rows with TAIL_HALO rows of context: in float64 the bands give the whole-frame
    output to the last bits (a band's zero padding never reaches the rows it keeps); one row fewer of context does
    not."""
    from edvr.models import edvr as module

    model = tiny(**kw).double()
    x = torch.rand(2, 5, 3, *((64, 48) if kw else (21, 12)), dtype=torch.float64)
    whole = run(model, x)
    monkeypatch.setattr(module, "TAIL_MIN_ROWS", 1)
    for pixels in (1, 2 * 12 * 2, 2 * 12 * 5):  # bands of 1, 2 and 5 rows of the (2, nf, 21 or 16, 12) map
        model.tail_band_pixels = pixels
        torch.testing.assert_close(run(model, x), whole, rtol=0, atol=1e-13)
    calls = []
    tail = model._tail
    monkeypatch.setattr(model, "_tail", lambda *a: calls.append(1) or tail(*a))
    model(x).sum().backward()  # training: one band (autograd would keep every band's activations anyway)
    assert len(calls) == 1
    monkeypatch.setattr(module, "TAIL_HALO", module.TAIL_HALO - 1)
    assert (run(model, x) - whole).abs().max() > 1e-4


def test_fast_forms_equal_the_plain_ops():
    """The speed rewrites of the forward pass: pixel shuffle by permuted conv outputs equals lrelu(pixel_shuffle(conv))
    exactly, with and without autograd; the offset conv split in two equals the 216-channel conv + chunk + cat."""
    import torch.nn.functional as F

    from edvr.models.blocks import LRELU_SLOPE, DCNPack, conv_pixel_shuffle

    torch.manual_seed(0)
    conv = torch.nn.Conv2d(8, 32, 3, 1, 1)
    x = torch.rand(2, 8, 6, 10).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        assert torch.equal(conv_pixel_shuffle(conv, x), F.leaky_relu(F.pixel_shuffle(conv(x), 2), LRELU_SLOPE))
    y = conv_pixel_shuffle(conv, x)
    y.sum().backward()
    assert y.shape == (2, 8, 12, 20) and conv.weight.grad is not None
    pack = DCNPack(16, deformable_groups=2)
    torch.nn.init.normal_(pack.conv_offset.weight)
    feat = torch.rand(1, 16, 5, 7)
    with torch.no_grad():
        offset, mask = pack.offsets_and_mask(feat)
        o1, o2, m = torch.chunk(pack.conv_offset(feat), 3, dim=1)
    torch.testing.assert_close(offset, torch.cat((o1, o2), dim=1), rtol=0, atol=1e-5)
    torch.testing.assert_close(mask, torch.sigmoid(m), rtol=0, atol=1e-6)


def test_compiled_tail_passes_equal_the_plain_ops(monkeypatch):
    """The x4 tail's compiled passes (CPU inference): activation + pixel shuffle gives the same numbers exactly; the
    last conv + base the same sums in another order; where they decline (autograd, a conv they do not handle, a
    failed compiler), the plain ops run."""
    from edvr.models import blocks
    from edvr.ops import compiled

    monkeypatch.setattr(compiled, "_state", {"fns": {}, "error": None})
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(8, 32, 3, 1, 1)
    x = torch.randn(2, 8, 6, 10).contiguous(memory_format=torch.channels_last)
    last = torch.nn.Conv2d(8, 3, 3, 1, 1)
    base = torch.rand(2, 3, 6, 10)
    with torch.inference_mode():
        plain = blocks.conv_pixel_shuffle(conv, x)
        fast = blocks.conv_pixel_shuffle(conv, x, fast=True)
        assert compiled.variants(blocks._lrelu_shuffle) == 1
        assert torch.equal(fast, plain) and fast.stride() == plain.stride()
        got = blocks.conv_add_compiled(last, x, base)
        assert compiled.variants(blocks._sum_taps_add) == 1
        assert got.is_contiguous()
        torch.testing.assert_close(got, base + last(x), rtol=0, atol=1e-6)
        assert blocks.conv_add_compiled(torch.nn.Conv2d(8, 3, 3, 1, 2, dilation=2), x, base) is None
    assert compiled.eligible(x, base) and not compiled.eligible(x.detach().requires_grad_(), base)
    assert not compiled.eligible(x, base.double())
    monkeypatch.setattr(compiled, "_compile", lambda fn: None)  # calling None fails like a broken compiler
    with torch.inference_mode(), pytest.warns(RuntimeWarning, match="compiled CPU kernels cannot run here"):
        assert torch.equal(blocks.conv_pixel_shuffle(conv, x[:1], fast=True), plain[:1])
    assert compiled.error() is not None and not compiled.eligible(x)


def test_infer_config_sees_every_architecture_choice(tmp_path):
    for kw in (dict(), dict(with_tsa=False), dict(num_frames=7), dict(hr_in=True, with_predeblur=True),
               dict(with_predeblur=True), dict(hr_in=True), dict(num_feat=16, deformable_groups=4),
               dict(num_extract_block=3, num_reconstruct_block=2), dict(with_alignment=False, deformable_groups=1),
               dict(with_alignment=False, with_tsa=False, deformable_groups=1)):
        model = tiny(**kw)
        assert infer_config(model.state_dict()) == model.config, kw
        torch.save(model.state_dict(), tmp_path / "bare.pth")  # and from a file: the naming is recognised too
        assert edvr.load_model(tmp_path / "bare.pth").config == model.config, kw


def test_without_alignment_the_neighbours_reach_fusion_unaligned():
    """The ablation switch: no PCD parameters, and a neighbour moved by a pixel feeds fusion exactly its own moved
    features (PCD would re-sample them)."""
    aligned, plain = tiny(), tiny(with_alignment=False)
    assert {k for k in aligned.state_dict() if k not in plain.state_dict()} == \
        {k for k in aligned.state_dict() if k.startswith("pcd_align.")}
    plain.load_state_dict(aligned.state_dict(), strict=False)
    x = torch.rand(1, 5, 3, 16, 16)
    with torch.no_grad():
        feats = [plain.encode(x[:, i]) for i in range(5)]
        fused = plain.align_and_fuse(feats)
        assert torch.equal(fused, plain.fusion.fuse_frames([f[0] for f in feats]))
        assert not torch.equal(aligned.align_and_fuse(feats), fused)


def test_mismatch_is_reported_as_keys_not_a_traceback(tmp_path):
    sd = tiny().state_dict()
    sd.pop("conv_hr.weight")
    sd["extra.weight"] = torch.zeros(1)
    sd["conv_last.bias"] = torch.zeros(5)
    torch.save({"params": sd}, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError) as e:
        edvr.load_model(tmp_path / "bad.pth")
    msg = str(e.value)
    assert "1 missing: conv_hr.weight" in msg and "1 unexpected: extra.weight" in msg
    assert "conv_last.bias (file [5], model [3])" in msg and "\n" not in msg


def test_pickle_that_runs_code_is_refused(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            import os

            return (os.system, (f"touch {marker}",))

    torch.save({"params": {"conv_first.weight": torch.zeros(1)}, "evil": Evil()}, tmp_path / "evil.pth")
    with pytest.raises(CheckpointError, match="refused"):
        edvr.load_model(tmp_path / "evil.pth")
    assert not marker.exists()


def test_pickles_are_not_opened_by_a_pytorch_whose_safe_loader_is_not(tmp_path, monkeypatch):
    torch.save({"params": tiny().state_dict()}, tmp_path / "m.pth")
    monkeypatch.setattr(torch, "__version__", "2.5.1+cu121")
    with pytest.raises(CheckpointError, match=r"before PyTorch 2.6 .* \(CVE-2025-32434\), and this is 2.5.1"):
        read_checkpoint(tmp_path / "m.pth")


def test_a_name_with_a_hash_is_checked_on_every_path(tmp_path, capsys):
    import hashlib

    from edvr.cli import main

    path = tmp_path / "EDVR_M_x4_SR_REDS_official-32075921.pth"  # an official name, other bytes
    torch.save({"params": tiny().state_dict()}, path)
    assert not hashlib.sha256(path.read_bytes()).hexdigest().startswith("32075921")
    with pytest.warns(RuntimeWarning, match="does not match the 32075921 in its name"):
        read_checkpoint(path)  # by path, not only by model name
    with pytest.warns(RuntimeWarning, match="does not match"):
        assert main(["info", str(path)]) == 0
    dated = tmp_path / "my_run-20241125.pth"  # not an official name: eight digits are not a hash
    dated.write_bytes(path.read_bytes())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read_checkpoint(dated)


def test_an_offset_conv_of_no_whole_group_is_one_line(tmp_path):
    sd = tiny().state_dict()
    sd["pcd_align.dcn_pack.l1.conv_offset.weight"] = sd["pcd_align.dcn_pack.l1.conv_offset.weight"][:20]
    torch.save(sd, tmp_path / "g0.pth")
    with pytest.raises(CheckpointError, match="g0.pth: describes no valid EDVR .*20 outputs, not 27 per group"):
        read_checkpoint(tmp_path / "g0.pth")


def test_not_a_checkpoint(tmp_path):
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        edvr.load_model(tmp_path / "junk.pth")
    torch.save({"params": {"something.else": torch.zeros(2)}}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match="not an EDVR checkpoint"):
        edvr.load_model(tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match="neither a file.* nor a model name"):
        edvr.load_model(tmp_path / "missing.pth")
    shipped = Path(edvr.__file__).parent / "weights" / "edvr_s_real_x4.safetensors"
    (tmp_path / "cut.safetensors").write_bytes(shipped.read_bytes()[:100_000])  # an interrupted download
    with pytest.raises(CheckpointError, match="cut.safetensors: not a readable safetensors file"):
        edvr.load_model(tmp_path / "cut.safetensors")


def test_training_state_keeps_its_centre_frame(tmp_path):
    """The centre frame does not show in the weights; a training state records it in its config, and loading or
    converting it keeps it (a model trained on frame 0 as reference must not be run with frame 1)."""
    net = tiny(num_frames=3, center_frame_idx=0)
    path = save_training_state({"model": net.state_dict(), "ema": None, "optimizer": {},
                                "config": {"model": {"num_frames": 3, "center_frame_idx": 0}}},
                               tmp_path / "checkpoints", 10, keep=1)
    assert read_checkpoint(path).config.center_frame_idx == 0
    assert read_checkpoint(path, param_key="model").config.center_frame_idx == 0  # the non-EMA weights, picked
    x = torch.rand(1, 3, 3, 16, 16)
    assert torch.equal(run(edvr.load_model(path), x), run(net, x))
    torch.save(net.state_dict(), tmp_path / "bare.pth")  # a bare state dict: the middle frame, as every official model
    assert read_checkpoint(tmp_path / "bare.pth").config.center_frame_idx is None


def test_bad_checkpoint_files_are_one_line_errors(tmp_path):
    from edvr.errors import OutputError

    net = tiny()
    torch.save({"params": net.state_dict(), "iter": 5}, tmp_path / "bs.pth")
    with pytest.raises(CheckpointError, match="entry 'iter' holds int, not weights"):
        read_checkpoint(tmp_path / "bs.pth", param_key="iter")
    with pytest.raises(CheckpointError, match="is a folder"):
        read_checkpoint(tmp_path)
    # metadata describing an impossible architecture, or not JSON at all
    good = save_checkpoint(net.state_dict(), net.config, tmp_path / "good.safetensors")
    from safetensors.torch import load_file, save_file

    tensors = load_file(good)
    bad_cfg = {**net.config.to_dict(), "center_frame_idx": 7}
    for name, meta in (("centre.safetensors", json.dumps(bad_cfg)), ("json.safetensors", "{not json"),
                       ("list.safetensors", "[1, 2]")):
        save_file(tensors, tmp_path / name, metadata={"format": "edvr", "edvr_config": meta})
        with pytest.raises(CheckpointError, match=f"{name}: describes no valid EDVR"):
            read_checkpoint(tmp_path / name)
    # MSRResNet from the original EDVR repository shares recon_trunk / HRconv with EDVR's names
    msrresnet = {"conv_first.weight": torch.zeros(64, 3, 3, 3), "recon_trunk.0.conv1.weight": torch.zeros(64, 64, 3, 3),
                 "HRconv.weight": torch.zeros(64, 64, 3, 3), "conv_last.weight": torch.zeros(3, 64, 3, 3)}
    torch.save(msrresnet, tmp_path / "msrresnet.pth")
    with pytest.raises(CheckpointError, match="not an EDVR checkpoint"):
        read_checkpoint(tmp_path / "msrresnet.pth")
    # a cut-off download: the message says so
    torch.save({"params": net.state_dict()}, tmp_path / "full.pth")
    (tmp_path / "cut.pth").write_bytes((tmp_path / "full.pth").read_bytes()[:5000])
    with pytest.raises(CheckpointError, match="fetch it again"):
        read_checkpoint(tmp_path / "cut.pth")
    # an output that cannot be written
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(OutputError, match="cannot be written"):
        save_checkpoint(net.state_dict(), net.config, blocker / "out.safetensors")


def test_named_model_found_in_weights_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("EDVR_WEIGHTS_DIR", str(tmp_path))
    with pytest.raises(CheckpointError, match="EDVR_M_x4_SR_REDS_official-32075921.pth"):
        edvr.load_model("edvr-m-reds")
    record = MODELS["edvr-m-reds"]
    torch.save(EDVR(**record.config.to_dict()).state_dict(), tmp_path / "EDVR_REDS_SR_M.pth")
    model = edvr.load_model("edvr-m-reds")
    assert model.config == record.config
    # A file under a model's name that holds another architecture is refused.
    torch.save(tiny().state_dict(), tmp_path / "EDVR_REDS_SR_L.pth")
    with pytest.raises(CheckpointError, match="edvr-l-reds"):
        edvr.load_model("edvr-l-reds")


def test_bare_file_name_found_in_weights_dir(tmp_path, monkeypatch):
    """``--model EDVR_L_x4_SR_REDS_official-9f5f5039.pth`` finds the file where the named models are looked for; a
    path with a folder is taken as it is."""
    cache, here = tmp_path / "cache", tmp_path / "here"
    cache.mkdir()
    here.mkdir()
    monkeypatch.setenv("EDVR_WEIGHTS_DIR", str(cache))
    monkeypatch.chdir(here)
    net = tiny()
    torch.save({"params": net.state_dict()}, cache / "mine.pth")
    model = edvr.load_model("mine.pth")
    assert str(cache / "mine.pth") in model.source
    with pytest.raises(CheckpointError, match="neither a file"):
        edvr.load_model("sub/mine.pth")
    torch.save({"params": tiny().state_dict()}, here / "mine.pth")  # the current folder comes first
    assert edvr.load_model("mine.pth").source.startswith("mine.pth")


def test_convert_cli_roundtrip(tmp_path, capsys):
    from edvr.cli import main

    fx = load_fixture("public_deblur_tiny")
    torch.save({k: v for k, v in to_original_names(fx["state_dict"]).items()}, tmp_path / "orig.pth")
    assert main(["convert", str(tmp_path / "orig.pth"), str(tmp_path / "ours.safetensors")]) == 0
    assert "original" in capsys.readouterr().out
    loaded = read_checkpoint(tmp_path / "ours.safetensors")
    assert loaded.format == "edvr" and loaded.config.hr_in and loaded.config.with_predeblur
    model = edvr.load_model(tmp_path / "ours.safetensors")
    assert (run(model, fx["input"]) - fx["output"]).abs().max().item() < 1e-4
    # Refuses to overwrite without --overwrite; one line on stderr, non-zero exit.
    assert main(["convert", str(tmp_path / "orig.pth"), str(tmp_path / "ours.safetensors")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--overwrite" in err
    assert main(["info", str(tmp_path / "ours.safetensors")]) == 0
    assert "hr_in: True" in capsys.readouterr().out


def test_models_cli_lists_every_preset(capsys):
    from edvr.cli import main

    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for name, record in MODELS.items():
        assert name in out
        for f in record.files:
            assert f in out
    assert "3.30M" in out and "20.63M" in out
