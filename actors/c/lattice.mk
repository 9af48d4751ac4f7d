# The build of a C actor, shared by the Makefiles of the C examples.
#
# A Makefile sets the actor's claims, then includes this file:
#
#   NAME      := my-actor
#   VERSION   := 0.1.0
#   CONTRACTS := lattice:keyvalue
#   include ../../actors/c/lattice.mk
#
# and has these targets:
#
#   make                         build/$(NAME).wasm from every *.c of its
#                                directory and the SDK's lattice.c, claims included
#   make LATTICE=/path/lattice   use another `lattice` binary for `claims put`
#   make clean
#
# Needs the Debian packages clang, lld, wasi-libc and libclang-rt-dev-wasm32
# (scripts/prereqs.sh installs them) and the `lattice` binary
# (`cargo build -p lattice-host`; default: target/debug/lattice of this workspace).
#
# lattice-harness's build_c_actor (used by the tests) builds such a directory
# the same way: it reads the NAME, VERSION and CONTRACTS lines of its Makefile
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

SOURCES := $(wildcard *.c) $(SDK)/lattice.c
OUT     := build/$(NAME).wasm

.PHONY: all clean
all: $(OUT)

# Compile, embed the claims, then move into place: build/$(NAME).wasm always
# has its claims.
$(OUT): $(SOURCES) $(SDK)/lattice.h $(MAKEFILE_LIST)
	@mkdir -p build
	$(CLANG) $(CFLAGS) -o $@.tmp $(SOURCES)
	$(LATTICE) claims put $@.tmp --name $(NAME) --version $(VERSION) $(addprefix --contract ,$(CONTRACTS))
	mv $@.tmp $@

clean:
	rm -rf build
