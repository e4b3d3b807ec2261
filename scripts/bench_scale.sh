#!/usr/bin/env bash
# Capacity: how cost grows with rows, with images ingested and with time,
# on the embedded Milvus. Writes results as JSON and charts as PNG into OUT
# and prints Markdown tables.
#
#   scripts/bench_scale.sh rows [OUT]    # OUT defaults to docs/bench
#   scripts/bench_scale.sh time [OUT]
#   scripts/bench_scale.sh smoke [OUT]   # both, small: minutes
#
# rows: one collection (the tutorial's schema) is grown through the
# gateway's vector Insert to each size in turn: rows made from the corpus
# photos' real vectors (tests/src/synthetic.rs, `blended`: a photo moved
# part of the way to another, plus noise). At each size: the insert's rows/s,
# the seconds until the index covers every row, Milvus's RSS per row, and
# one-vector searches (top 10) at each search level through the gateway and
# through pymilvus with the same parameters, with recall@10 against exact
# L2 over the same rows (scale_rows.json, scale_latency.png,
# scale_recall.png).
#
# time: `imgsearch bench` over distinct images made from the corpus (crops,
# flips, re-encodes; tests/src/variants.rs), with fresh servers per shape:
# an ingest of TIME_IMAGES images by 1 stream and by 4, and a soak of
# SOAK_SECONDS with 2 ingest streams and 8 searching clients at
# SOAK_SEARCH_RATE searches/s each (default 0.5: searches go before bulk
# inserts, so flat-out searchers would starve the ingest). Each shape's
# report (time/NAME.json) has images/s, search p50/p99, errors by code and
# the RSS and open files of the gateway, the embedder and Milvus per
# TIME_INTERVAL seconds; the charts are time_throughput.png,
# time_latency.png and time_rss_NAME.png. TIME_SHAPES picks shapes (default
# "ingest-1 ingest-4 soak"); the charts draw every report in OUT/time, so
# shapes may be run apart.
#
# Settings (env): SCALE_SIZES (default "10000 50000 200000"), SCALE_CALLS
# (searches per level and client, default 300), SCALE_QUERIES (queries with
# an exact answer, default 100), SCALE_LEVELS (default "1 2 4"; the first
# line of each chart is the API's default level), TIME_IMAGES (20000),
# SOAK_SECONDS (1200), TIME_INTERVAL (60), TIME_SHAPES, SOAK_SEARCH_RATE.
# The smoke run fails when its soak had any error, or when a server's RSS
# grew from the soak's second interval to its last by more than
# SOAK_MAX_GROWTH_MIB (default 64; Milvus, which holds the rows, is exempt).
# Uses the local embedded Milvus on 19530 (scripts/milvus.sh): started if
# not running, and stopped again only if this script started it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

mode=${1:-rows}
out=${2:-docs/bench}
case $mode in
  rows|time) sizes=${SCALE_SIZES:-10000 50000 200000} calls=${SCALE_CALLS:-300}
    queries=${SCALE_QUERIES:-100} images=${TIME_IMAGES:-20000}
    soak=${SOAK_SECONDS:-1200} interval=${TIME_INTERVAL:-60} ;;
  smoke) sizes=${SCALE_SIZES:-1500 4000} calls=${SCALE_CALLS:-40}
    queries=${SCALE_QUERIES:-20} images=${TIME_IMAGES:-60}
    soak=${SOAK_SECONDS:-40} interval=${TIME_INTERVAL:-5} ;;
  *) echo "usage: $0 rows|time|smoke [OUT]" >&2; exit 2 ;;
esac
shapes=${TIME_SHAPES:-ingest-1 ingest-4 soak}
search_rate=${SOAK_SEARCH_RATE:-0.5}
levels=${SCALE_LEVELS:-1 2 4}
scripts/setup.sh system libtorch milvus weights corpus pymilvus >/dev/null
cargo build --release --locked --workspace --bins ${IMGSEARCH_CARGO_FEATURES:+--features "$IMGSEARCH_CARGO_FEATURES"} 2>&1 | tail -1 >&2
mkdir -p "$out"
collection=bench_scale
python=.deps/venv-pymilvus/bin/python
. scripts/bench_stack.sh
cpu=$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)
milvus_pgid=$(cat "${IMGSEARCH_MILVUS_DATA:-${IMGSEARCH_CACHE:-$HOME/.cache/imgsearch}/milvus-data}/milvus.pgid")
# Resident memory of every process of Milvus's group, in bytes.
milvus_rss() { ps -o rss= -g "$milvus_pgid" | awk '{s += $1} END {printf "%.0f\n", s * 1024}'; }
# The largest process of Milvus's group: the one `imgsearch bench` watches.
milvus_pid() { ps -o pid=,rss= -g "$milvus_pgid" | sort -k2 -n | awk 'END {print $1}'; }

# The rows part (its body is not indented: it holds heredocs).
rows_part() {
start_servers
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
stop_servers
}

