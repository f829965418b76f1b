"""The summary of a run, built as its per-frame tables stream past (no rows are kept).

``RunSummary.add(table, positions)`` takes each chunk of per-frame rows (the columns of
``FrameAnalyzer``: ``steer_true``, ``steer_pred``, ``abs_error``, ``<method>_<statistic>``,
``<method>_empty``, ...), keeps running sums and the worst-frame galleries; ``build`` returns
the ``summary.json`` content common to every run (replay, live): steering MAE / RMSE /
correlation, per-method statistic means and empty-map counts, the worst events, skipped
frames and timing (and, when the tables have the causal blob columns, their means). A command
adds its own fields to it.

Galleries hold distinct EVENTS, not neighbouring frames of one moment: a frame that has a
worse frame (larger key) within ``window_s`` seconds of drive time joins that frame's event,
so an event is shown by its worst frame, a frame with no worse frame within the window on
either side (ties: the earlier frame is the worse). The ``size`` worst such frames are kept.
"""

from __future__ import annotations

import functools
import heapq
import math
from collections import Counter, deque
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from drive_viz.model.plausibility import SteeringMoments, judge

GALLERY_SIZE = 6
#: Seconds of drive time within which frames of a gallery join the worse frame's event.
EVENT_WINDOW_S = 2.0
MAX_LISTED_SKIPS = 200
TIMING_COLUMNS = ("decode_ms", "model_ms", "render_ms", "encode_ms")
ACTIVATION_PREFIX = "first_conv_"
#: Gallery fields copied into summary.json (the report also gets the thumbnails).
BRIEF_KEYS = ("frame", "row", "t", "steer_true", "steer_pred", "abs_error", "off_road_share",
              "statistic", "method", "value")


class Accumulator:
    """Running sums of a stream of per-frame tables: steering error and column means."""

    def __init__(self) -> None:
        self.count = 0
        self.sums: Counter[str] = Counter()
        self.column_sums: dict[str, float] = {}
        self.column_counts: dict[str, int] = {}
        self.largest = 0.0

    def add(self, table: pd.DataFrame) -> None:
        true = table["steer_true"].to_numpy(np.float64)
        pred = table["steer_pred"].to_numpy(np.float64)
        both = np.isfinite(true) & np.isfinite(pred)  # live: no expert label when it drives
        known = pred[np.isfinite(pred)]
        self.largest = max(self.largest, float(np.abs(known).max(initial=0.0)))
        true, pred = true[both], pred[both]
        self.count += len(table)
        self.sums.update({"p": len(known), "p1": float(known.sum()),
                          "p2": float((known * known).sum()),
                          "outside": int((np.abs(known) > 1.0).sum()), "n": int(both.sum()),
                          "abs": float(np.abs(pred - true).sum()),
                          "sq": float(((pred - true) ** 2).sum()),
                          "x": float(true.sum()), "y": float(pred.sum()),
                          "xx": float((true * true).sum()), "yy": float((pred * pred).sum()),
                          "xy": float((true * pred).sum())})
        for column in table.columns:
            if not pd.api.types.is_numeric_dtype(table[column]):
                continue
            values = table[column].to_numpy(np.float64)
            finite = np.isfinite(values)
            self.column_sums[column] = self.column_sums.get(column, 0.0) + float(
                values[finite].sum())
            self.column_counts[column] = self.column_counts.get(column, 0) + int(finite.sum())

    def mean(self, column: str) -> float | None:
        count = self.column_counts.get(column, 0)
        return _finite_or_none(self.column_sums[column] / count) if count else None

    def total(self, column: str) -> float:
        return self.column_sums.get(column, 0.0)

    def steering(self) -> dict[str, float | None]:
        """MAE, RMSE and Pearson correlation of predicted vs recorded steering over the frames
        where both are known (None without any; correlation None for a constant series)."""
        s = self.sums
        n = s["n"]
        if n == 0:
            return {"mae": None, "rmse": None, "correlation": None}
        cov = s["xy"] / n - (s["x"] / n) * (s["y"] / n)
        var_true = s["xx"] / n - (s["x"] / n) ** 2
        var_pred = s["yy"] / n - (s["y"] / n) ** 2
        corr = cov / math.sqrt(var_true * var_pred) if var_true > 1e-12 and var_pred > 1e-12 \
            else None
        return {"mae": s["abs"] / n, "rmse": math.sqrt(s["sq"] / n),
                "correlation": None if corr is None else max(-1.0, min(1.0, corr))}


    def moments(self) -> SteeringMoments:
        """The predictions' moments for the plausibility checks (``judge``)."""
        s = self.sums
        count, n = s["p"], s["n"]

        def std(total: float, squares: float, size: int) -> float:
            return math.sqrt(max(squares / size - (total / size) ** 2, 0.0)) if size else 0.0

        recorded_std = std(s["x"], s["xx"], n)
        predicted_std = std(s["y"], s["yy"], n)
        correlation = None
        if n >= 2 and recorded_std > 0 and predicted_std > 0:
            cov = s["xy"] / n - (s["x"] / n) * (s["y"] / n)
            correlation = max(-1.0, min(1.0, cov / (recorded_std * predicted_std)))
        return SteeringMoments(predictions=count, outside=s["outside"], largest=self.largest,
                               spread=std(s["p1"], s["p2"], count), paired=n,
                               recorded_std=recorded_std if n >= 2 else 0.0,
                               correlation=correlation)


