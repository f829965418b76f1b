"""``drive-viz serve``'s file access and ``live --serve``'s publisher, without TensorFlow.

Path escapes are sent as raw request lines (http.client does not normalize them); "read
nothing" is checked by recording every file the process opens while the server answers.
"""

from __future__ import annotations

import builtins
import http.client
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from support import tree_digest

from drive_viz.cli import main
from drive_viz.errors import DriveVizError
from drive_viz.serve.files import serve
from drive_viz.serve.stream import BOUNDARY, LivePublisher
from drive_viz.serve.web import is_loopback, parse_address

SECRET = "TOP-SECRET-CONTENT"


@pytest.fixture
def served(tmp_path):
    """RUNS_DIR with a run, a partial file and symbolic links out of it; a secret beside it."""
    root = tmp_path / "runs"
    run = root / "day1" / "run"
    run.mkdir(parents=True)
    (run / "report.html").write_text("<p>the report</p>")
    (run / "annotated.mp4").write_bytes(bytes(range(256)) * 40)
    (run / ".annotated.mp4.partial").write_text(SECRET)
    (tmp_path / "secret.txt").write_text(SECRET)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "file.txt").write_text(SECRET)
    (run / "leak.txt").symlink_to(tmp_path / "secret.txt")
    (root / "out").symlink_to(outside, target_is_directory=True)
    (run / "inside.html").symlink_to(run / "report.html")
    server = serve(root, "127.0.0.1", 0)
    yield server, root, tmp_path
    server.close()


def request(server, method: str, target: str, headers: dict | None = None,
            body: bytes | None = None) -> tuple[int, bytes, dict]:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    connection.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
    for name, value in {"Host": f"127.0.0.1:{server.port}", **(headers or {})}.items():
        connection.putheader(name, value)
    if body is not None:
        connection.putheader("Content-Length", str(len(body)))
    connection.endheaders(body)
    response = connection.getresponse()
    data = response.read()
    connection.close()
    return response.status, data, dict(response.getheaders())


ESCAPES = [
    "/../secret.txt", "/%2e%2e/secret.txt", "/%2E%2E/secret.txt", "/day1/../../secret.txt",
    "/day1/%2e%2e/%2e%2e/secret.txt", "/day1/run/%2e%2e%2f%2e%2e%2f%2e%2e%2fsecret.txt",
    "/%2e%2e%2fsecret.txt", "/..%5csecret.txt", "//etc/passwd", "/%2fetc%2fpasswd",
    "/day1/run/leak.txt", "/out/file.txt", "/out/../../secret.txt",
    "/day1/run/.annotated.mp4.partial", "/day1/run/", "/day1", "/day1/run/report.html%00",
    "/day1/run/report.html%00.txt",
]


