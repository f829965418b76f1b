"""``drive-viz fleet`` on a local Ray cluster shared by the module (Ray starts in seconds, not
per test): each run equals a single replay, the dataset holds every run's rows, a corrupt
recording is reported while the others finish, a worker that dies is retried, --resume does
no repeated work, an unreachable cluster is one line and exit 2."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ray = pytest.importorskip("ray")

from drive_viz.runs.fleet import (  # noqa: E402
    CRASH_PLAN_ENV,
    FleetOptions,
    read_recording_list,
    run_fleet,
    unique_names,
)
from drive_viz.runs.replay import ReplayOptions, replay  # noqa: E402

FRAMES = 24
OPTIONS = ReplayOptions(methods=("saliency", "gradcam"), video=False, progress=False,
                        batch_size=8)
QUIET = FleetOptions(progress=False)
TIMING = ("decode_ms", "model_ms", "render_ms", "encode_ms")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Recordings (two named ``drive``, one ``other``, one corrupt), a model, and the Ray
    session every test shares (workers inherit the crash-plan folder)."""
    from drive_viz.model.dave2 import build_dave2
    from drive_viz.sim.synth import write_synthetic_recording

    root = tmp_path_factory.mktemp("fleet")
    recordings = {}
    for seed, folder in enumerate(("a/drive", "b/drive", "c/other")):
        recordings[folder] = write_synthetic_recording(root / folder, frames=FRAMES, seed=seed)
    bad = root / "bad"
    bad.mkdir()
    (bad / "meta.json").write_text("{not json", encoding="utf-8")
    recordings["bad"] = bad
    model = root / "model.keras"
    build_dave2(seed=0).save(model)
    crash_plan = root / "crash-plan"
    crash_plan.mkdir()
    saved = os.environ.get(CRASH_PLAN_ENV)
    os.environ[CRASH_PLAN_ENV] = str(crash_plan)
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield {"root": root, "recordings": recordings, "model": model, "crash_plan": crash_plan}
    finally:
        ray.shutdown()
        if saved is None:
            os.environ.pop(CRASH_PLAN_ENV)
        else:
            os.environ[CRASH_PLAN_ENV] = saved


@pytest.fixture(scope="module")
def fleet(world):
    out = world["root"] / "F"
    recs = world["recordings"]
    data = run_fleet([recs["a/drive"], recs["b/drive"], recs["c/other"], recs["bad"]],
                     world["model"], out, OPTIONS, QUIET)
    return out, data


def _entries(data):
    return {entry["name"]: entry for entry in data["recordings"]}


def _no_partials(folder: Path) -> None:
    assert not [p for p in folder.rglob("*") if ".partial" in p.name or p.name.endswith(".old")]


def test_names_are_unique_and_safe(tmp_path):
    names = unique_names([tmp_path / "a" / "drive", tmp_path / "b" / "drive",
                          tmp_path / "c" / "Drive", tmp_path / "drive-2", tmp_path / ".x y"])
    assert names == ["drive", "drive-2", "Drive-3", "drive-2-2", "x_y"]


def test_recording_list(tmp_path):
    listing = tmp_path / "list.txt"
    listing.write_text("# drives\nfirst\n\n  /abs/second  # comment\n", encoding="utf-8")
    assert read_recording_list(listing) == [str(tmp_path / "first"), "/abs/second"]


def test_each_run_equals_a_single_replay(world, fleet, tmp_path):
    out, data = fleet
    entries = _entries(data)
    for name, folder in (("drive", "a/drive"), ("drive-2", "b/drive"), ("other", "c/other")):
        single = replay(world["recordings"][folder], world["model"], tmp_path / name, OPTIONS)
        run = out / "runs" / name
        assert sorted(p.name for p in run.iterdir()) == sorted(
            p.name for p in (tmp_path / name).iterdir())
        mine = pd.read_parquet(run / "frames.parquet").drop(columns=list(TIMING))
        theirs = pd.read_parquet(tmp_path / name / "frames.parquet").drop(columns=list(TIMING))
        assert list(mine.columns) == list(theirs.columns)
        for column in mine.columns:
            if pd.api.types.is_numeric_dtype(mine[column]):
                np.testing.assert_allclose(mine[column], theirs[column], rtol=1e-4, atol=1e-6,
                                           equal_nan=True, err_msg=f"{name}: {column}")
            else:
                assert mine[column].tolist() == theirs[column].tolist()
        summary = json.loads((run / "summary.json").read_text())
        assert summary["parameters"] == single["parameters"]
        assert summary["frames"] == single["frames"] == {"selected": FRAMES,
                                                         "replayed": FRAMES, "skipped": 0}
        for key in ("mae", "rmse", "correlation"):
            assert summary["steering"][key] == pytest.approx(single["steering"][key], rel=1e-4)
            assert entries[name]["steering"][key] == summary["steering"][key]
        # fleet.json's MAE is the mean absolute error of the run's own rows
        assert entries[name]["steering"]["mae"] == pytest.approx(
            np.mean(np.abs(mine["steer_pred"] - mine["steer_true"])), rel=1e-6)


