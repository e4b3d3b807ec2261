#!/usr/bin/env bash
# README command 2: installs what the tests need, then runs every test of the
# workspace against real parts (Milvus, libtorch, the PyTorch reference).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/setup.sh
# The integration tests start the workspace's binaries: build them first.
cargo build --workspace --bins --locked
cargo test --workspace --locked "$@"
