"""Self-ensemble (x8 flips/transposes, time reversal) and two-stage restoration."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from edvr.data.frames import window_indices
from edvr.evaluation.ensemble import Stage2Runner, ensemble_forward, quantize, resolve_mode, transforms
from edvr.evaluation.evaluate import evaluate
from edvr.inference.video_io import write_image
from edvr.models.edvr import EDVR

TINY = {"num_feat": 8, "num_extract_block": 1, "num_reconstruct_block": 1, "deformable_groups": 2}


def _tiny(seed: int = 0, **kw) -> EDVR:
    torch.manual_seed(seed)
    model = EDVR(**TINY, **kw).eval()
    # Default init zeroes the DCN offsets and keeps the residual small; perturbing every weight makes the model
    # clearly sensitive to flips and to the frame order, so the ensemble tests can tell modes apart.
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model


def test_group_has_eight_distinct_invertible_elements():
    x = torch.arange(2 * 3 * 4, dtype=torch.float32).reshape(1, 2, 3, 4)
    images = {tuple(t.apply(x).flatten().tolist()) + tuple(t.apply(x).shape) for t in transforms("x8")}
    assert len(images) == 8
    for t in transforms("x8"):
        assert torch.equal(t.invert(t.apply(x)), x)
    assert len(transforms("flip4")) == 4 and all(not t.transpose for t in transforms("flip4"))


def _zero_residual(model: EDVR) -> EDVR:
    with torch.no_grad():
        model.conv_last.weight.zero_()
        model.conv_last.bias.zero_()
    return model


def test_ensemble_of_identity_like_edvr_is_exact():
    # HR-input EDVR with conv_last zeroed returns its centre frame exactly; every transform commutes with that
    # bit for bit, and the float64 sum / power-of-two count must give it back unchanged.
    model = _zero_residual(_tiny(hr_in=True))
    x = torch.rand(1, 5, 3, 16, 32)
    assert torch.equal(model(x), x[:, 2])
    for mode in ("flip4", "x8", "x8t"):
        assert torch.equal(ensemble_forward(model, x, mode), x[:, 2]), mode


def test_ensemble_of_zero_residual_sr_edvr_is_its_bilinear_upsample():
    # Output = bilinear x4 of the centre frame: equivariant up to float32 rounding inside the interpolation.
    model = _zero_residual(_tiny())
    x = torch.rand(1, 5, 3, 8, 12)
    up = F.interpolate(x[:, 2], scale_factor=4, mode="bilinear", align_corners=False)
    assert torch.equal(model(x), up)
    for mode in ("flip4", "x8", "x8t"):
        out = ensemble_forward(model, x, mode)
        assert out.shape == up.shape and (out - up).abs().max() < 2e-7, mode


def test_ensemble_of_tiny_edvr_equals_hand_computed_average():
    model = _tiny(1)
    x = torch.rand(1, 5, 3, 8, 12)
    with torch.no_grad():
        # The dihedral group written another way: rotations by k*90 degrees, each with and without a W flip.
        def run(window: torch.Tensor) -> list[torch.Tensor]:
            outs = []
            for k in range(4):
                for flip in (False, True):
                    w = torch.rot90(window, k, dims=(-2, -1))
                    w = w.flip(-1) if flip else w
                    y = model(w)
                    y = y.flip(-1) if flip else y
                    outs.append(torch.rot90(y, -k, dims=(-2, -1)))
            return outs

        spatial = run(x)
        expected_x8 = torch.stack(spatial).mean(0)
        expected_x8t = torch.stack(spatial + run(x.flip(1))).mean(0)
        plain = model(x)
    x8 = ensemble_forward(model, x, "x8")
    x8t = ensemble_forward(model, x, "x8t")
    assert torch.allclose(x8, expected_x8, atol=1e-5)
    assert torch.allclose(x8t, expected_x8t, atol=1e-5)
    assert (x8 - plain).abs().max() > 1e-3  # the ensemble is not a no-op on this model
    assert (x8t - x8).abs().max() > 1e-3  # nor is the time reversal


def test_time_reversal_only_for_a_centred_window():
    model = _tiny(center_frame_idx=1)
    assert resolve_mode(model, True) == "x8"
    with pytest.raises(ValueError, match="x8"):
        resolve_mode(model, "x8t")
    assert resolve_mode(_tiny(), True) == "x8t"


def _stage2_model() -> EDVR:
    # The original repo's "Stage 2": HR input without PreDeblur.
    return _tiny(2, hr_in=True, with_predeblur=False)


@pytest.mark.parametrize("padding", ["reflection_circle", "replicate"])
def test_stage2_stream_equals_direct_windows_and_holds_bounded_memory(padding):
    stage2 = _stage2_model()
    n = 8
    frames = [torch.rand(3, 16, 16) for _ in range(n)]
    runner = Stage2Runner(stage2, padding=padding)
    got = {}
    for f in frames:
        for i, out in runner.push(f):
            got[i] = out
        assert len(runner._frames) <= 2 * stage2.config.num_frames
    for i, out in runner.finish():
        got[i] = out
    assert sorted(got) == list(range(n))
    q = [quantize(f) for f in frames]
    with torch.no_grad():
        for i in range(n):
            window = torch.stack([q[j] for j in window_indices(i, 5, n, padding)]).unsqueeze(0)
            assert torch.allclose(got[i], stage2(window)[0], atol=1e-6), i


def _reds(root: Path, n: int) -> Path:
    rng = np.random.default_rng(0)
    for clip in ("000", "011", "015", "020"):
        (root / "train_sharp" / clip).mkdir(parents=True)
        (root / "train_sharp_bicubic/X4" / clip).mkdir(parents=True)
        for i in range(n):
            gt = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
            write_image(root / "train_sharp" / clip / f"{i:08d}.png", gt)
            lq = gt.reshape(8, 4, 8, 4, 3).mean(axis=(1, 3)).round().astype(np.uint8)
            write_image(root / "train_sharp_bicubic/X4" / clip / f"{i:08d}.png", lq)
    return root


def test_two_stage_evaluation_end_to_end(tmp_path):
    root = _reds(tmp_path, n=4)
    stage1, stage2 = _tiny(3), _stage2_model()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = evaluate(stage1, "reds4", root, stage2=stage2, baselines=("bicubic",), compute_ssim=False,
                          max_frames=2)
        plain = evaluate(stage1, "reds4", root, baselines=(), compute_ssim=False, max_frames=2)
    assert list(result.methods) == ["edvr+stage2", "edvr-stage1", "bicubic"]
    assert all(len(v) == 2 for v in result.methods["edvr+stage2"].psnr.values())
    # stage 1 inside the two-stage run is the plain run
    assert result.methods["edvr-stage1"].psnr == plain.methods["edvr"].psnr
    assert result.methods["edvr+stage2"].psnr != plain.methods["edvr"].psnr
    assert "stage 2" in result.table()
    # Each two-stage score by hand: stage 1 on every frame, rounded to 8 bits, windows padded as in stage 1, stage 2.
    from edvr.evaluation.metrics import psnr, to_uint8
    from edvr.inference.video_io import read_image

    def pick(i: int, n: int = 4) -> list[int]:
        return window_indices(i, 5, n, "reflection_circle")

    lq = [torch.from_numpy(read_image(root / f"train_sharp_bicubic/X4/000/{i:08d}.png")).permute(2, 0, 1)
          for i in range(4)]
    with torch.no_grad():
        first = [quantize(stage1(torch.stack([lq[j] for j in pick(i)])[None])[0]) for i in range(4)]
        for i in range(2):
            out = to_uint8(stage2(torch.stack([first[j] for j in pick(i)])[None])[0])
            gt = np.round(read_image(root / f"train_sharp/000/{i:08d}.png") * 255).astype(np.uint8)
            assert result.methods["edvr+stage2"].psnr["000"][i] == pytest.approx(psnr(out, gt), abs=1e-3)


def test_two_stage_needs_an_hr_input_second_model(tmp_path):
    from edvr.errors import InputError

    root = _reds(tmp_path, n=2)
    with pytest.raises(InputError, match="hr_in"):
        evaluate(_tiny(), "reds4", root, stage2=_tiny(), baselines=())


def test_evaluate_with_ensemble_differs_from_plain_and_records_it(tmp_path):
    root = _reds(tmp_path, n=2)
    model = _tiny(4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ens = evaluate(model, "reds4", root, ensemble=True, baselines=(), compute_ssim=False, clips=["000"])
        plain = evaluate(model, "reds4", root, baselines=(), compute_ssim=False, clips=["000"])
    assert ens.settings["ensemble"] == "x8t"
    assert ens.methods["edvr"].psnr["000"] != plain.methods["edvr"].psnr["000"]
    # Each score is that of ensemble_forward's x8t output (checked against a hand-built average above), not of any
    # other mode: the evaluation's own path once could have used another and still differed from the plain run.
    from edvr.evaluation.metrics import psnr, to_uint8
    from edvr.inference.video_io import read_image

    lq = [torch.from_numpy(read_image(root / f"train_sharp_bicubic/X4/000/{i:08d}.png")).permute(2, 0, 1)
          for i in range(2)]
    for i in range(2):
        window = torch.stack([lq[j] for j in window_indices(i, 5, 2, "reflection_circle")]).unsqueeze(0)
        with torch.no_grad():
            out = to_uint8(ensemble_forward(model, window, "x8t")[0])
        gt = np.round(read_image(root / f"train_sharp/000/{i:08d}.png") * 255).astype(np.uint8)
        assert ens.methods["edvr"].psnr["000"][i] == pytest.approx(psnr(out, gt), abs=1e-3)
