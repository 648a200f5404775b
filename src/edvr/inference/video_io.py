"""Video and frame-folder I/O under ``edvr restore``, built on PyAV (the FFmpeg it bundles) alone.

Reading: :func:`probe` describes a video file or a folder of frames, :func:`read_frames` yields frames in decode
(presentation) order as float32 RGB in [0, 1]. Sources deeper than 8 bits go through 16-bit RGB, so 10-bit values
are not quantised to 8 bits. Untagged YUV is decoded with BT.709 when the picture is HD (width >= 1280 or height >
576) and BT.601 otherwise (the players' convention); :class:`SegmentWriter` encodes an untagged source with the
matrix that convention gives the output's size (an x4 output of SD video is HD) and always tags the matrix it used,
so the output looks the same as the input whether or not the player reads the tag. Subsampled chroma is read where
the decoder says it sits (left-sited for untagged H.264/HEVC) and written left-sited, where decoders assume it:
colour edges stay on their luma edges (``tests/test_video_io.py`` measures both).

Writing: the restored video is written as independently encoded *segments* (NUT files) that
:func:`finalize_video` joins, without re-encoding, into the final container together with the source's audio and
subtitle packets, copied byte for byte. Why this shape:

* an interrupted run resumes at the last finished segment, and the joined file is byte-identical to the one of an
  uninterrupted run, because encoding uses a fixed thread count (x264/x265 are deterministic for a given count)
  and every muxer runs with ``+bitexact`` (no random Matroska UIDs, no library version strings);
* every frame keeps its source timestamp, so variable frame rate survives: segments are NUT, which stores any
  time base exactly (Matroska rounds to 1 ms, MP4 rounds edit lists to its 1/1000 movie timescale unless told
  otherwise); for MP4/MOV outputs the movie timescale is set to the track's so timestamps stay exact;
* decode timestamps are recomputed for the joined stream from the presentation timestamps and the largest
  reordering depth, so B-frames (negative DTS at each segment start) cannot make DTS go backwards at a boundary.

Frame folders: png, jpg, tif, webp and bmp, 8 or 16 bits, sorted naturally (``frame2`` before ``frame10``).
Grayscale is replicated to RGB; an alpha channel is dropped (the colour is kept as stored, not composited).

Orientation and pixel shape: frames are read upright, as players show them. Phones store portrait video sideways
with a display matrix (a rotation tag) and cameras tag JPEGs with an EXIF orientation; quarter turns and mirrors
are applied to the pixels on reading (as the ``ffmpeg`` program does by default), so a restored video or PNG needs no
tag to look right. Non-square pixels (anamorphic DVD or broadcast video) keep their sample aspect ratio in the
output, so the picture keeps its shape.
"""

from __future__ import annotations

import functools
import heapq
import itertools
import math
import os
import re
import struct
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import av.error
import av.filter
import numpy as np
from av.video.reformatter import ColorRange, Colorspace, Interpolation

from edvr.errors import InputError, OutputError

__all__ = [
    "IMAGE_EXTENSIONS",
    "SEGMENT_SUFFIX",
    "Frame",
    "SegmentWriter",
    "VideoInfo",
    "check_container",
    "default_codec",
    "finalize_video",
    "list_images",
    "natural_key",
    "output_pix_fmt",
    "probe",
    "read_frames",
    "read_image",
    "read_image_pixels",
    "write_image",
]

# Image suffix -> FFmpeg decoder. Feeding the file as one packet to the decoder skips the image2 demuxer, which
# costs half the decode time of a 720p PNG (the bottleneck of EDVR training: data/videos.py).
_IMAGE_CODECS: dict[str, str] = {
    ".png": "png", ".jpg": "mjpeg", ".jpeg": "mjpeg", ".bmp": "bmp", ".tif": "tiff", ".tiff": "tiff", ".webp": "webp",
}  # fmt: skip
IMAGE_EXTENSIONS = tuple(_IMAGE_CODECS)
SEGMENT_SUFFIX = ".nut"  # segments are always NUT; name them with this suffix so tools recognise them
ENCODER_THREADS = 4  # fixed, never "auto": x264/x265 output depends on the thread count, so resume needs the same one

# FFmpeg's names for the AVColor* enum values (stable ABI numbers), so VideoInfo.color reads like ffprobe.
_PRIMARIES = {1: "bt709", 4: "bt470m", 5: "bt470bg", 6: "smpte170m", 7: "smpte240m", 8: "film", 9: "bt2020",
              10: "smpte428", 11: "smpte431", 12: "smpte432", 22: "ebu3213"}
_TRC = {1: "bt709", 4: "gamma22", 5: "gamma28", 6: "smpte170m", 7: "smpte240m", 8: "linear", 9: "log100",
        10: "log316", 11: "iec61966-2-4", 12: "bt1361e", 13: "iec61966-2-1", 14: "bt2020-10", 15: "bt2020-12",
        16: "smpte2084", 17: "smpte428", 18: "arib-std-b67"}
_SPACE = {0: "gbr", 1: "bt709", 4: "fcc", 5: "bt470bg", 6: "smpte170m", 7: "smpte240m", 8: "ycgco", 9: "bt2020nc",
          10: "bt2020c", 11: "smpte2085", 12: "chroma-derived-nc", 13: "chroma-derived-c", 14: "ictcp"}
_RANGE = {1: "tv", 2: "pc"}
_COLOR_TABLES = {"color_primaries": _PRIMARIES, "color_trc": _TRC, "colorspace": _SPACE, "color_range": _RANGE}
# swscale only knows a few YUV matrices; the rest fall back to BT.709 (and the output is tagged with what was used).
_SWS_MATRIX = {1: Colorspace.ITU709, 4: Colorspace.FCC, 5: Colorspace.ITU601, 6: Colorspace.ITU601,
               7: Colorspace.SMPTE240M, 9: Colorspace.BT2020, 10: Colorspace.BT2020}
# swscale's default YUV->RGB path upsamples chroma by nearest neighbour (mean error 0.025 on a smooth test pattern);
# full-chroma bicubic brings it to 0.005. BITEXACT keeps encoding identical across CPUs, which resume relies on.
_SWS_FLAGS = (Interpolation.BICUBIC | Interpolation.FULL_CHR_H_INT | Interpolation.FULL_CHR_H_INP
              | Interpolation.ACCURATE_RND)
_SWS_ENCODE_FLAGS = _SWS_FLAGS | Interpolation.BITEXACT
# The same flags for FFmpeg's scale filter, which the writer uses for subsampled YUV (see _ChromaSubsampler).
_SCALE_ENCODE_FLAGS = "bicubic+full_chroma_int+full_chroma_inp+accurate_rnd+bitexact"
_SCALE_MATRIX = {Colorspace.ITU709: "bt709", Colorspace.FCC: "fcc", Colorspace.ITU601: "bt601",
                 Colorspace.SMPTE240M: "smpte240m", Colorspace.BT2020: "bt2020"}
_CRF_CODECS = {"libx264", "libx265", "libvpx-vp9", "libsvtav1", "libaom-av1"}
_CRF_MAX = {"libx264": 51, "libx265": 51}  # the others: 63
_CRF_MIN = {"libsvtav1": 1}  # SVT-AV1 reads 0 as "not set" (its default, 35); the others: 0
DEFAULT_CRF = 18
# Stream tags that describe the old file rather than the stream's content; the muxer writes fresh ones.
_STALE_TAGS = {"duration", "encoder", "bps", "number_of_frames", "number_of_bytes", "creation_time",
               "major_brand", "minor_version", "compatible_brands"}
