"""``drive-viz fleet``: replay many recordings on Ray, one run per recording, and collect them.

The unit of work is one recording: a Ray task (``num_cpus`` = ``cpus_per_task``) replays it
with ``replay`` into ``FLEET/runs/.NAME.partial/``, copies its ``frames.parquet`` into the
dataset partition ``FLEET/frames/recording=NAME/part-0.parquet`` and renames the run folder to
``FLEET/runs/NAME/``, so a half-written run is never visible. The model's bytes (the
``.keras`` file and its card) go to Ray's object store once (``ray.put``); each worker process
loads the model the first time it needs it and keeps it (``_worker_model``). Ray schedules the
tasks over the cluster and retries a task whose worker process died (``max_retries``); a
recording that fails for its own reasons (unreadable, corrupt, a model that does not fit it)
comes back as a failure with its one-line reason and the others go on. Recordings are read by
path: on a real cluster they must live on storage every node sees under the same path, and so
must ``FLEET``.

Outputs: ``FLEET/runs/NAME/`` (what ``drive-viz replay`` writes), ``FLEET/frames/`` (the
hive-partitioned dataset), ``FLEET/fleet.json`` (per-recording results) and
``FLEET/report.html`` (``drive_viz.report.fleet``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import re
import shutil
import socket
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from drive_viz.atomic import atomic_output, partial_path, write_json_atomic
from drive_viz.errors import DriveVizError
from drive_viz.runs.replay import OUTPUT_FILES, ReplayOptions, replay

__all__ = ["FleetOptions", "read_recording_list", "run_fleet", "unique_names"]

FLEET_FILE = "fleet.json"
REPORT_FILE = "report.html"
RUNS_DIR = "runs"
FRAMES_DIR = "frames"
PART_FILE = "part-0.parquet"
#: How often Ray runs a recording again after its worker process died (not after a failure
#: of the recording itself, which is reported).
MAX_RETRIES = 2
#: Test-only fault injection (``_crash_if_planned``): a folder; a file named after a recording
#: in it makes the worker replaying that recording exit abruptly once, before publishing.
CRASH_PLAN_ENV = "DRIVE_VIZ_FLEET_CRASH_PLAN"
INSTALL_HINT = "the fleet needs Ray: pip install 'drive-viz[fleet]' (or pip install 'ray>=2.9')"
#: The fleet's default replay options: ``drive-viz replay``'s, without the video.
NO_VIDEO = ReplayOptions(video=False, progress=False)
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


@dataclasses.dataclass(frozen=True)
class FleetOptions:
    """Where the fleet runs and what it does with an existing output folder.

    ``address``: an existing Ray cluster (None: start a local one of ``workers`` x
    ``cpus_per_task`` CPUs); ``workers``: recordings replayed at the same time (None: the
    machine's or the cluster's CPUs divided by ``cpus_per_task``); ``cpus_per_task``: the CPUs
    Ray reserves for one recording's replay, which its TensorFlow then uses as threads;
    ``resume``: keep the complete runs already in the output folder; ``overwrite``: replace
    the fleet's outputs; ``connect_timeout`` in seconds.
    """

    address: str | None = None
    workers: int | None = None
    cpus_per_task: int = 1
    resume: bool = False
    overwrite: bool = False
    progress: bool = True
    connect_timeout: float = 5.0


def read_recording_list(path: str | Path) -> list[str]:
    """The recording paths in the text file ``path``: one per line, blank lines and ``#``
    comments ignored, relative paths taken from the list file's folder."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DriveVizError(f"{path}: cannot read the recording list ({exc})") from None
    entries = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            entries.append(str(path.parent / line) if not Path(line).is_absolute() else line)
    return entries


