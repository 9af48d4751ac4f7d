#!/usr/bin/env bash
# Deploys the kvcounter example onto a running lattice with the imperative
# `lattice ctl` commands. docker-compose.yml runs it once as the `deploy` service;
# it works against any lattice too:
#
#   LATTICE_NATS_URL=nats://10.0.0.5:4222 scripts/compose-deploy.sh
#
# Steps:
#   1. wait until EXPECTED_HOSTS hosts answer
#   2. kvcounter, REPLICAS replicas spread over the hosts by auction
#   3. builtin:httpserver on EDGE_HOSTS hosts matching EDGE_CONSTRAINT (once per
#      host; a load balancer in front spreads HTTP over them), builtin:keyvalue on
#      the least loaded host
#   4. links: kvcounter -> httpserver (address=HTTP_ADDRESS), kvcounter -> keyvalue
#   5. print hosts, inventory, providers and links
# Running it again is safe: an actor or provider that already runs is left alone
# (the HTTP server is started only on the edge hosts it is missing from), links
# are overwritten.
#
# Environment (all optional):
#   LATTICE             the lattice binary [lattice on PATH, else target/release/lattice]
#   LATTICE_ACTORS_DIR  where kvcounter.wasm is [/opt/lattice/actors in the image,
#                       else target/actors/wasm32-wasip1/wasm]
#   EXPECTED_HOSTS      hosts to wait for [3]
#   WAIT_SECONDS        how long to wait for them [60]
#   REPLICAS            kvcounter replicas [3]
#   EDGE_CONSTRAINT     placement of the HTTP server provider [tier=edge]
#   EDGE_HOSTS          on how many such hosts it runs [1]
#   HTTP_ADDRESS        where it listens, inside its host [0.0.0.0:8080]
#   HTTP_PORT           the port to curl, as published to this machine [HTTP_ADDRESS's]
# plus the usual LATTICE_NATS_URL, LATTICE_ID, LATTICE_TIMEOUT.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"

if [ -z "${LATTICE:-}" ]; then
    if command -v lattice >/dev/null 2>&1; then
        LATTICE=lattice
    else
        LATTICE="$here/../target/release/lattice"
    fi
fi
if [ -z "${LATTICE_ACTORS_DIR:-}" ]; then
    if [ -f "$here/../actors/kvcounter.wasm" ]; then
        LATTICE_ACTORS_DIR="$here/../actors" # the image: /opt/lattice/{scripts,actors}
    else
        LATTICE_ACTORS_DIR="$here/../target/actors/wasm32-wasip1/wasm"
    fi
fi
EXPECTED_HOSTS="${EXPECTED_HOSTS:-3}"
WAIT_SECONDS="${WAIT_SECONDS:-60}"
REPLICAS="${REPLICAS:-3}"
EDGE_CONSTRAINT="${EDGE_CONSTRAINT:-tier=edge}"
EDGE_HOSTS="${EDGE_HOSTS:-1}"
HTTP_ADDRESS="${HTTP_ADDRESS:-0.0.0.0:8080}"
KVCOUNTER="$LATTICE_ACTORS_DIR/kvcounter.wasm"

if [ ! -f "$KVCOUNTER" ]; then
    echo "error: $KVCOUNTER not found; build it with" >&2
    echo "  cargo build --target wasm32-wasip1 --profile wasm -p kvcounter --target-dir target/actors" >&2
    echo "or set LATTICE_ACTORS_DIR" >&2
    exit 1
fi

lattice() { "$LATTICE" "$@"; }

echo "==> waiting for $EXPECTED_HOSTS hosts (up to ${WAIT_SECONDS}s) at ${LATTICE_NATS_URL:-nats://127.0.0.1:4222}"
hosts=0
for _ in $(seq 1 "$WAIT_SECONDS"); do
    # One JSON object per host, each with exactly one "uptime_secs".
    hosts="$(lattice ctl get hosts --output json 2>/dev/null | grep -c '"uptime_secs"' || true)"
    [ "${hosts:-0}" -ge "$EXPECTED_HOSTS" ] && break
    sleep 1
done
if [ "${hosts:-0}" -lt "$EXPECTED_HOSTS" ]; then
    echo "error: only ${hosts:-0} of $EXPECTED_HOSTS hosts answered within ${WAIT_SECONDS}s" >&2
    lattice ctl get hosts >&2 || true
    exit 1
fi
lattice ctl get hosts

# `"id": "X"` at the start of a line of pretty JSON: an actor (inventory) or a
# provider (providers) with that id. Link entries use other keys (actor_id, ...).
has_id() { grep -Eq "^[[:space:]]*\"id\": \"$1\""; }

if lattice ctl get inventory --output json | has_id kvcounter; then
    echo "==> kvcounter already runs; leaving it"
else
    echo "==> lattice ctl start actor kvcounter.wasm --count $REPLICAS"
    lattice ctl start actor "$KVCOUNTER" --count "$REPLICAS"
fi

providers="$(lattice ctl get providers --output json)"
# One entry per running instance (an id runs once per host).
http_now="$(grep -Ec '^[[:space:]]*"id": "httpserver"' <<<"$providers" || true)"
if [ "${http_now:-0}" -ge "$EDGE_HOSTS" ]; then
    echo "==> provider httpserver already runs on ${http_now} hosts; leaving it"
else
    missing=$((EDGE_HOSTS - ${http_now:-0}))
    echo "==> lattice ctl start provider builtin:httpserver --constraint $EDGE_CONSTRAINT --count $missing"
    lattice ctl start provider builtin:httpserver --constraint "$EDGE_CONSTRAINT" --count "$missing"
fi
if has_id keyvalue <<<"$providers"; then
    echo "==> provider keyvalue already runs; leaving it"
else
    echo "==> lattice ctl start provider builtin:keyvalue"
    lattice ctl start provider builtin:keyvalue
fi

echo "==> links"
lattice ctl link put kvcounter httpserver lattice:httpserver "address=$HTTP_ADDRESS"
lattice ctl link put kvcounter keyvalue lattice:keyvalue

echo "==> lattice ctl get inventory"
lattice ctl get inventory
echo "==> lattice ctl get providers"
lattice ctl get providers
echo "==> lattice ctl get links"
lattice ctl get links
echo
echo "Deployed. Try: curl -s localhost:${HTTP_PORT:-${HTTP_ADDRESS##*:}}/hits"
