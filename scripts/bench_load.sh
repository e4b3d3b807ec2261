#!/usr/bin/env bash
# The system under load, in three shapes, with `imgsearch bench` over the
# endless-sky corpus; the embedder as scripts/bench_stack.sh picks it. Prints a Markdown table
# (images/s, search p50/p99, errors by code, peak RSS of each process) and
# leaves each shape's JSON report in $IMGSEARCH_BENCH_OUT (default a temp
# folder, deleted).
#
#   scripts/bench_load.sh [SECONDS]      # each shape runs SECONDS (default 30)
#
# Shapes: (a) 1 stream flat out; (b) 4 streams and 8 searching clients;
# (c) 8 streams against a small embedder queue (--queue-capacity 16).
#
# IMGSEARCH_BENCH_BIN points at another build's servers (a folder holding
# imgsearch-embedder and imgsearch-gateway), to measure a baseline with the
# same client. Uses the local embedded Milvus on 19530 (scripts/milvus.sh):
# started if not running, and stopped again only if this script started it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/setup.sh system libtorch milvus weights corpus >/dev/null
cargo build --release --locked --workspace --bins 2>&1 | tail -1 >&2

seconds=${1:-30}
bin=${IMGSEARCH_BENCH_BIN:-target/release}
. scripts/bench_stack.sh
out=${IMGSEARCH_BENCH_OUT:-$work}
mkdir -p "$out"

# shape NAME STREAMS SEARCHERS
shape() {
  echo "shape $1: $2 streams, $3 searchers, ${seconds} s..." >&2
  cli bench .deps/corpus/endless-sky --collection "bench_load_$1" --streams "$2" \
    --searchers "$3" --duration "$seconds" --json \
    --watch "gateway=${pids[1]}" --watch "embedder=${pids[0]}" >"$out/$1.json"
  cli collection drop "bench_load_$1" >/dev/null
}

start_servers
shape a 1 0
shape b 4 8
stop_servers
start_servers --queue-capacity 16
shape c 8 0
stop_servers

cpu=$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)
python3 - "$out" "$seconds" "$cpu" "$(nproc)" "$precision" <<'PY'
import json, sys
out, seconds, cpu, cores, precision = sys.argv[1:]
print(f"`imgsearch bench`, {seconds} s per shape, endless-sky corpus (720x360 JPEGs), "
      f"embedder {precision} on CPU, embedded Milvus 2.3.5; {cpu}, {cores} cores.\n")
print("| shape | images/s | search/s | search p50 / p99 (ms) | errors | peak RSS gateway / embedder (MiB) |")
print("|---|---|---|---|---|---|")
names = {"a": "(a) 1 stream", "b": "(b) 4 streams + 8 searchers", "c": "(c) 8 streams, queue 16"}
for s in "abc":
    r = json.load(open(f"{out}/{s}.json"))
    ins, sea = r["insert"], r["search"]
    errors = {**{f"insert {k}": v for k, v in ins["errors"].items()},
              **{f"search {k}": v for k, v in sea["errors"].items()}}
    err = ", ".join(f"{k}: {v}" for k, v in errors.items()) or "none"
    rss = {p["name"]: p["peak_rss_mib"] for p in r["processes"]}
    search = f"{sea['p50_ms']:.0f} / {sea['p99_ms']:.0f}" if sea["ok"] else "-"
    print(f"| {names[s]} | {ins['per_second']:.1f} | {sea['per_second']:.1f} | {search} | {err} "
          f"| {rss.get('gateway', 0):.0f} / {rss.get('embedder', 0):.0f} |")
PY
