#!/usr/bin/env bash
# One-image search latency, p50 and p99 over CALLS (default 120) calls each:
# the gateway's wall time, embedding time and Milvus time at every
# consistency level, and the tutorial's own pymilvus search of the same
# query vectors on the same collection, as the baseline of the ratios. The
# collection holds the endless-sky corpus ingested four times (about 1,090
# rows); the embedder as scripts/bench_stack.sh picks it. The default level
# also over the HTTP API (image as a form, vector as JSON), compared with
# gRPC on the gateway's own time per call. Prints a Markdown table.
#
#   scripts/bench_search.sh [CALLS]
#
# Uses the local embedded Milvus on 19530 (scripts/milvus.sh): started if
# not running, and stopped again only if this script started it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/setup.sh system libtorch milvus weights corpus pymilvus >/dev/null
cargo build --release --locked --workspace --bins 2>&1 | tail -1 >&2

calls=${1:-120}
collection=bench_search
. scripts/bench_stack.sh
start_servers

photos=(.deps/corpus/endless-sky/*.jpg)
queries=("${photos[@]:0:10}")
echo "ingesting ${#photos[@]} photos four times..." >&2
cli collection create "$collection" >/dev/null
for copy in 1 2 3 4; do
  mkdir -p "$work/copy$copy"
  for f in "${photos[@]:10}"; do ln -s "$(realpath "$f")" "$work/copy$copy/"; done
  cli ingest "$work/copy$copy" -c "$collection" --json >/dev/null
done
rows=$(cli collection describe "$collection" --json | python3 -c "import json,sys; print(json.load(sys.stdin)['row_count'])")

echo "searching ($calls calls per level)..." >&2
ours=$(target/release/search-bench "http://$gateway" "$http" "http://$embedder" "$collection" "$calls" \
  "$work/vectors.json" "${queries[@]}")
base=$(.deps/venv-pymilvus/bin/python scripts/search_baseline.py http://127.0.0.1:19530 \
  "$collection" "$calls" "$work/vectors.json")
cli collection drop "$collection" >/dev/null

cpu=$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)
python3 - "$ours" "$base" "$rows" "$calls" "$cpu" "$(nproc)" "$precision" <<'PY'
import json, sys
ours, base = json.loads(sys.argv[1]), json.loads(sys.argv[2])
rows, calls, cpu, cores, precision = sys.argv[3:]
print(f"One-image search, {calls} calls per row, {rows} rows, embedded Milvus 2.3.5, "
      f"embedder {precision} on CPU; {cpu}, {cores} cores.\n")
print("| client | consistency | wall p50 / p99 (ms) | embed p50 (ms) | Milvus p50 / p99 (ms) | Milvus p50 vs baseline | gateway's own p50 (ms) |")
print("|---|---|---|---|---|---|---|")
print(f"| pymilvus (the tutorial) | bounded | | | {base['p50_ms']:.1f} / {base['p99_ms']:.1f} | 1.00x | |")
names = {"session": "session (default)", "session_vectors": "session, query vectors (no embedding)",
         "http_form": "session, HTTP form", "http_vectors": "session, HTTP JSON query vectors"}
for level in ("session", "strong", "bounded", "eventually", "session_vectors", "http_form", "http_vectors"):
    r = ours[level]
    w, e, m, o = r["wall"], r["embed"], r["milvus"], r["own"]
    ratio = m["p50_ms"] / base["p50_ms"]
    client = "imgsearch gateway, HTTP" if level.startswith("http") else "imgsearch gateway"
    print(f"| {client} | {names.get(level, level)} | {w['p50_ms']:.1f} / {w['p99_ms']:.1f} "
          f"| {e['p50_ms']:.1f} | {m['p50_ms']:.1f} / {m['p99_ms']:.1f} | {ratio:.2f}x | {o['p50_ms']:.2f} |")
s, v = ours["session"], ours["session_vectors"]
print(f"\nGoals (default consistency): Milvus p50 at most 2x the baseline: "
      f"{s['milvus']['p50_ms'] / base['p50_ms']:.2f}x with image queries, "
      f"{v['milvus']['p50_ms'] / base['p50_ms']:.2f}x with vector queries; "
      f"wall p50 at most embed p50 + 20 ms: {s['wall']['p50_ms'] - s['embed']['p50_ms']:+.1f} ms over embed; "
      f"HTTP adds at most 1 ms at p50 to the gateway's own time: "
      f"{ours['http_form']['own']['p50_ms'] - s['own']['p50_ms']:+.2f} ms with an image form, "
      f"{ours['http_vectors']['own']['p50_ms'] - v['own']['p50_ms']:+.2f} ms with a JSON vector.")
PY
