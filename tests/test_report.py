"""Reports (PSNR plot, crops, Markdown), ``edvr compare`` deltas, and ``edvr eval`` from the command line."""

from __future__ import annotations

import argparse
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

from edvr.errors import InputError, OutputError
from edvr.evaluation import command
from edvr.evaluation.evaluate import FrameOutputs, Result, Scores
from edvr.evaluation.report import compare, crops_panel, draw_text, markdown, plot_psnr, write_report
from edvr.inference.video_io import read_image, write_image
from edvr.models.edvr import EDVR


def _png_size(path: Path) -> tuple[int, int]:
    """Check the PNG structure independently of any decoder (signature, chunk CRCs, IHDR, IDAT, IEND)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks, idat = 8, [], b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
        assert zlib.crc32(kind + body) == crc
        chunks.append(kind)
        if kind == b"IDAT":
            idat += body
        pos += 12 + length
    assert chunks[0] == b"IHDR" and chunks[-1] == b"IEND" and b"IDAT" in chunks
    width, height = struct.unpack(">II", data[16:24])
    assert len(zlib.decompress(idat)) == height * (1 + width * 3)  # 8-bit RGB, one filter byte per row
    return width, height


def _result(name: str, per_clip: dict[str, list[float]], protocol: str = "reds4") -> Result:
    s = Scores()
    for clip, vals in per_clip.items():
        for i, v in enumerate(vals):
            s.add(clip, f"{i:08d}", v, 0.5 + v / 100)
    b = Scores()
    for clip, vals in per_clip.items():
        for i, v in enumerate(vals):
            b.add(clip, f"{i:08d}", v - 3, None)
    return Result(protocol, "summary", name, {"edvr": s, "bicubic": b}, {"metric_space": "RGB"})


def test_psnr_plot_is_a_valid_png_with_the_lines_drawn(tmp_path):
    r = _result("m", {"000": [30.0, 31.5, 29.0, 30.2], "011": [27.0, 28.0, 26.5], "015": [33.0, 32.0]})
    path = plot_psnr(r, tmp_path / "psnr.png", width=800, height=400)
    assert _png_size(path) == (800, 400)
    img = np.round(read_image(path) * 255).astype(int)
    blue = np.all(img == (31, 119, 180), axis=2).sum()  # first method's colour
    red = np.all(img == (214, 39, 40), axis=2).sum()
    assert blue > 200 and red > 200


def test_text_is_drawn_inside_the_canvas():
    canvas = np.full((20, 60, 3), 255, np.uint8)
    draw_text(canvas, "30.5 dB", 2, 2, scale=1)
    assert (canvas == 0).any() and (canvas[:, -5:] == 255).all()


def test_crops_panel_layout_and_content(tmp_path):
    rng = np.random.default_rng(0)
    gt = rng.integers(0, 256, (64, 96, 3), dtype=np.uint8)
    lq = gt[::4, ::4]
    panels = {"LQ": lq, "bicubic": np.full_like(gt, 128), "edvr": gt, "GT": gt}
    path = crops_panel(panels, tmp_path / "crops.png", size=48, zoom=4, psnr={"edvr": 40.0}, title="clip 000")
    w, _ = _png_size(path)
    assert w == 4 * (48 + 12) + 12
    img = np.round(read_image(path) * 255).astype(np.uint8)
    # the GT crop sits at its column, untouched apart from the inset frame
    top = 34 + 12
    gt_col = 12 + 3 * (48 + 12)
    crop = img[top + 4:top + 8, gt_col + 40:gt_col + 44]
    matches = [(y, x) for y in range(64 - 3) for x in range(96 - 3) if np.array_equal(gt[y:y + 4, x:x + 4], crop)]
    assert matches  # the panel shows pixels of the GT


def test_markdown_and_write_report(tmp_path):
    r = _result("tiny", {"000": [30.0, 31.0], "011": [28.0, 29.0]})
    md = markdown(r)
    assert "| **reds4 mean** | 4 |" in md and "30.50 / 0.8050" in md
    gt = np.zeros((16, 16, 3), np.uint8)
    frame = FrameOutputs("000", 0, "00000000", gt[::4, ::4], gt, {"edvr": gt, "bicubic": gt}, {"edvr": 30.0}, 0, 2)
    paths = write_report(r, tmp_path / "rep", [frame])
    names = sorted(p.name for p in paths)
    assert names == ["crops_000.png", "psnr.png", "report.md"]
    for p in paths:
        if p.suffix == ".png":
            _png_size(p)
    assert "![psnr](psnr.png)" in (tmp_path / "rep/report.md").read_text()


def test_compare_prints_per_clip_deltas(tmp_path, capsys):
    a = _result("A", {"000": [30.0, 30.0], "011": [28.0, 27.0]})
    b = _result("B", {"000": [31.0, 31.5], "011": [28.0, 26.0]})
    text = compare(a, b)
    rows = {line.split()[0]: line.split() for line in text.splitlines()[4:]}
    assert rows["000"][3] == "+1.250" and rows["011"][3] == "-0.500"
    assert rows["reds4"][3] == "+0.375"  # mean of clip deltas, labelled with the protocol
    with pytest.raises(InputError, match="different protocols"):
        compare(a, _result("C", {"000": [1.0]}, protocol="vid4"))
    # the command: both files written as edvr eval --json would
    (tmp_path / "a.json").write_text(a.to_json())
    (tmp_path / "b.json").write_text(b.to_json())
    parser = argparse.ArgumentParser()
    command.add_arguments(parser, "compare")
    args = parser.parse_args([str(tmp_path / "a.json"), str(tmp_path / "b.json")])
    args.command = "compare"
    assert command.run(args) == 0
    assert "+1.250" in capsys.readouterr().out
    args.a = str(tmp_path / "missing.json")
    with pytest.raises(InputError, match="missing.json"):
        command.run(args)


def test_compare_uses_only_frames_both_results_scored():
    a = _result("A", {"000": [30.0, 20.0]})
    b = _result("B", {"000": [31.0]})
    rows = {line.split()[0]: line.split() for line in compare(a, b).splitlines()[4:]}
    assert rows["000"][3] == "+1.000"


def test_edvr_eval_command_end_to_end(tmp_path, capsys):
    rng = np.random.default_rng(0)
    root = tmp_path / "REDS"
    for clip in ("000", "011", "015", "020"):
        (root / "train_sharp" / clip).mkdir(parents=True)
        (root / "train_sharp_bicubic" / clip).mkdir(parents=True)  # BasicSR's layout, without X4/
        for i in range(3):
            gt = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
            write_image(root / "train_sharp" / clip / f"{i:08d}.png", gt)
            write_image(root / "train_sharp_bicubic" / clip / f"{i:08d}.png", gt[::4, ::4])
    torch.manual_seed(0)
    model = EDVR(num_feat=8, num_extract_block=1, num_reconstruct_block=1, deformable_groups=2)
    ckpt = tmp_path / "tiny.pth"
    torch.save(model.state_dict(), ckpt)
    parser = argparse.ArgumentParser()
    command.add_arguments(parser, "eval")
    args = parser.parse_args(["--model", str(ckpt), "--protocol", "reds4", "--root", str(root), "--json",
                              str(tmp_path / "r.json"), "--report", str(tmp_path / "rep"), "--no-ssim",
                              "--device", "cpu", "--baselines", "bicubic"])
    args.command = "eval"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert command.run(args) == 0
    out = capsys.readouterr().out
    assert "protocol reds4" in out and "bicubic" in out
    r = Result.load(tmp_path / "r.json")
    assert r.clips == ["000", "011", "015", "020"] and list(r.methods) == ["edvr", "bicubic"]
    assert sorted(p.name for p in (tmp_path / "rep").iterdir()) == [
        "crops_000.png", "crops_011.png", "crops_015.png", "crops_020.png", "psnr.png", "report.md"]
    bad = parser.parse_args(["--model", str(ckpt), "--protocol", "nope", "--root", str(root)])
    bad.command = "eval"
    with pytest.raises(InputError, match="unknown protocol"):
        command.run(bad)
    # Output paths of the wrong kind are refused before the evaluation, not after it.
    for flag, path, message in [("--json", tmp_path / "rep", "is a folder; --json names a file"),
                                ("--report", tmp_path / "r.json", "is a file; --report names a folder")]:
        late = parser.parse_args(["--model", str(tmp_path / "missing.pth"), "--protocol", "reds4", "--root", str(root),
                                  flag, str(path)])
        late.command = "eval"
        with pytest.raises(OutputError, match=message):  # before the model is even loaded
            command.run(late)


def test_scores_named_like_numbers_survive_json():
    """"inf" and "nan" are written for infinite/undefined scores; frame names that read so stayed strings only since."""
    s = Scores()
    s.add("000", "inf", float("inf"), None)
    s.add("000", "nan", 30.0, None)
    back = Result.from_json(Result("reds4", "summary", "inf", {"edvr": s}, {}).to_json())
    assert back.methods["edvr"].frames["000"] == ["inf", "nan"] and back.model == "inf"
    assert back.methods["edvr"].psnr["000"] == [float("inf"), 30.0]


def test_compare_leaves_out_frames_exact_in_both_results():
    """Two results with the same perfect frame once compared as +nan on that clip and on the protocol."""
    inf = float("inf")
    a = _result("A", {"000": [inf, 30.0], "011": [28.0]})
    b = _result("B", {"000": [inf, 31.0], "011": [29.0]})
    text = compare(a, b)
    rows = {line.split()[0]: line.split() for line in text.splitlines()[4:] if not line.startswith("note")}
    assert rows["000"][3] == "+1.000" and rows["reds4"][3] == "+1.000"
    assert "note: 1 shared frames left out: exact (infinite PSNR) in both" in text and "nan" not in text
    # Exact in A only is A's win, not a frame to drop: B's clip delta is -inf.
    rows = {line.split()[0]: line.split() for line in compare(a, _result("B", {"000": [40.0, 31.0], "011": [29.0]}))
            .splitlines()[4:] if not line.startswith("note")}
    assert rows["000"][3] == "-inf"
    with pytest.raises(InputError, match="exact .* in both results: nothing to compare"):
        compare(_result("A", {"000": [inf]}), _result("B", {"000": [inf]}))
