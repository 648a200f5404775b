"""Evaluate a model on a named protocol, the way the published numbers were measured.

Each output frame comes from one direct forward pass on its padded window (no streaming, no feature cache: the
number must not depend on the inference path), is quantised to 8 bits exactly like the reference's saved PNGs
(:func:`edvr.evaluation.metrics.to_uint8`) and scored against the 8-bit GT. Scores are kept per frame; a clip's
score is the mean of its frames, the protocol's score the mean of its clips (the reference's ``Total Average``).

Baselines are scored on the same frames, in the same table:

- ``bicubic``: MATLAB-style bicubic x4 (:func:`edvr.data.degradations.imresize`) of the centre LQ frame; for
  deblurring protocols (scale 1) the blurry input itself (``input``).
- ``single-frame``: the same model fed a window in which every frame is the centre frame. It removes all temporal
  information while keeping the network unchanged: an ablation of what alignment and fusion bring, not a
  separately trained single-frame model.
"""

from __future__ import annotations

import contextlib
import json
import math
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from edvr.errors import InputError
from edvr.evaluation.ensemble import Stage2Runner, forward, resolve_mode
from edvr.evaluation.protocols import Protocol, find_dir, find_file, get_protocol

BASELINES = ("bicubic", "single-frame")


# ------------------------------------------------------------------------------------------------ results
@dataclass
class Scores:
    """Per-frame scores of one method, by clip, in frame order. ``ssim`` lists are empty when SSIM was skipped."""

    frames: dict[str, list[str]] = field(default_factory=dict)
    psnr: dict[str, list[float]] = field(default_factory=dict)
    ssim: dict[str, list[float]] = field(default_factory=dict)

    def add(self, clip: str, frame: str, psnr: float, ssim: float | None) -> None:
        self.frames.setdefault(clip, []).append(frame)
        self.psnr.setdefault(clip, []).append(psnr)
        s = self.ssim.setdefault(clip, [])
        if ssim is not None:
            s.append(ssim)

    def clip_mean(self, clip: str, metric: str = "psnr") -> float | None:
        values = getattr(self, metric).get(clip) or []
        return float(np.mean(values)) if values else None

    def mean(self, metric: str = "psnr") -> float | None:
        """Mean over clips of the mean over each clip's frames (not the mean over all frames)."""
        means = [m for c in self.frames if (m := self.clip_mean(c, metric)) is not None]
        return float(np.mean(means)) if means else None

    def to_dict(self) -> dict:
        return {
            "mean_psnr": self.mean("psnr"),
            "mean_ssim": self.mean("ssim"),
            "clips": {
                c: {"frames": self.frames[c], "psnr": self.psnr[c], "ssim": self.ssim.get(c, []),
                    "mean_psnr": self.clip_mean(c, "psnr"), "mean_ssim": self.clip_mean(c, "ssim")}
                for c in self.frames
            },
        }

    @classmethod
    def from_dict(cls, d: dict) -> Scores:
        s = cls()
        for c, v in d["clips"].items():
            s.frames[c] = list(v["frames"])  # names, kept as written (a frame may be called "inf")
            s.psnr[c], s.ssim[c] = _unfinite(list(v["psnr"])), _unfinite(list(v.get("ssim", [])))
        return s


