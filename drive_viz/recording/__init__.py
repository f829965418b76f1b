"""Recordings: the on-disk format, the one reader, the one writer, and importers."""

from drive_viz.recording.format import MASK_CLASSES, CameraSpec, RecordingMeta
from drive_viz.recording.reader import FrameRow, Recording, open_recording
from drive_viz.recording.writer import RecordingWriter

__all__ = ["MASK_CLASSES", "CameraSpec", "FrameRow", "Recording", "RecordingMeta",
           "RecordingWriter", "open_recording"]
