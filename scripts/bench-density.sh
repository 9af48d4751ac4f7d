#!/usr/bin/env bash
# Density: on one host with the default 1,000 instance slots,
#   1. N hello actors (default 10,000), each started with the `lattice` CLI;
#      a sample of them is called; host memory per idle actor;
#   2. M distinct modules (default 1,000: hello with a custom section that
#      makes each one's digest its own), each uploaded, compiled and started;
#      memory per module;
#   3. B more actors (default 1,000) started in one batch by `lattice app
#      deploy` of one manifest, timed until the host lists them all;
#   4. the latency of a call (whole `lattice call` process) to a cold actor
#      (its instance given back long ago) and to a warm one;
# every row printed next to the target of issue 11.
#
# Self-contained: installs prerequisites idempotently, builds in release,
# starts its own nats-server -js on a free port and one host, and stops
# everything it started on exit.
#
# Usage: scripts/bench-density.sh        Env: N (10000), M (1000), B (1000)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
. scripts/prereqs.sh
N="${N:-10000}"
M="${M:-1000}"
B="${B:-1000}"
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
ms_since() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }
inventory_counts() { # actors listed, warm instances
    "$L" ctl get inventory dens --output json | python3 -c 'import json, sys
d = json.load(sys.stdin); inv = d[0] if isinstance(d, list) else d
print(len(inv["actors"]), sum(a["warm_instances"] for a in inv["actors"]))'
}

echo "==> 1. $N actors of one module, one CLI start each" >&2
"$L" ctl start actor "$HELLO" --id h0 --host dens >/dev/null
rss0="$(rss_kib)"
start="$(date +%s%N)"
for i in $(seq 1 $((N - 1))); do
    if ! "$L" ctl start actor "$HELLO" --id "h$i" --host dens >/dev/null 2>"$WORK/err"; then
        echo "start of h$i failed: $(cat "$WORK/err")" >&2
        exit 1
    fi
    (( i % 1000 == 0 )) && echo "    $i started" >&2
done
one_start_ms=$(( $(ms_since "$start") / (N - 1) ))
rss1="$(rss_kib)"
ok=0
sample=(1 $((N / 2)) $((N - 2)) $((N - 1)))
for i in "${sample[@]}"; do
    "$L" call "h$i" SayHello '"x"' >/dev/null && ok=$((ok + 1))
done
counts1="$(inventory_counts)"

echo "==> 2. $M distinct modules" >&2
mkdir -p "$WORK/mods"
python3 - "$HELLO" "$WORK/mods" "$M" <<'PY'
import sys
src, out, m = sys.argv[1], sys.argv[2], int(sys.argv[3])
base = open(src, "rb").read()
def leb(n):
    b = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        b.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(b)
for i in range(m):
    name, payload = b"density", str(i).encode()
    body = leb(len(name)) + name + payload
    open(f"{out}/m{i}.wasm", "wb").write(base + b"\x00" + leb(len(body)) + body)
PY
rss2a="$(rss_kib)"
start="$(date +%s%N)"
for i in $(seq 0 $((M - 1))); do
    if ! "$L" ctl start actor "$WORK/mods/m$i.wasm" --id "m$i" --host dens >/dev/null 2>"$WORK/err"; then
        echo "start of module m$i failed: $(cat "$WORK/err")" >&2
        exit 1
    fi
    (( i % 100 == 99 )) && echo "    $((i + 1)) started" >&2
done
module_start_ms=$(( $(ms_since "$start") / M ))
rss2b="$(rss_kib)"
okm=0
for i in 0 $((M / 2)) $((M - 1)); do
    "$L" call "m$i" SayHello '"x"' >/dev/null && okm=$((okm + 1))
done

echo "==> 3. $B actors in one app deploy" >&2
cp "$HELLO" "$WORK/hello.wasm"
{
    echo 'name = "batch"'
    for i in $(seq 0 $((B - 1))); do
        printf '[[actors]]\nid = "b%d"\nref = "hello.wasm"\nreplicas = 1\n' "$i"
    done
} >"$WORK/batch.toml"
before="$(inventory_counts | cut -d' ' -f1)"
start="$(date +%s%N)"
"$L" app deploy "$WORK/batch.toml" >/dev/null
batch_ms=""
deadline=$(( $(date +%s) + 120 ))
while [ "$(date +%s)" -lt "$deadline" ]; do
    now="$(inventory_counts | cut -d' ' -f1)"
    if [ "$now" -ge $((before + B)) ]; then batch_ms="$(ms_since "$start")"; break; fi
    sleep 0.2
done
if [ -z "$batch_ms" ]; then
    echo "the app's $B actors did not all start in time; app status and host log:" >&2
    "$L" app status batch >&2 || true
    tail -20 "$WORK/host.log" >&2
    exit 1
fi

echo "==> 4. calls to a cold and to a warm actor" >&2
# h1 was started first: its instance was given back to make room long ago.
cold_ms=(); warm_ms=()
for i in 2 3 4 5 6; do
    t="$(date +%s%N)"; "$L" call "h$i" SayHello '"x"' >/dev/null; cold_ms+=("$(ms_since "$t")")
    t="$(date +%s%N)"; "$L" call "h$i" SayHello '"x"' >/dev/null; warm_ms+=("$(ms_since "$t")")
done
median() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
counts_end="$(inventory_counts)"

echo
echo "Lattice density, $(date -u '+%Y-%m-%d %H:%M UTC'), $(uname -sm), $(nproc) CPUs, commit $(git rev-parse --short HEAD 2>/dev/null || echo '?'), load average $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-48s %16s %14s\n' "measure" "value" "target"
printf '%-48s %16s %14s\n' "actors of one module on one host" "$N" "10,000"
printf '%-48s %16s %14s\n' "  sample calls answered" "$ok/${#sample[@]}" "all"
printf '%-48s %13s ms %14s\n' "  CLI start, mean (whole process)" "$one_start_ms" "< 20 ms"
printf '%-48s %12s KiB %14s\n' "  host RSS per idle actor" "$(( (rss1 - rss0) / (N - 1) ))" "<= 64 KiB"
printf '%-48s %16s %14s\n' "distinct modules on the same host" "$M" "1,000"
printf '%-48s %16s %14s\n' "  sample calls answered" "$okm/3" "all"
printf '%-48s %13s ms %14s\n' "  CLI start incl. upload + compile, mean" "$module_start_ms" "-"
printf '%-48s %12s KiB %14s\n' "  host RSS per module (compiled code + actor)" "$(( (rss2b - rss2a) / M ))" "-"
printf '%-48s %13s ms %14s\n' "$B actors by one app deploy, until all listed" "$batch_ms" "< 10 s"
printf '%-48s %13s ms %14s\n' "lattice call to a cold actor, median of 5" "$(median "${cold_ms[@]}")" "-"
printf '%-48s %13s ms %14s\n' "lattice call to a warm actor, median of 5" "$(median "${warm_ms[@]}")" "-"
printf '%-48s %16s %14s\n' "actors listed / warm instances at the end" "${counts_end/ / \/ }" "slots 1000"
printf '%-48s %12s MiB %14s\n' "host RSS at the end" "$(( $(rss_kib) / 1024 ))" "-"
