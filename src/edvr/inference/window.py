"""Streaming restoration: a fixed temporal window slides over a frame iterator, each frame's features computed once.

EDVR restores frame ``c`` from the window ``window_indices(c, T, total, padding)``. The per-frame part of the network
(:meth:`EDVR.encode`, 23 % of a window's FLOPs for EDVR-M) does not depend on the window, so its result is cached and
reused by the ``T`` windows that contain the frame. Memory holds at most ``2T - 2 + batch`` frames (``batch``: windows
restored together), whatever the length.

Frames may be split into overlapping spatial tiles (``tile``, in input pixels); the model then runs per tile and the
centre part of each tile's output is kept. With enough overlap (context) the result equals the untiled one closely.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from edvr.data.frames import window_indices
from edvr.errors import InputError
from edvr.models.edvr import EDVR, Pyramid, pad_to_multiple

HALF_DEVICES = ("cuda", "mps")  # where --half runs fp16 autocast; it is ignored on the CPU


@dataclass(frozen=True)
class Tile:
    """A core region ``[y0, y1) x [x0, x1)`` of the (padded) input and the larger crop it is computed from."""

    y0: int
    y1: int
    x0: int
    x1: int
    cy0: int
    cy1: int
    cx0: int
    cx1: int


def plan_tiles(height: int, width: int, tile: int | None, overlap: int, multiple: int) -> list[Tile]:
    """Tiles covering a ``height x width`` frame (both multiples of ``multiple``); one tile when ``tile`` is None.

    Core sizes, overlaps and so every crop are multiples of ``multiple``, as the model needs.
    """
    if tile is None or (tile >= height and tile >= width):
        return [Tile(0, height, 0, width, 0, height, 0, width)]
    step = max(multiple, tile // multiple * multiple)
    ov = math.ceil(overlap / multiple) * multiple
    tiles = []
    for y0 in range(0, height, step):
        for x0 in range(0, width, step):
            y1, x1 = min(height, y0 + step), min(width, x0 + step)
            tiles.append(Tile(y0, y1, x0, x1, max(0, y0 - ov), min(height, y1 + ov), max(0, x0 - ov), min(width, x1 + ov)))
    return tiles


def to_tensor(image: np.ndarray | torch.Tensor, device: torch.device) -> torch.Tensor:
    """``(H, W, 3)`` RGB (numpy or torch): float in [0, 1], or uint8 / uint16 (scaled to [0, 1]) -> ``(1, 3, H, W)``
    float32 on ``device``."""
    if not isinstance(image, torch.Tensor):
        image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise InputError(f"a frame of shape {tuple(image.shape)}: frames are (height, width, 3) RGB arrays")
    if isinstance(image, torch.Tensor) and image.dtype == getattr(torch, "uint16", None):  # (torch >= 2.3)
        image = image.cpu().numpy()
    if isinstance(image, np.ndarray):
        if image.dtype in (np.uint8, np.uint16):  # the integer frames decoders give
            image = image.astype(np.float32) / np.float32(np.iinfo(image.dtype).max)
        elif not np.issubdtype(image.dtype, np.floating):
            raise InputError(f"a frame of {image.dtype}: frames are float in [0, 1], uint8 or uint16")
        image = torch.from_numpy(np.ascontiguousarray(image))
    elif image.dtype == torch.uint8:
        image = image.float() / 255
    elif not image.dtype.is_floating_point:
        raise InputError(f"a frame of {image.dtype}: frames are float in [0, 1], uint8 or uint16")
    return image.to(device=device, dtype=torch.float32).permute(2, 0, 1).unsqueeze(0).contiguous()


def to_image(out: torch.Tensor) -> np.ndarray:
    """``(1, 3, H, W)`` -> ``(H, W, 3)`` float32 numpy in [0, 1]."""
    return out[0].float().clamp_(0, 1).permute(1, 2, 0).contiguous().cpu().numpy()


# torch.OutOfMemoryError (any device) is torch >= 2.5; the package supports torch >= 2.1, which has the CUDA one.
_OUT_OF_MEMORY = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)


def _is_out_of_memory(e: RuntimeError) -> bool:
    # CUDA raises torch.OutOfMemoryError; Apple MPS a plain RuntimeError ("MPS backend out of memory ...").
    return isinstance(e, _OUT_OF_MEMORY) or "out of memory" in str(e)


def _empty_cache(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
    elif device.type == "mps":
        torch.mps.empty_cache()


class _HalfOverflow(Exception):
    """A half-precision pass gave non-finite values: the windows are redone in float32."""


class WindowRestorer:
    """Runs an EDVR over a stream of frames.

    ``restore(frames)`` takes ``(index, image)`` pairs in order (indices consecutive, starting anywhere) and yields
    ``(index, restored image)`` for every centre in ``[first_center, stop_center)``. Frames before ``first_center``
    serve as temporal context only; pass ``first_center - (T - 1)`` onwards when resuming or splitting work, so
    that the result equals a run from the start exactly.

    ``batch``: windows (consecutive centres) restored in one pass, their frames' cached features stacked along the
    batch dimension; it keeps a GPU busy on small frames. The output equals ``batch=1``'s up to the convolutions'
    summation order (6e-8 apart in a float32 test on CPU). Out of GPU memory, the batch halves before frames are tiled.
    """

    def __init__(
        self,
        model: EDVR,
        *,
        padding: str,
        device: torch.device | str = "cpu",
        half: bool = False,
        tile: int | None = None,
        tile_overlap: int = 32,
        cache: bool = True,
        ensemble: str | None = None,
        batch: int = 1,
    ) -> None:
        if batch < 1:
            raise InputError(f"batch must be >= 1 window, got {batch}")
        self.model = model
        self.batch = batch
        self.cache = cache  # False recomputes every frame's features in every window (the reference's way; for benchmarks)
        self.padding = padding
        self.device = torch.device(device)
        self.half = half and self.device.type in HALF_DEVICES
        self.tile = tile
        self.tile_overlap = tile_overlap
        self.on_fallback: Callable[[], None] | None = None  # called after half, batch or tile changed (edvr restore
        # records them, so that a resumed run goes on as the interrupted one did)
        # Self-ensemble (see edvr.evaluation.ensemble): every spatial transform of the window, and the reversed window
        # for "x8t"; each transformed frame's features are cached like the plain ones.
        from edvr.evaluation.ensemble import resolve_mode, transforms

        self.ensemble = resolve_mode(model, ensemble)
        spatial = transforms(self.ensemble) if self.ensemble else (None,)
        self.views = [(rev, t) for rev in ((False, True) if self.ensemble == "x8t" else (False,)) for t in spatial]
        self.num_frames = model.config.num_frames
        self.multiple = model.config.multiple
        self.scale = model.config.scale

    # -------------------------------------------------------------------------------------------- public
    def restore(
        self,
        frames: Iterable[tuple[int, np.ndarray | torch.Tensor]],
        *,
        first_center: int | None = None,
        stop_center: int | None = None,
        total: int | None = None,
    ) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(index, image)`` for each centre; ``total`` (if known) fixes the end padding early."""
        n = self.num_frames
        images: dict[int, torch.Tensor] = {}  # padded input frames (1, 3, Hp, Wp) on the device
        feats: dict = {}  # per (frame, view): one (pyramid, alignment terms) per tile
        it = iter(frames)
        count_end = None  # one past the last index read
        first_index = None
        eof = False
        size = None
        center = first_center
        while True:
            # Read until the windows of this batch's centres are fully known: a window's indices never reach past its
            # centre + n - 1.
            while not eof and (center is None or count_end is None or count_end < center + self.batch - 1 + n):
                try:
                    index, image = next(it)
                except StopIteration:
                    eof = True
                    break
                if count_end is not None and index != count_end:
                    raise ValueError(f"frames must come in order: expected index {count_end}, got {index}")
                tensor = to_tensor(image, self.device)
                if size is None:
                    size = tensor.shape[-2:]
                elif tensor.shape[-2:] != size:
                    raise InputError(
                        f"frame {index} is {tensor.shape[-1]}x{tensor.shape[-2]} but earlier frames are "
                        f"{size[1]}x{size[0]}; all frames of a video must have one size"
                    )
                images[index] = tensor
                if first_index is None:
                    first_index = index
                    center = index if center is None else center
                count_end = index + 1
            if count_end is None or center >= count_end or (stop_center is not None and center >= stop_center):
                return
            clip_total = count_end if eof else (total if total is not None else count_end)
            end = min(center + self.batch, count_end, count_end if stop_center is None else stop_center)
            windows = [window_indices(c, n, clip_total, self.padding) for c in range(center, end)]
            if min(windows[0]) < first_index:
                raise ValueError(
                    f"frame {min(windows[0])} is needed for centre {center} but the stream starts at {first_index}"
                )
            if not self.cache:
                feats.clear()
            yield from zip(range(center, end), self._restore_windows(windows, images, feats, size))
            # Later centres only need frames from end - (n - 1) on: every padding mode stays within n - 1.
            keep_from = end - (n - 1)
            for i in [i for i in images if i < keep_from]:
                del images[i]
            for key in [key for key in feats if key[0] < keep_from]:
                del feats[key]
            center = end

    # -------------------------------------------------------------------------------------------- internals
    def _autocast(self):
        # fp16, not bf16: its 10 mantissa bits keep the output closer to float32 than bf16's 7 (CPU autocast, shipped
        # model, 3 windows of carphone at 176x144: largest difference 9e-4 against 9e-3, mean 2.7e-5 against 1.6e-4),
        # and EDVR's activations stay far below fp16's 65504; a pass that overflows anyway is redone in float32.
        if self.half and self.device.type != "cpu":
            try:
                return torch.autocast(self.device.type, dtype=torch.float16)
            except RuntimeError as e:  # MPS autocast needs torch >= 2.5
                warnings.warn(f"--half: no autocast on {self.device.type} in this PyTorch ({e}); running in float32",
                              RuntimeWarning, stacklevel=2)
                self.half = False
        return torch.autocast("cpu", enabled=False)

    def _restore_windows(self, windows: list[list[int]], images: dict, feats: dict, size: torch.Size
                         ) -> list[np.ndarray]:
        outs: list[np.ndarray] = []
        while len(outs) < len(windows):
            try:
                outs += self._restore_window_views(windows[len(outs):len(outs) + self.batch], images, feats)
                continue
            except _HalfOverflow:
                out_of_memory = False
            except RuntimeError as e:
                if not _is_out_of_memory(e) or (self.batch == 1 and (self.tile or max(size)) // 2 < 4 * self.multiple):
                    raise
                out_of_memory = True
            # Here, outside the except clause, the failed pass's tensors are no longer held by a traceback.
            feats.clear()  # cached features: in half precision, or for a batch/tile size that no longer fits
            if not out_of_memory:
                warnings.warn(f"--half: window at frame {windows[len(outs)][len(windows[0]) // 2]} overflowed in "
                              "float16; restoring in float32 from there on", RuntimeWarning, stacklevel=2)
                self.half = False
            else:  # fewer windows at a time, else smaller tiles
                _empty_cache(self.device)
                if self.batch > 1:
                    self.batch //= 2
                else:
                    self.tile = (self.tile or max(size)) // 2
            if self.on_fallback is not None:
                self.on_fallback()
        return outs

    @torch.inference_mode()
    def _restore_window_views(self, windows: list[list[int]], images: dict, feats: dict) -> list[np.ndarray]:
        if not self.ensemble:
            out = self._restore_view(windows, images, feats, None, False)
            if self.half and not torch.isfinite(out).all():
                raise _HalfOverflow
        else:
            # Summed in float64 in the order edvr.evaluation.ensemble uses, so restore and eval agree to the bit.
            from edvr.evaluation.ensemble import as_float64

            total = None
            for reverse, t in self.views:
                view = as_float64(t.invert(self._restore_view(windows, images, feats, t, reverse)))
                total = view if total is None else total + view
            out = (total / len(self.views)).float()
            if self.half and not torch.isfinite(out).all():
                raise _HalfOverflow
        return [to_image(out[b:b + 1]) for b in range(len(windows))]

    def _frame(self, image: torch.Tensor, t) -> torch.Tensor:
        return pad_to_multiple(image if t is None else t.apply(image), self.multiple)[0]

    def _encode(self, frame: torch.Tensor) -> tuple[Pyramid, list[torch.Tensor]]:
        # The per-frame work of a window: the feature pyramid and the frame's share of PCD's first offset convs.
        pyramid = self.model.encode(frame)
        return pyramid, self.model.alignment_terms(pyramid)

    def _restore_view(self, windows: list[list[int]], images: dict, feats: dict, t, reverse: bool) -> torch.Tensor:
        """The windows (lists of frame indices) restored under spatial transform ``t`` (None: identity), frames
        reversed if ``reverse``; returns ``(len(windows), C, s*h, s*w)`` in the transformed orientation."""
        center_image = _stacked([self._frame(images[ix[len(ix) // 2]], t) for ix in windows])
        h, w = images[windows[0][0]].shape[-2:]
        if t is not None and t.transpose:
            h, w = w, h
        hp, wp = center_image.shape[-2:]
        tiles = plan_tiles(hp, wp, self.tile, self.tile_overlap, self.multiple)
        s = self.scale
        out = torch.empty(len(windows), self.model.config.num_out_ch, hp * s, wp * s, device=self.device)
        slots = list(zip(*(ix[::-1] if reverse else ix for ix in windows)))  # per window slot: each window's frame
        with self._autocast():
            for i in dict.fromkeys(i for ix in windows for i in ix):
                if (i, t) not in feats:
                    frame = self._frame(images[i], t)
                    feats[(i, t)] = [self._encode(frame[..., u.cy0:u.cy1, u.cx0:u.cx1]) for u in tiles]
            for k, u in enumerate(tiles):
                # Per slot, the windows' cached pyramids and alignment terms, level by level, along the batch.
                fused = self.model.align_and_fuse(
                    [[_stacked(level) for level in zip(*(feats[(i, t)][k][0] for i in slot))] for slot in slots],
                    [[_stacked(term) for term in zip(*(feats[(i, t)][k][1] for i in slot))] for slot in slots])
                tile_out = self.model.reconstruct(fused, center_image[..., u.cy0:u.cy1, u.cx0:u.cx1])
                out[..., u.y0 * s:u.y1 * s, u.x0 * s:u.x1 * s] = tile_out[
                    ..., (u.y0 - u.cy0) * s:(u.y1 - u.cy0) * s, (u.x0 - u.cx0) * s:(u.x1 - u.cx0) * s
                ]
        return out[..., : h * s, : w * s]


def _stacked(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """``(1, ...)`` tensors of several windows along the batch (one window: the tensor itself, not a copy)."""
    return tensors[0] if len(tensors) == 1 else torch.cat(list(tensors))
