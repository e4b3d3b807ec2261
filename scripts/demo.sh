#!/usr/bin/env bash
# README command 1: sets everything up and runs the main job on the embedded
# default. Today it installs and builds; the ingest-and-search run arrives
# with the imgsearch CLI.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/setup.sh
cargo build --workspace --release --locked
echo "Set up and built. The demo (ingest, search, search_result.png) is not implemented yet."
