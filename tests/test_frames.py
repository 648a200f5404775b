"""Temporal window indices: the reference's values at both clip ends, and safety on clips shorter than the window."""

from __future__ import annotations

import pytest

from edvr.data.frames import PADDING_MODES, default_padding, window_indices

# Expected windows written out by hand from the reference definitions (BasicSR generate_frame_indices / the original
# EDVR repo's index_generation), for a clip long enough that the reference never leaves it. L = total - 1.
LONG = 10
L = LONG - 1
START_5 = {  # centre at frame 0, 5 frames
    "replicate": [0, 0, 0, 1, 2],
    "reflection": [2, 1, 0, 1, 2],
    "reflection_circle": [4, 3, 0, 1, 2],
    "circle": [3, 4, 0, 1, 2],
}
SECOND_5 = {  # centre at frame 1: only one position sticks out
    "replicate": [0, 0, 1, 2, 3],
    "reflection": [1, 0, 1, 2, 3],
    "reflection_circle": [4, 0, 1, 2, 3],
    "circle": [4, 0, 1, 2, 3],
}
END_5 = {  # centre at the last frame
    "replicate": [L - 2, L - 1, L, L, L],
    "reflection": [L - 2, L - 1, L, L - 1, L - 2],
    "reflection_circle": [L - 2, L - 1, L, L - 3, L - 4],
    "circle": [L - 2, L - 1, L, L - 4, L - 3],
}
START_7 = {
    "replicate": [0, 0, 0, 0, 1, 2, 3],
    "reflection": [3, 2, 1, 0, 1, 2, 3],
    "reflection_circle": [6, 5, 4, 0, 1, 2, 3],
    "circle": [4, 5, 6, 0, 1, 2, 3],
}
END_7 = {
    "replicate": [L - 3, L - 2, L - 1, L, L, L, L],
    "reflection": [L - 3, L - 2, L - 1, L, L - 1, L - 2, L - 3],
    "reflection_circle": [L - 3, L - 2, L - 1, L, L - 4, L - 5, L - 6],
    "circle": [L - 3, L - 2, L - 1, L, L - 6, L - 5, L - 4],
}


@pytest.mark.parametrize("padding", PADDING_MODES)
def test_reference_values_at_both_ends(padding: str) -> None:
    assert window_indices(0, 5, LONG, padding) == START_5[padding]
    assert window_indices(1, 5, LONG, padding) == SECOND_5[padding]
    assert window_indices(L, 5, LONG, padding) == END_5[padding]
    assert window_indices(0, 7, LONG, padding) == START_7[padding]
    assert window_indices(L, 7, LONG, padding) == END_7[padding]


def test_reflection_circle_is_the_original_new_info() -> None:
    # The design notes' fact, stated separately so a change to the table above cannot hide it.
    assert window_indices(0, 5, 100, "reflection_circle") == [4, 3, 0, 1, 2]


@pytest.mark.parametrize("padding", PADDING_MODES)
@pytest.mark.parametrize("num_frames", [1, 3, 5, 7])
def test_middle_of_clip_is_unpadded(padding: str, num_frames: int) -> None:
    half = num_frames // 2
    for center in range(half, LONG - half):
        assert window_indices(center, num_frames, LONG, padding) == list(range(center - half, center + half + 1))


def _brute_mirror(position: int, total: int) -> int:
    # Walk the position back into the clip one reflection at a time: an oracle independent of the modulo formula.
    if total == 1:
        return 0
    p = position
    while not 0 <= p < total:
        p = -p if p < 0 else 2 * (total - 1) - p
    return p


@pytest.mark.parametrize("padding", PADDING_MODES)
@pytest.mark.parametrize("num_frames", [5, 7])
def test_every_short_and_long_clip(padding: str, num_frames: int) -> None:
    half = num_frames // 2
    for total in range(1, 11):
        for center in range(total):
            got = window_indices(center, num_frames, total, padding)
            assert len(got) == num_frames
            assert all(0 <= i < total for i in got), (total, center, got)
            assert got[half] == center
            for offset, idx in enumerate(got):
                position = center - half + offset
                if 0 <= position < total:
                    assert idx == position  # frames inside the clip are never substituted
                elif padding == "replicate":
                    assert idx == (0 if position < 0 else total - 1)
                elif padding == "reflection":
                    assert idx == _brute_mirror(position, total)


def test_one_frame_clip_is_all_zeros() -> None:
    for padding in PADDING_MODES:
        assert window_indices(0, 7, 1, padding) == [0] * 7


def test_short_clip_falls_back_to_mirror_only_where_reference_leaves_the_clip() -> None:
    # total=3, window 5, centre 0: reference reflection_circle asks for frames 4 and 3 (absent); mirror gives 2 and 1.
    assert window_indices(0, 5, 3, "reflection_circle") == [2, 1, 0, 1, 2]
    # total=4: the reference's 3 is present and kept, its 4 is absent and mirrored (position -2 -> 2).
    assert window_indices(0, 5, 4, "reflection_circle") == [2, 3, 0, 1, 2]
    # circle on 4 frames: reference 3 (position -2) is kept, 4 (position -1) is mirrored to 1.
    assert window_indices(0, 5, 4, "circle") == [3, 1, 0, 1, 2]
    # reflection on 2 frames: position -2 mirrors to 0 (period 2), -1 to 1; right side 1 -> 1, 2 -> 0.
    assert window_indices(0, 5, 2, "reflection") == [0, 1, 0, 1, 0]


@pytest.mark.parametrize(
    "args",
    [
        (0, 4, 10, "replicate"),
        (0, 0, 10, "replicate"),
        (10, 5, 10, "replicate"),
        (-1, 5, 10, "replicate"),
        (0, 5, 0, "replicate"),
        (0, 5, 10, "zeros"),
    ],
)
def test_bad_arguments_are_refused(args: tuple) -> None:
    with pytest.raises(ValueError):
        window_indices(*args)


def test_default_padding() -> None:
    assert default_padding("sr") == "reflection_circle"
    for task in ("sr_blur", "SR-blur", "SRblur", "deblur", "deblur_comp", "deblur+comp", "deblurcomp"):
        assert default_padding(task) == "replicate", task
    with pytest.raises(ValueError, match="unknown task"):
        default_padding("denoise")
