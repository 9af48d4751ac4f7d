# The build of a C actor, shared by the Makefiles of the C examples.
#
# A Makefile sets the actor's claims, then includes this file:
#
#   NAME      := my-actor
#   VERSION   := 0.1.0
#   CONTRACTS := lattice:keyvalue
#   ACTORS    := pricing          # actor ids it may call, or * for all
#   include ../../actors/c/lattice.mk
#
# and has these targets:
#
#   make                         build/$(NAME).wasm from every *.c of its
#                                directory and the SDK's lattice.c, claims included
#   make ISSUER=issuer.nk        the same with the claims signed by that issuer
#                                (a seed file from `lattice keys gen`; ISSUER in
#                                the environment works too)
#   make LATTICE=/path/lattice   use another `lattice` binary for `claims put/sign`
#   make clean
#
# Needs the Debian packages clang, lld, wasi-libc and libclang-rt-dev-wasm32
# (scripts/prereqs.sh installs them) and the `lattice` binary
# (`cargo build -p lattice-host`; default: target/debug/lattice of this workspace).
#
# lattice-harness's build_c_actor (used by the tests) builds such a directory
# the same way: it reads the NAME, VERSION, CONTRACTS and ACTORS lines of its Makefile
# (keep each on one line there) and compiles with C_ACTOR_FLAGS below (its
# C_FLAGS; a unit test of the harness checks that they agree).

ifndef NAME
$(error set NAME (and VERSION, CONTRACTS) before including lattice.mk)
endif

SDK     := $(abspath $(dir $(lastword $(MAKEFILE_LIST))))
ROOT    := $(abspath $(SDK)/../..)
LATTICE ?= $(ROOT)/target/debug/lattice
CLANG   ?= clang
# wasi-libc as a sysroot directory (newer packages); empty when it lives in
# clang's default search path (Debian 12).
WASI_SYSROOT ?= $(wildcard /usr/share/wasi-sysroot)

C_ACTOR_FLAGS := --target=wasm32-wasi -mexec-model=reactor -Os -std=c11 -Wall -Wextra -Werror -Wl,--strip-all
CFLAGS := $(C_ACTOR_FLAGS) -I$(SDK) $(if $(WASI_SYSROOT),--sysroot=$(WASI_SYSROOT))

# The claims as `lattice claims put|sign` flags; each actor id is quoted so
# that `*` reaches lattice unexpanded. With ISSUER set the claims are signed.
CLAIMS_FLAGS = --name $(NAME) --version $(VERSION) $(addprefix --contract ,$(CONTRACTS)) $(foreach a,$(ACTORS),--actor '$(a)')
CLAIMS_CMD   = $(if $(ISSUER),claims sign --issuer $(ISSUER),claims put)

SOURCES := $(wildcard *.c) $(SDK)/lattice.c
OUT     := build/$(NAME).wasm

.PHONY: all clean
all: $(OUT)

# Compile, embed (or sign) the claims, then move into place: build/$(NAME).wasm
# always has its claims.
$(OUT): $(SOURCES) $(SDK)/lattice.h $(MAKEFILE_LIST)
	@mkdir -p build
	$(CLANG) $(CFLAGS) -o $@.tmp $(SOURCES)
	$(LATTICE) $(CLAIMS_CMD) $@.tmp $(CLAIMS_FLAGS)
	mv $@.tmp $@

clean:
	rm -rf build