@dataclass
class Result:
    """Scores of a model (and its baselines) on one protocol. ``methods`` keeps insertion order: model first."""

    protocol: str
    protocol_summary: str
    model: str
    methods: dict[str, Scores]
    settings: dict[str, Any] = field(default_factory=dict)
    complete: bool = True  # every frame of every clip of the protocol was scored
    published: list[dict] = field(default_factory=list)

    @property
    def main(self) -> str:
        return next(iter(self.methods))

    @property
    def clips(self) -> list[str]:
        return list(self.methods[self.main].frames)

    def mean(self, method: str | None = None, metric: str = "psnr") -> float | None:
        return self.methods[method or self.main].mean(metric)

    def to_json(self, indent: int | None = 1) -> str:
        # Non-finite values (PSNR of identical images) are written as strings so the file stays standard JSON.
        return json.dumps(_finite(self.to_dict()), indent=indent)

    def to_dict(self) -> dict:
        return {
            "protocol": self.protocol, "protocol_summary": self.protocol_summary, "model": self.model,
            "complete": self.complete, "settings": self.settings, "published": self.published,
            "methods": {name: s.to_dict() for name, s in self.methods.items()},
        }

    @classmethod
    def from_json(cls, text: str) -> Result:
        d = json.loads(text)  # scores "inf"/"nan" are read back by Scores.from_dict
        return cls(protocol=d["protocol"], protocol_summary=d["protocol_summary"], model=d["model"],
                   methods={k: Scores.from_dict(v) for k, v in d["methods"].items()}, settings=d.get("settings", {}),
                   complete=d.get("complete", True), published=d.get("published", []))

    @classmethod
    def load(cls, path: str | Path) -> Result:
        p = Path(path)
        try:
            return cls.from_json(p.read_text())
        except FileNotFoundError:
            raise InputError(f"{p}: no such file; pass a JSON written by edvr eval --json") from None
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise InputError(f"{p}: not an edvr eval result ({e}); pass a JSON written by edvr eval --json") from None

    def table(self, max_clip_rows: int = 30) -> str:
        """A per-clip table of every method, the protocol's mean row, the published numbers; text for a terminal."""
        names = list(self.methods)
        has_ssim = any(self.methods[m].mean("ssim") is not None for m in names)
        width = 16 if has_ssim else 8
        first = max(12, *(len(c) + 1 for c in self.clips), len(self.protocol) + 1)  # clip names and the mean row's
        head = f"{'clip':<{first}}{'frames':>7}" + "".join(f"  {n[:width]:>{width}}" for n in names)
        unit = "PSNR dB / SSIM" if has_ssim else "PSNR dB"
        lines = [f"protocol {self.protocol}: {self.protocol_summary}", f"model: {self.model}",
                 f"scores: {unit}", head, "-" * len(head)]
        clips = self.clips
        if len(clips) <= max_clip_rows:
            for c in clips:
                row = f"{c:<{first}}{len(self.methods[self.main].frames[c]):>7}"
                for n in names:
                    row += f"  {_fmt(self.methods[n].clip_mean(c), self.methods[n].clip_mean(c, 'ssim'), has_ssim)}"
                lines.append(row)
            lines.append("-" * len(head))
        else:
            lines.append(f"({len(clips)} clips; per-clip scores are in the JSON)")
        total = sum(len(v) for v in self.methods[self.main].frames.values())
        row = f"{self.protocol:<{first}}{total:>7}"  # the protocol's name labels its mean row: principle 9
        for n in names:
            row += f"  {_fmt(self.mean(n), self.mean(n, 'ssim'), has_ssim)}"
        lines.append(row + "   <- mean of clip means")
        if not self.complete:
            lines.append(f"PARTIAL: not every frame of {self.protocol} was scored; not comparable with published "
                         "numbers")
        notes = self.settings.get("notes") or []
        lines.extend(f"note: {n}" for n in notes)
        for p in self.published:
            ssim = f"/{p['ssim']:.4f}" if p.get("ssim") is not None else ""
            lines.append(f"published on {self.protocol}: {p['model']} {p['psnr']:.2f}{ssim} ({p['source']})")
        return "\n".join(lines)


def _fmt(psnr: float | None, ssim: float | None, has_ssim: bool) -> str:
    w = 16 if has_ssim else 8
    if psnr is None:
        return f"{'-':>{w}}"
    s = f"{psnr:.2f}" if has_ssim is False or ssim is None else f"{psnr:.2f} / {ssim:.4f}"
    return f"{s:>{w}}"


def _finite(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_finite(v) for v in x]
    return x


