#!/usr/bin/env bash
# Record a CARLA drive with drive-viz, optionally starting (and afterwards stopping) the server.
set -euo pipefail

usage() {
    cat <<'USAGE'
usage: record-session.sh [--host localhost] [--port 2000] [--town Town04] [--frames 2000]
                         [--out DIR] [--start-server] [-- MORE drive-viz record OPTIONS]

Runs `drive-viz record` against a CARLA server (see launch/carla-server.sh). With
--start-server it starts a server first (CARLA_ROOT or docker, as carla-server.sh does)
and stops it when the recording ends, fails or is interrupted.

  --host H          CARLA server host (default localhost)
  --port N          CARLA RPC port (default 2000)
  --town T          map to record in (default Town04)
  --frames N        frames to record (default 2000: 100 s at 20 fps)
  --out DIR         recording folder (default recordings/carla-TOWN-YYYYmmdd-HHMMSS)
  --start-server    start a local server and stop it afterwards
  -- ...            passed on to drive-viz record (e.g. -- --traffic 30 --weather WetSunset)

environment:
  DRIVE_VIZ         the drive-viz command (default drive-viz)
USAGE
}

die() { echo "record-session.sh: $*" >&2; exit 1; }

host=localhost port=2000 town=Town04 frames=2000 out="" start_server=0 extra=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        -h|--help) usage; exit 0 ;;
        --host) host="${2:?--host needs a value}"; shift ;;
        --port) port="${2:?--port needs a value}"; shift ;;
        --town) town="${2:?--town needs a value}"; shift ;;
        --frames) frames="${2:?--frames needs a value}"; shift ;;
        --out) out="${2:?--out needs a value}"; shift ;;
        --start-server) start_server=1 ;;
        --) shift; extra=("$@"); break ;;
        *) echo "record-session.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
drive_viz="${DRIVE_VIZ:-drive-viz}"
command -v "$drive_viz" >/dev/null || die "$drive_viz: not found (pip install -e . in the drive-viz repo)"
out="${out:-recordings/carla-$town-$(date +%Y%m%d-%H%M%S)}"

if [[ $start_server -eq 1 ]]; then
    "$here/carla-server.sh" start --port "$port"
    trap '"$here/carla-server.sh" stop --port "$port"' EXIT
else
    "$here/carla-server.sh" wait --host "$host" --port "$port" --timeout 30
fi
"$drive_viz" record --host "$host" --port "$port" --town "$town" --frames "$frames" \
    --out "$out" "${extra[@]}"
