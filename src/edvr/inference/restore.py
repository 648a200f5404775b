"""Restore a whole video (or frame folder): decode -> sliding-window EDVR -> encode, streaming, resumable, shardable.

The output is produced as numbered *segments* of ``segment_frames`` frames in a work folder beside the output
(``.NAME.edvr-work``): each segment is encoded on its own and appears atomically when finished. An interrupted run
resumes at the first missing segment (``resume=True``); every frame is computed exactly as in an uninterrupted run
(its temporal context is re-read), so the joined result is the same file. Under ``torchrun`` each process takes every
``world_size``-th segment, so N processes produce the same segments as one. At the end the segments are joined with
the source's audio and subtitle streams copied. A folder output (PNG frames) is written inside the work folder. Either
appears under the output name, replacing an older one (``overwrite``), only once complete.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shutil
import sys
import time
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from datetime import timedelta
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

from edvr.data.frames import PADDING_MODES
from edvr.errors import EdvrError, InputError, OutputError
from edvr.files import write_atomic
from edvr.inference import video_io
from edvr.inference.window import HALF_DEVICES, WindowRestorer
from edvr.models.edvr import EDVR
from edvr.runtime import pick_device

# The containers a restore writes (their muxers say which codecs they hold, so a misfit is caught before any work).
VIDEO_SUFFIXES = {".mp4", ".mkv", ".mov", ".avi", ".webm", ".m4v"}
WORK_VERSION = 4  # 2: a folder output is written into the work folder and moved into place when complete;
# 3: model files identified by path, size and time, the default --crf recorded; 4: x264 without mbtree at every size,
# an untagged source encoded with the matrix of the output's size, RGB encodings tagged gbr
MIN_TILE = 16  # --tile, input pixels: smaller tiles are all overlap


@dataclass
class RestoreOptions:
    """Everything that changes the output of :func:`restore_video` (and so decides whether a run can resume)."""

    padding: str | None = None  # temporal padding at clip ends; None: the model's task default
    tile: int | None = None  # spatial tile size in input pixels; None: whole frames (auto-tiled on GPU OOM)
    tile_overlap: int = 32
    half: bool = False  # fp16 autocast on GPUs
    codec: str | None = None  # video output: None is libx264 (libvpx-vp9 for .webm), 10-bit when the input is
    crf: int | None = None
    pix_fmt: str | None = None
    segment_frames: int = 100
    ensemble: str | bool | None = None  # self-ensemble "flip4", "x8", "x8t", True = largest valid (edvr.evaluation.ensemble)


@dataclass
class RestoreResult:
    output: Path
    frames: int
    seconds: float
    resumed_frames: int = 0


def default_padding_for(model: EDVR) -> str:
    # The published protocols: reflection_circle for sharp SR, replicate for every blurred-input track.
    return "replicate" if model.config.with_predeblur or model.config.hr_in else "reflection_circle"


# A CPU job of at least this many input pixels (frames x height x width; about 70 frames of 180x320) restores with
# the compiled backend when no backend was asked for: its compilation (EDVR-M at 180x320: ~80 s the first time with
# the Winograd convs, ~10 s once PyTorch has cached it on disk) then pays off (the compiled deformable conv and the
# Winograd convs save ~1 s per 180x320 frame of EDVR-M, benchmarks/README.md).
COMPILED_MIN_PIXELS = 4_000_000


def job_dcn_backend(requested: str | None, device: torch.device, frames: int | None, height: int, width: int) -> str:
    """The deformable-conv backend for a restore job: the one asked for (argument, ``use_backend`` context or
    ``EDVR_DCN_BACKEND``), else ``compiled`` for a long CPU job (unless it failed in this process), else ``auto``."""
    from edvr.ops import compiled, deform_conv

    chosen = deform_conv.requested_backend(requested)
    if chosen != "auto" or device.type != "cpu" or compiled.error() is not None:
        return chosen
    return "compiled" if (frames or 0) * height * width >= COMPILED_MIN_PIXELS else chosen


def _resolve_model(model: EDVR | str | Path | None, device: torch.device, dcn_backend: str | None) -> EDVR:
    from edvr.models.zoo import load_model

    if isinstance(model, torch.nn.Module):
        return model.to(device).eval()
    return load_model(model, device=device, dcn_backend=dcn_backend)


def restore_frames(
    frames: Iterable[np.ndarray],
    model: EDVR | str | Path | None = None,
    *,
    device: str | torch.device | None = "auto",
    padding: str | None = None,
    tile: int | None = None,
    tile_overlap: int = 32,
    half: bool = False,
    dcn_backend: str | None = None,
    batch: int = 1,
) -> Iterator[np.ndarray]:
    """Restore a stream of ``(H, W, 3)`` RGB frames (float in [0, 1], or uint8 / uint16 as decoders give them); yields
    the restored frames in order, float32 in [0, 1].

    For embedding in other pipelines: memory stays bounded whatever the length of the stream.
    """
    dev = pick_device(device)
    net = _resolve_model(model, dev, dcn_backend)
    restorer = WindowRestorer(net, padding=padding or default_padding_for(net), device=dev, half=half, tile=tile,
                              tile_overlap=tile_overlap, batch=batch)
    for _, image in restorer.restore(enumerate(frames)):
        yield image


# ------------------------------------------------------------------------------------------------ the video job
def output_kind(dst: Path) -> str:
    """``video`` for a video extension, ``folder`` (of PNG frames) for a name without one or an existing folder."""
    if dst.suffix.lower() in VIDEO_SUFFIXES:
        return "video"
    if not dst.suffix or dst.is_dir():
        return "folder"
    raise OutputError(f"{dst}: {dst.suffix} is not an output edvr writes; name a video ({', '.join(sorted(VIDEO_SUFFIXES))})"
                      " or, for PNG frames, a folder without an extension")


def work_dir_for(dst: Path) -> Path:
    return dst.parent / f".{dst.name}.edvr-work"


def _source_identity(src: Path) -> dict:
    st = src.stat() if src.is_file() else None
    return {
        "source": str(src.resolve()),
        "size": st.st_size if st else None,
        "mtime_ns": st.st_mtime_ns if st else None,
        # The frames only: the output or its work folder may sit inside the input folder.
        "files": len(video_io.list_images(src)) if src.is_dir() else None,
    }


def _check_paths(src: Path, dst: Path, *, overwrite: bool) -> None:
    if not src.exists():
        raise InputError(f"{src}: no such file or folder")
    # samefile, not resolved paths: on a case-insensitive disk (macOS, Windows) IN.MP4 is in.mp4 under another name
    if dst.exists() and os.path.samefile(src, dst):
        raise OutputError(f"{dst}: the output would overwrite the input; choose another output path")
    if output_kind(dst) == "folder" and dst.is_dir() and any(
            os.path.samefile(p, dst) for p in src.resolve().parents):
        raise OutputError(f"{dst}: the output folder contains the input; choose another output folder")
    if dst.exists() and not overwrite:
        if dst.is_file() or any(dst.iterdir()):
            raise OutputError(f"{dst}: already exists; pass --overwrite to replace it")
    if overwrite and dst.exists() and output_kind(dst) == "folder":
        # --overwrite replaces a folder of frames as a whole: never a file, nor a folder that holds anything else.
        if not dst.is_dir():
            raise OutputError(f"{dst}: is a file, and the output is a folder of frames (a name without an extension); "
                              "choose another output")
        others = sorted(p.name for p in dst.iterdir() if not (p.is_file() and p.suffix.lower() == ".png"))
        if others:
            raise OutputError(f"{dst}: holds {', '.join(others[:3])}{', ...' if len(others) > 3 else ''}, not only "
                              "PNG frames; --overwrite replaces only a folder of frames, so choose another output")
    parent = dst.parent if dst.parent != Path("") else Path(".")
    if not parent.exists():
        raise OutputError(f"{parent}: the output's folder does not exist; create it first")
    if not os.access(parent, os.W_OK):
        raise OutputError(f"{parent}: not writable; choose another output location")
    if src.is_dir() and output_kind(dst) == "folder":
        names: dict[str, tuple[str, str]] = {}
        for image in video_io.list_images(src):
            name = _frame_name(image.name, 0)
            key = name.lower() if sys.platform in ("darwin", "win32") else name  # their disks ignore case
            if key in names:
                first, first_out = names[key]
                outputs = name if first_out == name else f"{first_out} and {name}, one file on a disk that ignores case"
                raise InputError(f"{src}: {first} and {image.name} would both be written as {outputs}; keep one file "
                                 "per frame name")
            names[key] = (image.name, name)


def _prepare_work_dir(work: Path, state: dict, *, resume: bool, rank: int, held: contextlib.ExitStack) -> None:
    """Create (or, resuming, check) the work folder and lock it for this job (until ``held`` closes); a stale one
    from a different job is never reused silently, and one that another job is using is left alone."""
    state_file = work / "state.json"
    if rank != 0:
        return
    work.mkdir(parents=True, exist_ok=True)
    _lock(work, held)
    old = json.loads(state_file.read_text()) if state_file.is_file() else None
    if resume and old is not None and old.get("version") != state["version"]:
        raise OutputError(f"{work}: cannot resume: written by another version of edvr (work folder version "
                          f"{old.get('version')}, this one {state['version']}); run without --resume to start over")
    if resume and old is not None and old != state:
        diff = sorted(k for k in set(old) | set(state) if old.get(k) != state.get(k))
        if "options" in diff:  # name the options themselves: "--tile", not "options"
            was, now = old.get("options") or {}, state["options"]
            diff.remove("options")
            diff += sorted(f"--{k.replace('_', '-')}" for k in set(was) | set(now) if was.get(k) != now.get(k))
        raise OutputError(
            f"{work}: cannot resume: the earlier run differs in {', '.join(diff)}; run without --resume to start over"
        )
    if not resume or old is None:
        for child in work.iterdir():
            _remove(child)
    write_atomic(state_file, json.dumps(state, indent=1, sort_keys=True))


def _lock(work: Path, held: contextlib.ExitStack) -> None:
    """An exclusive lock on the work folder: a second job writing the same output would delete or mix its segments."""
    try:
        import fcntl
    except ImportError:  # Windows: no lock
        return
    fd = os.open(work, os.O_RDONLY)
    held.callback(os.close, fd)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise OutputError(f"{work}: another edvr restore is writing this output now; wait for it to finish, or "
                          "choose another output name") from None
    except OSError as e:  # a file system without locks on folders (NFS): go on unprotected
        warnings.warn(f"{work}: cannot lock the work folder ({e.strerror}); make sure no other edvr restore writes "
                      "this output at the same time", RuntimeWarning, stacklevel=3)


def _keep_fallbacks(work: Path, restorers: list[WindowRestorer], rank: int) -> None:
    """A GPU that overflowed in fp16 or ran out of memory went on in float32, fewer windows at a time or in tiles; a
    resumed run must go on the same way, or its segments would differ from the uninterrupted run's. Each rank records
    its fallbacks in the work folder; on start the most cautious recorded so far are applied (ranks running together
    learn each other's only then, so a multi-rank run that fell back can differ from a one-rank run)."""
    for saved in sorted(work.glob("fallback-*.json")):
        for r, s in zip(restorers, json.loads(saved.read_text())):
            r.half = r.half and s["half"]
            r.batch = min(r.batch, s["batch"])
            r.tile = s["tile"] if r.tile is None else min(r.tile, s["tile"] or r.tile)

    def record() -> None:
        write_atomic(work / f"fallback-{rank}.json",
                     json.dumps([{"half": r.half, "batch": r.batch, "tile": r.tile} for r in restorers]))

    for r in restorers:
        r.on_fallback = record


def _segment_video(work: Path, index: int) -> Path:
    return work / f"seg{index:06d}{video_io.SEGMENT_SUFFIX}"


def _segment_marker(work: Path, index: int) -> Path:
    """Written (atomically) after a segment's frames are all on disk: ``{"frames": n}``. Its presence = done."""
    return work / f"seg{index:06d}.json"


def _finished_segments(work: Path) -> list[int]:
    """Frame counts of the finished segments 0, 1, ... up to the first unfinished one."""
    counts = []
    while (marker := _segment_marker(work, len(counts))).exists():
        counts.append(json.loads(marker.read_text())["frames"])
    return counts


def _frame_name(name: str | None, index: int) -> str:
    """The output PNG of an input frame: its file's name for folder input, else the frame number."""
    return (Path(name).stem if name else f"{index:08d}") + ".png"


def _frames_dir(work: Path) -> Path:
    """Where a folder output's frames are written; moved onto the output when every frame is there."""
    return work / "frames"


def _publish_folder(frames: Path, dst: Path) -> None:
    """Move the finished ``frames`` folder onto ``dst``; an old ``dst`` (``--overwrite``) is moved aside first and
    deleted last, so that ``dst`` always names either the old output or the whole new one."""
    old = dst.parent / f".{dst.name}.edvr-old"
    _remove(old)  # left by a run killed between the two renames
    if dst.exists():
        os.replace(dst, old)
    os.replace(frames, dst)
    _remove(old)


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


class _Reader:
    """Wraps ``read_frames``: remembers each frame's pts and name, and turns a mid-stream failure of a video into an
    end of stream plus a remembered error (what decoded is still restored). In a folder of frames a bad file is the
    user's to fix: the run stops there, with its finished segments kept for ``--resume``."""

    def __init__(self, src: Path, start: int, stop: int | None, end_file: Path) -> None:
        self.frames: dict[int, video_io.Frame] = {}
        self.error: str | None = None
        self.end: int | None = None  # one past the last index, once the end of the stream was seen
        self.empty = True
        # One frame past ``stop`` is decoded, not yielded, to learn whether the stream goes on: a part that ends exactly
        # at the end of the stream (a single-frame model reads no context after its frames) could not tell otherwise.
        self._it = video_io.read_frames(src, start=start, stop=None if stop is None else stop + 1)
        self._stop = stop
        self._end_file = end_file
        self._folder = src.is_dir()

    def __iter__(self) -> Iterator[tuple[int, np.ndarray]]:
        last = None
        more = False
        try:
            for frame in self._it:
                if self._stop is not None and frame.index >= self._stop:
                    more = True
                    break
                self.frames[frame.index] = frame
                last = frame.index
                self.empty = False
                yield frame.index, frame.image
        except InputError as e:
            if self._folder:
                raise InputError(f"{e}; fix or remove it, then rerun with --resume to go on from there") from None
            self.error = str(e)
        finally:
            self._it.close()
        if last is not None and not more:
            # The end of the stream is now known: record it before the last frames are restored, so that a
            # resumed or sharded run that never reads the end again still knows the frame count.
            self.end = last + 1
            write_atomic(self._end_file, json.dumps({"frames": self.end, "error": self.error}))

    def pop(self, index: int) -> video_io.Frame:
        frame = self.frames.pop(index)
        for i in [i for i in self.frames if i < index]:
            del self.frames[i]
        return frame


def restore_video(
    src: str | Path,
    dst: str | Path,
    model: EDVR | str | Path | None = None,
    *,
    device: str | torch.device | None = "auto",
    resume: bool = False,
    overwrite: bool = False,
    quiet: bool = False,
    dcn_backend: str | None = None,
    stage2: EDVR | str | Path | None = None,
    batch: int = 1,
    **options,
) -> RestoreResult:
    """Restore the video file or frame folder ``src`` into ``dst`` (a video file, by its extension, else a folder of
    PNG frames). Options: see :class:`RestoreOptions`. Under ``torchrun`` every process calls this with the same
    arguments; the work is split by segments and rank 0 writes the final output. ``stage2``: a second, HR-input
    EDVR that restores the (8-bit rounded) stage-1 output with its own temporal window, as in the paper. ``batch``:
    windows restored per pass (:class:`~edvr.inference.window.WindowRestorer`); like ``dcn_backend`` it changes speed,
    not the result (beyond float rounding), so a run may resume with another value."""
    t0 = time.perf_counter()
    with _Ranks() as group, contextlib.ExitStack() as held:  # every check inside: a rank that fails stops the others
        opts = RestoreOptions(**options)
        src, dst = Path(src), Path(dst)
        if opts.padding is not None and opts.padding not in PADDING_MODES:
            raise InputError(f"--padding {opts.padding}: unknown; choose one of {', '.join(PADDING_MODES)}")
        if opts.segment_frames < 16:
            # Longer than any temporal context, so that a resumed segment always re-reads the end of the stream.
            raise InputError(f"segment_frames must be >= 16, got {opts.segment_frames}")
        if batch < 1:
            raise InputError(f"--batch {batch}: must be >= 1 window")
        if opts.tile is not None and opts.tile < MIN_TILE:
            raise InputError(f"--tile {opts.tile}: tiles must be at least {MIN_TILE} input pixels (256-512 is usual)")
        if opts.tile_overlap < 0:
            raise InputError(f"--tile-overlap {opts.tile_overlap}: must be >= 0 input pixels (default 32)")
        _check_paths(src, dst, overwrite=overwrite)
        info = video_io.probe(src)
        kind = output_kind(dst)
        if kind == "video":
            opts.codec = opts.codec or video_io.default_codec(dst)
            opts.pix_fmt = opts.pix_fmt or video_io.output_pix_fmt(info.bit_depth, opts.codec)
            opts.crf = video_io.check_crf(opts.codec, opts.crf)
            video_io.check_container(dst, opts.codec, opts.pix_fmt, src if src.is_file() else None)
        rank, world = group.rank, group.world
        dev = pick_device(device)
        if world > 1 and dev.type == "cuda" and dev.index is None:  # torchrun: each process on its own GPU
            local, gpus = _local_rank(), torch.cuda.device_count()
            if local >= gpus:
                raise InputError(f"torchrun started more processes on this machine than it has CUDA GPUs ({gpus}): "
                                 f"use --nproc-per-node {gpus} or fewer, or --device cpu")
            dev = torch.device("cuda", local)
            torch.cuda.set_device(dev)  # this process's GPU, for later current-device calls (empty_cache, ...)
        opts.half = opts.half and dev.type in HALF_DEVICES  # ignored elsewhere: no reason to refuse a resume over it
        if info.interlaced and not quiet and rank == 0:
            print(f"edvr restore: {src} is interlaced; EDVR restores whole frames, so its combing is kept and "
                  "enlarged: deinterlace it first for a clean result (ffmpeg -i IN -vf bwdif -c:a copy OUT)",
                  file=sys.stderr, flush=True)
        dcn_backend = job_dcn_backend(dcn_backend, dev, info.num_frames_hint, info.height, info.width)
        if dcn_backend == "compiled" and not quiet and rank == 0:
            print("edvr restore: the deformable convs and the Winograd convs run compiled; the first frame waits for "
                  "the compilation (about a minute the first time for a frame size, seconds once PyTorch has cached "
                  "it)", file=sys.stderr, flush=True)
        net = _resolve_model(model, dev, dcn_backend)
        net2 = None if stage2 is None else _resolve_model(stage2, dev, dcn_backend)
        if net2 is not None and not net2.config.hr_in:
            raise InputError("--stage2 needs an HR-input model (a stage-2 or deblurring EDVR), not an x4 SR model")
        opts.padding = opts.padding or default_padding_for(net)
        if opts.ensemble is not None:
            from edvr.evaluation.ensemble import resolve_mode

            try:
                opts.ensemble = resolve_mode(net, opts.ensemble)
            except ValueError as e:
                raise InputError(f"--ensemble: {e}") from None
        state = {"version": WORK_VERSION, "output": kind, "model": _model_id(net),
                 "stage2": None if net2 is None else _model_id(net2), "options": asdict(opts), **_source_identity(src)}
        if info.turned or info.sample_aspect_ratio:  # only for these sources
            state["display"] = {"turned": info.turned, "sample_aspect_ratio": str(info.sample_aspect_ratio)}
        work = work_dir_for(dst)
        _prepare_work_dir(work, state, resume=resume, rank=rank, held=held)
        group.barrier("prepared")
        if kind == "folder":
            _frames_dir(work).mkdir(exist_ok=True)

        restorers = [
            WindowRestorer(m, padding=opts.padding, device=dev, half=opts.half, tile=opts.tile,
                           tile_overlap=opts.tile_overlap, ensemble=opts.ensemble, batch=batch)
            for m in (net, net2) if m is not None
        ]
        _keep_fallbacks(work, restorers, rank)
        k = opts.segment_frames
        finished = _finished_segments(work)
        done_before = sum(finished)
        progress = _progress(info, quiet=quiet or rank != 0)
        try:
            if world == 1:
                # One stream from the first unfinished segment to the end: context frames are decoded once.
                progress.update(done_before)
                _run_segments(src, dst, work, kind, restorers, info, opts, len(finished), None, progress)
            else:
                seg = rank
                while True:  # every world-th segment, each with its own temporal context, until past the end
                    group.check()  # stop early if another rank failed
                    if not _segment_marker(work, seg).exists():
                        reader = _run_segments(src, dst, work, kind, restorers, info, opts, seg, seg + 1, progress)
                        if reader.end is not None or reader.empty:
                            break
                    elif json.loads(_segment_marker(work, seg).read_text())["frames"] < k:
                        break  # a finished short segment is the last one
                    seg += world
        finally:
            progress.close()
        group.barrier("written")
        end_file = work / "end.json"
        end = json.loads(end_file.read_text()) if end_file.is_file() else {"frames": None, "error": None}
        total, error = end["frames"], end["error"]
        group.barrier("read")  # every rank has the frame count and the stream's error before rank 0 removes the folder
        if rank == 0:
            counts = _finished_segments(work)
            if not total:
                raise InputError(f"{src}: no frame could be decoded" + (f" ({error})" if error else ""))
            if sum(counts[: math.ceil(total / k)]) != total:
                raise OutputError(f"{work}: some segments are missing or incomplete; rerun with --resume")
            if kind == "video":
                segments = [_segment_video(work, i) for i in range(math.ceil(total / k))]
                video_io.finalize_video(segments, dst, source=src if src.is_file() else None, overwrite=True,
                                        temp_dir=work)
            else:
                _publish_folder(_frames_dir(work), dst)
            shutil.rmtree(work, ignore_errors=True)
        group.barrier("finished")
    if error:
        raise EdvrError(f"{error}; the {total} frames before it were restored into {dst}")
    return RestoreResult(dst, total, time.perf_counter() - t0, resumed_frames=done_before)


def _model_id(net: EDVR) -> str | dict:
    """What a resumed run must find again: a loaded file by its resolved path, size and time (a checkpoint replaced
    under the same name is another model), an in-memory model by its description and a hash of its weights."""
    path = getattr(net, "source_path", None)
    if path is not None and path.is_file():
        st = path.stat()
        return {"file": str(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    digest = hashlib.sha256()
    for name, tensor in net.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().reshape(-1).contiguous().view(torch.uint8).numpy().tobytes())
    return {"model": str(getattr(net, "source", None) or f"in-memory {type(net).__name__} {net.config}"),
            "weights_sha256": digest.hexdigest()}


def _chain(restorers: list[WindowRestorer], frames: Iterable[tuple[int, np.ndarray]], start: int, stop: int | None):
    """Stage 1 (and stage 2 on its output): each stage is asked for its centres plus the context the next needs.
    Stage-1 output is rounded to 8 bits before stage 2, as the reference did by saving it to PNG."""
    need = [sum(r.num_frames - 1 for r in restorers[i + 1:]) for i in range(len(restorers))]
    stream: Iterable[tuple[int, np.ndarray]] = frames
    for i, (restorer, extra) in enumerate(zip(restorers, need)):
        if i > 0:
            stream = ((j, video_io.quantize8(img).astype(np.float32) / np.float32(255)) for j, img in stream)
        stream = restorer.restore(stream, first_center=max(0, start - extra),
                                  stop_center=None if stop is None else stop + extra)
    return stream


def _run_segments(
    src: Path, dst: Path, work: Path, kind: str, restorers: list[WindowRestorer], info: video_io.VideoInfo,
    opts: RestoreOptions, first_seg: int, stop_seg: int | None, progress,
) -> _Reader:
    """Restore segments ``[first_seg, stop_seg)`` (to the end if None); returns the reader, which knows whether the
    end of the stream was reached and whether it broke."""
    k = opts.segment_frames
    context = sum(r.num_frames - 1 for r in restorers)
    start, stop = first_seg * k, None if stop_seg is None else stop_seg * k
    reader = _Reader(src, max(0, start - context), None if stop is None else stop + context, work / "end.json")
    writer = None
    seg = None
    count = 0
    bit_depth = 16 if info.bit_depth > 8 else 8
    fps, time_base = _timing(info)
    last_pts = None
    try:
        for index, image in _chain(restorers, iter(reader), start, stop):
            frame = reader.pop(index)
            if index // k != seg:
                _commit(writer, work, seg, count)
                seg, count, last_pts = index // k, 0, None
                writer = _open_segment(work, seg, info, opts, image.shape) if kind == "video" else None
            if writer is not None:
                # A frame without a timestamp is placed by its number at the average rate.
                pts = frame.pts if frame.pts is not None else round(index / (fps * time_base))
                if last_pts is not None and pts <= last_pts:
                    raise InputError(f"{src}: frame {index} has timestamp {pts}, not after the previous frame's "
                                     f"({last_pts}); remux the file with new timestamps (ffmpeg -fflags +genpts -i IN "
                                     "-c copy OUT.mkv) or restore it into a folder of frames")
                writer.write(image, pts)
                last_pts = pts
            else:
                video_io.write_image(_frames_dir(work) / _frame_name(frame.name, index), image, bit_depth=bit_depth)
            count += 1
            progress.update(1)
        _commit(writer, work, seg, count)
        writer = None
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    return reader


def _timing(info: video_io.VideoInfo) -> tuple[Fraction, Fraction]:
    """The output's frame rate and time base: the source's (25 frames/s for a frame folder)."""
    fps = info.fps or Fraction(25)
    return fps, info.time_base or 1 / fps


def _open_segment(work: Path, seg: int, info: video_io.VideoInfo, opts: RestoreOptions, shape):
    fps, time_base = _timing(info)
    return video_io.SegmentWriter(
        _segment_video(work, seg), width=shape[1], height=shape[0], time_base=time_base, fps=fps,
        codec=opts.codec, crf=video_io.DEFAULT_CRF if opts.crf is None else opts.crf,
        pix_fmt=opts.pix_fmt, color=info.color, sample_aspect_ratio=info.sample_aspect_ratio,
    )


def _commit(writer, work: Path, seg: int | None, frames: int) -> None:
    if seg is None:
        return
    if writer is not None:
        writer.close()
    write_atomic(_segment_marker(work, seg), json.dumps({"frames": frames}))


def _progress(info: video_io.VideoInfo, *, quiet: bool):
    from tqdm import tqdm

    return tqdm(total=info.num_frames_hint, unit="frame", desc="restore", dynamic_ncols=True,
                disable=quiet or not sys.stderr.isatty())


# ------------------------------------------------------------------------------------------------ torchrun
def _local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", 0))


class _Ranks:
    """The processes of a ``torchrun`` job, kept in step through torchrun's key-value store.

    They share nothing but the work folder, so barriers are all they need: no gloo or NCCL group is created (NCCL
    would set up GPU communicators for nothing, and a gloo peer that exits first can abort one still inside the
    last collective). Without torchrun (``WORLD_SIZE`` unset or 1) there is one rank and every call is a no-op.

    Used as a context manager: a rank that raises posts its error in the store, and the others stop at their next
    barrier or segment with that error instead of waiting for a rank that will never come.
    """

    _calls = 0  # restore_video calls in this process; every rank makes the same calls, so keys never collide
    TIMEOUT = timedelta(hours=24)  # the slowest rank's last segment, or rank 0 joining a long video
    POLL_S = 0.05

    def __init__(self) -> None:
        self.world = int(os.environ.get("WORLD_SIZE", 1))
        self.rank = int(os.environ.get("RANK", 0))
        self.store = None
        if self.world == 1:
            return
        from torch.distributed import TCPStore

        if "MASTER_ADDR" not in os.environ or "MASTER_PORT" not in os.environ:
            raise InputError(f"WORLD_SIZE={self.world} but MASTER_ADDR/MASTER_PORT are not set; start the processes "
                             "with torchrun (torchrun --nproc-per-node N -m edvr restore ...)")
        # torchrun's agent hosts the store; a bare launch (MASTER_ADDR/PORT set by hand) has rank 0 host it.
        self.hosting = self.rank == 0 and os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True"
        self.store = TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), self.world,
                              is_master=self.hosting, timeout=self.TIMEOUT)
        _Ranks._calls += 1
        run = os.environ.get("TORCHELASTIC_RUN_ID", "run")
        self.prefix = f"edvr-restore/{run}/{os.environ.get('TORCHELASTIC_RESTART_COUNT', 0)}/{_Ranks._calls}"
        self.failed_key = f"{self.prefix}/failed"

    def __enter__(self) -> _Ranks:
        return self

    def __exit__(self, kind, error, tb) -> None:
        if error is None or self.store is None:
            self.close()
            return
        try:  # the store may be gone with its host: then the error being raised is still the one to report
            if not isinstance(error, _PeerFailed):
                self.store.set(self.failed_key, f"rank {self.rank} stopped: {str(error) or kind.__name__}")
            self.close()
        except Exception:  # noqa: BLE001
            self.store = None

    def check(self) -> None:
        """Raise if another rank has failed."""
        if self.store is not None and self.store.check([self.failed_key]):
            raise _PeerFailed(f"restore stopped on every rank: {self.store.get(self.failed_key).decode()}")

    def barrier(self, name: str) -> None:
        if self.store is None:
            return
        key = f"{self.prefix}/{name}"
        if self.store.add(key, 1) == self.world:
            self.store.set(f"{key}/open", "1")
        deadline = time.monotonic() + self.TIMEOUT.total_seconds()
        while not self.store.check([f"{key}/open"]):
            self.check()
            if time.monotonic() > deadline:
                raise EdvrError(f"restore: rank {self.rank} waited {self.TIMEOUT} at '{name}' for the other ranks")
            time.sleep(self.POLL_S)

    def close(self) -> None:
        """After the last barrier (or a failure): a rank that hosts the store waits until every other rank has left
        it (up to a minute), so that none loses the store while it still reads from it."""
        if self.store is None:
            return
        key = f"{self.prefix}/left"
        try:
            if not self.hosting:
                self.store.add(key, 1)
            else:
                deadline = time.monotonic() + 60
                while self.store.add(key, 0) < self.world - 1 and time.monotonic() < deadline:
                    time.sleep(0.01)
        finally:
            self.store = None


class _PeerFailed(EdvrError):
    """Another rank of the job failed (its error is in the message)."""
