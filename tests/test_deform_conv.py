"""The modulated deformable conv: backends against an independent float64 reference and against each other."""

from __future__ import annotations

import warnings

import pytest
import torch

from edvr.models.blocks import DCNPack
from edvr.ops import compiled, deform_conv
from edvr.ops.deform_conv import BackendUnavailableError, deform_conv2d_torch, torchvision_available


def reference_dcn(x, offset, mask, weight, bias, stride=1, padding=1, dilation=1):
    """Direct float64 evaluation of the definition: per tap, four bilinear corners, each outside corner counts 0."""
    n, c_in, h, w = x.shape
    c_out, _, kh, kw = weight.shape
    ho, wo = offset.shape[-2:]
    taps = kh * kw
    dg = offset.shape[1] // (2 * taps)
    cg = c_in // dg
    out = torch.zeros(n, c_out, ho, wo, dtype=torch.float64)
    oy = torch.arange(ho, dtype=torch.float64).view(-1, 1) * stride - padding
    ox = torch.arange(wo, dtype=torch.float64).view(1, -1) * stride - padding
    for g in range(dg):
        xg = x[:, g * cg:(g + 1) * cg].double()
        for k in range(taps):
            i, j = divmod(k, kw)
            py = oy + i * dilation + offset[:, g * 2 * taps + 2 * k].double()  # (N, Ho, Wo)
            px = ox + j * dilation + offset[:, g * 2 * taps + 2 * k + 1].double()
            y0, x0 = torch.floor(py), torch.floor(px)
            sampled = torch.zeros(n, cg, ho, wo, dtype=torch.float64)
            for yy, wy in ((y0, 1 - (py - y0)), (y0 + 1, py - y0)):
                for xx, wx in ((x0, 1 - (px - x0)), (x0 + 1, px - x0)):
                    inside = (yy >= 0) & (yy <= h - 1) & (xx >= 0) & (xx <= w - 1)
                    idx = (yy.clamp(0, h - 1) * w + xx.clamp(0, w - 1)).long().view(n, 1, -1).expand(n, cg, -1)
                    vals = xg.reshape(n, cg, h * w).gather(2, idx).view(n, cg, ho, wo)
                    sampled += vals * (wy * wx * inside).unsqueeze(1)
            sampled = sampled * mask[:, g * taps + k].double().unsqueeze(1)
            out += torch.einsum("oc,nchw->nohw", weight[:, g * cg:(g + 1) * cg, i, j].double(), sampled)
    if bias is not None:
        out += bias.double().view(1, -1, 1, 1)
    return out


def make_inputs(n=2, c_in=8, c_out=6, h=9, w=11, dg=2, k=3, stride=1, padding=1, dilation=1, scale=3.0,
                dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    ho = (h + 2 * padding - dilation * (k - 1) - 1) // stride + 1
    wo = (w + 2 * padding - dilation * (k - 1) - 1) // stride + 1
    x = torch.randn(n, c_in, h, w, generator=g, dtype=dtype)
    # Offsets of a few pixels: many samples land outside the image and at fractional positions.
    offset = torch.randn(n, 2 * dg * k * k, ho, wo, generator=g, dtype=dtype) * scale
    offset[0, :4, 0, 0] = torch.tensor([1.0, -2.0, 0.5, -0.25], dtype=dtype)  # exact integers and halves too
    mask = torch.rand(n, dg * k * k, ho, wo, generator=g, dtype=dtype)
    weight = torch.randn(c_out, c_in, k, k, generator=g, dtype=dtype) / 5
    bias = torch.randn(c_out, generator=g, dtype=dtype)
    return x, offset, mask, weight, bias


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(),
        dict(dg=1, c_in=4),
        dict(dg=4, stride=2, h=12, w=10),
        dict(dilation=2, padding=2),
        dict(padding=0, scale=0.0),
        dict(n=1, h=1, w=1, scale=1.0),
    ],
)
def test_torch_backend_matches_reference_float64(kwargs):
    x, offset, mask, weight, bias = make_inputs(**kwargs)
    stride, padding, dilation = (kwargs.get(k, d) for k, d in (("stride", 1), ("padding", 1), ("dilation", 1)))
    ours = deform_conv2d_torch(x, offset, mask, weight, bias, stride=stride, padding=padding, dilation=dilation)
    ref = reference_dcn(x, offset, mask, weight, bias, stride, padding, dilation)
    assert ours.shape == ref.shape
    assert (ours - ref).abs().max().item() < 1e-10


