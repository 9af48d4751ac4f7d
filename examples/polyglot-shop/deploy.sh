#!/usr/bin/env bash
# Builds the polyglot shop and deploys it as the app "shop" (app.toml):
#   - frontend  (Rust)  cargo build --target wasm32-wasip1 --profile wasm -p shop-frontend
#   - inventory (Go)    make -C inventory   (go build -buildmode=c-shared + claims)
#   - pricing   (C)     make -C pricing     (clang + wasi-libc + claims)
# copies the three modules into build/ (where app.toml points), runs
# `lattice app deploy app.toml`, waits until `lattice app status shop` says
# converged and HTTP answers, and prints example calls.
#
# Usage:
#   ./deploy.sh              deploy to a running lattice (LATTICE_NATS_URL,
#                            LATTICE_ID; default nats://127.0.0.1:4222, "default")
#   ./deploy.sh --hosts 3    first start 3 local hosts (shop-1..3) when no host
#                            answers; the first starts an embedded nats-server when
#                            nothing listens on 127.0.0.1:4222. Logs and pids in
#                            build/hosts/
#   ./deploy.sh down         undeploy the app and stop the hosts --hosts started
#
# ISSUER=issuer.nk (a seed file from `lattice keys gen`) signs the claims of
# all three modules with that issuer (`lattice claims sign`), for hosts started
# with `--allowed-issuer`; after switching, `make -C inventory clean` and
# `make -C pricing clean` so the Makefiles re-sign.
# LATTICE=/path/to/lattice uses that binary; by default `cargo build -p
# lattice-host` builds target/debug/lattice. The HTTP address is the one in
# app.toml (127.0.0.1:8081).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
BUILD="$HERE/build"
HOSTS="$BUILD/hosts"
APP=shop
URL=http://127.0.0.1:8081

start_hosts=0
mode=deploy
while [ $# -gt 0 ]; do
    case "$1" in
        --hosts) start_hosts="${2:?--hosts needs a number}"; shift 2 ;;
        --hosts=*) start_hosts="${1#--hosts=}"; shift ;;
        down) mode=down; shift ;;
        -h|--help) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "error: unknown argument '$1' (see $0 --help)" >&2; exit 2 ;;
    esac
done

if [ -z "${LATTICE:-}" ]; then
    echo "==> cargo build -p lattice-host (the lattice binary)"
    cargo build --quiet --manifest-path "$ROOT/Cargo.toml" -p lattice-host --bin lattice
    LATTICE="$ROOT/target/debug/lattice"
fi

