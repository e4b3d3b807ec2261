# Sourced by the benchmark scripts: the local embedded Milvus on 19530
# (started if not running, stopped at exit only if started here), and
# start_servers [EMBEDDER FLAGS...], an embedder (on CPU, the seeded
# weights, bf16 where the CPU has it natively (avx512_bf16 or amx_bf16),
# else fp32, which is then 3x faster than emulated bf16;
# IMGSEARCH_BENCH_PRECISION overrides) and a gateway in front of it on random ports, waited for; then
# `cli` is the imgsearch CLI pointed at that gateway, $work a temporary
# folder deleted at exit, and every server is stopped at exit
# (stop_servers stops them earlier). $bin (default target/release) holds
# the servers to run.
bin=${bin:-target/release}
weights=.deps/weights/resnet50-seed0.safetensors
port=$((20000 + RANDOM % 20000))
gateway=127.0.0.1:$port embedder=127.0.0.1:$((port + 1)) http=127.0.0.1:$((port + 4))
work=$(mktemp -d)
pids=()
started_milvus=false
stop_servers() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  pids=()
}
cleanup() {
  stop_servers
  $started_milvus && scripts/milvus.sh stop
  rm -rf "$work"
}
trap cleanup EXIT
if ! scripts/milvus.sh status >/dev/null 2>&1; then
  scripts/milvus.sh start
  started_milvus=true
fi
cli() { target/release/imgsearch --gateway "$gateway" "$@"; }
if grep -qwE 'avx512_bf16|amx_bf16' /proc/cpuinfo; then precision=bf16; else precision=fp32; fi
precision=${IMGSEARCH_BENCH_PRECISION:-$precision}

start_servers() {
  "$bin/imgsearch-embedder" --listen "$embedder" --metrics-listen 127.0.0.1:$((port + 2)) \
    --weights "$weights" --device cpu --precision "$precision" "$@" >"$work/embedder.log" 2>&1 &
  pids+=($!)
  "$bin/imgsearch-gateway" --listen "$gateway" --metrics-listen 127.0.0.1:$((port + 3)) \
    --http-listen "$http" \
    --milvus-uri http://127.0.0.1:19530 --embedder "http://$embedder" >"$work/gateway.log" 2>&1 &
  pids+=($!)
  cli health --wait 300 >/dev/null
}
