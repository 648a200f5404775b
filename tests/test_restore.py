"""`edvr restore` end to end: streaming equals window-by-window, tiles, resume, torchrun, sound and timestamps kept."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from media import frame_times, make_clip, needs_display_matrix, retag, sample_clip, stream_packets

from edvr.cli import main
from edvr.data.frames import window_indices
from edvr.errors import EdvrError, InputError, OutputError
from edvr.evaluation.metrics import to_uint8
from edvr.inference import video_io
from edvr.inference.command import outputs_for
from edvr.inference.restore import _Reader, restore_frames, restore_video, work_dir_for
from edvr.inference.window import _OUT_OF_MEMORY, WindowRestorer
from edvr.models.convert import save_checkpoint
from edvr.models.edvr import EDVR


def tiny_model(seed: int = 0, **kw) -> EDVR:
    torch.manual_seed(seed)
    model = EDVR(num_feat=8, num_extract_block=1, num_reconstruct_block=1, deformable_groups=2, **kw).eval()
    for m in model.dcn_modules():  # offsets of a pixel or so, so alignment really samples between pixels
        torch.nn.init.normal_(m.conv_offset.weight, std=0.05)
    return model


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    model = tiny_model()
    return save_checkpoint(model.state_dict(), model.config, tmp_path_factory.mktemp("w") / "tiny.safetensors")


def naive(model: EDVR, frames: list[np.ndarray], center: int, padding: str = "reflection_circle") -> torch.Tensor:
    idx = window_indices(center, model.config.num_frames, len(frames), padding)
    x = torch.stack([torch.from_numpy(frames[i]).permute(2, 0, 1) for i in idx])[None]
    with torch.no_grad():
        return model(x)[0].clamp(0, 1)


def real_frames(n: int, size: int = 40) -> list[np.ndarray]:
    return [f.image[:size, :size] for f in video_io.read_frames(sample_clip("carphone_pristine.mp4"), stop=n)]


def frame_folder(path: Path, frames: list[np.ndarray], prefix: str = "img") -> list[np.ndarray]:
    """Write frames as PNGs into a new folder; returns them as the restore will read them (8-bit rounded)."""
    path.mkdir()
    for i, f in enumerate(frames):
        video_io.write_image(path / f"{prefix}{i}.png", f)
    return [video_io.read_image(path / f"{prefix}{i}.png") for i in range(len(frames))]


@pytest.mark.parametrize("with_alignment", [True, False])
def test_cached_windows_equal_naive_windows_exactly(with_alignment):
    model = tiny_model(with_alignment=with_alignment)
    frames = real_frames(9, 36)
    out = dict(WindowRestorer(model, padding="reflection_circle").restore(enumerate(frames)))
    assert sorted(out) == list(range(9))
    for c in range(9):
        assert np.array_equal(out[c], naive(model, frames, c).permute(1, 2, 0).numpy()), c


def test_tiled_equals_untiled_within_1e3():
    model = tiny_model()
    frames = real_frames(5, 64)
    whole = dict(WindowRestorer(model, padding="replicate").restore(enumerate(frames)))
    tiled = dict(WindowRestorer(model, padding="replicate", tile=32, tile_overlap=32).restore(enumerate(frames)))
    err = max(np.abs(whole[c] - tiled[c]).max() for c in whole)
    assert err < 1e-3
    # Without context around the tiles the seams show: the overlap is what makes tiling seamless.
    seams = dict(WindowRestorer(model, padding="replicate", tile=32, tile_overlap=0).restore(enumerate(frames)))
    assert max(np.abs(whole[c] - seams[c]).max() for c in whole) > 10 * err


def test_batched_windows_equal_one_window_at_a_time():
    model = tiny_model()
    frames = real_frames(9, 36)
    one = dict(WindowRestorer(model, padding="reflection_circle").restore(enumerate(frames)))
    for batch, kw in ((2, {}), (4, {}), (16, {}), (3, {"tile": 16, "tile_overlap": 8}), (3, {"ensemble": "x8t"})):
        ref = one if not kw else dict(WindowRestorer(model, padding="reflection_circle", **kw).restore(
            enumerate(frames)))
        out = dict(WindowRestorer(model, padding="reflection_circle", batch=batch, **kw).restore(enumerate(frames)))
        assert sorted(out) == list(range(9)), (batch, kw)
        assert max(np.abs(out[c] - ref[c]).max() for c in out) < 1e-5, (batch, kw)
    # A part of the stream, as resumed segments read it: context from first_center - 4, stop before the end.
    part = WindowRestorer(model, padding="reflection_circle", batch=2).restore(
        ((i, frames[i]) for i in range(1, 9)), first_center=5, stop_center=8, total=9)
    part = dict(part)
    assert sorted(part) == [5, 6, 7] and max(np.abs(part[c] - one[c]).max() for c in part) < 1e-5
    with pytest.raises(InputError, match="batch must be >= 1"):
        WindowRestorer(model, padding="replicate", batch=0)


def test_restore_frames_generator_and_short_streams():
    model = tiny_model()
    for n in (1, 2, 3, 6):
        frames = [np.random.default_rng(i).random((9, 11, 3), dtype=np.float32) for i in range(n)]
        outs = list(restore_frames(frames, model, device="cpu"))
        assert len(outs) == n and outs[0].shape == (36, 44, 3)
        for c in range(n):
            assert np.array_equal(outs[c], naive(model, frames, c).permute(1, 2, 0).numpy())


def test_restore_frames_takes_integer_frames_as_decoders_give_them():
    """uint8 frames (PyAV, OpenCV, imageio) were fed to the model as 0..255 and came out all white."""
    model = tiny_model()
    frames = [np.rint(np.random.default_rng(i).random((9, 11, 3)) * 255).astype(np.uint8) for i in range(4)]
    unit = [f.astype(np.float32) / 255 for f in frames]
    expected = list(restore_frames(unit, model, device="cpu"))
    for given in (frames, [f.astype(np.uint16) * 257 for f in frames], [torch.from_numpy(f) for f in frames]):
        got = list(restore_frames(given, model, device="cpu"))
        assert max(np.abs(g - e).max() for g, e in zip(got, expected)) < 1e-6
    if hasattr(torch, "uint16"):  # torch >= 2.3
        got = list(restore_frames([torch.from_numpy(f.astype(np.uint16) * 257) for f in frames], model, device="cpu"))
        assert max(np.abs(g - e).max() for g, e in zip(got, expected)) < 1e-6
    got = list(restore_frames([f.tolist() for f in unit], model, device="cpu"))  # nested lists, as arrays
    assert max(np.abs(g - e).max() for g, e in zip(got, expected)) < 1e-6
    with pytest.raises(InputError, match=r"a frame of shape \(9, 11\): frames are \(height, width, 3\) RGB"):
        list(restore_frames([f[..., 0] for f in frames], model, device="cpu"))
    with pytest.raises(InputError, match="a frame of int16: frames are float in"):
        list(restore_frames([f.astype(np.int16) for f in frames], model, device="cpu"))


def test_video_keeps_audio_timestamps_and_frame_count(tmp_path, model_file):
    src = make_clip(tmp_path / "in.mp4", list(range(0, 40 * 512, 512)), Fraction(1, 12800), audio="aac")
    dst = tmp_path / "out.mp4"
    result = restore_video(src, dst, model_file, device="cpu", segment_frames=16, quiet=True)
    assert result.frames == 40 and dst.is_file() and not work_dir_for(dst).exists()
    info = video_io.probe(dst)
    assert (info.width, info.height) == (4 * 64, 4 * 48)
    assert frame_times(dst) == frame_times(src)
    assert stream_packets(dst, "audio") == stream_packets(src, "audio")


@needs_display_matrix
def test_phone_video_comes_out_upright_with_its_pixel_shape(tmp_path, model_file):
    # Portrait phone footage: stored 64x48 with "turn 90 degrees clockwise to show" (-90), pixels 32:27 wide as
    # stored. Restored upright, 4x: 192x256, no display matrix left, pixels 27:32 (the stored shape turned).
    src = retag(make_clip(tmp_path / "plain.mp4", list(range(6)), Fraction(1, 25)), tmp_path / "phone.mp4", -90,
                sar=Fraction(32, 27))
    restore_video(src, tmp_path / "out.mp4", model_file, device="cpu", segment_frames=16, quiet=True)
    restore_video(src, tmp_path / "frames", model_file, device="cpu", segment_frames=16, quiet=True)
    out = video_io.probe(tmp_path / "out.mp4")
    assert (out.width, out.height, out.turned, out.sample_aspect_ratio) == (192, 256, False, Fraction(27, 32))
    assert video_io.read_image(tmp_path / "frames" / "00000000.png").shape == (256, 192, 3)


def test_interlaced_source_gets_one_line_of_advice(tmp_path, model_file, capsys):
    for interlaced in (False, True):
        src = make_clip(tmp_path / f"i{interlaced}.mp4", list(range(3)), Fraction(1, 25), interlaced=interlaced)
        restore_video(src, tmp_path / f"o{interlaced}.mp4", model_file, device="cpu", segment_frames=16)
        err = capsys.readouterr().err
        assert ("is interlaced" in err) == interlaced and ("deinterlace it first" in err) == interlaced


def test_folder_in_and_out_equals_naive_windows(tmp_path, model_file, monkeypatch):
    src = tmp_path / "frames"
    frames = frame_folder(src, real_frames(6, 24))  # what the restore really reads
    restore_video(src, tmp_path / "out", model_file, device="cpu", segment_frames=16, quiet=True)
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == [f"img{i}.png" for i in range(6)]
    model = tiny_model()
    for i in range(6):
        expected = to_uint8(naive(model, frames, i))
        got = np.round(video_io.read_image(tmp_path / "out" / f"img{i}.png") * 255).astype(np.uint8)
        assert np.array_equal(got, expected), i
    # Four windows per pass from the command line: the same frames, up to a rounding flip of the last 8-bit level.
    from edvr.inference import restore as restore_module

    batches = []
    restorer = restore_module.WindowRestorer
    monkeypatch.setattr(restore_module, "WindowRestorer",
                        lambda *a, **kw: batches.append(kw["batch"]) or restorer(*a, **kw))
    assert main(["restore", str(src), "-o", str(tmp_path / "out4"), "--model", str(model_file), "--device", "cpu",
                 "--quiet", "--batch", "4"]) == 0
    for i in range(6):
        a, b = (video_io.read_image(tmp_path / d / f"img{i}.png") for d in ("out", "out4"))
        assert np.abs(a - b).max() <= 1 / 255 + 1e-6, i
    assert batches == [4]


def test_long_cpu_jobs_get_the_compiled_dcn(monkeypatch):
    from edvr.inference.restore import COMPILED_MIN_PIXELS, job_dcn_backend
    from edvr.ops import compiled, deform_conv

    monkeypatch.delenv(deform_conv.ENV_VAR, raising=False)
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    long_job = (COMPILED_MIN_PIXELS // (180 * 320) + 1, 180, 320)
    assert job_dcn_backend(None, cpu, *long_job) == "compiled"
    assert job_dcn_backend("auto", cpu, *long_job) == "compiled"
    assert job_dcn_backend(None, cpu, 30, 180, 320) == "auto"  # short: compiling would cost more than it saves
    assert job_dcn_backend(None, cpu, None, 180, 320) == "auto"  # unknown length
    assert job_dcn_backend("torch", cpu, *long_job) == "torch"  # asked for
    assert job_dcn_backend(None, cuda, *long_job) == "auto"
    monkeypatch.setenv(deform_conv.ENV_VAR, "torch")
    assert job_dcn_backend(None, cpu, *long_job) == "torch"  # asked for through the environment
    monkeypatch.delenv(deform_conv.ENV_VAR)
    monkeypatch.setitem(compiled._state, "error", "no compiler")
    assert job_dcn_backend(None, cpu, *long_job) == "auto"


def test_folder_restored_with_the_compiled_dcn(tmp_path, model_file, monkeypatch, capsys):
    from edvr.ops import compiled, deform_conv

    monkeypatch.setattr(compiled, "_state", {"fns": {}, "error": None})
    src = tmp_path / "frames"
    frames = frame_folder(src, real_frames(6, 24))
    assert main(["restore", str(src), "-o", str(tmp_path / "out"), "--model", str(model_file), "--device", "cpu",
                 "--dcn-backend", "compiled"]) == 0
    assert "run compiled" in capsys.readouterr().err
    assert compiled.error() is None and compiled.variants(deform_conv._sample_taps) == 3  # one per level
    model = tiny_model()
    for i in range(6):
        expected = to_uint8(naive(model, frames, i)).astype(int)
        got = np.round(video_io.read_image(tmp_path / "out" / f"img{i}.png") * 255).astype(int)
        # The same numbers up to float rounding: at most a rounding step of 8-bit output apart, and rarely.
        assert np.abs(got - expected).max() <= 1 and (got != expected).mean() < 1e-3, i


def test_ten_bit_in_ten_bit_out(tmp_path, model_file):
    src = make_clip(tmp_path / "in10.mkv", list(range(8)), Fraction(1, 25), pix_fmt="yuv420p10le")
    dst = tmp_path / "out10.mkv"
    handed = []  # what the restore hands the encoder: float frames, not 8-bit ones (the lossy 10-bit encode would
    real_write = video_io.SegmentWriter.write  # move 8-bit levels off the 8-bit grid too, so the file cannot tell)

    def write(self, image, pts):
        handed.append(image)
        return real_write(self, image, pts)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(video_io.SegmentWriter, "write", write)
        restore_video(src, dst, model_file, device="cpu", quiet=True, segment_frames=16)
    assert video_io.probe(dst).bit_depth == 10 and video_io.probe(dst).pix_fmt == "yuv420p10le"
    levels = np.concatenate([f.ravel() for f in handed]) * 255
    assert len(handed) == 8 and np.abs(levels - np.round(levels)).max() > 0.2
    # Into a folder: 16-bit PNGs with levels between the 8-bit ones.
    restore_video(src, tmp_path / "frames", model_file, device="cpu", quiet=True, segment_frames=16)
    pixels = video_io.read_image_pixels(tmp_path / "frames" / "00000000.png")
    assert pixels.dtype == np.uint16 and (pixels % 257 != 0).mean() > 0.5


class Interrupt:
    """read_frames that raises KeyboardInterrupt (a Ctrl-C) after yielding ``after`` frames, once."""

    def __init__(self, after: int) -> None:
        self.after, self.fired = after, False
        self.real = video_io.read_frames

    def __call__(self, path, start=0, stop=None):
        for n, frame in enumerate(self.real(path, start=start, stop=stop)):
            if n == self.after and not self.fired:
                self.fired = True
                raise KeyboardInterrupt
            yield frame


def test_in_memory_models_are_told_apart_by_their_weights_scalars_included():
    from edvr.inference.restore import _model_id

    a, b = tiny_model(0), tiny_model(0)
    a.register_buffer("step", torch.tensor(3))  # a 0-d tensor: once "cannot view Long as Byte"
    b.register_buffer("step", torch.tensor(4))
    assert _model_id(a) != _model_id(b) and _model_id(a) == _model_id(a)


def test_resume_with_another_in_memory_model_is_refused(tmp_path, monkeypatch):
    """Two in-memory models of one architecture were the same model to resume: the output mixed them silently."""
    src = make_clip(tmp_path / "in.mp4", list(range(40)), Fraction(1, 25))
    dst = tmp_path / "out.mkv"
    monkeypatch.setattr(video_io, "read_frames", Interrupt(after=30))
    with pytest.raises(KeyboardInterrupt):
        restore_video(src, dst, tiny_model(0), device="cpu", segment_frames=16, quiet=True)
    with pytest.raises(OutputError, match="cannot resume: the earlier run differs in model"):
        restore_video(src, dst, tiny_model(1), device="cpu", segment_frames=16, quiet=True, resume=True)
    result = restore_video(src, dst, tiny_model(0), device="cpu", segment_frames=16, quiet=True, resume=True)
    assert result.resumed_frames == 16


def test_resume_after_interrupt_equals_uninterrupted(tmp_path, model_file, monkeypatch):
    src = make_clip(tmp_path / "in.mp4", list(range(45)), Fraction(1, 25), audio="aac")
    straight = tmp_path / "straight.mkv"
    restore_video(src, straight, model_file, device="cpu", segment_frames=16, quiet=True)

    dst = tmp_path / "resumed.mkv"
    monkeypatch.setattr(video_io, "read_frames", Interrupt(after=30))
    with pytest.raises(KeyboardInterrupt):
        restore_video(src, dst, model_file, device="cpu", segment_frames=16, quiet=True)
    assert not dst.exists()  # nothing under the final name until it is finished
    assert sorted(p.name for p in work_dir_for(dst).glob("seg*")) == ["seg000000.json", "seg000000.nut"]
    with pytest.raises(OutputError, match="cannot resume: the earlier run differs in --segment-frames;"):
        restore_video(src, dst, model_file, device="cpu", segment_frames=20, quiet=True, resume=True)
    # Start again, interrupted again (work folder was reset since the options differed), then resume properly.
    monkeypatch.setattr(video_io, "read_frames", Interrupt(after=30))
    with pytest.raises(KeyboardInterrupt):
        restore_video(src, dst, model_file, device="cpu", segment_frames=16, quiet=True)
    # --half is ignored on CPU, so it does not make another job of this one
    result = restore_video(src, dst, model_file, device="cpu", segment_frames=16, quiet=True, resume=True, half=True)
    assert result.resumed_frames == 16 and result.frames == 45
    assert dst.read_bytes() == straight.read_bytes()


def test_a_model_replaced_under_its_name_is_not_resumed(tmp_path, model_file, monkeypatch):
    src = make_clip(tmp_path / "in.mp4", list(range(40)), Fraction(1, 25))
    model = tmp_path / "net_g_latest.safetensors"
    model.write_bytes(model_file.read_bytes())
    dst = tmp_path / "out.mkv"
    monkeypatch.setattr(video_io, "read_frames", Interrupt(after=30))
    with pytest.raises(KeyboardInterrupt):
        restore_video(src, dst, model, device="cpu", segment_frames=16, quiet=True)
    monkeypatch.undo()
    other = tiny_model(seed=1)
    save_checkpoint(other.state_dict(), other.config, model)  # the same name, other weights (a training run's latest)
    with pytest.raises(OutputError, match="cannot resume: the earlier run differs in model"):
        restore_video(src, dst, model, device="cpu", segment_frames=16, quiet=True, resume=True)


def test_a_work_folder_of_another_version_is_not_resumed(tmp_path, model_file):
    src = make_clip(tmp_path / "in.mp4", list(range(20)), Fraction(1, 25))
    dst = tmp_path / "out.mkv"
    work = work_dir_for(dst)
    work.mkdir()
    (work / "state.json").write_text('{"version": 2}')
    with pytest.raises(OutputError, match="cannot resume: written by another version of edvr .*version 2"):
        restore_video(src, dst, model_file, device="cpu", quiet=True, resume=True)
    restore_video(src, dst, model_file, device="cpu", quiet=True)  # without --resume it starts over
    assert len(frame_times(dst)) == 20


def test_a_second_job_on_the_same_output_is_refused(tmp_path, model_file, capsys):
    fcntl = pytest.importorskip("fcntl", reason="no folder locks on Windows")

    src = make_clip(tmp_path / "in.mp4", list(range(20)), Fraction(1, 25))
    dst = tmp_path / "out.mp4"
    args = ["restore", str(src), "-o", str(dst), "--model", str(model_file), "--device", "cpu", "--quiet"]
    work = work_dir_for(dst)
    work.mkdir()
    (work / "seg000000.json").write_text('{"frames": 16}')  # a running job's finished segment
    fd = os.open(work, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # held by that job
        assert main(args) != 0
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and "another edvr restore is writing this output" in err
        assert (work / "seg000000.json").exists() and not dst.exists()  # its work is left alone
    finally:
        os.close(fd)
    assert main(args) == 0 and len(frame_times(dst)) == 20 and not work.exists()


@pytest.mark.parametrize(("option", "message"), [
    (["--tile", "8"], "--tile 8: tiles must be at least 16"),
    (["--tile", "64", "--tile-overlap", "-16"], "--tile-overlap -16: must be >= 0"),
    (["--crf", "-5"], "--crf -5: libx264 takes 0 (best) to 51"),
    (["--codec", "libvpx-vp9", "--crf", "64"], "--crf 64: libvpx-vp9 takes 0 (best) to 63"),
    (["--codec", "mpeg4", "--crf", "20"], "--crf 20: mpeg4 has no constant-quality mode"),
    (["--codec", "libsvtav1", "--crf", "0"], "--crf 0: libsvtav1 takes 1 (best) to 63"),  # 0 means its default, 35
])
def test_bad_options_are_refused_before_any_work(tmp_path, model_file, capsys, option, message):
    src = make_clip(tmp_path / "in.mp4", list(range(5)), Fraction(1, 25))
    dst = tmp_path / "out.mkv"
    assert main(["restore", str(src), "-o", str(dst), "--model", str(model_file), "--device", "cpu", "--quiet",
                 *option]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and message in err
    assert not dst.exists() and not work_dir_for(dst).exists()


def test_a_resumed_run_goes_on_with_the_interrupted_runs_fallbacks(tmp_path, model_file, monkeypatch):
    # A GPU that ran out of memory went on in tiles; after an interruption the resumed run (on a device with room)
    # must go on in the same tiles, or its segments differ from the uninterrupted run's.
    src = make_clip(tmp_path / "in.mp4", list(range(40)), Fraction(1, 25))
    kw = {"device": "cpu", "segment_frames": 16, "quiet": True, "tile_overlap": 4}
    real = WindowRestorer._restore_window_views

    def whole_frames_do_not_fit(self, *args):
        if self.tile is None:
            raise RuntimeError("CUDA out of memory (simulated)")
        return real(self, *args)

    monkeypatch.setattr(WindowRestorer, "_restore_window_views", whole_frames_do_not_fit)
    restore_video(src, tmp_path / "straight.mkv", model_file, **kw)
    whole = tmp_path / "whole.mkv"
    monkeypatch.undo()
    restore_video(src, whole, model_file, **kw)
    assert whole.read_bytes() != (tmp_path / "straight.mkv").read_bytes()  # tiles of 32 (+4) change the output

    dst = tmp_path / "resumed.mkv"
    monkeypatch.setattr(WindowRestorer, "_restore_window_views", whole_frames_do_not_fit)
    monkeypatch.setattr(video_io, "read_frames", Interrupt(after=30))
    with pytest.raises(KeyboardInterrupt):
        restore_video(src, dst, model_file, **kw)
    monkeypatch.undo()  # the resumed run has memory enough for whole frames
    restore_video(src, dst, model_file, resume=True, **kw)
    assert dst.read_bytes() == (tmp_path / "straight.mkv").read_bytes()


def test_kill_9_then_resume_from_the_cli(tmp_path, model_file):
    src = make_clip(tmp_path / "in.mp4", list(range(100)), Fraction(1, 25), audio="aac")
    args = [str(src), "--model", str(model_file), "--device", "cpu", "--segment-frames", "16", "--quiet"]
    assert main(["restore", *args, "-o", str(tmp_path / "straight.mp4")]) == 0
    dst = tmp_path / "out.mp4"
    cmd = [sys.executable, "-m", "edvr", "restore", *args, "-o", str(dst)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    marker = work_dir_for(dst) / "seg000001.json"
    deadline = time.time() + 120
    while not marker.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert marker.exists() and not dst.exists()
    assert main(["restore", *args, "-o", str(dst), "--resume"]) == 0
    assert dst.read_bytes() == (tmp_path / "straight.mp4").read_bytes()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_give_the_same_file_as_one(tmp_path, model_file):
    src = make_clip(tmp_path / "in.mp4", list(range(50)), Fraction(1, 25), audio="aac")
    args = [str(src), "--model", str(model_file), "--device", "cpu", "--segment-frames", "16"]
    assert main(["restore", *args, "--quiet", "-o", str(tmp_path / "one.mp4")]) == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONFAULTHANDLER": "1"}  # a crash prints its Python stack
    logs = tmp_path / "logs"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
           "--master-port", str(_free_port()), "--log-dir", str(logs), "--redirects", "3",
           "-m", "edvr", "restore", *args, "-o", str(tmp_path / "two.mp4")]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    # On failure, show what each rank printed (torchrun's own summary hides it).
    ranks = "\n".join(f"--- {f.relative_to(logs)}\n{f.read_text()[-3000:]}" for f in sorted(logs.rglob("*.log")))
    assert done.returncode == 0, f"{done.stderr[-1500:]}\n{ranks}"
    assert (tmp_path / "two.mp4").read_bytes() == (tmp_path / "one.mp4").read_bytes()
    # Every rank reports the frame count (rank 1 once read it after rank 0 had removed the work folder: None).
    outs = sorted(logs.rglob("stdout.log"))
    assert len(outs) == 2 and all("two.mp4: 50 frames" in f.read_text() for f in outs), ranks


def test_a_rank_that_fails_stops_the_others(tmp_path, model_file):
    # A bare two-process launch (rank 0 hosts the store): rank 1 gets a model that does not exist and fails before
    # the first barrier. Rank 0 must stop with rank 1's error, not wait for it until the store's 24 h timeout.
    src = make_clip(tmp_path / "in.mp4", list(range(20)), Fraction(1, 25))
    dst = tmp_path / "out.mp4"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1",
           "MASTER_PORT": str(_free_port())}
    procs = [
        subprocess.Popen([sys.executable, "-m", "edvr", "restore", str(src), "-o", str(dst), "--device", "cpu",
                          "--quiet", "--model", str(model_file) if rank == 0 else str(tmp_path / "missing.safetensors")],
                         env={**env, "RANK": str(rank)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for rank in (0, 1)
    ]
    try:
        (_, err0), (_, err1) = (p.communicate(timeout=120) for p in procs)
    finally:
        for p in procs:
            p.kill()
    assert procs[1].returncode == 2 and "missing.safetensors" in err1
    assert procs[0].returncode != 0, err0
    line = err0.strip()
    assert "\n" not in line and "rank 1" in line and "missing.safetensors" in line, err0
    assert not dst.exists()


def test_broken_stream_restores_what_decodes_then_fails(tmp_path, model_file, capsys):
    src = make_clip(tmp_path / "in.mkv", list(range(40)), Fraction(1, 25), noise=True)
    data = src.read_bytes()
    broken = tmp_path / "broken.mkv"
    broken.write_bytes(data[: len(data) // 2])
    dst = tmp_path / "out.mkv"
    assert main(["restore", str(broken), "-o", str(dst), "--model", str(model_file), "--device", "cpu", "--quiet"]) != 0
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "broken.mkv" in err and "frame" in err
    n = len(frame_times(dst))
    assert 0 < n < 40 and f"the {n} frames before it" in err


def test_a_stream_that_changes_size_midway_says_so(tmp_path, model_file, capsys):
    # MPEG-TS parts joined byte by byte (as recorded broadcasts and HLS downloads are): 64x48, then 96x64.
    parts = [make_clip(tmp_path / f"{w}.ts", list(range(i * 10, i * 10 + 10)), Fraction(1, 25), size=(w, h))
             for i, (w, h) in enumerate([(64, 48), (96, 64)])]
    src = tmp_path / "joined.ts"
    src.write_bytes(b"".join(p.read_bytes() for p in parts))
    dst = tmp_path / "out.mp4"
    assert main(["restore", str(src), "-o", str(dst), "--model", str(model_file), "--device", "cpu", "--quiet"]) != 0
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "joined.ts: frame 10 is 96x64 but the frames before it are 64x48" in err
    assert "scale=64:48" in err and "the 10 frames before it" in err
    assert len(frame_times(dst)) == 10


def test_bad_input_one_line_errors(tmp_path, model_file, capsys):
    src = make_clip(tmp_path / "in.mp4", list(range(5)), Fraction(1, 25))
    aac = make_clip(tmp_path / "aac.mp4", list(range(5)), Fraction(1, 25), audio="aac")
    (tmp_path / "notes.txt").write_text("not a video")
    (tmp_path / "exists.mp4").write_bytes(b"x")
    base = ["--model", str(model_file), "--device", "cpu", "--quiet"]
    cases = [
        ([str(tmp_path / "missing.mp4"), "-o", str(tmp_path / "o.mp4")], "no such file"),
        ([str(tmp_path / "notes.txt"), "-o", str(tmp_path / "o.mp4")], "notes.txt"),
        ([str(src), "-o", str(tmp_path / "exists.mp4")], "--overwrite"),
        ([str(src), "-o", str(src), "--overwrite"], "overwrite the input"),
        ([str(src), "-o", str(tmp_path / "nodir" / "o.mp4")], "does not exist"),
        ([str(src), "-o", str(tmp_path / "o.mp4"), "--padding", "mirror"], "padding"),
        ([str(src), "-o", str(tmp_path / "o.mp4"), "--batch", "0"], "--batch 0"),
        ([str(src), "-o", str(tmp_path / "o.mp4"), "--device", "gpu"], "--device gpu"),
        ([str(src), "-o", str(tmp_path / "o.mp4"), "--device", "meta"], "--device meta"),
        ([str(src), "-o", str(tmp_path / "o.ts")], "not an output"),
        ([str(src), "-o", str(tmp_path / "o.mp4"), "--codec", "nonesuch"], "--codec nonesuch"),
        ([str(src), "-o", str(tmp_path / "o.mp4"), "--pix-fmt", "rgb24"], "--pix-fmt rgb24"),
        ([str(aac), "-o", str(tmp_path / "o.webm")], "cannot hold the audio stream"),
    ]
    for args, expected in cases:
        assert main(["restore", *base, *args]) == 2, args  # args last: their --device wins
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and expected in err, (args, err)
    assert main(["restore", str(src), "-o", str(tmp_path / "o.mp4"), "--model", "no-such-model", "--quiet"]) == 2
    assert "no-such-model" in capsys.readouterr().err
    assert (tmp_path / "exists.mp4").read_bytes() == b"x"  # never overwritten
    assert not list(tmp_path.glob(".*"))  # every check came before any work: no work folder, no temp file


def test_several_inputs_into_a_folder(tmp_path, model_file, capsys):
    a = make_clip(tmp_path / "a.mp4", list(range(6)), Fraction(1, 25))
    b = make_clip(tmp_path / "b.mkv", list(range(4)), Fraction(1, 25))
    out = tmp_path / "restored"
    assert main(["restore", str(a), str(b), "-o", str(out), "--model", str(model_file), "--device", "cpu"]) == 0
    assert len(frame_times(out / "a_edvr.mp4")) == 6 and len(frame_times(out / "b_edvr.mkv")) == 4
    assert "6 frames" in capsys.readouterr().out


def test_webm_gets_vp9_and_keeps_its_opus(tmp_path, model_file):
    src = make_clip(tmp_path / "in.webm", list(range(6)), Fraction(1, 1000), codec="libvpx-vp9", audio="libopus")
    assert main(["restore", str(src), "-o", str(tmp_path / "out.webm"), "--model", str(model_file), "--device", "cpu",
                 "--quiet"]) == 0
    with av.open(str(tmp_path / "out.webm")) as out:
        assert out.streams.video[0].codec_context.name == "vp9"
    assert frame_times(tmp_path / "out.webm") == frame_times(src)
    assert stream_packets(tmp_path / "out.webm", "audio") == stream_packets(src, "audio")
    # A 10-bit source: 10-bit VP9 where this FFmpeg has it, else 8-bit, never an encoder error.
    deep = make_clip(tmp_path / "in10.mkv", list(range(4)), Fraction(1, 25), pix_fmt="yuv420p10le")
    restore_video(deep, tmp_path / "out10.webm", model_file, device="cpu", quiet=True)
    assert len(frame_times(tmp_path / "out10.webm")) == 4


def test_several_inputs_get_containers_edvr_writes(tmp_path):
    (tmp_path / "frames").mkdir()
    inputs = [tmp_path / "a.MP4", tmp_path / "b.ts", tmp_path / "frames"]
    assert outputs_for(inputs, tmp_path / "out") == [tmp_path / "out" / n for n in ("a_edvr.MP4", "b_edvr.mkv",
                                                                                     "frames_edvr")]


def test_folder_output_appears_whole_and_replaces_whole(tmp_path, model_file, monkeypatch):
    old, new = tmp_path / "old", tmp_path / "new"
    frame_folder(old, real_frames(32, 16), prefix="old")
    frame_folder(new, real_frames(30, 16), prefix="new")
    dst = old / "restored"  # inside the input folder: neither it nor its work folder counts as an input frame
    restore_video(old, dst, model_file, device="cpu", quiet=True)
    before = {p.name: p.read_bytes() for p in dst.iterdir()}
    assert sorted(before, key=video_io.natural_key) == [f"old{i}.png" for i in range(32)]
    monkeypatch.setattr(video_io, "read_frames", Interrupt(after=28))  # the first 16 frames are finished (restore reads ahead)
    with pytest.raises(KeyboardInterrupt):
        restore_video(new, dst, model_file, device="cpu", segment_frames=16, quiet=True, overwrite=True)
    assert {p.name: p.read_bytes() for p in dst.iterdir()} == before  # the old output, untouched, until...
    monkeypatch.undo()
    result = restore_video(new, dst, model_file, device="cpu", segment_frames=16, quiet=True, overwrite=True,
                           resume=True)
    assert result.resumed_frames == 16 and result.frames == 30
    assert sorted(p.name for p in dst.iterdir()) == sorted(f"new{i}.png" for i in range(30))  # ...replaced whole
    assert not work_dir_for(dst).exists() and not list(old.glob(".*"))
    # Interrupted with the output inside the input folder, then resumed: its work folder is not an input frame.
    monkeypatch.setattr(video_io, "read_frames", Interrupt(after=28))
    with pytest.raises(KeyboardInterrupt):
        restore_video(old, old / "again", model_file, device="cpu", segment_frames=16, quiet=True)
    monkeypatch.undo()
    assert restore_video(old, old / "again", model_file, device="cpu", segment_frames=16, quiet=True,
                         resume=True).resumed_frames == 16


def test_frames_of_the_same_name_are_refused(tmp_path, model_file):
    src = tmp_path / "frames"
    frame_folder(src, real_frames(2, 16), prefix="")
    (src / "1.jpg").write_bytes((src / "1.png").read_bytes())
    with pytest.raises(InputError, match="1.jpg and 1.png would both be written as 1.png"):
        restore_video(src, tmp_path / "out", model_file, device="cpu", quiet=True)


def test_a_reader_that_stops_at_the_end_knows_it(tmp_path):
    src = tmp_path / "frames"
    frame_folder(src, real_frames(16, 8))
    for stop, end in ((16, 16), (15, None), (None, 16)):
        end_file = tmp_path / f"end{stop}.json"
        reader = _Reader(src, 0, stop, end_file)
        assert [i for i, _ in reader] == list(range(stop or 16))
        assert reader.end == end and end_file.exists() == (end is not None), stop


def test_source_timestamps(tmp_path, model_file, monkeypatch):
    src = make_clip(tmp_path / "in.mkv", [40 * i for i in range(6)], Fraction(1, 1000))
    real = video_io.read_frames

    def with_pts(pts):
        def read(path, start=0, stop=None):
            for frame in real(path, start=start, stop=stop):
                yield video_io.Frame(frame.index, pts[frame.index], frame.image)
        return read

    # Missing timestamps: each frame is placed by its number at the average rate.
    monkeypatch.setattr(video_io, "read_frames", with_pts([None] * 6))
    restore_video(src, tmp_path / "none.mkv", model_file, device="cpu", quiet=True)
    assert frame_times(tmp_path / "none.mkv") == frame_times(src)
    # A timestamp that does not increase: one clear input error, nothing under the output name.
    monkeypatch.setattr(video_io, "read_frames", with_pts([0, 40, 80, 80, 160, 200]))
    with pytest.raises(InputError, match="frame 3 has timestamp 80"):
        restore_video(src, tmp_path / "repeat.mkv", model_file, device="cpu", quiet=True)
    assert not (tmp_path / "repeat.mkv").exists()


def test_mixed_sizes_in_a_folder_is_an_input_error(tmp_path, model_file):
    src = tmp_path / "frames"
    src.mkdir()
    video_io.write_image(src / "0.png", np.zeros((8, 8, 3), np.float32))
    video_io.write_image(src / "1.png", np.zeros((8, 12, 3), np.float32))
    with pytest.raises((InputError, EdvrError), match="1.png"):
        restore_video(src, tmp_path / "out", model_file, device="cpu", quiet=True)


def test_a_bad_frame_in_a_folder_stops_with_nothing_published_and_resumes_once_fixed(tmp_path, model_file):
    """A folder's bad file is the user's to fix: before, the frames before it were published as the output, and the
    rerun after the fix was refused (the output existed) with the work folder gone."""
    src = tmp_path / "frames"
    frame_folder(src, real_frames(40, 16), prefix="")
    good = (src / "33.png").read_bytes()
    (src / "33.png").write_bytes(b"not a png")
    dst = tmp_path / "out"
    with pytest.raises(InputError, match=r"33.png.*rerun with --resume"):
        restore_video(src, dst, model_file, device="cpu", quiet=True, segment_frames=16)
    assert not dst.exists() and work_dir_for(dst).is_dir()
    (src / "33.png").write_bytes(good)
    result = restore_video(src, dst, model_file, device="cpu", quiet=True, segment_frames=16, resume=True)
    assert result.frames == 40 and result.resumed_frames == 16 and len(list(dst.iterdir())) == 40


def test_ensemble_in_restore_equals_the_evaluation_ensemble():
    from edvr.evaluation.ensemble import ensemble_forward

    model = tiny_model()
    frames = real_frames(6, 20)
    for mode in ("x8t", "flip4"):
        out = dict(WindowRestorer(model, padding="reflection_circle", ensemble=mode).restore(enumerate(frames)))
        for c in range(6):
            idx = window_indices(c, 5, 6, "reflection_circle")
            x = torch.stack([torch.from_numpy(frames[i]).permute(2, 0, 1) for i in idx])[None]
            expected = ensemble_forward(model, x, mode)[0].clamp(0, 1).permute(1, 2, 0).numpy()
            assert np.array_equal(out[c], expected), (mode, c)
            assert not np.array_equal(out[c], naive(model, frames, c).permute(1, 2, 0).numpy())


def test_stage2_chained_and_resumable(tmp_path, model_file, monkeypatch):
    """Stage 2 restores the 8-bit stage-1 output with its own window; segments and resume still give one file."""
    torch.manual_seed(1)
    stage2 = EDVR(num_feat=8, num_extract_block=1, num_reconstruct_block=1, deformable_groups=2, hr_in=True).eval()
    stage2_file = save_checkpoint(stage2.state_dict(), stage2.config, tmp_path / "stage2.safetensors")
    src = tmp_path / "frames"
    frames = frame_folder(src, real_frames(7, 16), prefix="")
    restore_video(src, tmp_path / "out", model_file, stage2=stage2_file, device="cpu", quiet=True, segment_frames=16)
    stage1 = tiny_model()
    s1 = [to_uint8(naive(stage1, frames, c)).astype(np.float32) / np.float32(255) for c in range(7)]
    for c in range(7):
        expected = to_uint8(naive(stage2, s1, c))
        got = np.round(video_io.read_image(tmp_path / "out" / f"{c}.png") * 255).astype(np.uint8)
        assert np.array_equal(got, expected), c
    src_video = make_clip(tmp_path / "in.mp4", list(range(40)), Fraction(1, 25))
    args = dict(device="cpu", quiet=True, segment_frames=16, stage2=stage2_file)
    restore_video(src_video, tmp_path / "straight.mkv", model_file, **args)
    monkeypatch.setattr(video_io, "read_frames", Interrupt(after=30))
    with pytest.raises(KeyboardInterrupt):
        restore_video(src_video, tmp_path / "resumed.mkv", model_file, **args)
    restore_video(src_video, tmp_path / "resumed.mkv", model_file, resume=True, **args)
    assert (tmp_path / "resumed.mkv").read_bytes() == (tmp_path / "straight.mkv").read_bytes()


@pytest.mark.parametrize("error", [_OUT_OF_MEMORY("simulated"),  # CUDA: recognised by its type
                                   RuntimeError("MPS backend out of memory (MPS allocated: 17.00 GB)")])  # MPS: text
def test_out_of_memory_falls_back_to_tiles(monkeypatch, error):
    """A window too large for the device (simulated) is retried in tiles, halving until it fits."""
    model = tiny_model()
    frames = real_frames(5, 64)
    encode = model.encode

    def small_only(x):
        if x.shape[-1] * x.shape[-2] > 48 * 48:
            raise error
        return encode(x)

    monkeypatch.setattr(model, "encode", small_only)
    restorer = WindowRestorer(model, padding="replicate", tile_overlap=8)
    out = dict(restorer.restore(enumerate(frames)))
    assert restorer.tile == 32  # whole 64x64 frames fail; 32-pixel tiles (40x40 crops with the overlap) fit
    monkeypatch.setattr(model, "encode", encode)
    tiled = dict(WindowRestorer(model, padding="replicate", tile=32, tile_overlap=8).restore(enumerate(frames)))
    assert all(np.array_equal(out[c], tiled[c]) for c in out)


def test_other_runtime_errors_are_not_retried(monkeypatch):
    model = tiny_model()

    def broken(x):
        raise RuntimeError("Expected all tensors to be on the same device")

    monkeypatch.setattr(model, "encode", broken)
    restorer = WindowRestorer(model, padding="replicate")
    with pytest.raises(RuntimeError, match="same device"):
        dict(restorer.restore(enumerate(real_frames(5, 64))))
    assert restorer.tile is None


def test_half_precision_overflow_is_redone_in_float32(monkeypatch):
    """A half-precision pass whose output is not finite is redone in float32 (with one warning), and the rest of the
    clip stays in float32: the result equals a float32 run."""
    model = tiny_model()
    frames = real_frames(6, 32)
    expected = dict(WindowRestorer(model, padding="replicate").restore(enumerate(frames)))
    reconstruct = model.reconstruct
    calls = []

    def overflow_at_third_window(fused, center):
        calls.append(1)
        out = reconstruct(fused, center)
        return out.fill_(float("inf")) if len(calls) == 3 else out

    monkeypatch.setattr(model, "reconstruct", overflow_at_third_window)
    restorer = WindowRestorer(model, padding="replicate")
    restorer.half = True  # as on a GPU (on the CPU --half is off); the autocast stays off here, the check runs
    with pytest.warns(RuntimeWarning, match="frame 2 overflowed in float16; restoring in float32"):
        out = dict(restorer.restore(enumerate(frames)))
    assert not restorer.half and len(calls) == 7  # the third window twice
    assert all(np.array_equal(out[c], expected[c]) for c in expected)


def test_out_of_memory_halves_the_batch_before_tiling(monkeypatch):
    model = tiny_model()
    frames = real_frames(7, 32)
    reconstruct = model.reconstruct

    def two_windows_at_most(fused, center):
        if fused.shape[0] > 2:
            raise torch.OutOfMemoryError("simulated: CUDA out of memory")
        return reconstruct(fused, center)

    monkeypatch.setattr(model, "reconstruct", two_windows_at_most)
    restorer = WindowRestorer(model, padding="replicate", batch=8)
    out = dict(restorer.restore(enumerate(frames)))
    assert restorer.batch == 2 and restorer.tile is None and sorted(out) == list(range(7))
    monkeypatch.setattr(model, "reconstruct", reconstruct)
    one = dict(WindowRestorer(model, padding="replicate").restore(enumerate(frames)))
    assert max(np.abs(out[c] - one[c]).max() for c in out) < 1e-5


def test_the_input_under_another_spelling_is_never_the_output(tmp_path, model_file, capsys):
    """On case-insensitive disks (macOS, Windows) `-o IN.MP4 --overwrite` named the input in.mp4 and replaced it; a
    hard link is the same file under another name here."""
    src = make_clip(tmp_path / "in.mp4", list(range(3)), Fraction(1, 25))
    os.link(src, tmp_path / "IN.MP4")
    before = src.read_bytes()
    base = ["restore", "--model", str(model_file), "--device", "cpu", "--quiet", "--overwrite"]
    assert main([*base, str(src), "-o", str(tmp_path / "IN.MP4")]) == 2
    assert "would overwrite the input" in capsys.readouterr().err and src.read_bytes() == before
    with pytest.raises(OutputError, match="is the input video"):  # the join's own check
        video_io.finalize_video([src], tmp_path / "IN.MP4", source=src, overwrite=True)
    assert src.read_bytes() == before


def test_frame_names_that_differ_only_in_case_are_refused_where_disks_ignore_case(tmp_path, model_file, capsys,
                                                                                 monkeypatch):
    """Frame1.png and frame1.png are one file on macOS's and Windows's disks; on Linux's, two."""
    src = tmp_path / "frames"
    src.mkdir()
    video_io.write_image(src / "Frame1.png", np.zeros((8, 8, 3), np.float32))
    video_io.write_image(src / "frame1.png", np.zeros((8, 8, 3), np.float32))
    args = ["restore", str(src), "--model", str(model_file), "--device", "cpu", "--quiet"]
    assert main([*args, "-o", str(tmp_path / "linux")]) == 0 and len(list((tmp_path / "linux").iterdir())) == 2
    monkeypatch.setattr(sys, "platform", "darwin")
    assert main([*args, "-o", str(tmp_path / "mac")]) == 2
    assert "would both be written as Frame1.png and frame1.png, one file on a disk that ignores case" in \
        capsys.readouterr().err


def test_overwrite_replaces_only_a_folder_of_frames(tmp_path, model_file, capsys):
    """`-o myvideos --overwrite` once deleted a folder of the user's videos to put the frames there."""
    src = make_clip(tmp_path / "in.mp4", list(range(3)), Fraction(1, 25))
    videos = tmp_path / "myvideos"
    videos.mkdir()
    (videos / "holiday.mp4").write_bytes(b"precious")
    args = ["restore", str(src), "--model", str(model_file), "--device", "cpu", "--quiet", "--overwrite"]
    assert main([*args, "-o", str(videos)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "holiday.mp4" in err and "not only PNG frames" in err
    assert (videos / "holiday.mp4").read_bytes() == b"precious"
    frames = tmp_path / "frames"
    assert main([*args, "-o", str(frames)]) == 0 and main([*args, "-o", str(frames)]) == 0  # its own output: replaced
    assert len(list(frames.iterdir())) == 3
    (tmp_path / "Makefile").write_text("all:")  # a file named like a folder output
    assert main([*args, "-o", str(tmp_path / "Makefile")]) == 2
    assert "is a file" in capsys.readouterr().err and (tmp_path / "Makefile").read_text() == "all:"
