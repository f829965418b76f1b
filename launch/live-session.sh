#!/usr/bin/env bash
# Drive a CARLA vehicle with a live drive-viz saliency overlay, optionally starting the server.
set -euo pipefail

usage() {
    cat <<'USAGE'
usage: live-session.sh [--host localhost] [--port 2000] [--town Town04] [--model FILE]
                       [--start-server] [-- MORE drive-viz live OPTIONS]

Runs `drive-viz live --world carla` against a CARLA server (see launch/carla-server.sh).
With --start-server it starts a server first and stops it when the session ends.

  --host H          CARLA server host (default localhost)
  --port N          CARLA RPC port (default 2000)
  --town T          map to drive in (default Town04)
  --model FILE      steering model (.keras) to explain; passed as --model
  --start-server    start a local server and stop it afterwards
  -- ...            passed on to drive-viz live

environment:
  DRIVE_VIZ         the drive-viz command (default drive-viz)
USAGE
}

die() { echo "live-session.sh: $*" >&2; exit 1; }

host=localhost port=2000 town=Town04 model="" start_server=0 extra=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        -h|--help) usage; exit 0 ;;
        --host) host="${2:?--host needs a value}"; shift ;;
        --port) port="${2:?--port needs a value}"; shift ;;
        --town) town="${2:?--town needs a value}"; shift ;;
        --model) model="${2:?--model needs a value}"; shift ;;
        --start-server) start_server=1 ;;
        --) shift; extra=("$@"); break ;;
        *) echo "live-session.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
drive_viz="${DRIVE_VIZ:-drive-viz}"
command -v "$drive_viz" >/dev/null || die "$drive_viz: not found (pip install -e . in the drive-viz repo)"
if [[ -n "$model" ]]; then
    [[ -f "$model" ]] || die "$model: model file not found"
    extra=(--model "$model" "${extra[@]}")
fi

if [[ $start_server -eq 1 ]]; then
    "$here/carla-server.sh" start --port "$port"
    trap '"$here/carla-server.sh" stop --port "$port"' EXIT
else
    "$here/carla-server.sh" wait --host "$host" --port "$port" --timeout 30
fi
"$drive_viz" live --world carla --host "$host" --port "$port" --town "$town" "${extra[@]}"
