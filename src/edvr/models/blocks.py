"""The building blocks of EDVR: residual block, DCN pack, PCD alignment, TSA fusion, PreDeblur.

Parameter names follow BasicSR's ``edvr_arch`` so that its checkpoints load without renaming; conversions from the
original EDVR repository and mmagic live in ``convert.py``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from edvr.ops import compiled, deform_conv, winograd

# LeakyReLU slope of every activation in EDVR except the ReLU inside residual blocks.
LRELU_SLOPE = 0.1
# The reference warns when the mean |offset| of a DCN exceeds this: a known sign that training is diverging.
OFFSET_WARN_THRESHOLD = 50.0
LEVELS = ("l1", "l2", "l3")  # pyramid levels, finest first (the order of a frame's feature list)


def lrelu(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, LRELU_SLOPE)


def lrelu_(x: torch.Tensor) -> torch.Tensor:
    """:func:`lrelu` in place for fresh intermediates (conv outputs) at inference: saves a pass over memory. While
    autograd records, out of place: callers go on to modify the result in place (``.add_``), which autograd would
    refuse on the saved result of an in-place activation."""
    if torch.is_grad_enabled() and x.requires_grad:
        return F.leaky_relu(x, LRELU_SLOPE)
    return F.leaky_relu_(x, LRELU_SLOPE)


class Conv2d(nn.Conv2d):
    """``nn.Conv2d`` (same parameters, same results up to rounding) that runs with Winograd's F(4x4, 3x3) where
    :func:`edvr.ops.winograd.applies`: CPU inference on the ``compiled`` backend, 3x3 convs over large maps."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = winograd_conv(self, [(x, 0)], self.bias)
        return super().forward(x) if out is None else out[0]


def winograd_conv(conv: nn.Conv2d, parts: list[tuple[torch.Tensor, int]], bias: torch.Tensor | None,
                  split: tuple[int, ...] | None = None, order: Callable[[torch.Tensor], torch.Tensor] | None = None,
                  ) -> list[torch.Tensor] | None:
    """The sum over ``(x, start)`` in ``parts`` of the contributions of ``conv``'s input channels ``[start, start +
    x.shape[1])``, plus ``bias``, by :func:`edvr.ops.winograd.conv2d`; None where Winograd does not apply here.
    ``order``: a permutation of the weight's output channels (``bias`` is given in that order already)."""
    if not all(winograd.applies(conv, x) for x, _ in parts):
        return None
    u = winograd.transformed(conv.weight, "" if order is None else order.__name__, order)
    return winograd.conv2d([(x, u[:, start:start + x.shape[1]]) for x, start in parts], bias, split)


def split_conv(conv: nn.Conv2d, parts: tuple[torch.Tensor, ...], bias: bool = True) -> torch.Tensor:
    """``conv(torch.cat(parts, dim=1))`` computed as a sum of convs over the input-channel blocks of its weight.

    By linearity the two are equal (up to rounding); the split form needs no concatenated copy, and a part that
    is the same in many calls (a frame's features, the reference frame) can be computed once and reused. With
    Winograd the products of the parts are summed before the one output transform.
    """
    starts = [sum(p.shape[1] for p in parts[:i]) for i in range(len(parts))]
    fast = winograd_conv(conv, list(zip(parts, starts)), conv.bias if bias else None)
    if fast is not None:
        return fast[0]
    out = None
    for i, (part, start) in enumerate(zip(parts, starts)):
        term = conv_part(conv, part, start, bias=bias and i == 0)
        out = term if out is None else out.add_(term)
    return out


def conv_part(conv: nn.Conv2d, x: torch.Tensor, start: int, *, bias: bool) -> torch.Tensor:
    """The contribution of input channels ``[start, start + x.shape[1])`` of ``conv`` (with its bias if asked)."""
    fast = winograd_conv(conv, [(x, start)], conv.bias if bias else None)
    if fast is not None:
        return fast[0]
    weight = conv.weight[:, start:start + x.shape[1]]
    return F.conv2d(x, weight, conv.bias if bias else None, conv.stride, conv.padding, conv.dilation, conv.groups)


