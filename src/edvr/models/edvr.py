"""EDVR: Video Restoration with Enhanced Deformable Convolutional Networks (Wang et al., CVPRW 2019).

One output frame from ``num_frames`` consecutive input frames: per-frame features (residual blocks, 3-level
pyramid), PCD alignment of every frame to the centre frame, TSA fusion, residual reconstruction, two pixel-shuffle
x2 stages, plus the bilinear x4 upsample of the centre frame. With ``hr_in`` (deblurring) the input is at full
resolution, brought down by 4 by strided convs (inside PreDeblur, or ``conv_first`` + two strided convs in the
original repo's "Stage 2" models), and the output has the input's size.

The forward pass is split into :meth:`EDVR.encode` (per frame, cacheable across sliding windows),
:meth:`EDVR.align_and_fuse` and :meth:`EDVR.reconstruct`, so that streaming inference computes each frame's
features once.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from edvr.models.blocks import (
    Conv2d,
    DCNPack,
    PCDAlignment,
    PredeblurModule,
    TSAFusion,
    conv_add_compiled,
    conv_pixel_shuffle,
    lrelu_,
    residual_blocks,
)
from edvr.ops import compiled, winograd

Pyramid = tuple[torch.Tensor, torch.Tensor, torch.Tensor]

# Rows of context a band of the x4 tail needs (EDVR.reconstruct): a wrong value at a band's edge (its zero padding)
# spreads one row per 3x3 conv at that conv's scale: 1 row of ``fused`` (upconv1), 1 of 2 rows (upconv2), 2 of 4
# (conv_hr, conv_last); the bilinear base needs 1. Two rows of ``fused`` cover them all.
TAIL_HALO = 2
TAIL_MIN_ROWS = 32  # a band's rows at the least, so that its halo adds at most 4/32 to the tail's work


@dataclass(frozen=True)
class EDVRConfig:
    """Everything that fixes the architecture (and so the parameter names and shapes)."""

    num_in_ch: int = 3
    num_out_ch: int = 3
    num_feat: int = 64
    num_frames: int = 5
    deformable_groups: int = 8
    num_extract_block: int = 5
    num_reconstruct_block: int = 10
    center_frame_idx: int | None = None
    hr_in: bool = False
    with_predeblur: bool = False
    with_tsa: bool = True
    with_alignment: bool = True  # False: no PCD, each frame's L1 features go to fusion unaligned (an ablation)

    def __post_init__(self) -> None:
        for key in ("num_feat", "num_frames", "deformable_groups"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be >= 1, got {getattr(self, key)}")
        for key in ("num_extract_block", "num_reconstruct_block"):
            if getattr(self, key) < 0:
                raise ValueError(f"{key} must be >= 0, got {getattr(self, key)}")
        c = self.center
        if not 0 <= c < self.num_frames:
            raise ValueError(f"center_frame_idx {c} is outside 0..{self.num_frames - 1}")
        if self.num_feat % self.deformable_groups:
            raise ValueError(f"num_feat {self.num_feat} is not a multiple of deformable_groups {self.deformable_groups}")

    @property
    def center(self) -> int:
        return self.num_frames // 2 if self.center_frame_idx is None else self.center_frame_idx

    @property
    def scale(self) -> int:
        return 1 if self.hr_in else 4

    @property
    def multiple(self) -> int:
        """Input H and W must be multiples of this (the model pads to it): 3 pyramid levels, and 4x more for HR."""
        return 16 if self.hr_in else 4

    def to_dict(self) -> dict:
        return asdict(self)


class EDVR(nn.Module):
    """The EDVR network. Input ``(B, T, C, H, W)`` in [0, 1]; output ``(B, C, scale*H, scale*W)``.

    Any H, W work: the frames are padded (reflection) to the model's multiple and the output cropped back.
    """

    def __init__(
        self,
        *,
        num_in_ch: int = 3,
        num_out_ch: int = 3,
        num_feat: int = 64,
        num_frames: int = 5,
        deformable_groups: int = 8,
        num_extract_block: int = 5,
        num_reconstruct_block: int = 10,
        center_frame_idx: int | None = None,
        hr_in: bool = False,
        with_predeblur: bool = False,
        with_tsa: bool = True,
        with_alignment: bool = True,
        dcn_backend: str | None = None,
    ) -> None:
        super().__init__()
        self.config = cfg = EDVRConfig(
            num_in_ch=num_in_ch, num_out_ch=num_out_ch, num_feat=num_feat, num_frames=num_frames,
            deformable_groups=deformable_groups, num_extract_block=num_extract_block,
            num_reconstruct_block=num_reconstruct_block, center_frame_idx=center_frame_idx, hr_in=hr_in,
            with_predeblur=with_predeblur, with_tsa=with_tsa, with_alignment=with_alignment,
        )
        self.center_frame_idx = cfg.center
        self.scale = cfg.scale
        nf = num_feat

        if with_predeblur:
            self.predeblur = PredeblurModule(num_in_ch, nf, hr_in=hr_in)
            self.conv_1x1 = Conv2d(nf, nf, 1, 1)
        else:
            self.conv_first = Conv2d(num_in_ch, nf, 3, 1, 1)
            if hr_in:  # the original repo's "Stage 2" models: strided convs without PreDeblur
                self.stride_conv_hr1 = Conv2d(nf, nf, 3, 2, 1)
                self.stride_conv_hr2 = Conv2d(nf, nf, 3, 2, 1)
        self.feature_extraction = residual_blocks(num_extract_block, nf)
        self.conv_l2_1 = Conv2d(nf, nf, 3, 2, 1)
        self.conv_l2_2 = Conv2d(nf, nf, 3, 1, 1)
        self.conv_l3_1 = Conv2d(nf, nf, 3, 2, 1)
        self.conv_l3_2 = Conv2d(nf, nf, 3, 1, 1)

        if with_alignment:
            self.pcd_align = PCDAlignment(nf, deformable_groups)
        if with_tsa:
            self.fusion: nn.Module = TSAFusion(nf, num_frames, cfg.center)
        else:
            self.fusion = Conv2d(num_frames * nf, nf, 1, 1)

        self.reconstruction = residual_blocks(num_reconstruct_block, nf)
        self.upconv1 = Conv2d(nf, nf * 4, 3, 1, 1)
        self.upconv2 = Conv2d(nf, 64 * 4, 3, 1, 1)  # the second stage always goes to 64 channels
        self.conv_hr = Conv2d(64, 64, 3, 1, 1)
        self.conv_last = Conv2d(64, num_out_ch, 3, 1, 1)
        self.tail_band_pixels = 1 << 16  # see reconstruct: 256 MB for the tail's largest map in float32

        for name, module in self.named_modules():
            if isinstance(module, DCNPack):
                module.layer_name = name
        self.set_dcn_backend(dcn_backend)

    # ---------------------------------------------------------------- configuration helpers
    def set_dcn_backend(self, name: str | None) -> None:
        """Pick the deformable-conv backend of every DCN in the model (None: context / env var / auto)."""
        from edvr.ops.deform_conv import requested_backend

        self.dcn_backend = chosen = requested_backend(name)
        for module in self.dcn_modules():
            module.backend = chosen

    def dcn_modules(self) -> list[DCNPack]:
        return [m for m in self.modules() if isinstance(m, DCNPack)]

    def dcn_parameters(self) -> list[nn.Parameter]:
        """Parameters of the deformable convs: their weights and the convs that predict their offsets and masks (the
        group of BasicSR's ``dcn_lr_mul``: every parameter with "dcn" in its name, for an lr multiplier)."""
        return [p for m in self.dcn_modules() for p in m.parameters()]

    def largest_offset(self) -> tuple[str, float] | None:
        """The DCN whose mean |offset| (pixels, over its last training-mode call) is largest, as (layer name, value);
        None before any training-mode forward, or without deformable convs (the training loop logs it)."""
        seen = [(mean, m.layer_name) for m in self.dcn_modules() if (mean := m.check_offset()) is not None]
        if not seen:
            return None
        value, name = max(seen)
        return name, value

    def tsa_parameters(self) -> list[nn.Parameter]:
        """Parameters of the TSA fusion module (trained alone during the warm-up of the official recipes)."""
        return list(self.fusion.parameters()) if self.config.with_tsa else []

    def fast_kernels(self, *tensors: torch.Tensor) -> bool:
        """Whether our compiled CPU kernels replace PyTorch's ops here: the ``compiled`` backend and plain CPU
        inference (:func:`edvr.ops.compiled.eligible`). Then the large 3x3 convs run with Winograd
        (:mod:`edvr.ops.winograd`) and two passes of the x4 tail run compiled (:meth:`reconstruct`)."""
        return self.dcn_backend == "compiled" and compiled.eligible(*tensors)

    # ---------------------------------------------------------------- forward, in three cacheable parts
    def encode(self, frames: torch.Tensor) -> Pyramid:
        """Per-frame features. ``frames``: ``(N, C, H, W)`` (H, W multiples of :attr:`EDVRConfig.multiple`);
        returns the pyramid ``(N, nf, h, w)``, ``(N, nf, h/2, w/2)``, ``(N, nf, h/4, w/4)`` with h = H / scale_in.

        The whole network runs channels_last: 3x3 convs ran 1.2-1.5x faster in it on CPU (benchmarks/README.md)."""
        frames = frames.contiguous(memory_format=torch.channels_last)
        with winograd.enabled(self.fast_kernels(frames)):
            if self.config.with_predeblur:
                feat_l1 = self.conv_1x1(self.predeblur(frames))
            else:
                feat_l1 = lrelu_(self.conv_first(frames))
                if self.config.hr_in:
                    feat_l1 = lrelu_(self.stride_conv_hr2(lrelu_(self.stride_conv_hr1(feat_l1))))
            feat_l1 = self.feature_extraction(feat_l1)
            feat_l2 = lrelu_(self.conv_l2_2(lrelu_(self.conv_l2_1(feat_l1))))
            feat_l3 = lrelu_(self.conv_l3_2(lrelu_(self.conv_l3_1(feat_l2))))
        return feat_l1, feat_l2, feat_l3

    def alignment_terms(self, feat: Pyramid) -> list[torch.Tensor]:
        """The per-frame share of PCD's first offset convs (see :meth:`PCDAlignment.neighbour_terms`): like
        :meth:`encode`, it depends on one frame only, so streaming computes it once per frame."""
        if not self.config.with_alignment:
            return []
        with winograd.enabled(self.fast_kernels(*feat)):
            return self.pcd_align.neighbour_terms(list(feat))

    def align_and_fuse(self, feats: list[Pyramid], terms: list[list[torch.Tensor]] | None = None) -> torch.Tensor:
        """``feats``: the T frames' pyramids, each level ``(B, nf, h_l, w_l)``; returns fused ``(B, nf, h, w)``.

        ``terms``: each frame's :meth:`alignment_terms`, if already computed (streaming caches them)."""
        if len(feats) != self.config.num_frames:
            raise ValueError(f"this model takes {self.config.num_frames} frames, got {len(feats)}")
        with winograd.enabled(self.fast_kernels(*feats[self.center_frame_idx])):
            return self._align_and_fuse(feats, terms)

    def _align_and_fuse(self, feats: list[Pyramid], terms: list[list[torch.Tensor]] | None) -> torch.Tensor:
        if not self.config.with_alignment:
            aligned = [f[0] for f in feats]
        else:
            if terms is None:
                terms = [self.alignment_terms(f) for f in feats]
            ref = list(feats[self.center_frame_idx])
            ref_terms = self.pcd_align.reference_terms(ref)  # once per window
            aligned = [self.pcd_align(list(f), ref, t, ref_terms) for f, t in zip(feats, terms)]  # T x (B, nf, h, w)
        if self.config.with_tsa:
            return self.fusion.fuse_frames(aligned)
        return self.fusion(torch.cat(aligned, dim=1))

    def reconstruct(self, fused: torch.Tensor, center: torch.Tensor) -> torch.Tensor:
        """``fused``: ``(B, nf, h, w)``; ``center``: the centre input frame ``(B, C, H, W)``; returns
        ``(B, C, scale*H, scale*W)``.

        The x4 tail (pixel shuffles, ``conv_hr`` and ``conv_last`` at 2x and 4x) holds 64 x 16 values per pixel of
        ``fused`` in each of its largest maps, 4 KB in float32: on whole frames it is most of a restore's memory.
        So it runs in bands of about :attr:`tail_band_pixels` pixels of ``fused`` (whole rows, at least
        :data:`TAIL_MIN_ROWS`; each band with :data:`TAIL_HALO` rows of context on either side, then cropped): its
        memory stays flat with the frame size, and each output pixel is computed from the same numbers as without
        bands (float rounding aside, where a band's shape changes the conv algorithm).

        With :meth:`fast_kernels`, two passes of the x4 tail run compiled: the activation + pixel shuffle (same
        numbers) and the last conv + base (same sums in another order)."""
        fast = self.fast_kernels(fused, center)
        with winograd.enabled(fast):
            feat = self.reconstruction(fused.contiguous(memory_format=torch.channels_last))
        n, _, h, w = feat.shape
        rows = max(TAIL_MIN_ROWS, self.tail_band_pixels // max(1, n * w))
        rows = -(-h // -(-h // rows))  # the same rows in every band, as few as cover h
        span = rows + 2 * TAIL_HALO  # every band has this height (one shape: one compiled variant per kernel)
        # One band: small maps; training (autograd keeps every band's activations: no memory saved); an exported graph
        if h <= span or (torch.is_grad_enabled() and (feat.requires_grad or center.requires_grad)) \
                or torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():
            return self._tail(feat, center, fast)
        up = center.shape[-2] // h  # centre rows per row of ``fused``: 1 (x4 SR) or 4 (HR input)
        out = None
        for top in range(0, h, rows):
            bottom = min(h, top + rows)
            lo = min(max(0, top - TAIL_HALO), h - span)  # the first and last bands lean on the frame's edge
            band = self._tail(feat[..., lo:lo + span, :], center[..., lo * up:(lo + span) * up, :], fast)
            if out is None:
                out = band.new_empty(n, band.shape[1], 4 * h, band.shape[-1])
            out[..., 4 * top:4 * bottom, :] = band[..., 4 * (top - lo):4 * (bottom - lo), :]
        return out

    def _tail(self, feat: torch.Tensor, center: torch.Tensor, fast: bool) -> torch.Tensor:
        """The x4 tail of :meth:`reconstruct` on the reconstruction trunk's output ``feat``."""
        with winograd.enabled(fast):
            out = conv_pixel_shuffle(self.upconv2, conv_pixel_shuffle(self.upconv1, feat, fast), fast)
            out = lrelu_(self.conv_hr(out))
        base = center if self.config.hr_in else F.interpolate(center, scale_factor=4, mode="bilinear",
                                                              align_corners=False)
        result = conv_add_compiled(self.conv_last, out, base) if fast else None
        if result is not None:
            return result
        # The base first (out + base == base + out exactly), so that the result is in the default layout.
        return (base + self.conv_last(out)).contiguous()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: ``(B, T, C, H, W)`` in [0, 1]; returns the restored centre frame ``(B, C, scale*H, scale*W)``."""
        if x.dim() != 5 or x.shape[1] != self.config.num_frames:
            raise ValueError(
                f"EDVR expects (B, {self.config.num_frames}, C, H, W) input, got {tuple(x.shape)}"
            )
        h, w = x.shape[-2:]
        x, _ = pad_to_multiple(x, self.config.multiple)
        # Frame by frame, as streaming inference does (so the two agree exactly); batching the T frames into one conv
        # call is also no faster on CPU in the default memory layout (perf-notes).
        feats = [self.encode(x[:, i].contiguous()) for i in range(x.shape[1])]
        out = self.reconstruct(self.align_and_fuse(feats), x[:, self.center_frame_idx].contiguous())
        return out[..., : h * self.scale, : w * self.scale]


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Pad the last two dims of ``x`` at the bottom and right up to a multiple; returns (padded, (ph, pw)).

    Reflection padding keeps image statistics at the border; inputs too small to reflect are replicated.
    """
    h, w = x.shape[-2:]
    ph, pw = -h % multiple, -w % multiple
    if ph == 0 and pw == 0:
        return x, (0, 0)
    mode = "reflect" if ph < h and pw < w else "replicate"
    lead = x.shape[:-3]
    flat = x.reshape(-1, *x.shape[-3:])
    padded = F.pad(flat, (0, pw, 0, ph), mode=mode)
    return padded.reshape(*lead, *padded.shape[-3:]), (ph, pw)