stop_hosts() {
    [ -d "$HOSTS" ] || return 0
    # The last started first: the first host may run the embedded nats-server.
    for pidfile in $(ls -r "$HOSTS"/*.pid 2>/dev/null); do
        pid="$(cat "$pidfile")"
        if kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid" 2>/dev/null || true
            for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        fi
        rm -f "$pidfile"
    done
}

if [ "$mode" = down ]; then
    "$LATTICE" app undeploy "$APP" || true
    stop_hosts
    echo "shop stopped"
    exit 0
fi

. "$ROOT/scripts/prereqs.sh"

echo "==> building frontend (Rust)"
(cd "$ROOT" && cargo build --quiet --target wasm32-wasip1 --profile wasm -p shop-frontend \
    --target-dir target/actors)
echo "==> building inventory (Go)"
make --no-print-directory -C "$HERE/inventory" LATTICE="$LATTICE"
echo "==> building pricing (C)"
make --no-print-directory -C "$HERE/pricing" LATTICE="$LATTICE"

mkdir -p "$BUILD"
cp "$ROOT/target/actors/wasm32-wasip1/wasm/shop_frontend.wasm" "$BUILD/shop-frontend.wasm"
if [ -n "${ISSUER:-}" ]; then
    # The claims! of the frontend, signed as they are (the Makefiles sign theirs).
    "$LATTICE" claims sign "$BUILD/shop-frontend.wasm" --issuer "$ISSUER"
fi
cp "$HERE/inventory/build/inventory.wasm" "$BUILD/inventory.wasm"
cp "$HERE/pricing/build/pricing.wasm" "$BUILD/pricing.wasm"
for m in shop-frontend inventory pricing; do
    "$LATTICE" claims inspect "$BUILD/$m.wasm" | sed -n 's/^/    /;1p;3p;4p;/^signature/p'
done

host_count() {
    "$LATTICE" ctl get hosts --output json 2>/dev/null | grep -c '"name"' || true
}

wait_for_log() { # FILE PATTERN SECONDS
    for _ in $(seq 1 $(( $3 * 10 ))); do
        grep -q "$2" "$1" 2>/dev/null && return 0
        sleep 0.1
    done
    echo "error: timed out waiting for '$2' in $1:" >&2
    tail -20 "$1" >&2
    return 1
}

if [ "$start_hosts" -gt 0 ]; then
    if [ "$(host_count)" -gt 0 ]; then
        echo "==> $(host_count) host(s) already answer; not starting more"
    else
        mkdir -p "$HOSTS"
        for i in $(seq 1 "$start_hosts"); do
            echo "==> starting host shop-$i"
            nohup "$LATTICE" up --name "shop-$i" --label "zone=z$i" --data-dir "$HOSTS/data" \
                >"$HOSTS/shop-$i.log" 2>&1 &
            echo $! >"$HOSTS/shop-$i.pid"
            wait_for_log "$HOSTS/shop-$i.log" "joined lattice" 30
        done
    fi
fi
if [ "$(host_count)" -eq 0 ]; then
    echo "error: no host answers; start some with \`lattice up\` (or run $0 --hosts 3)" >&2
    exit 1
fi

echo "==> lattice app deploy app.toml"
"$LATTICE" app deploy "$HERE/app.toml"

# Converged, as observed by the reconciler: every replica running, and both
# providers seen running (before the reconciler's first pass the status lists
# no providers at all).
converged() {
    local status
    status="$("$LATTICE" app status "$APP" --output json 2>/dev/null)" || return 1
    grep -q '"converged": true' <<<"$status" &&
        ! grep -q '"reconciler": null' <<<"$status" &&
        [ "$(grep -c '"running": true' <<<"$status")" -eq 2 ]
}

echo "==> waiting for lattice app status $APP to say converged"
converged=""
for _ in $(seq 1 120); do
    if converged; then
        converged=yes
        break
    fi
    sleep 0.5
done
"$LATTICE" app status "$APP"
if [ -z "$converged" ]; then
    echo "error: app $APP did not converge within 60 s (see the status above)" >&2
    exit 1
fi

if command -v curl >/dev/null 2>&1; then
    # The HTTP server listens once its link is in; the first answers may come
    # before the frontend's replicas are warm.
    ok=""
    for _ in $(seq 1 150); do
        if [ "$(curl -s -o /dev/null -w '%{http_code}' "$URL/quote/apple")" = 200 ]; then
            ok=yes
            break
        fi
        sleep 0.2
    done
    [ -n "$ok" ] || echo "warning: $URL/quote/apple did not answer 200 within 30 s" >&2
fi

cat <<EOT

The shop is up. Try:
  curl -s -X POST '$URL/stock/apple?add=10'   # {"item":"apple","stock":10}
  curl -s '$URL/quote/apple?qty=3'            # {"item":"apple","qty":3,"in_stock":true,...}
  curl -s '$URL/quote/fig?qty=2'              # in_stock false until fig is stocked
  curl -s -i '$URL/quote/kiwi'                # 404 unknown item "kiwi"
  $LATTICE call pricing Quote '{"item":"pear","qty":4}'
  $LATTICE call inventory Stock '{"item":"apple"}'
  $LATTICE ctl get inventory                  # which host runs what
Stop: $0 down
EOT