def test_path_escapes_are_404_and_read_nothing(served, monkeypatch) -> None:
    server, root, tmp_path = served
    (tmp_path / "etc").mkdir()
    opened: list[str] = []
    real_open = builtins.open

    def spy(file, *args, **kwargs):
        opened.append(str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", spy)
    for target in ESCAPES:
        status, body, _ = request(server, "GET", target)
        assert status == 404, target
        assert SECRET.encode() not in body, target
        head, _, _ = request(server, "HEAD", target)
        assert head == 404, target
    assert not [path for path in opened if SECRET in Path(path).read_text(errors="ignore")
                or not Path(path).resolve().is_relative_to(root)], opened
    status, body, _ = request(server, "GET", "/day1/run/report.html")
    assert (status, body) == (200, b"<p>the report</p>")
    status, body, _ = request(server, "GET", "/day1/run/inside.html")  # a link that stays in
    assert (status, body) == (200, b"<p>the report</p>")
    assert any(path.endswith("report.html") for path in opened)


def test_only_get_and_head_and_nothing_changes(served) -> None:
    server, root, tmp_path = served
    before = tree_digest(tmp_path)
    for method in ("POST", "PUT", "DELETE", "PATCH", "OPTIONS"):
        for target in ("/", "/day1/run/report.html", "/day1/run/new.html", "/../secret.txt"):
            status, _, _ = request(server, method, target, body=b"overwritten")
            assert status in (404, 405), (method, target, status)
            if target in ("/", "/day1/run/report.html"):
                assert status == 405
    assert tree_digest(tmp_path) == before


def test_video_range_requests_seek(served) -> None:
    server, root, _ = served
    video = (root / "day1" / "run" / "annotated.mp4").read_bytes()
    status, body, headers = request(server, "GET", "/day1/run/annotated.mp4",
                                    {"Range": "bytes=1000-1099"})
    assert status == 206 and body == video[1000:1100]
    assert headers["Content-Range"] == f"bytes 1000-1099/{len(video)}"
    status, body, _ = request(server, "GET", "/day1/run/annotated.mp4")
    assert status == 200 and body == video


def test_foreign_host_header_is_refused_on_loopback(served) -> None:
    server, _, _ = served
    for host in ("evil.example", f"evil.example:{server.port}", "10.0.0.1"):
        status, body, _ = request(server, "GET", "/day1/run/report.html", {"Host": host})
        assert status == 403 and b"the report" not in body
    for host in (f"localhost:{server.port}", "localhost:9999", f"127.0.0.1:{server.port}"):
        assert request(server, "GET", "/day1/run/report.html", {"Host": host})[0] == 200


def test_serve_errors_are_one_line(tmp_path, capsys) -> None:
    assert main(["serve", str(tmp_path / "missing")]) == 2
    assert capsys.readouterr().err.strip().count("\n") == 0
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        assert main(["serve", str(tmp_path), "--port", str(taken.getsockname()[1])]) == 2
        error = capsys.readouterr().err
        assert "cannot listen" in error and error.count("\n") == 1
    finally:
        taken.close()


# --- live --serve: the publisher -----------------------------------------------------------

def picture(k: int) -> np.ndarray:
    """A 1280x720 overlay-like frame (smooth, so it encodes like a real one) with a bar at k."""
    frame = np.zeros((720, 1280, 3), np.uint8)
    frame[:, :, 0] = np.linspace(0, 200, 1280, dtype=np.uint8)
    frame[300:420, (40 * k) % 1240:(40 * k) % 1240 + 40] = (230, 90, 30)
    return frame


VIEWER = """
import socket, sys, time
port, seconds, marker = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3].encode()
parts, tail, end = 0, b"", time.monotonic() + seconds
with socket.create_connection(("127.0.0.1", port)) as sock:
    sock.sendall(b"GET /stream.mjpg HTTP/1.1\\r\\nHost: 127.0.0.1\\r\\n\\r\\n")
    sock.settimeout(0.1)
    while time.monotonic() < end:
        try:
            chunk = sock.recv(1 << 16)
        except TimeoutError:
            continue
        if not chunk:
            break
        data = tail + chunk
        parts += data.count(marker)
        tail = data[-len(marker):]
print(parts)
"""


def viewer(port: int, seconds: float) -> subprocess.Popen:
    """A browser-like viewer in its own process: reads /stream.mjpg for ``seconds`` and prints
    how many JPEG parts it received."""
    return subprocess.Popen([sys.executable, "-c", VIEWER, str(port), str(seconds),
                             f"--{BOUNDARY}"], stdout=subprocess.PIPE, text=True)


def test_slow_viewer_does_not_slow_the_simulation() -> None:
    """Publish times per step, and what a good viewer receives, with and without a viewer that
    never reads (its socket buffers fill, its send never completes)."""
    info = {"title": "test", "world": "synthetic", "synthetic": True, "fps": 20.0}
    steps, period = 50, 0.05
    pictures = [picture(k) for k in range(steps)]
    row = {"frame": 0, "t": 0.0, "steer_true": 0.1, "steer_pred": 0.2, "interventions": 0}

    def drive() -> tuple[float, list[float], list[float]]:
        """Seconds for the whole drive; wall and CPU ms of each publish call."""
        wall, cpu = [], []
        started = time.perf_counter()
        for k in range(steps):
            tick, tick_cpu = time.perf_counter(), time.thread_time()
            publisher.publish(pictures[k], {**row, "frame": k})
            wall.append((time.perf_counter() - tick) * 1000)
            cpu.append((time.thread_time() - tick_cpu) * 1000)
            time.sleep(period)
        return time.perf_counter() - started, wall, cpu

    publisher = LivePublisher("127.0.0.1", 0, info)
    try:
        port = int(publisher.url.rsplit(":", 1)[1].strip("/"))
        phase = steps * period
        viewers = [viewer(port, phase + 0.5), viewer(port, phase + 0.5)]  # several at once
        time.sleep(0.5)
        alone = drive()
        received = [int(v.communicate(timeout=30)[0]) for v in viewers]
        stalled = socket.socket()
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stalled.connect(("127.0.0.1", port))
        stalled.sendall(f"GET /stream.mjpg HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
        viewers = [viewer(port, phase + 0.5), viewer(port, phase + 0.5)]
        time.sleep(0.5)
        with_stalled = drive()
        received_stalled = [int(v.communicate(timeout=30)[0]) for v in viewers]
        started = time.perf_counter()
    finally:
        publisher.close()
    closing = time.perf_counter() - started
    stalled.close()
    # publish only hands over: a viewer that blocked it would stall the drive for seconds,
    # and its CPU cost stays the same. (Wall times per call carry the scheduler's noise on a
    # loaded machine; benchmarks/live_latency.py measures the cost per step against live's
    # 10 ms budget.)
    seconds_alone, _, cpu_alone = alone
    seconds_stalled, wall_stalled, cpu_stalled = with_stalled
    assert max(wall_stalled) < 500.0
    assert seconds_stalled < seconds_alone + 1.0, (seconds_alone, seconds_stalled)
    assert np.median(cpu_stalled) < np.median(cpu_alone) + 0.5, (cpu_alone, cpu_stalled)
    # the good viewers kept getting frames (dropping, not queueing, when they lag)
    assert all(count >= steps // 5 for count in received), received
    assert all(count >= steps // 5 for count in received_stalled), received_stalled
    assert all(count <= steps + 1 for count in received_stalled)  # + the frame on connect
    assert closing < 5.0  # the stalled connection does not hold the shutdown


def test_addresses() -> None:
    assert parse_address("8080") == ("127.0.0.1", 8080)
    assert parse_address("0.0.0.0:9000") == ("0.0.0.0", 9000)
    assert parse_address("[::1]:0") == ("::1", 0)
    for bad in ("http", "host:", "127.0.0.1:70000", ":-1", ":80"):
        with pytest.raises(DriveVizError, match="address"):
            parse_address(bad)
    assert is_loopback("127.0.0.2") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.4")


def test_exposed_address_warns(capsys) -> None:
    with LivePublisher("0.0.0.0", 0, {"title": "t", "fps": 20.0}) as publisher:
        assert publisher.url.startswith("http://0.0.0.0:")
    assert "warning" in capsys.readouterr().err
    with LivePublisher("127.0.0.1", 0, {"title": "t", "fps": 20.0}):
        pass
    assert capsys.readouterr().err == ""


def test_index_of_an_empty_folder(tmp_path) -> None:
    assert main(["index", str(tmp_path)]) == 0
    assert "No runs found" in (tmp_path / "index.html").read_text()
