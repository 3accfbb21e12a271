#!/usr/bin/env bash
# The whole system on one machine: OpenBao set up as Kong Mesh's Vault page says (steps 1-4),
# PostgreSQL, a global control plane, two zones, a Mesh with the vault backend, and one dataplane
# per zone. Prints both dataplanes' certificate identities and proves a mutual-TLS handshake
# between them with openssl. Everything it starts is stopped on exit (MESHPLANE_DEMO_KEEP=1 keeps it).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

ensure_toolchain
ensure_debian_packages
ensure_postgres
ensure_openbao

PROFILE="${MESHPLANE_DEMO_PROFILE:-release}"
log "building Meshplane ($PROFILE)"
if [ "$PROFILE" = release ]; then cargo build -q --locked --release --bins; else cargo build -q --locked --bins; fi
BIN="$PWD/target/$PROFILE"
WORK=$(mktemp -d /tmp/meshplane-demo.XXXXXX)
PIDS=()
DBS=(meshplane_demo_global meshplane_demo_zone_1 meshplane_demo_zone_2)
PGADMIN="postgres://postgres@127.0.0.1:5432/postgres"
cleanup() {
  if [ "${MESHPLANE_DEMO_KEEP:-0}" = 1 ]; then log "left running; logs and files in $WORK"; return; fi
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  for db in "${DBS[@]}"; do psql "$PGADMIN" -qc "drop database if exists $db with (force)" 2>/dev/null || true; done
}
trap cleanup EXIT
meshctl() { "$BIN/meshctl" --api-url "http://127.0.0.1:$G_API" "$@"; }

log "1. OpenBao: a dev server, then the seed's steps 1-4 for mesh 'default'"
BAO_PORT=$(free_port)
bao server -dev -dev-root-token-id=root -dev-listen-address="127.0.0.1:$BAO_PORT" >"$WORK/openbao.log" 2>&1 &
PIDS+=($!)
export BAO_ADDR="http://127.0.0.1:$BAO_PORT" BAO_TOKEN=root
wait_http "$BAO_ADDR/v1/sys/health" 30 || die "OpenBao did not start; see $WORK/openbao.log"
# Step 1: the Certificate Authority (a root CA in the mount).
bao secrets enable -path=kmesh-pki-default pki >/dev/null 2>>"$WORK/openbao-cli.log"
bao secrets tune -max-lease-ttl=87600h kmesh-pki-default >/dev/null
bao write -field=certificate kmesh-pki-default/root/generate/internal common_name="Meshplane demo default mesh root" ttl=87600h >"$WORK/vault-root.pem" 2>>"$WORK/openbao-cli.log"
# Step 2: the role for dataplane proxy certificates, with the seed's exact parameters.
bao write kmesh-pki-default/roles/dataplane-proxies \
  allowed_uri_sans="spiffe://default/*,kuma://*" \
  key_usage="KeyUsageKeyEncipherment,KeyUsageKeyAgreement,KeyUsageDigitalSignature" \
  ext_key_usage="ExtKeyUsageServerAuth,ExtKeyUsageClientAuth" \
  client_flag=true require_cn=false allowed_domains="mesh" allow_subdomains=true \
  basic_constraints_valid_for_non_ca=true max_ttl="720h" ttl="720h" >/dev/null
# Step 3: the policy.
cat >"$WORK/kmesh-default-dataplane-proxies.hcl" <<'EOM'
path "/kmesh-pki-default/issue/dataplane-proxies"
{
capabilities = ["create", "update"]
}
EOM
bao policy write kmesh-default-dataplane-proxies "$WORK/kmesh-default-dataplane-proxies.hcl" >/dev/null
# Step 4: an orphan service token with the policy. Parsed without jq, as the seed advises.
TOKEN_JSON=$(bao token create -type=service -orphan -format=json -policy="kmesh-default-dataplane-proxies")
VAULT_TOKEN=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["auth"]["client_token"])' <<<"$TOKEN_JSON")

log "2. PostgreSQL: one database for global and one per zone, migrated"
for db in "${DBS[@]}"; do
  psql "$PGADMIN" -qc "drop database if exists $db with (force)" 2>/dev/null && psql "$PGADMIN" -qc "create database $db"
  "$BIN/meshplane-global" migrate up --database-url "postgres://postgres@127.0.0.1:5432/$db" >/dev/null 2>&1
done

log "3. the global control plane (Secrets and private keys encrypted at rest with a generated key)"
for k in global zone-1 zone-2; do (umask 077; openssl rand -base64 32 >"$WORK/$k.key"); done
G_API=$(free_port); G_KDS=$(free_port)
"$BIN/meshplane-global" run --database-url "postgres://postgres@127.0.0.1:5432/meshplane_demo_global" \
  --encryption-key-file "$WORK/global.key" --kds-insight-flush 1s \
  --api-addr "127.0.0.1:$G_API" --kds-addr "127.0.0.1:$G_KDS" --work-dir "$WORK/global" >"$WORK/global.log" 2>&1 &
PIDS+=($!)
wait_http "http://127.0.0.1:$G_API/readyz" 60 || die "global did not become ready; see $WORK/global.log"

log "4. the Vault token as a mesh Secret, then the Mesh with the vault backend (global validates it by issuing a test certificate)"
cat >"$WORK/mesh.yaml" <<EOM
type: Secret
mesh: default
name: vault-token
data: $(printf %s "$VAULT_TOKEN" | base64 -w0)
---
type: Mesh
name: default
mtls:
  enabledBackend: vault-1
  backends:
    - name: vault-1
      type: vault
      dpCert:
        rotation:
          expiration: 1d
      conf:
        fromCp:
          address: $BAO_ADDR
          pki: kmesh-pki-default
          role: dataplane-proxies
          commonName: '{{ tag "kuma.io/service" | replace "_" "-" }}.mesh'
          auth:
            token:
              secret: vault-token
