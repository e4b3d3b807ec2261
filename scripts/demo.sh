#!/usr/bin/env bash
# README command 1: the Milvus tutorial "image search with PyTorch", end to
# end, on the embedded default.
#
#   scripts/demo.sh                  set up, build, start Milvus + embedder +
#                                    gateway, ingest the demo photos, search
#                                    with held-back ones, write
#                                    demo/search_result.png, stop everything
#   scripts/demo.sh --keep-running   the same, leaving the services up
#   scripts/demo.sh stop             stop what --keep-running left
#
# Environment: IMGSEARCH_WEIGHTS (a ResNet50 safetensors file to use),
# IMGSEARCH_MILVUS_URI (use that Milvus instead of starting the local one),
# IMGSEARCH_DEMO_DIR (default demo/), IMGSEARCH_DEMO_IMAGES (use only the
# first N corpus photos).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

out=${IMGSEARCH_DEMO_DIR:-demo}
cache=${IMGSEARCH_CACHE:-$HOME/.cache/imgsearch}
bin=target/release
collection=image_embeddings
gateway_addr=127.0.0.1:50051
http_addr=127.0.0.1:8080
embedder_addr=127.0.0.1:50052

log() { printf '\033[1m[demo]\033[0m %s\n' "$*" >&2; }

stop_services() {
  for name in gateway embedder; do
    local pidfile=$out/$name.pid
    [ -f "$pidfile" ] || continue
    local pid; pid=$(cat "$pidfile")
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
      kill -KILL "$pid" 2>/dev/null || true
      log "stopped $name"
    fi
    rm -f "$pidfile"
  done
  if [ -f "$out/milvus.started" ]; then
    scripts/milvus.sh stop
    rm -f "$out/milvus.started"
  fi
}

keep=false
case "${1:-}" in
  "") ;;
  --keep-running) keep=true ;;
  stop) stop_services; exit 0 ;;
  *) echo "usage: $0 [--keep-running | stop]" >&2; exit 2 ;;
esac

listening() { (exec 3<>"/dev/tcp/${1%:*}/${1#*:}") 2>/dev/null; }

# 1. Everything installed, the binaries built.
scripts/setup.sh
scripts/setup.sh corpus
log "building the release binaries"
# The whole workspace, as scripts/test.sh builds it: the same feature set, so
# after the tests this is a no-op instead of a partial rebuild (test.sh passes
# its test-only features in IMGSEARCH_CARGO_FEATURES; a user builds none).
cargo build --release --locked --workspace --bins ${IMGSEARCH_CARGO_FEATURES:+--features "$IMGSEARCH_CARGO_FEATURES"}

# 2. Weights: the tutorial's IMAGENET1K_V1 when they can be had.
imagenet=$cache/weights/resnet50-imagenet1k-v1.safetensors
weights=${IMGSEARCH_WEIGHTS:-}
if [ -z "$weights" ]; then
  if [ ! -f "$imagenet" ]; then
    log "converting torchvision's IMAGENET1K_V1 weights (needs download.pytorch.org)"
    timeout 180 "$cache/venv-ref/bin/python" scripts/export_weights.py --imagenet \
      --out "$imagenet.partial" && mv "$imagenet.partial" "$imagenet" || rm -f "$imagenet.partial"
  fi
  if [ -f "$imagenet" ]; then
    weights=$imagenet
  else
    weights=$cache/weights/resnet50-seed0.safetensors
    log "WARNING: the IMAGENET1K_V1 weights could not be downloaded; using seeded RANDOM"
    log "WARNING: weights instead. The run shows the whole pipeline working, but its"
    log "WARNING: search results are not semantically meaningful. With internet access,"
    log "WARNING: rerun, or set IMGSEARCH_WEIGHTS to a converted file (see README, Weights)."
  fi
fi
log "weights: $weights"

# 3. The corpus, a few photos held back as queries.
mkdir -p "$out"
stop_services # whatever an earlier --keep-running run left
rm -rf "$out/corpus" "$out/queries" "$out/search_result.png"
mkdir -p "$out/corpus" "$out/queries"
mapfile -t photos < <(find "$cache/corpus/endless-sky" -name '*.jpg' | sort)
[ -n "${IMGSEARCH_DEMO_IMAGES:-}" ] && photos=("${photos[@]:0:$IMGSEARCH_DEMO_IMAGES}")
n=${#photos[@]}
[ "$n" -ge 10 ] || { log "expected at least 10 corpus photos, found $n"; exit 1; }
held=("$((n / 7))" "$((n / 2))" "$((n * 5 / 6))")
for i in "${!photos[@]}"; do
  dest=$out/corpus
  [[ " ${held[*]} " == *" $i "* ]] && dest=$out/queries
  # Copies, not links: the search page's thumbnails are served only from
  # files inside the gateway's --media-root (here, this directory).
  cp "${photos[$i]}" "$dest/$(basename "${photos[$i]}")"
done
log "corpus: $((n - 3)) photos to ingest, 3 held back as queries"

# 4. Milvus, the embedder and the gateway.
for addr in $gateway_addr $http_addr $embedder_addr; do
  if listening "$addr"; then
    log "$addr is taken: stop what listens there (scripts/demo.sh stop, if an earlier demo)"
    exit 1
  fi
done
trap stop_services EXIT
trap 'stop_services; exit 1' INT TERM
milvus_uri=${IMGSEARCH_MILVUS_URI:-}
if [ -z "$milvus_uri" ]; then
  scripts/milvus.sh status >/dev/null 2>&1 || touch "$out/milvus.started"
  scripts/milvus.sh start
  milvus_uri=http://127.0.0.1:19530
fi
export RUST_LOG=${RUST_LOG:-info}
"$bin/imgsearch-embedder" --weights "$weights" --listen "$embedder_addr" \
  --metrics-listen 127.0.0.1:9102 >"$out/embedder.log" 2>&1 &
echo $! >"$out/embedder.pid"
"$bin/imgsearch-gateway" --listen "$gateway_addr" --metrics-listen 127.0.0.1:9103 \
  --http-listen "$http_addr" --media-root . --milvus-uri "$milvus_uri" --embedder "http://$embedder_addr" >"$out/gateway.log" 2>&1 &
echo $! >"$out/gateway.pid"

imgsearch() { "$bin/imgsearch" --gateway "$gateway_addr" "$@"; }
log "waiting for the gateway to serve (Milvus up, the embedder warmed up)"
for i in $(seq 150); do
  imgsearch health --wait 2 >/dev/null 2>&1 && break
  for name in embedder gateway; do
    kill -0 "$(cat "$out/$name.pid")" 2>/dev/null || {
      log "the $name exited; last lines of $out/$name.log:"; tail -20 "$out/$name.log" >&2; exit 1; }
  done
  [ "$i" -lt 150 ] || { log "the gateway did not serve within 300 s; see $out/*.log"; exit 1; }
done

# 5. The tutorial: create, ingest, search, picture.
imgsearch collection create "$collection"
imgsearch ingest "$out/corpus" --collection "$collection"
imgsearch search "$out"/queries/*.jpg --collection "$collection" --out "$out/search_result.png"

log "the result picture: $out/search_result.png"
if $keep; then
  trap - EXIT
  log "Milvus, the embedder (:50052) and the gateway (:50051) keep running; logs in $out/."
  log "The search page: http://$http_addr/ (drop one of $out/queries/*.jpg on it)"
  log "Try: $bin/imgsearch search $out/queries/*.jpg   (or the README's grpcurl and curl examples)"
  log "Stop them with: scripts/demo.sh stop"
else
  log "stopping the services (scripts/demo.sh --keep-running leaves them up)"
fi
