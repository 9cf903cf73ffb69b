#!/usr/bin/env bash
# Runs a fuzz target of fuzz/ for a set time with cargo fuzz (libFuzzer) on
# the stable toolchain.
#
#   scripts/fuzz.sh TARGET [SECONDS]   one target, 60 seconds by default
#   scripts/fuzz.sh all [SECONDS]      every target in turn
#   scripts/fuzz.sh list               the target names
#
# The working corpus grows in fuzz/corpus/TARGET, seeded from
# fuzz/seeds/TARGET. A crashing input is saved in fuzz/artifacts/TARGET/
# and the script exits non-zero.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

if ! command -v cargo-fuzz >/dev/null; then
  echo "cargo-fuzz is not installed; install it with: cargo install cargo-fuzz --locked" >&2
  exit 2
fi

# --sanitizer none: AddressSanitizer needs a nightly compiler, and the
# registrar forbids unsafe code, so panics, overflows (debug assertions are
# on), timeouts and memory blow-ups are what a run can find.
run_target() {
  local target="$1" seconds="$2"
  mkdir -p "fuzz/corpus/$target" "fuzz/artifacts/$target"
  cargo fuzz run --sanitizer none "$target" \
    "$root/fuzz/corpus/$target" "$root/fuzz/seeds/$target" \
    -- -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
}

case "${1:-}" in
  "" | -h | --help)
    sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
  list)
    cargo fuzz list
    ;;
  all)
    for target in $(cargo fuzz list); do
      run_target "$target" "${2:-60}"
    done
    ;;
  *)
    run_target "$1" "${2:-60}"
    ;;
esac