EOM
meshctl apply -f "$WORK/mesh.yaml"

log "5. two zones, each authenticated with its own zone token"
declare -A DP_PORT Z_API
for z in 1 2; do
  meshctl generate zone-token --zone "zone-$z" --valid-for 24h >"$WORK/zone-$z.token"
  api=$(free_port); DP_PORT[$z]=$(free_port); Z_API[$z]=$api
  "$BIN/meshplane-zone" run --zone "zone-$z" --global-address "grpcs://127.0.0.1:$G_KDS" \
    --kds-ca-file "$WORK/global/kds-ca.pem" --zone-token-file "$WORK/zone-$z.token" \
    --api-addr "127.0.0.1:$api" --dp-server-addr "127.0.0.1:${DP_PORT[$z]}" \
    --database-url "postgres://postgres@127.0.0.1:5432/meshplane_demo_zone_$z" --encryption-key-file "$WORK/zone-$z.key" \
    --work-dir "$WORK/zone-$z" >"$WORK/zone-$z.log" 2>&1 &
  PIDS+=($!)
  wait_http "http://127.0.0.1:$api/readyz" 60 || die "zone-$z did not become ready; see $WORK/zone-$z.log"
done

log "6. one dataplane per zone: web (zone-1) and my_backend (zone-2)"
SVC=([1]=web [2]=my_backend)
for z in 1 2; do
  dp="dp-$z"; mkdir -p "$WORK/$dp"
  cat >"$WORK/$dp/dataplane.yaml" <<EOM
type: Dataplane
mesh: default
name: $dp
networking:
  address: 127.0.0.1
  inbound:
    - port: $((8080 + z))
      tags:
        kuma.io/service: ${SVC[$z]}
        version: v1
EOM
  meshctl generate dataplane-token --mesh default --name "$dp" --tag "kuma.io/service=${SVC[$z]}" --valid-for 24h >"$WORK/$dp/token"
  "$BIN/meshplane-dp" run --cp-address "https://127.0.0.1:${DP_PORT[$z]}" --cp-ca-file "$WORK/zone-$z/dp-server-ca.pem" \
    --dataplane-file "$WORK/$dp/dataplane.yaml" --dataplane-token-file "$WORK/$dp/token" \
    --cert-dir "$WORK/$dp/certs" --workload-api-socket "$WORK/$dp/workload.sock" >"$WORK/$dp.log" 2>&1 &
  PIDS+=($!)
done
for z in 1 2; do
  for _ in $(seq 1 300); do [ -s "$WORK/dp-$z/certs/cert.pem" ] && break; sleep 0.1; done
  [ -s "$WORK/dp-$z/certs/cert.pem" ] || die "dp-$z got no certificate; see $WORK/dp-$z.log and $WORK/zone-$z.log"
done

log "7. the dataplanes' identities, issued by Vault through each zone"
for z in 1 2; do
  echo "--- dp-$z (zone-$z)"
  openssl x509 -in "$WORK/dp-$z/certs/cert.pem" -noout -subject -issuer -enddate -ext subjectAltName | sed 's/^/    /'
  openssl verify -CAfile "$WORK/dp-$z/certs/bundle.pem" "$WORK/dp-$z/certs/cert.pem" | sed 's/^/    /'
done

log "8. mutual TLS between the two dataplanes' certificates (openssl s_server requires a client certificate)"
TLS_PORT=$(free_port)
openssl s_server -accept "127.0.0.1:$TLS_PORT" -cert "$WORK/dp-1/certs/cert.pem" -key "$WORK/dp-1/certs/key.pem" \
  -CAfile "$WORK/dp-1/certs/bundle.pem" -Verify 1 -verify_return_error -naccept 1 -www >"$WORK/s_server.log" 2>&1 &
SPID=$!; PIDS+=($SPID)
sleep 0.5
printf 'GET / HTTP/1.0\r\n\r\n' | openssl s_client -connect "127.0.0.1:$TLS_PORT" -cert "$WORK/dp-2/certs/cert.pem" \
  -key "$WORK/dp-2/certs/key.pem" -CAfile "$WORK/dp-2/certs/bundle.pem" -verify_return_error -quiet >"$WORK/s_client.out" 2>"$WORK/s_client.err" ||
  die "the handshake failed; see $WORK/s_client.err"
# -www echoes what the server saw, including the client certificate: the server verified dp-2's identity.
sed -n '/BEGIN CERTIFICATE/,/END CERTIFICATE/p' "$WORK/s_client.out" | openssl x509 -noout -ext subjectAltName | grep -q "spiffe://default/my_backend" ||
  die "the server did not see dp-2's identity"
echo "    handshake OK: dp-1 (spiffe://default/web) accepted dp-2 (spiffe://default/my_backend), both verified against the Vault root"

log "9. what global knows (zone sync counters as of the last insight flush, every second here)"
sleep 2
meshctl inspect zones
meshctl inspect dataplanes

log "10. the web console (loopback is the admin; from elsewhere, sign in with meshctl generate user-token)"
echo "    global:  http://127.0.0.1:$G_API/gui"
for z in 1 2; do echo "    zone-$z:  http://127.0.0.1:${Z_API[$z]}/gui"; done
if [ "${MESHPLANE_DEMO_KEEP:-0}" = 1 ]; then
  echo "    (kept running: stop it with kill ${PIDS[*]})"
else
  echo "    (run with MESHPLANE_DEMO_KEEP=1 to keep it running after this script)"
fi
log "done; files and logs are in $WORK"