def test_dataset_holds_every_run(fleet):
    import pyarrow.parquet as pq

    out, data = fleet
    ok = [e["name"] for e in data["recordings"] if e["status"] == "ok"]
    rows = {name: pq.read_metadata(out / "runs" / name / "frames.parquet").num_rows
            for name in ok}
    table = pq.read_table(out / "frames")
    assert table.num_rows == sum(rows.values()) == 3 * FRAMES
    frames = pd.read_parquet(out / "frames")
    assert frames["recording"].astype(str).value_counts().to_dict() == rows
    for name in ok:
        run = pd.read_parquet(out / "runs" / name / "frames.parquet")
        part = frames[frames["recording"].astype(str) == name].sort_values("row")
        np.testing.assert_array_equal(part["steer_pred"].to_numpy(), run["steer_pred"])


def test_corrupt_recording_is_reported_and_others_finish(fleet):
    out, data = fleet
    entries = _entries(data)
    assert data["counts"] == {"ok": 3, "failed": 1, "interrupted": 0}
    bad = entries["bad"]
    assert bad["status"] == "failed" and bad["run"] is None
    assert "meta.json" in bad["reason"] and "\n" not in bad["reason"]
    assert not (out / "runs" / "bad").exists()
    assert not (out / "frames" / "recording=bad").exists()
    _no_partials(out)
    report = (out / "report.html").read_text()
    assert "runs/drive/report.html#t=" in report and "meta.json" in report


def test_each_worker_loads_the_model_once(fleet):
    _, data = fleet
    workers = [e["worker"] for e in data["recordings"]]
    assert {w["model_loads"] for w in workers} == {1}  # the same process never reloads it
    assert 1 <= len({w["pid"] for w in workers}) <= 2


def test_cpus_per_task_is_what_ray_reserves_for_each_replay(world, fleet, tmp_path):
    _, data = fleet  # the default: one CPU per task, as many at a time as the session has
    assert data["cluster"] == {"address": "local", "workers": 2, "cpus_per_task": 1}
    assert {e["worker"]["cpus"] for e in data["recordings"]} == {1}
    recs = world["recordings"]
    wide = run_fleet([recs["a/drive"], recs["c/other"]], world["model"], tmp_path / "F",
                     OPTIONS, FleetOptions(progress=False, cpus_per_task=2))
    # the session has 2 CPUs: one replay at a time, each holding both
    assert wide["cluster"] == {"address": "local", "workers": 1, "cpus_per_task": 2}
    assert [e["status"] for e in wide["recordings"]] == ["ok", "ok"]
    assert {e["worker"]["cpus"] for e in wide["recordings"]} == {2}


@pytest.mark.parametrize(("cpus", "message"), [
    (0, "cpus_per_task must be at least 1 \\(got 0\\)"),
    (3, "cpus_per_task 3: no node of the Ray cluster has that many CPUs \\(the largest has 2\\)")])
def test_cpus_per_task_no_node_can_give_is_refused(world, tmp_path, cpus, message):
    from drive_viz.errors import DriveVizError

    out = tmp_path / "F"
    with pytest.raises(DriveVizError, match=message):
        run_fleet([world["recordings"]["a/drive"]], world["model"], out, OPTIONS,
                  FleetOptions(progress=False, cpus_per_task=cpus))
    assert not out.exists()


def test_anomaly_score_is_the_mean_mid_rank_fraction():
    from drive_viz.report.fleet import anomaly_scores

    def drive(name, off_road, corr, dead):
        return {"name": name, "attention": {"off_road_share": off_road, "temporal_corr": corr,
                                            "first_conv_dead_share": dead}}

    scores = anomaly_scores([drive("a", 0.5, 0.9, 0.0), drive("b", 0.1, 0.2, 0.0),
                             drive("c", 0.3, None, 0.0)])
    # off road: a worst (3/3), c (2/3), b (1/3); low correlation: b worst (2/2), a (1/2);
    # dead filters all tied: mid-rank 2 of 3 for everyone
    assert scores["a"] == pytest.approx((1 + 1 / 2 + 2 / 3) / 3)
    assert scores["b"] == pytest.approx((1 / 3 + 1 + 2 / 3) / 3)
    assert scores["c"] == pytest.approx((2 / 3 + 2 / 3) / 2)


