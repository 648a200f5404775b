"""Streaming restoration: a fixed temporal window slides over a frame iterator, each frame's features computed once.

EDVR restores frame ``c`` from the window ``window_indices(c, T, total, padding)``. The per-frame part of the network
(:meth:`EDVR.encode`, 23 % of a window's FLOPs for EDVR-M) does not depend on the window, so its result is cached and
reused by the ``T`` windows that contain the frame. Memory holds at most ``2T - 1`` frames, whatever the length.

Frames may be split into overlapping spatial tiles (``tile``, in input pixels); the model then runs per tile and the
centre part of each tile's output is kept. With enough overlap (context) the result equals the untiled one closely.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from edvr.data.frames import window_indices
from edvr.errors import InputError
from edvr.models.edvr import EDVR, Pyramid, pad_to_multiple


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
    """``(H, W, 3)`` float in [0, 1] (numpy or torch) -> ``(1, 3, H, W)`` float32 on ``device``."""
    t = torch.from_numpy(np.ascontiguousarray(image)) if isinstance(image, np.ndarray) else image
    return t.to(device=device, dtype=torch.float32).permute(2, 0, 1).unsqueeze(0).contiguous()


def to_image(out: torch.Tensor) -> np.ndarray:
    """``(1, 3, H, W)`` -> ``(H, W, 3)`` float32 numpy in [0, 1]."""
    return out[0].float().clamp_(0, 1).permute(1, 2, 0).contiguous().cpu().numpy()


class WindowRestorer:
    """Runs an EDVR over a stream of frames.

    ``restore(frames)`` takes ``(index, image)`` pairs in order (indices consecutive, starting anywhere) and yields
    ``(index, restored image)`` for every centre in ``[first_center, stop_center)``. Frames before ``first_center``
    serve as temporal context only; pass ``first_center - (T - 1)`` onwards when resuming or splitting work, so
    that the result equals a run from the start exactly.
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
    ) -> None:
        self.model = model
        self.cache = cache  # False recomputes every frame's features in every window (the reference's way; for benchmarks)
        self.padding = padding
        self.device = torch.device(device)
        self.half = half
        self.tile = tile
        self.tile_overlap = tile_overlap
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
        feats: dict[int, list[Pyramid]] = {}  # per frame: one pyramid per tile
        it = iter(frames)
        count_end = None  # one past the last index read
        first_index = None
        eof = False
        size = None
        center = first_center
        while True:
            # Read until the window of `center` is fully known: its indices never reach past center + n - 1.
            while not eof and (center is None or count_end is None or count_end < center + n):
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
                images[index] = pad_to_multiple(tensor, self.multiple)[0]
                if first_index is None:
                    first_index = index
                    center = index if center is None else center
                count_end = index + 1
            if count_end is None or center >= count_end or (stop_center is not None and center >= stop_center):
                return
            clip_total = count_end if eof else (total if total is not None else count_end)
            indices = window_indices(center, n, clip_total, self.padding)
            if min(indices) < first_index:
                raise ValueError(
                    f"frame {min(indices)} is needed for centre {center} but the stream starts at {first_index}"
                )
            if not self.cache:
                feats.clear()
            yield center, self._restore_window(indices, images, feats, size)
            # Later centres only need frames from center + 1 - (n - 1) on: every padding mode stays within n - 1.
            keep_from = center + 1 - (n - 1)
            for d in (images, feats):
                for i in [i for i in d if i < keep_from]:
                    del d[i]
            center += 1

    # -------------------------------------------------------------------------------------------- internals
    def _autocast(self):
        if self.half and self.device.type in ("cuda", "mps"):
            dtype = torch.bfloat16 if self.device.type == "cuda" and torch.cuda.is_bf16_supported() else torch.float16
            return torch.autocast(self.device.type, dtype=dtype)
        return torch.autocast("cpu", enabled=False)

    def _restore_window(self, indices: list[int], images: dict, feats: dict, size: torch.Size) -> np.ndarray:
        while True:
            try:
                return self._restore_window_tiled(indices, images, feats, size)
            except torch.OutOfMemoryError:
                # Out of GPU memory: split frames into smaller tiles, forget cached features, try again.
                feats.clear()
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
                hp, wp = next(iter(images.values())).shape[-2:]
                current = self.tile or max(hp, wp)
                if current // 2 < 4 * self.multiple:
                    raise
                self.tile = current // 2

    @torch.inference_mode()
    def _restore_window_tiled(self, indices: list[int], images: dict, feats: dict, size: torch.Size) -> np.ndarray:
        center_image = images[indices[len(indices) // 2]]
        hp, wp = center_image.shape[-2:]
        tiles = plan_tiles(hp, wp, self.tile, self.tile_overlap, self.multiple)
        s = self.scale
        out = torch.empty(1, self.model.config.num_out_ch, hp * s, wp * s, device=self.device)
        with self._autocast():
            for i in dict.fromkeys(indices):
                if i not in feats:
                    feats[i] = [self.model.encode(images[i][..., t.cy0:t.cy1, t.cx0:t.cx1]) for t in tiles]
            for k, t in enumerate(tiles):
                fused = self.model.align_and_fuse([feats[i][k] for i in indices])
                tile_out = self.model.reconstruct(fused, center_image[..., t.cy0:t.cy1, t.cx0:t.cx1])
                out[..., t.y0 * s:t.y1 * s, t.x0 * s:t.x1 * s] = tile_out[
                    ..., (t.y0 - t.cy0) * s:(t.y1 - t.cy0) * s, (t.x0 - t.cx0) * s:(t.x1 - t.cx0) * s
                ]
        return to_image(out[..., : size[0] * s, : size[1] * s])
