"""Frames on disk and the datasets built on them.

Three parts, top to bottom:

1. Reading frames. :func:`read_rgb` decodes an image file with PyAV's codec directly (no demuxer; the decoder is
   ``edvr.inference.video_io``'s, shared with ``edvr restore`` and evaluation). PNG decode is the
   bottleneck of EDVR training (one 1280x720 GT and five 320x180 LQ frames per sample); measured on a 1280x720 REDS
   frame, single thread: PyAV codec 16-18 ms, Pillow 27-29 ms, imageio 29 ms, PyAV through ``av.open`` 34 ms. PyAV
   is also a core dependency, Pillow is not. Frames come back as uint8 ``(3, H, W)`` so that crops and flips touch
   uint8 memory; :func:`to_float` converts at the end.
2. :class:`PairedClipsDataset`: clips of LQ and GT frame files, the sampling logic shared by REDS and Vid4
   (training: random centre, aligned crop, flips/rot90, reversal; test: every frame, temporal padding).
3. :class:`VideoFolderDataset`: any folder of videos or frame folders, LQ made on the fly from the frames.
"""

from __future__ import annotations

import os
import random
import warnings
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from edvr.data.frames import PADDING_MODES, window_indices
from edvr.data.transforms import (
    apply_augment,
    crop,
    paired_crop_box,
    random_reverse,
    sample_augment,
    sample_rng,
)
from edvr.errors import InputError

VIDEO_SUFFIXES: tuple[str, ...] = (
    ".mp4", ".mkv", ".avi", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".ts", ".flv", ".wmv", ".y4m",
)  # fmt: skip


# --------------------------------------------------------------------------------------------------------------
# 1. Reading frames
# --------------------------------------------------------------------------------------------------------------


def read_rgb(path: str | os.PathLike) -> Tensor:
    """Decode an image file to RGB ``(3, H, W)``: uint8 for 8-bit files, float32 in [0, 1] for deeper ones.

    Alpha is dropped and grey or palette images are expanded to RGB. Raises ``InputError`` naming the file when
    it is missing or cannot be decoded.
    """
    from edvr.inference.video_io import read_image_pixels, to_unit  # here: listing datasets loads no FFmpeg

    pixels = read_image_pixels(path)
    if pixels.dtype != np.uint8:
        pixels = to_unit(pixels)
    return torch.from_numpy(pixels).permute(2, 0, 1)


def to_float(x: Tensor) -> Tensor:
    """uint8 (or already float) frames -> contiguous float32 in [0, 1]."""
    if x.dtype == torch.uint8:
        return x.float().div_(255.0)
    return x.float().contiguous()


def list_frames(folder: Path) -> list[Path]:
    """The image files of ``folder`` in natural order (no recursion)."""
    from edvr.inference.video_io import list_images

    return list_images(folder)


def clip_names(clips: Sequence[str] | str) -> list[str]:
    """A list of clip folder names, or one InputError for names that are not text: in YAML an unquoted ``011`` is
    the number 9 (octal) and ``000`` is 0, so a number here is never the folder the user meant."""
    names = [clips] if isinstance(clips, (str, int)) else list(clips) if isinstance(clips, (list, tuple)) else None
    if names is None or not all(isinstance(n, str) for n in names):
        raise InputError(f"clips={names!r}: clip names are folder names, text; quote them in YAML ('000', '011': "
                         "unquoted, 011 reads as the number 9)")
    return names


def require_dir(path: Path, expected: str) -> Path:
    """Return ``path`` if it is a folder, else raise ``InputError`` saying what layout was expected there."""
    if not path.is_dir():
        raise InputError(f"{path}: folder not found; expected {expected}")
    return path


# --------------------------------------------------------------------------------------------------------------
# 2. Paired clips of frame files (REDS, Vid4)
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Clip:
    """One clip: its name (the first part of each key) and its frame files, LQ and GT in the same order."""

    name: str
    lq: tuple[Path, ...]
    gt: tuple[Path, ...]