# The time part: one shape with fresh servers; its report into time/NAME.json.
# shape NAME STREAMS SEARCHERS [bench flags...]
shape() {
  local name=$1 streams=$2 searchers=$3
  shift 3
  start_servers
  echo "shape $name: $streams streams, $searchers searchers..." >&2
  cli bench "$variants" --collection bench_time --streams "$streams" --searchers "$searchers" \
    --interval "$interval" --json --watch "gateway=${pids[1]}" --watch "embedder=${pids[0]}" \
    --watch "milvus=$(milvus_pid)" "$@" >"$out/time/$name.json"
  cli collection drop bench_time >/dev/null
  stop_servers
}

time_part() {
variants=${IMGSEARCH_CACHE:-$HOME/.cache/imgsearch}/bench-variants-$images
if [[ ! -f $variants/.complete ]]; then
  echo "making $images distinct images from the corpus..." >&2
  rm -rf "$variants"
  target/release/time-bench variants "$variants" "$images" .deps/corpus/endless-sky/*.jpg .deps/corpus/photos/*
  touch "$variants/.complete"
fi
mkdir -p "$out/time"
for s in $shapes; do
  case $s in
    ingest-1) shape ingest-1 1 0 --total-images "$images" ;;
    ingest-4) shape ingest-4 4 0 --total-images "$images" ;;
    soak) shape soak 2 8 --duration "$soak" --search-rate "$search_rate" ;;
    *) echo "unknown shape $s" >&2; exit 2 ;;
  esac
done
reports=()
for r in "$out"/time/*.json; do reports+=("$(basename "$r" .json)=$r"); done
target/release/time-bench chart "$out" "${reports[@]}"
python3 - "$out/time" "$cpu" "$(nproc)" "$precision" "$interval" <<'PY'
import datetime, json, os, sys
folder, cpu, cores, precision, interval = sys.argv[1:]
names = {"ingest-1": "1 stream", "ingest-4": "4 streams", "soak": "soak: 2 streams + 8 searchers"}
print(f"Time: `imgsearch bench` over distinct images made from "
      f"the corpus, embedder {precision} on CPU, embedded Milvus 2.3.5; {cpu}, {cores} cores; "
      f"per {interval} s.\n")
print("| shape | run on | images | minutes | images/s (first / last interval, whole run) | search p99 worst interval (ms) "
      "| errors | RSS first -> last interval (MiB): gateway / embedder / Milvus | open files, last |")
print("|---|---|---:|---:|---:|---:|---|---|---|")
for name in ["ingest-1", "ingest-4", "soak"]:
    path = f"{folder}/{name}.json"
    if not os.path.exists(path):
        continue
    r = json.load(open(path))
    t = r["timeline"]
    full = [i for i in t if i["end_s"] % r["interval_seconds"] < 1e-6] or t
    errors = {**{f"insert {k}": v for k, v in r["insert"]["errors"].items()},
              **{f"search {k}": v for k, v in r["search"]["errors"].items()}}
    err = ", ".join(f"{k}: {v}" for k, v in errors.items()) or "none"
    p99 = max(i["search"]["p99_ms"] for i in t) if r["search"]["ok"] else 0
    rss = " / ".join(f"{a['rss_mib']:.0f} -> {b['rss_mib']:.0f}"
                     for a, b in zip(full[0]["processes"], full[-1]["processes"]))
    fds = " / ".join(str(p["fds"]) for p in t[-1]["processes"])
    day = datetime.date.fromtimestamp(os.path.getmtime(path)).isoformat()
    print(f"| {names[name]} | {day} | {r['insert']['ok']:,} | {r['seconds'] / 60:.1f} "
          f"| {full[0]['insert']['per_second']:.1f} / {full[-1]['insert']['per_second']:.1f}, "
          f"{r['insert']['per_second']:.2f} | {p99:.0f} | {err} | {rss} | {fds} |")
PY
}

case $mode in
  rows) rows_part ;;
  time) time_part ;;
  smoke) rows_part; time_part
    # The soak ended with no error, and no server grew past the bound.
    python3 - "$out/time/soak.json" "${SOAK_MAX_GROWTH_MIB:-64}" <<'PY' ;;
import json, sys
r, bound = json.load(open(sys.argv[1])), float(sys.argv[2])
errors = {**r["insert"]["errors"], **r["search"]["errors"]}
assert not errors, f"the smoke soak had errors: {errors}"
assert r["insert"]["ok"] > 0 and r["search"]["ok"] > 0, "the smoke soak stored and searched nothing"
t = r["timeline"]
for k, p in enumerate(t[1]["processes"]):
    grew = t[-1]["processes"][k]["rss_mib"] - p["rss_mib"]
    print(f"smoke soak: {p['name']} RSS grew {grew:.1f} MiB from interval 2 to the last")
    assert p["name"] == "milvus" or grew <= bound, f"{p['name']} grew {grew:.1f} MiB > {bound}"
PY
esac