def test_torch_backend_gradients_match_reference_float64():
    inputs = [t.clone().requires_grad_(True) for t in make_inputs(n=1, c_in=4, c_out=3, h=6, w=7, dg=2, scale=1.5)]
    torch.manual_seed(0)
    grad_out = torch.randn(1, 3, 6, 7, dtype=torch.float64)
    ours = torch.autograd.grad((deform_conv2d_torch(*inputs) * grad_out).sum(), inputs)
    ref = torch.autograd.grad((reference_dcn(*inputs) * grad_out).sum(), inputs)
    for name, a, b in zip(("x", "offset", "mask", "weight", "bias"), ours, ref):
        assert (a - b).abs().max().item() < 1e-9, name


def test_gradcheck_torch_backend():
    inputs = [t.clone().requires_grad_(True) for t in make_inputs(n=1, c_in=2, c_out=2, h=4, w=5, dg=1, scale=0.7)]
    assert torch.autograd.gradcheck(lambda *a: deform_conv2d_torch(*a), inputs, eps=1e-6, atol=1e-5)


def test_row_chunks_give_the_same_result():
    x, offset, mask, weight, bias = make_inputs(h=13, w=7, dtype=torch.float32)
    whole = deform_conv2d_torch(x, offset, mask, weight, bias)
    chunked = deform_conv2d_torch(x, offset, mask, weight, bias, chunk_bytes=1)  # one output row per chunk
    assert torch.equal(whole, chunked) or (whole - chunked).abs().max().item() < 1e-6


def test_float32_close_to_reference():
    x, offset, mask, weight, bias = make_inputs(dtype=torch.float32)
    ref = reference_dcn(x, offset, mask, weight, bias)
    assert (deform_conv2d_torch(x, offset, mask, weight, bias).double() - ref).abs().max().item() < 1e-4


# ------------------------------------------------------------------------------------ the compiled backend
COMPILED_CASES = [dict(), dict(dilation=2, padding=2), dict(dg=4, stride=2, h=12, w=10), dict(n=1, h=1, w=1, scale=1.0)]


def compiled_sizes() -> int:
    return compiled.variants(deform_conv._sample_taps)


def test_half_precision_samples_where_float32_does():
    # Under bf16/fp16 the features are rounded, the sampling positions must not be: in bf16 a normalised coordinate
    # near 1 has steps of 2^-8, 2.5 px on a 1280-pixel-wide map.
    x, offset, mask, weight, bias = make_inputs(n=1, c_in=4, c_out=4, h=5, w=1280, dg=1, scale=0.3,
                                                dtype=torch.float32)
    x = x.bfloat16().float()  # values bf16 holds exactly: only the positions can differ
    exact = reference_dcn(x, offset, mask, weight, bias).float()
    out = deform_conv2d_torch(x.bfloat16(), offset.bfloat16(), mask.bfloat16(), weight.bfloat16(),
                              bias.bfloat16()).float()
    ours32 = deform_conv2d_torch(x, offset.bfloat16().float(), mask.bfloat16().float(), weight.bfloat16().float(),
                                 bias.bfloat16().float())
    scale = exact.abs().mean()
    assert (out - ours32).abs().mean() < 0.01 * scale  # bf16 rounding of values and products only
    assert (ours32 - exact).abs().mean() < 0.05 * scale  # (the reference uses the unrounded offsets and weights)


@pytest.mark.parametrize("kwargs", COMPILED_CASES)
def test_compiled_backend_matches_reference_float64(kwargs):
    x, offset, mask, weight, bias = make_inputs(**kwargs)
    stride, padding, dilation = (kwargs.get(k, d) for k, d in (("stride", 1), ("padding", 1), ("dilation", 1)))
    with torch.no_grad():
        ours = deform_conv.deform_conv2d_compiled(x, offset, mask, weight, bias, stride=stride, padding=padding,
                                                  dilation=dilation)
    assert compiled.error() is None, compiled.error()
    ref = reference_dcn(x, offset, mask, weight, bias, stride, padding, dilation)
    assert ours.shape == ref.shape
    assert (ours - ref).abs().max().item() < 1e-10


