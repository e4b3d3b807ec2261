#!/usr/bin/env bash
# Builds the `gateway`, `embedder-cpu` and `embedder-cuda` images from
# deploy/docker/Dockerfile with podman, on a machine that reaches no
# container registry, and prints their sizes. Run as root (podman's rootful
# storage; the tests run them).
#
#   scripts/images.sh
#
# The Dockerfile is the one users build; only its base images differ. They
# are build arguments, and here they are local stand-ins, made once and
# cached in podman's storage:
#   debian:bookworm-slim  ->  a debootstrap of bookworm from the apt mirror
#   rust:<ver>-bookworm   ->  that base + gcc + this machine's Rust toolchain
#   nvidia/cuda:<ver>-base   ->  the same Debian base: the CUDA libraries
#                                 come from PyPI wheels, the driver from the
#                                 node, so nothing of the NVIDIA base is used
#
# Podman on this kind of host needs runc, cgroupfs and fixed ulimits
# (../shared/design.md); the settings are written to
# $IMGSEARCH_CACHE/podman/containers.conf, which the tests use too.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
cache=${IMGSEARCH_CACHE:-$HOME/.cache/imgsearch}
# The tags the manifests' kustomizations name (deploy/k8s/base, overlays/cpu).
VERSION=0.1.0

log() { printf '\033[1m[images]\033[0m %s\n' "$*" >&2; }

[ "$(id -u)" -eq 0 ] || { log "run as root: the images live in podman's rootful storage"; exit 1; }

install_podman() {
  local missing=()
  for tool in podman buildah runc debootstrap; do command -v "$tool" >/dev/null || missing+=("$tool"); done
  [ ${#missing[@]} -eq 0 ] && return
  log "installing ${missing[*]} with apt-get"
  apt-get update -q >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q podman buildah runc debootstrap >&2
}

write_containers_conf() {
  # crun cannot run on hybrid cgroups, and containers may not raise rlimits
  # beyond the host's (no CAP_SYS_RESOURCE), so podman's defaults fail.
  mkdir -p "$cache/podman"
  cat > "$cache/podman/containers.conf" <<'EOF'
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
EOF
  export CONTAINERS_CONF=$cache/podman/containers.conf
}

apt_mirror() {
  local uri
  uri=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  [ -n "$uri" ] || uri=$(awk '/^deb / {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
  echo "${uri:-http://deb.debian.org/debian}"
}

# localhost/imgsearch-base/debian:bookworm, for debian:bookworm-slim.
debian_base=localhost/imgsearch-base/debian:bookworm
build_debian_base() {
  podman image exists "$debian_base" && return
  local mirror rootfs
  mirror=$(apt_mirror)
  rootfs=$(mktemp -d)
  log "debootstrap bookworm from $mirror -> $debian_base"
  debootstrap --variant=minbase --keyring=/usr/share/keyrings/debian-archive-keyring.gpg \
    bookworm "$rootfs" "$mirror" >&2
  # As Debian's own images do: no package caches in any later layer.
  cat > "$rootfs/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/* "$rootfs"/var/log/*
  tar -C "$rootfs" -c . | podman import --change 'CMD ["bash"]' - "$debian_base" >/dev/null
  rm -rf "$rootfs"
}

# localhost/imgsearch-base/rust:VER-bookworm, for rust:VER-bookworm: what the
# Dockerfile's build stages use of it (cargo and rustc on PATH, CARGO_HOME
# /usr/local/cargo, a C toolchain), with this machine's toolchain copied in.
rust_version=$(rustc --version | awk '{print $2}')
rust_base=localhost/imgsearch-base/rust:$rust_version-bookworm
build_rust_base() {
  podman image exists "$rust_base" && return
  local sysroot ctx
  sysroot=$(rustc --print sysroot)
  ctx=$(mktemp -d)
  log "Rust $rust_version builder -> $rust_base"
  # Only what compiling for this target needs (592 MB, not the whole 1.2 GB).
  local triple=x86_64-unknown-linux-gnu
  mkdir -p "$ctx/rust/bin" "$ctx/rust/lib/rustlib/$triple"
  cp -a "$sysroot"/bin/{cargo,rustc} "$ctx/rust/bin/"
  cp -a "$sysroot"/lib/*.so* "$ctx/rust/lib/"
  cp -a "$sysroot/lib/rustlib/$triple"/{lib,bin} "$ctx/rust/lib/rustlib/$triple/"
  # The machine's CA bundle, so cargo and pip reach their registries through
  # a TLS-intercepting proxy, as on the host. Only in this local builder:
  # the images the Dockerfile makes never carry it.
  cp /etc/ssl/certs/ca-certificates.crt "$ctx/host-ca.crt"
  cat > "$ctx/Containerfile" <<EOF
FROM $debian_base
RUN apt-get update \\
 && apt-get install -y --no-install-recommends gcc g++ libc6-dev make pkg-config ca-certificates \\
 && rm -rf /var/lib/apt/lists/*
COPY host-ca.crt /usr/local/share/ca-certificates/host-ca.crt
RUN update-ca-certificates
COPY rust /usr/local/rust
ENV CARGO_HOME=/usr/local/cargo \\
    PATH=/usr/local/cargo/bin:/usr/local/rust/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
RUN rustc --version && cargo --version
EOF
  podman build --pull=never -q -t "$rust_base" "$ctx" >/dev/null
  rm -rf "$ctx"
}

build_target() { # build_target TARGET TAG
  local started=$SECONDS
  log "building $1 -> $2"
  podman build --pull=never --format docker -f "$root/deploy/docker/Dockerfile" \
    --build-arg RUST_IMAGE="$rust_base" --build-arg RUNTIME_IMAGE="$debian_base" \
    --build-arg CUDA_IMAGE="$debian_base" \
    --target "$1" -t "$2" "$root" >&2
  log "$1 built in $((SECONDS - started)) s"
}

report() { # report TAG: the image's size and its layers'
  local size
  size=$(podman image inspect --format '{{.Size}}' "$1")
  printf '%s: %s MB\n' "$1" "$((size / 1000000))"
  podman history --format '  {{.Size}}\t{{.CreatedBy}}' "$1" | cut -c1-140
}

main() {
  install_podman
  write_containers_conf
  local started=$SECONDS
  build_debian_base
  build_rust_base
  build_target gateway "imgsearch/gateway:$VERSION"
  build_target embedder-cpu "imgsearch/embedder:$VERSION-cpu"
  build_target embedder-cuda "imgsearch/embedder:$VERSION"
  log "all built in $((SECONDS - started)) s"
  report "imgsearch/gateway:$VERSION"
  report "imgsearch/embedder:$VERSION-cpu"
  report "imgsearch/embedder:$VERSION"
}

main "$@"