class EventGallery:
    """The ``size`` worst distinct events of a stream of (time, key) frames (module docstring).

    Frames arrive in drive order through ``offer``; ``make_entry`` is called only for a frame
    that can still enter the gallery (entries may hold pictures: most frames never need one).
    Each entry gets ``statistic``, ``method`` (what ranked it; None: no method) and ``value``
    (its key).
    """

    def __init__(self, statistic: str, method: str | None, size: int = GALLERY_SIZE,
                 window_s: float = EVENT_WINDOW_S) -> None:
        self.statistic = statistic
        self.method = method
        self.size = size
        self.window_s = window_s
        self._recent: deque[tuple[float, float]] = deque()  # (t, key) in the window, keys fall
        self._pending: deque[tuple[float, float, int, dict[str, Any]]] = deque()
        self._heap: list[tuple[float, int, dict[str, Any]]] = []

    def _wants(self, key: float) -> bool:
        return len(self._heap) < self.size or key > self._heap[0][0]

    def _confirm_until(self, t: float) -> None:
        """Candidates whose window has passed by drive time ``t`` are their event's worst."""
        while self._pending and self._pending[0][0] + self.window_s < t:
            _, key, position, entry = self._pending.popleft()
            if self._wants(key):
                item = (key, -position, entry)
                if len(self._heap) < self.size:
                    heapq.heappush(self._heap, item)
                else:
                    heapq.heappushpop(self._heap, item)

    def offer(self, t: float, key: float, position: int,
              make_entry: Callable[[], dict[str, Any]]) -> None:
        """Frame ``position`` at drive time ``t`` (seconds, increasing from call to call) with
        ``key`` (NaN: not ranked)."""
        self._confirm_until(t)
        if not math.isfinite(key):
            return
        while self._recent and self._recent[0][0] < t - self.window_s:
            self._recent.popleft()
        worse_before = bool(self._recent) and self._recent[0][1] >= key
        while self._pending and self._pending[-1][1] < key:  # this frame is worse than they
            self._pending.pop()
        while self._recent and self._recent[-1][1] < key:
            self._recent.pop()
        self._recent.append((t, key))
        if not worse_before and self._wants(key):
            entry = {**make_entry(), "statistic": self.statistic, "method": self.method,
                     "value": key}
            self._pending.append((t, key, position, entry))

    def worst(self) -> list[dict[str, Any]]:
        """The events' worst frames, worst first (call when the stream has ended)."""
        self._confirm_until(math.inf)
        ranked = sorted(self._heap, key=lambda item: (-item[0], -item[1]))
        return [entry for _, _, entry in ranked]


