#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for a short time: the resource parser, the duration
# parser and the commonName template. Seeds: fuzz/seeds/<target>, fuzz/regressions/<target> (inputs
# that once failed: commit each new crash there, and `cargo test -p meshplane-fuzz-checks` replays
# it on stable) and, for `resource`, deploy/examples; the working corpus grows in
# fuzz/corpus/<target> (git-ignored). scripts/test.sh runs this with MESHPLANE_FUZZ=1.
#
#   scripts/fuzz-smoke.sh                       # 20 s per target
#   MESHPLANE_FUZZ_SECONDS=300 scripts/fuzz-smoke.sh
#
# cargo-fuzz needs a nightly toolchain. Without one this prints that the run was SKIPPED and why,
# and exits 0, unless MESHPLANE_FUZZ_REQUIRED=1 (scripts/reliability.sh), which makes it fail.
# cargo-fuzz itself is installed with `cargo install --locked cargo-fuzz` when it is missing.
# A crash fails the run; the crashing input is kept in fuzz/artifacts/<target>/.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

SECONDS_PER_TARGET="${MESHPLANE_FUZZ_SECONDS:-20}"
TARGETS=(resource duration template)

skip() {
  if [ "${MESHPLANE_FUZZ_REQUIRED:-0}" = 1 ]; then
    die "fuzzing is required but cannot run: $*"
  fi
  printf '\033[1;33m==> fuzz smoke SKIPPED: %s\033[0m\n' "$*" >&2
  exit 0
}

command -v cargo >/dev/null || skip "cargo is not installed"
cargo +nightly --version >/dev/null 2>&1 ||
  skip "no nightly toolchain (cargo-fuzz needs one: rustup toolchain install nightly)"
if ! cargo fuzz --version >/dev/null 2>&1; then
  log "installing cargo-fuzz (cargo install --locked cargo-fuzz)"
  cargo install --locked cargo-fuzz >&2 || skip "cargo install --locked cargo-fuzz failed"
fi

log "building the fuzz targets (nightly, address sanitizer)"
cargo +nightly fuzz build --fuzz-dir fuzz >&2

summary=()
for t in "${TARGETS[@]}"; do
  corpus="fuzz/corpus/$t"
  mkdir -p "$corpus"
  seeds=("fuzz/seeds/$t")
  if [ -d "fuzz/regressions/$t" ]; then seeds+=("fuzz/regressions/$t"); fi
  if [ "$t" = resource ]; then seeds+=(deploy/examples); fi
  log "fuzzing $t for ${SECONDS_PER_TARGET}s"
  out="$(mktemp)"
  if ! cargo +nightly fuzz run --fuzz-dir fuzz "$t" "$corpus" "${seeds[@]}" -- \
    -max_total_time="$SECONDS_PER_TARGET" -rss_limit_mb=4096 >"$out" 2>&1; then
    tail -n 80 "$out" >&2
    die "fuzz target $t failed; the crashing input is in fuzz/artifacts/$t/ (reproduce: cargo +nightly fuzz run --fuzz-dir fuzz $t <file>)"
  fi
  runs="$(grep -Eo 'Done [0-9]+ runs in [0-9]+ second' "$out" | tail -n 1 | awk '{print $2 " " $5}')"
  cov="$(grep -Eo 'DONE +cov: [0-9]+' "$out" | tail -n 1 | awk '{print $3}')"
  files="$(find "$corpus" -type f | wc -l)"
  summary+=("$t ${runs:-? ?} ${cov:-?} $files")
  rm -f "$out"
done

printf '\nfuzz summary\n%-10s %12s %9s %9s %8s %s\n' target executions seconds coverage corpus crashes
for row in "${summary[@]}"; do
  read -r t n s c f <<<"$row"
  printf '%-10s %12s %9s %9s %8s %s\n' "$t" "$n" "$s" "$c" "$f" 0
done
