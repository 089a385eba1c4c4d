# Guest-kernel migration harness.
#   make test         the fast offline test suite (own virtualenv)
#   make test-guest   build, boot and check real kernels against the model
#   make test-vm      the real-QEMU tests of the VM layer (pytest -m guest)
#   make test-faults  faults injected into real runs (pytest -m faults; run alone)
#   make bench        build and boot benchmarks (bench/)
#
# test-guest knobs:
#   KERNEL=v5.0 (default; kernel.org tarball, cached tarball or registered tree)
#   KERNEL=debian-5.10 (Debian's linux-source-5.10; no kernel.org needed)
#   KERNEL=debian-6.1, KERNEL=debian-6.12 (Debian's linux-source-6.1 / -6.12)
#   KERNEL_SRC=/path/to/linux (a developer's tree; overrides KERNEL)
#   TARBALL=/path/to/linux-5.0.tar.xz (supplies v5.0 from disk)
#   ARCH=x86_64,arm64 (default) or one of them; SCENARIO=name,...; RUN_ARGS=...

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

KERNEL     ?= v5.0
KERNEL_SRC ?=
TARBALL    ?=
ARCH       ?= x86_64,arm64
SCENARIO   ?=
RUN_ARGS   ?=
GUEST_SOURCE = $(if $(KERNEL_SRC),$(KERNEL_SRC),$(KERNEL))

.PHONY: test test-guest test-vm test-faults test-lava bench deps venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

test: $(STAMP)
	$(BIN)/pytest -q -n auto tests

deps: $(STAMP)
	$(BIN)/harness deps --arch $(ARCH) --install

test-guest: deps
	$(BIN)/harness run --kernel $(GUEST_SOURCE) --arch $(ARCH) \
		$(if $(TARBALL),--tarball $(TARBALL)) $(if $(SCENARIO),--scenario $(SCENARIO)) $(RUN_ARGS)

test-vm: deps
	HARNESS_TEST_KERNEL=$(GUEST_SOURCE) HARNESS_TEST_ARCHES=$(ARCH) $(BIN)/pytest -q -m guest tests/guest

test-faults: deps
	HARNESS_TEST_KERNEL=$(GUEST_SOURCE) HARNESS_TEST_ARCHES=$(ARCH) $(BIN)/pytest -v -m faults -p no:xdist --timeout 3600 tests/faults

# The suite's plan scenarios as jobs on a local LAVA lab (root: installs and starts it).
test-lava: deps
	$(BIN)/harness lava lab up
	HARNESS_TEST_KERNEL=$(GUEST_SOURCE) HARNESS_TEST_ARCHES=$(ARCH) $(BIN)/pytest -v -m lava -p no:xdist --timeout 3600 tests/lava

bench: deps
	$(BIN)/python bench/boot.py --kernel $(GUEST_SOURCE) --arch $(ARCH)
	$(BIN)/python bench/build.py --kernel $(GUEST_SOURCE) --arch $(firstword $(subst $(comma), ,$(ARCH)))

comma := ,

clean:
	rm -rf $(VENV) build *.egg-info
