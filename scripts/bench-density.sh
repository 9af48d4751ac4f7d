#!/usr/bin/env bash
# Density: N hello actors (default 1,200) on one host with the default 1,000
# instance slots, each started with the `lattice` CLI; then a sample of them is
# called, and the host's memory per idle actor is printed next to the target of
# issue 11 (64 KiB).
#
# Self-contained: installs prerequisites idempotently, builds in release,
# starts its own nats-server -js on a free port and one host, and stops
# everything it started on exit.
#
# Usage: scripts/bench-density.sh        Env: N (default 1200)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
. scripts/prereqs.sh
N="${N:-1200}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/lattice-density-XXXXXX")"
PIDS=()
cleanup() {
    local status=$?
    trap - EXIT INT TERM
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

echo "==> cargo build --release -p lattice-host --bin lattice; the hello actor" >&2
cargo build --release -p lattice-host --bin lattice >&2
cargo build --target wasm32-wasip1 --profile wasm -p hello --target-dir "$ROOT/target/actors" >&2
L="$ROOT/target/release/lattice"
HELLO="$ROOT/target/actors/wasm32-wasip1/wasm/hello.wasm"

PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
nats-server -js -a 127.0.0.1 -p "$PORT" -sd "$WORK/js" >"$WORK/nats.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 100); do grep -q "Server is ready" "$WORK/nats.log" && break; sleep 0.1; done
export LATTICE_NATS_URL="nats://127.0.0.1:$PORT" LATTICE_ID="density"
"$L" up --name dens --data-dir "$WORK/host" >"$WORK/host.log" 2>&1 &
HOST_PID=$!
PIDS+=("$HOST_PID")
for _ in $(seq 1 100); do "$L" ctl get hosts 2>/dev/null | grep -q dens && break; sleep 0.1; done

rss_kib() { awk '/VmRSS/ { print $2 }' "/proc/$HOST_PID/status"; }
"$L" ctl start actor "$HELLO" --id h0 --host dens >/dev/null
rss0="$(rss_kib)"
start="$(date +%s%N)"
for i in $(seq 1 $((N - 1))); do
    if ! "$L" ctl start actor "$HELLO" --id "h$i" --host dens >/dev/null 2>"$WORK/err"; then
        echo "start of h$i failed: $(cat "$WORK/err")" >&2
        exit 1
    fi
done
end="$(date +%s%N)"
rss1="$(rss_kib)"
ok=0
sample=(0 1 $((N / 2)) $((N - 2)) $((N - 1)))
for i in "${sample[@]}"; do
    "$L" call "h$i" SayHello '"x"' >/dev/null && ok=$((ok + 1))
done
warm="$("$L" ctl get inventory dens --output json | python3 -c 'import json, sys
d = json.load(sys.stdin); inv = d[0] if isinstance(d, list) else d
print(len(inv["actors"]), sum(a["warm_instances"] for a in inv["actors"]))')"

echo
echo "Lattice density, $(date -u '+%Y-%m-%d %H:%M UTC'), $(uname -sm), $(nproc) CPUs, commit $(git rev-parse --short HEAD 2>/dev/null || echo '?'), load average $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-40s %14s %12s\n' "measure" "value" "target"
printf '%-40s %14s %12s\n' "actors of one module on one host" "$N" "10,000"
printf '%-40s %14s %12s\n' "actors listed / warm instances" "${warm/ / \/ }" "slots 1000"
printf '%-40s %14s %12s\n' "sample calls answered" "$ok/${#sample[@]}" "all"
printf '%-40s %11s ms %12s\n' "CLI start, mean (process to exit)" "$(( (end - start) / 1000000 / (N - 1) ))" "< 20 ms"
printf '%-40s %10s KiB %12s\n' "host RSS per idle actor" "$(( (rss1 - rss0) / (N - 1) ))" "<= 64 KiB"