class RunSummary:
    """Running summary of one run (module docstring).

    ``methods``: the methods in the tables; ``main_method``: the one shown over the camera
    frame, whose road share ranks the off-road gallery when ``off_road`` (frames with masks);
    ``fps``: rows per second of drive time (a row's position / fps is its drive time, for the
    event window).
    """

    def __init__(self, methods: Sequence[str], main_method: str, fps: float, *,
                 off_road: bool = True, event_window_s: float = EVENT_WINDOW_S) -> None:
        self.methods = tuple(methods)
        self.main_method = main_method
        self.fps = fps
        self.event_window_s = event_window_s
        self.accumulator = Accumulator()
        self.galleries = {"by_error": EventGallery("abs_error", None, window_s=event_window_s)}
        if off_road:
            self.galleries["off_road"] = EventGallery("off_road_share", main_method,
                                                      window_s=event_window_s)
        self.skipped: list[dict[str, Any]] = []
        self.skip_reasons: Counter[str] = Counter()
        self.mask_problems: list[str] = []

    def skip(self, row: int, frame: int, reason: str) -> None:
        """Count a frame that could not be used (the first MAX_LISTED_SKIPS are listed)."""
        self.skip_reasons[reason.split(": ", 1)[-1]] += 1
        if len(self.skipped) < MAX_LISTED_SKIPS:
            self.skipped.append({"row": row, "frame": frame, "reason": reason})

    def mask_problem(self, text: str) -> None:
        if len(self.mask_problems) < MAX_LISTED_SKIPS:
            self.mask_problems.append(text)

    def add(self, table: pd.DataFrame, positions: Sequence[int],
            pictures: Callable[[int], Any] | None = None) -> None:
        """Add a chunk of rows; ``positions[k]`` is row k's place in the run (0, 1, ...), and
        ``pictures(k)`` what its gallery thumbnails are drawn from (kept with the entry)."""
        self.accumulator.add(table)
        road = table.get(f"{self.main_method}_road_share")
        keys = {"by_error": table["abs_error"].to_numpy(np.float64)}
        if "off_road" in self.galleries:
            keys["off_road"] = (np.full(len(table), np.nan) if road is None
                                else 1.0 - road.to_numpy(np.float64))

        def entry_of(k: int, position: int) -> dict[str, Any]:
            entry = _entry(table, k, position, road)
            if pictures is not None:
                entry["pictures"] = pictures(k)
            return entry

        for k, position in enumerate(positions):
            make_entry = functools.cache(functools.partial(entry_of, k, position))
            for name, gallery in self.galleries.items():
                gallery.offer(position / self.fps, float(keys[name][k]), position, make_entry)

    def worst(self) -> dict[str, list[dict[str, Any]]]:
        """Each gallery's entries, worst first (after the last ``add``)."""
        return {name: gallery.worst() for name, gallery in self.galleries.items()}

    def build(self, head: dict[str, Any], selected: int, elapsed: float) -> dict[str, Any]:
        """The common summary: ``head`` (what was run: recording, model, parameters, ...)
        followed by frame counts (``selected`` rows asked for), steering, statistics,
        empty maps, activations, worst events, skipped frames and ``elapsed`` seconds."""
        from drive_viz.attention.stats import MAP_STATISTICS

        acc = self.accumulator
        worst = self.worst()
        skipped = sum(self.skip_reasons.values())
        return {
            **head,
            "frames": {"selected": selected, "replayed": acc.count, "skipped": skipped},
            "steering": acc.steering(),
            "warnings": judge(acc.moments()),
            "statistics": {m: {stat: acc.mean(f"{m}_{stat}") for stat in MAP_STATISTICS}
                           for m in self.methods},
            "empty_maps": {m: int(acc.total(f"{m}_empty")) for m in self.methods},
            "activations": {column: acc.mean(column) for column in acc.column_sums
                            if column.startswith(ACTIVATION_PREFIX)},
            **self._causal_blobs(),
            "event_window_s": self.event_window_s,
            "worst_by_error": _brief(worst["by_error"]),
            "worst_off_road": _brief(worst["off_road"]) if "off_road" in worst else None,
            "skipped": {"count": skipped, "by_reason": dict(self.skip_reasons),
                        "frames": self.skipped, "mask_problems": self.mask_problems},
            "timing": {"seconds": elapsed,
                       "frames_per_second": acc.count / elapsed if elapsed else None,
                       **{column: acc.mean(column) for column in TIMING_COLUMNS}},
        }


    def _causal_blobs(self) -> dict[str, Any]:
        """``causal_blobs`` (tables with the blob columns of ``replay --causal-blobs``):
        the main method's mean causal mass share, blobs per frame and milliseconds per frame
        of ``blob_batch``; else nothing."""
        acc = self.accumulator
        if "causal_mass_share" not in acc.column_sums:
            return {}
        return {"causal_blobs": {"method": self.main_method,
                                 "causal_mass_share": acc.mean("causal_mass_share"),
                                 "blobs_per_frame": acc.mean("blobs"),
                                 "causal_blobs_per_frame": acc.mean("causal_blobs"),
                                 "blobs_ms": acc.mean("blobs_ms")}}


def merge_summary(common: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """``common`` with a command's own fields: a dict in ``extra`` extends the dict of the
    same key, any other value replaces it."""
    merged = dict(common)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(common.get(key), dict):
            merged[key] = {**common[key], **value}
        else:
            merged[key] = value
    return merged


def _entry(table: pd.DataFrame, k: int, position: int, road: pd.Series | None
           ) -> dict[str, Any]:
    return {
        "frame": int(table["frame"].iat[k]), "row": int(table["row"].iat[k]),
        "position": position, "t": float(table["t"].iat[k]),
        "steer_true": _finite_or_none(float(table["steer_true"].iat[k])),
        "steer_pred": float(table["steer_pred"].iat[k]),
        "abs_error": _finite_or_none(float(table["abs_error"].iat[k])),
        "off_road_share": None if road is None or not np.isfinite(road.iat[k])
        else 1.0 - float(road.iat[k]),
    }


def _brief(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{key: entry[key] for key in BRIEF_KEYS} for entry in entries]


def _finite_or_none(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None
