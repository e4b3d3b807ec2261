#!/usr/bin/env bash
# README command 2: installs what the tests need, builds the container
# images, runs every test of the workspace against real parts (Milvus,
# libtorch, the PyTorch reference, the images under podman), then README
# command 1 itself (scripts/demo.sh) on a reduced corpus, and checks that it
# wrote its picture.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# Each phase's end and the minutes since the start, to see where CI's time
# goes.
phase() { printf '\033[1m[test]\033[0m %s done at %d:%02d\n' "$1" $((SECONDS / 60)) $((SECONDS % 60)) >&2; }
scripts/setup.sh
# The container tests ingest the demo corpus; the preprocessing tests also
# read the larger photos.
scripts/setup.sh corpus photos
# Release profile: the tests then check the binaries that ship, and the demo
# below reuses them instead of a second full build (deps dominate the build
# time and are optimised in either profile). The integration tests start the
# workspace's binaries: build them first.
# The fault hooks (embedder/src/fault.rs, the gateway's check_filepaths in
# gateway/src/config.rs) exist only in this build.
features=imgsearch-embedder/fault-injection,imgsearch-gateway/fault-injection
# Compiled dependencies outlive the clone: a fresh clone (CI's) gets `target`
# as a link to a build folder in the cache, so a second clone compiles only
# the workspace's own crates. LIBTORCH is then given as the cache's path,
# the same from every clone, or torch-sys would build again for each.
if [ ! -e target ] || [ -L target ]; then
  shared_target=${IMGSEARCH_CACHE:-$HOME/.cache/imgsearch}/target
  mkdir -p "$shared_target"
  [ -e target ] || ln -s "$shared_target" target
  libtorch=$(sed -n 's/^LIBTORCH = { value = "\([^"]*\)".*/\1/p' .cargo/config.toml)
  LIBTORCH=$(realpath "$libtorch")
  export LIBTORCH
fi
phase setup
cargo build --workspace --bins --release --locked --features "$features"
phase build
# tests/tests/containers.rs runs the images the users' Dockerfile makes.
scripts/images.sh
phase images
# Three tests at a time, not one per core: most of a test's time is spent
# waiting on Milvus (flushes, index builds, loads), and on 2 cores the
# suite took 15.6 min with 3, where the same tests as 27 binaries of 2
# threads each had taken 21.7 (2026-12-07).
export RUST_TEST_THREADS=${RUST_TEST_THREADS:-3}
cargo test --workspace --release --locked --features "$features" "$@"
phase tests

# The demo and the capacity benchmark's smoke run use the default ports, so
# they run after the tests, not beside them.
demo_dir=$(mktemp -d)
trap 'rm -rf "$demo_dir"' EXIT

# The capacity benchmark, small (3 to 5 minutes): its scripts and charts
# work, the smoke soak had no error and no server's RSS grew past its bound
# (bench_scale.sh checks both), and it wrote every chart as a PNG.
IMGSEARCH_CARGO_FEATURES=$features scripts/bench_scale.sh smoke "$demo_dir/scale"
for chart in scale_latency scale_recall time_throughput time_latency time_rss_ingest-1 \
  time_rss_ingest-4 time_rss_soak; do
  python3 -c 'import sys; assert open(sys.argv[1], "rb").read(8) == b"\x89PNG\r\n\x1a\n", sys.argv[1]' \
    "$demo_dir/scale/$chart.png"
done
echo "capacity smoke ok: charts written"
phase "capacity smoke"
IMGSEARCH_CARGO_FEATURES=$features IMGSEARCH_DEMO_DIR=$demo_dir \
  IMGSEARCH_DEMO_IMAGES=${IMGSEARCH_DEMO_IMAGES:-60} scripts/demo.sh | tee "$demo_dir/demo.out"
# The picture must have the size the CLI's layout (cli/src/picture) says it
# drew: `wrote PATH (WxH pixels)`.
python3 - "$demo_dir/search_result.png" "$demo_dir/demo.out" <<'PY'
import re, struct, sys
with open(sys.argv[1], "rb") as f:
    head = f.read(24)
assert head[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
w, h = struct.unpack(">II", head[16:24])
said = re.findall(r"wrote \S*search_result\.png \((\d+)x(\d+) pixels\)", open(sys.argv[2]).read())
assert said, "the CLI did not say it wrote the picture"
assert (w, h) == tuple(map(int, said[-1])), ((w, h), said)
print(f"demo picture ok: {w}x{h}")
PY
phase demo
