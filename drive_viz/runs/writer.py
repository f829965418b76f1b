"""The run writer: the one way a command (replay, live, demo) writes a run folder.

A run folder holds ``annotated.mp4`` (H.264), ``frames.parquet`` and ``frames.csv`` (one row
per frame, written ``TABLE_CHUNK_ROWS`` rows at a time, so memory stays flat), ``summary.json``
and ``report.html``. Every file is written under a hidden ``.NAME.partial`` name and renamed
when the run completes (the video last): a reader never sees half a file. A run that is
refused or fails leaves no partial file, and no folder if the run created it.

Use it as a context manager::

    with RunWriter(out, summary, prep, overwrite=False, video_fps=20.0) as writer:
        writer.write_picture(picture)          # each annotated frame, in order
        writer.add_rows(table, positions)      # each chunk of per-frame rows, after its frames
        summary = writer.publish(head, selected, elapsed, extra)
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import cv2
import numpy as np
import pandas as pd

from drive_viz.atomic import json_ready
from drive_viz.model.preprocess import input_to_rgb
from drive_viz.render.colormap import DEFAULT_OPACITY, blend_heat
from drive_viz.render.overlay import FRAME_SIZE, heat_on_frame
from drive_viz.render.video import DEFAULT_QP
from drive_viz.run_folder import RunFolder
from drive_viz.runs.summary import RunSummary, merge_summary

OUTPUT_FILES = ("frames.parquet", "frames.csv", "summary.json", "report.html", "annotated.mp4")
#: Rows written to the tables at a time.
TABLE_CHUNK_ROWS = 256
#: libx264 threads for the video. The other stages already keep the cores busy: x264's own
#: choice (3 frame threads on 2 cores) cost 6.0 ms CPU per 1280x720 frame against 4.7 ms for
#: one thread (CRF), and 2 threads at the constant quantizer cost the same CPU as one but gave
#: no end-to-end gain in an interleaved A/B (4 runs each, 1,000 frames).
ENCODER_THREADS = 1
#: Gallery pictures: (camera frame RGB (H, W, 3) uint8, network input, {method: heat}).
Pictures = tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]


class TableSink:
    """Appends the per-frame rows to the parquet file and the CSV file, ``TABLE_CHUNK_ROWS``
    rows at a time (one parquet row group each; fewer, larger writes cost half the CPU of one
    per batch)."""

    def __init__(self, parquet_path: Path, csv_path: Path) -> None:
        self.parquet_path = parquet_path
        self._csv = open(csv_path, "w", encoding="utf-8", newline="")
        self._parquet: Any = None
        self._schema: Any = None
        self._pending: list[pd.DataFrame] = []
        self._pending_rows = 0

    def append(self, table: pd.DataFrame) -> None:
        self._pending.append(table)
        self._pending_rows += len(table)
        if self._pending_rows >= TABLE_CHUNK_ROWS:
            self._flush()

    def _flush(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if not self._pending:
            return
        table = pd.concat(self._pending, ignore_index=True)
        self._pending, self._pending_rows = [], 0
        if self._parquet is None:
            self._schema = pa.Schema.from_pandas(table, preserve_index=False)
            self._parquet = pq.ParquetWriter(self.parquet_path, self._schema)
        self._parquet.write_table(pa.Table.from_pandas(table, schema=self._schema,
                                                       preserve_index=False))
        table.to_csv(self._csv, header=self._csv.tell() == 0, index=False,
                     float_format="%.6g", lineterminator="\n")

    def finish(self) -> None:
        """Write the rows still pending and close both files."""
        self._flush()
        self.close()

    def close(self) -> None:
        """Close both files (rows still pending are dropped: the run failed)."""
        if self._parquet is not None:
            self._parquet.close()
            self._parquet = None
        if not self._csv.closed:
            self._csv.close()


class RunWriter:
    """The run folder ``out`` and everything written into it (module docstring).

    ``summary``: the run's ``RunSummary`` (fed by ``add_rows``); ``prep``: the model's
    preprocessing (opaque; gallery thumbnails place the heat through it); ``video_fps``: the
    video's frame rate, None for no video; ``encoder_threads``: x264 threads (0: x264's own
    choice); ``video_size`` (width, height) and ``video_qp`` its frame size and x264
    quantizer; ``embed_video``: put the video inside report.html. Refuses a non-empty ``out``
    unless ``overwrite`` (then only the run's own files are replaced).

    Hooks for runs of another kind (compare): ``summary`` may be any object with
    ``RunSummary``'s ``add``, ``build`` and ``worst``; ``thumbnails(entry)`` turns a gallery
    entry's ``pictures`` into the report's data URIs (default: the main method's heat over the
    camera frame and each method's heat on the input view); ``report`` writes report.html,
    with ``write_report``'s parameters (default: ``write_report``).
    """

    def __init__(self, out: str | Path, summary: RunSummary, prep: Any, *,
                 overwrite: bool = False, video_fps: float | None = None,
                 encoder_threads: int = ENCODER_THREADS,
                 video_size: tuple[int, int] = FRAME_SIZE, video_qp: int = DEFAULT_QP,
                 embed_video: bool = False,
                 thumbnails: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
                 report: Callable[..., None] | None = None) -> None:
        out = Path(out)
        self.summary = summary
        self.prep = prep
        self._thumbnails = thumbnails or self._with_thumbnails
        self._report = report
        self._created = not out.exists()
        self._embed_video = embed_video
        self.folder = RunFolder(out, OUTPUT_FILES, overwrite)
        self.path = self.folder.path
        self._video: Any = None
        self._tables: TableSink | None = None
        try:
            self._tables = TableSink(self.folder.partial("frames.parquet"),
                                     self.folder.partial("frames.csv"))
            if video_fps is not None:
                from drive_viz.render.video import H264Writer

                self._video = H264Writer(self.folder.partial("annotated.mp4"), video_fps,
                                         video_size, qp=video_qp, threads=encoder_threads)
        except BaseException:
            self.discard()
            raise

    def __enter__(self) -> RunWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if kind is not None:
            self.discard()

    def write_picture(self, picture: np.ndarray) -> float:
        """Encode the next annotated frame (RGB uint8 of the video size); returns the milliseconds
        it took."""
        tick = time.perf_counter()
        self._video.write(picture)
        return (time.perf_counter() - tick) * 1000

    def add_rows(self, table: pd.DataFrame, positions: Sequence[int],
                 pictures: Callable[[int], Pictures] | None = None) -> None:
        """Append per-frame rows to the tables and the summary (``RunSummary.add``)."""
        self._tables.append(table)
        self.summary.add(table, positions, pictures)

    def publish(self, head: dict[str, Any], selected: int, elapsed: float,
                extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """Finish the files, write ``summary.json`` (``RunSummary.build`` with ``extra``
        merged in: its dicts extend the common ones, its other values replace them) and
        ``report.html``, and rename them all to their final names, the video last. Returns
        the summary."""
        from drive_viz.report.html import write_report

        report = self._report or write_report
        if self._video is not None:
            self._video.close()
        self._tables.finish()
        common = json_ready(self.summary.build(head, selected, elapsed))
        summary = json_ready(merge_summary(common, extra or {}))
        self.folder.partial("summary.json").write_text(
            json.dumps(summary, indent=2, allow_nan=False), encoding="utf-8")
        galleries = {name: [self._thumbnails(entry) for entry in entries]
                     for name, entries in self.summary.worst().items()}
        galleries.setdefault("off_road", [])
        # The report reads the common frame counts (live's own ``frames`` is its step count).
        report(self.folder.partial("report.html"), {**summary, "frames": common["frames"]},
                     pd.read_parquet(self.folder.partial("frames.parquet")), galleries,
                     embed_video=self.folder.partial("annotated.mp4")
                     if self._video is not None and self._embed_video else None)
        tables_and_report = [name for name in OUTPUT_FILES if name != "annotated.mp4"]
        self.folder.commit(*tables_and_report,
                           *(["annotated.mp4"] if self._video is not None else []))
        return summary

    def discard(self) -> None:
        """Close every file and delete the partial ones; remove the folder if this run
        created it and nothing else is in it."""
        if self._video is not None:
            try:
                self._video.close()
            except Exception:  # noqa: BLE001 - the run failed already; its error wins
                pass
        if self._tables is not None:
            self._tables.close()
        self.folder.discard()
        if self._created:
            try:
                self.path.rmdir()
            except OSError:
                pass  # something else is in it (live's recording/): keep it

    def _with_thumbnails(self, entry: dict[str, Any]) -> dict[str, Any]:
        """A gallery entry for the report: ``pictures`` replaced by JPEG data URIs, ``camera``
        (320 px wide, the main method's heat over the crop box) and ``maps``
        (each method's heat on the input view)."""
        values = {key: value for key, value in entry.items() if key != "pictures"}
        if "pictures" not in entry:
            return {**values, "camera": "", "maps": {}}
        frame_rgb, inputs, heat = entry["pictures"]
        height, width = frame_rgb.shape[:2]
        size = (320, max(2, round(320 * height / width)))
        camera_view, _ = heat_on_frame(frame_rgb, heat[self.summary.main_method], self.prep,
                                       size)
        view = input_to_rgb(inputs, self.prep)
        return {**values, "camera": jpeg_data_uri(camera_view),
                "maps": {m: jpeg_data_uri(blend_heat(view, map_heat, DEFAULT_OPACITY))
                         for m, map_heat in heat.items()}}


def jpeg_data_uri(rgb: np.ndarray, quality: int = 80) -> str:
    """``rgb`` (H, W, 3) uint8 as a ``data:image/jpeg;base64,...`` URI."""
    ok, buffer = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                              [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("thumbnail JPEG encoding failed")
    return "data:image/jpeg;base64," + base64.b64encode(buffer.tobytes()).decode("ascii")
