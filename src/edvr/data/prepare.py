"""``edvr prepare``: turn videos or frame folders into LQ/GT frame folders in the REDS, Vimeo90K or Vid4 layout.

Sources (one level, sorted by name): a video file, a folder of frames, or a folder of videos and/or frame folders.
GT frames are cropped to a multiple of ``scale`` (bottom/right, the generation scripts' "mod crop"); LQ frames are
made as the public datasets were: BI = ``uint8(imresize(double(GT) / 255, 1 / scale))`` (MATLAB bicubic), BD = Gaussian
blur sigma ``0.4 * scale`` (1.6 for x4) then every ``scale``-th pixel, rounded to 8 bits.

Layouts written under OUT (what :mod:`edvr.data` reads back):

* ``reds``: ``{split}_sharp/NNN/00000000.png`` and ``{split}_sharp_bicubic/X{scale}/NNN/...``; each source is cut into
  clips of ``clip_length`` frames (100, as REDS), numbered 000, 001, ... across sources. BI only (REDS has no BD).
* ``vimeo90k``: ``vimeo_septuplet/sequences/SSSSS/QQQQ/im1..7.png`` (source S, its Q-th run of 7 frames; a last run
  shorter than 7 is dropped), LQ in ``vimeo_septuplet_matlabLRx{scale}`` (BI) or ``vimeo_septuplet_BDLRx{scale}``
  (BD), and the list ``sep_trainlist.txt`` (``split="train"``) or ``sep_testlist.txt`` (``split="test"``).
* ``vid4``: ``GT/<source name>/00000000.png`` and ``BIx{scale}/`` or ``BDx{scale}/``, one clip per source.

Writes are atomic (a temporary file renamed into place), so a finished file name means a finished file. Resuming:
frames whose GT and LQ files both exist are not recomputed, and a source whose marker
``OUT/.edvr-prepare/<name>-<hash of its path>.json`` records the same options is not even decoded. A source prepared
before with other options is refused (its old frames would stay beside the new ones: use a new OUT), except another
degradation, which adds its LQ folder beside the same GT, or another split. REDS clip numbers depend on the sources
before, so resume with the same sources: a clip another source wrote (REDS number, Vid4 name) is refused. A Vimeo90K
source keeps its sequence number ``SSSSS`` across runs, and a new source takes the next number not yet used in OUT,
so a test split prepared into the same OUT after the training split (or the reverse) gets sequences of its own; each
list file names every sequence of its split in OUT.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path

from edvr.errors import InputError, OutputError
from edvr.files import write_atomic

LAYOUTS: tuple[str, ...] = ("reds", "vimeo90k", "vid4")
DEGRADATIONS: tuple[str, ...] = ("bi", "bd")
_MARKERS = ".edvr-prepare"


def add_arguments(parser: argparse.ArgumentParser, name: str) -> None:
    """Arguments of ``edvr prepare``."""
    parser.add_argument("src", help="a video, a folder of frames, or a folder of videos and/or frame folders")
    parser.add_argument("out", help="output dataset root (created; existing finished files are kept)")
    parser.add_argument("--layout", required=True, choices=LAYOUTS, help="dataset layout to write")
    parser.add_argument("--degradation", default="bi", choices=DEGRADATIONS,
                        help="bi: MATLAB bicubic (default); bd: Gaussian blur sigma 0.4 x scale + subsampling")
    parser.add_argument("--scale", type=int, default=4, help="downscaling factor (default 4)")
    parser.add_argument("--split", default="train", choices=("train", "val", "test"),
                        help="reds: train_/val_ folders; vimeo90k: sep_trainlist or sep_testlist (default: train)")
    parser.add_argument("--clip-length", type=int, default=None,
                        help="frames per output clip (reds: 100; vid4: whole source; vimeo90k: always 7)")  # fmt: skip
    parser.add_argument("--max-frames", type=int, default=None, help="use at most this many frames of each source")


def run(args: argparse.Namespace) -> int:
    """Entry point of ``edvr prepare``."""
    written = prepare(
        args.src, args.out, layout=args.layout, degradation=args.degradation, scale=args.scale, split=args.split,
        clip_length=args.clip_length, max_frames=args.max_frames,
    )  # fmt: skip
    print(f"{args.out}: {len(written)} clips in the {args.layout} layout")
    return 0


def prepare(
    src: str | os.PathLike,
    out: str | os.PathLike,
    *,
    layout: str,
    degradation: str = "bi",
    scale: int = 4,
    split: str = "train",
    clip_length: int | None = None,
    max_frames: int | None = None,
    log: Callable[[str], None] | None = print,
) -> list[str]:
    """Write the dataset (see the module docstring); returns the clip (or sequence) names, in order."""
    from edvr.data.videos import find_sources

    if layout not in LAYOUTS:
        raise InputError(f"layout={layout!r}: use one of {', '.join(LAYOUTS)}")
    if degradation not in DEGRADATIONS:
        raise InputError(f"degradation={degradation!r}: use one of {', '.join(DEGRADATIONS)}")
    if scale < 1:
        raise InputError(f"scale={scale}: must be a positive integer")
    if layout == "reds" and degradation != "bi":
        raise InputError("--degradation bd: REDS has bicubic LQ only; use --layout vid4 or vimeo90k for BD")
    if layout == "reds" and split not in ("train", "val"):
        raise InputError(f"--split {split}: REDS folders are train_* or val_*")
    if layout == "vimeo90k" and split not in ("train", "test"):
        raise InputError(f"--split {split}: Vimeo90K lists are sep_trainlist.txt or sep_testlist.txt")
    if layout == "vimeo90k" and clip_length not in (None, 7):
        raise InputError(f"--clip-length {clip_length}: Vimeo90K sequences have 7 frames")
    if clip_length is not None and clip_length < 1:
        raise InputError(f"--clip-length {clip_length}: must be positive")
    if max_frames is not None and max_frames < 1:
        raise InputError(f"--max-frames {max_frames}: must be positive")
    src, out = Path(src), Path(out)
    if src.is_dir() and out.resolve().is_relative_to(src.resolve()):
        raise OutputError(f"{out}: inside the source folder {src}; choose an output outside it")
    paths = _LayoutPaths(out, layout, degradation, scale, split)
    for root in (paths.gt_root, paths.lq_root):
        if src.resolve().is_relative_to(root.resolve()):
            raise OutputError(f"{src}: inside {root}, where prepare writes its frames; choose another output")
    sources = find_sources(src)
    length = 7 if layout == "vimeo90k" else clip_length or (100 if layout == "reds" else None)
    options = {"layout": layout, "degradation": degradation, "scale": scale, "split": split, "clip_length": clip_length,
               "max_frames": max_frames}
    markers = out / _MARKERS
    known = {m.name: json.loads(m.read_text()) for m in markers.glob("*.json")} if markers.is_dir() else {}
    next_number = 1 + max((d.get("number", 0) for d in known.values()), default=0)
    if layout == "vid4":  # one clip per source name: a/ and a.mp4 would write into one folder
        seen: dict[str, Path] = {}
        for source in sources:
            if source.name in seen:
                raise InputError(f"{source.path} and {seen[source.name]}: both would be clip {source.name}; rename one")
            seen[source.name] = source.path
    names: list[str] = []
    short: list[Path] = []
    limit = f" within --max-frames {max_frames}" if max_frames is not None and length and max_frames < length else ""
    for source in sources:
        marker = markers / f"{source.name}-{hashlib.sha1(str(source.path.resolve()).encode()).hexdigest()[:10]}.json"
        done = known.get(marker.name, {})
        if done.get("options") == options:
            names += done["clips"]
            if log:
                log(f"{source.path}: done before, skipped")
            continue
        diff = sorted(k for k in options if done and done.get("options", {}).get(k) != options[k])
        if set(diff) - {"degradation", "split"}:  # another degradation adds an LQ folder beside the same GT, another
            # split other folders (or list)
            raise OutputError(f"{out}: {source.path} was prepared here with other {', '.join(diff)}; its frames would "
                              "mix with the new ones: prepare into a new output folder")
        vid4_first = source.name if length is None else f"{source.name}_000"
        first = {"reds": f"{len(names):03d}", "vid4": vid4_first}.get(layout)  # the clip it would write first
        owner = next((d.get("source") for d in known.values() if d is not done and first in d.get("clips", ())
                      and d.get("options", {}).get("layout") == layout
                      and (layout == "vid4" or d.get("options", {}).get("split") == split)), None)
        if owner is not None:
            raise OutputError(f"{out}: clip {first} holds frames of {owner}, and {source.path} would write into it "
                              "(the sources changed since); prepare into a new output folder")
        number = done.get("number")
        if number is None:
            number, next_number = next_number, next_number + 1
        clips = _prepare_source(source, number, len(names), paths, length, max_frames, scale, degradation)
        if not clips:  # not recorded: a rerun with more frames must not skip it as done
            short.append(source.path)
            if log:
                log(f"{source.path}: too few frames for one {length or 1}-frame clip{limit}, skipped")
            continue
        names += clips
        markers.mkdir(parents=True, exist_ok=True)
        record = {"source": str(source.path), "options": options, "number": number, "clips": clips}
        _write_atomic(marker, json.dumps(record).encode())
        if log:
            log(f"{source.path}: {len(clips)} {'sequences' if layout == 'vimeo90k' else 'clips'}")
    if short and not names:
        raise InputError(f"{short[0]}{' and the others' if len(short) > 1 else ''}: too few frames for one "
                         f"{length or 1}-frame clip{limit}; use longer sources"
                         + (" or a larger --max-frames" if limit else ""))
    if layout == "vimeo90k":  # every sequence of this split in OUT, from earlier runs too
        list_name = "sep_trainlist.txt" if split == "train" else "sep_testlist.txt"
        same = ("layout", "split", "scale")
        earlier = [c for d in known.values() if all(d.get("options", {}).get(k) == options[k] for k in same)
                   for c in d.get("clips", ())]
        listed = sorted(set(names) | set(earlier))
        _write_atomic(out / "vimeo_septuplet" / list_name, "".join(f"{n}\n" for n in listed).encode())
    return names


class _LayoutPaths:
    """Where GT and LQ frame ``pos`` of clip ``clip`` go in one layout."""

    def __init__(self, out: Path, layout: str, degradation: str, scale: int, split: str) -> None:
        self.layout = layout
        if layout == "reds":
            self.gt_root = out / f"{split}_sharp"
            self.lq_root = out / f"{split}_sharp_bicubic" / f"X{scale}"
        elif layout == "vimeo90k":
            self.gt_root = out / "vimeo_septuplet" / "sequences"
            lq = "vimeo_septuplet_matlabLRx" if degradation == "bi" else "vimeo_septuplet_BDLRx"
            self.lq_root = out / f"{lq}{scale}" / "sequences"
        else:
            self.gt_root = out / "GT"
            self.lq_root = out / f"{degradation.upper()}x{scale}"

    def frame(self, clip: str, pos: int) -> tuple[Path, Path]:
        name = f"im{pos + 1}.png" if self.layout == "vimeo90k" else f"{pos:08d}.png"
        return self.gt_root / clip / name, self.lq_root / clip / name


def _prepare_source(source, number: int, clips_before: int, paths: _LayoutPaths, length: int | None,
                    max_frames: int | None, scale: int, degradation: str) -> list[str]:  # fmt: skip
    """Write one source's clips; returns their names."""

    def clip_name(chunk: int) -> str:
        if paths.layout == "reds":
            return f"{clips_before + chunk:03d}"
        if paths.layout == "vimeo90k":
            return f"{number:05d}/{chunk + 1:04d}"
        return source.name if length is None else f"{source.name}_{chunk:03d}"

    clips: list[str] = []
    pending: list[tuple[Path, Path, object]] = []  # vimeo90k: a run of 7 is written only once it is complete
    for i, frame in enumerate(_iter_frames(source, max_frames)):
        chunk, pos = (0, i) if length is None else divmod(i, length)
        name = clip_name(chunk)
        gt_path, lq_path = paths.frame(name, pos)
        if paths.layout == "vimeo90k":
            pending.append((gt_path, lq_path, frame))
            if len(pending) == length:
                for g, lq, f in pending:
                    _write_pair(g, lq, f, scale, degradation)
                pending.clear()
                clips.append(name)
            continue
        _write_pair(gt_path, lq_path, frame, scale, degradation)
        if not clips or clips[-1] != name:
            clips.append(name)
    return clips


