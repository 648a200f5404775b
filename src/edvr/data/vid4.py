"""Vid4 (Liu and Sun, TPAMI 2014): four test clips, calendar (41 frames), city (34), foliage (49), walk (47).

Layout, as BasicSR's test configurations read it (``datasets/Vid4/GT``, ``datasets/Vid4/BIx4``, ``.../BDx4``)::

    root/GT/calendar/00000000.png ...        ground truth, one folder per clip
    root/BIx4/calendar/00000000.png ...      LQ, x4 MATLAB bicubic
    root/BDx4/calendar/00000000.png ...      LQ, Gaussian blur sigma 1.6 then every 4th pixel

Test only: every frame of every clip is a centre, whole frames, 7-frame windows padded at the clip ends
(``reflection_circle``, as BasicSR's ``test_EDVR_L_x4_SR_Vid4.yml``). Frames are paired by file name, so any
consistent naming works.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from edvr.data.videos import PairedClipsDataset, clip_names, paired_clip, require_dir
from edvr.errors import InputError

VID4_CLIPS: tuple[str, ...] = ("calendar", "city", "foliage", "walk")
DEGRADATIONS: tuple[str, ...] = ("bi", "bd")


class Vid4Dataset(PairedClipsDataset):
    """Vid4 test windows; ``key`` is ``"calendar/00000000"``.

    Args:
        root: the folder holding ``GT`` and ``BIx4``/``BDx4``.
        degradation: ``"bi"`` or ``"bd"``: reads ``BIx{scale}`` or ``BDx{scale}``.
        num_frames: window length (7 for the EDVR Vimeo90K models evaluated on Vid4).
        padding: temporal padding at clip ends.
        scale: the LQ folder's factor.
        clips: clip folder names; default the four Vid4 clips.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        *,
        degradation: str = "bi",
        num_frames: int = 7,
        padding: str = "reflection_circle",
        scale: int = 4,
        clips: Sequence[str] | None = None,
    ) -> None:
        if degradation not in DEGRADATIONS:
            raise InputError(f"degradation={degradation!r}: use one of {', '.join(DEGRADATIONS)}")
        root = Path(root)
        lq_name = f"{degradation.upper()}x{scale}"
        layout = f"the Vid4 layout root/GT/calendar/00000000.png and root/{lq_name}/calendar/00000000.png"
        require_dir(root, layout)
        gt_root = require_dir(root / "GT", layout)
        lq_root = require_dir(root / lq_name, layout)
        names = clip_names(clips) if clips is not None else list(VID4_CLIPS)
        for name in names:
            require_dir(gt_root / name, f"clip {name!r} in {layout}")
            require_dir(lq_root / name, f"clip {name!r} in {layout}")
        self.root = root
        self.degradation = degradation
        super().__init__(
            [paired_clip(name, lq_root / name, gt_root / name) for name in names],
            test=True,
            num_frames=num_frames,
            scale=scale,
            padding=padding,
        )
