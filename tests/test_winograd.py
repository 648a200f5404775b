"""Winograd F(4x4, 3x3) convs (CPU inference on the compiled backend) against PyTorch's direct conv."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from edvr.models import blocks
from edvr.ops import compiled, winograd


@pytest.fixture
def everywhere(monkeypatch):
    """Winograd on any map size (whatever EDVR_WINOGRAD says), bands of 1-2 tile rows, fresh compiled variants."""
    monkeypatch.setattr(compiled, "_state", {"fns": {}, "error": None})
    monkeypatch.setattr(winograd, "ENABLED", True)
    monkeypatch.setattr(winograd, "MIN_PIXELS", 0)
    monkeypatch.setattr(winograd, "BAND_VALUES", 128)


def inputs(*channels: int) -> list[torch.Tensor]:
    # 10x14: 3x4 tiles, the last ones partly outside; in bands of 2 (16 outputs: the second band overlaps the
    # first) or 1 tile row (54 and 64 outputs), the last band clipped to the map.
    return [torch.randn(1, c, 10, 14).contiguous(memory_format=torch.channels_last) for c in channels]


def test_model_convs_equal_the_direct_conv(everywhere):
    """Plain conv, a split-weight conv over two maps (products summed before one output transform), the DCN
    offset conv's two outputs (offsets, mask) and the up-conv in pixel-shuffle order: the direct conv's results
    within float32 rounding, and exactly the direct conv outside ``winograd.enabled``."""
    torch.manual_seed(0)
    a, b = inputs(16, 16)
    conv = blocks.Conv2d(16, 16, 3, 1, 1)
    cat_conv = blocks.Conv2d(32, 16, 3, 1, 1)
    pack = blocks.DCNPack(16, deformable_groups=2)
    torch.nn.init.normal_(pack.conv_offset.weight, std=0.1)
    up = blocks.Conv2d(16, 64, 3, 1, 1)
    with torch.inference_mode():
        direct = (F.conv2d(a, conv.weight, conv.bias, padding=1),
                  F.conv2d(torch.cat((a, b), 1), cat_conv.weight, cat_conv.bias, padding=1),
                  pack.offsets_and_mask(a), blocks.conv_pixel_shuffle(up, a))
        assert torch.equal(conv(a), direct[0])
        with winograd.enabled():
            fast = (conv(a), blocks.split_conv(cat_conv, (a, b)), pack.offsets_and_mask(a),
                    blocks.conv_pixel_shuffle(up, a))
    assert compiled.variants(winograd._output_tiles) == 3  # 16, 54 (offsets + mask, split after) and 64 outputs
    for got, want in zip((fast[0], fast[1], *fast[2], fast[3]), (direct[0], direct[1], *direct[2], direct[3])):
        # float32 rounding: a few 1e-5 at most at the offsets' scale (values up to ~3)
        torch.testing.assert_close(got, want, rtol=0, atol=1e-5 * max(1, want.abs().max().item()))
    assert fast[0].is_contiguous(memory_format=torch.channels_last) and fast[0].shape == (1, 16, 10, 14)
    assert fast[2][0].shape == (1, 36, 10, 14) and fast[2][1].shape == (1, 18, 10, 14)


def test_transformed_weights_follow_in_place_changes():
    conv = blocks.Conv2d(16, 16, 3, 1, 1)
    u = winograd.transformed(conv.weight)
    assert winograd.transformed(conv.weight) is u  # kept while the weights are unchanged
    with torch.no_grad():
        conv.weight.mul_(2)  # as an optimizer step or load_state_dict would
    torch.testing.assert_close(winograd.transformed(conv.weight), 2 * u, rtol=1e-6, atol=1e-7)


def test_where_it_does_not_apply(everywhere, monkeypatch):
    (x,) = inputs(16)
    conv = blocks.Conv2d(16, 16, 3, 1, 1)
    assert not winograd.applies(conv, x)  # outside winograd.enabled
    with winograd.enabled():
        assert winograd.applies(conv, x)
        assert not winograd.applies(blocks.Conv2d(16, 16, 3, 2, 1), x)  # strided
        assert not winograd.applies(blocks.Conv2d(16, 16, 1), x)
        assert not winograd.applies(conv, torch.cat((x, x)))  # batch 2
        assert not winograd.applies(conv, x.contiguous())  # not channels_last
        assert not winograd.applies(blocks.Conv2d(3, 16, 3, 1, 1), x[:, :3].contiguous(
            memory_format=torch.channels_last))  # too few input channels
        monkeypatch.setattr(winograd, "MIN_PIXELS", 141)
        assert not winograd.applies(conv, x)  # a small map
