#!/usr/bin/env bash
# Capacity: how search cost and accuracy grow with rows, on the embedded
# Milvus. One collection (the tutorial's schema) is grown through the
# gateway's vector Insert to each size in turn: rows made from the corpus
# photos' real vectors (tests/src/synthetic.rs, `blended`: a photo moved
# part of the way to another, plus noise). At each size: the insert's rows/s,
# the seconds until the index covers every row, Milvus's RSS per row, and
# one-vector searches (top 10) at each search level through the gateway and
# through pymilvus with the same parameters, with recall@10 against exact
# L2 over the same rows. Writes the results as JSON and the charts
# (scale_latency.png, scale_recall.png) into OUT, and prints Markdown tables.
#
#   scripts/bench_scale.sh rows [OUT]        # OUT defaults to docs/bench
#   scripts/bench_scale.sh smoke [OUT]       # minutes: small sizes, few calls
#
# Settings (env): SCALE_SIZES (default "10000 50000 200000"), SCALE_CALLS
# (searches per level and client, default 300), SCALE_QUERIES (queries with
# an exact answer, default 100), SCALE_LEVELS (default "1 2 4"; the first
# line of each chart is the API's default level).
# Uses the local embedded Milvus on 19530 (scripts/milvus.sh): started if
# not running, and stopped again only if this script started it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

mode=${1:-rows}
out=${2:-docs/bench}
case $mode in
  rows) sizes=${SCALE_SIZES:-10000 50000 200000} calls=${SCALE_CALLS:-300}
    queries=${SCALE_QUERIES:-100} ;;
  smoke) sizes=${SCALE_SIZES:-1500 4000} calls=${SCALE_CALLS:-40}
    queries=${SCALE_QUERIES:-20} ;;
  *) echo "usage: $0 rows|smoke [OUT]" >&2; exit 2 ;;
esac
levels=${SCALE_LEVELS:-1 2 4}
scripts/setup.sh system libtorch milvus weights corpus pymilvus >/dev/null
cargo build --release --locked --workspace --bins ${IMGSEARCH_CARGO_FEATURES:+--features "$IMGSEARCH_CARGO_FEATURES"} 2>&1 | tail -1 >&2
mkdir -p "$out"
collection=bench_scale
python=.deps/venv-pymilvus/bin/python
. scripts/bench_stack.sh
start_servers

milvus_pgid=$(cat "${IMGSEARCH_MILVUS_DATA:-${IMGSEARCH_CACHE:-$HOME/.cache/imgsearch}/milvus-data}/milvus.pgid")
# Resident memory of every process of Milvus's group, in bytes.
milvus_rss() { ps -o rss= -g "$milvus_pgid" | awk '{s += $1} END {printf "%.0f\n", s * 1024}'; }
default_level=$(target/release/scale-bench default-level)