def conv_pixel_shuffle(conv: nn.Conv2d, x: torch.Tensor, fast: bool = False) -> torch.Tensor:
    """``lrelu(pixel_shuffle(conv(x), 2))`` for a conv with ``4*C`` outputs, returned channels_last.

    The conv's output channels are permuted from pixel_shuffle's order (c, i, j) to (i, j, c), so that in
    channels_last memory the shuffle moves contiguous runs of 2C values instead of gathering single ones with a
    stride of 4 (F.pixel_shuffle on channels_last input ran ~4x slower than this copy here). A permutation of
    output channels changes no value: the result equals the plain form exactly. ``fast`` (CPU inference where
    :func:`edvr.ops.compiled.eligible` holds): the activation and the shuffle as one compiled pass, same numbers
    (a 720p map: 19 ms against 36 ms for the activation in place and the copy).
    """
    bias = None if conv.bias is None else _shuffle_order(conv.bias)
    y = winograd_conv(conv, [(x, 0)], bias, order=_shuffle_order)
    if y is None:
        y = F.conv2d(x, _shuffle_order(conv.weight), bias, conv.stride, conv.padding)  # (N, (i, j, c), h, w)
    else:
        y = y[0]
    out = compiled.run(_lrelu_shuffle, y) if fast else None
    return _shuffle(lrelu_(y)) if out is None else out


