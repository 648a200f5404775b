"""Protocols and evaluate(): clip selection, temporal padding at clip ends, averaging order, baselines, results.

The datasets are made here, tiny, in the REDS / Vid4 / Vimeo90K layouts. A recording stub (a real nn.Module) reads
which frame indices each window holds from the pixel values, so the padding seen by the model is asserted directly.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from edvr.errors import InputError
from edvr.evaluation.evaluate import Result, evaluate
from edvr.evaluation.metrics import psnr
from edvr.evaluation.protocols import PROTOCOLS, get_protocol
from edvr.inference.video_io import read_image, write_image
from edvr.models.edvr import EDVR, EDVRConfig


def _code_image(value_r: int, value_g: int, h: int, w: int) -> np.ndarray:
    img = np.zeros((h, w, 3), np.uint8)
    img[..., 0], img[..., 1], img[..., 2] = value_r, value_g, 128
    return img


def _write_clip(folder: Path, n: int, h: int, w: int, clip_code: int, names=None) -> None:
    # Red carries the frame index, green the clip: the stub decodes both from what the model receives.
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        name = names[i] if names else f"{i:08d}.png"
        write_image(folder / name, _code_image(10 + 20 * i, 10 + 20 * clip_code, h, w))


class Recorder(nn.Module):
    """Returns the nearest-upsampled centre frame; records (clip code, frame indices) of every window."""

    def __init__(self, num_frames: int = 5, hr_in: bool = False, with_predeblur: bool = False) -> None:
        super().__init__()
        self.config = EDVRConfig(num_frames=num_frames, num_feat=8, deformable_groups=2, hr_in=hr_in,
                                 with_predeblur=with_predeblur)
        self.anchor = nn.Parameter(torch.zeros(1))  # gives evaluate() a device to read
        self.windows: list[tuple[int, list[int]]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        codes = torch.round(x[0, :, :, 0, 0] * 255).long()  # (T, C)
        frames = [int((c - 10) // 20) for c in codes[:, 0]]
        self.windows.append((int((codes[0, 1] - 10) // 20), frames))
        center = x[:, self.config.center]
        return F.interpolate(center, scale_factor=self.config.scale, mode="nearest")


def _reds(root: Path, n: int = 6, lq_dir: str = "train_sharp_bicubic/X4", scale: int = 4) -> Path:
    for code, clip in enumerate(["000", "001", "011", "015", "020"]):
        _write_clip(root / "train_sharp" / clip, n, 16, 16, code)
        _write_clip(root / lq_dir / clip, n, 16 // scale, 16 // scale, code)
    return root


def _evaluate(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tiny clips are shorter than the protocol's: warned, expected here
        return evaluate(*args, **kwargs)


def test_registry_names_and_facts():
    assert {"reds4", "reds4-srblur", "reds4-deblur", "reds4-deblurcomp", "vid4", "vid4-bd", "vimeo90k-t"} <= set(
        PROTOCOLS)
    r = PROTOCOLS["reds4"]
    assert r.clips == ("000", "011", "015", "020") and r.padding == "reflection_circle" and not r.y_channel
    assert r.crop_border == 0 and r.num_frames == 5 and r.expected_frames == {c: 100 for c in r.clips}
    for name in ("reds4-srblur", "reds4-deblur", "reds4-deblurcomp"):
        assert PROTOCOLS[name].padding == "replicate"
    assert PROTOCOLS["reds4-deblur"].scale == 1 and PROTOCOLS["reds4-srblur"].scale == 4
    v = PROTOCOLS["vid4"]
    assert v.y_channel and v.crop_border == 0 and v.num_frames == 7 and sum(v.expected_frames.values()) == 171
    assert PROTOCOLS["vimeo90k-t"].center_only and PROTOCOLS["vimeo90k-t"].y_channel
    with pytest.raises(InputError, match="unknown protocol"):
        get_protocol("reds5")
    with pytest.raises(InputError, match="subsets"):
        get_protocol("reds4:fast")


def test_reds4_selects_only_its_clips_and_pads_reflection_circle(tmp_path):
    root = _reds(tmp_path)
    stub = Recorder()
    result = _evaluate(stub, "reds4", root, baselines=(), compute_ssim=False)
    assert result.clips == ["000", "011", "015", "020"]
    seen_clips = {code for code, _ in stub.windows}
    assert seen_clips == {0, 2, 3, 4}  # clip 001 (code 1) is not in REDS4
    first_clip = [w for code, w in stub.windows if code == 0]
    assert len(first_clip) == 6
    # reflection_circle (the original repo's new_info) at both ends of a 6-frame clip
    assert first_clip[0] == [4, 3, 0, 1, 2]
    assert first_clip[1] == [4, 0, 1, 2, 3]
    assert first_clip[2] == [0, 1, 2, 3, 4]
    assert first_clip[4] == [2, 3, 4, 5, 1]
    assert first_clip[5] == [3, 4, 5, 2, 1]
    assert not result.complete  # 6 of 100 frames per clip
    assert "PARTIAL" in result.table()


def test_reds4_deblur_pads_replicate_and_needs_a_scale1_model(tmp_path):
    root = _reds(tmp_path, lq_dir="train_blur", scale=1)
    with pytest.raises(InputError, match="reds4-deblur"):
        _evaluate(Recorder(), "reds4-deblur", root)  # an x4 model on a x1 protocol: told which protocols fit
    stub = Recorder(hr_in=True)
    _evaluate(stub, "reds4-deblur", root, baselines=(), compute_ssim=False)
    first_clip = [w for code, w in stub.windows if code == 0]
    assert first_clip[0] == [0, 0, 0, 1, 2]
    assert first_clip[5] == [3, 4, 5, 5, 5]


def test_models_run_in_true_float32_and_the_switches_are_restored(tmp_path):
    # PyTorch runs float32 convs in TF32 on Ampere+ GPUs by default; scores must be float32's, from Python too.
    from edvr.evaluation.evaluate import tf32_switches

    root = _reds(tmp_path)
    switches, attr, tf32, ieee = tf32_switches()
    before = [getattr(s, attr) for s in switches]
    seen = []
    try:
        for s in switches:
            setattr(s, attr, tf32)
        _evaluate(Recorder(), "reds4", root, baselines=(), compute_ssim=False,
                  on_frame=lambda _: seen.append([getattr(s, attr) for s in switches]))
        assert seen and all(v == [ieee, ieee] for v in seen)
        assert [getattr(s, attr) for s in switches] == [tf32, tf32]
    finally:
        for s, value in zip(switches, before):
            setattr(s, attr, value)


def test_a_model_of_the_other_sr_track_is_scored_and_said_to_be(tmp_path):
    root = _reds(tmp_path)
    _reds(tmp_path, lq_dir="train_blur_bicubic/X4")
    clean = _evaluate(Recorder(), "reds4", root, baselines=(), compute_ssim=False)
    assert not any("PreDeblur" in n for n in clean.settings["notes"])
    blurred = _evaluate(Recorder(), "reds4-srblur", root, baselines=(), compute_ssim=False)
    assert any("has no PreDeblur; reds4-srblur is the srblur track" in n for n in blurred.settings["notes"])
    with warnings.catch_warnings(record=True) as caught:  # (with the tiny clips' "not comparable" ones)
        warnings.simplefilter("always")
        evaluate(Recorder(with_predeblur=True), "reds4", root, baselines=(), compute_ssim=False)
    assert any("has a PreDeblur front end" in str(w.message) for w in caught)


def test_missing_clip_is_an_input_error(tmp_path):
    root = _reds(tmp_path)
    for p in (root / "train_sharp" / "015").iterdir():
        p.unlink()
    (root / "train_sharp" / "015").rmdir()
    with pytest.raises(InputError, match="015"):
        _evaluate(Recorder(), "reds4", root)


def _vid4(root: Path, lengths: dict[str, int]) -> Path:
    # LQ constant per clip; GT differs per frame, so per-frame errors are known and unequal across clips.
    rng = np.random.default_rng(0)
    for code, (clip, n) in enumerate(lengths.items()):
        (root / "BIx4" / clip).mkdir(parents=True)
        (root / "GT" / clip).mkdir(parents=True)
        for i in range(n):
            lq = _code_image(10 + 20 * i, 10 + 20 * code, 4, 4)
            write_image(root / "BIx4" / clip / f"{i:08d}.png", lq)
            gt = np.clip(np.repeat(np.repeat(lq, 4, 0), 4, 1).astype(int) + rng.integers(-40, 40, (16, 16, 3)), 0, 255)
            write_image(root / "GT" / clip / f"{i:08d}.png", gt.astype(np.uint8))
    return root


def test_vid4_averages_frames_within_clips_then_clips_on_y(tmp_path):
    lengths = {"calendar": 1, "city": 4, "foliage": 2, "walk": 7}
    root = _vid4(tmp_path, lengths)
    stub = Recorder(num_frames=7)
    result = _evaluate(stub, "vid4", root, baselines=(), compute_ssim=False)
    from edvr.inference.video_io import read_image

    expected = {}
    for clip, n in lengths.items():
        vals = []
        for i in range(n):
            lq = np.round(read_image(root / "BIx4" / clip / f"{i:08d}.png") * 255).astype(np.uint8)
            out = np.repeat(np.repeat(lq, 4, 0), 4, 1)
            gt = np.round(read_image(root / "GT" / clip / f"{i:08d}.png") * 255).astype(np.uint8)
            vals.append(psnr(out, gt, y_channel=True))
        expected[clip] = vals
    scores = result.methods["edvr"]
    for clip in lengths:
        assert scores.psnr[clip] == pytest.approx(expected[clip], abs=1e-9)
    clip_then_clips = np.mean([np.mean(v) for v in expected.values()])
    all_frames = np.mean([x for v in expected.values() for x in v])
    assert abs(clip_then_clips - all_frames) > 0.05  # the data tells the two orders apart
    assert result.mean() == pytest.approx(clip_then_clips, abs=1e-9)
    # the metric is on Y: the RGB PSNR of the first frame is a different number
    rgb = psnr(np.repeat(np.repeat(np.round(read_image(root / "BIx4/calendar/00000000.png") * 255).astype(np.uint8),
                                   4, 0), 4, 1),
               np.round(read_image(root / "GT/calendar/00000000.png") * 255).astype(np.uint8))
    assert abs(rgb - expected["calendar"][0]) > 0.01


def test_vimeo90k_t_scores_the_centre_frame_of_each_listed_septuplet(tmp_path):
    seqs = ["00001/0001", "00001/0002", "00002/0007"]
    for code, s in enumerate(seqs):
        names = [f"im{i}.png" for i in range(1, 8)]
        _write_clip(tmp_path / "vimeo_septuplet/sequences" / s, 7, 16, 16, code, names)
        _write_clip(tmp_path / "vimeo_septuplet_matlabLRx4/sequences" / s, 7, 4, 4, code, names)
    (tmp_path / "vimeo_septuplet/sep_testlist.txt").write_text("\n".join(seqs[:2]) + "\n")
    (tmp_path / "meta_info_Vimeo90K_test_fast_GT.txt").write_text("00002/0007 7 (256,448,3)\n")
    stub = Recorder(num_frames=5)
    result = _evaluate(stub, "vimeo90k-t", tmp_path, baselines=(), compute_ssim=False)
    assert result.clips == seqs[:2]
    assert [w for _, w in stub.windows] == [[1, 2, 3, 4, 5]] * 2  # im2..im6 around im4, no padding
    assert all(len(v) == 1 for v in result.methods["edvr"].psnr.values())
    stub.windows.clear()
    fast = _evaluate(stub, "vimeo90k-t:fast", tmp_path, baselines=(), compute_ssim=False)
    assert fast.clips == ["00002/0007"] and fast.protocol == "vimeo90k-t:fast"
    assert not result.complete and fast.complete  # 2 of the 7824 test septuplets; the subset's list is its own
    # --clips naming every clip is the whole set (it was marked partial)
    assert _evaluate(stub, "vimeo90k-t:fast", tmp_path, baselines=(), compute_ssim=False, clips=["00002/0007"]).complete
    with pytest.warns(UserWarning, match="2 sequences listed, the full test set has 7824"):
        evaluate(stub, "vimeo90k-t", tmp_path, baselines=(), compute_ssim=False)
    with pytest.raises(InputError, match="7 frames"):
        _evaluate(Recorder(num_frames=9), "vimeo90k-t", tmp_path, baselines=())


def test_baselines_bicubic_and_single_frame(tmp_path):
    root = _reds(tmp_path, n=3)
    stub = Recorder()
    result = _evaluate(stub, "reds4", root, compute_ssim=False, clips=["011"])
    assert list(result.methods) == ["edvr", "bicubic", "single-frame"]
    # single-frame: the model sees its centre frame in every slot
    singles = [w for _, w in stub.windows if len(set(w)) == 1]
    assert sorted(s[0] for s in singles) == [0, 1, 2]
    # bicubic of a constant image is that constant; the nearest-upsampling stub gives the same -> same PSNR
    assert result.methods["bicubic"].psnr["011"] == pytest.approx(result.methods["edvr"].psnr["011"])


def test_bicubic_baseline_is_matlab_imresize_of_the_centre_frame(tmp_path):
    """On textured frames, where nearest, bilinear or another bicubic would score otherwise: imresize is checked
    against MATLAB's own formula in test_degradations."""
    from edvr.data.degradations import imresize
    from edvr.evaluation.metrics import to_uint8

    root = tmp_path / "REDS"
    rng = np.random.default_rng(5)
    for clip in ("000", "011", "015", "020"):
        (root / "train_sharp" / clip).mkdir(parents=True)
        (root / "train_sharp_bicubic/X4" / clip).mkdir(parents=True)
        for i in range(2):
            gt = rng.random((16, 16, 3)).astype(np.float32)
            write_image(root / "train_sharp" / clip / f"{i:08d}.png", gt)
            write_image(root / "train_sharp_bicubic/X4" / clip / f"{i:08d}.png", rng.random((4, 4, 3)))
    result = _evaluate(Recorder(), "reds4", root, compute_ssim=False, baselines=("bicubic",), clips=["000"])
    for i in range(2):
        lq = np.round(read_image(root / f"train_sharp_bicubic/X4/000/{i:08d}.png") * 255) / 255
        gt = np.round(read_image(root / f"train_sharp/000/{i:08d}.png") * 255).astype(np.uint8)
        expected = psnr(to_uint8(np.asarray(imresize(lq.astype(np.float32), 4))), gt)
        assert result.methods["bicubic"].psnr["000"][i] == pytest.approx(expected, abs=1e-9)