echo "embedding the corpus photos (the rows' bases)..." >&2
target/release/scale-bench bases "http://$embedder" "$work/bases.json" .deps/corpus/endless-sky/*.jpg
cli collection drop "$collection" >/dev/null 2>&1 || true
cli collection create "$collection" >/dev/null
sleep 5
rss_empty=$(milvus_rss)
loaded=0
: >"$work/sizes.jsonl"
for size in $sizes; do
  echo "growing to $size rows..." >&2
  load=$(target/release/scale-bench load "http://$gateway" "$collection" "$work/bases.json" "$loaded" "$size")
  loaded=$size
  index=$($python scripts/scale_baseline.py wait http://127.0.0.1:19530 "$collection")
  rss=$(milvus_rss)
  echo "exact answers for $queries queries..." >&2
  target/release/scale-bench truth "$work/bases.json" "$size" "$queries" "$work/truth.json"
  echo "searching ($calls calls per level and client)..." >&2
  ours=$(target/release/scale-bench search "http://$gateway" "$collection" "$work/truth.json" "$calls" $levels)
  specs=$(python3 -c 'import json,sys; print(" ".join(l + ":" + str(v["ef"]) for l, v in json.loads(sys.argv[1]).items()))' "$ours")
  base=$($python scripts/scale_baseline.py search http://127.0.0.1:19530 "$collection" "$calls" "$work/truth.json" $specs)
  python3 - "$size" "$load" "$index" "$rss" "$rss_empty" "$ours" "$base" >>"$work/sizes.jsonl" <<'PY'
import json, sys
size, load, index, rss, empty, ours, base = sys.argv[1:]
print(json.dumps({"rows": int(size), "load": json.loads(load), "index_seconds": json.loads(index)["index_seconds"],
                  "milvus_rss_bytes": int(rss), "milvus_rss_empty_bytes": int(empty),
                  "gateway": json.loads(ours), "pymilvus": json.loads(base)}))
PY
done
cli collection drop "$collection" >/dev/null

cpu=$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)
python3 - "$work/sizes.jsonl" "$out/scale_rows.json" "$cpu" "$(nproc)" "$calls" "$queries" \
  "$default_level" $levels <<'PY'
import datetime, json, sys
sizes_path, out_path, cpu, cores, calls, queries, default, *levels = sys.argv[1:]
sizes = [json.loads(l) for l in open(sizes_path)]
# Milvus's RSS per row over the empty collection, and per row added since
# the previous size (fixed costs cancel out of the second).
before = (0, sizes[0]["milvus_rss_empty_bytes"])
for s in sizes:
    s["milvus_bytes_per_row"] = (s["milvus_rss_bytes"] - s["milvus_rss_empty_bytes"]) / s["rows"]
    s["milvus_bytes_per_added_row"] = (s["milvus_rss_bytes"] - before[1]) / (s["rows"] - before[0])
    before = (s["rows"], s["milvus_rss_bytes"])
results = {"date": datetime.date.today().isoformat(), "cpu": cpu, "cores": int(cores),
           "calls": int(calls), "queries": int(queries), "default_level": int(default),
           "levels": [int(l) for l in levels], "sizes": sizes}
json.dump(results, open(out_path, "w"), indent=1)
print(f"Capacity, {results['date']}: embedded Milvus 2.3.5 on {cpu}, {cores} cores; rows stored "
      f"through vector Insert; one-vector searches, top 10, {calls} calls per level and client; "
      f"recall@10 over {queries} queries against exact L2.\n")
print("| rows | insert rows/s | index ready after (s) | Milvus RSS (GiB) | Milvus bytes/row | per row added |")
print("|---:|---:|---:|---:|---:|---:|")
for s in sizes:
    print(f"| {s['rows']:,} | {s['load']['rows_per_s']:,.0f} | {s['index_seconds']:.0f} "
          f"| {s['milvus_rss_bytes'] / 2**30:.2f} | {s['milvus_bytes_per_row']:,.0f} "
          f"| {s['milvus_bytes_per_added_row']:,.0f} |")
print()
print("| rows | level (ef) | gateway p50 / p99 (ms) | pymilvus p50 / p99 (ms) | p50 ratio | recall@10 gateway / pymilvus |")
print("|---:|---|---:|---:|---:|---:|")
for s in sizes:
    for l in levels:
        g, p = s["gateway"][l], s["pymilvus"][l]
        mark = " (default)" if l == default else ""
        print(f"| {s['rows']:,} | {l}{mark} ({g['ef']}) | {g['p50_ms']:.1f} / {g['p99_ms']:.1f} "
              f"| {p['p50_ms']:.1f} / {p['p99_ms']:.1f} | {g['p50_ms'] / p['p50_ms']:.2f}x "
              f"| {g['recall']:.3f} / {p['recall']:.3f} |")
PY
target/release/scale-bench chart "$out/scale_rows.json" "$out"
echo "wrote $out/scale_rows.json, $out/scale_latency.png, $out/scale_recall.png" >&2
