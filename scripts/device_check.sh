#!/usr/bin/env bash
# The embedder's CUDA path on a lent GPU machine (the tool library's `device`
# entry: an H200, 16 cores, CUDA 13, torch 2.11 at /opt/torch/.venv, no Rust,
# no network, 64 MiB carried). Two steps:
#
#   scripts/device_check.sh prepare   here: builds the embedder and the load
#                                     generator against libtorch 2.11 (the
#                                     device's own) and packs them with test
#                                     images into .device/ (git-ignored)
#   scripts/device_check.sh run       there, with `.device` carried: parity of
#                                     CUDA fp32 and fp16 vectors with PyTorch's
#                                     (CPU, the tutorial's pipeline), then
#                                     throughput with decoding included at max
#                                     batch 32 and 128, exact and fast; writes
#                                     the report to $OUT/device-report.md
#
#   scripts/device_check.sh image [TAG]
#                                     on a GPU host with podman and the CUDA
#                                     image (default imgsearch/embedder:0.1.0):
#                                     `run` with the binary and the libtorch
#                                     tree copied out of the image, so the
#                                     image's exact contents are checked. The
#                                     lent machine cannot take them (3 GB
#                                     against its 64 MiB), hence `prepare`.
#
# `run` and `image` also run here on the CPU, to check the script itself:
#   DEVICE=cpu PY=.deps/venv-ref/bin/python BIN=target/release REPEAT=0 scripts/device_check.sh run
#   DEVICE=cpu PY=.deps/venv-ref/bin/python BENCH=target/release REPEAT=0 scripts/device_check.sh image
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