def _iter_frames(source, max_frames: int | None) -> Iterator:
    """Frames of a source as ``(H, W, 3)`` uint8 numpy arrays, or ``(3, H, W)`` float tensors for 16-bit files."""
    import numpy as np

    from edvr.data.videos import read_rgb

    count = 0
    if source.is_video:
        from edvr.inference.video_io import read_frames

        frames = (np.clip(np.rint(f.image * 255.0), 0, 255).astype(np.uint8) for f in read_frames(source.path))
    else:
        frames = (_chw_to_frame(read_rgb(p)) for p in source.frames)
    size = None
    for frame in frames:
        if max_frames is not None and count >= max_frames:
            return
        shape = tuple(frame.shape[:2]) if not hasattr(frame, "permute") else tuple(frame.shape[-2:])
        if size is not None and shape != size:
            raise InputError(f"{source.path}: frame {count} is {shape[1]}x{shape[0]} but the frames before it are "
                             f"{size[1]}x{size[0]}; a clip needs frames of one size")
        size = shape
        count += 1
        yield frame


def _chw_to_frame(x):
    import torch

    return x.permute(1, 2, 0).numpy() if x.dtype == torch.uint8 else x


def _write_pair(gt_path: Path, lq_path: Path, frame, scale: int, degradation: str) -> None:
    """Write GT (mod-cropped) and its LQ unless both exist already."""
    if gt_path.is_file() and lq_path.is_file():
        return
    import torch

    from edvr.data.degradations import bd_degrade, bi_degrade

    if isinstance(frame, torch.Tensor):  # 16-bit source: quantise the GT like any 8-bit dataset frame
        gt = torch.floor(frame.clamp(0, 1) * 255.0 + 0.5).to(torch.uint8)
    else:
        gt = torch.from_numpy(frame).permute(2, 0, 1)
    h, w = gt.shape[-2] // scale * scale, gt.shape[-1] // scale * scale
    if h == 0 or w == 0:
        raise InputError(f"{gt_path}: source frame {gt.shape[-1]}x{gt.shape[-2]} is smaller than the scale {scale}")
    gt = gt[:, :h, :w]
    if degradation == "bi":
        lq = bi_degrade(gt, scale=scale)
    else:
        lq = bd_degrade(gt.to(torch.float64) / 255.0, scale=scale)
        lq = torch.floor(lq.clamp(0, 1) * 255.0 + 0.5).to(torch.uint8)  # MATLAB-style rounding, as imwrite
    for path, image in ((gt_path, gt), (lq_path, lq)):
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            _write_atomic(path, encode_png(image.permute(1, 2, 0).contiguous().numpy()))


def encode_png(image) -> bytes:
    """PNG bytes of an ``(H, W, 3)`` uint8 array, with FFmpeg's encoder (a core dependency) at zlib level 3:
    measured on a 720p frame, 71 ms and 1.14 MB (Pillow at level 3: 119 ms; FFmpeg's default level: 230 ms, -5 %)."""
    import av

    ctx = av.CodecContext.create("png", "w")
    ctx.width, ctx.height, ctx.pix_fmt = image.shape[1], image.shape[0], "rgb24"
    ctx.options = {"compression_level": "3"}
    packets = ctx.encode(av.VideoFrame.from_ndarray(image, format="rgb24")) + ctx.encode(None)
    return b"".join(bytes(p) for p in packets)


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, data)
