#!/usr/bin/env bash
# Times control commands through the `lattice` CLI process, as a user runs
# them, against a lattice of three hosts on this machine, and prints one table:
#   ctl get hosts          (a scatter-gather: ends when every live host answered)
#   ctl get inventory      (every host)
#   ctl start actor (module cached) -> first successful `lattice call`
# p50 and max of RUNS runs each (default 20), next to the target of issue 11.
# Each row times whole processes (spawn to exit), connection to NATS included.
#
# Self-contained: installs prerequisites idempotently, builds in release,
# starts its own nats-server -js on a free port and three hosts, and stops
# everything it started on exit.
#
# Usage: scripts/bench-ctl.sh
# Env: RUNS (default 20); BASELINE=/path/to/another/lattice adds each row
# measured with that binary too, run for run alternately with this build's.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
. scripts/prereqs.sh
RUNS="${RUNS:-20}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/lattice-bench-ctl-XXXXXX")"
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
LATTICE="$ROOT/target/release/lattice"
HELLO="$ROOT/target/actors/wasm32-wasip1/wasm/hello.wasm"

PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
nats-server -js -a 127.0.0.1 -p "$PORT" -sd "$WORK/js" >"$WORK/nats.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 100); do grep -q "Server is ready" "$WORK/nats.log" && break; sleep 0.1; done
export LATTICE_NATS_URL="nats://127.0.0.1:$PORT" LATTICE_ID="benchctl"

for n in 1 2 3; do
    "$LATTICE" up --name "h$n" --data-dir "$WORK/h$n" >"$WORK/h$n.log" 2>&1 &
    PIDS+=($!)
done
for _ in $(seq 1 300); do
    [ "$("$LATTICE" ctl get hosts --output json 2>/dev/null | grep -c '"id"')" = 3 ] && break
    sleep 0.1
done

BINS=("$LATTICE")
[ -n "${BASELINE:-}" ] && BINS+=("$BASELINE")

# time_runs CMD : runs CMD RUNS times with each binary in turn (CMD uses $L for
# the binary, $i and $b for unique ids), prints "p50 max" in ms per binary.
# Bash's own clock: forking `date` around each run would add its cost to it.
time_runs() {
    local dir
    dir="$(mktemp -d "$WORK/samples-XXXX")"
    for i in $(seq 1 "$RUNS"); do
        for b in "${!BINS[@]}"; do
            L="${BINS[$b]}"
            local start="${EPOCHREALTIME/[.,]/}"
            eval "$1" >/dev/null
            local end="${EPOCHREALTIME/[.,]/}"
            echo $(( 10#$end - 10#$start )) >>"$dir/$b"
        done
    done
    for b in "${!BINS[@]}"; do
        sort -n "$dir/$b" | awk '
            { v[NR] = $1 }
            END { printf "%.1f %.1f\n", v[int((NR + 1) / 2)] / 1000, v[NR] / 1000 }'
    done
}

# row_of LABEL TARGET CMD : one row per binary
row_of() {
    local label="$1" target="$2" b=0
    while read -r p50 max; do
        if [ "$b" = 0 ]; then
            row "$label" "$RUNS" "$p50 ms" "$max ms" "$target"
        else
            row "  (baseline binary)" "$RUNS" "$p50 ms" "$max ms" ""
        fi
        b=$((b + 1))
    done < <(time_runs "$3")
}

# The module is uploaded and compiled once; every run then starts a new id from
# the cached module on host h1 and calls it.
"$LATTICE" ctl start actor "$HELLO" --id warm --host h1 >/dev/null

row() { printf '%-52s %5s %10s %10s %10s\n' "$@"; }
echo
echo "Lattice control commands through the CLI, $(date -u '+%Y-%m-%d %H:%M UTC'), $(uname -sm), $(nproc) CPUs, commit $(git rev-parse --short HEAD 2>/dev/null || echo '?'), load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "three hosts, nats-server $(nats-server --version 2>&1 | awk '{print $NF}') on 127.0.0.1; $RUNS runs per row; whole CLI processes"
echo
row "command" "runs" "p50" "max" "target"
[ -n "${BASELINE:-}" ] && echo "(baseline rows: $BASELINE, run for run alternately with this build)"
row_of "lattice ctl get hosts" "< 20 ms" '"$L" ctl get hosts'
row_of "lattice ctl get inventory" "< 20 ms" '"$L" ctl get inventory'
row_of "ctl start actor (cached) + first lattice call" "< 20 ms" \
    '"$L" ctl start actor "$HELLO" --id "c$b-$i" --host h1 && "$L" call "c$b-$i" SayHello "\"x\""'
row_of "  the same, placed by auction (no --host)" "< 20 ms" \
    '"$L" ctl start actor "$HELLO" --id "a$b-$i" && "$L" call "a$b-$i" SayHello "\"x\""'
row_of "ctl start actor (cached) alone" "" \
    '"$L" ctl start actor "$HELLO" --id "s$b-$i" --host h1'
row_of "lattice call alone" "" '"$L" call warm SayHello "\"x\""'
row_of "lattice --version (process start, no NATS)" "" '"$L" --version'
echo "load average after the run: $(cut -d' ' -f1-3 /proc/loadavg) (other work on this machine skews the numbers)"
