#!/usr/bin/env bash
# The two libtorch trees the embedder runs on, cut from the PyPI wheels (the
# only libtorch source this project may fetch), idempotently:
#
#   scripts/libtorch.sh cpu    $IMGSEARCH_CACHE/libtorch-2.13.0-cpu: what the
#                              embedder compiles and links against, and all
#                              the CPU image carries
#   scripts/libtorch.sh cuda   $IMGSEARCH_CACHE/libtorch-2.13.0-cuda: the same
#                              libtorch_cpu.so and libc10.so plus the CUDA
#                              backend and the NVIDIA libraries it loads, in
#                              the wheels' site-packages layout, trimmed
#
# One embedder binary serves both: it links libtorch_cpu.so and libc10.so,
# and opens libtorch_cuda.so by name at start (embedder/src/cuda.rs), which
# works the same from either tree.
#
# Its own file, apart from setup.sh, because the Dockerfile's libtorch stages
# copy it: they rebuild when this file changes and at no other edit.
#
# Wheels are downloaded to $IMGSEARCH_WHEELS (default $IMGSEARCH_CACHE/wheels;
# the Dockerfile points it at a build cache), so a second cut fetches nothing.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${IMGSEARCH_CACHE:-$HOME/.cache/imgsearch}
wheels=${IMGSEARCH_WHEELS:-$cache/wheels}
python=${PYTHON:-python3}
# IMGSEARCH_TORCH_VERSION builds another CPU cut, e.g. 2.11.0 for
# scripts/device_check.sh.
TORCH_VERSION=${IMGSEARCH_TORCH_VERSION:-2.13.0}
# torch 2.13.0's Linux requirements as pip resolved them (2026-12-07), pinned
# so that the CUDA tree is the same on every build.
CUDA_WHEELS=(
  nvidia-cuda-runtime==13.0.96 nvidia-cuda-cupti==13.0.85 nvidia-cuda-nvrtc==13.0.88
  nvidia-cublas==13.1.1.3 nvidia-cufft==12.0.0.61 nvidia-cufile==1.15.1.6
  nvidia-curand==10.4.0.35 nvidia-cusolver==12.0.4.66 nvidia-cusparse==12.6.3.3
  nvidia-nvjitlink==13.5.37 nvidia-nvtx==13.0.85 nvidia-cudnn-cu13==9.20.0.48
  nvidia-cusparselt-cu13==0.8.1 nvidia-nccl-cu13==2.29.7 nvidia-nvshmem-cu13==3.4.5
)

log() { printf '\033[1m[libtorch]\033[0m %s\n' "$*" >&2; }

# shellcheck source=lib/wheels.sh
. "$here/lib/wheels.sh"

cut_cpu() {
  # No CPU-only wheel exists on PyPI and Debian's libtorch is too old for tch
  # 0.26. The wheel's real libtorch.so needs libtorch_cuda.so, so libtorch.so
  # points at libtorch_cpu.so; libtorch_cpu.so itself needs the CUDA runtime
  # and CUPTI by name (it never calls them on the CPU).
  local dir=$cache/libtorch-$TORCH_VERSION-cpu stamp="torch $TORCH_VERSION"
  done_already "$dir" "$stamp" && return
  log "libtorch $TORCH_VERSION (CPU) -> $dir"
  mkdir -p "$wheels"
  pip_download "torch==$TORCH_VERSION" nvidia-cuda-runtime==13.0.96 nvidia-cuda-cupti==13.0.85
  local tmp; tmp=$(mktemp -d)
  wheel_extract "$wheels"/torch-$TORCH_VERSION-*.whl "$tmp" torch/include/ \
    torch/lib/libtorch_cpu.so torch/lib/libc10.so torch/lib/libgomp.so.1
  wheel_extract "$wheels"/nvidia_cuda_runtime-13.0.96-*.whl "$tmp" nvidia/
  wheel_extract "$wheels"/nvidia_cuda_cupti-13.0.85-*.whl "$tmp" nvidia/
  rm -rf "$dir"; mkdir -p "$dir/lib"
  mv "$tmp/torch/include" "$dir/include"
  mv "$tmp"/torch/lib/* "$dir/lib/"
  find "$tmp/nvidia" \( -name 'libcudart.so.13*' -o -name 'libcupti.so.13*' \) -exec mv {} "$dir/lib/" \;
  ln -sf libtorch_cpu.so "$dir/lib/libtorch.so"
  rm -rf "$tmp"
  mark_done "$dir" "$stamp"
}

cut_cuda() {
  # The wheels' own layout (torch/lib beside nvidia/<package>/lib): their
  # RPATHs are $ORIGIN-relative and hold unchanged. TRIM.txt in the tree says
  # what was left out and why.
  local dir=$cache/libtorch-$TORCH_VERSION-cuda stamp="torch $TORCH_VERSION ${CUDA_WHEELS[*]} trim"
  done_already "$dir" "$stamp" && return
  log "libtorch $TORCH_VERSION (CUDA) -> $dir"
  mkdir -p "$wheels"
  pip_download "torch==$TORCH_VERSION" "${CUDA_WHEELS[@]}"
  mkdir -p "$cache"
  local tmp; tmp=$(mktemp -d -p "$cache")
  wheel_extract "$wheels"/torch-$TORCH_VERSION-*.whl "$tmp" torch/lib/ \
    "torch-$TORCH_VERSION.dist-info/"
  local spec wheel
  for spec in "${CUDA_WHEELS[@]}"; do
    wheel=${spec%%==*}; wheel=${wheel//-/_}-${spec#*==}
    wheel_extract "$wheels/$wheel-"*.whl "$tmp" nvidia/ "$wheel.dist-info/"
  done
  "$python" "$here/trim_libtorch.py" "$tmp" | tee "$tmp/TRIM.txt" >&2
  rm -rf "$dir"; mv "$tmp" "$dir"
  mark_done "$dir" "$stamp"
}

case ${1:-} in
  cpu) cut_cpu ;;
  cuda) cut_cuda ;;
  *) echo "usage: $0 cpu|cuda" >&2; exit 2 ;;
esac