def test_tiny_edvr_end_to_end_table_json_and_saved_images(tmp_path):
    root = _reds(tmp_path / "REDS", n=3)
    torch.manual_seed(0)
    model = EDVR(num_feat=8, num_extract_block=1, num_reconstruct_block=1, deformable_groups=2)
    result = _evaluate(model, "reds4", root, max_frames=2, save_dir=tmp_path / "out", model_name="tiny")
    assert all(len(v) == 2 for v in result.methods["edvr"].psnr.values())
    assert len(result.methods["edvr"].ssim["000"]) == 2
    table = result.table()
    mean_row = [line for line in table.splitlines() if line.startswith("reds4 ")]
    assert len(mean_row) == 1 and f"{result.mean():.2f}" in mean_row[0]  # the number sits beside the name
    assert "published on reds4: EDVR-M 30.53" in table
    back = Result.from_json(result.to_json())
    assert back.mean() == pytest.approx(result.mean()) and back.clips == result.clips
    assert json.loads(result.to_json())["protocol"] == "reds4"
    assert sorted(p.name for p in (tmp_path / "out" / "000").iterdir()) == ["00000000.png", "00000001.png"]
    # the saved PNG is the scored output: re-scoring it gives the stored PSNR
    from edvr.inference.video_io import read_image

    out = np.round(read_image(tmp_path / "out/000/00000000.png") * 255).astype(np.uint8)
    gt = np.round(read_image(root / "train_sharp/000/00000000.png") * 255).astype(np.uint8)
    assert psnr(out, gt) == pytest.approx(result.methods["edvr"].psnr["000"][0])


