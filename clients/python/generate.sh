#!/usr/bin/env bash
# Generates the Python message and gRPC stubs of proto/registrar/v1/ into
# clients/python/generated/ with grpcio-tools. PYTHON sets the interpreter
# that has grpcio-tools installed. The default is the repository's .venv,
# which scripts/install-test-tools.sh creates.
set -euo pipefail
cd "$(dirname "$0")/../.."

python="${PYTHON:-.venv/bin/python}"
output=clients/python/generated

# Generate into a fresh directory and swap it in, so that stubs of a removed
# proto file do not linger and a failed run leaves the old stubs in place.
rm -rf "$output.tmp"
mkdir -p "$output.tmp"
"$python" -m grpc_tools.protoc \
    --proto_path=proto \
    --python_out="$output.tmp" \
    --pyi_out="$output.tmp" \
    --grpc_python_out="$output.tmp" \
    proto/registrar/v1/*.proto
rm -rf "$output"
mv "$output.tmp" "$output"
echo "generated Python stubs in $output"