def _unfinite(x: Any) -> Any:
    if isinstance(x, str) and x in ("inf", "-inf", "nan"):
        return float(x)
    if isinstance(x, dict):
        return {k: _unfinite(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_unfinite(v) for v in x]
    return x


# ------------------------------------------------------------------------------------------------ dataset layouts
@dataclass
class Clip:
    """One clip of a protocol: its LQ frames (all, in order: windows index into them) and the frames to score."""

    name: str
    lq: list[Path]
    gt: dict[int, Path]  # frame index (into lq) -> GT path, for the frames that are scored
    window: Callable[[int, int], list[int]] | None = None  # (center, num_frames) -> indices; None: padding rule

    @property
    def scored(self) -> list[int]:
        return sorted(self.gt)


def _images(folder: Path) -> list[Path]:
    from edvr.inference.video_io import list_images

    return list_images(folder)


def discover(protocol: Protocol, root: str | Path) -> list[Clip]:
    """The protocol's clips under ``root``, checked: every clip present, LQ and GT frame counts equal."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise InputError(f"{root}: no such folder; pass the dataset root with --root")
    gt_root = find_dir(root, protocol.gt_dirs, "GT")
    lq_root = find_dir(root, protocol.lq_dirs, "LQ")
    if protocol.center_only:
        return _discover_septuplets(protocol, root, gt_root, lq_root)
    clips = []
    for name in protocol.clips or ():
        gt_dir, lq_dir = gt_root / name, lq_root / name
        for d, what in ((gt_dir, "GT"), (lq_dir, "LQ")):
            if not d.is_dir():
                raise InputError(f"{d}: missing {what} clip {name} of protocol {protocol.name}; "
                                 "download the full dataset (see the protocol's summary for the layout)")
        gts, lqs = _images(gt_dir), _images(lq_dir)
        if not gts or len(gts) != len(lqs):
            raise InputError(f"{lq_dir}: {len(lqs)} LQ frames but {len(gts)} GT frames in {gt_dir}; "
                             "the clip is incomplete, re-extract it")
        clips.append(Clip(name, lqs, dict(enumerate(gts))))
    return clips


def _discover_septuplets(protocol: Protocol, root: Path, gt_root: Path, lq_root: Path) -> list[Clip]:
    listing = find_file(root, protocol.list_files, "sequence list")
    names = [line.split()[0] for line in listing.read_text().splitlines() if line.strip()]
    clips = []
    for name in names:
        lqs = [lq_root / name / f"im{i}.png" for i in range(1, 8)]
        gt = gt_root / name / "im4.png"
        for p in [*lqs, gt]:
            if not p.is_file():
                raise InputError(f"{p}: missing frame of sequence {name} (listed in {listing}); re-extract the data")
        # The window of a septuplet is its own frames around im4; it never needs padding for up to 7 frames.
        clips.append(Clip(name, lqs, {3: gt}, window=_septuplet_window))
    return clips


def _septuplet_window(center: int, num_frames: int) -> list[int]:
    half = num_frames // 2
    if center - half < 0 or center + half > 6:
        raise InputError(f"Vimeo90K-T septuplets hold 7 frames; a {num_frames}-frame model cannot be evaluated on them")
    return list(range(center - half, center + half + 1))


# ------------------------------------------------------------------------------------------------ evaluation
@dataclass
class FrameOutputs:
    """What :func:`evaluate` hands to its ``on_frame`` callback for each scored frame (uint8 HWC RGB arrays)."""

    clip: str
    index: int
    name: str
    lq: np.ndarray
    gt: np.ndarray
    outputs: dict[str, np.ndarray]
    psnr: dict[str, float]
    position: int  # rank of this frame among the clip's scored frames
    count: int  # number of scored frames of the clip


class _FrameCache:
    """LQ frames of one clip as (C, H, W) tensors, read on first use and dropped once no window reaches them."""

    def __init__(self, paths: list[Path]) -> None:
        from edvr.inference.video_io import read_image

        self._read = read_image
        self.paths = paths
        self._frames: dict[int, torch.Tensor] = {}

    def __getitem__(self, i: int) -> torch.Tensor:
        if i not in self._frames:
            self._frames[i] = torch.from_numpy(np.ascontiguousarray(self._read(self.paths[i]))).permute(2, 0, 1)
        return self._frames[i]

    def drop_before(self, i: int) -> None:
        for k in [k for k in self._frames if k < i]:
            del self._frames[k]


def tf32_switches() -> tuple[list, str, object, object]:
    """The switches of TF32 for float32 matmuls and convolutions, their attribute, and its TF32 and float32 values:
    PyTorch >= 2.9's ``fp32_precision`` (mixing it with the older ``allow_tf32`` raises), else ``allow_tf32``."""
    if hasattr(torch.backends.cuda.matmul, "fp32_precision"):
        return [torch.backends.cuda.matmul, torch.backends.cudnn.conv], "fp32_precision", "tf32", "ieee"
    return [torch.backends.cuda.matmul, torch.backends.cudnn], "allow_tf32", True, False


@contextlib.contextmanager
def _true_float32():
    switches, attr, _, ieee = tf32_switches()
    before = [getattr(s, attr) for s in switches]
    try:
        for s in switches:
            setattr(s, attr, ieee)
        yield
    finally:
        for s, value in zip(switches, before):
            setattr(s, attr, value)


@_true_float32()  # a ContextDecorator: each call runs inside it
def evaluate(
    model: nn.Module,
    protocol: Protocol | str,
    root: str | Path,
    *,
    device: torch.device | str | None = None,
    ensemble: bool | str | None = False,
    stage2: nn.Module | None = None,
    max_frames: int | None = None,
    save_dir: str | Path | None = None,
    baselines: tuple[str, ...] = BASELINES,
    compute_ssim: bool = True,
    clips: list[str] | None = None,
    on_frame: Callable[[FrameOutputs], None] | None = None,
    progress: bool = False,
    model_name: str | None = None,
) -> Result:
    """Score ``model`` on ``protocol`` with the data under ``root``.

    Args:
        model: an EDVR (or any module with EDVR's ``config`` and call signature), ``(1, T, 3, h, w)`` in [0, 1] ->
            ``(1, 3, s*h, s*w)``.
        protocol: a :class:`Protocol` or a name from :data:`edvr.evaluation.protocols.PROTOCOLS`.
        root: dataset root (``.../REDS``, ``.../Vid4``, ``.../vimeo90k``).
        device: where the model runs; default: where its parameters are.
        ensemble: False, True (the largest valid self-ensemble), or a mode of
            :data:`edvr.evaluation.ensemble.ENSEMBLE_MODES`; applies to both stages and to the single-frame baseline.
        stage2: an HR-input EDVR that restores the stage-1 outputs (8-bit quantised, as the reference read them
            back from PNG) with the protocol's padding; both stages are then scored, ``edvr`` being the final one.
        max_frames: score only the first frames of each clip (windows still see the whole clip); the result is
            marked partial.
        save_dir: write the final outputs as ``save_dir/<clip>/<frame>.png``.
        baselines: any of ``"bicubic"`` and ``"single-frame"`` (see the module docstring).
        compute_ssim: SSIM costs about 10x PSNR on a CPU.
        clips: restrict to these clips (the result is then partial, unless they are all the protocol's clips).
        on_frame: called with every scored frame's images (for reports).
        progress: show a progress bar on stderr.

    Returns:
        A :class:`Result`; ``result.table()`` prints it, ``result.to_json()`` saves it.

    The models run in true float32: PyTorch runs float32 convolutions in TF32 by default on Ampere and newer GPUs
    (~1e-3 relative), which the published numbers did not; the switches are restored afterwards.
    """
    proto = get_protocol(protocol) if isinstance(protocol, str) else protocol
    complete = True
    cfg = model.config
    if cfg.scale != proto.scale:
        fits = [p for p in _protocol_names() if get_protocol(p).scale == cfg.scale]
        raise InputError(f"{proto.name}: a x{proto.scale} protocol, but the model outputs x{cfg.scale}; "
                         f"use one of {', '.join(fits)}")
    if stage2 is not None:
        if proto.center_only:
            raise InputError(f"{proto.name}: stage 2 needs stage-1 outputs of whole clips; Vimeo90K-T septuplets "
                             "have one scored frame (the original EDVR repo ran stage 2 on REDS4 only)")
        if not stage2.config.hr_in:
            raise InputError("--stage2: the stage-2 model must take HR input (hr_in=True), e.g. edvr-stage2-sr-reds")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    model.eval().to(device)
    if stage2 is not None:
        stage2.eval().to(device)
    mode = resolve_mode(model, ensemble)
    t = cfg.num_frames
    all_clips = discover(proto, root)
    if proto.expected_clips and len(all_clips) != proto.expected_clips:
        complete = False
        warnings.warn(f"{proto.name}: {len(all_clips)} sequences listed, the full test set has {proto.expected_clips};"
                      " the number will not be comparable", stacklevel=3)
    if clips is not None:
        unknown = sorted(set(clips) - {c.name for c in all_clips})
        if unknown:
            known = ", ".join(c.name for c in all_clips)
            raise InputError(f"{', '.join(unknown)}: not clips of {proto.name} ({known}); check --clips")
        complete = complete and set(clips) >= {c.name for c in all_clips}  # naming every clip is the whole set
        all_clips = [c for c in all_clips if c.name in clips]
    if proto.center_only and max_frames is not None:
        # One scored frame per septuplet: a frame limit means the first septuplets of the list.
        complete = complete and max_frames >= len(all_clips)
        all_clips, max_frames = all_clips[:max_frames], None

    main = "edvr" if stage2 is None else "edvr+stage2"
    methods: dict[str, Scores] = {main: Scores()}
    if stage2 is not None:
        methods["edvr-stage1"] = Scores()
    for b in baselines:
        if b not in BASELINES:
            raise InputError(f"{b}: unknown baseline; choose from {', '.join(BASELINES)}")
        methods["bicubic" if b == "bicubic" and proto.scale != 1 else "input" if b == "bicubic" else b] = Scores()

    notes = []
    # The official models of the blurred tracks have a PreDeblur front end and those of the clean SR track none: a
    # model on the other kind of track is scored (a robustness test) but said to be one.
    if proto.scale == 4 and bool(getattr(cfg, "with_predeblur", False)) != (proto.task == "srblur"):
        kind = "has a PreDeblur front end, as models of blurred input" if proto.task == "sr" else "has no PreDeblur"
        note = f"the model {kind}; {proto.name} is the {proto.task} track, so its number is not that track's"
        warnings.warn(note, stacklevel=3)
        notes.append(note)
    if t != proto.num_frames:
        notes.append(f"the model uses {t}-frame windows; the published {proto.name} numbers used {proto.num_frames}")
    if mode:
        notes.append(f"self-ensemble {mode} on every model run")
    if "single-frame" in methods:
        notes.append("single-frame = the same model with every window frame replaced by the centre frame (ablation)")
    if stage2 is not None:
        notes.append("edvr+stage2 = stage 2 on the 8-bit stage-1 outputs, windows padded as in stage 1")

    save = Path(save_dir).expanduser() if save_dir is not None else None
    if save is not None:
        data = Path(root).expanduser().resolve()
        inside = [c.name for c in all_clips if (save / c.name).resolve().is_relative_to(data)]
        if inside:
            raise InputError(f"{save_dir}: images for clip {inside[0]} would go inside the dataset root {root}, over "
                             "its frames; write them (--save-images) to a folder outside it")
    total_frames = sum(len(c.scored[:max_frames] if max_frames else c.scored) for c in all_clips)
    run = _Run(proto, model, stage2, mode, device, methods, main, compute_ssim, save, on_frame,
               _progress(total_frames, proto.name, progress))
    for clip in all_clips:
        scored = clip.scored if max_frames is None else clip.scored[:max_frames]
        if len(scored) < len(clip.scored):
            complete = False
        if proto.expected_frames and len(clip.scored) != proto.expected_frames.get(clip.name, len(clip.scored)):
            complete = False
            warnings.warn(f"{clip.name}: {len(clip.scored)} frames, the full {proto.name} clip has "
                          f"{proto.expected_frames[clip.name]}; the number will not be comparable", stacklevel=3)
        run.clip(clip, scored)
    bar = run.bar
    bar.close()
    published = [{"model": p.model, "psnr": p.psnr, "ssim": p.ssim, "source": p.source} for p in proto.published]
    settings = {"ensemble": mode, "stage2": getattr(stage2, "source", None) if stage2 is not None else None,
                "num_frames": t, "max_frames": max_frames, "padding": proto.padding, "crop_border": proto.crop_border,
                "metric_space": proto.metric_space, "device": str(device), "notes": notes}
    return Result(proto.name, proto.summary(), model_name or getattr(model, "source", type(model).__name__),
                  methods, settings, complete, published)


@dataclass
class _Run:
    """The fixed parts of one evaluation; :meth:`clip` scores one clip's frames."""

    proto: Protocol
    model: nn.Module
    stage2: nn.Module | None
    mode: str | None
    device: torch.device
    methods: dict[str, Scores]
    main: str
    compute_ssim: bool
    save: Path | None
    on_frame: Callable[[FrameOutputs], None] | None
    bar: Any

    def clip(self, clip: Clip, scored: list[int]) -> None:
        t = self.model.config.num_frames
        lq = _FrameCache(clip.lq)
        if self.stage2 is None:
            for i in scored:
                self._score(clip, i, scored, {self.main: self._stage1(clip, lq, i)}, lq)
                lq.drop_before(i - 2 * (t // 2))
            return
        runner = Stage2Runner(self.stage2, padding=self.proto.padding, ensemble=self.mode, device=self.device)
        n = len(clip.lq)
        # Stage 2 at frame i needs stage-1 outputs up to i + reach; feed no more than the last scored frame needs.
        last = min(n, scored[-1] + 1 + runner.reach) if scored else 0
        stage1_out: dict[int, torch.Tensor] = {}
        wanted = set(scored)
        for i in range(last + 1):
            if i < last:
                out1 = self._stage1(clip, lq, i)
                if i in wanted:
                    stage1_out[i] = out1
                ready = runner.push(out1)
                lq.drop_before(i - 2 * (t // 2))
            else:
                # The clip's end (which fixes the end padding) is known only once its last frame has gone through.
                ready = runner.finish() if last == n else []
            for j, out2 in ready:
                if j in wanted:
                    self._score(clip, j, scored, {self.main: out2, "edvr-stage1": stage1_out.pop(j)}, lq)

    def _stage1(self, clip: Clip, lq: _FrameCache, i: int) -> torch.Tensor:
        t = self.model.config.num_frames
        if clip.window is not None:
            idx = clip.window(i, t)
        else:
            from edvr.data.frames import window_indices

            idx = window_indices(i, t, len(clip.lq), self.proto.padding)
        window = [lq[j] for j in idx]
        for j, frame in zip(idx, window):
            if frame.shape != window[0].shape:
                raise InputError(f"{clip.lq[j]}: {frame.shape[2]}x{frame.shape[1]}, but {clip.lq[idx[0]]} is "
                                 f"{window[0].shape[2]}x{window[0].shape[1]}; the LQ frames of a clip must have one "
                                 "size")
        frames = torch.stack(window).unsqueeze(0).to(self.device)
        return forward(self.model, frames, self.mode)[0]

    def _score(self, clip: Clip, i: int, scored: list[int], finals: dict[str, torch.Tensor], lq: _FrameCache) -> None:
        _score_frame(self.proto, clip, i, (scored.index(i), len(scored)), finals, lq[i], self.model, self.mode,
                     self.methods, self.compute_ssim, self.device, self.save, self.on_frame)
        self.bar.update(1)


def _score_frame(proto: Protocol, clip: Clip, i: int, where: tuple[int, int], finals: dict[str, torch.Tensor],
                 lq_center: torch.Tensor, model: nn.Module, mode: str | None, methods: dict[str, Scores],
                 compute_ssim: bool, device: torch.device, save: Path | None, on_frame: Callable[[FrameOutputs], None] | None) -> None:
    from edvr.evaluation.metrics import psnr, ssim, to_uint8
    from edvr.inference.video_io import read_image, write_image

    gt_path = clip.gt[i]
    gt = to_uint8(read_image(gt_path))
    outputs = {name: to_uint8(out) for name, out in finals.items()}
    lq_u8 = to_uint8(lq_center)
    if "bicubic" in methods:
        from edvr.data.degradations import imresize

        outputs["bicubic"] = to_uint8(np.asarray(imresize(lq_center.permute(1, 2, 0).numpy(), proto.scale)))
    if "input" in methods:
        outputs["input"] = lq_u8
    if "single-frame" in methods:
        same = lq_center.unsqueeze(0).expand(model.config.num_frames, -1, -1, -1).unsqueeze(0).to(device)
        outputs["single-frame"] = to_uint8(forward(model, same, mode)[0])
    name = clip.gt[i].stem if proto.center_only is False else clip.name
    scores = {}
    for method, out in outputs.items():
        if out.shape != gt.shape:
            raise InputError(f"{gt_path}: GT is {gt.shape[1]}x{gt.shape[0]} but {method} gives "
                             f"{out.shape[1]}x{out.shape[0]} (x{proto.scale} of {clip.lq[i]}); LQ and GT do not match")
        p = psnr(out, gt, crop_border=proto.crop_border, y_channel=proto.y_channel)
        s = ssim(out, gt, crop_border=proto.crop_border, y_channel=proto.y_channel) if compute_ssim else None
        methods[method].add(clip.name, name, p, s)
        scores[method] = p
    if save is not None:
        main = next(iter(finals))
        target = save / clip.name / f"{gt_path.stem}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        write_image(target, outputs[main].astype(np.float32) / 255.0)
    if on_frame is not None:
        on_frame(FrameOutputs(clip.name, i, name, lq_u8, gt, outputs, scores, *where))


def _protocol_names() -> list[str]:
    from edvr.evaluation.protocols import PROTOCOLS

    return list(PROTOCOLS)


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int, desc: str, enabled: bool):
    if not enabled:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="frame", file=sys.stderr)