def test_ranked_by_mae_in_report(fleet):
    out, data = fleet
    report = (out / "report.html").read_text()
    section = report.split("ranked by steering error")[1].split("</table>")[0]
    maes = {}
    for name in ("drive", "drive-2", "other"):
        run = pd.read_parquet(out / "runs" / name / "frames.parquet")
        maes[name] = float(np.mean(np.abs(run["steer_pred"] - run["steer_true"])))
    expected = sorted(maes, key=lambda n: -maes[n])
    positions = [section.index(f"'runs/{name}/report.html'") for name in expected]
    assert positions == sorted(positions)


def test_killed_worker_is_retried_to_completion(world, fleet):
    out = world["root"] / "F-crash"
    plan = world["crash_plan"] / "other"
    plan.touch()
    data = run_fleet([world["recordings"]["c/other"], world["recordings"]["a/drive"]],
                     world["model"], out, OPTIONS, QUIET)
    assert not plan.exists()  # the first attempt consumed the plan and exited
    assert data["counts"]["ok"] == 2
    _no_partials(out)
    first = pd.read_parquet(fleet[0] / "runs" / "other" / "frames.parquet")
    again = pd.read_parquet(out / "runs" / "other" / "frames.parquet")
    np.testing.assert_allclose(again["steer_pred"], first["steer_pred"], rtol=1e-5, atol=1e-7)
    assert len(pd.read_parquet(out / "frames")) == 2 * FRAMES


def test_resume_does_no_repeated_work(world):
    out = world["root"] / "F-resume"
    recs = [world["recordings"]["a/drive"], world["recordings"]["c/other"]]
    run_fleet(recs, world["model"], out, OPTIONS, QUIET)
    kept = out / "runs" / "drive" / "summary.json"
    before = kept.stat()
    for path in (out / "runs" / "other").iterdir():
        path.unlink()
    (out / "runs" / "other").rmdir()
    data = run_fleet(recs, world["model"], out, OPTIONS, FleetOptions(resume=True,
                                                                      progress=False))
    entries = _entries(data)
    assert entries["drive"]["resumed"] and not entries["other"]["resumed"]
    assert "worker" not in entries["drive"]
    after = kept.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert (out / "runs" / "other" / "summary.json").is_file()
    assert len(pd.read_parquet(out / "frames")) == 2 * FRAMES
    # everything complete: nothing is replayed at all
    data = run_fleet(recs, world["model"], out, OPTIONS, FleetOptions(resume=True,
                                                                      progress=False))
    assert data["resumed"] == 2 and kept.stat().st_mtime_ns == before.st_mtime_ns
    # other options: the runs are not complete for them, so both are replayed
    other = ReplayOptions(methods=("saliency",), video=False, progress=False, batch_size=8)
    data = run_fleet(recs, world["model"], out, other, FleetOptions(resume=True,
                                                                    progress=False))
    assert data["resumed"] == 0 and data["counts"]["ok"] == 2
    assert json.loads(kept.read_text())["parameters"]["methods"] == ["saliency"]


def test_existing_fleet_is_refused_without_resume_or_overwrite(world, fleet):
    from drive_viz.errors import DriveVizError

    out, _ = fleet
    before = sorted(p.name for p in out.iterdir())
    with pytest.raises(DriveVizError, match="already exists"):
        run_fleet([world["recordings"]["a/drive"]], world["model"], out, OPTIONS, QUIET)
    assert sorted(p.name for p in out.iterdir()) == before


@pytest.mark.parametrize("problem", ["methods", "model"])
def test_bad_input_is_refused_before_anything_is_written(world, tmp_path, problem):
    from drive_viz.errors import DriveVizError

    model, options = world["model"], OPTIONS
    if problem == "model":
        model = tmp_path / "broken.keras"
        model.write_bytes(b"not a zip")
    out = tmp_path / "F"
    with pytest.raises(DriveVizError, match="tea-leaves" if problem == "methods"
                       else "broken.keras: not a Keras model archive"):
        if problem == "methods":  # options are checked when they are made
            options = ReplayOptions(methods=("saliency", "tea-leaves"), video=False)
        run_fleet([world["recordings"]["a/drive"]], model, out, options, QUIET)
    assert not out.exists()


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    return subprocess.run([sys.executable, "-m", "drive_viz.cli", "fleet", *args],
                          capture_output=True, text=True, env=env, timeout=120)