def test_compiled_backend_float32_channels_last_and_row_chunks():
    """Inputs as EDVR's convs produce them (channels_last, float32), in chunks of 2 rows whose last one overlaps."""
    x, offset, mask, weight, bias = (t.float() for t in make_inputs(n=2, h=7, w=12, scale=2.0))
    x, offset, mask = (t.contiguous(memory_format=torch.channels_last) for t in (x, offset, mask))
    ref = reference_dcn(x, offset, mask, weight, bias)
    before = compiled_sizes()
    with torch.inference_mode():
        ours = deform_conv.deform_conv2d_compiled(x, offset, mask, weight, bias, chunk_bytes=2 * 8 * 9 * 12 * 4)
    assert compiled_sizes() == before + 1  # it really ran compiled
    assert (ours.double() - ref).abs().max().item() < 1e-5


def test_compiled_backend_offsets_far_outside_or_not_finite():
    """Samples at +-inf, 1e30 or NaN count as outside the image (0): the result equals that of offsets that put
    those taps just far enough out, and no index leaves the input (no per-corner bounds check in the kernel)."""
    x, offset, mask, weight, bias = make_inputs()
    wild, far = offset.clone(), offset.clone()
    for i, value in enumerate((float("inf"), float("-inf"), 1e30, -1e30, float("nan"))):
        wild[:, 2 * i::18] = value  # both coordinates of tap i in every group
        far[:, 2 * i::18] = 1e4 if value != value or value > 0 else -1e4
    with torch.no_grad():
        got = deform_conv.deform_conv2d_compiled(x, wild, mask, weight, bias)
        expected = deform_conv.deform_conv2d_compiled(x, far, mask, weight, bias)
    assert torch.isfinite(got).all()
    assert (got - expected).abs().max().item() < 1e-12
    assert (expected - reference_dcn(x, far, mask, weight, bias)).abs().max().item() < 1e-10


def test_compiled_backend_falls_back_where_it_cannot_run(monkeypatch):
    """Autograd, a failing compiler, CPU autocast, too many sizes: the torch backend's result, and one warning for
    the compiler."""
    inputs = [t.clone().requires_grad_(True) for t in make_inputs(n=1, c_in=4, c_out=3, h=6, w=7, dg=2)]
    got = deform_conv.deform_conv2d_compiled(*inputs)
    assert torch.equal(got, deform_conv2d_torch(*inputs))
    assert all(g is not None for g in torch.autograd.grad(got.sum(), inputs))

    monkeypatch.setattr(compiled, "_state", {"fns": {}, "error": None})

    def broken_compiler(fn):
        def run(*args):
            raise RuntimeError("InvalidCxxCompiler: No working C++ compiler found\n(details)")
        return run

    monkeypatch.setattr(compiled, "_compile", broken_compiler)
    x, offset, mask, weight, bias = make_inputs(n=1, h=5, w=6)
    with torch.no_grad(), pytest.warns(RuntimeWarning, match="compiled CPU kernels cannot run here.*No working C"):
        got = deform_conv.deform_conv2d_compiled(x, offset, mask, weight, bias)
    assert torch.equal(got, deform_conv2d_torch(x, offset, mask, weight, bias))
    assert "No working C++ compiler" in compiled.error()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once: later calls go to the torch backend silently
        deform_conv.deform_conv2d_compiled(x, offset, mask, weight, bias)

    monkeypatch.setattr(compiled, "_state", {"fns": {}, "error": None})
    x32, offset32, mask32, weight32, bias32 = (t.float() for t in (x, offset, mask, weight, bias))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):  # the product's dtype would not be ours
        deform_conv.deform_conv2d_compiled(x32, offset32, mask32, weight32, bias32)
    monkeypatch.setattr(compiled, "MAX_VARIANTS", 0)
    with torch.no_grad():
        assert torch.equal(deform_conv.deform_conv2d_compiled(x, offset, mask, weight, bias),
                           deform_conv2d_torch(x, offset, mask, weight, bias))
    assert compiled._state == {"fns": {}, "error": None}  # nothing was compiled


def test_compiled_backend_is_cpu_only():
    assert deform_conv.get_backend("compiled") is deform_conv.deform_conv2d_compiled
    assert deform_conv.resolve_backend("compiled", "cpu") == "compiled"
    with pytest.raises(BackendUnavailableError, match="CPU only"):
        deform_conv.resolve_backend("compiled", "cuda")
    with pytest.raises(BackendUnavailableError, match="no Apple MPS kernel"):
        deform_conv.resolve_backend("torchvision", "mps")
    assert deform_conv.resolve_backend("auto", "mps") == "torch"


