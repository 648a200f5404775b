"""``edvr prepare``: videos and frame folders -> REDS / Vimeo90K / Vid4 layouts that the datasets read back."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from edvr.data import REDSDataset, Vid4Dataset, Vimeo90KDataset
from edvr.data import prepare as prep
from edvr.data.degradations import bd_degrade, bi_degrade
from edvr.errors import InputError, OutputError


def synthetic_frames(n: int, h: int = 50, w: int = 66) -> np.ndarray:
    """Moving smooth pattern, deliberately not a multiple of 4 in size (prepare must mod-crop)."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    frames = []
    for t in range(n):
        r = 127 + 120 * np.sin((x + 3 * t) / 7.0)
        g = 127 + 120 * np.cos((y - 2 * t) / 5.0)
        b = (x * y + 17 * t) % 256
        frames.append(np.stack([r, g, b], -1).round().astype(np.uint8))
    return np.stack(frames)


def write_video(path: Path, frames: np.ndarray) -> Path:
    """Lossless (FFV1, RGB) so the test knows the decoded frames exactly."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("ffv1", rate=25)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "bgr0"
        for f in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        container.mux(stream.encode(None))
    return path


def u8(x: torch.Tensor) -> torch.Tensor:
    return (x * 255).round().byte()


def chw(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1)


def test_video_to_reds_layout_then_reds_dataset(tmp_path):
    frames = synthetic_frames(12)
    video = write_video(tmp_path / "src" / "clip.mkv", frames)
    out = tmp_path / "REDS"
    names = prep.prepare(video, out, layout="reds", clip_length=6, log=None)
    assert names == ["000", "001"]
    assert (out / "train_sharp" / "001" / "00000005.png").is_file()
    assert not list(out.rglob("*.tmp"))

    ds = REDSDataset(out, split="train", val_partition="official", num_frames=5)  # official: 000 is a train clip
    assert [c.name for c in ds.clips] == ["000", "001"] and len(ds) == 12
    item = REDSDataset(out, split="val", clips=["001"])[2]  # an evaluation split: whole frames
    assert item["key"] == "001/00000002"
    gt = chw(frames[8][:48, :64])  # frame 6 + 2, mod-cropped to 48x64
    assert torch.equal(u8(item["gt"]), gt)
    assert item["lq"].shape == (5, 3, 12, 16)
    assert torch.equal(u8(item["lq"][2]), bi_degrade(gt, scale=4))


def test_written_files_get_the_umasks_mode_as_any_new_file(tmp_path):
    # Atomic writes go through a temporary file (0600 from mkstemp): the dataset must still be readable by others.
    import os

    old = os.umask(0o022)
    try:
        video = write_video(tmp_path / "clip.mkv", synthetic_frames(2))
        prep.prepare(video, tmp_path / "REDS", layout="reds", log=None)
        files = [p for p in (tmp_path / "REDS").rglob("*") if p.is_file()]
        assert files and {p.stat().st_mode & 0o777 for p in files} == {0o644}
        os.umask(0o027)
        from edvr.files import write_atomic

        write_atomic(tmp_path / "group.json", "{}")
        assert (tmp_path / "group.json").stat().st_mode & 0o777 == 0o640
    finally:
        os.umask(old)


def test_atomic_writes_work_without_fchmod(tmp_path, monkeypatch):
    """Windows has os.fchmod only from Python 3.13: before, every atomic write there raised AttributeError."""
    import os

    from edvr.files import write_atomic

    monkeypatch.delattr(os, "fchmod")
    write_atomic(tmp_path / "x.json", "{}")
    assert (tmp_path / "x.json").read_text() == "{}" and not list(tmp_path.glob(".*"))


def test_prepare_resumes_without_redoing_finished_work(tmp_path):
    video = write_video(tmp_path / "clip.mkv", synthetic_frames(8))
    out = tmp_path / "REDS"
    prep.prepare(video, out, layout="reds", log=None)
    files = sorted(out.rglob("*.png"))
    assert len(files) == 16
    stamps = {f: f.stat().st_mtime_ns for f in files}

    logged = []
    prep.prepare(video, out, layout="reds", log=logged.append)
    assert logged == [f"{video}: done before, skipped"]
    assert all(f.stat().st_mtime_ns == stamps[f] for f in files)

    # an interrupted run: no marker, one LQ frame missing -> only that frame is written again
    for marker in (out / ".edvr-prepare").iterdir():
        marker.unlink()
    lost = out / "train_sharp_bicubic" / "X4" / "000" / "00000003.png"
    content = lost.read_bytes()
    lost.unlink()
    prep.prepare(video, out, layout="reds", log=None)
    assert lost.read_bytes() == content
    assert all(f.stat().st_mtime_ns == stamps[f] for f in files if f != lost)


def test_frame_folder_to_vimeo90k_bd_layout(tmp_path):
    frames = synthetic_frames(15, h=64, w=64)
    (tmp_path / "src" / "seq").mkdir(parents=True)
    for t, f in enumerate(frames):
        Image.fromarray(f).save(tmp_path / "src" / "seq" / f"{t:03d}.png")
    out = tmp_path / "vimeo90k"
    names = prep.prepare(tmp_path / "src", out, layout="vimeo90k", degradation="bd", split="test", log=None)
    assert names == ["00001/0001", "00001/0002"]  # 15 frames -> two runs of 7, the 15th dropped
    assert (out / "vimeo_septuplet" / "sep_testlist.txt").read_text() == "00001/0001\n00001/0002\n"
    ds = Vimeo90KDataset(out, split="test", degradation="bd")
    item = ds[1]
    assert item["key"] == "00001/0002" and item["lq"].shape == (7, 3, 16, 16)
    gt = chw(frames[7 + 3])  # im4 of the second run
    assert torch.equal(u8(item["gt"]), gt)
    expected = torch.floor(bd_degrade(gt.double() / 255, scale=4).clamp(0, 1) * 255 + 0.5).byte()
    assert torch.equal(u8(item["lq"][3]), expected)


def test_vimeo90k_test_split_beside_the_train_split_gets_its_own_sequences(tmp_path):
    train, test = synthetic_frames(7, h=32, w=32), synthetic_frames(14, h=32, w=32)[7:]
    write_video(tmp_path / "train" / "clip.mkv", train)
    write_video(tmp_path / "test" / "clip.mkv", test)  # the same file name, other frames
    out = tmp_path / "vimeo90k"
    assert prep.prepare(tmp_path / "train", out, layout="vimeo90k", split="train", log=None) == ["00001/0001"]
    assert prep.prepare(tmp_path / "test", out, layout="vimeo90k", split="test", log=None) == ["00002/0001"]
    logged = []  # a rerun of the training split finds its own sequence again
    assert prep.prepare(tmp_path / "train", out, layout="vimeo90k", split="train", log=logged.append) == ["00001/0001"]
    assert logged == [f"{tmp_path / 'train' / 'clip.mkv'}: done before, skipped"]
    for split, frames in (("train", train), ("test", test)):
        item = Vimeo90KDataset(out, split=split, gt_size=32, augment=False)[0]
        assert torch.equal(u8(item["gt"]), chw(frames[3][:32, :32])), split


def test_another_degradation_is_prepared_beside_another_scale_or_length_refused(tmp_path):
    write_video(tmp_path / "walk.mkv", synthetic_frames(15, h=50, w=70))
    out = tmp_path / "Vid4"
    prep.prepare(tmp_path / "walk.mkv", out, layout="vid4", log=None)
    prep.prepare(tmp_path / "walk.mkv", out, layout="vid4", degradation="bd", log=None)
    for lq in ("BIx4", "BDx4"):
        assert len(list((out / lq / "walk").glob("*.png"))) == 15, lq
    # x2 crops the GT to 70x50, not x4's 68x48: the GT kept from before would not fit the new LQ
    with pytest.raises(OutputError, match="was prepared here with other .*scale"):
        prep.prepare(tmp_path / "walk.mkv", out, layout="vid4", scale=2, log=None)
    with pytest.raises(OutputError, match="other .*max_frames"):  # the old frames 10-14 would stay
        prep.prepare(tmp_path / "walk.mkv", out, layout="vid4", max_frames=10, log=None)
    assert not (out / "BIx2").exists()


def test_reds_clips_of_another_source_or_name_clashes_are_refused(tmp_path):
    for name in ("a", "c"):
        write_video(tmp_path / "src" / f"{name}.mkv", synthetic_frames(4))
    out = tmp_path / "REDS"
    assert prep.prepare(tmp_path / "src", out, layout="reds", log=None) == ["000", "001"]
    write_video(tmp_path / "src" / "b.mkv", synthetic_frames(4))  # sorted between them: it would be clip 001
    with pytest.raises(OutputError, match="clip 001 holds frames of .*c.mkv"):
        prep.prepare(tmp_path / "src", out, layout="reds", log=None)
    clash = tmp_path / "clash"
    write_video(clash / "a.mkv", synthetic_frames(3))
    (clash / "a").mkdir()
    for t, f in enumerate(synthetic_frames(3)):
        Image.fromarray(f).save(clash / "a" / f"{t:03d}.png")
    with pytest.raises(InputError, match="both would be clip a"):
        prep.prepare(clash, tmp_path / "Vid4", layout="vid4", log=None)
    prep.prepare(clash / "a.mkv", tmp_path / "Vid4", layout="vid4", log=None)  # across runs: another a.mkv
    write_video(tmp_path / "other" / "a.mkv", synthetic_frames(5))
    with pytest.raises(OutputError, match="clip a holds frames of .*clash/a.mkv"):
        prep.prepare(tmp_path / "other" / "a.mkv", tmp_path / "Vid4", layout="vid4", log=None)
    # the same source as another split (REDS: other folders) is not a clash
    prep.prepare(tmp_path / "src" / "a.mkv", out, layout="reds", split="val", log=None)
    assert (out / "val_sharp" / "000" / "00000003.png").is_file()


def test_vimeo90k_list_keeps_the_sequences_of_earlier_runs_and_any_scale_loads(tmp_path):
    write_video(tmp_path / "x" / "x.mkv", synthetic_frames(7, h=32, w=32))
    write_video(tmp_path / "y" / "y.mkv", synthetic_frames(7, h=32, w=32))
    out = tmp_path / "vimeo90k"
    prep.prepare(tmp_path / "x", out, layout="vimeo90k", scale=2, log=None)
    prep.prepare(tmp_path / "x", out, layout="vimeo90k", scale=2, degradation="bd", log=None)  # BD LQ beside BI
    prep.prepare(tmp_path / "y", out, layout="vimeo90k", scale=2, log=None)
    assert (out / "vimeo_septuplet" / "sep_trainlist.txt").read_text() == "00001/0001\n00002/0001\n"
    ds = Vimeo90KDataset(out, split="train", scale=2, gt_size=32, augment=False)
    assert len(ds) == 2 and ds[0]["lq"].shape == (7, 3, 16, 16)


def test_bd_sigma_follows_the_scale_as_basicsr_duf_downsample():
    img = np.random.default_rng(0).uniform(0, 1, (40, 36, 3))
    np.testing.assert_array_equal(bd_degrade(img, scale=2), bd_degrade(img, scale=2, sigma=0.8))
    np.testing.assert_array_equal(bd_degrade(img), bd_degrade(img, scale=4, sigma=1.6))
    assert not np.array_equal(bd_degrade(img, scale=2), bd_degrade(img, scale=2, sigma=1.6))


def test_cli_vid4_layout(tmp_path):
    write_video(tmp_path / "walk.mkv", synthetic_frames(4))
    parser = argparse.ArgumentParser()
    prep.add_arguments(parser, "prepare")
    args = parser.parse_args([str(tmp_path / "walk.mkv"), str(tmp_path / "Vid4"), "--layout", "vid4"])
    assert prep.run(args) == 0
    ds = Vid4Dataset(tmp_path / "Vid4", clips=["walk"], num_frames=3)
    assert len(ds) == 4 and ds[3]["key"] == "walk/00000003" and ds[3]["gt"].shape == (3, 48, 64)


def test_prepare_errors(tmp_path):
    with pytest.raises(InputError, match=r"missing: folder not found"):
        prep.prepare(tmp_path / "missing", tmp_path / "out", layout="reds", log=None)
    video = write_video(tmp_path / "clip.mkv", synthetic_frames(2))
    with pytest.raises(InputError, match=r"REDS has bicubic LQ only"):
        prep.prepare(video, tmp_path / "out", layout="reds", degradation="bd", log=None)
    with pytest.raises(OutputError, match=r"inside the source folder"):
        prep.prepare(tmp_path, tmp_path / "out", layout="vid4", log=None)
    assert not (tmp_path / "out").exists()
    (tmp_path / "data" / "GT" / "walk").mkdir(parents=True)  # GT to make LQ for, inside the GT it would write
    Image.fromarray(synthetic_frames(1)[0]).save(tmp_path / "data" / "GT" / "walk" / "frame_1.png")
    with pytest.raises(OutputError, match=r"inside .*GT, where prepare writes its frames"):
        prep.prepare(tmp_path / "data" / "GT", tmp_path / "data", layout="vid4", log=None)
    assert [p.name for p in (tmp_path / "data" / "GT" / "walk").iterdir()] == ["frame_1.png"]
    # Nothing to write is an error, and nothing is recorded: a rerun with more frames is not "done before".
    with pytest.raises(InputError, match=r"--max-frames 0: must be positive"):
        prep.prepare(video, tmp_path / "few", layout="reds", max_frames=0, log=None)
    with pytest.raises(InputError, match=r"clip.mkv: too few frames for one 7-frame clip; use longer sources"):
        prep.prepare(video, tmp_path / "few", layout="vimeo90k", log=None)
    assert not list((tmp_path / "few").rglob("*.json"))
    # Among others a short source is skipped with a line, unrecorded; a --max-frames below the length is named.
    (tmp_path / "many").mkdir()
    write_video(tmp_path / "many" / "a.mkv", synthetic_frames(8))
    write_video(tmp_path / "many" / "b.mkv", synthetic_frames(3))
    lines: list[str] = []
    assert prep.prepare(tmp_path / "many", tmp_path / "vim", layout="vimeo90k", log=lines.append) == ["00001/0001"]
    assert any("b.mkv: too few frames" in line and "skipped" in line for line in lines)
    with pytest.raises(InputError, match=r"within --max-frames 5; use longer sources or a larger --max-frames"):
        prep.prepare(tmp_path / "many", tmp_path / "vim5", layout="vimeo90k", max_frames=5, log=None)