def test_saved_images_never_go_into_the_dataset(tmp_path):
    """--save-images inside the root (e.g. its GT folder) once replaced the dataset's frames with the model's."""
    root = _reds(tmp_path / "REDS", n=3)
    gt = root / "train_sharp" / "000" / "00000000.png"
    before = gt.read_bytes()
    model = EDVR(num_feat=8, num_extract_block=1, num_reconstruct_block=1, deformable_groups=2)
    for save in (root / "train_sharp", root):
        with pytest.raises(InputError, match="would go inside the dataset root"):
            _evaluate(model, "reds4", root, max_frames=1, save_dir=save)
    assert gt.read_bytes() == before
    _evaluate(model, "reds4", root, max_frames=1, save_dir=tmp_path)  # above the root: tmp_path/000/... is safe
    assert (tmp_path / "000" / "00000000.png").is_file() and gt.read_bytes() == before


def test_an_lq_frame_of_another_size_is_named(tmp_path):
    root = _reds(tmp_path / "REDS", n=3)
    odd = root / "train_sharp_bicubic/X4/000/00000001.png"
    write_image(odd, np.zeros((8, 4, 3), np.float32))
    model = EDVR(num_feat=8, num_extract_block=1, num_reconstruct_block=1, deformable_groups=2)
    with pytest.raises(InputError, match=r"00000001.png: 4x8, but .*png is 4x4"):
        _evaluate(model, "reds4", root, max_frames=1, clips=["000"])