def _shuffle_order(t: torch.Tensor) -> torch.Tensor:
    """A conv's weight or bias with its output channels in the order (i, j, c) instead of (c, i, j)."""
    return t.unflatten(0, (t.shape[0] // 4, 4)).transpose(0, 1).flatten(0, 1)


def _shuffle(y: torch.Tensor) -> torch.Tensor:
    """``(N, (i, j, c), h, w)`` channels_last -> ``(N, c, 2h, 2w)`` channels_last (see :func:`conv_pixel_shuffle`)."""
    n, c4, h, w = y.shape
    y = y.permute(0, 2, 3, 1).reshape(n, h, w, 2, 2, c4 // 4).permute(0, 1, 3, 2, 4, 5)  # (N, h, i, w, j, c)
    return y.reshape(n, 2 * h, 2 * w, c4 // 4).permute(0, 3, 1, 2)


def _lrelu_shuffle(y: torch.Tensor) -> torch.Tensor:
    return _shuffle(F.leaky_relu(y, LRELU_SLOPE))


def conv_add_compiled(conv: nn.Conv2d, x: torch.Tensor, base: torch.Tensor) -> torch.Tensor | None:
    """``base + conv(x)`` for a 3x3 conv with few outputs (EDVR's last conv: 3), in the default layout; None where
    the compiled pass declines (then compute it the plain way). Call it where :func:`edvr.ops.compiled.eligible`
    holds.

    A direct conv with 3 outputs runs at ~47 GFLOP/s here (70 ms for a 720p frame). Instead a 1x1 conv maps each
    pixel to its 9 taps x 3 outputs (a matrix product at the full rate), and one compiled loop sums the nine
    shifted taps, adds the bias and ``base``: 40 ms. The same sums in another order (differences ~1e-6)."""
    if conv.kernel_size != (3, 3) or conv.stride != (1, 1) or conv.padding != (1, 1) or conv.dilation != (1, 1) \
            or conv.groups != 1 or conv.bias is None:
        return None
    o = conv.out_channels
    taps = F.conv2d(x, conv.weight.permute(2, 3, 0, 1).reshape(9 * o, -1, 1, 1))  # channel (ky*3 + kx)*o + c
    out = compiled.run(_sum_taps_add, taps, base, conv.bias)
    return None if out is None else out.contiguous()


def _sum_taps_add(taps: torch.Tensor, base: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``base + bias + sum over (ky, kx) of taps[(ky*3 + kx)*o + c]`` shifted by (ky - 1, kx - 1), zero outside."""
    h, w = taps.shape[-2:]
    o = taps.shape[1] // 9
    padded = F.pad(taps, (1, 1, 1, 1))
    total = None
    for k in range(9):
        ky, kx = divmod(k, 3)
        term = padded[:, k * o:(k + 1) * o, ky:ky + h, kx:kx + w]
        total = term if total is None else total + term
    return base + (total + bias.view(1, o, 1, 1))


def upsample2x(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)


class ResidualBlockNoBN(nn.Module):
    """conv3x3 -> ReLU -> conv3x3, plus the identity (no batch norm)."""

    def __init__(self, num_feat: int = 64) -> None:
        super().__init__()
        self.conv1 = Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv2 = Conv2d(num_feat, num_feat, 3, 1, 1)
        # The reference inits (BasicSR's default_init_weights, the original repo's initialize_weights): Kaiming normal
        # scaled by 0.1, zero bias, so a deep stack of fresh blocks starts close to the identity and trains stably.
        for conv in (self.conv1, self.conv2):
            nn.init.kaiming_normal_(conv.weight, a=0, mode="fan_in")
            conv.weight.data.mul_(0.1)
            nn.init.zeros_(conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(F.relu_(self.conv1(x))).add_(x)


def residual_blocks(num_blocks: int, num_feat: int) -> nn.Sequential:
    return nn.Sequential(*(ResidualBlockNoBN(num_feat) for _ in range(num_blocks)))


class DCNPack(nn.Module):
    """Modulated deformable conv whose offsets and mask come from separate *offset features*, not from its input.

    ``conv_offset`` maps the offset features to ``3*G*9`` channels, split into three equal chunks (o1, o2, m):
    offsets = cat(o1, o2), mask = sigmoid(m). ``conv_offset`` starts at zero, so a fresh pack is a plain conv.
    """

    def __init__(self, num_feat: int, deformable_groups: int = 8, kernel_size: int = 3) -> None:
        super().__init__()
        self.deformable_groups = deformable_groups
        self.weight = nn.Parameter(torch.empty(num_feat, num_feat, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.empty(num_feat))
        self.conv_offset = Conv2d(num_feat, 3 * deformable_groups * kernel_size**2, kernel_size, 1, kernel_size // 2)
        self.padding = kernel_size // 2
        self.layer_name = "dcn"  # set to the qualified name by the owning model, for the offset warning
        self.backend: str | None = None  # requested backend; None follows the context / environment at call time
        # mean |offset| of the last training call (a 0-d tensor, not synced): the training loop logs it
        self.offset_magnitude: torch.Tensor | None = None
        self.offset_warned = False  # each pack warns once (per instance: every model of a process gets its warning)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        fan_in = self.weight[0].numel()
        bound = 1.0 / math.sqrt(fan_in)
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.zeros_(self.bias)
        nn.init.zeros_(self.conv_offset.weight)
        nn.init.zeros_(self.conv_offset.bias)

    def offsets_and_mask(self, offset_feat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(N, C, H, W)`` offset features -> offsets ``(N, 2*G*9, H, W)`` and mask ``(N, G*9, H, W)``.

        ``conv_offset``'s output is cat(o1, o2, m) and the offsets are cat(o1, o2): its first 2/3 of output
        channels. Computed as two convs over row blocks of its weight, which gives the same numbers without the
        copy of a concatenation, and runs faster on CPU (two mid-sized outputs stay in cache, one 216-channel
        output does not: 97 against 81 GFLOP/s at 180x320, see benchmarks/README.md)."""
        conv = self.conv_offset
        k = 2 * conv.out_channels // 3
        fast = winograd_conv(conv, [(offset_feat, 0)], conv.bias, split=(k, conv.out_channels - k))
        if fast is not None:
            return fast[0], torch.sigmoid(fast[1])
        offset = F.conv2d(offset_feat, conv.weight[:k], conv.bias[:k], conv.stride, conv.padding)
        mask = F.conv2d(offset_feat, conv.weight[k:], conv.bias[k:], conv.stride, conv.padding)
        return offset, torch.sigmoid(mask)

    def forward(self, x: torch.Tensor, offset_feat: torch.Tensor) -> torch.Tensor:
        offset, mask = self.offsets_and_mask(offset_feat)
        if self.training:
            self._record_offsets(offset)
        return deform_conv.modulated_deform_conv2d(
            x, offset, mask, self.weight, self.bias, padding=self.padding, backend=self.backend
        )

    def _record_offsets(self, offset: torch.Tensor) -> None:
        # Training only: keeps the mean |offset| (a reduction, left on the device) for the loop's log. On the CPU it is
        # checked against the threshold at once; on a GPU reading it every call would stall the queue of kernels, so
        # there it is checked when it is read (EDVR.largest_offset, which the training loop calls when it logs).
        self.offset_magnitude = offset.detach().abs().mean()
        if offset.device.type == "cpu":
            self.check_offset()

    def check_offset(self) -> float | None:
        """The mean |offset| of the last training-mode call (None before any); warns once (per pack) when it is
        above ``OFFSET_WARN_THRESHOLD``."""
        if self.offset_magnitude is None:
            return None
        mean = self.offset_magnitude.item()
        if mean > OFFSET_WARN_THRESHOLD and not self.offset_warned:
            self.offset_warned = True
            warnings.warn(
                f"{self.layer_name}: mean |offset| is {mean:.1f} (> {OFFSET_WARN_THRESHOLD:g}), a known sign of "
                "unstable training; consider a lower learning rate for the offset convs",
                RuntimeWarning,
                stacklevel=3,
            )
        return mean


class PCDAlignment(nn.Module):
    """Pyramid, Cascading and Deformable alignment of one neighbour's features to the reference frame's.

    Coarse to fine over levels L3 (1/4), L2 (1/2), L1 (full): each level predicts offset features from
    [neighbour, reference] and, below L3, from the x2-upsampled offset features of the coarser level (times 2,
    since offsets are in pixels); a DCN pack aligns the neighbour; a cascade DCN refines the L1 result.
    """

    def __init__(self, num_feat: int = 64, deformable_groups: int = 8) -> None:
        super().__init__()
        self.offset_conv1 = nn.ModuleDict()
        self.offset_conv2 = nn.ModuleDict()
        self.offset_conv3 = nn.ModuleDict()
        self.dcn_pack = nn.ModuleDict()
        self.feat_conv = nn.ModuleDict()
        for level in ("l3", "l2", "l1"):
            self.offset_conv1[level] = Conv2d(num_feat * 2, num_feat, 3, 1, 1)
            if level == "l3":
                self.offset_conv2[level] = Conv2d(num_feat, num_feat, 3, 1, 1)
            else:
                self.offset_conv2[level] = Conv2d(num_feat * 2, num_feat, 3, 1, 1)
                self.offset_conv3[level] = Conv2d(num_feat, num_feat, 3, 1, 1)
            self.dcn_pack[level] = DCNPack(num_feat, deformable_groups)
            if level != "l3":
                self.feat_conv[level] = Conv2d(num_feat * 2, num_feat, 3, 1, 1)
        self.cas_offset_conv1 = Conv2d(num_feat * 2, num_feat, 3, 1, 1)
        self.cas_offset_conv2 = Conv2d(num_feat, num_feat, 3, 1, 1)
        self.cas_dcnpack = DCNPack(num_feat, deformable_groups)

    def neighbour_terms(self, nbr: list[torch.Tensor]) -> list[torch.Tensor]:
        """The neighbour's share of each level's ``offset_conv1`` (whose input is cat[neighbour, reference]), without
        bias, [L1, L2, L3]. It depends on one frame only, so streaming inference computes it once per frame."""
        return [conv_part(self.offset_conv1[level], nbr[i], 0, bias=False) for i, level in enumerate(LEVELS)]

    def reference_terms(self, ref: list[torch.Tensor]) -> list[torch.Tensor]:
        """The reference's share (with bias) of each level's ``offset_conv1`` [L1, L2, L3] and of
        ``cas_offset_conv1``: the same for every frame of a window, so computed once per window."""
        c = ref[0].shape[1]
        terms = [conv_part(self.offset_conv1[level], ref[i], c, bias=True) for i, level in enumerate(LEVELS)]
        terms.append(conv_part(self.cas_offset_conv1, ref[0], c, bias=True))
        return terms

    def forward(
        self,
        nbr: list[torch.Tensor],
        ref: list[torch.Tensor],
        nbr_terms: list[torch.Tensor] | None = None,
        ref_terms: list[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """``nbr``, ``ref``: [L1, L2, L3] features ``(B, C, h / 2**i, w / 2**i)``; returns aligned ``(B, C, h, w)``.

        ``nbr_terms`` / ``ref_terms``: :meth:`neighbour_terms` / :meth:`reference_terms`, when already computed.
        The convs over cat[a, b] are computed as split-weight sums (``split_conv``), always, so that cached and
        uncached runs agree to the bit.
        """
        nbr_terms = self.neighbour_terms(nbr) if nbr_terms is None else nbr_terms
        ref_terms = self.reference_terms(ref) if ref_terms is None else ref_terms
        up_offset = up_feat = None
        feat = nbr[0]
        for i, level in ((2, "l3"), (1, "l2"), (0, "l1")):
            offset = lrelu_(nbr_terms[i] + ref_terms[i])  # = offset_conv1(cat(nbr, ref)); the terms stay intact
            if up_offset is None:
                offset = lrelu_(self.offset_conv2[level](offset))
            else:
                offset = lrelu_(split_conv(self.offset_conv2[level], (offset, up_offset)))
                offset = lrelu_(self.offset_conv3[level](offset))
            feat = self.dcn_pack[level](nbr[i], offset)
            if up_feat is not None:
                feat = split_conv(self.feat_conv[level], (feat, up_feat))
            if i > 0:  # L1's aligned features get no activation before the cascade
                feat = lrelu_(feat)
                up_offset = upsample2x(offset).mul_(2)
                up_feat = upsample2x(feat)
        # cas_offset_conv1(cat(feat, ref L1)), the reference share precomputed.
        offset = lrelu_(conv_part(self.cas_offset_conv1, feat, 0, bias=False).add_(ref_terms[3]))
        offset = lrelu_(self.cas_offset_conv2(offset))
        return lrelu_(self.cas_dcnpack(feat, offset))


class TSAFusion(nn.Module):
    """Temporal and Spatial Attention fusion.

    Temporal: each aligned frame's embedding is compared with the centre frame's (per-pixel dot product over
    channels, sigmoid) and weighs that frame; a 1x1 conv fuses the weighted frames. Spatial: an attention pyramid
    (max + avg pooling) modulates the fused features: ``feat * sigmoid(attn) * 2 + attn_add``.
    """

    def __init__(self, num_feat: int = 64, num_frames: int = 5, center_frame_idx: int = 2) -> None:
        super().__init__()
        self.center_frame_idx = center_frame_idx
        self.temporal_attn1 = Conv2d(num_feat, num_feat, 3, 1, 1)  # embeds the centre frame
        self.temporal_attn2 = Conv2d(num_feat, num_feat, 3, 1, 1)  # embeds every frame
        self.feat_fusion = Conv2d(num_frames * num_feat, num_feat, 1, 1)
        self.spatial_attn1 = Conv2d(num_frames * num_feat, num_feat, 1)
        self.spatial_attn2 = Conv2d(num_feat * 2, num_feat, 1)
        self.spatial_attn3 = Conv2d(num_feat, num_feat, 3, 1, 1)
        self.spatial_attn4 = Conv2d(num_feat, num_feat, 1)
        self.spatial_attn5 = Conv2d(num_feat, num_feat, 3, 1, 1)
        self.spatial_attn_l1 = Conv2d(num_feat, num_feat, 1)
        self.spatial_attn_l2 = Conv2d(num_feat * 2, num_feat, 3, 1, 1)
        self.spatial_attn_l3 = Conv2d(num_feat, num_feat, 3, 1, 1)
        self.spatial_attn_add1 = Conv2d(num_feat, num_feat, 1)
        self.spatial_attn_add2 = Conv2d(num_feat, num_feat, 1)

    @staticmethod
    def _pool(x: torch.Tensor) -> torch.Tensor:
        # Max and average pooling, 3x3 stride 2 pad 1; the average counts the zero padding (PyTorch's default).
        return torch.cat((F.max_pool2d(x, 3, 2, 1), F.avg_pool2d(x, 3, 2, 1)), dim=1)

    def forward(self, aligned: torch.Tensor) -> torch.Tensor:
        """``aligned``: ``(B, T, C, h, w)``; returns the fused ``(B, C, h, w)`` (h, w multiples of 4)."""
        return self.fuse_frames(list(aligned.unbind(1)))

    def fuse_frames(self, aligned: list[torch.Tensor]) -> torch.Tensor:
        """``aligned``: T tensors ``(B, C, h, w)``; returns the fused ``(B, C, h, w)``.

        Frame by frame rather than one conv over a batch of T: batched convs in the default layout ran at half
        speed on CPU (perf-notes), and the per-frame tensors keep their (channels_last) layout.
        """
        emb_ref = self.temporal_attn1(aligned[self.center_frame_idx])
        weighted = []
        for frame in aligned:
            emb = self.temporal_attn2(frame)
            corr = torch.sigmoid((emb * emb_ref).sum(dim=1, keepdim=True))  # (B, 1, h, w)
            weighted.append(frame * corr)
        weighted = torch.cat(weighted, dim=1)  # (B, T*C, h, w)

        feat = lrelu_(self.feat_fusion(weighted))
        attn = lrelu_(self.spatial_attn1(weighted))
        attn = lrelu_(self.spatial_attn2(self._pool(attn)))  # h/2
        attn_level = lrelu_(self.spatial_attn_l1(attn))
        attn_level = lrelu_(self.spatial_attn_l2(self._pool(attn_level)))  # h/4
        attn_level = upsample2x(lrelu_(self.spatial_attn_l3(attn_level)))  # h/2
        attn = lrelu_(self.spatial_attn3(attn)).add_(attn_level)
        attn = upsample2x(lrelu_(self.spatial_attn4(attn)))  # h
        attn = self.spatial_attn5(attn)
        attn_add = self.spatial_attn_add2(lrelu_(self.spatial_attn_add1(attn)))
        return (feat * torch.sigmoid(attn)).mul_(2).add_(attn_add)


class PredeblurModule(nn.Module):
    """PreDeblur front end: a small encoder-decoder (three levels, residual blocks) that removes blur in feature
    space before alignment. With ``hr_in`` two stride-2 convs first bring full-resolution input down by 4."""

    def __init__(self, num_in_ch: int = 3, num_feat: int = 64, hr_in: bool = False) -> None:
        super().__init__()
        self.hr_in = hr_in
        self.conv_first = Conv2d(num_in_ch, num_feat, 3, 1, 1)
        if hr_in:
            self.stride_conv_hr1 = Conv2d(num_feat, num_feat, 3, 2, 1)
            self.stride_conv_hr2 = Conv2d(num_feat, num_feat, 3, 2, 1)
        self.stride_conv_l2 = Conv2d(num_feat, num_feat, 3, 2, 1)
        self.stride_conv_l3 = Conv2d(num_feat, num_feat, 3, 2, 1)
        self.resblock_l3 = ResidualBlockNoBN(num_feat)
        self.resblock_l2_1 = ResidualBlockNoBN(num_feat)
        self.resblock_l2_2 = ResidualBlockNoBN(num_feat)
        self.resblock_l1 = nn.ModuleList(ResidualBlockNoBN(num_feat) for _ in range(5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat_l1 = lrelu(self.conv_first(x))
        if self.hr_in:
            feat_l1 = lrelu(self.stride_conv_hr2(lrelu(self.stride_conv_hr1(feat_l1))))
        feat_l2 = lrelu(self.stride_conv_l2(feat_l1))
        feat_l3 = lrelu(self.stride_conv_l3(feat_l2))
        feat_l3 = upsample2x(self.resblock_l3(feat_l3))
        feat_l2 = upsample2x(self.resblock_l2_2(self.resblock_l2_1(feat_l2) + feat_l3))
        feat_l1 = self.resblock_l1[1](self.resblock_l1[0](feat_l1)) + feat_l2
        for block in self.resblock_l1[2:]:
            feat_l1 = block(feat_l1)
        return feat_l1