def unique_names(recordings: Sequence[str | Path]) -> list[str]:
    """A run name per recording: its folder name with characters other than letters, digits,
    ``.``, ``_`` and ``-`` replaced by ``_`` (no leading dot), made unique with ``-2``,
    ``-3``, ... in the order given (``a/drive``, ``b/drive`` -> ``drive``, ``drive-2``)."""
    names: list[str] = []
    used: set[str] = set()
    for recording in recordings:
        base = _UNSAFE_NAME.sub("_", Path(recording).resolve().name).lstrip(".") or "recording"
        name, k = base, 1
        while name.lower() in used:
            k += 1
            name = f"{base}-{k}"
        used.add(name.lower())
        names.append(name)
    return names


def _fixed_parameters(options: ReplayOptions) -> dict[str, Any]:
    """The entries of a summary's ``parameters`` that ``options`` alone decides."""
    fixed = {"methods": list(options.methods), "layout": options.main_method,
             "start": options.start, "stride": options.stride, "video": options.video,
             "target": options.target, "batch_size": options.batch_size,
             "unsafe_model": options.unsafe_model}
    if options.camera is not None:
        fixed["camera"] = options.camera
    if options.end is not None:
        fixed["end"] = options.end
    return fixed


def _complete_summary(run: Path, recording: str, model_name: str,
                      options: ReplayOptions) -> dict[str, Any] | None:
    """The summary of the run in ``run`` if it is complete and was made from ``recording``
    with ``model_name`` and ``options``; None otherwise."""
    needed = [name for name in OUTPUT_FILES if options.video or name != "annotated.mp4"]
    if not all((run / name).is_file() for name in needed):
        return None
    try:
        summary = json.loads((run / "summary.json").read_text(encoding="utf-8"))
        same = (Path(summary["recording"]).resolve() == Path(recording).resolve()
                and Path(summary["model"]).resolve() == Path(model_name).resolve()
                and all(summary["parameters"].get(key) == value
                        for key, value in _fixed_parameters(options).items()))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return summary if same else None


