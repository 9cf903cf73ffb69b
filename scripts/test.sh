#!/usr/bin/env bash
# Runs the whole test suite: installs the external test clients, then runs
# every unit and end-to-end test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-test-tools.sh
export REGISTRAR_GRPCURL="$PWD/.venv/bin/grpcurl"
cargo test --workspace --locked "$@"
