"""Test-time self-ensemble and the paper's two-stage restoration.

Self-ensemble (Lim et al. 2017, used by EDVR in NTIRE 2019): run the model on the 8 flips/transposes of the whole
input window (the same transform for every frame, so motion stays consistent), undo the transform on each output
and average. EDVR's window is symmetric around its centre frame, so reversing the frame order is one more valid
transform: the centre frame stays the centre, past and future swap roles. Modes:

- ``"flip4"``: identity, flip W, flip H, flip both: the original EDVR repo's ``flipx4_forward``.
- ``"x8"``: the 8 elements of the dihedral group (4 above, each with and without a transpose of H and W).
- ``"x8t"``: ``"x8"`` on the window and on the time-reversed window (16 runs).

Two-stage restoration (EDVR paper, Sec. 3.3): a second, shallower EDVR with HR input (the original repo's "Stage 2"
models: ``hr_in=True``, 20 reconstruction blocks) restores the stage-1 outputs, taking its window of ``num_frames``
stage-1 output frames with the same temporal padding as stage 1. :class:`Stage2Runner` does that on a stream of
stage-1 outputs with bounded memory, so both ``edvr eval --stage2`` and the restore pipeline can use it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import torch
from torch import nn

ENSEMBLE_MODES: tuple[str, ...] = ("flip4", "x8", "x8t")


@dataclass(frozen=True)
class Transform:
    """One element of the dihedral group acting on the last two dims: optional transpose, then flips."""

    transpose: bool
    flip_h: bool
    flip_w: bool

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        if self.transpose:
            x = x.transpose(-1, -2)
        dims = [d for d, f in ((-2, self.flip_h), (-1, self.flip_w)) if f]
        return torch.flip(x, dims) if dims else x

    def invert(self, y: torch.Tensor) -> torch.Tensor:
        # Flips are their own inverses and commute with each other; the transpose was applied first, so undo it last.
        dims = [d for d, f in ((-2, self.flip_h), (-1, self.flip_w)) if f]
        if dims:
            y = torch.flip(y, dims)
        return y.transpose(-1, -2) if self.transpose else y


_FLIP4 = tuple(Transform(False, h, w) for h in (False, True) for w in (False, True))
_X8 = _FLIP4 + tuple(Transform(True, h, w) for h in (False, True) for w in (False, True))


def transforms(mode: str) -> tuple[Transform, ...]:
    """The spatial transforms of an ensemble mode (the temporal flip of ``"x8t"`` is handled separately)."""
    if mode == "flip4":
        return _FLIP4
    if mode in ("x8", "x8t"):
        return _X8
    raise ValueError(f"unknown ensemble mode {mode!r}; expected one of {', '.join(ENSEMBLE_MODES)}")


def is_symmetric(model: nn.Module) -> bool:
    """Whether the model's window has its centre in the middle, so that reversing time keeps the centre frame."""
    cfg = model.config
    return cfg.num_frames % 2 == 1 and cfg.center == cfg.num_frames // 2


def resolve_mode(model: nn.Module, ensemble: bool | str | None) -> str | None:
    """``True`` means the largest valid ensemble: ``"x8t"`` for a symmetric window, ``"x8"`` otherwise."""
    if ensemble is None or ensemble is False:
        return None
    if ensemble is True:
        return "x8t" if is_symmetric(model) else "x8"
    transforms(ensemble)  # validates the name
    if ensemble == "x8t" and not is_symmetric(model):
        c = model.config
        raise ValueError(f"ensemble 'x8t' reverses time, which needs the centre frame in the middle of the window "
                         f"(model: {c.num_frames} frames, centre {c.center}); use 'x8'")
    return ensemble


@torch.no_grad()
def ensemble_forward(model: nn.Module, window: torch.Tensor, mode: str = "x8t") -> torch.Tensor:
    """Self-ensembled ``model(window)``.

    Args:
        model: takes ``(B, T, C, H, W)``, returns ``(B, C, sH, sW)``.
        window: ``(B, T, C, H, W)``.
        mode: one of :data:`ENSEMBLE_MODES`; ``"x8t"`` needs a window symmetric around its centre frame.

    Returns:
        ``(B, C, sH, sW)`` in the model's output dtype: the mean of the inverse-transformed outputs. The sum is
        taken in float64, where adding up to 16 float32 values is exact, and the count is a power of two, so a model
        that commutes with the transforms gets back exactly its plain output.
    """
    times = [False, True] if mode == "x8t" else [False]
    if mode == "x8t" and not is_symmetric(model):
        raise ValueError("ensemble 'x8t' needs a window symmetric around its centre frame; use 'x8'")
    total: torch.Tensor | None = None
    count = 0
    for reverse in times:
        w = torch.flip(window, (1,)) if reverse else window
        for t in transforms(mode):
            out = t.invert(model(t.apply(w)))
            total = as_float64(out) if total is None else total + as_float64(out)
            count += 1
    assert total is not None
    return (total / count).to(out.dtype).to(out.device)


