#!/usr/bin/env bash
# Filtered search latency: ROWS rows (default 50,000) stored through the
# gateway's vector Insert (the demo corpus's vectors plus seeded noise, an
# integer attribute `bucket` = row mod 100), then one-vector searches, top
# 10, CALLS each (default 200), without a filter and with filters selecting
# 1 % (bucket == 0) and 50 % (bucket < 50), through the gateway and through
# pymilvus with the same expressions on the same collection and query
# vectors, the baseline of the ratios. Prints a Markdown table.
#
#   scripts/bench_filters.sh [ROWS] [CALLS]
#
# Uses the local embedded Milvus on 19530 (scripts/milvus.sh): started if
# not running, and stopped again only if this script started it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/setup.sh system libtorch milvus weights corpus pymilvus >/dev/null
cargo build --release --locked --workspace --bins 2>&1 | tail -1 >&2

rows=${1:-50000}
calls=${2:-200}
collection=bench_filters
. scripts/bench_stack.sh
start_servers

cli collection create "$collection" --extended >/dev/null
echo "storing $rows rows through vector Insert..." >&2
load=$(target/release/filter-bench load "http://$gateway" "http://$embedder" "$collection" "$rows" \
  "$work/queries.json" .deps/corpus/endless-sky/*.jpg)
echo "waiting for the index..." >&2
index=$(.deps/venv-pymilvus/bin/python scripts/filter_baseline.py wait http://127.0.0.1:19530 "$collection")
echo "searching ($calls calls per filter and client)..." >&2
# The baseline runs before and after the gateway, so that a Milvus still
# settling (compactions after the index) shows as the two runs differing,
# and the ratio is taken against the faster of the two.
baseline() {
  .deps/venv-pymilvus/bin/python scripts/filter_baseline.py search http://127.0.0.1:19530 \
    "$collection" "$calls" "$work/queries.json"
}
before=$(baseline)
ours=$(target/release/filter-bench search "http://$gateway" "$collection" "$calls" "$work/queries.json")
after=$(baseline)
cli collection drop "$collection" >/dev/null

cpu=$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)
python3 - "$load" "$index" "$ours" "$before" "$after" "$calls" "$cpu" "$(nproc)" <<'PY'
import json, sys
load, index, ours, before, after = (json.loads(a) for a in sys.argv[1:6])
calls, cpu, cores = sys.argv[6:]
print(f"Filtered one-vector search, top 10, {calls} calls per row, {load['rows']:,} rows stored "
      f"through vector Insert at {load['rows_per_s']:,.0f} rows/s (index built "
      f"{index['index_seconds']:.0f} s later), embedded Milvus 2.3.5; {cpu}, {cores} cores.\n")
print("| filter | selects | pymilvus p50 / p99 (ms), before | gateway wall p50 / p99 (ms) | gateway's Milvus p50 (ms) | pymilvus p50 / p99 (ms), after | gateway p50 vs the faster pymilvus p50 | mean hits (gateway / pymilvus) |")
print("|---|---|---|---|---|---|---|---|")
for name, label in [("none", "no filter"), ("1%", "`bucket == 0`"), ("50%", "`bucket < 50`")]:
    o, b, a = ours[name], before[name], after[name]
    best = min(b["p50_ms"], a["p50_ms"])
    print(f"| {label} | {name if name != 'none' else 'all'} | {b['p50_ms']:.1f} / {b['p99_ms']:.1f} "
          f"| {o['wall']['p50_ms']:.1f} / {o['wall']['p99_ms']:.1f} | {o['milvus']['p50_ms']:.1f} "
          f"| {a['p50_ms']:.1f} / {a['p99_ms']:.1f} "
          f"| {o['wall']['p50_ms'] / best:.2f}x | {o['mean_hits']:.1f} / {b['mean_hits']:.1f} |")
PY
