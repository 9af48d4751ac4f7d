#!/usr/bin/env bash
# Brings up a working lattice on this machine with the `hello` example running,
# and shows a call:
#   - builds `lattice` (release) and the hello actor (wasm32-wasip1) from source
#   - starts two hosts; the first starts an embedded nats-server -js on
#     127.0.0.1:4222 when nothing listens there
#   - starts hello with two replicas and calls it
# Everything keeps running in the background; `scripts/up.sh down` stops it.
# Logs and pids live in .lattice-dev/.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
STATE="$ROOT/.lattice-dev"
LATTICE="$ROOT/target/release/lattice"

down() {
    if [ -d "$STATE" ]; then
        for pidfile in "$STATE"/*.pid; do
            [ -e "$pidfile" ] || continue
            pid="$(cat "$pidfile")"
            if kill -0 "$pid" 2>/dev/null; then
                kill -TERM "$pid" 2>/dev/null || true
                for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            fi
            rm -f "$pidfile"
        done
    fi
    echo "lattice stopped"
}

if [ "${1:-}" = "down" ]; then
    down
    exit 0
fi

. scripts/prereqs.sh
down >/dev/null
mkdir -p "$STATE"

echo "==> building lattice and the hello actor (first time: a few minutes)"
cargo build --release -p lattice-host --bin lattice
cargo build --target wasm32-wasip1 --profile wasm -p hello \
    --target-dir "$ROOT/target/actors"
HELLO="$ROOT/target/actors/wasm32-wasip1/wasm/hello.wasm"

wait_for() { # wait_for FILE PATTERN SECONDS
    for _ in $(seq 1 $(( $3 * 10 ))); do
        grep -q "$2" "$1" 2>/dev/null && return 0
        sleep 0.1
    done
    echo "error: timed out waiting for '$2' in $1:" >&2
    tail -20 "$1" >&2
    return 1
}

echo "==> starting host-1 (and an embedded nats-server if none is running)"
nohup "$LATTICE" up --name host-1 --label zone=a --data-dir "$STATE/data" \
    >"$STATE/host-1.log" 2>&1 &
echo $! >"$STATE/host-1.pid"
wait_for "$STATE/host-1.log" "joined lattice" 30

echo "==> starting host-2"
nohup "$LATTICE" up --name host-2 --label zone=b >"$STATE/host-2.log" 2>&1 &
echo $! >"$STATE/host-2.pid"
wait_for "$STATE/host-2.log" "joined lattice" 30

echo "==> lattice ctl get hosts"
"$LATTICE" ctl get hosts
echo "==> lattice ctl start actor hello.wasm --count 2"
"$LATTICE" ctl start actor "$HELLO" --count 2
echo "==> lattice call hello SayHello '\"world\"'"
"$LATTICE" call hello SayHello '"world"'
echo
echo "The lattice is running. Try:"
echo "  $LATTICE ctl get inventory"
echo "  $LATTICE call hello SayHello '\"you\"'"
echo "  $LATTICE events"
echo "Stop it with: scripts/up.sh down   (logs in .lattice-dev/)"
