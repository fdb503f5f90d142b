# make demo: set up and run the main job on built-in virtual ports (no root needed).
# make test: set up (as root also the Debian packages the tests use) and run every test.
# make bench: run the benchmarks against their peers and print figures and ratios.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed
DEBIAN_PACKAGES := dpdk-dev netsniff-ng mininet bridge-utils iputils-ping tcpdump tshark \
	xdp-tools libxdp-dev libbpf-dev clang iproute2 ethtool fuse3 linux-source-6.12 chromium
# Keep Numba's and pktflow's generated-code caches inside the checkout.
export PKTFLOW_CACHE_DIR ?= $(CURDIR)/.venv/cache
export NUMBA_CACHE_DIR ?= $(CURDIR)/.venv/cache/numba

.PHONY: setup demo test bench lint debian clean clean-cache fuzz soak

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e '.[test]'
	@touch $(STAMP)

setup: $(STAMP)

debian:
	@if [ "$$(id -u)" = 0 ]; then \
		missing=""; for p in $(DEBIAN_PACKAGES); do \
			dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
		if [ -n "$$missing" ]; then \
			echo "installing Debian packages:$$missing"; \
			apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; \
		fi; \
	else echo "not root: skipping Debian packages (root-only tests will skip)"; fi

demo: $(STAMP)
	$(VENV)/bin/pktflow demo

test: $(STAMP) debian
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q -p no:cacheprovider tests

bench: $(STAMP) debian
	$(PY) -m bench

# make fuzz: coverage-guided fuzzing of every input format (FUZZ_SECONDS per target, default 60).
fuzz: $(STAMP)
	$(PY) -m fuzz

# make soak: an NF forwarding on veth at its highest loss-free rate for SOAK_SECONDS (600).
soak: $(STAMP) debian
	$(PY) -m tests.reliability.soak

lint: $(STAMP)
	$(VENV)/bin/ruff check .

clean-cache:
	rm -rf $(PKTFLOW_CACHE_DIR)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