def as_float64(t: torch.Tensor) -> torch.Tensor:
    """``t`` in float64, for the exact sums of the ensemble: moved to the CPU where the device has no float64 (Apple
    MPS). A sum of up to 16 float32 values is exact in float64, so the device changes no bit."""
    return (t.cpu() if t.device.type == "mps" else t).double()


def forward(model: nn.Module, window: torch.Tensor, ensemble: str | None = None) -> torch.Tensor:
    """``model(window)``, self-ensembled when ``ensemble`` names a mode; the one call site evaluation uses."""
    with torch.no_grad():
        return model(window) if ensemble is None else ensemble_forward(model, window, ensemble)


def quantize(frame: torch.Tensor) -> torch.Tensor:
    """Round to 8 bits and back, as the reference did by saving stage-1 outputs to PNG before stage 2 read them."""
    return (frame.clamp(0, 1) * 255).round() / 255


class Stage2Runner:
    """Stage 2 over a stream of stage-1 outputs, in order, with the same temporal padding as stage 1.

    ``push(frame)`` takes stage-1 output frame ``n`` (``(C, H, W)`` or ``(1, C, H, W)``, [0, 1]) and returns the
    stage-2 outputs that became computable, as ``(index, (C, H, W))`` pairs; ``finish()`` returns the rest once the
    clip has ended (the clip's length fixes the padding at its end). At most ``2 * num_frames`` stage-1 frames are
    held: frame ``i`` is computed once frame ``i + 2 * (num_frames // 2)`` has arrived, the farthest any padding mode
    reaches at the clip's start, and frames older than the farthest reach at the clip's end are dropped.

    Example (the restore pipeline)::

        runner = Stage2Runner(model2, padding="reflection_circle", ensemble="x8")
        for frame in stage1_outputs:
            for index, out in runner.push(frame):
                write(index, out)
        for index, out in runner.finish():
            write(index, out)
    """

    def __init__(self, model: nn.Module, *, padding: str, ensemble: str | None = None, quantize_input: bool = True,
                 device: torch.device | str | None = None) -> None:
        if not model.config.hr_in:
            raise ValueError("stage 2 needs an HR-input EDVR (hr_in=True): it restores frames at output resolution")
        self.model = model
        self.padding = padding
        self.ensemble = resolve_mode(model, ensemble)
        self.quantize_input = quantize_input
        self.device = device if device is not None else next(model.parameters()).device
        self.num_frames = model.config.num_frames
        self.reach = 2 * (self.num_frames // 2)
        self._frames: dict[int, torch.Tensor] = {}
        self._seen = 0  # stage-1 frames received
        self._next = 0  # next stage-2 output to compute

    def _window(self, center: int, total: int) -> torch.Tensor:
        from edvr.data.frames import window_indices

        idx = window_indices(center, self.num_frames, total, self.padding)
        return torch.stack([self._frames[i] for i in idx]).unsqueeze(0).to(self.device)

    def _emit(self, upto: int, total: int) -> list[tuple[int, torch.Tensor]]:
        done = []
        while self._next < upto:
            out = forward(self.model, self._window(self._next, total), self.ensemble)[0]
            done.append((self._next, out))
            self._next += 1
            # The end padding of a later frame reaches back at most `reach` frames from it.
            for old in [k for k in self._frames if k < self._next - self.reach]:
                del self._frames[old]
        return done

    def push(self, frame: torch.Tensor) -> list[tuple[int, torch.Tensor]]:
        frame = frame.detach()
        if frame.dim() == 4:
            frame = frame[0]
        self._frames[self._seen] = quantize(frame) if self.quantize_input else frame
        self._seen += 1
        # While frame i + reach is not known the clip may still end early; the window of i would then change.
        # Until then `total = self._seen` is exact for these frames: only indices below self._seen are used.
        return self._emit(self._seen - self.reach, self._seen)

    def finish(self) -> list[tuple[int, torch.Tensor]]:
        return self._emit(self._seen, self._seen)

    def run(self, frames: Iterable[torch.Tensor]) -> Iterator[tuple[int, torch.Tensor]]:
        """All stage-2 outputs of a finite sequence of stage-1 outputs, in order."""
        for frame in frames:
            yield from self.push(frame)
        yield from self.finish()
