# `make test` is the README's test command; `make demo` is the main job. Both set themselves up.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: install test lint typecheck pytest docs demo bench reliability soak gpu-smoke clean

# PYTHONWARNINGS: setuptools' "Editable installation" notice (folders named like a package may shadow
# it on import) describes this layout as intended: the packages are the repository root's folders
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	PYTHONWARNINGS="ignore:Editable installation" \
	  $(BIN)/python -m pip install -q -c constraints.txt -e ".[client,server,export,ray,dev]"
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest $(PYTEST_ARGS)

test: lint typecheck pytest

# the documentation site (mkdocs.yml); tests/docs/test_site.py builds it the same way in `make test`
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/mkdocs build --strict

demo: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m percept.demo

bench: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/percept bench

# the GPU smoke kit (tests/gpu): TensorRT builds, engines vs ONNX Runtime, the tensorrt_plan
# repository on a tritonserver with the tensorrt backend; each check skips with its reason elsewhere
gpu-smoke: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" PERCEPT_GPU_RESULTS=gpu-kit-results.json \
	  $(BIN)/python -m pytest tests/gpu -m "gpu or trt" -rs -v -s

reliability: $(STAMP)
	RELIABILITY_OUT=$(CURDIR)/RELIABILITY.md PERCEPT_FUZZ_LONG=1 PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest tests/reliability

soak: $(STAMP)
	PERCEPT_SOAK_10MIN=1 PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest tests/reliability/test_soak.py

clean:
	rm -rf $(VENV) artifacts demo_out site .pytest_cache .mypy_cache .ruff_cache