def _previous_model_digest(out: Path) -> str | None:
    try:
        return json.loads((out / FLEET_FILE).read_text(encoding="utf-8"))["model"]["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


# ---------------------------------------------------------------- worker side (Ray tasks)

#: The model each worker process loaded, by (sha256, unsafe): a LoadedModel or the load error.
_WORKER_MODELS: dict[tuple[str, bool], Any] = {}
_WORKER_LOADS = 0


def _worker_model(blob_box: list[Any], digest: str, unsafe: bool) -> Any:
    """This worker's model: loaded from the object store's bytes on first use, then kept.

    ``blob_box``: ``[ref]`` to ``{"file", "name", "model", "card"}`` (boxed, so Ray does not
    fetch the bytes for tasks whose worker already holds the model). Returns a LoadedModel,
    or the load error's text."""
    global _WORKER_LOADS
    key = (digest, unsafe)
    if key in _WORKER_MODELS:
        return _WORKER_MODELS[key]
    import ray
    import tensorflow as tf

    from drive_viz.model.dave2 import card_path, load_model

    cpus = _assigned_cpus()
    try:  # TensorFlow uses this worker's CPUs, not the whole machine's
        tf.config.threading.set_intra_op_parallelism_threads(cpus)
        tf.config.threading.set_inter_op_parallelism_threads(cpus)
    except RuntimeError:
        pass  # already initialized in this process
    blob = ray.get(blob_box[0])
    with tempfile.TemporaryDirectory(prefix="drive-viz-model-") as scratch:
        path = Path(scratch) / blob["file"]
        path.write_bytes(blob["model"])
        if blob["card"] is not None:
            card_path(path).write_bytes(blob["card"])
        try:
            loaded: Any = load_model(path, unsafe=unsafe, named=blob["name"])
        except DriveVizError as exc:
            loaded = str(exc).replace(str(path), blob["name"])
    _WORKER_LOADS += 1
    _WORKER_MODELS[key] = loaded
    return loaded


def _check_inputs(blob_box: list[Any], digest: str, options: ReplayOptions) -> str | None:
    """Ray task: check the methods and target and load the model in a worker (which keeps
    it), so the driver never imports TensorFlow; the first error's text, or None."""
    from drive_viz.analysis import check_methods

    try:
        check_methods(options.methods, options.main_method, options.target)
    except DriveVizError as exc:
        return str(exc)
    loaded = _worker_model(blob_box, digest, options.unsafe_model)
    return loaded if isinstance(loaded, str) else None


def _crash_if_planned(name: str) -> None:
    """Test-only fault injection: if ``$DRIVE_VIZ_FLEET_CRASH_PLAN/<name>`` exists, delete it
    and end this worker process at once (as a crash or an out-of-memory kill would), with the
    run written but not yet published. Unset in normal use: nothing happens."""
    plan = os.environ.get(CRASH_PLAN_ENV)
    if not plan:
        return
    try:
        (Path(plan) / name).unlink()
    except FileNotFoundError:
        return
    os._exit(1)


def _publish(partial: Path, final: Path) -> None:
    """Rename the complete run folder ``partial`` to ``final`` (replacing an older run)."""
    if final.exists():
        old = final.with_name(f".{final.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
        os.replace(partial, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(partial, final)


def _assigned_cpus() -> int:
    """The CPUs Ray reserved for the task running in this worker."""
    import ray

    return max(1, round(ray.get_runtime_context().get_assigned_resources().get("CPU", 1)))


def _replay_task(blob_box: list[Any], digest: str, recording: str, name: str, out: str,
                 options: ReplayOptions) -> dict[str, Any]:
    """Ray task: replay ``recording`` into ``out/runs/name`` and its dataset partition.

    Returns ``{"name", "status": "ok" | "failed", "reason", "summary", "seconds" (the whole
    task), "load_seconds" (getting the model: 0 once loaded), "replay_seconds" (``replay``
    alone), "replay_started_at" (Unix time), "pid", "cpus" (reserved for this task),
    "model_loads" (this process's, so far)}``;
    a recording's own failure is returned, never raised."""
    started = time.perf_counter()
    runs = Path(out) / RUNS_DIR
    partial, final = partial_path(runs / name), runs / name
    result: dict[str, Any] = {"name": name, "status": "failed", "reason": None,
                              "summary": None, "pid": os.getpid(), "cpus": _assigned_cpus(),
                              "replay_seconds": None,
                              "load_seconds": None, "replay_started_at": None}
    try:
        loaded = _worker_model(blob_box, digest, options.unsafe_model)
        result["load_seconds"] = time.perf_counter() - started
        if isinstance(loaded, str):
            raise DriveVizError(loaded)
        shutil.rmtree(partial, ignore_errors=True)  # left by an attempt whose worker died
        tick = time.perf_counter()
        result["replay_started_at"] = time.time()
        summary = replay(recording, loaded, partial,
                         dataclasses.replace(options, overwrite=False, progress=False))
        result["replay_seconds"] = time.perf_counter() - tick
        partition = Path(out) / FRAMES_DIR / f"recording={name}"
        partition.mkdir(parents=True, exist_ok=True)
        with atomic_output(partition / PART_FILE) as tmp:
            shutil.copyfile(partial / "frames.parquet", tmp)
        _crash_if_planned(name)
        _publish(partial, final)
        result.update(status="ok", summary=summary)
    except Exception as exc:  # noqa: BLE001 - one recording's failure is reported, not raised
        shutil.rmtree(partial, ignore_errors=True)
        message = " ".join(str(exc).split()) or type(exc).__name__
        if not isinstance(exc, DriveVizError):
            message = f"{type(exc).__name__}: {message}"
        result["reason"] = message[:500]
    result["seconds"] = time.perf_counter() - started
    result["model_loads"] = _WORKER_LOADS
    return result


# ---------------------------------------------------------------- driver side


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise DriveVizError(INSTALL_HINT) from None
    return ray


def _check_reachable(address: str, timeout: float) -> None:
    """DriveVizError unless something accepts TCP connections at ``address`` (host:port,
    optionally ``ray://``); other forms (``auto``) are left to Ray."""
    match = re.fullmatch(r"(?:ray://)?\[?([^\]/]+?)\]?:(\d+)", address.strip())
    if match is None:
        return
    try:
        socket.create_connection((match.group(1), int(match.group(2))), timeout).close()
    except OSError as exc:
        raise DriveVizError(f"Ray cluster at {address}: unreachable "
                            f"({exc.strerror or exc})") from None


def _connect(ray: Any, options: FleetOptions) -> tuple[bool, int]:
    """Connect to (or start) the cluster; (whether this call started it, recordings to run
    at a time). An already initialized Ray session (a notebook, the tests) is used as is.
    A ``cpus_per_task`` larger than every node's CPUs is refused: Ray would wait forever."""
    cpus = options.cpus_per_task
    started = False
    if not ray.is_initialized():
        quiet = {"log_to_driver": False, "logging_level": logging.ERROR,
                 "include_dashboard": False}
        if options.address is None:
            workers = options.workers or max(1, (os.cpu_count() or 1) // cpus)
            ray.init(address="local", num_cpus=workers * cpus, **quiet)
            return True, workers
        _check_reachable(options.address, options.connect_timeout)
        try:
            ray.init(address=options.address, **quiet)
        except Exception as exc:  # noqa: BLE001 - Ray raises several types for a bad address
            raise DriveVizError(f"Ray cluster at {options.address}: cannot connect "
                                f"({' '.join(str(exc).split())[:300]})") from None
        started = True
    largest = max((node["Resources"].get("CPU", 0) for node in ray.nodes() if node["Alive"]),
                  default=0)
    if cpus > largest:
        if started:
            ray.shutdown()
        raise DriveVizError(f"cpus_per_task {cpus}: no node of the Ray cluster has that many "
                            f"CPUs (the largest has {largest:g})")
    return started, options.workers or max(1, int(ray.cluster_resources().get("CPU", 1)) // cpus)


def _model_blob(model_path: Path) -> tuple[dict[str, Any], str]:
    from drive_viz.model.dave2 import card_path

    if not model_path.is_file():
        raise DriveVizError(f"{model_path}: no such model file")
    if model_path.suffix != ".keras":
        raise DriveVizError(f"{model_path}: expected a .keras model file")
    model = model_path.read_bytes()
    card = card_path(model_path)
    card_bytes = card.read_bytes() if card.is_file() else None
    digest = hashlib.sha256(model + b"\0" + (card_bytes or b"")).hexdigest()
    return {"file": model_path.name, "name": str(model_path), "model": model,
            "card": card_bytes}, digest


def _prepare_folder(out: Path, options: FleetOptions) -> None:
    """Refuse an existing non-empty ``out`` unless resuming or overwriting (then delete the
    fleet's own outputs only); create ``out/runs`` and ``out/frames``."""
    if out.exists() and not out.is_dir():
        raise DriveVizError(f"{out}: exists and is not a folder")
    if out.exists() and any(out.iterdir()) and options.overwrite:
        for name in (RUNS_DIR, FRAMES_DIR):
            shutil.rmtree(out / name, ignore_errors=True)
        for name in (FLEET_FILE, REPORT_FILE):
            (out / name).unlink(missing_ok=True)
    try:
        (out / RUNS_DIR).mkdir(parents=True, exist_ok=True)
        (out / FRAMES_DIR).mkdir(exist_ok=True)
    except OSError as exc:
        raise DriveVizError(f"{out}: cannot create ({exc.strerror})") from None


def _remove_partials(out: Path, names: Sequence[str]) -> None:
    """Delete what interrupted tasks left: partial run folders and dataset files."""
    for name in names:
        for leftover in (partial_path(out / RUNS_DIR / name),
                         out / RUNS_DIR / f".{name}.old"):
            shutil.rmtree(leftover, ignore_errors=True)
        partial_path(out / FRAMES_DIR / f"recording={name}" / PART_FILE).unlink(missing_ok=True)


def _prune_dataset(out: Path, keep: set[str]) -> None:
    """Leave in ``out/frames`` only the partitions of the runs in ``keep``."""
    for partition in (out / FRAMES_DIR).glob("recording=*"):
        if partition.name.split("=", 1)[1] not in keep:
            shutil.rmtree(partition, ignore_errors=True)


def _entry(name: str, recording: str, status: str, reason: str | None,
           summary: dict[str, Any] | None, seconds: float | None,
           resumed: bool) -> dict[str, Any]:
    """One recording's line of fleet.json."""
    entry: dict[str, Any] = {"name": name, "recording": recording, "status": status,
                             "reason": reason, "resumed": resumed, "seconds": seconds,
                             "run": None, "frames": None, "skipped": None, "steering": None,
                             "attention": None}
    if summary is None:
        return entry
    method = summary["parameters"]["layout"]
    stats = summary["statistics"].get(method, {})
    road = stats.get("road_share")
    entry.update(
        run=f"{RUNS_DIR}/{name}", frames=summary["frames"]["replayed"],
        skipped=summary["frames"]["skipped"], steering=summary["steering"],
        attention={"method": method,
                   "off_road_share": None if road is None else 1.0 - road,
                   "temporal_corr": stats.get("temporal_corr"),
                   "entropy": stats.get("entropy"),
                   "first_conv_dead_share": summary["activations"].get("first_conv_dead_share")},
        worst_by_error=summary.get("worst_by_error") or [],
        worst_off_road=summary.get("worst_off_road") or [])
    return entry


class _Progress:
    """One bar: recordings done, and frames/s across the fleet since the start."""

    def __init__(self, total: int, done: int, enabled: bool) -> None:
        self.started = time.perf_counter()
        self.frames = 0
        self.bar = None
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=done, unit="rec", desc="fleet")

    def update(self, frames: int) -> None:
        self.frames += frames
        if self.bar is not None:
            rate = self.frames / max(time.perf_counter() - self.started, 1e-9)
            self.bar.set_postfix_str(f"{rate:.1f} frames/s", refresh=False)
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def run_fleet(recordings: Sequence[str | Path], model_path: str | Path, out: str | Path,
              options: ReplayOptions = NO_VIDEO,
              fleet: FleetOptions = FleetOptions()) -> dict[str, Any]:
    """Replay every recording of ``recordings`` with ``model_path`` and ``options`` on Ray into
    the fleet folder ``out`` (see the module docstring); returns the content of fleet.json.

    Bad input (no recordings, a missing or unloadable model, an existing ``out`` without
    ``resume``/``overwrite``, an unreachable cluster) raises DriveVizError before anything is
    written. KeyboardInterrupt stops the fleet: complete runs stay, partial ones are removed,
    fleet.json lists the rest as ``interrupted``, and the interrupt is raised again.
    """
    ray = _import_ray()
    started = time.perf_counter()
    # workers may run elsewhere (another working directory, another node): absolute paths
    out, model_path = Path(out).absolute(), Path(model_path)
    recordings = list(dict.fromkeys(str(Path(r).absolute()) for r in recordings))
    if not recordings:
        raise DriveVizError("no recordings given")
    if fleet.resume and fleet.overwrite:
        raise DriveVizError("resume and overwrite exclude each other")
    if fleet.workers is not None and fleet.workers < 1:
        raise DriveVizError(f"workers must be at least 1 (got {fleet.workers})")
    if fleet.cpus_per_task < 1:
        raise DriveVizError(f"cpus_per_task must be at least 1 (got {fleet.cpus_per_task})")
    if out.exists() and not out.is_dir():
        raise DriveVizError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not (fleet.resume or fleet.overwrite):
        raise DriveVizError(f"{out}: already exists and is not empty (resume it or "
                            "overwrite it)")
    if options.stride < 1 or options.batch_size < 1:
        raise DriveVizError("stride and batch_size must be at least 1")
    blob, digest = _model_blob(model_path)
    names = unique_names(recordings)
    by_name = dict(zip(names, recordings, strict=True))
    summaries: dict[str, dict[str, Any]] = {}
    if fleet.resume and _previous_model_digest(out) in (None, digest):
        for name, recording in by_name.items():
            summary = _complete_summary(out / RUNS_DIR / name, recording, blob["name"], options)
            if summary is not None:
                summaries[name] = summary
    todo = [name for name in names if name not in summaries]
    entries = {name: _entry(name, by_name[name], "ok", None, summaries[name], None, True)
               for name in summaries}
    started_ray, workers = _connect(ray, fleet) if todo else (False, 0)
    pending: dict[Any, str] = {}
    prepared = False
    try:
        box = _ship_model(ray, blob, digest, options, fleet.cpus_per_task) if todo else []
        _prepare_folder(out, fleet)
        prepared = True
        for name in summaries:  # a resumed run whose partition was lost gets it back
            part = out / FRAMES_DIR / f"recording={name}" / PART_FILE
            if not part.is_file():
                part.parent.mkdir(parents=True, exist_ok=True)
                with atomic_output(part) as tmp:
                    shutil.copyfile(out / RUNS_DIR / name / "frames.parquet", tmp)
        progress = _Progress(len(names), len(summaries), fleet.progress)
        try:
            if todo:
                _run_tasks(ray, box, digest, todo, by_name, out, options,
                           (workers, fleet.cpus_per_task), pending, entries, progress)
        finally:
            progress.close()
    except KeyboardInterrupt:
        for ref in pending:
            ray.cancel(ref, force=True)
        if started_ray:
            ray.shutdown()
            started_ray = False
        elif pending:
            ray.wait(list(pending), num_returns=len(pending), timeout=10)
        if not prepared:
            raise
        _remove_partials(out, todo)
        for name in names:
            entries.setdefault(name, _entry(name, by_name[name], "interrupted",
                                            "stopped by the user", None, None, False))
        _finish(out, blob["name"], digest, options, fleet, workers, names, entries, started)
        raise
    finally:
        if started_ray:
            ray.shutdown()
    return _finish(out, blob["name"], digest, options, fleet, workers, names, entries, started)


def _task_options(cpus: int) -> dict[str, Any]:
    """Ray options of every task: ``cpus`` reserved, retried when its worker process dies."""
    return {"num_cpus": cpus, "max_retries": MAX_RETRIES}


def _ship_model(ray: Any, blob: dict[str, Any], digest: str, options: ReplayOptions,
                cpus: int) -> list[Any]:
    """Put the model into the object store once; check in a worker that it loads and that
    the methods and target are valid (DriveVizError otherwise). Returns ``[ref]``."""
    box = [ray.put(blob)]
    error = ray.get(ray.remote(_check_inputs).options(**_task_options(cpus)).remote(
        box, digest, options))
    if error is not None:
        raise DriveVizError(error)
    return box


def _run_tasks(ray: Any, box: list[Any], digest: str, todo: list[str],
               by_name: dict[str, str], out: Path, options: ReplayOptions,
               slots: tuple[int, int], pending: dict[Any, str],
               entries: dict[str, dict[str, Any]], progress: _Progress) -> None:
    """Keep ``slots`` = (workers, CPUs each) recordings in flight (Ray's own backpressure
    pattern: ``ray.wait`` for one, submit the next) until every one of ``todo`` has an entry."""
    workers, cpus = slots
    task = ray.remote(_replay_task).options(**_task_options(cpus))
    queue = list(reversed(todo))
    while queue or pending:
        while queue and len(pending) < workers:
            name = queue.pop()
            pending[task.remote(box, digest, by_name[name], name, str(out), options)] = name
        [ref], _ = ray.wait(list(pending), num_returns=1)
        name = pending.pop(ref)
        try:
            result = ray.get(ref)
        except ray.exceptions.RayError as exc:  # the worker died MAX_RETRIES + 1 times
            reason = " ".join(str(exc).split())[:300]
            result = {"status": "failed", "summary": None, "seconds": None,
                      "reason": f"worker lost ({type(exc).__name__}: {reason})"}
            _remove_partials(out, [name])
        entries[name] = _entry(name, by_name[name], result["status"], result["reason"],
                               result["summary"], result["seconds"], False)
        entries[name]["worker"] = {key: result.get(key)
                                   for key in ("pid", "cpus", "model_loads", "load_seconds",
                                               "replay_seconds", "replay_started_at")}
        progress.update(entries[name]["frames"] or 0)


def _finish(out: Path, model_name: str, digest: str, options: ReplayOptions,
            fleet: FleetOptions, workers: int, names: list[str],
            entries: dict[str, dict[str, Any]], started: float) -> dict[str, Any]:
    """Prune the dataset to the complete runs, write fleet.json and report.html."""
    from drive_viz.report.fleet import write_fleet_report

    ok = {name for name in names if entries[name]["status"] == "ok"}
    _prune_dataset(out, ok)
    elapsed = time.perf_counter() - started
    replayed = sum(entries[name]["frames"] or 0 for name in ok
                   if not entries[name]["resumed"])
    parameters = dataclasses.asdict(options)
    for key in ("overwrite", "progress"):
        parameters.pop(key)
    data = {
        "model": {"path": model_name, "sha256": digest},
        "parameters": {**parameters, "methods": list(options.methods),
                       "layout": options.main_method},
        "cluster": {"address": fleet.address or "local", "workers": workers,
                    "cpus_per_task": fleet.cpus_per_task},
        "counts": {status: sum(entries[n]["status"] == status for n in names)
                   for status in ("ok", "failed", "interrupted")},
        "resumed": sum(bool(entries[n]["resumed"]) for n in names),
        "frames": sum(entries[name]["frames"] or 0 for name in ok),
        "seconds": elapsed,
        "frames_per_second": replayed / elapsed if elapsed > 0 else None,
        "dataset": FRAMES_DIR,
        "recordings": [entries[name] for name in names],
    }
    write_json_atomic(out / FLEET_FILE, data)
    write_fleet_report(out / REPORT_FILE, data, out / FRAMES_DIR)
    return data


def run(args: Any) -> int:
    """The ``drive-viz fleet`` command: exit 0 when every recording replayed, 1 when some
    failed (listed in fleet.json), 2 on bad input."""
    _import_ray()
    recordings = list(args.recordings)
    if args.from_list:
        recordings += read_recording_list(args.from_list)
    options = ReplayOptions(methods=args.methods, layout=args.layout, camera=args.camera,
                            video=args.video, target=args.target,
                            gradcam_layer=args.gradcam_layer, batch_size=args.batch_size,
                            progress=False, unsafe_model=args.unsafe_model,
                            event_window_s=args.event_window)
    fleet = FleetOptions(address=args.address, workers=args.workers,
                         cpus_per_task=args.cpus_per_task, resume=args.resume,
                         overwrite=args.overwrite, progress=not args.quiet)
    data = run_fleet(recordings, args.model, args.out, options, fleet)
    counts = data["counts"]
    print(f"{counts['ok']} of {len(data['recordings'])} recordings replayed "
          f"({data['resumed']} kept from before), {data['frames']} frames; "
          f"{counts['failed']} failed")
    for entry in data["recordings"]:
        if entry["status"] == "failed":
            print(f"  failed: {entry['name']}: {entry['reason']}")
    print(f"report: {Path(args.out) / REPORT_FILE}")
    return 1 if counts["failed"] else 0
