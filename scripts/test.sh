#!/usr/bin/env bash
# Runs the whole Lattice test suite: installs prerequisites (idempotent), then
# `cargo test --workspace`. Integration tests start their own nats-server on free
# ports and build the WASM actors from source.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/prereqs.sh
lattice_prereqs_browser
lattice_prereqs_components
echo "==> nats-server $(nats-server --version 2>&1 | head -1)" >&2
exec cargo test --workspace "$@"
