"""Vimeo90K septuplets (Xue et al., IJCV 2019): 64,612 training and 7,824 test sequences of 7 frames, 448x256.

Layout (the archive ``vimeo_septuplet`` plus the LQ folders BasicSR's scripts and configs use)::

    vimeo90k/vimeo_septuplet/sequences/00001/0001/im1.png ... im7.png     GT
    vimeo90k/vimeo_septuplet/sep_trainlist.txt, sep_testlist.txt         one "00001/0001" per line
    vimeo90k/vimeo_septuplet_matlabLRx4/sequences/00001/0001/im1.png     LQ, BI (x4 MATLAB bicubic)
    vimeo90k/vimeo_septuplet_BDLRx4/sequences/...                        LQ, BD (Gaussian sigma 1.6, every 4th pixel)

``root`` may be ``vimeo90k`` or ``vimeo90k/vimeo_septuplet``; the LQ folder is looked for beside
``vimeo_septuplet`` (``vimeo_septuplet_BD_matlabLRx4``, PaddleGAN's name, is accepted for BD), or given as
``lq_root``. The GT of a sequence is its centre frame ``im4``; with ``num_frames`` below 7 the window is the middle
frames (BasicSR: ``im{4-n//2} .. im{4+n//2}``). Test items are whole frames, one per sequence (the Vimeo90K-T
protocol scores only the centre frame). BasicSR's ``meta_info_Vimeo90K_*_GT.txt`` files (``00001/0001 7 (256,448,3)``)
work as ``list_file`` too: only the first field of each line is read.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch.utils.data import Dataset

from edvr.data.transforms import random_reverse, sample_rng
from edvr.data.videos import check_pair_sizes, crop_and_augment, read_rgb, require_dir, to_float
from edvr.errors import InputError

LQ_FOLDERS: dict[str, tuple[str, ...]] = {  # {scale}: 4 for the published sets (edvr prepare writes any scale)
    "bi": ("vimeo_septuplet_matlabLRx{scale}",),
    "bd": ("vimeo_septuplet_BDLRx{scale}", "vimeo_septuplet_BD_matlabLRx{scale}"),
}
LIST_FILES: dict[str, str] = {"train": "sep_trainlist.txt", "test": "sep_testlist.txt"}
SEQUENCE_LENGTH = 7


class Vimeo90KDataset(Dataset):
    """Vimeo90K septuplets: training patches or whole test frames; ``key`` is the sequence, e.g. ``"00001/0266"``.

    Args:
        root: ``vimeo90k`` or ``vimeo90k/vimeo_septuplet`` (see the module docstring).
        split: ``"train"`` (``sep_trainlist.txt``, random patches) or ``"test"`` (``sep_testlist.txt``, whole frames).
        degradation: ``"bi"`` or ``"bd"``: which LQ folder.
        num_frames: odd, at most 7 (7 for the EDVR Vimeo90K models).
        gt_size, scale, augment, random_reverse: as for REDS (training only).
        lq_root: the LQ folder (holding ``sequences``) when it is not beside ``vimeo_septuplet``.
        list_file: the sequence list instead of ``sep_{split}list.txt``.
        seed: seed of the training randomness; call :meth:`set_epoch` each epoch.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        *,
        split: str = "train",
        degradation: str = "bi",
        num_frames: int = 7,
        gt_size: int = 256,
        scale: int = 4,
        augment: bool = True,
        random_reverse: bool = False,
        lq_root: str | os.PathLike | None = None,
        list_file: str | os.PathLike | None = None,
        seed: int = 0,
    ) -> None:
        if split not in LIST_FILES:
            raise InputError(f"split={split!r}: unknown Vimeo90K split; use 'train' or 'test'")
        if degradation not in LQ_FOLDERS:
            raise InputError(f"degradation={degradation!r}: use one of {', '.join(LQ_FOLDERS)}")
        if not (1 <= num_frames <= SEQUENCE_LENGTH and num_frames % 2 == 1):
            raise InputError(f"num_frames={num_frames}: Vimeo90K sequences have 7 frames; use an odd number up to 7")
        if split == "train" and gt_size % scale:
            raise InputError(f"gt_size={gt_size}: must be a multiple of scale {scale} so LQ and GT patches align")
        root = Path(root)
        layout = "root/vimeo_septuplet/sequences/00001/0001/im1.png (or root = vimeo_septuplet itself)"
        if (root / "sequences").is_dir():
            gt_dir = root
        elif (root / "vimeo_septuplet" / "sequences").is_dir():
            gt_dir = root / "vimeo_septuplet"
        else:
            require_dir(root, f"the Vimeo90K layout {layout}")
            raise InputError(f"{root / 'vimeo_septuplet' / 'sequences'}: folder not found; expected {layout}")

        if lq_root is not None:
            lq_dir = require_dir(Path(lq_root) / "sequences", "LQ sequences/00001/0001/im1.png under lq_root")
        else:
            names = [name.format(scale=scale) for name in LQ_FOLDERS[degradation]]
            candidates = [base / name / "sequences" for name in names for base in (gt_dir.parent, gt_dir)]
            found = [c for c in candidates if c.is_dir()]
            if not found:
                raise InputError(f"{candidates[0]}: folder not found; expected the {degradation.upper()} LQ frames "
                                 f"there ({names[0]}/sequences/00001/0001/im1.png) or pass lq_root")
            lq_dir = found[0]

        list_path = Path(list_file) if list_file is not None else gt_dir / LIST_FILES[split]
        if not list_path.is_file():
            raise InputError(f"{list_path}: list file not found; expected one sequence per line (00001/0001), as "
                             f"shipped in vimeo_septuplet/{LIST_FILES[split]}")  # fmt: skip
        keys = [line.split()[0] for line in list_path.read_text().splitlines() if line.strip()]
        if not keys:
            raise InputError(f"{list_path}: no sequences listed; expected lines like 00001/0001")
        for base in (gt_dir / "sequences", lq_dir):
            missing = [k for k in keys if not os.path.isdir(base / k)]
            if missing:
                raise InputError(f"{base / missing[0]}: sequence folder not found ({len(missing)} of {len(keys)} "
                                 f"listed in {list_path.name} missing); expected {layout} and the same under the LQ "
                                 "folder")  # fmt: skip

        self.gt_dir = gt_dir / "sequences"
        self.lq_dir = lq_dir
        self.keys = keys
        self.test = split == "test"
        self.num_frames = num_frames
        self.gt_size = gt_size
        self.scale = scale
        self.augment = augment
        self.random_reverse = random_reverse
        self.seed = seed
        self.epoch = 0
        first = SEQUENCE_LENGTH // 2 + 1 - num_frames // 2  # im4 is the centre
        self.frame_numbers = list(range(first, first + num_frames))

    def __len__(self) -> int:
        return len(self.keys)

    def set_epoch(self, epoch: int) -> None:
        """Select the random stream of ``epoch`` (see :class:`~edvr.data.videos.PairedClipsDataset`)."""
        self.epoch = epoch

    def __getitem__(self, index: int) -> dict:
        key = self.keys[index]
        numbers = self.frame_numbers
        rng = None if self.test else sample_rng(self.seed, self.epoch, index)
        if rng is not None and self.random_reverse:
            numbers = random_reverse(numbers, rng)
        lq_paths = [self.lq_dir / key / f"im{n}.png" for n in numbers]
        gt_path = self.gt_dir / key / f"im{SEQUENCE_LENGTH // 2 + 1}.png"
        lqs = [read_rgb(p) for p in lq_paths]
        gt = read_rgb(gt_path)
        check_pair_sizes(lqs, lq_paths, gt, gt_path, self.scale)
        if rng is not None:
            lqs, gt = crop_and_augment(lqs, gt, self.gt_size, self.scale, self.augment, rng, gt_path)
        return {"lq": torch.stack([to_float(x) for x in lqs]), "gt": to_float(gt), "key": key}
