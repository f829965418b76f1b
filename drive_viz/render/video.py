"""H.264 video that browsers play: libx264, yuv420p, MP4 with the moov atom first (faststart).

Written with PyAV (OpenCV's pip wheel cannot write H.264). RGB frames are converted to I420
with OpenCV (BT.601, limited range 16-235; cheaper than PyAV's swscale) into one reused buffer
(the encoder has taken its own copy of each picture before ``encode`` returns), and the
stream is tagged as such (smpte170m), so players show the colours that were drawn.

Default preset ``ultrafast``: on the 1280x720 overlay it costs about 2.6x less CPU per frame
than ``superfast`` for files about 25 % larger (measured: 4.1 vs 11.6 ms CPU, 57 vs 46 KiB per
frame). It is still H.264 (constrained baseline: no CABAC, no B-frames) in yuv420p, which every
browser plays.

Rate control: a constant quantizer (``qp``), not CRF. CRF makes x264 build a half-size copy of
every frame to estimate its complexity; on the replay overlay that is 17 % of the encoder's CPU
(measured in one run, 480 frames: 3.3 against 4.0 ms per frame). QP 24 gives the quality CRF 23
gave there (PSNR-Y 41.4 against 41.1 dB, 52 against 50 KiB per frame).
"""

from __future__ import annotations

import re
from fractions import Fraction
from pathlib import Path
from types import TracebackType

import cv2
import numpy as np

from drive_viz.errors import DriveVizError

DEFAULT_PRESET = "ultrafast"
#: ``--video-quality`` levels: the x264 constant quantizer of each (higher = smaller file).
#: Bitrates measured on the replay overlay are in the README ("Replay").
QUALITY_QP = {"low": 38, "medium": 34, "high": 28}
DEFAULT_QUALITY = "medium"
DEFAULT_QP = QUALITY_QP[DEFAULT_QUALITY]
#: The smallest video the overlay renderer lays out.
MIN_VIDEO_SIZE = (160, 90)


def parse_video_size(text: str) -> tuple[int, int]:
    """``"1280x720"`` -> (1280, 720): even sizes (yuv420p) of at least MIN_VIDEO_SIZE."""
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not match:
        raise DriveVizError(f"video size {text!r}: expected WIDTHxHEIGHT, e.g. 1280x720")
    size = (int(match.group(1)), int(match.group(2)))
    check_video_size(size)
    return size


def check_video_size(size: tuple[int, int]) -> None:
    """DriveVizError unless ``size`` (width, height) is even and at least MIN_VIDEO_SIZE."""
    width, height = size
    if width < MIN_VIDEO_SIZE[0] or height < MIN_VIDEO_SIZE[1]:
        raise DriveVizError(f"video size {width}x{height}: below the minimum "
                            f"{MIN_VIDEO_SIZE[0]}x{MIN_VIDEO_SIZE[1]}")
    if width % 2 or height % 2:
        raise DriveVizError(f"video size {width}x{height}: width and height must be even "
                            "(H.264 yuv420p)")


def quality_qp(quality: str) -> int:
    """The constant quantizer of a named quality level (``QUALITY_QP``)."""
    if quality not in QUALITY_QP:
        raise DriveVizError(f"video quality {quality!r}: expected one of "
                            f"{', '.join(QUALITY_QP)}")
    return QUALITY_QP[quality]


class H264Writer:
    """Append RGB uint8 (height, width, 3) frames to an MP4 file at ``fps`` frames per second.

    ``close()`` flushes the encoder and rewrites the file with the moov atom at the front;
    until then the file is incomplete (callers write to a temp name and rename after close).
    Width and height must be even (yuv420p). ``threads``: libx264 threads (0 = its own choice,
    about 1.5 per core; 1 keeps encoding in the calling thread, the cheapest in CPU when other
    pipeline stages keep the cores busy).
    """

    def __init__(self, path: str | Path, fps: float, size: tuple[int, int] = (1280, 720), *,
                 preset: str = DEFAULT_PRESET, qp: int = DEFAULT_QP,
                 threads: int = 0) -> None:
        import av

        width, height = size
        if width % 2 or height % 2:
            raise ValueError(f"video size {width}x{height} must be even for yuv420p")
        if not fps > 0:
            raise ValueError(f"fps must be positive, not {fps}")
        self.path = Path(path)
        self.size = (width, height)
        self.frames_written = 0
        self._av = av
        self._i420 = np.empty((height * 3 // 2, width), np.uint8)
        self._container = av.open(str(self.path), mode="w", format="mp4",
                                  options={"movflags": "+faststart"})
        rate = Fraction(fps).limit_denominator(1001)
        self._stream = self._container.add_stream("libx264", rate=rate)
        self._stream.width = width
        self._stream.height = height
        self._stream.pix_fmt = "yuv420p"
        self._stream.codec_context.thread_count = threads
        self._stream.options = {
            "preset": preset,
            "qp": str(qp),
            "x264-params": "colorprim=smpte170m:transfer=smpte170m:colormatrix=smpte170m",
        }

    def write(self, rgb: np.ndarray) -> None:
        """Encode one RGB uint8 (height, width, 3) frame."""
        if rgb.shape != (self.size[1], self.size[0], 3) or rgb.dtype != np.uint8:
            raise ValueError(f"expected RGB uint8 {self.size[1]}x{self.size[0]}x3, "
                             f"got {rgb.dtype} {rgb.shape}")
        cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420, dst=self._i420)
        frame = self._av.VideoFrame.from_numpy_buffer(self._i420, format="yuv420p")
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        self.frames_written += 1

    def close(self) -> None:
        """Flush the encoder and finish the file (moov moved to the front)."""
        if self._container is None:
            return
        try:
            for packet in self._stream.encode():
                self._container.mux(packet)
        finally:
            self._container.close()
            self._container = None

    def __enter__(self) -> H264Writer:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def mp4_top_level_boxes(path: str | Path) -> list[str]:
    """The types of an MP4 file's top-level boxes in file order, e.g. ['ftyp', 'moov', 'mdat']."""
    boxes = []
    with open(path, "rb") as handle:
        while True:
            header = handle.read(8)
            if len(header) < 8:
                break
            size = int.from_bytes(header[:4], "big")
            kind = header[4:8].decode("latin-1")
            if size == 1:
                size = int.from_bytes(handle.read(8), "big")
                handle.seek(size - 16, 1)
            elif size == 0:
                boxes.append(kind)
                break
            else:
                handle.seek(size - 8, 1)
            boxes.append(kind)
    return boxes