prepare() {
  local cache=${IMGSEARCH_CACHE:-$HOME/.cache/imgsearch}
  # tch 0.24 is the release for libtorch 2.11 (0.26, ours, needs 2.13).
  IMGSEARCH_TORCH_VERSION=2.11.0 scripts/setup.sh libtorch
  local src=$cache/device-build/src
  # The working tree as git sees it: tracked and untracked files, not ignored ones.
  rm -rf "$src" && mkdir -p "$src"
  git ls-files -z -co --exclude-standard | tar --null -T - -cf - | tar -C "$src" -xf -
  sed -i -e 's/^tch = "0.26"/tch = "0.24"/' -e 's/^torch-sys = "0.26"/torch-sys = "0.24"/' "$src/Cargo.toml"
  (cd "$src" && cargo update -q -p tch -p torch-sys &&
    LIBTORCH=$cache/libtorch-2.11.0-cpu CARGO_TARGET_DIR=$cache/device-build/target \
      cargo build --release -p imgsearch-embedder --bin imgsearch-embedder \
      -p imgsearch-tests --bin embed-bench)
  rm -rf .device && mkdir -p .device/bin .device/images
  cp "$cache"/device-build/target/release/{imgsearch-embedder,embed-bench} .device/bin/
  strip .device/bin/*
  cp .deps/fixtures/images/*.jpg .deps/corpus/endless-sky/*.jpg .device/images/
  cp .deps/corpus/photos/mate-*.jpg .device/images/
  du -sh .device
}

image() {
  local tag=${1:-imgsearch/embedder:0.1.0} dir cid lib
  dir=$(mktemp -d)
  trap "rm -rf '$dir'" EXIT
  # The tree the image's LD_LIBRARY_PATH names first, and the binary.
  lib=$(podman image inspect --format '{{range .Config.Env}}{{println .}}{{end}}' "$tag" |
    sed -n 's/^LD_LIBRARY_PATH=\([^:]*\).*/\1/p')
  [ -n "$lib" ] || { echo "$tag sets no LD_LIBRARY_PATH: not the CUDA image" >&2; exit 1; }
  cid=$(podman create "$tag")
  mkdir -p "$dir/bin" "$dir/root"
  podman cp "$cid:/usr/local/bin/imgsearch-embedder" "$dir/bin/"
  # The tree's root holds torch/lib beside nvidia/: two folders up.
  local tree; tree=$(dirname "$(dirname "$lib")")
  podman cp "$cid:$tree" "$dir/root/"
  podman rm "$cid" >/dev/null
  echo "from $tag: $(du -sh "$dir" | cut -f1) ($lib)" >&2
  BIN=$dir/bin TORCH_LIB=$dir/root/$(basename "$tree")/${lib#"$tree"/} run
}

run() {
  local py=${PY:-/opt/torch/.venv/bin/python3} bin=${BIN:-.device/bin} device=${DEVICE:-cuda}
  # The load generator: carried beside the embedder, or the workspace's.
  local bench=${BENCH:-$bin}
  local out=${OUT:-$(mktemp -d)} tmp; tmp=$(mktemp -d)
  # The binaries' libtorch: the device's own (their RUNPATH names this machine's).
  local lib=${TORCH_LIB:-$("$py" -c 'import os, torch; print(os.path.dirname(torch.__file__))')/lib}
  local images=(.device/images/*.jpg)
  [ -e "${images[0]}" ] || images=(.deps/fixtures/images/*.jpg .deps/corpus/endless-sky/*.jpg .deps/corpus/photos/mate-*.jpg)
  local parity=("${images[@]:0:64}") report=$out/device-report.md
  { echo "# Embedder on $device: $(nvidia-smi -L 2>/dev/null | head -1 || echo "no GPU"), $(nproc) cores"
    echo; } > "$report"

  "$py" scripts/export_weights.py --seed 0 --out "$tmp/w.safetensors" >/dev/null
  echo "reference: the tutorial's pipeline on ${#parity[@]} images (PyTorch, CPU, fp32)..." >&2
  "$py" scripts/torch_reference.py images --weights "$tmp/w.safetensors" \
    --output "$tmp/ref.safetensors" "${parity[@]}"

  local port=50100
  # embed FLAGS...: an embedder on $port with FLAGS, until it serves; sets $pid.
  embed() {
    port=$((port + 2))
    LD_LIBRARY_PATH=$lib "$bin/imgsearch-embedder" --listen 127.0.0.1:$port --metrics-listen 127.0.0.1:$((port + 1)) \
      --weights "$tmp/w.safetensors" --device "$device" "$@" >"$tmp/embedder.log" 2>&1 &
    pid=$!
    for _ in $(seq 300); do grep -q ' serving ' "$tmp/embedder.log" && return; sleep 0.5; done
    cat "$tmp/embedder.log" >&2; return 1
  }
  stop() { kill -TERM "$pid"; wait "$pid" || true; }

  echo "| parity vs PyTorch | min cosine | mean cosine |" >> "$report"
  echo "|---|---|---|" >> "$report"
  for precision in fp32 fp16; do
    [ "$device" = cpu ] && [ "$precision" = fp16 ] && continue
    embed --precision $precision
    LD_LIBRARY_PATH=$lib "$bench/embed-bench" --vectors-out "$tmp/$precision.f32" "http://127.0.0.1:$port" 0 "${parity[@]}" >/dev/null
    stop
    "$py" - "$tmp/ref.safetensors" "$tmp/$precision.f32" "$precision" >> "$report" <<'PY'
import sys, numpy as np
from safetensors.numpy import load_file
ref = load_file(sys.argv[1])["output"]
ours = np.fromfile(sys.argv[2], dtype="<f4").reshape(ref.shape)
cos = (ref * ours).sum(1) / (np.linalg.norm(ref, axis=1) * np.linalg.norm(ours, axis=1))
print(f"| {sys.argv[3]} ({len(cos)} images) | {cos.min():.7f} | {cos.mean():.7f} |")
PY
  done

  # Every image 16 times (about 5,000): long enough for a steady rate.
  local load=("${images[@]:0:32}") i
  for ((i = 0; i < ${REPEAT:-16}; i++)); do load+=("${images[@]}"); done
  { echo; echo "Throughput, decoding included, ${#load[@]} images on one stream (default preprocessing workers):"
    echo; echo "| precision | max batch | preprocess | images/s |"; echo "|---|---|---|---|"; } >> "$report"
  for run in "fp16 32 exact" "fp16 128 exact" "fp16 128 fast" "fp32 128 exact"; do
    set -- $run
    [ "$device" = cpu ] && [ "$1" = fp16 ] && continue
    embed --precision "$1" --max-batch "$2" --preprocess "$3"
    local ips
    ips=$(LD_LIBRARY_PATH=$lib "$bench/embed-bench" "http://127.0.0.1:$port" 256 "${load[@]}" | "$py" -c 'import json,sys; print(json.load(sys.stdin)["images_per_s"])')
    stop
    echo "| $1 | $2 | $3 | $ips |" >> "$report"
  done
  cat "$report"
}

case ${1:-} in
  prepare) prepare ;;
  run) run ;;
  image) shift; image "$@" ;;
  *) echo "usage: $0 prepare|run|image [TAG]" >&2; exit 2 ;;
esac
