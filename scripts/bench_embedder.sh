#!/usr/bin/env bash
# Embedder throughput over the endless-sky-data photos (273 × 720x360 JPEGs),
# end to end over gRPC (decode + preprocess + inference), at max batch 1, 8
# and 32 in fp32 and bf16; and the tutorial's Python loop (PIL + torchvision +
# PyTorch, same weights, batch 8) in the same run, as the baseline of the
# ratios. Peak RSS of each. Then the hostile set (tests/src/hostile.rs: thin
# strips, headers declaring huge sizes, a scan bomb, 10,000 frames, a 16-bit
# 89.5 MP PNG...) through the embedder (fp32, defaults) and through the
# tutorial's pipeline, one file at a time: seconds and peak RSS of each.
# Prints Markdown tables.
#
#   scripts/bench_embedder.sh [WEIGHTS]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/setup.sh system libtorch grpcurl pyref weights corpus >/dev/null
cargo build --release --locked -p imgsearch-embedder -p imgsearch-tests --bins 2>&1 | tail -1 >&2

weights=${1:-.deps/weights/resnet50-seed0.safetensors}
files=(.deps/corpus/endless-sky/*.jpg)
port=$((20000 + RANDOM % 20000))
json() { python3 -c "import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])" "$1" "$2"; }
# start_embedder FLAGS...: an embedder on $port, waited on until SERVING; sets $pid.
start_embedder() {
  target/release/imgsearch-embedder --listen 127.0.0.1:$port --metrics-listen 127.0.0.1:$((port + 1)) \
    --weights "$weights" --device cpu "$@" >/tmp/imgsearch-bench-embedder.log 2>&1 &
  pid=$!
  for _ in $(seq 600); do
    .deps/bin/grpcurl -plaintext -d '{"service":"imgsearch.v1.Embedder"}' 127.0.0.1:$port \
      grpc.health.v1.Health/Check 2>/dev/null | grep -q '"SERVING"' && break
    sleep 0.1
  done
}
peak_rss_mib() { echo $(( $(awk '/VmHWM/ {print $2}' /proc/$pid/status) >> 10 )); }

echo "Python baseline (tutorial loop, batch 8)..." >&2
py=$(.deps/venv-ref/bin/python scripts/torch_reference.py bench --weights "$weights" --batch 8 "${files[@]}")
py_ips=$(json "$py" images_per_s)
py_rss=$(( $(json "$py" peak_rss_bytes) >> 20 ))

rows=()
for precision in fp32 bf16; do
  for batch in 1 8 32; do
    echo "imgsearch-embedder $precision, max batch $batch..." >&2
    start_embedder --precision $precision --max-batch $batch --max-wait-ms 20
    out=$(target/release/embed-bench "http://127.0.0.1:$port" $((2 * batch)) "${files[@]}")
    rss=$(peak_rss_mib)
    kill -TERM $pid; wait $pid || true
    ips=$(json "$out" images_per_s)
    rows+=("| imgsearch-embedder | $precision | $batch | $ips | $(python3 -c "print(f'{$ips / $py_ips:.2f}x')") | $rss |")
    port=$((port + 2))
  done
done

echo "hostile set..." >&2
hostile_dir=$(mktemp -d)
trap 'rm -rf "$hostile_dir"' EXIT
target/release/hostile-set "$hostile_dir"
hostile_files=("$hostile_dir"/*)
start_embedder
warm_rss=$(peak_rss_mib)
ours=$(target/release/embed-bench --allow-errors "http://127.0.0.1:$port" 0 "${hostile_files[@]}")
ours_rss=$(peak_rss_mib)
kill -TERM $pid; wait $pid || true
theirs=$(.deps/venv-ref/bin/python scripts/torch_reference.py hostile --weights "$weights" "${hostile_files[@]}")
theirs_rss=$(( $(json "$theirs" peak_rss_bytes) >> 20 ))

echo
echo "$(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), ${#files[@]} images"
echo
echo "| pipeline | precision | max batch | images/s | vs Python | peak RSS (MiB) |"
echo "|---|---|---|---|---|---|"
echo "| tutorial Python (PIL + torchvision + PyTorch) | fp32 | 8 | $py_ips | 1.00x | $py_rss |"
printf '%s\n' "${rows[@]}"
echo
echo "Hostile set: ${#hostile_files[@]} files, one stream (ours) or one at a time (tutorial)"
echo
echo "| pipeline | seconds | per-item errors | peak RSS (MiB) |"
echo "|---|---|---|---|"
echo "| tutorial Python (PIL + torchvision + PyTorch) | $(json "$theirs" seconds) | $(json "$theirs" errors) | $theirs_rss |"
echo "| imgsearch-embedder (fp32, defaults; $warm_rss MiB after warm-up) | $(json "$ours" seconds) | $(json "$ours" errors) | $ours_rss |"