def paired_clip(name: str, lq_dir: Path, gt_dir: Path) -> Clip:
    """Pair the frames of ``lq_dir`` and ``gt_dir`` by file name; any difference is an error (half a download)."""
    gt = list_frames(gt_dir)
    if not gt:
        raise InputError(f"{gt_dir}: no image files; expected one PNG per frame (00000000.png, ...)")
    lq_names = {p.stem for p in list_frames(lq_dir)}
    missing = [p.stem for p in gt if p.stem not in lq_names]
    if missing or len(lq_names) != len(gt):
        detail = f"missing {missing[0]} and {len(missing) - 1} more" if missing else "it has extra frames"
        raise InputError(f"{lq_dir}: frames do not match {gt_dir} ({detail}); re-extract or re-download the clip")
    lq_by_stem = {p.stem: p for p in list_frames(lq_dir)}
    return Clip(name=name, lq=tuple(lq_by_stem[p.stem] for p in gt), gt=tuple(gt))


class PairedClipsDataset(Dataset):
    """Windows of LQ frames and the GT of their centre frame, from clips of frame files.

    Training (``test=False``), as the EDVR/BasicSR reference: the index names a clip frame; if the window around it
    (``num_frames`` frames, ``interval`` apart) leaves the clip, the centre is redrawn among the frames whose window
    fits, so there is never temporal padding in training. Then an aligned random crop (``gt_size`` GT pixels,
    ``gt_size // scale`` LQ pixels), flips and rot90 shared by all frames and the GT, optional temporal reversal.

    Test (``test=True``): every frame of every clip is a centre, whole frames, windows padded with ``padding``.

    Randomness: each training sample draws from :func:`~edvr.data.transforms.sample_rng` ``(seed, epoch, index)``,
    so a sample depends on nothing else. Call :meth:`set_epoch` before each epoch's DataLoader iterator is created
    (with ``persistent_workers=False``, the default, workers copy the dataset at that moment); without it every epoch
    repeats the same crops.

    Items: ``{"lq": (T, 3, h, w) float32, "gt": (3, H, W) float32, "key": "clip/frame"}``, RGB in [0, 1].
    """

    def __init__(
        self,
        clips: Sequence[Clip],
        *,
        test: bool,
        num_frames: int = 5,
        gt_size: int = 256,
        scale: int = 4,
        augment: bool = True,
        frame_interval: int | Sequence[int] = 1,
        random_reverse: bool = False,
        padding: str = "reflection_circle",
        seed: int = 0,
    ) -> None:
        if num_frames < 1 or num_frames % 2 == 0:
            raise InputError(f"num_frames={num_frames}: must be odd and positive (the window is centred on a frame)")
        if padding not in PADDING_MODES:
            raise InputError(f"padding={padding!r}: unknown temporal padding; use one of {', '.join(PADDING_MODES)}")
        intervals = (frame_interval,) if not isinstance(frame_interval, (list, tuple)) else tuple(frame_interval)
        if not intervals or not all(isinstance(i, int) for i in intervals) or min(intervals) < 1:
            raise InputError(f"frame_interval={frame_interval!r}: must be a positive integer or a list of them")
        if not test and gt_size % scale:
            raise InputError(f"gt_size={gt_size}: must be a multiple of scale {scale} so LQ and GT patches align")
        if not clips:
            raise InputError("no clips selected; check the dataset root, split and clip list")
        if not test:
            span = (num_frames - 1) * max(intervals) + 1
            short = [c for c in clips if len(c.gt) < span]
            if short:
                raise InputError(
                    f"clip {short[0].name}: {len(short[0].gt)} frames, but a training window of {num_frames} frames "
                    f"at interval {max(intervals)} spans {span}; lower num_frames/frame_interval or drop the clip"
                )
        self.clips = list(clips)
        self.test = test
        self.num_frames = num_frames
        self.gt_size = gt_size
        self.scale = scale
        self.augment = augment
        self.intervals = intervals
        self.random_reverse = random_reverse
        self.padding = padding
        self.seed = seed
        self.epoch = 0
        self.items: list[tuple[int, int]] = [(c, f) for c, clip in enumerate(self.clips) for f in range(len(clip.gt))]

    def __len__(self) -> int:
        return len(self.items)

    def set_epoch(self, epoch: int) -> None:
        """Select the random stream of ``epoch`` (see the class docstring)."""
        self.epoch = epoch

    def __getitem__(self, index: int) -> dict:
        clip_idx, center = self.items[index]
        clip = self.clips[clip_idx]
        total = len(clip.gt)
        rng = None
        if self.test:
            neighbours = window_indices(center, self.num_frames, total, self.padding)
        else:
            rng = sample_rng(self.seed, self.epoch, index)
            interval = rng.choice(self.intervals)
            reach = (self.num_frames // 2) * interval
            if not reach <= center < total - reach:
                center = rng.randint(reach, total - 1 - reach)
            neighbours = list(range(center - reach, center + reach + 1, interval))
            if self.random_reverse:
                neighbours = random_reverse(neighbours, rng)

        lqs = [read_rgb(clip.lq[i]) for i in neighbours]
        gt = read_rgb(clip.gt[center])
        check_pair_sizes(lqs, [clip.lq[i] for i in neighbours], gt, clip.gt[center], self.scale)
        if rng is not None:
            lqs, gt = crop_and_augment(lqs, gt, self.gt_size, self.scale, self.augment, rng, clip.gt[center])
        return {
            "lq": torch.stack([to_float(x) for x in lqs]),
            "gt": to_float(gt),
            "key": f"{clip.name}/{clip.gt[center].stem}",
        }


def check_pair_sizes(lqs: list[Tensor], lq_paths: list[Path], gt: Tensor, gt_path: Path, scale: int) -> None:
    """Raise ``InputError`` naming the files unless all LQ frames share a size and the GT is ``scale`` times it."""
    h, w = lqs[0].shape[-2:]
    for x, p in zip(lqs, lq_paths, strict=True):
        if tuple(x.shape[-2:]) != (h, w):
            raise InputError(f"{p}: {x.shape[-1]}x{x.shape[-2]} differs from {lq_paths[0]} ({w}x{h}); frames of a clip "
                             "must share one size")  # fmt: skip
    if tuple(gt.shape[-2:]) != (h * scale, w * scale):
        raise InputError(
            f"{gt_path}: GT is {gt.shape[-1]}x{gt.shape[-2]} but LQ {lq_paths[0]} is {w}x{h} at scale {scale} "
            f"(expected {w * scale}x{h * scale}); check the scale/track or regenerate the LQ frames"
        )


def crop_and_augment(
    lqs: list[Tensor], gt: Tensor, gt_size: int, scale: int, augment: bool, rng: random.Random, where: Path
) -> tuple[list[Tensor], Tensor]:
    """The training transform: one aligned random crop, then (if ``augment``) one symmetry for all frames and GT."""
    h, w = lqs[0].shape[-2:]
    if h * scale < gt_size or w * scale < gt_size:
        raise InputError(f"{where}: frame {w * scale}x{h * scale} is smaller than gt_size {gt_size}; lower gt_size")
    (lt, ll, ls), (gtop, gl, gs) = paired_crop_box((h, w), gt_size, scale, rng)
    lqs = [crop(x, lt, ll, ls, ls) for x in lqs]
    gt = crop(gt, gtop, gl, gs, gs)
    if augment:
        aug = sample_augment(rng)
        lqs = [apply_augment(x, aug) for x in lqs]
        gt = apply_augment(gt, aug)
    return lqs, gt


# --------------------------------------------------------------------------------------------------------------
# 3. Any folder of videos or frame folders, LQ made on the fly
# --------------------------------------------------------------------------------------------------------------

DEGRADATIONS: tuple[str, ...] = ("bi", "bd", "blur")


@dataclass(frozen=True)
class Source:
    """One clip of a video folder: a video file (``frames`` empty, ``count`` from the container) or a frame folder."""

    name: str
    path: Path
    count: int
    frames: tuple[Path, ...] = ()

    @property
    def is_video(self) -> bool:
        return not self.frames


def count_video_frames(path: Path) -> int:
    """Frames in the video stream (the first that is not cover art, as :func:`read_frames`): the container's count,
    else counted by demuxing (no decoding)."""
    import av

    from edvr.inference.video_io import _video_stream

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise InputError(f"{path}: no video stream; remove the file or point at a folder of videos only")
            stream = _video_stream(container, path)  # the stream read_frames decodes (cover art is skipped)
            if stream.frames > 0:
                return int(stream.frames)
            return sum(1 for packet in container.demux(stream) if packet.size > 0)
    except av.error.FFmpegError as e:
        raise InputError(f"{path}: cannot open the video ({e}); re-encode it or remove it from the folder") from None


def find_sources(root: str | os.PathLike) -> list[Source]:
    """The clips under ``root``: a video file, a folder of frames, or a folder of videos and/or frame folders.

    One level only (``root/clip.mp4``, ``root/clip/00000000.png``), sorted by name: deeper trees are usually datasets
    with their own layout, for which the dedicated dataset classes exist.
    """
    root = Path(root)
    expected = "a video file, a folder of frames, or a folder of videos (.mp4, .mkv, ...) and/or frame folders"
    if root.is_file():
        if root.suffix.lower() not in VIDEO_SUFFIXES:
            raise InputError(f"{root}: not a video file ({root.suffix}); expected {expected}")
        return [Source(name=root.stem, path=root, count=count_video_frames(root))]
    require_dir(root, expected)
    from edvr.inference.video_io import natural_key

    own_frames = list_frames(root)
    if own_frames:
        return [Source(name=root.name, path=root, count=len(own_frames), frames=tuple(own_frames))]
    sources = []
    for entry in sorted(root.iterdir(), key=lambda e: natural_key(e.name)):
        if entry.is_file() and entry.suffix.lower() in VIDEO_SUFFIXES:
            sources.append(Source(name=entry.stem, path=entry, count=count_video_frames(entry)))
        elif entry.is_dir():
            frames = list_frames(entry)
            if frames:
                sources.append(Source(name=entry.name, path=entry, count=len(frames), frames=tuple(frames)))
    if not sources:
        raise InputError(f"{root}: no videos or frame folders found; expected {expected}")
    return sources


class VideoFolderDataset(Dataset):
    """Training or test windows from any folder of videos or frame folders; LQ is made from the frames on the fly.

    GT = the frames (cropped to a multiple of ``scale``). LQ by ``degradation``:
    ``bi`` MATLAB bicubic downscale (REDS, Vimeo90K BI, Vid4 BIx4), ``bd`` Gaussian blur sigma 0.4 x scale (1.6 at x4)
    then every ``scale``-th pixel (BD), ``blur`` HR input: each LQ frame is the average of the ``blur_frames`` frames around it
    (the way REDS made its blur from high-frame-rate video; at 24-30 fps this is a strong blur). Then optional JPEG
    (``jpeg_quality``, per frame) or H.264 (``h264_crf``, on the window) compression. LQ is rounded to 8 bits like
    a stored dataset; ``blur_frames`` must be odd.

    In training, the LQ patch is made from a GT region with a margin of ``_MARGIN`` LQ pixels, then cut, so patch
    borders see real neighbours (the x4 bicubic kernel reaches 8 GT pixels = 2 LQ pixels, the BD Gaussian less);
    the patch then equals the same crop of the whole degraded frame: where the margin is clipped by the frame
    border, the degradation sees that same border in both cases. Not so for the compression, which is applied to the
    region with its margin: its 8x8 block grid starts at the region's corner and an H.264 window starts with an
    I-frame, so it is compression of the kind a whole frame gets, not the same bits. Sampling otherwise as
    :class:`PairedClipsDataset`.

    Decoding choice: video files are decoded whole, once per worker process, into uint8 arrays (a 10- or 12-bit
    video is rounded to 8 bits here; frame folders of 16-bit PNGs keep their precision) kept in a
    least-recently-used cache of at most ``cache_frames`` frames (600 frames of 720p are 1.7 GB per worker). A video
    longer than that is decoded up to each window from its start, and when all videos together exceed it many random
    training windows decode a video again: correct but slow, with a warning; for large training sets extract frames
    once with ``edvr prepare`` (or ffmpeg) and train on the frame folders.
    """

    _MARGIN = 4

    def __init__(
        self,
        root: str | os.PathLike,
        *,
        degradation: str = "bi",
        scale: int = 4,
        num_frames: int = 5,
        gt_size: int = 256,
        augment: bool = True,
        split: str = "train",
        frame_interval: int | Sequence[int] = 1,
        random_reverse: bool = False,
        padding: str | None = None,
        blur_frames: int = 5,
        jpeg_quality: int | None = None,
        h264_crf: int | None = None,
        cache_frames: int = 600,
        seed: int = 0,
    ) -> None:
        if degradation not in DEGRADATIONS:
            raise InputError(f"degradation={degradation!r}: unknown; use one of {', '.join(DEGRADATIONS)}")
        if split not in ("train", "test"):
            raise InputError(f"split={split!r}: use 'train' (random patches) or 'test' (every frame, whole frames)")
        if degradation == "blur":
            scale = 1  # HR input: the blurred frames keep the GT size
        if degradation == "blur" and (blur_frames < 1 or blur_frames % 2 == 0):
            raise InputError(f"blur_frames={blur_frames}: must be odd and positive (the blur is centred on a frame)")
        if jpeg_quality is not None and h264_crf is not None:
            raise InputError("jpeg_quality and h264_crf both set; pick one compression")
        # Fail here, not in a worker, if the degradation module is broken or missing. (Not kept as an attribute:
        # a module cannot be pickled, and spawned loader workers, macOS's default, get the dataset pickled.)
        from edvr.data import degradations  # noqa: F401

        self.sources = find_sources(root)
        self.degradation = degradation
        self.blur_frames = blur_frames
        self.jpeg_quality = jpeg_quality
        self.h264_crf = h264_crf
        self.cache_frames = cache_frames
        if padding is None:
            padding = "replicate" if degradation == "blur" else "reflection_circle"
        # Reuse the sampling rules; its clips carry only names and frame counts (the files are read here).
        clips = [Clip(name=s.name, lq=(), gt=tuple(Path(f"{i:08d}") for i in range(s.count))) for s in self.sources]
        self._sampler = PairedClipsDataset(
            clips, test=split == "test", num_frames=num_frames, gt_size=gt_size, scale=scale, augment=augment,
            frame_interval=frame_interval, random_reverse=random_reverse, padding=padding, seed=seed,
        )  # fmt: skip
        video_frames = sum(src.count for src in self.sources if src.is_video)
        if split == "train" and video_frames > cache_frames:  # random windows over all videos: most miss the cache
            warnings.warn(
                f"{root}: its videos hold {video_frames} frames, more than cache_frames={cache_frames}; training "
                "windows are drawn at random, so many of them decode a whole video again (slow). Extract frames with "
                "`edvr prepare` (or raise cache_frames if memory allows).",
                stacklevel=2,
            )
        self.scale = scale
        self._cache: OrderedDict[Path, np.ndarray] = OrderedDict()
        self._cached = 0
        self._warned: set[Path] = set()

    def __len__(self) -> int:
        return len(self._sampler)

    def set_epoch(self, epoch: int) -> None:
        """Select the random stream of ``epoch`` (see :class:`PairedClipsDataset`)."""
        self._sampler.set_epoch(epoch)

    def __getitem__(self, index: int) -> dict:
        s = self._sampler
        clip_idx, center = s.items[index]
        source = self.sources[clip_idx]
        rng = None
        if s.test:
            neighbours = window_indices(center, s.num_frames, source.count, s.padding)
        else:
            rng = sample_rng(s.seed, s.epoch, index)
            interval = rng.choice(s.intervals)
            reach = (s.num_frames // 2) * interval
            if not reach <= center < source.count - reach:
                center = rng.randint(reach, source.count - 1 - reach)
            neighbours = list(range(center - reach, center + reach + 1, interval))
            if s.random_reverse:
                neighbours = random_reverse(neighbours, rng)

        # Frames the LQ needs: the window, widened for temporal blur (replicated at the clip ends).
        half_blur = self.blur_frames // 2 if self.degradation == "blur" else 0
        needed = sorted({min(max(j, 0), source.count - 1) for i in neighbours for j in range(i - half_blur,
                                                                                              i + half_blur + 1)})
        frames = self._frames(source, needed)  # index -> (3, H, W) uint8, cropped to a multiple of scale
        gt_full = frames[center]
        H, W = gt_full.shape[-2:]
        if rng is None:
            region = (0, 0, H, W)
            lq_box = None
        else:
            if H < s.gt_size or W < s.gt_size:
                raise InputError(f"{source.path}: frames are {W}x{H}, smaller than gt_size {s.gt_size}; lower it")
            (lt, ll, ls), _ = paired_crop_box((H // self.scale, W // self.scale), s.gt_size, self.scale, rng)
            # GT region with a margin, in LQ units, clipped at the frame border.
            m = self._MARGIN
            t0, l0 = max(lt - m, 0), max(ll - m, 0)
            t1, l1 = min(lt + ls + m, H // self.scale), min(ll + ls + m, W // self.scale)
            sc = self.scale
            region = (t0 * sc, l0 * sc, (t1 - t0) * sc, (l1 - l0) * sc)
            lq_box = (lt - t0, ll - l0, ls)

        def gt_region(i: int) -> Tensor:
            return to_float(crop(frames[i], *region))

        lq = self._degrade_window(neighbours, gt_region, half_blur, source.count)  # (T, 3, h, w)
        gt = gt_region(center)
        if lq_box is not None:
            top, left, size = lq_box
            lq = crop(lq, top, left, size, size)
            gt = crop(gt, top * self.scale, left * self.scale, size * self.scale, size * self.scale)
            if s.augment:
                aug = sample_augment(rng)
                lq, gt = apply_augment(lq, aug), apply_augment(gt, aug)
        frame_name = f"{center:08d}" if source.is_video else source.frames[center].stem
        return {"lq": lq.contiguous(), "gt": gt.contiguous(), "key": f"{source.name}/{frame_name}"}

    def _degrade_window(self, neighbours: list[int], gt_region, half_blur: int, count: int) -> Tensor:
        from edvr.data import degradations as deg

        if self.degradation == "blur":
            lq = []
            for i in neighbours:
                group = [gt_region(min(max(j, 0), count - 1)) for j in range(i - half_blur, i + half_blur + 1)]
                lq.append(deg.average_frames(torch.stack(group)))
            lq = torch.stack(lq)
        else:
            hr = torch.stack([gt_region(i) for i in neighbours])  # (T, 3, H, W)
            if self.degradation == "bi":
                lq = deg.imresize(hr, 1 / self.scale)
            else:
                lq = deg.bd_degrade(hr, scale=self.scale)
        # Round to 8 bits as the stored datasets did (MATLAB imwrite rounds half away from zero): the model meets
        # 8-bit LQ at test time, and the rounding is part of the degradation it learns to undo.
        lq = torch.floor(lq.clamp(0, 1) * 255.0 + 0.5) / 255.0
        if self.jpeg_quality is not None:
            lq = torch.stack([deg.jpeg(x, self.jpeg_quality) for x in lq])
        elif self.h264_crf is not None:
            lq = deg.h264(lq, self.h264_crf)
        return lq

    def _frames(self, source: Source, indices: list[int]) -> dict[int, Tensor]:
        if not source.is_video:
            out = {i: read_rgb(source.frames[i]) for i in indices}  # uint8, or float32 for 16-bit files
        else:
            video = self._video(source, indices)
            out = {i: torch.from_numpy(video[i]).permute(2, 0, 1) for i in indices}
        first = out[indices[0]].shape[-2:]
        for i, x in out.items():
            if x.shape[-2:] != first:
                where = f"frame {i}" if source.is_video else str(source.frames[i])
                raise InputError(f"{where}: {x.shape[-1]}x{x.shape[-2]}, but {source.name}'s frame {indices[0]} is "
                                 f"{first[1]}x{first[0]}; every frame of a clip must have one size")
        sc = self.scale
        return {i: x[..., : x.shape[-2] // sc * sc, : x.shape[-1] // sc * sc] for i, x in out.items()}

    def _video(self, source: Source, indices: list[int]):
        """Decoded frames of a video as ``index -> (H, W, 3) uint8``: the whole video via the cache if it fits."""
        from edvr.inference.video_io import read_frames

        if source.path in self._cache:
            self._cache.move_to_end(source.path)
            return self._cache[source.path]
        if source.count > self.cache_frames:
            if source.path not in self._warned:
                self._warned.add(source.path)
                warnings.warn(
                    f"{source.path}: {source.count} frames exceed cache_frames={self.cache_frames}; decoding up to each "
                    "window from the start (slow). Extract frames with `edvr prepare` for training.",
                    stacklevel=3,
                )
            start = min(indices)
            window = [_to_uint8(f.image) for f in read_frames(source.path, start=start, stop=max(indices) + 1)]
            return {start + k: a for k, a in enumerate(window)}
        video = np.stack([_to_uint8(f.image) for f in read_frames(source.path)])
        if len(video) < source.count:
            raise InputError(f"{source.path}: decoded {len(video)} frames, the container announced {source.count}; "
                             "the file is damaged or truncated; re-encode it")  # fmt: skip
        while self._cache and self._cached + len(video) > self.cache_frames:
            _, old = self._cache.popitem(last=False)
            self._cached -= len(old)
        self._cache[source.path] = video
        self._cached += len(video)
        return video


def _to_uint8(image: np.ndarray) -> np.ndarray:
    # Decoded 8-bit video arrives as float32 k/255; rounding recovers k exactly, and uint8 is 4x smaller to cache.
    return np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)
