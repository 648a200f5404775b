"""REDS (Nah et al., NTIRE 2019 video restoration challenge), the dataset EDVR was trained on.

Layout, as the REDS archives unpack (``train_*``: clips 000-239, ``val_*``: clips 000-029, 100 frames each,
1280x720 GT; the LQ of the SR tracks is 320x180)::

    root/train_sharp/000/00000000.png            GT of every track
    root/train_sharp_bicubic/X4/000/...          LQ, track "sr"          (x4 MATLAB bicubic)
    root/train_blur_bicubic/X4/000/...           LQ, track "srblur"      (blurred, then x4 bicubic)
    root/train_blur/000/...                      LQ, track "deblur"      (HR input)
    root/train_blur_comp/000/...                 LQ, track "deblurcomp"  (blurred and compressed, HR input)
    root/val_sharp/000/... , root/val_sharp_bicubic/X4/000/... , ...   the official validation clips

Validation partitions (facts from BasicSR's ``reds_dataset.py`` and its ``meta_info`` files):

* ``"reds4"``: clips 000, 011, 015, 020 of the *train* set, held out of training; the EDVR paper's test set.
* ``"official"``: the 30 official validation clips. BasicSR's ``regroup_reds_dataset.py`` copies ``val_*/NNN`` into
  the train folders as clip ``NNN + 240`` (240-269) and trains on 000-239; ``meta_info_REDSval_official_test_GT.txt``
  lists 240-269 (``meta_info_REDSofficial4_test_GT.txt`` uses 240, 241, 246, 257). Both layouts work here: with
  ``split="val"`` the clips come from ``val_*`` folders if they exist, else from clips 240-269 of the train folders.

``split="train"`` drops the clips of ``val_partition`` from the train folders: ``"reds4"`` (the EDVR recipe) drops
000/011/015/020; ``"official"`` drops 240-269 (nothing, if the val clips were never merged in). With ``"reds4"`` the
official validation clips are training clips, as in BasicSR's recipes (``meta_info_REDS_GT.txt``: 270 clips, REDS4
removed, 266 left) and the original repository's (``train_*_wval`` LMDBs): taken from the ``val_*`` folders as clips
240-269 when the train folders do not already hold them and the folders are REDS's own 30 (not ``edvr prepare``'s:
a user's own val split stays out of training).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path

from edvr.data.frames import default_padding
from edvr.data.videos import Clip, PairedClipsDataset, clip_names, paired_clip, require_dir
from edvr.errors import InputError

REDS4_CLIPS: tuple[str, ...] = ("000", "011", "015", "020")
# The official validation clips as numbered in BasicSR's merged train folders (val clip NNN -> NNN + 240).
OFFICIAL_VAL_CLIPS: tuple[str, ...] = tuple(f"{i:03d}" for i in range(240, 270))
SPLITS: tuple[str, ...] = ("train", "val", "reds4")
VAL_PARTITIONS: dict[str, tuple[str, ...]] = {"reds4": REDS4_CLIPS, "official": OFFICIAL_VAL_CLIPS}
# track -> (LQ folder after "train_"/"val_", True when the input is low resolution and lives in X{scale}).
TRACKS: dict[str, tuple[str, bool]] = {
    "sr": ("sharp_bicubic", True),
    "srblur": ("blur_bicubic", True),
    "deblur": ("blur", False),
    "deblurcomp": ("blur_comp", False),
}


class REDSDataset(PairedClipsDataset):
    """REDS windows for one track: training patches, or whole frames of the validation clips.

    Args:
        root: the folder holding ``train_sharp`` etc. (see the module docstring).
        split: ``"train"`` (random patches; clips of ``val_partition`` excluded), ``"reds4"`` (the 4 test clips,
            whole frames, every frame a centre) or ``"val"`` (the 30 official validation clips, likewise).
        track: ``"sr"``, ``"srblur"``, ``"deblur"`` or ``"deblurcomp"``.
        num_frames: window length (5 for the REDS models).
        gt_size: GT patch side in training; the LQ patch is ``gt_size // scale`` (64 by default on SR tracks).
        scale: 4 for the SR tracks (the ``X4`` folder), 1 for the HR-input tracks; ``None`` picks it from the track.
        augment: flips and rot90 in training.
        frame_interval: distance between window frames in training; a list draws one per sample.
        random_reverse: reverse the window with probability 1/2 in training.
        padding: temporal padding at clip ends for ``val``/``reds4``; ``None`` = the published protocol
            (``reflection_circle`` for SR, ``replicate`` for the blur tracks). Not used in training.
        val_partition: which clips ``split="train"`` leaves out: ``"reds4"`` or ``"official"``.
        clips: explicit clip names (folder names) instead of the split's selection.
        seed: seed of the training randomness (see :class:`~edvr.data.videos.PairedClipsDataset`).
    """

    def __init__(
        self,
        root: str | os.PathLike,
        *,
        split: str = "train",
        track: str = "sr",
        num_frames: int = 5,
        gt_size: int = 256,
        scale: int | None = None,
        augment: bool = True,
        frame_interval: int | Sequence[int] = 1,
        random_reverse: bool = False,
        padding: str | None = None,
        val_partition: str = "reds4",
        clips: Sequence[str] | None = None,
        seed: int = 0,
    ) -> None:
        if split not in SPLITS:
            raise InputError(f"split={split!r}: unknown REDS split; use one of {', '.join(SPLITS)}")
        if track not in TRACKS:
            raise InputError(f"track={track!r}: unknown REDS track; use one of {', '.join(TRACKS)}")
        if val_partition not in VAL_PARTITIONS:
            raise InputError(f"val_partition={val_partition!r}: use one of {', '.join(VAL_PARTITIONS)}")
        lq_name, low_res = TRACKS[track]
        if scale is None:
            scale = 4 if low_res else 1
        if not low_res and scale != 1:
            raise InputError(f"scale={scale}: track {track!r} has HR input (scale 1); use an SR track for x{scale}")
        if low_res and scale == 1:
            raise InputError(f"scale=1: track {track!r} is super-resolution; use scale 4 (REDS ships X4)")
        root = Path(root)
        lq_example = f"root/train_{lq_name}{'/X4' if low_res else ''}/000/..."
        layout = f"the REDS layout (root/train_sharp/000/00000000.png, {lq_example})"
        require_dir(root, layout)

        part = "train"
        if split == "val" and (root / "val_sharp").is_dir():
            part = "val"
        gt_root = require_dir(root / f"{part}_sharp", f"GT clips {part}_sharp/000/00000000.png in {layout}")
        lq_root = root / f"{part}_{lq_name}"
        if low_res:
            lq_root = lq_root / f"X{scale}"
        require_dir(lq_root, f"LQ clips {lq_root.relative_to(root)}/000/00000000.png for track {track!r} in {layout}")

        available = sorted(p.name for p in gt_root.iterdir() if p.is_dir())
        merged: list[Clip] = []  # the val_* clips as training clips 240-269 (split "train", partition "reds4")
        if clips is not None:
            names = clip_names(clips)
        elif split == "train":
            held_out = set(VAL_PARTITIONS[val_partition])
            names = [c for c in available if c not in held_out]
            merge_val = not set(available) & set(OFFICIAL_VAL_CLIPS) and (root / "val_sharp").is_dir()
            if val_partition == "reds4" and merge_val:
                merged = _val_as_train_clips(root, lq_name, low_res, scale, layout)
        elif split == "reds4":
            names = list(REDS4_CLIPS)
        elif part == "val":
            names = available
        else:
            names = [c for c in available if c in OFFICIAL_VAL_CLIPS]
            if not names:
                raise InputError(f"{root}: no official validation clips; expected root/val_sharp/000/... or clips "
                                 "240-269 in root/train_sharp (BasicSR's regrouped layout)")  # fmt: skip
        for name in names:
            require_dir(gt_root / name, f"clip {name} of {split!r} in {gt_root}/")
            require_dir(lq_root / name, f"clip {name} of {split!r} in {lq_root}/ (track {track!r})")

        self.root = root
        self.split = split
        self.track = track
        super().__init__(
            [paired_clip(name, lq_root / name, gt_root / name) for name in names] + merged,
            test=split != "train",
            num_frames=num_frames,
            gt_size=gt_size,
            scale=scale,
            augment=augment,
            frame_interval=frame_interval,
            random_reverse=random_reverse,
            padding=padding or default_padding(track),
            seed=seed,
        )


def _val_as_train_clips(root: Path, lq_name: str, low_res: bool, scale: int, layout: str) -> list[Clip]:
    """The official validation clips ``val_*/NNN`` as training clips ``NNN + 240``, BasicSR's numbering."""
    gt_root = root / "val_sharp"
    lq_root = root / f"val_{lq_name}"
    if low_res:
        lq_root = lq_root / f"X{scale}"
    require_dir(lq_root, f"LQ clips {lq_root.relative_to(root)}/000/00000000.png beside val_sharp in {layout} (the "
                "recipe trains on the validation clips too)")
    names = sorted(p.name for p in gt_root.iterdir() if p.is_dir())
    if names != [f"{i:03d}" for i in range(30)] or (root / ".edvr-prepare").is_dir():  # made by edvr prepare
        warnings.warn(f"{gt_root}: not REDS's 30 validation clips (000-029 as downloaded); left out of training (the "
                      "EDVR recipe trains on REDS's own)", stacklevel=3)
        return []
    for name in names:
        require_dir(lq_root / name, f"clip {name} of the validation clips in {lq_root}/")
    return [paired_clip(f"{int(name) + 240:03d}", lq_root / name, gt_root / name) for name in names]
