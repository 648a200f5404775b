"""ONNX export: a tiny EDVR exports with its pure-PyTorch deformable convs and onnxruntime matches PyTorch."""

from __future__ import annotations

import importlib.util
import warnings

import numpy as np
import pytest
import torch

from edvr.errors import InputError
from edvr.models.edvr import EDVR

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("onnx") is None or importlib.util.find_spec("onnxruntime") is None,
    reason="onnx / onnxruntime not installed (pip install 'edvr[export]')",
)


def tiny_model() -> EDVR:
    torch.manual_seed(0)
    model = EDVR(num_feat=8, num_extract_block=1, num_reconstruct_block=1, deformable_groups=2).eval()
    for m in model.dcn_modules():  # offsets of a pixel or so, so GridSample really samples between pixels
        torch.nn.init.normal_(m.conv_offset.weight, std=0.05)
    return model


def test_tiny_model_exports_and_onnxruntime_matches_pytorch(tmp_path):
    from edvr.export import export_onnx, run_onnx

    model = tiny_model().train()
    model.set_dcn_backend("compiled")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's tracer warnings
        result = export_onnx(model, tmp_path / "tiny.onnx", height=24, width=32, dynamic=True)
    # The caller's model is left as it was (the export once switched it to eval mode and its backend to "torch").
    assert model.training and model.dcn_backend == "compiled"
    assert {m.backend for m in model.dcn_modules()} == {"compiled"}
    model.eval().set_dcn_backend("torch")
    assert result.path.is_file() and not list(tmp_path.glob(".*partial"))
    assert result.max_abs_diff is not None and result.max_abs_diff < 1e-4
    # Dynamic batch, height and width: another shape runs and still matches the PyTorch model.
    x = torch.rand(2, 5, 3, 20, 28, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = model(x).numpy()
    got = run_onnx(result.path, x)
    assert got.shape == expected.shape == (2, 3, 80, 112)
    assert np.abs(got - expected).max() < 1e-4


def test_row_chunks_do_not_freeze_the_exported_size(tmp_path, monkeypatch):
    # Large frames are sampled in chunks of rows, and the x4 tail runs in bands of rows; an exported graph must keep
    # neither the example's chunk nor its band bounds.
    from edvr.export import export_onnx, run_onnx
    from edvr.models import edvr as edvr_module
    from edvr.ops import deform_conv

    defaults = dict(deform_conv.deform_conv2d_torch.__kwdefaults__, chunk_bytes=4096)  # several chunks at 24x32
    monkeypatch.setattr(deform_conv.deform_conv2d_torch, "__kwdefaults__", defaults)
    monkeypatch.setattr(edvr_module, "TAIL_MIN_ROWS", 1)
    model = tiny_model()
    model.tail_band_pixels = 64  # bands of 2 rows at 24x32 outside the exporter
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = export_onnx(model, tmp_path / "tiny.onnx", height=24, width=32, dynamic=True)
    x = torch.rand(1, 5, 3, 16, 20, generator=torch.Generator().manual_seed(2))  # fewer rows than exported
    with torch.no_grad():
        expected = model(x).numpy()
    assert np.abs(run_onnx(result.path, x) - expected).max() < 1e-4


def test_sizes_must_fit_the_model(tmp_path):
    from edvr.export import export_onnx

    with pytest.raises(InputError, match="multiples of 4"):
        export_onnx(tiny_model(), tmp_path / "x.onnx", height=30, width=32)
    assert not (tmp_path / "x.onnx").exists()
    for kwargs, message in [({"height": 0}, "positive multiples"), ({"batch": 0}, "--batch 0"),
                            ({"opset": 99}, "--opset 99"), ({"opset": 15}, "--opset 15")]:
        with pytest.raises(InputError, match=message):
            export_onnx(tiny_model(), tmp_path / "x.onnx", **{"height": 32, "width": 32, **kwargs})


def test_export_never_replaces_a_file_unasked(tmp_path, capsys, monkeypatch):
    """`edvr export -m m.safetensors -o m.safetensors` once replaced the weights with the ONNX graph."""
    from edvr.cli import main
    from edvr.models.convert import save_checkpoint

    weights = tmp_path / "m.safetensors"
    model = tiny_model()
    save_checkpoint(model.state_dict(), model.config, weights)
    before = weights.read_bytes()
    other = tmp_path / "other.onnx"
    other.write_bytes(b"keep")
    cases = [(weights, [], "is the model being exported"), (weights, ["--overwrite"], "being exported"),
             (other, [], "already exists"), (tmp_path, [], "is a folder")]
    for out, extra, message in cases:
        assert main(["export", "-m", str(weights), "-o", str(out), "--no-check", *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and message in err, err
    assert weights.read_bytes() == before and other.read_bytes() == b"keep"
    # A bare name found in the weights folder is the same file too.
    monkeypatch.setenv("EDVR_WEIGHTS_DIR", str(tmp_path))
    monkeypatch.chdir(tmp_path.parent)
    assert main(["export", "-m", weights.name, "-o", str(weights), "--no-check", "--overwrite"]) == 2
    assert "is the model being exported" in capsys.readouterr().err and weights.read_bytes() == before
