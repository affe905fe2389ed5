# manifesto — developer and CI entry points.
#   make test         system deps + venv + busybox prefetch + full test suite
#   make install      venv at .venv with manifesto (editable) and test extras
#   make system-deps  Debian packages (docker-registry, skopeo, buildah, podman, qemu, ...) + binfmt
#   make demo         end-to-end demo (scripts/demo.sh)
#   make bench        peer comparisons (bench/run.py)
#   make dist         wheel and sdist into dist/ (python -m build)
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := test

VENV   ?= .venv
PYTHON ?= python3
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.manifesto-installed
# -n 2: two xdist workers (2 cores); loadfile keeps a module's tests (and its
# module-scoped registries) on one worker. Session fixtures run once per worker.
PYTEST_ARGS ?= -n 2 --dist loadfile -q

.PHONY: test install system-deps prefetch demo bench dist clean distclean

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -e '.[test]'
	@touch $@

system-deps:
	bash scripts/install-system-deps.sh

# Download busybox-static for the five test architectures once into .cache/busybox.
prefetch:
	@bash scripts/fetch-busybox.sh || { \
	  if [ "$${CI:-}" = true ]; then exit 1; fi; \
	  echo "warning: busybox prefetch failed; image tests will skip" >&2; }

test: system-deps install prefetch
	$(VENV)/bin/pytest $(PYTEST_ARGS)

demo: system-deps install
	bash scripts/demo.sh

bench: install
	@if [ -f bench/run.py ]; then $(PY) bench/run.py; \
	else echo "bench/run.py not written yet" >&2; exit 1; fi

# Build the sdist, then the wheel from it (so a file the sdist lacks breaks the wheel too), in
# pypa/build's isolated environment. Only needs `build` in the venv, not the project installed.
dist:
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check build
	rm -rf dist
	$(PY) -m build --outdir dist .
	@ls -1 dist

clean:
	rm -rf .pytest_cache build dist out
	find . -name __pycache__ -type d -not -path './$(VENV)/*' -prune -exec rm -rf {} +

# Also drop the venv and the busybox download cache.
distclean: clean
	rm -rf $(VENV) .cache
