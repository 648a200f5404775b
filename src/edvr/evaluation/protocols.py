"""Named evaluation protocols: the facts that make a PSNR comparable to a published one.

A protocol fixes the clip list, where the LQ and GT frames live, the temporal padding at clip ends, the frames per
window, the scale, the colour space of the metric (RGB or Y), the border crop and how per-frame scores are averaged
(frames within a clip, then clips). A number printed by ``edvr eval`` always carries its protocol's name.

Where the facts come from (checked against the public sources, summarised in ``/work/shared/design.md``):

- REDS4: clips 000, 011, 015, 020 of REDS *train* (BasicSR ``meta_info_REDS4_test_GT.txt``: 100 frames each,
  720x1280). GT ``train_sharp``; LQ ``train_sharp_bicubic`` (SR), ``train_blur_bicubic`` (SR-blur), ``train_blur``
  (deblur), ``train_blur_comp`` (deblur+compression) (BasicSR ``options/test/EDVR/test_EDVR_*_REDS.yml``). RGB,
  crop 0. Padding ``reflection_circle`` (the original repo's ``new_info``) for clean SR only, ``replicate`` for the
  three blurred tracks (original EDVR ``codes/test_Vid4_REDS4_with_GT.py``; BasicSR options agree).
- Vid4: ``GT/<clip>``, ``BIx4/<clip>`` (``BDx4`` for blur-downsampling), 7 frames, ``reflection_circle``, Y channel
  (BT.601), crop 0 for EDVR (original test script ``crop_border = 0``; the same repo's DUF script used 8, which is
  why other papers' Vid4 numbers are not always comparable).
- Vimeo90K-T: ``vimeo_septuplet/sequences/<a>/<b>/im1..im7.png``, LQ ``vimeo_septuplet_matlabLRx4/sequences`` (BI)
  or ``vimeo_septuplet_BDLRx4/sequences`` (BD); list ``sep_testlist.txt`` or BasicSR's
  ``meta_info_Vimeo90K_test_GT.txt``; only the centre frame ``im4`` is scored; windows are ``im1..im7`` (7 frames,
  no temporal padding needed). Y channel, crop 0. Optional fast/medium/slow subsets from BasicSR's
  ``meta_info_Vimeo90K_test_{fast,medium,slow}_GT.txt`` when those files are present.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from edvr.errors import InputError


@dataclass(frozen=True)
class Published:
    """A published result on this protocol, to print beside ours. ``ssim`` is None where none was published."""

    model: str
    psnr: float
    ssim: float | None
    source: str


@dataclass(frozen=True)
class Protocol:
    """One named evaluation protocol. All paths are relative to the dataset root given at evaluation time.

    ``gt_dirs``/``lq_dirs`` are candidates tried in order (the first that exists wins), because the same data
    circulates in a few layouts (the REDS download, BasicSR's, the original EDVR repo's ``REDS4/`` folder).
    """

    name: str
    description: str
    dataset: str  # "reds" | "vid4" | "vimeo90k": selects the folder layout reader
    task: str  # "sr" | "srblur" | "deblur" | "deblurcomp": what the model must do (matches zoo tasks)
    gt_dirs: tuple[str, ...]
    lq_dirs: tuple[str, ...]
    clips: tuple[str, ...] | None  # None: every clip of the list file (Vimeo90K-T)
    num_frames: int  # frames per window of the published models
    padding: str  # temporal padding at clip ends, a mode of edvr.data.frames
    scale: int
    y_channel: bool
    crop_border: int
    expected_frames: dict[str, int] | None = None  # frames per clip of the full protocol (completeness check)
    center_only: bool = False  # Vimeo90K-T: every sequence is a window, only its centre frame is scored
    list_files: tuple[str, ...] = ()  # Vimeo90K-T: where the sequence list may be
    expected_clips: int | None = None  # clips (septuplets) of the full protocol (completeness check)
    published: tuple[Published, ...] = field(default_factory=tuple)

    @property
    def metric_space(self) -> str:
        return "Y" if self.y_channel else "RGB"

    def summary(self) -> str:
        """One line: everything that fixes the number, for tables and reports."""
        clips = ", ".join(self.clips) if self.clips else "list file"
        return (
            f"{self.name}: {self.description}; clips {clips}; {self.num_frames}-frame windows, padding "
            f"{self.padding}; x{self.scale}; {self.metric_space}, crop {self.crop_border}; "
            "mean over frames per clip, then over clips"
        )


_REDS_GT = ("train_sharp", "GT")


def _reds(name: str, task: str, lq: str, original: str, padding: str, scale: int, published: tuple) -> Protocol:
    # "<lq>/X4" is how the REDS download ships the bicubic sets; BasicSR's options point at the folder itself;
    # the original EDVR repo regrouped REDS4 into REDS4/{GT,sharp_bicubic,...}.
    lq_dirs = (f"{lq}/X4", lq, original) if scale != 1 else (lq, original)
    return Protocol(
        name=name,
        description=f"REDS4 {task} (REDS train clips 000, 011, 015, 020)",
        dataset="reds",
        task=task,
        gt_dirs=_REDS_GT,
        lq_dirs=lq_dirs,
        clips=("000", "011", "015", "020"),
        num_frames=5,
        padding=padding,
        scale=scale,
        y_channel=False,
        crop_border=0,
        expected_frames={c: 100 for c in ("000", "011", "015", "020")},
        published=published,
    )


_PAPER = "Wang et al. 2019 / BasicSR model zoo"

_VID4_FRAMES = {"calendar": 41, "city": 34, "foliage": 49, "walk": 47}


def _vid4(name: str, lq: str, kind: str, published: tuple) -> Protocol:
    return Protocol(
        name=name,
        description=f"Vid4 {kind}x4",
        dataset="vid4",
        task="sr",
        gt_dirs=("GT",),
        lq_dirs=(lq,),
        clips=tuple(_VID4_FRAMES),
        num_frames=7,
        padding="reflection_circle",
        scale=4,
        y_channel=True,
        crop_border=0,
        expected_frames=dict(_VID4_FRAMES),
        published=published,
    )


def _vimeo(name: str, lq: str, kind: str) -> Protocol:
    return Protocol(
        name=name,
        description=f"Vimeo90K-T {kind}x4, centre frame im4 of each septuplet",
        dataset="vimeo90k",
        task="sr",
        gt_dirs=("vimeo_septuplet/sequences", "sequences"),
        lq_dirs=(f"{lq}/sequences", f"../{lq}/sequences"),
        clips=None,
        num_frames=7,
        padding="reflection_circle",  # never used: a septuplet's window is its own 7 frames
        scale=4,
        y_channel=True,
        crop_border=0,
        center_only=True,
        list_files=("vimeo_septuplet/sep_testlist.txt", "sep_testlist.txt", "meta_info_Vimeo90K_test_GT.txt"),
        expected_clips=7824,  # the septuplets of sep_testlist.txt
    )


# The one registry of protocol names (principle 4): text from the CLI arrives here.
PROTOCOLS: dict[str, Protocol] = {
    p.name: p
    for p in (
        _reds("reds4", "sr", "train_sharp_bicubic", "sharp_bicubic", "reflection_circle", 4, (
            Published("EDVR-M", 30.53, 0.8699, _PAPER),
            Published("EDVR-L", 31.09, 0.8800, _PAPER),
            Published("bicubic", 26.14, None, _PAPER),
        )),
        _reds("reds4-srblur", "srblur", "train_blur_bicubic", "blur_bicubic", "replicate", 4, (
            Published("EDVR-L", 28.88, 0.8361, _PAPER),
        )),
        _reds("reds4-deblur", "deblur", "train_blur", "blur", "replicate", 1, (
            Published("EDVR-L", 34.80, 0.9487, _PAPER),
        )),
        _reds("reds4-deblurcomp", "deblurcomp", "train_blur_comp", "blur_comp", "replicate", 1, (
            Published("EDVR-L", 30.24, 0.8567, _PAPER),
        )),
        _vid4("vid4", "BIx4", "BI", (Published("EDVR-L (Vimeo90K)", 27.35, 0.8264, _PAPER),)),
        _vid4("vid4-bd", "BDx4", "BD", ()),
        _vimeo("vimeo90k-t", "vimeo_septuplet_matlabLRx4", "BI"),
        _vimeo("vimeo90k-t-bd", "vimeo_septuplet_BDLRx4", "BD"),
    )
}

VIMEO_SPLITS = ("fast", "medium", "slow")


def get_protocol(name: str) -> Protocol:
    """The protocol called ``name``; an :class:`InputError` listing the known names otherwise.

    ``vimeo90k-t:fast`` (or ``:medium``/``:slow``) selects a motion subset of Vimeo90K-T; its list file must be in
    the dataset root (BasicSR's ``meta_info_Vimeo90K_test_<split>_GT.txt``).
    """
    base, _, split = name.partition(":")
    if base not in PROTOCOLS:
        raise InputError(f"{name}: unknown protocol; choose one of {', '.join(PROTOCOLS)}")
    proto = PROTOCOLS[base]
    if not split:
        return proto
    if proto.dataset != "vimeo90k" or split not in VIMEO_SPLITS:
        raise InputError(f"{name}: only Vimeo90K-T has subsets ({', '.join(VIMEO_SPLITS)}), e.g. vimeo90k-t:fast")
    return replace(
        proto,
        name=name,
        description=f"{proto.description}, {split}-motion subset",
        expected_clips=None,
        list_files=(f"meta_info_Vimeo90K_test_{split}_GT.txt",
                    f"vimeo_septuplet/meta_info_Vimeo90K_test_{split}_GT.txt"),
    )


def find_dir(root: Path, candidates: tuple[str, ...], what: str) -> Path:
    """The first existing folder among ``root/candidate``; an InputError naming all of them otherwise."""
    for c in candidates:
        if (root / c).is_dir():
            return root / c
    tried = ", ".join(str(root / c) for c in candidates)
    raise InputError(f"{root}: no {what} folder (looked for {tried}); pass the dataset root with --root")


def find_file(root: Path, candidates: tuple[str, ...], what: str) -> Path:
    for c in candidates:
        if (root / c).is_file():
            return root / c
    tried = ", ".join(str(root / c) for c in candidates)
    raise InputError(f"{root}: no {what} (looked for {tried}); download it with the dataset")
