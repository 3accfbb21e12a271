#!/usr/bin/env bash
# The whole test suite on a fresh Debian machine: installs and starts what the tests need
# (PostgreSQL, OpenBao, py-spiffe in .venv, chromium and chromedriver for the console's browser
# test), checks formatting and lints, builds every binary, runs every test (unit, integration and
# end-to-end) against the real services. The fuzz seeds and every input that once failed are
# replayed by `cargo test` (crates/fuzz-checks); the libFuzzer exploration itself (nightly, about
# ten minutes to build on a fresh clone) runs with MESHPLANE_FUZZ=1 and in scripts/reliability.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

ensure_toolchain
ensure_debian_packages
ensure_postgres
ensure_openbao
ensure_python_clients "$PWD/.venv"
export MESHPLANE_TEST_VENV="$PWD/.venv"

log "formatting"
cargo fmt --all -- --check
log "lints"
cargo clippy -q --locked --workspace --all-targets -- -D warnings
log "building the binaries the end-to-end tests run"
cargo build -q --locked --workspace --bins
log "tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --locked --workspace --no-fail-fast
else
  cargo test --locked --workspace --no-fail-fast
fi
if [ "${MESHPLANE_FUZZ:-0}" = 1 ]; then
  log "fuzz smoke (20 s per target; skipped with a notice where no nightly toolchain exists)"
  scripts/fuzz-smoke.sh
fi
log "all tests passed"