_MP4_LIKE = {"mp4", "mov", "m4v", "3gp", "ipod", "ismv", "psp", "f4v"}


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe` learnt about a video file or a frame folder."""

    path: Path
    is_folder: bool
    width: int
    height: int
    fps: Fraction | None  # average rate; None for a frame folder unless given to probe()
    time_base: Fraction | None  # of the video stream; 1/fps for a folder with a known fps
    num_frames_hint: int | None  # the container's claim: for progress bars only, never for correctness
    bit_depth: int  # 8, 10, 12 or 16
    pix_fmt: str | None
    has_audio: bool
    has_subtitles: bool
    color: dict = field(default_factory=dict)  # FFmpeg names of color_primaries/color_trc/colorspace/color_range
    sample_aspect_ratio: Fraction | None = None  # of the upright frames; None: square pixels or unknown
    turned: bool = False  # the stored frames are turned or mirrored to be upright (width/height are upright)
    interlaced: bool = False  # the first frame is coded as two fields


@dataclass
class Frame:
    """One decoded frame; ``index`` counts frames in decode order from 0, whatever ``start`` was."""

    index: int
    pts: int | None  # in VideoInfo.time_base units; the file index for a frame folder
    image: np.ndarray  # (H, W, 3) float32 RGB in [0, 1]
    name: str | None = None  # file name for folder input


# ----------------------------------------------------------------------------------------------------------- reading


def natural_key(name: str) -> tuple:
    """Sort key for file names: "frame10" after "frame9" (user folders are not always zero-padded)."""
    # re.split with a capture group alternates text and digits, so the tuples compare position by position safely.
    parts = re.split(r"(\d+)", name.lower())
    return tuple(int(p) if i % 2 else p for i, p in enumerate(parts)), name


def list_images(folder: Path) -> list[Path]:
    """The image files of ``folder`` (no recursion, hidden files skipped) in natural order."""
    files = [f for f in folder.iterdir()
             if f.suffix.lower() in IMAGE_EXTENSIONS and not f.name.startswith(".") and f.is_file()]
    return sorted(files, key=lambda f: natural_key(f.name))


def _folder_files(folder: Path) -> list[Path]:
    files = list_images(folder)
    if not files:
        raise InputError(f"{folder}: no frames found (expected {', '.join(IMAGE_EXTENSIONS)} files); "
                         "point to a folder of images or a video file")
    return files


def _open_input(path: Path) -> av.container.InputContainer:
    if not path.exists():
        raise InputError(f"{path}: no such file or folder; check the path")
    try:
        return av.open(str(path), mode="r")
    except PermissionError as exc:
        raise InputError(f"{path}: cannot be read ({exc.strerror}); check its permissions") from None
    except (av.error.FFmpegError, OSError) as exc:
        raise InputError(f"{path}: not a readable video or image ({_reason(exc)}); "
                         "check the file is complete and in a format FFmpeg reads") from None


def _reason(exc: BaseException) -> str:
    if isinstance(exc, av.error.FFmpegError) and exc.strerror:
        return str(exc.strerror).rstrip(".")
    return str(exc).split("\n")[0] or type(exc).__name__


def _video_stream(container: av.container.InputContainer, path: Path) -> av.video.stream.VideoStream:
    """The video stream ``ffmpeg`` would pick: the most pixels, a default-flagged stream counting as 5 M more; the
    first of equals. Cover art in mp4/mkv is a one-picture "video" stream, never picked."""
    candidates = [s for s in container.streams.video if not s.disposition & av.stream.Disposition.attached_pic]
    if not candidates:
        raise InputError(f"{path}: has no video stream; give a video file or a folder of frames")
    decodable = [s for s in candidates if s.codec_context is not None]  # PyAV: None where FFmpeg has no decoder
    if not decodable:
        raise InputError(f"{path}: this FFmpeg has no decoder for its video ({candidates[0].codec.name}); convert it "
                         "with an ffmpeg that has one (ffmpeg -i IN -c:v ffv1 OUT.mkv)")
    candidates, default = decodable, av.stream.Disposition.default
    return max(candidates, key=lambda s: (s.codec_context.width * s.codec_context.height
                                          + 5_000_000 * bool(s.disposition & default), -s.index))


def _format_bits(fmt: av.VideoFormat | None) -> int:
    if fmt is None:
        return 8
    bits = max((c.bits for c in fmt.components if not c.is_alpha), default=8)
    return 8 if bits <= 8 else 10 if bits <= 10 else 12 if bits <= 12 else 16


def _color_of(obj: Any) -> dict:
    color = {}
    for key, table in _COLOR_TABLES.items():
        name = table.get(int(getattr(obj, key, 2) or 0))
        if name is not None:
            color[key] = name
    return color


def probe(path: str | os.PathLike, *, fps: Fraction | float | None = None) -> VideoInfo:
    """Describe a video file or a folder of frames; ``fps`` names the rate of a folder (ignored for files)."""
    path = Path(path)
    if path.is_dir():
        files = _folder_files(path)
        first, turn = _decode_image(files[0])
        width, height = (first.height, first.width) if turn[0] else (first.width, first.height)
        rate = Fraction(fps).limit_denominator(1_000_000) if fps else None
        return VideoInfo(path=path, is_folder=True, width=width, height=height, fps=rate,
                         time_base=1 / rate if rate else None, num_frames_hint=len(files),
                         bit_depth=_format_bits(first.format), pix_fmt=first.format.name, has_audio=False,
                         has_subtitles=False, color={}, turned=any(turn))
    with _open_input(path) as container:
        stream = _video_stream(container, path)
        cc = stream.codec_context
        rate = stream.average_rate or stream.guessed_rate
        hint = stream.frames or None
        if hint is None and rate and container.duration:
            hint = round(container.duration / av.time_base * rate)
        sar = stream.sample_aspect_ratio
        sar = Fraction(sar) if sar and sar > 0 and sar != 1 else None
        first = _first_frame(container, stream)
        turn = _UPRIGHT if first is None else display_turn(first, _image_bytes(path))
        width, height = (cc.height, cc.width) if turn[0] else (cc.width, cc.height)
        if turn[0] and sar is not None:
            sar = 1 / sar  # a pixel w wide and h high, turned a quarter, is h wide and w high
        return VideoInfo(path=path, is_folder=False, width=width, height=height,
                         fps=Fraction(rate) if rate else None, time_base=stream.time_base, num_frames_hint=hint,
                         bit_depth=_format_bits(cc.format), pix_fmt=cc.format.name if cc.format else None,
                         has_audio=bool(container.streams.audio), has_subtitles=bool(container.streams.subtitles),
                         color=_color_of(cc), sample_aspect_ratio=sar, turned=any(turn),
                         interlaced=bool(first is not None and first.interlaced_frame))


Turn = tuple[bool, bool, bool]  # (transpose, flip rows, flip columns), applied to the stored pixels in that order
_UPRIGHT: Turn = (False, False, False)
# EXIF orientation (TIFF tag 274) -> Turn: 2 mirror, 3 half turn, 4 upside-down mirror, 5 transpose, 6 quarter turn
# clockwise, 7 transverse, 8 quarter turn counter-clockwise (as viewers and FFmpeg's EXIF -> display matrix apply them).
_EXIF_TURNS: dict[int, Turn] = {1: (False, False, False), 2: (False, False, True), 3: (False, True, True),
                                4: (False, True, False), 5: (True, False, False), 6: (True, False, True),
                                7: (True, True, True), 8: (True, True, False)}


def display_turn(frame: av.VideoFrame, data: bytes | None = None) -> Turn:
    """What shows ``frame`` upright, from its display matrix (a phone video's rotation, a JPEG's EXIF orientation);
    ``data``: the bytes of an image file, whose EXIF orientation is read where the matrix cannot be.

    FFmpeg's matrix maps a stored pixel (x, y) to the displayed (a x + c y, b x + d y) (``libavutil/display.h``):
    for the eight quarter-turn orientations either b, c or a, d are zero, and the signs of the others say which
    axes are reversed. Angles within 1.5 degrees of a quarter turn count as one (PyAV truncates the angle it
    reports to whole degrees); others are left as stored, with a warning. Where PyAV cannot list a frame's side
    data (PyAV 18 raises on the EXIF block FFmpeg 8 attaches to JPEG frames) the orientation comes from the file's
    EXIF, else from PyAV's angle, which cannot tell a mirror from a turn (mirrored orientations then come out wrong).
    """
    try:
        matrix = next((struct.unpack("=9i", bytes(sd)) for sd in frame.side_data
                       if sd.type.name == "DISPLAYMATRIX"), None)
        listed = True
    except (ValueError, AttributeError):  # a side-data type this PyAV has no name for
        matrix, listed = None, False
    if matrix is None:
        orientation = _exif_orientation(data) if data else None
        if orientation in _EXIF_TURNS:
            return _EXIF_TURNS[orientation]
        if listed:
            return _UPRIGHT
        angle = math.radians(getattr(frame, "rotation", 0) or 0)  # counter-clockwise
        matrix = (math.cos(angle), -math.sin(angle), 0, math.sin(angle), math.cos(angle))
    a, b, c, d = matrix[0], matrix[1], matrix[3], matrix[4]
    tilt = math.degrees(math.atan2(min(abs(a), abs(b)), max(abs(a), abs(b))))
    if tilt > 1.5:
        warnings.warn(f"a frame is to be shown turned by {getattr(frame, 'rotation', '?')} degrees, not a multiple of "
                      "90: it is read as stored", stacklevel=2)
        return _UPRIGHT
    if abs(a) >= abs(b):
        return (False, d < 0, a < 0)
    return (True, b < 0, c < 0)


def _image_bytes(path: Path) -> bytes | None:
    """The head of an image file, where its EXIF block sits (None for other files: videos carry no EXIF)."""
    if path.suffix.lower() not in _IMAGE_CODECS or not path.is_file():
        return None
    with open(path, "rb") as f:
        return f.read(_EXIF_SEARCH)


_EXIF_SEARCH = 1 << 20  # bytes of an image file's head read for its EXIF block


def _exif_orientation(data: bytes) -> int | None:
    """The EXIF orientation (tag 274 of the first IFD) of an image file's bytes, or None."""
    tiff = _exif_block(data)
    if tiff[:4] not in _TIFF_MAGIC:
        return None
    order = "<" if tiff[:2] == b"II" else ">"
    try:
        (ifd,) = struct.unpack_from(order + "I", tiff, 4)
        (count,) = struct.unpack_from(order + "H", tiff, ifd)
        for k in range(count):
            tag, kind, _, value = struct.unpack_from(order + "HHI2s", tiff, ifd + 2 + 12 * k)
            if tag == 274 and kind == 3:  # SHORT
                return struct.unpack(order + "H", value)[0]
    except struct.error:  # cut short: no orientation
        pass
    return None


def _exif_block(data: bytes) -> bytes:
    """An image file's EXIF block (TIFF layout), found by walking the file's segments or chunks (not by searching
    its bytes: that cost 6-8 % of every PNG read): TIFF files are that layout; JPEG keeps it in an APP1 segment
    after "Exif\\0\\0", before the first scan; PNG in an eXIf chunk; WebP in an EXIF chunk. b"" where none."""
    if data[:4] in _TIFF_MAGIC:
        return data
    if data[:2] == b"\xff\xd8":  # JPEG: marker segments (FF, marker, 2-byte size) up to the start of scan (DA)
        at = 2
        while at + 4 <= len(data) and data[at] == 0xFF and data[at + 1] != 0xDA:
            if data[at + 1] == 0xFF:  # fill byte
                at += 1
                continue
            size = int.from_bytes(data[at + 2:at + 4], "big")
            if data[at + 1] == 0xE1 and data[at + 4:at + 10] == b"Exif\x00\x00":
                return data[at + 10:at + 2 + size]
            at += 2 + size
        return b""
    if data[:8] == b"\x89PNG\r\n\x1a\n":  # PNG: chunks (4-byte size, type, data, CRC) up to IEND
        at = 8
        while at + 8 <= len(data) and data[at + 4:at + 8] != b"IEND":
            size = int.from_bytes(data[at:at + 4], "big")
            if data[at + 4:at + 8] == b"eXIf":
                return data[at + 8:at + 8 + size]
            at += 12 + size
        return b""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":  # WebP: RIFF chunks (type, 4-byte size, data, pad byte)
        at = 12
        while at + 8 <= len(data):
            size = int.from_bytes(data[at + 4:at + 8], "little")
            if data[at:at + 4] == b"EXIF":
                block = data[at + 8:at + 8 + size]
                return block[6:] if block[:6] == b"Exif\x00\x00" else block
            at += 8 + size + (size & 1)
    return b""


_TIFF_MAGIC = (b"II*\x00", b"MM\x00*")


def _upright(pixels: np.ndarray, turn: Turn) -> np.ndarray:
    if turn == _UPRIGHT:
        return pixels
    transpose, flip_rows, flip_cols = turn
    if transpose:
        pixels = pixels.transpose(1, 0, 2)
    return np.ascontiguousarray(pixels[::-1 if flip_rows else 1, ::-1 if flip_cols else 1])


def _first_frame(container: av.container.InputContainer, stream: av.video.stream.VideoStream):
    """The stream's first frame (which carries the stream's display matrix), or None where none decodes here (then
    :func:`read_frames` reports why)."""
    try:
        for frame in container.decode(stream):
            return frame
    except av.error.FFmpegError:
        pass
    return None


def _is_hd(width: int, height: int) -> bool:
    """The players' rule for untagged YUV: BT.709 for HD pictures, BT.601 below (see the module doc)."""
    return width >= 1280 or height > 576


@functools.lru_cache(maxsize=32)
def _rgb48_white(pix_fmt: str, colorspace: int, color_range: int, src_colorspace: Colorspace | None) -> int:
    """The 16-bit RGB level that swscale gives a deep format's nominal white, and takes for it on the way back.

    It is not 65535: for YUV deeper than 8 bits swscale scales to 16 bits as if by a shift (measured with FFmpeg 8:
    10-bit limited-range white, Y 940, gives 65283; full-range Y 1023 gives 65472), the same gain on every level. So
    reading divides by this level and writing multiplies by it, and white is 1.0 both ways, as in the 8-bit path.
    Found by converting a flat frame of that white; 65535 for layouts other than planar little-endian."""
    fmt = av.VideoFormat(pix_fmt)
    planes = [c.plane for c in fmt.components]
    if len(set(planes)) != len(planes) or not pix_fmt.endswith("le") or _format_bits(fmt) <= 8:
        return 65535
    probe = av.VideoFrame(16, 16, pix_fmt)
    for c in fmt.components:
        top = (1 << c.bits) - 1
        if c.is_luma:
            code = top if color_range == 2 else 235 << (c.bits - 8)
        else:  # (PyAV's is_chroma is 0 for 4:4:4 chroma)
            code = top if c.is_alpha or fmt.is_rgb else 1 << (c.bits - 1)
        np.frombuffer(probe.planes[c.plane], dtype="<u2")[:] = code
    probe.colorspace, probe.color_range = colorspace, color_range
    kwargs = {} if src_colorspace is None else {"src_colorspace": src_colorspace}
    return int(probe.to_ndarray(format="rgb48le", interpolation=_SWS_FLAGS, **kwargs)[8, 8, 1])


def _video_to_array(frame: av.VideoFrame, deep: bool, turn: Turn) -> np.ndarray:
    kwargs: dict[str, Any] = {"interpolation": _SWS_FLAGS}
    if not frame.format.is_rgb and frame.colorspace == 2:  # unspecified: the players' HD rule, see module doc
        kwargs["src_colorspace"] = Colorspace.ITU709 if _is_hd(frame.width, frame.height) else Colorspace.ITU601
    if deep:
        white = _rgb48_white(frame.format.name, int(frame.colorspace), int(frame.color_range),
                             kwargs.get("src_colorspace"))
        image = np.minimum(frame.to_ndarray(format="rgb48le", **kwargs).astype(np.float32) / np.float32(white), 1)
    else:
        image = frame.to_ndarray(format="rgb24", **kwargs).astype(np.float32) / np.float32(255)
    return _upright(image, turn)


def _stream_declared_end(stream: av.video.stream.VideoStream) -> float | None:
    # Matroska keeps the stream's true end in a DURATION tag written when the file was finished; a truncated copy
    # still carries it, while its demuxer silently drops the cut cluster. That tag is the only trace of the loss.
    tag = stream.metadata.get("DURATION") or stream.metadata.get("duration")
    match = re.fullmatch(r"(\d+):(\d+):(\d+(?:\.\d+)?)", tag or "")
    if not match:
        return None
    h, m, s = match.groups()
    return int(h) * 3600 + int(m) * 60 + float(s)


class _FrameClock:
    """A decoded frame's time.

    Most containers store presentation times: a frame's pts, as FFmpeg's ``best_effort_timestamp`` gives it
    (``guess_correct_pts``: its pts, unless the pts have gone backwards more often than the dts, then its dts).
    AVI stores none: each packet sits in a frame slot (its dts), and a reordered (B-)frame leaves the decoder when a
    later packet goes in, carrying that packet's dts; its time is that dts less the decoder's reorder delay, measured
    on the first frame against the first packet (:meth:`packet`). Frames flushed from the decoder at the end have no
    dts: on the dts clock they follow at its last step."""

    def __init__(self, by_dts: bool) -> None:
        self.by_dts = by_dts
        self.faulty_pts = self.faulty_dts = 0
        self.last_pts = self.last_dts = self.first_dts = self.delay = self.last = self.step = None

    def packet(self, dts: int | None) -> None:
        if self.first_dts is None:
            self.first_dts = dts

    def __call__(self, pts: int | None, dts: int | None) -> int | None:
        if dts is not None:
            self.faulty_dts += self.last_dts is not None and dts <= self.last_dts
            self.last_dts = dts
        if pts is not None:
            self.faulty_pts += self.last_pts is not None and pts <= self.last_pts
            self.last_pts = pts
        on_dts = self.by_dts or self.faulty_pts > self.faulty_dts
        if on_dts and dts is None and self.last is not None and self.step:
            out = self.last + self.step
        elif on_dts and dts is not None:
            if self.by_dts and self.delay is None:
                self.delay = dts - (dts if self.first_dts is None else self.first_dts)
            out = dts - (self.delay or 0)
        else:
            out = pts
        if out is not None and self.last is not None and out > self.last:
            self.step = out - self.last
        self.last = out if out is not None else self.last
        return out


def read_frames(path: str | os.PathLike, start: int = 0, stop: int | None = None) -> Iterator[Frame]:
    """Yield frames ``start <= index < stop`` in decode order; frames before ``start`` are decoded and skipped.

    A stream that breaks midway yields what decodes and then raises :class:`InputError` naming the frame number.
    """
    path = Path(path)
    if start < 0 or (stop is not None and stop < start):
        raise ValueError(f"bad frame range start={start} stop={stop}")
    if path.is_dir():
        yield from _read_folder(path, start, stop)
        return
    with _open_input(path) as container:
        stream = _video_stream(container, path)
        stream.thread_type = "AUTO"
        codec = stream.codec_context
        deep = _format_bits(codec.format) > 8
        tb = stream.time_base
        index = 0
        last_time: float | None = None
        step: float | None = None
        last_corrupt = False

        turn: Turn | None = None
        size: tuple[int, int] | None = None
        clock = _FrameClock(by_dts=container.format.name == "avi")

        def emit(frame: av.VideoFrame) -> Frame | None:
            nonlocal index, last_time, step, turn, size
            index += 1
            pts = clock(frame.pts, frame.dts)
            if turn is None:  # the stream's, from its first frame (a resumed run too): every frame gets one shape
                turn, size = display_turn(frame, _image_bytes(path)), (frame.width, frame.height)
            elif (frame.width, frame.height) != size:
                (w, h), (w0, h0) = ((x[::-1] if turn[0] else x) for x in ((frame.width, frame.height), size))
                raise InputError(f"{path}: frame {index - 1} is {w}x{h} but the frames before it are {w0}x{h0} (the "
                                 f"video changes size midway); scale it to one size first (ffmpeg -i {path.name} -vf "
                                 f"scale={w0}:{h0} OUT.mkv) or cut it where the size changes")
            if pts is not None and tb is not None:
                t = float(pts * tb)
                if last_time is not None and t > last_time:
                    step = t - last_time
                last_time = t
            if index - 1 < start:
                return None
            return Frame(index=index - 1, pts=pts, image=_video_to_array(frame, deep, turn))

        def failure(reason: str) -> InputError:
            t = last_time + (step or 0.0) if last_time is not None else 0.0
            return InputError(f"{path}: decoding stopped at frame {index} (t={t:.3f}s): {reason}; "
                              "the frames before it were processed")

        try:
            for packet in container.demux(stream):
                if packet.size:
                    last_corrupt = packet.is_corrupt
                    clock.packet(packet.dts)
                for frame in codec.decode(packet):
                    out = emit(frame)
                    if out is not None:
                        yield out
                    if stop is not None and index >= stop:
                        return
        except av.error.FFmpegError as exc:
            # The decoder still holds frames (reordering, frame threads); they decoded fine, so hand them out.
            try:
                drained = codec.decode(None)
            except av.error.FFmpegError:
                drained = []
            for frame in drained:
                out = emit(frame)
                if out is not None:
                    yield out
                if stop is not None and index >= stop:
                    return
            raise failure(_reason(exc)) from None
        if last_corrupt:
            # A frame-threaded decoder drops a broken packet without an error; the demuxer's flag on the final
            # packet (MP4/MOV cut short) is then the sign that the file ends mid-frame.
            raise failure("the last packet is incomplete (truncated file?)")
        declared = _stream_declared_end(stream)
        if declared is not None and last_time is not None and step:
            ended = last_time + step
            if declared - ended > max(0.5, 2 * step):
                raise failure(f"the stream ends at {ended:.3f}s but the file declares {declared:.3f}s (truncated?)")


def _decode_image(path: Path) -> tuple[av.VideoFrame, Turn]:
    """The picture of an image file and what turns it upright (:func:`display_turn`)."""
    codec = _IMAGE_CODECS.get(path.suffix.lower())
    if codec is not None and path.is_file():
        try:
            ctx = av.CodecContext.create(codec, "r")
            data = path.read_bytes()
            frames = ctx.decode(av.Packet(data)) or ctx.decode(None)  # some decoders hold it back
            if frames:
                return frames[0], display_turn(frames[0], data)
        except PermissionError as exc:
            raise InputError(f"{path}: cannot be read ({exc.strerror}); check its permissions") from None
        except av.error.FFmpegError:
            pass  # misnamed or unusual: let the demuxer probe the content (and name the error)
    with _open_input(path) as container:
        try:
            stream = _video_stream(container, path)
            for frame in container.decode(stream):
                return frame, display_turn(frame, _image_bytes(path))
        except av.error.FFmpegError as exc:
            raise InputError(f"{path}: image cannot be decoded ({_reason(exc)}); replace or remove it") from None
    raise InputError(f"{path}: holds no picture; replace or remove it")


def _image_pixels(path: Path) -> np.ndarray:
    """An image file's pixels, upright, at their stored depth (uint8 or uint16)."""
    frame, turn = _decode_image(path)
    return _upright(_stored_pixels(frame), turn)


def _stored_pixels(frame: av.VideoFrame) -> np.ndarray:
    fmt = frame.format
    deep = _format_bits(fmt) > 8
    gray = not fmt.is_rgb and not fmt.has_palette and not any(c.is_chroma for c in fmt.components)
    if gray:
        plane = frame.to_ndarray(format="gray16le" if deep else "gray", interpolation=_SWS_FLAGS)
        return np.repeat(plane[:, :, None], 3, axis=2)
    if any(c.is_alpha for c in fmt.components) or fmt.has_palette:
        # Convert with the alpha kept and slice it off, so swscale cannot blend it into the colour.
        rgba = frame.to_ndarray(format="rgba64le" if deep else "rgba", interpolation=_SWS_FLAGS)
        return np.ascontiguousarray(rgba[:, :, :3])
    return frame.to_ndarray(format="rgb48le" if deep else "rgb24", interpolation=_SWS_FLAGS)


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read one image (png, jpg, tif, webp, bmp; 8 or 16 bits) as (H, W, 3) float32 RGB in [0, 1]."""
    return to_unit(_image_pixels(Path(path)))


def read_image_pixels(path: str | os.PathLike) -> np.ndarray:
    """Read one image as (H, W, 3) RGB integers at the stored depth: uint8 for 8-bit files, uint16 for deeper ones."""
    return _image_pixels(Path(path))


def to_unit(pixels: np.ndarray) -> np.ndarray:
    """8- or 16-bit pixels -> float32 in [0, 1]."""
    return pixels.astype(np.float32) / np.float32(255 if pixels.dtype == np.uint8 else 65535)


def _read_folder(folder: Path, start: int, stop: int | None) -> Iterator[Frame]:
    files = _folder_files(folder)
    first = _image_pixels(files[0])
    for index, file in enumerate(files[start:stop], start=start):
        pixels = first if index == 0 else _image_pixels(file)
        if pixels.shape != first.shape:
            (h, w), (h0, w0) = pixels.shape[:2], first.shape[:2]
            raise InputError(f"{file}: size {w}x{h} (upright) differs from {files[0].name} ({w0}x{h0}); all frames "
                             "of a folder must have the same size")
        yield Frame(index=index, pts=index, image=to_unit(pixels), name=file.name)


# ----------------------------------------------------------------------------------------------------------- writing


def quantize8(image: np.ndarray) -> np.ndarray:
    """Float [0, 1] -> uint8 exactly as the reference evaluation quantises outputs (BasicSR's tensor2img: float32,
    clamp, x255, round half to even), so a restored PNG holds the very pixels the published metrics were scored on."""
    return np.rint(np.clip(image.astype(np.float32, copy=False), 0, 1) * np.float32(255)).astype(np.uint8)


def output_pix_fmt(bit_depth: int, encoder: str = "libx264") -> str:
    """The default output pixel format for a source of ``bit_depth`` bits: 10-bit 4:2:0 for a deeper source where
    ``encoder`` has it (libx264 stops at 10 bits; the libvpx-vp9 of PyAV's wheels has no 10-bit), else 8-bit."""
    try:
        formats = {f.name for f in av.Codec(encoder, "w").video_formats or ()}
    except ValueError:  # an unknown encoder: check_container says so
        formats = set()
    return "yuv420p10le" if bit_depth > 8 and (not formats or "yuv420p10le" in formats) else "yuv420p"


def _color_code(key: str, value: str | int) -> int:
    if isinstance(value, int):
        return value
    for code, name in _COLOR_TABLES[key].items():
        if name == value:
            return code
    raise ValueError(f"unknown {key} {value!r}; expected one of {sorted(_COLOR_TABLES[key].values())}")


def _temp_beside(path: Path, tag: str) -> Path:
    # Hidden, unique per process, and keeping the suffix so FFmpeg still guesses the container from the name.
    return path.with_name(f".{path.stem}.{tag}-{os.getpid()}{path.suffix}")


def _check_writable_dir(path: Path) -> None:
    parent = path.parent
    if not parent.is_dir():
        raise OutputError(f"{path}: folder {parent} does not exist; create it first")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"{path}: folder {parent} is not writable; choose another output location")


class _ChromaSubsampler:
    """RGB frames -> subsampled YUV with *left-sited* chroma, as decoders assume for H.264/HEVC (and MPEG-2) video that
    does not say otherwise: each chroma sample sits on the even luma columns, vertically between two rows.

    ``VideoFrame.reformat`` cannot be told where the chroma samples sit and subsamples them centred between luma
    columns, which a decoder then shows shifted by half a luma pixel (measured: an RGB edge at x = 15.5 came back at
    15.2). FFmpeg's ``scale`` filter takes the output chroma position; one filter graph per input format."""

    def __init__(self, width: int, height: int, pix_fmt: str, matrix: Colorspace, color_range: ColorRange) -> None:
        self.width, self.height, self.pix_fmt = width, height, pix_fmt
        self.options = (f"flags={_SCALE_ENCODE_FLAGS}:out_color_matrix={_SCALE_MATRIX.get(matrix, 'bt709')}"
                        f":out_range={'pc' if color_range == ColorRange.JPEG else 'tv'}"
                        ":out_h_chr_pos=0:out_v_chr_pos=128")
        self._graphs: dict[str, av.filter.Graph] = {}

    def __call__(self, frame: av.VideoFrame) -> av.VideoFrame:
        name = frame.format.name  # rgb24 or rgb48le
        graph = self._graphs.get(name)
        if graph is None:
            graph = self._graphs[name] = av.filter.Graph()
            chain = [graph.add_buffer(width=self.width, height=self.height, format=name, time_base=Fraction(1, 1)),
                     graph.add("scale", self.options), graph.add("format", self.pix_fmt), graph.add("buffersink")]
            for a, b in itertools.pairwise(chain):
                a.link_to(b)
            graph.configure()
        frame.pts = 0  # the caller sets the real timestamp on the result
        graph.push(frame)
        return graph.pull()


class SegmentWriter:
    """Encode the frames of one output segment into a standalone NUT file, atomically.

    Frames are written to a hidden temp file that :meth:`close` renames onto ``path``; :meth:`abort` (or leaving the
    ``with`` block by an exception) deletes it, so ``path`` only ever names a finished segment. The same frames,
    timestamps and settings give the same bytes (fixed encoder threads, ``+bitexact``).
    """

    def __init__(self, path: str | os.PathLike, *, width: int, height: int, time_base: Fraction, fps: Fraction,
                 codec: str = "libx264", crf: int = DEFAULT_CRF, pix_fmt: str = "yuv420p", color: dict | None = None,
                 options: dict | None = None, sample_aspect_ratio: Fraction | None = None) -> None:
        self.path = Path(path)
        self.width, self.height = width, height
        self.time_base = Fraction(time_base)
        self._last_pts: int | None = None
        self._frames = 0
        fmt = av.VideoFormat(pix_fmt)
        self._deep = _format_bits(fmt) > 8
        subsampled = fmt.chroma_width(16) < 16 or fmt.chroma_height(16) < 16
        if subsampled:
            if width % 2 or height % 2:
                raise OutputError(f"{self.path}: {width}x{height} cannot be encoded as {pix_fmt} (needs even sizes); "
                                  "crop or pad the frames, or use pix_fmt yuv444p")
        _check_writable_dir(self.path)
        color = dict(color or {})
        codes = {key: _color_code(key, color[key]) for key in _COLOR_TABLES if key in color}
        if fmt.is_rgb:
            # RGB planes: H.264/HEVC decoders read any matrix but "gbr" (0) as YUV, so a source's matrix must not pass.
            codes["colorspace"], codes["color_range"] = 0, 2
        else:
            # An untagged source: encode with the matrix that players assume for the output's size, and tag it.
            codes.setdefault("colorspace", 1 if _is_hd(width, height) else 6)  # BT.709 or SMPTE 170M (BT.601)
            codes.setdefault("color_range", 1)
        self._matrix = _SWS_MATRIX.get(codes.get("colorspace", 1), Colorspace.ITU709)
        self._range = ColorRange.JPEG if codes.get("color_range") == 2 else ColorRange.MPEG
        if not fmt.is_rgb and self._matrix is Colorspace.ITU709 and codes["colorspace"] != 1:
            codes["colorspace"] = 1  # a matrix swscale cannot do was replaced by BT.709: tag the truth
        self._pix_fmt = pix_fmt
        # The 16-bit RGB level that becomes this format's white (see _rgb48_white): 1.0 and 65535 are written as it.
        self._white = 65535 if fmt.is_rgb else _rgb48_white(pix_fmt, codes["colorspace"], codes["color_range"], None)
        self._subsample = _ChromaSubsampler(width, height, pix_fmt, self._matrix, self._range) if subsampled else None

        enc_options = {"crf": str(crf)} if codec in _CRF_CODECS else {}
        if codec == "libx265":
            enc_options["x265-params"] = f"log-level=error:pools={ENCODER_THREADS}:frame-threads=1"
        if codec in ("libx264", "libx264rgb"):
            # x264's macroblock-tree lookahead gives other bytes from run to run for the same pictures, so a resumed
            # run would not rebuild the same file. Measured with `edvr restore` (the same frames and encoder input,
            # hashed): 208x144 output 3 different files in 12 runs, 704x576 3 in 8; with mbtree=0 one file in 12
            # and in 8. (Encoding the frames alone, in a loop, hid it above 128x64.)
            enc_options["x264-params"] = "mbtree=0"
        if codec == "libvpx-vp9":
            # Constant quality (with a crf alone libvpx still caps the bitrate). Its default speed, cpu-used 1,
            # encoded 704x576 noisy frames at 0.2 frames/s on a 2-core machine, cpu-used 4 with row-mt at 2.6.
            enc_options.update({"b": "0", "deadline": "good", "cpu-used": "4", "row-mt": "1"})
        enc_options.update({k: str(v) for k, v in (options or {}).items()})
        self._tmp = _temp_beside(self.path, "partial")
        try:
            self._container = av.open(str(self._tmp), mode="w", format="nut",
                                      container_options={"avoid_negative_ts": "disabled", "fflags": "+bitexact"})
        except OSError as exc:
            raise OutputError(f"{self.path}: cannot create ({_reason(exc)}); check the output folder") from None
        try:
            self._stream = self._container.add_stream(codec, rate=fps, options=enc_options)
            cc = self._stream.codec_context
            self._stream.width, self._stream.height, self._stream.pix_fmt = width, height, pix_fmt
            self._stream.time_base = self.time_base
            cc.time_base = self.time_base
            cc.framerate = Fraction(fps)
            cc.thread_count = ENCODER_THREADS
            if sample_aspect_ratio is not None:
                cc.sample_aspect_ratio = Fraction(sample_aspect_ratio)
            for key, code in codes.items():
                setattr(cc, key, code)
        except Exception:
            self.abort()
            raise

    def write(self, image: np.ndarray, pts: int) -> None:
        """Encode one frame; ``pts`` is the source frame's timestamp in ``time_base`` units, strictly increasing."""
        if image.shape != (self.height, self.width, 3):
            raise ValueError(f"frame of shape {image.shape}, expected {(self.height, self.width, 3)}")
        if self._last_pts is not None and pts <= self._last_pts:
            raise ValueError(f"pts {pts} does not increase (previous {self._last_pts})")
        if image.dtype == np.uint8:
            rgb = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
        else:
            unit = image.astype(np.float32) / np.float32(65535) if image.dtype == np.uint16 else image
            if self._deep:
                arr = (np.clip(unit, 0, 1) * np.float32(self._white) + np.float32(0.5)).astype("<u2")
                rgb = av.VideoFrame.from_ndarray(arr, format="rgb48le")
            else:  # rgb24 is exact; swscale's rgb48 -> 8-bit YUV put 16-bit white at Y 236
                rgb = av.VideoFrame.from_ndarray(quantize8(unit), format="rgb24")
        if self._subsample is not None:
            frame = self._subsample(rgb)
        else:
            frame = rgb.reformat(format=self._pix_fmt, dst_colorspace=self._matrix, dst_color_range=self._range,
                                 interpolation=_SWS_ENCODE_FLAGS)
        frame.pts = int(pts)
        frame.time_base = self.time_base
        try:
            self._container.mux(self._stream.encode(frame))
        except av.error.FFmpegError as exc:
            raise OutputError(f"{self.path}: encoding failed ({_reason(exc)})") from None
        self._last_pts = int(pts)
        self._frames += 1

    def close(self) -> None:
        """Flush the encoder and move the finished segment onto ``path``."""
        if self._container is None:
            return
        if not self._frames:
            self.abort()
            raise ValueError(f"{self.path}: no frames were written to this segment")
        try:
            self._container.mux(self._stream.encode(None))
            self._container.close()
            self._container = None
            os.replace(self._tmp, self.path)
        except (av.error.FFmpegError, OSError) as exc:
            self.abort()
            raise OutputError(f"{self.path}: cannot finish the segment ({_reason(exc)}); check free space") from None

    def abort(self) -> None:
        """Drop the segment: nothing is left at ``path`` or under the temp name."""
        container, self._container = getattr(self, "_container", None), None
        if container is not None:
            try:
                container.close()
            except Exception:  # noqa: BLE001 - the file is deleted next; its state no longer matters
                pass
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> SegmentWriter:
        return self

    def __exit__(self, exc_type: type | None, *_: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def _segment_pts(segment: Path) -> tuple[list[int], Fraction]:
    with _open_segment(segment) as container:
        stream = container.streams.video[0]
        return [p.pts for p in container.demux(stream) if p.size], stream.time_base


def _open_segment(segment: Path) -> av.container.InputContainer:
    if not segment.is_file():
        raise OutputError(f"{segment}: segment is missing; rerun to encode it again")
    try:
        container = av.open(str(segment), mode="r", format="nut")
    except av.error.FFmpegError as exc:
        raise OutputError(f"{segment}: segment is unreadable ({_reason(exc)}); delete it and rerun") from None
    if not container.streams.video:
        container.close()
        raise OutputError(f"{segment}: segment has no video; delete it and rerun")
    return container


def _decode_timestamps(pts: list[int]) -> list[int]:
    """DTS for packets in decode order: the sorted PTS delayed by the largest reordering depth.

    With depth D, packet i gets the (i - D)-th smallest PTS, which never exceeds its own PTS and strictly increases
    across segment boundaries too; the first D packets get 1-tick steps before the first PTS (negative DTS, as x264
    itself would write). Recomputing, rather than trusting each segment's encoder, is what keeps the join legal.
    """
    order = sorted(pts)
    if len(set(order)) != len(order):
        raise OutputError("segments repeat a timestamp; delete the work folder and rerun")
    rank = {p: r for r, p in enumerate(order)}
    depth = max((i - rank[p] for i, p in enumerate(pts)), default=0)
    return [order[i - depth] if i >= depth else order[0] - (depth - i) for i in range(len(pts))]


def _video_packets(segments: list[Path], dts: list[int], template_extradata: bytes | None) -> Iterator[av.Packet]:
    i = 0
    for segment in segments:
        with _open_segment(segment) as container:
            stream = container.streams.video[0]
            if stream.codec_context.extradata != template_extradata:
                raise OutputError(f"{segment}: encoded with other settings than the first segment; "
                                  "delete the work folder and rerun")
            for packet in container.demux(stream):
                if not packet.size:
                    continue
                packet.dts = dts[i]
                i += 1
                yield packet


def _source_packets(container: av.container.InputContainer, streams: list) -> Iterator[av.Packet]:
    for packet in container.demux(*streams):
        if packet.size:
            yield packet


def _packet_time(packet: av.Packet) -> Fraction:
    ts = packet.dts if packet.dts is not None else packet.pts
    return Fraction(ts or 0) * packet.time_base


def _copy_chapters_and_attachments(src: av.container.InputContainer, out: av.container.OutputContainer, dst: Path,
                                   start: Fraction) -> None:
    chapters = src.chapters()
    for chapter in chapters:
        shift = round(start / chapter["time_base"])
        chapter["start"], chapter["end"] = max(0, chapter["start"] - shift), max(0, chapter["end"] - shift)
    if chapters:
        out.set_chapters(chapters)
    if dst.suffix.lower() == ".mkv":  # WebM, MP4 and the others hold none
        for stream in src.streams.attachments:
            if stream.name and stream.mimetype:
                out.add_attachment(stream.name, stream.mimetype, stream.data)


def _put_back_colour(out_video: Any, source: av.video.stream.VideoStream) -> None:
    """Give the output the source's primaries and transfer where the segments lost them.

    A VP9 bitstream carries the matrix and range but not these two, and NUT segments have no field for them: in
    WebM/Matroska (and MP4's vpcC) the container holds them, and without them players take BT.2020 for BT.709 and
    PQ/HLG for SDR. :class:`SegmentWriter` passes both through unchanged, so the source's are the output's."""
    for key in ("color_primaries", "color_trc"):
        code = int(getattr(source.codec_context, key) or 0)
        if code in _COLOR_TABLES[key] and int(getattr(out_video.codec_context, key) or 0) == 2:
            setattr(out_video.codec_context, key, code)


def _copy_tags(src: dict, dst: Any) -> None:
    for key, value in src.items():
        low = key.lower()
        if low not in _STALE_TAGS and not low.startswith("_statistics") and not low.startswith("duration"):
            dst.metadata[key] = value


def _mp4_timescale(time_base: Fraction) -> int:
    # movenc picks the track timescale this way; the movie (edit list) timescale must match it or edits round.
    scale = time_base.denominator
    while scale < 10000:
        scale *= 2
    return scale


_COPIED_TYPES = ("audio", "subtitle")  # the source streams that finalize_video copies into the output
_CLOCK_FORMATS = {"mpegts", "mpeg"}  # timestamps from a broadcast clock: moved to start at 0


def check_crf(codec: str, crf: int | None) -> int | None:
    """The constant-quality level ``codec`` will encode with (the default where none is asked for); an InputError for
    a level out of the encoder's range, or for an encoder without this mode."""
    if codec not in _CRF_CODECS:
        if crf is not None:
            raise InputError(f"--crf {crf}: {codec} has no constant-quality mode here; leave --crf out, or use one of "
                             f"{', '.join(sorted(_CRF_CODECS))}")
        return None
    low, top = _CRF_MIN.get(codec, 0), _CRF_MAX.get(codec, 63)
    if crf is not None and not low <= crf <= top:
        raise InputError(f"--crf {crf}: {codec} takes {low} (best) to {top}; {DEFAULT_CRF} is the default")
    return DEFAULT_CRF if crf is None else crf


def default_codec(dst: Path) -> str:
    """The encoder of a video output when none is asked for: VP9 for WebM (which cannot hold H.264), else H.264."""
    return "libvpx-vp9" if Path(dst).suffix.lower() == ".webm" else "libx264"


def _stream_codec(stream: Any) -> tuple[str, str]:
    return f"{stream.type} stream #{stream.index}", stream.codec_context.name


def _refuse_unheld(out: av.container.OutputContainer, dst: Path, streams: list[tuple[str, str]]) -> None:
    supported = out.supported_codecs
    for what, name in streams:
        if name not in supported:
            hint = ", or another --codec" if what.endswith("encodes") else ""
            raise OutputError(f"{dst}: a {dst.suffix} file cannot hold the {what} ({name}); use .mkv, which holds it"
                              f"{hint}")


def check_container(dst: Path, encoder: str, pix_fmt: str, source: Path | None) -> None:
    """Before any work: fail if ``encoder`` does not exist or cannot encode ``pix_fmt``, or if ``dst``'s container
    (from its extension) cannot hold the video it encodes or a stream that :func:`finalize_video` would copy from
    ``source``."""
    dst = Path(dst)
    try:
        codec = av.Codec(encoder, "w")
    except ValueError:  # UnknownCodecError
        codec = None
    if codec is None or codec.type != "video":
        raise OutputError(f"--codec {encoder}: not a video encoder of this FFmpeg (PyAV {av.__version__}); "
                          "try libx264, libx265 or libvpx-vp9")
    formats = {f.name for f in codec.video_formats or ()}
    if formats and pix_fmt not in formats:
        raise OutputError(f"--pix-fmt {pix_fmt}: {encoder} cannot encode it; choose one of {', '.join(sorted(formats))}")
    streams = [(f"video stream that {encoder} encodes", codec.canonical_name)]
    if source is not None and Path(source).is_file():
        with _open_input(Path(source)) as src:
            streams += [_stream_codec(s) for s in src.streams if s.type in _COPIED_TYPES]
    with tempfile.TemporaryDirectory() as tmp, _open_output(Path(tmp) / f"probe{dst.suffix}", dst) as out:
        _refuse_unheld(out, dst, streams)


def _open_output(path: Path, dst: Path, options: dict | None = None) -> av.container.OutputContainer:
    """Open ``path`` for writing in the container of ``dst``'s extension."""
    try:
        return av.open(str(path), mode="w", container_options=options or {})
    except (ValueError, av.error.FFmpegError) as exc:
        raise OutputError(f"{dst}: no container for the extension {dst.suffix!r} ({_reason(exc)}); "
                          "use .mp4, .mkv or .mov") from None


def finalize_video(segments: list[Path], dst: Path, *, source: Path | None, overwrite: bool = False,
                   temp_dir: Path | None = None) -> None:
    """Join the segments' video packets (no re-encoding) with the source's audio and subtitle packets into ``dst``.

    Every video frame keeps its timestamp (exactly in MP4/MOV/NUT, to the container's 1 ms in Matroska/WebM), the
    source's audio and subtitle packets are copied unchanged, and so are its chapters and (into Matroska) its
    attachments, such as the fonts of styled subtitles. MPEG transport and program streams (.ts, .m2ts, .mpg,
    .vob) carry a broadcast clock that starts anywhere, often hours in: their output starts at 0, as ``ffmpeg``
    writes it, every stream moved by the same amount (in other containers a late start is the file's own). The
    container follows ``dst``'s extension, and the file appears under ``dst`` only once complete; until then it is
    written into ``temp_dir`` (default: beside ``dst``), on the same file system.
    """
    dst = Path(dst)
    segments = [Path(s) for s in segments]
    if not segments:
        raise ValueError("finalize_video needs at least one segment")
    if source is not None and dst.exists() and os.path.samefile(dst, source):  # (IN.MP4 on a disk blind to case too)
        raise OutputError(f"{dst}: is the input video; choose another output name")
    if dst.exists() and not overwrite:
        raise OutputError(f"{dst}: already exists; pass overwrite (--overwrite) or choose another name")
    if dst.is_dir():
        raise OutputError(f"{dst}: is a folder; give a file name such as {dst / 'restored.mp4'}")
    _check_writable_dir(dst)

    pts: list[int] = []
    time_base = None
    for segment in segments:
        seg_pts, seg_tb = _segment_pts(segment)
        if time_base is not None and seg_tb != time_base:
            raise OutputError(f"{segment}: time base {seg_tb} differs from the first segment's {time_base}; "
                              "delete the work folder and rerun")
        time_base = seg_tb
        pts += seg_pts
    dts = _decode_timestamps(pts)

    tmp = _temp_beside(dst, "partial") if temp_dir is None else Path(temp_dir) / f"final-{os.getpid()}{dst.suffix}"
    first = _open_segment(segments[0])
    src = None
    out = None
    try:
        extra: list = []
        if source is not None and Path(source).is_file():
            src = _open_input(Path(source))
            extra = [s for s in src.streams if s.type in _COPIED_TYPES]
        options = {"fflags": "+bitexact"}
        if dst.suffix.lower().lstrip(".") in _MP4_LIKE:
            options["movie_timescale"] = str(_mp4_timescale(time_base))
            options["video_track_timescale"] = str(_mp4_timescale(time_base))
        out = _open_output(tmp, dst, options)
        template = first.streams.video[0]
        _refuse_unheld(out, dst, [_stream_codec(s) for s in [template, *extra]])
        out_video = out.add_stream_from_template(template)
        out_video.time_base = time_base
        if src is not None:
            _put_back_colour(out_video, _video_stream(src, Path(source)))
        mapping = {}
        for stream in extra:
            copy = out.add_stream_from_template(stream)
            copy.time_base = stream.time_base
            copy.disposition = stream.disposition
            _copy_tags(stream.metadata, copy)
            mapping[stream.index] = copy
        start = Fraction(0)
        if src is not None:
            _copy_tags(src.metadata, out)
            if src.format.name in _CLOCK_FORMATS and src.start_time is not None and src.start_time > 0:
                start = Fraction(src.start_time, av.time_base)
            _copy_chapters_and_attachments(src, out, dst, start)

        video = _video_packets(segments, dts, template.codec_context.extradata)
        sources = [_source_packets(src, extra)] if extra else []
        shifts: dict[Fraction, int] = {}
        for packet in heapq.merge(video, *sources, key=_packet_time):
            if start:
                shift = shifts.setdefault(packet.time_base, round(start / packet.time_base))
                packet.pts = None if packet.pts is None else packet.pts - shift
                packet.dts = None if packet.dts is None else packet.dts - shift
            packet.stream = out_video if packet.stream.type == "video" else mapping[packet.stream.index]
            out.mux(packet)
        out.close()
        out = None
        os.replace(tmp, dst)
    except av.error.FFmpegError as exc:
        raise OutputError(f"{dst}: cannot write ({_reason(exc)}); check free space and the output format") from None
    finally:
        for container in (out, src, first):
            if container is not None:
                try:
                    container.close()
                except Exception:  # noqa: BLE001 - cleanup after an error that is already being reported
                    pass
        tmp.unlink(missing_ok=True)


def write_image(path: str | os.PathLike, image: np.ndarray, bit_depth: int = 8) -> None:
    """Write (H, W, 3) RGB (float [0, 1], uint8 or uint16) as an 8- or 16-bit PNG, atomically."""
    path = Path(path)
    if bit_depth not in (8, 16):
        raise ValueError(f"bit_depth must be 8 or 16, not {bit_depth}")
    if path.suffix.lower() != ".png":
        raise OutputError(f"{path}: frames are written as PNG; name the file *.png")
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) image, got shape {image.shape}")
    _check_writable_dir(path)
    if bit_depth == 16:
        arr = image.astype("<u2") * 257 if image.dtype == np.uint8 else image
        if arr.dtype != np.uint16:
            arr = (np.clip(arr, 0.0, 1.0) * 65535.0 + 0.5).astype("<u2")
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(arr, dtype="<u2"), format="rgb48le")
        frame = frame.reformat(format="rgb48be")
    else:
        arr = image if image.dtype == np.uint8 else None
        if image.dtype == np.uint16:
            arr = ((image.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
        elif arr is None:
            arr = quantize8(image)
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(arr), format="rgb24")
    codec = av.CodecContext.create("png", "w")
    codec.width, codec.height, codec.pix_fmt = frame.width, frame.height, frame.format.name
    data = b"".join(bytes(p) for p in [*codec.encode(frame), *codec.encode(None)])
    tmp = _temp_beside(path, "partial")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError as exc:
        raise OutputError(f"{path}: cannot write ({exc.strerror}); check free space and permissions") from None
    finally:
        tmp.unlink(missing_ok=True)
