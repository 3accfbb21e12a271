#!/usr/bin/env bash
# The long reliability runs, one command, with their summary tables:
#   1. the fault tests (tests/faults/): kill -9 of global during sync, PostgreSQL stopped and
#      started under write load, OpenBao stopped and sealed during rotation, a zone and global
#      frozen and resumed;
#   2. the load test (tests/load.rs): 50 writers with optimistic concurrency for 30 s;
#   3. the bad-input matrix (tests/bad_input.rs);
#   4. every cargo-fuzz target for 5 minutes (scripts/fuzz-smoke.sh; nightly required here).
#
#   scripts/reliability.sh
#
# Environment: MESHPLANE_LOAD_SECONDS (default 30), MESHPLANE_FUZZ_SECONDS per target
# (default 300), DATABASE_URL (the shared PostgreSQL, as for scripts/test.sh). The quick versions
# of 1-3 run in CI with every other test (scripts/test.sh), which also replays every fuzz seed and
# past failure on stable (crates/fuzz-checks); the short fuzz run is scripts/fuzz-smoke.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

ensure_toolchain
ensure_debian_packages
ensure_postgres
ensure_openbao
ensure_python_clients "$PWD/.venv"
export MESHPLANE_TEST_VENV="$PWD/.venv"
export MESHPLANE_LOAD_SECONDS="${MESHPLANE_LOAD_SECONDS:-30}"
export MESHPLANE_FUZZ_SECONDS="${MESHPLANE_FUZZ_SECONDS:-300}"
report="$(mktemp)"
trap 'rm -f "$report"' EXIT
export MESHPLANE_RELIABILITY_REPORT="$report"

log "building the binaries the tests run"
cargo build -q --locked -p meshplane-global -p meshplane-zone -p meshplane-dp --bins

log "fault tests"
cargo test -q --locked -p meshplane-tests --test faults -- --nocapture

log "load test: 50 writers for ${MESHPLANE_LOAD_SECONDS}s"
cargo test -q --locked -p meshplane-tests --test load -- --nocapture

log "bad input matrix"
cargo test -q --locked -p meshplane-tests --test bad_input

log "fuzzing every target for ${MESHPLANE_FUZZ_SECONDS}s"
MESHPLANE_FUZZ_REQUIRED=1 scripts/fuzz-smoke.sh

printf '\nreliability summary: faults\n'
{
  echo "test|faults injected|writes acknowledged|writes lost|dataplanes without a valid certificate"
  cat "$report"
} | column -t -s '|'
log "all reliability runs passed"
