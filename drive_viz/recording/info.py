"""``drive-viz info REC``: print a recording's summary and its problems."""

from __future__ import annotations

import argparse
import json

from drive_viz.recording.reader import open_recording
from drive_viz.recording.validate import summarize


def run(args: argparse.Namespace) -> int:
    rec = open_recording(args.recording)
    summary = summarize(rec, check_images=not args.no_image_check)
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(f"recording  {summary['path']}")
    print(f"source     {summary['source']}   fps {summary['fps']:g}   "
          f"frames {summary['frames']}   duration {summary['duration_s']:.1f} s")
    for spec in summary["camera_specs"]:
        masks = "with masks" if summary["has_masks"][spec["name"]] else "no masks"
        print(f"camera     {spec['name']}: {spec['width']}x{spec['height']} fov {spec['fov']:g} "
              f"at x={spec['x']:g} y={spec['y']:g} z={spec['z']:g} m, yaw {spec['yaw']:g} deg, "
              f"{masks}")
    if summary["steer_min"] is not None:
        print(f"steer      min {summary['steer_min']:+.3f}  max {summary['steer_max']:+.3f}  "
              f"mean {summary['steer_mean']:+.3f}")
    problems = summary["problems"]
    print(f"problems   {len(problems) or 'none'}")
    for problem in problems:
        print(f"  - {problem}")
    return 0
