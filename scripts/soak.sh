#!/usr/bin/env bash
# Soak test (not part of the default test run): keeps HTTP load on a deployed app
# while hosts are SIGKILLed and restarted one by one, then reports requests sent,
# failed, the longest gap without a successful response, for each kill the
# time until the app was back at full replica count, the requests in flight at
# the kill and the failures around it, and whether the key-value counter ever
# fell below the number of successful increments.
#
#   scripts/soak.sh [ROUNDS] [PAUSE_SECONDS]
#
# Everything runs on 127.0.0.1: a nats-server on a free port, three hosts
# (heartbeat 1 s), the kvcounter app with 3 replicas and both providers on
# every host (`on_every_host = true`): the three HTTP server instances listen on
# one port through SO_REUSEPORT, so the kernel sends new connections to the
# live hosts only, and a killed host takes down one instance, not HTTP.
# Builds go to $CARGO_TARGET_DIR (default target/). SOAK_KEEP_LOGS=DIR keeps the
# host, nats-server and load logs there.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
ROUNDS="${1:-3}"
PAUSE="${2:-5}"
. scripts/prereqs.sh

TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
cargo build --release -p lattice-host --bin lattice
cargo build --target wasm32-wasip1 --profile wasm -p kvcounter --target-dir "$TARGET/actors"
L="$TARGET/release/lattice"
WORK="$(mktemp -d)"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
NATS_PORT="$(free_port)"
HTTP_PORT="$(free_port)"
export LATTICE_NATS_URL="nats://127.0.0.1:$NATS_PORT" LATTICE_ID="soak"
declare -A PIDS
cleanup() {
    touch "$WORK/STOP"
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    [ -n "${NATS_PID:-}" ] && kill -TERM "$NATS_PID" 2>/dev/null || true
    wait 2>/dev/null || true
    if [ -n "${SOAK_KEEP_LOGS:-}" ]; then
        mkdir -p "$SOAK_KEEP_LOGS" && cp "$WORK"/*.log "$WORK"/kills "$SOAK_KEEP_LOGS"/ 2>/dev/null || true
        echo "logs kept in $SOAK_KEEP_LOGS" >&2
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

nats-server -js -a 127.0.0.1 -p "$NATS_PORT" -sd "$WORK/js" >"$WORK/nats.log" 2>&1 &
NATS_PID=$!
for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$NATS_PORT") 2>/dev/null && break; python3 -c 'import time; time.sleep(0.1)'; done

start_host() {
    "$L" up --name "$1" --heartbeat-interval 1s --reconcile-interval 500ms \
        --cache-dir "$WORK/cache" >"$WORK/$1.log" 2>&1 &
    PIDS[$1]=$!
    for _ in $(seq 1 300); do grep -q "joined lattice" "$WORK/$1.log" && return 0; python3 -c 'import time; time.sleep(0.1)'; done
    echo "host $1 did not start" >&2; tail "$WORK/$1.log" >&2; exit 1
}
for h in soak-1 soak-2 soak-3; do start_host "$h"; done

cp "$TARGET/actors/wasm32-wasip1/wasm/kvcounter.wasm" "$WORK/"
cat >"$WORK/app.toml" <<TOML
name = "soak"
[[actors]]
id = "kvcounter"
ref = "kvcounter.wasm"
replicas = 3
[[providers]]
id = "httpserver"
ref = "builtin:httpserver"
on_every_host = true
[[providers]]
id = "keyvalue"
ref = "builtin:keyvalue"
on_every_host = true
[[links]]
actor = "kvcounter"
provider = "httpserver"
contract = "lattice:httpserver"
config = { address = "127.0.0.1:$HTTP_PORT" }
[[links]]
actor = "kvcounter"
provider = "keyvalue"
contract = "lattice:keyvalue"
TOML
"$L" app deploy "$WORK/app.toml"

replicas() {
    "$L" ctl get inventory --output json 2>/dev/null | python3 -c '
import json, sys
try:
    d = json.load(sys.stdin)
except Exception:
    print(0); sys.exit()
print(sum(a["replicas"] for i in d for a in i["actors"] if a["id"] == "kvcounter"))'
}
http_instances() {
    "$L" ctl get providers --output json 2>/dev/null | python3 -c '
import json, sys
try:
    d = json.load(sys.stdin)
except Exception:
    print(0); sys.exit()
print(sum(1 for p in d if p["id"] == "httpserver" and all(l.get("error") is None for l in p["links"]) and p["links"]))'
}
wait_full() { # prints seconds until 3 replicas
    local t0; t0=$(date +%s.%N)
    for _ in $(seq 1 600); do
        [ "$(replicas)" = "3" ] && { python3 -c "import time; print(f'{time.time() - $t0:.2f}')"; return 0; }
        python3 -c 'import time; time.sleep(0.1)'
    done
    echo "timeout"
}
echo "==> waiting for the app: $(wait_full) s"
for _ in $(seq 1 300); do [ "$(http_instances)" = "3" ] && break; python3 -c 'import time; time.sleep(0.1)'; done
echo "==> HTTP server instances serving the link: $(http_instances) (one per host, port $HTTP_PORT shared)"
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$HTTP_PORT/warm" >/dev/null && break; python3 -c 'import time; time.sleep(0.1)'; done

DURATION=$(( ROUNDS * (PAUSE + 15) + 10 ))
python3 scripts/soak_load.py "http://127.0.0.1:$HTTP_PORT/soak" "$DURATION" 8 "$WORK/STOP" "$WORK/kills" >"$WORK/load.json" &
LOAD_PID=$!

printf '%-8s %-8s %-22s %s\n' round killed "back to 3 replicas (s)" "HTTP instances"
for r in $(seq 1 "$ROUNDS"); do
    sleep "$PAUSE"
    victim="soak-$(( (r - 1) % 3 + 1 ))"
    python3 -c 'import time; print(time.time())' >>"$WORK/kills"
    kill -KILL "${PIDS[$victim]}"
    secs="$(wait_full)"
    printf '%-8s %-8s %-22s %s\n' "$r" "$victim" "$secs" "$(http_instances)"
    start_host "$victim"
done
touch "$WORK/STOP"
wait "$LOAD_PID"
python3 - "$WORK/load.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
print(f"requests sent {s['sent']}, failed {s['failed']} ({100*s['failed']/max(1,s['sent']):.2f}%), longest gap without a success {s['longest_gap']:.2f} s")
print(f"{'kill':<6} {'in flight (all hosts)':<22} failed around it")
for i, k in enumerate(s["kills"], 1):
    print(f"{i:<6} {k['in_flight']:<22} {k['failed']}")
print(f"counter /soak: highest value returned {s['max_count']}, successful increments {s['successes']}",
      "(ok: never lower)" if s["max_count"] >= s["successes"] else "(LOST INCREMENTS)")
PY