@pytest.mark.skipif(not torchvision_available(), reason="torchvision not installed beside this torch")
def test_torchvision_backend_agrees_forward_and_backward():
    inputs = [t.clone().requires_grad_(True) for t in make_inputs(n=2, c_in=8, c_out=4, h=8, w=9, dg=2)]
    fn = deform_conv.get_backend("torchvision")
    a = fn(*inputs)
    b = deform_conv2d_torch(*inputs)
    assert (a - b).abs().max().item() < 1e-10
    ga = torch.autograd.grad(a.sum(), inputs)
    gb = torch.autograd.grad(b.sum(), inputs)
    for name, u, v in zip(("x", "offset", "mask", "weight", "bias"), ga, gb):
        assert (u - v).abs().max().item() < 1e-8, name


@pytest.mark.skipif(torchvision_available(), reason="torchvision is installed here")
def test_missing_torchvision_fails_at_once_with_the_fix():
    with pytest.raises(BackendUnavailableError, match="pip install torchvision"):
        deform_conv.resolve_backend("torchvision", "cpu")
    from edvr.models.edvr import EDVR

    model = EDVR(num_feat=8, num_extract_block=1, num_reconstruct_block=1, deformable_groups=2, dcn_backend="torchvision")
    with pytest.raises(BackendUnavailableError):
        model(torch.rand(1, 5, 3, 8, 8))


def test_backend_selection_order(monkeypatch):
    monkeypatch.delenv(deform_conv.ENV_VAR, raising=False)
    assert deform_conv.requested_backend() == "auto"
    assert deform_conv.resolve_backend("auto", "cpu") == "torch"
    monkeypatch.setenv(deform_conv.ENV_VAR, "torch")
    assert deform_conv.requested_backend() == "torch"
    with deform_conv.use_backend("torchvision"):
        assert deform_conv.requested_backend() == "torchvision"  # context beats the environment
        assert deform_conv.requested_backend("torch") == "torch"  # the argument beats both
    with pytest.raises(ValueError, match="unknown deformable-conv backend"):
        deform_conv.requested_backend("cuda-magic")
    monkeypatch.setenv(deform_conv.ENV_VAR, "nope")
    with pytest.raises(ValueError, match="nope"):
        deform_conv.requested_backend()


def test_large_offset_warning_once_per_pack_and_names_the_layer():
    pack = DCNPack(8, deformable_groups=2)
    pack.layer_name = "pcd_align.dcn_pack.l1"
    torch.nn.init.constant_(pack.conv_offset.bias, 80.0)  # mean |offset| = 80 > 50
    x = torch.rand(1, 8, 6, 6)
    pack.train()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pack(x, x)
        pack(x, x)
    msgs = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert len(msgs) == 1 and "pcd_align.dcn_pack.l1" in msgs[0] and "80.0" in msgs[0]
    twin = DCNPack(8, deformable_groups=2)  # another model's pack of the same name still warns
    twin.layer_name = pack.layer_name
    twin.load_state_dict(pack.state_dict())
    with pytest.warns(RuntimeWarning, match="pcd_align.dcn_pack.l1"):
        twin.train()(x, x)


def test_base_grid_cached_in_inference_mode_still_works_with_autograd():
    x, offset, mask, weight, bias = make_inputs(h=5, w=6, dtype=torch.float32)
    with torch.inference_mode():
        expected = deform_conv2d_torch(x, offset, mask, weight, bias)
    leaves = [t.clone().requires_grad_(True) for t in (x, offset, mask, weight, bias)]
    out = deform_conv2d_torch(*leaves)
    out.sum().backward()
    assert (out.detach() - expected).abs().max().item() < 1e-5
    assert all(t.grad is not None for t in leaves)


def test_base_grid_makes_no_float64_tensor_on_the_device(monkeypatch):
    """Apple MPS has no float64: the grid is computed in float64 on the CPU and moved once rounded."""
    from edvr.ops import deform_conv as dc

    made = []
    for name in ("arange", "tensor"):
        real = getattr(torch, name)

        def spy(*args, _real=real, **kwargs):
            t = _real(*args, **kwargs)
            made.append((t.dtype, t.device.type))
            return t

        monkeypatch.setattr(torch, name, spy)
    base, scale = dc._make_base_grid(12, 20, 12, 20, 3, 3, 1, 1, 1, torch.device("meta"), torch.float32)
    assert (base.device.type, base.dtype) == (scale.device.type, scale.dtype) == ("meta", torch.float32)
    assert made and not [m for m in made if m == (torch.float64, "meta")]
    monkeypatch.undo()
    on_cpu, _ = dc._make_base_grid(12, 20, 12, 20, 3, 3, 1, 1, 1, torch.device("cpu"), torch.float32)
    assert on_cpu.shape == base.shape
