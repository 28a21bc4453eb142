# The README's two commands: `make demo` and `make test`. Both install first (idempotent).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
export HF_HOME ?= $(CURDIR)/.cache/huggingface
export HF_HUB_OFFLINE ?= 1
export RAY_TMPDIR ?= /tmp/ray-jat
export MPLBACKEND ?= Agg

.PHONY: install demo test test-slow lint bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# torch first, from the local CPU wheel (any other torch pulls GBs of CUDA)
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[test]'
	# sample-factory pins numpy<2, gymnasium<1, huggingface_hub<1: install it alone, no deps;
	# experts/sample_factory applies its numpy>=2.4 fix at import time.
	$(PIP) install -q --no-deps sample-factory==2.1.1
	# Debian packages, installed when missing and possible (root with apt), never fatal: libosmesa6 for
	# MuJoCo's offscreen rendering (render, the cards' clips; render says why without it), chromium for
	# the episode viewer's browser test (it skips, saying so, without it).
	@missing=""; ldconfig -p | grep -q libOSMesa || missing="libosmesa6"; \
	  command -v chromium >/dev/null || missing="$$missing chromium"; \
	  if [ -n "$$missing" ]; then \
	    { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
	      && apt-get update -q >/dev/null 2>&1 && apt-get install -y -q $$missing >/dev/null 2>&1 \
	      && echo "installed$$missing (Debian packages)"; } \
	    || echo "note: could not install$$missing: MuJoCo clips / the browser test are skipped"; \
	  fi
	touch $(STAMP)

demo: install
	$(VENV)/bin/pipeline demo --out outputs/demo --overwrite

test: install
	$(VENV)/bin/ruff check pipeline experts tests benchmarks
	$(PY) -m pytest -q

test-slow: install
	$(PY) -m pytest -q -m slow

lint: install
	$(VENV)/bin/ruff check pipeline experts tests benchmarks
	$(VENV)/bin/ruff format --check pipeline experts tests benchmarks

bench: install
	$(PY) benchmarks/rollout_throughput.py
	$(PY) benchmarks/rollout_expert_batching.py
	$(PY) benchmarks/rollout_memory.py
	$(PY) benchmarks/expert_training.py

clean:
	rm -rf outputs .cache .pytest_cache
