"""``drive-viz synth``: record the expert driving the synthetic world into a recording folder."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from tqdm import tqdm

from drive_viz.errors import DriveVizError, OptionError
from drive_viz.recording.format import MASK_CLASSES, RecordingMeta
from drive_viz.recording.writer import RecordingWriter
from drive_viz.sim.config import SyntheticWorldConfig
from drive_viz.sim.world import POSE_COLUMNS, RecordedPose, SyntheticWorld

SOURCE = "synthetic"


def write_synthetic_recording(out: str | Path, frames: int, seed: int = 0, *, fps: float = 20.0,
                              width: int = 320, height: int = 160, side_cameras: bool = False,
                              masks: bool = True, overwrite: bool = False, progress: bool = False,
                              config: SyntheticWorldConfig | None = None) -> Path:
    """Drive the expert through the world of ``seed`` for ``frames`` frames and write them.

    Each row holds the frame(s) of one state and the expert's steer for that same state
    (normalized, + right); throttle, brake and speed (m/s) are what the car did. The car
    executes the label plus occasional recovery kicks (see ``SyntheticWorld``). ``config``
    overrides the world's settings (its fps, size and side cameras are replaced by the
    arguments). Every row also stores the car's pose (``POSE_COLUMNS``) and meta.json's
    ``extra.world`` the world's settings, so ``drive_viz.attention.counterfactual`` can draw
    any frame again. Returns the recording folder. An interrupted run leaves a readable
    recording of the frames written so far (marked unfinished).
    """
    if frames < 1:
        raise OptionError(f"frames must be at least 1 (got {frames})", "frames")
    try:
        config = dataclasses.replace(config or SyntheticWorldConfig(), fps=fps, width=width,
                                     height=height, side_cameras=side_cameras)
    except ValueError as exc:
        raise DriveVizError(f"synthetic world: {exc}") from None
    world = SyntheticWorld(config, seed)
    meta = RecordingMeta(
        source=SOURCE, fps=fps, cameras=world.cameras,
        mask_classes=dict(MASK_CLASSES) if masks else None,
        extra={"seed": int(seed), "lane": "right",
               "steer_label": "expert pure pursuit on the right lane centre, +right",
               "horizon_fraction": config.horizon_fraction,
               "lane_width_m": config.lane_width, "wheelbase_m": config.wheelbase,
               "max_steer_deg": config.max_steer_deg,
               "world": dataclasses.asdict(config)})
    world.reset(render=False)
    with RecordingWriter(out, meta, overwrite=overwrite, with_masks=masks,
                         extra_columns=POSE_COLUMNS) as writer:
        for _ in tqdm(range(frames), desc="synth", unit="frame", disable=not progress):
            control = world.expert_control()
            observation = world.observe(render=True)
            state = observation.state
            writer.append(steer=control.label, throttle=control.throttle, brake=control.brake,
                          speed=state.speed, t=state.time, images=observation.images,
                          masks=observation.masks if masks else None,
                          extra=RecordedPose.of(state).columns())
            world.step(control.steer, control.throttle, control.brake, render=False)
            if world.off_lane:
                world.reset_to_lane_centre()
    return Path(out)


def run(args: argparse.Namespace) -> int:
    """The ``drive-viz synth`` command."""
    out = write_synthetic_recording(
        args.out, args.frames, args.seed, fps=args.fps, width=args.width, height=args.height,
        side_cameras=args.side_cameras, masks=not args.no_masks, overwrite=args.overwrite,
        progress=not args.quiet)
    print(f"wrote {args.frames} synthetic frames to {out}")
    return 0
