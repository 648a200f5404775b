"""Export a whole EDVR to ONNX (``edvr export``), with its deformable convs in pure PyTorch ops.

The ``torch`` deformable-conv backend is made of ``grid_sample`` (ONNX ``GridSample``, opset >= 16), element-wise
ops and matrix products, so the exported graph runs in any ONNX runtime without custom operators. The graph takes
``(B, T, C, H, W)`` float32 frames in [0, 1] with H and W multiples of the model's multiple (4, or 16 for HR input:
pad before, crop after) and returns ``(B, C, scale*H, scale*W)``. With ``dynamic`` B, H and W are free.

After the export, onnxruntime (when installed) runs the file on the example input and the largest difference from
PyTorch is reported.
"""

from __future__ import annotations

import argparse
import copy
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from edvr.errors import InputError, OutputError
from edvr.models.edvr import EDVR

DEFAULT_OPSET = 17  # GridSample needs 16; 17 is the newest the TorchScript exporter fully supports
MAX_OPSET = 20  # the TorchScript exporter's newest (torch 2.x)


@dataclass
class ExportResult:
    path: Path
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    seconds: float
    max_abs_diff: float | None  # onnxruntime vs PyTorch on the example input; None without onnxruntime


class _Exportable(torch.nn.Module):
    """The model with the deformable convs on the pure-PyTorch backend and no padding logic in the graph."""

    def __init__(self, model: EDVR) -> None:
        super().__init__()
        self.model = model

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        m = self.model
        feats = [m.encode(frames[:, i]) for i in range(m.config.num_frames)]
        return m.reconstruct(m.align_and_fuse(feats), frames[:, m.center_frame_idx])


def export_onnx(
    model: EDVR,
    path: str | Path,
    *,
    height: int = 64,
    width: int = 64,
    batch: int = 1,
    dynamic: bool = False,
    opset: int = DEFAULT_OPSET,
    check: bool = True,
    seed: int = 0,
    overwrite: bool = False,
) -> ExportResult:
    """Write ``model`` to ``path`` as ONNX; returns shapes, time and the onnxruntime parity (if ``check``).

    An existing file is replaced only with ``overwrite``."""
    if not 16 <= opset <= MAX_OPSET:
        raise InputError(f"--opset {opset}: the deformable convs need GridSample (opset 16 or later) and this "
                         f"exporter writes up to opset {MAX_OPSET}")
    mult = model.config.multiple
    if min(height, width) < mult or height % mult or width % mult:
        raise InputError(f"--height/--width must be positive multiples of {mult} for this model (got {height}x{width});"
                         " the exported graph expects padded frames")
    if batch < 1:
        raise InputError(f"--batch {batch}: give 1 or more")
    path = Path(path).expanduser()
    if path.is_dir():
        raise OutputError(f"{path}: is a folder; give a file name such as {path / 'model.onnx'}")
    if path.exists() and not overwrite:
        raise OutputError(f"{path}: already exists; pass --overwrite or choose another name")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"{path.parent}: cannot create the folder ({e.strerror}); choose another output") from None
    model = copy.deepcopy(model).eval().cpu()  # the caller's model keeps its mode, device and backend
    model.set_dcn_backend("torch")
    cfg = model.config
    g = torch.Generator().manual_seed(seed)
    example = torch.rand(batch, cfg.num_frames, cfg.num_in_ch, height, width, generator=g)
    wrapper = _Exportable(model).eval()
    dynamic_axes = None
    if dynamic:
        dynamic_axes = {"frames": {0: "batch", 3: "height", 4: "width"}, "restored": {0: "batch", 2: "out_height",
                                                                                        3: "out_width"}}
    tmp = path.with_name(f".{path.name}.partial")
    t0 = time.perf_counter()
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)  # Python-side shape logic; tests run other sizes
            expected = wrapper(example)
            torch.onnx.export(
                wrapper, (example,), str(tmp), input_names=["frames"], output_names=["restored"],
                dynamic_axes=dynamic_axes, opset_version=opset, do_constant_folding=True, dynamo=False,
            )
        tmp.replace(path)  # nothing half-written where the finished file is expected
    except OSError as e:
        raise OutputError(f"{path}: cannot write ({e.strerror}); check the folder and free space") from None
    finally:
        tmp.unlink(missing_ok=True)
    seconds = time.perf_counter() - t0
    diff = None
    if check:
        outputs = run_onnx(path, example)
        diff = float((torch.from_numpy(outputs) - expected).abs().max())
    return ExportResult(path, tuple(example.shape), tuple(expected.shape), seconds, diff)


def run_onnx(path: str | Path, frames: torch.Tensor):
    """Run an exported file with onnxruntime on CPU; returns the output as a numpy array."""
    try:
        import onnxruntime as ort
    except ImportError as e:
        raise InputError("onnxruntime is not installed: pip install 'edvr[export]' (or onnxruntime)") from e
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"frames": frames.numpy()})[0]


# ------------------------------------------------------------------------------------------------ CLI
def add_arguments(parser: argparse.ArgumentParser, name: str) -> None:
    parser.add_argument("--model", "-m", required=True, help="a named model (edvr models) or a checkpoint file")
    parser.add_argument("-o", "--output", required=True, help="the .onnx file to write")
    parser.add_argument("--frames", type=int, default=None,
                        help="frames per window; must equal the model's num_frames (default: the model's)")
    parser.add_argument("--height", type=int, default=64, help="example input height (input pixels; default 64)")
    parser.add_argument("--width", type=int, default=64, help="example input width (input pixels; default 64)")
    parser.add_argument("--batch", type=int, default=1, help="example batch size (default 1)")
    parser.add_argument("--dynamic", action="store_true", help="free batch, height and width in the graph")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET,
                        help=f"ONNX opset, 16 to {MAX_OPSET} (default {DEFAULT_OPSET})")
    parser.add_argument("--no-check", action="store_true", help="skip the onnxruntime parity check")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file")


def run(args: argparse.Namespace) -> int:
    from edvr.models.zoo import load_model

    model = load_model(args.model, device="cpu", dcn_backend="torch")
    out, source = Path(args.output).expanduser(), getattr(model, "source_path", None)
    # samefile: also the file found by a bare name in the weights folder, or spelt in another case on macOS/Windows
    if source is not None and out.exists() and os.path.samefile(out, source):
        raise OutputError(f"{args.output}: is the model being exported; choose another name")
    if args.frames is not None and args.frames != model.config.num_frames:
        raise InputError(f"--frames {args.frames}: this model takes {model.config.num_frames} frames per window")
    check = not args.no_check
    if check:
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            print("onnxruntime not installed: skipping the parity check (pip install 'edvr[export]')")
            check = False
    result = export_onnx(model, args.output, height=args.height, width=args.width, batch=args.batch,
                         dynamic=args.dynamic, opset=args.opset, check=check, overwrite=args.overwrite)
    size_mb = result.path.stat().st_size / 2**20
    print(f"wrote {result.path} ({size_mb:.1f} MB, opset {args.opset}{', dynamic batch/H/W' if args.dynamic else ''}) "
          f"in {result.seconds:.1f} s: input {list(result.input_shape)} -> output {list(result.output_shape)}")
    if result.max_abs_diff is not None:
        verdict = "OK" if result.max_abs_diff <= 1e-4 else "MISMATCH"
        print(f"onnxruntime parity: max |onnxruntime - PyTorch| = {result.max_abs_diff:.2e} ({verdict}, tolerance 1e-4)")
        if verdict != "OK":
            return 1
    return 0
