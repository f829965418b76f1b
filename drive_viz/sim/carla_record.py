"""``drive-viz record``: drive a CARLA vehicle on autopilot and write a recording.

Each tick of the synchronous session becomes one row: the center/left/right RGB frames, the
center camera's class mask from the segmentation camera, the control the Traffic Manager
applied in that tick (steer, throttle, brake) and the speed in m/s. Ctrl-C stops recording and
keeps the frames written so far (the recording is closed and marked finished); any other error
leaves the recording unfinished (``finished: false`` in meta.json).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from drive_viz.errors import OptionError
from drive_viz.recording.format import MASK_CLASSES, RecordingMeta
from drive_viz.recording.writer import RecordingWriter
from drive_viz.sim.carla_session import (
    DISTRACTOR_TAGS,
    LANE_MARKING_TAGS,
    ROAD_TAGS,
    CarlaSession,
    SessionConfig,
)


def record(config: SessionConfig, out: str | Path, frames: int, *,
           overwrite: bool = False) -> int:
    """Record ``frames`` ticks of a CARLA session into the recording folder ``out``; return the
    number of frames written. Times ``t`` are simulated seconds since the first written frame."""
    if frames < 1:
        raise OptionError(f"frames {frames} must be at least 1", "frames")
    with CarlaSession(config) as session:
        meta = RecordingMeta(
            source="carla", fps=config.fps, cameras=session.cameras, mask_classes=MASK_CLASSES,
            extra={"town": session.town, "weather": config.weather or "server default",
                   "carla_server_version": session.server_version, "traffic": config.traffic,
                   "seed": config.seed, "mask_tags": {"road": list(ROAD_TAGS),
                                                      "lane_marking": list(LANE_MARKING_TAGS),
                                                      "distractor": list(DISTRACTOR_TAGS)}})
        center = session.cameras[0].name
        with RecordingWriter(out, meta, overwrite=overwrite, with_masks=True) as writer:
            start: float | None = None
            try:
                for _ in range(frames):
                    bundle = session.next_frames()
                    start = bundle.timestamp if start is None else start
                    writer.append(steer=bundle.steer, throttle=bundle.throttle,
                                  brake=bundle.brake, speed=bundle.speed,
                                  t=bundle.timestamp - start, images=bundle.images,
                                  masks={center: bundle.mask})
            except KeyboardInterrupt:
                writer.close()
                print(f"drive-viz: recording stopped; kept {writer.frames_written} frames "
                      f"in {out}", file=sys.stderr)
                raise
        return writer.frames_written


def run(args: argparse.Namespace) -> int:
    """The ``record`` command."""
    config = SessionConfig(
        host=args.host, port=args.port, town=args.town, fps=args.fps, width=args.width,
        height=args.height, fov=args.fov, side_cameras=not args.no_side_cameras,
        traffic=args.traffic, weather=args.weather, seed=args.seed, timeout=args.timeout,
        tm_port=args.tm_port)
    written = record(config, args.out, args.frames, overwrite=args.overwrite)
    print(f"recorded {written} frames at {config.fps:g} fps to {args.out}")
    return 0
