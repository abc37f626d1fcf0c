# ferry: the two commands a fresh Debian 12 machine needs (as root):
#   make demo   the main job on the embedded default (emulated testbed)
#   make test   every test (installs what it needs first)
# Everything else here is what those two are made of.

SHELL := /bin/bash
CARGO ?= cargo
HOST_TRIPLE := $(shell rustc -vV 2>/dev/null | sed -n 's/^host: //p')
# Where cargo builds: CARGO_TARGET_DIR (from the environment or `make ... CARGO_TARGET_DIR=D`)
# or ./target.
TARGET_DIR := $(or $(CARGO_TARGET_DIR),target)
COUNTER_BIN := $(TARGET_DIR)/$(HOST_TRIPLE)/release/ferry-counter
COUNTER_IMAGE := build/ferry-counter.oci.tar
# Which build of ferry packs the image: tests use the debug build, the demo the release one,
# so neither builds the workspace twice.
PROFILE ?= debug
FERRY_BIN = $(TARGET_DIR)/$(PROFILE)/ferry

.PHONY: all deps build build-release counter counter-image test test-kernel bench-kernel lint demo bench doctor clean

all: build

# Debian packages, CRIU >= 4.2 (private build when the system's is older), sysctls. Idempotent.
deps:
	@scripts/install-deps

build: deps
ifeq ($(PROFILE),release)
	$(CARGO) build --release -p ferry
else
	$(CARGO) build --workspace
endif

build-release: deps
	$(CARGO) build --release -p ferry

# ferry-counter as a static binary (glibc, crt-static), so its image needs no libraries.
counter:
	RUSTFLAGS="-C target-feature=+crt-static" $(CARGO) build --release -p ferry-counter --target $(HOST_TRIPLE)

# The counter's OCI image archive, packaged by ferry itself (no registry, no Docker).
counter-image: counter build
	@mkdir -p build
	$(FERRY_BIN) image pack --file $(COUNTER_BIN):/ferry-counter:0755 \
		--entrypoint /ferry-counter --reference ferry-counter:latest -o $(COUNTER_IMAGE)

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

test: deps counter-image lint
	$(CARGO) test --workspace
	@# Pre-copy and hybrid need soft-dirty tracking: cargo lists their tests as ignored. They
	@# run here where this kernel has it, and always on Debian's stock kernel in the VM below.
	@criu=$$(ls .deps/criu/sbin/criu 2>/dev/null || command -v criu); \
	if "$$criu" check --feature mem_dirty_track >/dev/null 2>&1; then \
		$(CARGO) test -p ferry --test migrate -- --ignored; \
	else \
		echo "this kernel lacks soft-dirty tracking (CONFIG_MEM_SOFT_DIRTY): the 4 pre-copy/hybrid migration tests run in the VM on Debian's stock kernel (test-kernel, next)"; \
	fi
	$(MAKE) --no-print-directory test-kernel

# What this kernel lacks (soft-dirty, netem, cgroup v2), on Debian 12's stock kernel in
# QEMU/TCG: pre-copy, hybrid, the checkpoint tests, netem links, a testbed with a container
# app, the crash matrix's pre-copy and hybrid cells, no leftovers after each
# (scripts/test-kernel; scripts/kernel-vm boots it, cached under .deps/kernel).
test-kernel: deps counter-image
	scripts/test-kernel

# `ferry bench migrate --techniques pre-copy,hybrid` in that VM (figures from an emulated CPU).
bench-kernel: deps counter-image
	FERRY_VM_STEPS=bench scripts/test-kernel

doctor: build
	$(TARGET_DIR)/debug/ferry doctor

# Benchmarks (not tests): medians with ranges, JSON and plots under bench-results/.
bench: deps
	$(MAKE) --no-print-directory counter-image PROFILE=release
	$(TARGET_DIR)/release/ferry bench checkpoint
	$(TARGET_DIR)/release/ferry bench migrate --quick
	$(TARGET_DIR)/release/ferry bench control

demo: deps
	$(MAKE) --no-print-directory counter-image PROFILE=release
	$(TARGET_DIR)/release/ferry demo --image $(COUNTER_IMAGE)

clean:
	$(CARGO) clean
	rm -rf build
