# syntax=docker/dockerfile:1
#
# Lattice in a container: the `lattice` binary (host agent and CLI) plus the
# example actors, built from this workspace.
#
#   docker build -t lattice .
#   docker run --rm lattice --help
#   docker run --rm -e LATTICE_NATS_URL=nats://nats.example:4222 lattice up --label zone=a
#
# The example modules are in /opt/lattice/actors/ (hello.wasm, kvcounter.wasm).
# docker-compose.yml runs this image as three hosts and a one-shot deploy.
# Needs BuildKit (the default builder of current Docker) for the cache mounts.

# The locked dependencies (wasmtime 48) need Rust 1.95 or newer. Both stages are
# Debian bookworm, so the binary's glibc matches at run time.
ARG RUST_VERSION=1.95

# ---- build: lattice (native) and the example actors (wasm32-wasip1) ---------------
FROM rust:${RUST_VERSION}-bookworm AS build
RUN rustup target add wasm32-wasip1
WORKDIR /src
COPY . .
# The registry, git checkouts and target/ live in cache mounts, so a rebuild after
# a source change recompiles only the workspace crates. Cache mounts are not part
# of the image: the results are copied to /out in the same step.
# Note: `--profile wasm` stands alone; cargo refuses it together with `--release`.
RUN --mount=type=cache,id=lattice-cargo-registry,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,id=lattice-cargo-git,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,id=lattice-target,target=/src/target,sharing=locked \
    set -eux; \
    cargo build --locked --release -p lattice-host --bin lattice; \
    cargo build --locked --target wasm32-wasip1 --profile wasm \
        -p hello -p kvcounter --target-dir target/actors; \
    mkdir -p /out/bin /out/actors; \
    cp target/release/lattice /out/bin/; \
    cp target/actors/wasm32-wasip1/wasm/hello.wasm \
       target/actors/wasm32-wasip1/wasm/kvcounter.wasm /out/actors/

# ---- runtime --------------------------------------------------------------------
FROM debian:bookworm-slim AS runtime
# ca-certificates: for tls:// NATS URLs (rustls with the system's roots). Left
# unpinned on purpose: it should follow the security updates of the base image.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid 10001 lattice \
    && useradd --system --uid 10001 --gid lattice --create-home \
        --home-dir /home/lattice --shell /usr/sbin/nologin lattice
COPY --from=build /out/bin/lattice /usr/local/bin/lattice
COPY --from=build /out/actors/ /opt/lattice/actors/
COPY --chmod=0755 scripts/compose-deploy.sh /opt/lattice/scripts/compose-deploy.sh
# Numeric, so `runAsNonRoot` checks (Kubernetes) can verify it.
USER 10001:10001
# Compiled-module cache: /home/lattice/.cache/lattice/modules (per container).
WORKDIR /home/lattice
# The HTTP server provider's usual port (the address comes from the link).
EXPOSE 8080
# `lattice up` handles SIGTERM itself (drains in-flight calls, then leaves the
# lattice), so it can run as PID 1. Without LATTICE_NATS_URL / --nats-url it tries
# 127.0.0.1:4222 and there is no nats-server in this image: always set one.
ENTRYPOINT ["lattice"]
CMD ["--help"]
