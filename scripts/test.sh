#!/usr/bin/env bash
# Runs the whole test suite: checks that PostgreSQL accepts connections,
# installs the external test clients, then runs every unit and end-to-end
# test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."

# The store tests run on SQLite and on PostgreSQL. They connect to the URL
# in REGISTRAR_TEST_POSTGRES_URL, or to this one when it is unset, and
# create and drop a database of their own for each test.
default_postgres_url='postgres://postgres@127.0.0.1:5432/test'

# Checks that PostgreSQL accepts connections at the URL of the store tests,
# and exits with instructions when it does not. pg_isready and psql take
# the URL as it is. The bash fallback only opens a TCP connection to the
# URL's host and port (5432 when the URL has none).
require_postgres() {
    local url="${REGISTRAR_TEST_POSTGRES_URL:-$default_postgres_url}"
    local authority="${url#*://}"
    authority="${authority%%[/?]*}"
    local host_port="${authority##*@}"
    local host="${host_port%:*}"
    local port="${host_port##*:}"
    if [ "$host" = "$host_port" ]; then
        port=5432
    fi
    # The password, if the URL has one, stays out of the message.
    local shown_url
    shown_url="$(printf '%s' "$url" | sed -E 's#(://[^:/@]*):[^@/]*@#\1:***@#')"

    local probe
    if command -v pg_isready >/dev/null; then
        probe="pg_isready"
        pg_isready --quiet --timeout=3 --dbname="$url" && return 0
    elif command -v psql >/dev/null; then
        probe="psql"
        PGCONNECT_TIMEOUT=3 psql "$url" --no-psqlrc --quiet --command='SELECT 1' >/dev/null 2>&1 &&
            return 0
    else
        probe="a TCP connection"
        timeout 3 bash -c "exec 3<>/dev/tcp/$host/$port" 2>/dev/null && return 0
    fi

    cat >&2 <<MESSAGE
error: PostgreSQL does not accept connections at $host_port (checked with $probe,
URL $shown_url).
The store tests run on SQLite and on PostgreSQL, so a PostgreSQL server
must be running whose user may create and drop databases. Start one, for
example with 'sudo service postgresql start', or with
'docker run -d -p 127.0.0.1:5432:5432 -e POSTGRES_HOST_AUTH_METHOD=trust -e POSTGRES_DB=test postgres',
or set REGISTRAR_TEST_POSTGRES_URL to the URL of another server
(default: $default_postgres_url).
MESSAGE
    exit 1
}

require_postgres
scripts/install-test-tools.sh
export REGISTRAR_GRPCURL="$PWD/.venv/bin/grpcurl"
cargo test --workspace --locked "$@"