def test_unreachable_address_is_one_line_and_exit_2(world, tmp_path):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    out = tmp_path / "never"
    result = _cli(str(world["recordings"]["a/drive"]), "--model", str(world["model"]),
                  "--out", str(out), "--address", f"127.0.0.1:{port}", "--quiet")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("drive-viz: error: Ray cluster at")
    assert "unreachable" in lines[0]
    assert not out.exists()


def test_without_ray_says_how_to_install(monkeypatch, capsys, tmp_path):
    from drive_viz.cli import main

    monkeypatch.setitem(sys.modules, "ray", None)
    code = main(["fleet", "x", "--model", "m.keras", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "pip install" in err[0]
    assert not (tmp_path / "o").exists()


def test_ctrl_c_keeps_complete_runs_and_removes_partial_ones(world, tmp_path):
    import signal
    import time

    from drive_viz.sim.synth import write_synthetic_recording

    long = write_synthetic_recording(tmp_path / "long", frames=160, seed=7)
    out = tmp_path / "F"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    command = [sys.executable, "-m", "drive_viz.cli", "fleet",
               str(world["recordings"]["c/other"]), str(long),
               str(world["recordings"]["a/drive"]), "--model", str(world["model"]),
               "--out", str(out), "--workers", "1", "--quiet"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 300
    while not (out / "runs" / "other").is_dir() and process.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130 and err.strip().endswith("drive-viz: interrupted")
    assert sorted(p.name for p in (out / "runs").iterdir()) == ["other"]
    assert sorted(p.name for p in (out / "frames").iterdir()) == ["recording=other"]
    _no_partials(out)
    data = json.loads((out / "fleet.json").read_text())
    assert [(e["name"], e["status"]) for e in data["recordings"]] == [
        ("other", "ok"), ("long", "interrupted"), ("drive", "interrupted")]


FRAGMENT_HOOK = """<script>
window.addEventListener("load", function () {
  setTimeout(function () {
    var out = document.createElement("pre");
    out.id = "test-result";
    out.textContent = String(document.getElementById("video").currentTime);
    document.body.appendChild(out);
  }, 2000);
});
</script>"""


@pytest.mark.skipif(not (shutil.which("chromium") or shutil.which("chromium-browser")),
                    reason="chromium is not installed")
def test_run_report_seeks_to_the_time_in_its_url_fragment(tmp_path):
    """The fleet links a drive's report at recording time T as report.html#t=T: the page
    seeks its video to the frame nearest T (frame k of a 10 fps video spans k/10..(k+1)/10 s;
    the report seeks to its middle)."""
    from drive_viz.render.video import H264Writer
    from drive_viz.report.html import write_report

    run = tmp_path / "run"
    run.mkdir()
    with H264Writer(run / "annotated.mp4", fps=10.0) as writer:
        for _ in range(20):
            writer.write(np.full((720, 1280, 3), 40, np.uint8))
    frames = pd.DataFrame({"frame": np.arange(20), "t": 5.0 + np.arange(20) / 10,
                           "steer_true": np.zeros(20), "steer_pred": np.zeros(20),
                           "abs_error": np.zeros(20)})
    summary = {"recording": "/data/rec", "source": "synthetic", "model": "m.keras",
               "parameters": {"methods": ["saliency"], "camera": "center", "target": "steer",
                              "start": 0, "end": 20, "stride": 1},
               "frames": {"selected": 20, "replayed": 20, "skipped": 0},
               "steering": {"mae": 0.0, "rmse": 0.0, "correlation": None},
               "statistics": {"saliency": {}}, "skipped": {"count": 0, "frames": []},
               "timing": {"frames_per_second": 100.0}, "video": {"fps": 10.0}}
    write_report(run / "report.html", summary, frames, {"by_error": [], "off_road": []})
    page = (run / "report.html").read_text()
    (run / "hooked.html").write_text(page.replace("<head>", "<head>\n" + FRAGMENT_HOOK, 1))
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    # recording time 6.23 s is nearest frame 12 (t = 6.2 s), shown from 1.2 to 1.3 s
    command = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
               "--disable-background-networking", "--disable-component-update",
               f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=10000",
               "--dump-dom", (run / "hooked.html").as_uri() + "#t=6.23"]
    dom = subprocess.run(command, capture_output=True, text=True, timeout=90).stdout
    match = re.search(r'<pre id="test-result">(.*?)</pre>', dom)
    assert match, dom[-300:]
    assert 1.2 < float(match.group(1)) < 1.3
