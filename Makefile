# The README's two commands: `make serve` and `make test`. Both create .venv and install first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
REPOSITORY := examples/model_repository
TRITON_REF ?= /tmp/triton-ref
SHARED ?= ../shared
HTTP_PORT ?= 8000

.PHONY: install compile examples serve test check lint bench reference clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[onnxruntime,dev]'
	touch $(STAMP)

install: $(STAMP)

# The request path's modules as C extensions (src/airtower/compiled.py); quick when up to date.
COMPILE = $(PY) -c 'import sys, airtower.compiled as c; sys.exit(c.main(sys.argv[1:]))'

compile: $(STAMP)
	$(COMPILE)

examples: $(STAMP)
	$(PY) examples/generate_models.py --repository $(REPOSITORY)

serve: examples compile
	$(VENV)/bin/airtower serve --model-repository $(REPOSITORY) --http-port $(HTTP_PORT)

# perf_analyzer and the reference Triton, used by the perf_analyzer test and `make bench`.
reference:
	@if [ ! -x $(TRITON_REF)/bin/perf_analyzer ]; then bash $(SHARED)/reference/setup.sh $(TRITON_REF); fi

check: $(STAMP)
	$(VENV)/bin/ruff format --check src tests bench examples/generate_models.py
	$(VENV)/bin/ruff check src tests bench examples/generate_models.py
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

lint: $(STAMP)
	$(VENV)/bin/ruff format src tests bench examples/generate_models.py
	$(VENV)/bin/ruff check --fix src tests bench examples/generate_models.py

test: examples reference check
	$(COMPILE) --strict
	AIRTOWER_EXPECT_COMPILED=1 TRITON_REF=$(TRITON_REF) $(PY) -m pytest -q

bench: examples reference compile
	TRITON_REF=$(TRITON_REF) $(PY) bench/run.py
	TRITON_REF=$(TRITON_REF) $(PY) bench/run.py --protocol grpc --models add_sub
	TRITON_REF=$(TRITON_REF) $(PY) bench/batching.py
	$(PY) -m pip install -q -e '.[bench]'
	$(PY) bench/plot.py
	TRITON_REF=$(TRITON_REF) $(PY) bench/ensemble.py
	TRITON_REF=$(TRITON_REF) $(PY) bench/streaming.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache src/build
	find src -name '*.so' -delete
