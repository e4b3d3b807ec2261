#!/usr/bin/env bash
# The local embedded Milvus 2.3.5 standalone (installed by `scripts/setup.sh
# milvus`) on its default ports: gRPC 19530, health/metrics 9091.
#
#   scripts/milvus.sh start    start it and wait until it answers
#   scripts/milvus.sh stop     stop it (SIGTERM, then SIGKILL after 30 s)
#   scripts/milvus.sh status   say whether it runs and answers
#
# Data and logs: $IMGSEARCH_MILVUS_DATA (default ~/.cache/imgsearch/milvus-data).
# `milvus-server` is a Python wrapper that spawns the real server as a child
# and does not stop it when it is killed, so it runs in a process group of
# its own and stop signals the whole group.
set -euo pipefail

cache=${IMGSEARCH_CACHE:-$HOME/.cache/imgsearch}
data=${IMGSEARCH_MILVUS_DATA:-$cache/milvus-data}
pidfile=$data/milvus.pgid
server=$cache/venv-milvus/bin/milvus-server
start_timeout=${IMGSEARCH_MILVUS_START_TIMEOUT:-240}

log() { printf '\033[1m[milvus]\033[0m %s\n' "$*" >&2; }

healthy() {
  python3 - <<'PY' 2>/dev/null
import sys, urllib.request
try:
    ok = urllib.request.urlopen("http://127.0.0.1:9091/healthz", timeout=2).read().strip() == b"OK"
except Exception:
    ok = False
sys.exit(0 if ok else 1)
PY
}

running() { [ -f "$pidfile" ] && kill -0 -- "-$(cat "$pidfile")" 2>/dev/null; }

start() {
  if running; then
    log "already running (process group $(cat "$pidfile"))"
  else
    [ -x "$server" ] || { log "Milvus is not installed: run scripts/setup.sh milvus"; exit 1; }
    if healthy; then
      log "something else already answers on :9091; not starting a second Milvus"
      return 0
    fi
    mkdir -p "$data"
    log "starting Milvus (data and logs in $data)"
    setsid "$server" --data "$data" >"$data/milvus-server.log" 2>&1 < /dev/null &
    echo $! > "$pidfile"
  fi
  local waited=0
  until healthy; do
    if ! running; then
      log "Milvus exited during start; last lines of $data/milvus-server.log:"
      tail -20 "$data/milvus-server.log" >&2
      exit 1
    fi
    if [ "$waited" -ge "$start_timeout" ]; then
      log "Milvus did not answer within ${start_timeout}s; see $data/milvus-server.log"
      stop
      exit 1
    fi
    sleep 2; waited=$((waited + 2))
  done
  log "Milvus answers on 127.0.0.1:19530"
}

stop() {
  if ! running; then
    rm -f "$pidfile"
    log "not running"
    return 0
  fi
  local pgid; pgid=$(cat "$pidfile")
  kill -TERM -- "-$pgid" 2>/dev/null || true
  for _ in $(seq 30); do
    kill -0 -- "-$pgid" 2>/dev/null || break
    sleep 1
  done
  kill -KILL -- "-$pgid" 2>/dev/null || true
  rm -f "$pidfile"
  log "stopped"
}

status() {
  if running && healthy; then
    log "running and healthy (process group $(cat "$pidfile"))"
  elif running; then
    log "running, not answering yet"; exit 1
  else
    log "not running"; exit 1
  fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
