#!/usr/bin/env bash
# Start, wait for, or stop a headless CARLA 0.9.16 server for drive-viz.
set -euo pipefail

usage() {
    cat <<'USAGE'
usage: carla-server.sh start|stop|wait [--port 2000] [--quality Low|Epic] [--container]
                       [--pid-file FILE] [--timeout SECONDS] [--host HOST] [--no-wait]

  start      start a headless server (-RenderOffScreen) and wait until it answers
  wait       wait until the server at --host:--port answers (get_server_version)
  stop       stop the server started with the same --pid-file (or --port)

  --port N        RPC port (-carla-rpc-port; default 2000; the server also uses N+1)
  --quality Q     rendering quality, Low or Epic (default Epic)
  --container     run the official image (docker run --gpus all carlasim/carla:0.9.16);
                  the default when CARLA_ROOT is not set and docker is installed
  --pid-file F    where start writes the process id or container id
                  (default ${XDG_RUNTIME_DIR:-/tmp}/drive-viz-carla-PORT.pid)
  --timeout S     seconds wait and start give the server to answer (default 180)
  --host H        host wait polls (default localhost)
  --no-wait       start returns without waiting for the server

environment:
  CARLA_ROOT      a local CARLA install holding CarlaUE4.sh
  CARLA_DOCKER    container command (default docker; podman works too)
  CARLA_IMAGE     container image (default carlasim/carla:0.9.16)
  PYTHON          python with the carla client package, used by wait (default python3)
USAGE
}

die() { echo "carla-server.sh: $*" >&2; exit 1; }

command_name="" port=2000 quality=Epic container=0 pid_file="" timeout=180 host=localhost
wait_after_start=1
while [[ $# -gt 0 ]]; do
    case "$1" in
        -h|--help) usage; exit 0 ;;
        start|stop|wait) command_name="$1" ;;
        --port) port="${2:?--port needs a value}"; shift ;;
        --quality) quality="${2:?--quality needs a value}"; shift ;;
        --container) container=1 ;;
        --pid-file) pid_file="${2:?--pid-file needs a value}"; shift ;;
        --timeout) timeout="${2:?--timeout needs a value}"; shift ;;
        --host) host="${2:?--host needs a value}"; shift ;;
        --no-wait) wait_after_start=0 ;;
        *) echo "carla-server.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
[[ -n "$command_name" ]] || { usage >&2; exit 2; }
[[ "$port" =~ ^[0-9]+$ ]] || { echo "carla-server.sh: --port $port is not a number" >&2; exit 2; }
[[ "$quality" == Low || "$quality" == Epic ]] \
    || { echo "carla-server.sh: --quality must be Low or Epic, not $quality" >&2; exit 2; }
pid_file="${pid_file:-${XDG_RUNTIME_DIR:-/tmp}/drive-viz-carla-$port.pid}"
docker_command="${CARLA_DOCKER:-docker}"
image="${CARLA_IMAGE:-carlasim/carla:0.9.16}"
python="${PYTHON:-python3}"
server_args=(-RenderOffScreen -nosound "-carla-rpc-port=$port" "-quality-level=$quality")

wait_for_server() {
    command -v "$python" >/dev/null || die "$python: not found (set PYTHON)"
    "$python" -c 'import carla' 2>/dev/null \
        || die "$python cannot import carla (pip install carla==0.9.16)"
    local deadline=$((SECONDS + timeout))
    until version=$("$python" - "$host" "$port" 2>/dev/null <<'PY'
import sys
import carla
client = carla.Client(sys.argv[1], int(sys.argv[2]))
client.set_timeout(2.0)
print(client.get_server_version())
PY
    ); do
        (( SECONDS < deadline )) || die "no CARLA server answered at $host:$port within ${timeout} s"
        sleep 2
    done
    echo "CARLA $version answers at $host:$port"
}

start_server() {
    if [[ -s "$pid_file" ]]; then
        die "$pid_file exists: a server may be running (stop it first, or delete the file)"
    fi
    if [[ $container -eq 0 && -z "${CARLA_ROOT:-}" ]]; then
        command -v "$docker_command" >/dev/null || die "CARLA_ROOT is not set and \
$docker_command: not found; set CARLA_ROOT to a CARLA 0.9.16 install or install docker"
        container=1
    fi
    if [[ $container -eq 1 ]]; then
        command -v "$docker_command" >/dev/null || die "$docker_command: not found (set CARLA_DOCKER)"
        local id
        id=$("$docker_command" run -d --rm --privileged --gpus all --net=host "$image" \
             /bin/bash ./CarlaUE4.sh "${server_args[@]}")
        echo "container $id" > "$pid_file"
        echo "started container ${id:0:12} ($image) on port $port"
    else
        local launcher="$CARLA_ROOT/CarlaUE4.sh"
        [[ -f "$launcher" ]] || die "$launcher: not found (CARLA_ROOT must hold a CARLA install)"
        local log="${pid_file%.pid}.log"
        setsid bash "$launcher" "${server_args[@]}" >"$log" 2>&1 < /dev/null &
        echo "pid $!" > "$pid_file"
        echo "started $launcher (pid $!, log $log) on port $port"
    fi
    if [[ $wait_after_start -eq 1 ]]; then
        wait_for_server
    fi
}

stop_server() {
    [[ -s "$pid_file" ]] || die "$pid_file: not found (no server started with this --port/--pid-file)"
    local kind id
    read -r kind id < "$pid_file"
    if [[ "$kind" == container ]]; then
        "$docker_command" stop "$id" >/dev/null || die "could not stop container $id"
    else
        if kill -TERM -- "-$id" 2>/dev/null; then
            for _ in $(seq 20); do kill -0 -- "-$id" 2>/dev/null || break; sleep 0.5; done
            kill -KILL -- "-$id" 2>/dev/null || true
        fi
    fi
    rm -f "$pid_file"
    echo "stopped CARLA ($kind $id)"
}

case "$command_name" in
    start) start_server ;;
    wait) wait_for_server ;;
    stop) stop_server ;;
esac
