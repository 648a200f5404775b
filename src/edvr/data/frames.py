"""Temporal windows: which input frames feed the restoration of one output frame.

EDVR restores frame ``center`` of a clip from ``num_frames`` consecutive frames centred on it. Near the clip ends the
window sticks out of the clip and the missing positions are filled by a *padding mode*. The modes, their names and
their exact values at both ends follow BasicSR's ``generate_frame_indices`` (``basicsr/data/data_util.py``), which in
turn follows the original EDVR repository (its ``new_info`` mode is our ``reflection_circle``). For 5 frames and the
centre at frame 0 of a long clip::

    replicate          [0, 0, 0, 1, 2]   repeat the end frame
    reflection         [2, 1, 0, 1, 2]   mirror about the end frame, which is not repeated
    reflection_circle  [4, 3, 0, 1, 2]   fill with frames beyond the *other* side of the window, mirrored
    circle             [3, 4, 0, 1, 2]   fill with frames beyond the other side of the window, in order

and at the last frame (index ``total - 1 = L``) the mirror images: reflection gives ``[L-2, L-1, L, L-1, L-2]``,
reflection_circle ``[L-2, L-1, L, L-3, L-4]``, circle ``[L-2, L-1, L, L-4, L-3]``.

The reference formulas index out of the clip when the clip is shorter than the window (e.g. 2 frames, window 5); the
reference never meets that case because its test clips have 7 to 100 frames, but a user's video may have 1 frame. Our
rule: whenever the reference formula gives an index outside ``[0, total)``, we use instead the mirror reflection of
the wanted position, extended periodically (period ``2 * (total - 1)``, the way MATLAB's ``symmetric`` border is
continued), which is always inside the clip; a one-frame clip gives all zeros. Where the reference is in range, we
equal it exactly.

Which mode a published number used: ``reflection_circle`` for the SR tracks (REDS4 and Vid4/Vimeo90K, BasicSR's
``test_EDVR_*_SR_*.yml``), ``replicate`` for the SR-blur, deblur and deblur+compression tracks
(``test_EDVR_L_x4_SRblur_REDS.yml``, ``test_EDVR_L_deblur*_REDS.yml``); see :func:`default_padding`.
"""

from __future__ import annotations

__all__ = ["PADDING_MODES", "TASK_PADDING", "default_padding", "window_indices"]

PADDING_MODES: tuple[str, ...] = ("replicate", "reflection", "reflection_circle", "circle")

# Task names as the model records and configs write them; aliases without the underscore are accepted because the
# BasicSR checkpoint names spell them that way (EDVR_L_x4_SRblur_REDS, EDVR_L_deblurcomp_REDS).
TASK_PADDING: dict[str, str] = {
    "sr": "reflection_circle",
    "sr_blur": "replicate",
    "deblur": "replicate",
    "deblur_comp": "replicate",
}
_TASK_ALIASES: dict[str, str] = {"srblur": "sr_blur", "deblurcomp": "deblur_comp"}


def _mirror(position: int, total: int) -> int:
    """Reflect ``position`` into ``[0, total)`` about the end frames (not repeated), periodically."""
    if total == 1:
        return 0
    period = 2 * (total - 1)
    p = position % period  # Python's % is non-negative for a positive period, so this also folds negatives
    return p if p < total else period - p


def window_indices(center: int, num_frames: int, total: int, padding: str) -> list[int]:
    """Indices of the ``num_frames`` input frames for output frame ``center`` of a clip of ``total`` frames.

    Args:
        center: index of the frame to restore, ``0 <= center < total``.
        num_frames: window length, odd and positive (5 for the REDS models, 7 for the Vimeo90K ones).
        total: number of frames in the clip, at least 1.
        padding: one of :data:`PADDING_MODES`; see the module docstring for the exact definitions.

    Returns:
        ``num_frames`` indices, each in ``[0, total)``, in temporal order; the middle one is ``center``.
    """
    if padding not in PADDING_MODES:
        raise ValueError(f"unknown temporal padding {padding!r}; expected one of {', '.join(PADDING_MODES)}")
    if num_frames < 1 or num_frames % 2 == 0:
        raise ValueError(f"num_frames must be odd and positive (the window is centred on a frame), got {num_frames}")
    if total < 1:
        raise ValueError(f"a clip needs at least one frame, got total={total}")
    if not 0 <= center < total:
        raise ValueError(f"center {center} is outside the clip of {total} frames")

    last = total - 1
    half = num_frames // 2
    indices = []
    for i in range(center - half, center + half + 1):
        if 0 <= i <= last:
            indices.append(i)
            continue
        if padding == "replicate":
            idx = 0 if i < 0 else last
        elif padding == "reflection":
            idx = -i if i < 0 else 2 * last - i
        elif padding == "reflection_circle":
            # Frames just beyond the far side of the window, taken outwards from it: the reference's formulas.
            idx = (center + half) - i if i < 0 else (center - half) - (i - last)
        else:  # circle
            idx = num_frames + i if i < 0 else i - num_frames
        if not 0 <= idx <= last:
            # Clip shorter than the reference formulas assume: see the module docstring.
            idx = _mirror(i, total)
        indices.append(idx)
    return indices


def default_padding(task: str) -> str:
    """The temporal padding the published numbers of ``task`` were measured with.

    ``task`` is one of ``sr``, ``sr_blur``, ``deblur``, ``deblur_comp`` (case, ``-``, ``+`` and spaces are forgiven:
    ``"SR-blur"``, ``"deblur+comp"``, ``"SRblur"`` work). SR uses ``reflection_circle``; every track whose input is
    blurred uses ``replicate`` (BasicSR's EDVR test configurations).
    """
    key = task.strip().lower().replace("-", "_").replace("+", "_").replace(" ", "_")
    key = _TASK_ALIASES.get(key, key)
    if key not in TASK_PADDING:
        raise ValueError(f"unknown task {task!r}; expected one of {', '.join(TASK_PADDING)}")
    return TASK_PADDING[key]
