# The two entry points of a fresh machine: `make demo` (the main job) and
# `make test` (what CI runs). Each creates the virtual environment on first use.
PYTHON ?= python3
VENV ?= .venv
# Pins the CPU torch wheel of the dev/CI machine; `make CONSTRAINTS= ...` to let
# pip choose (e.g. a CUDA build on a GPU box).
CONSTRAINTS ?= constraints.txt
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint format bench clean

$(STAMP): pyproject.toml $(CONSTRAINTS)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(if $(CONSTRAINTS),-c $(CONSTRAINTS)) -e '.[dev]'
	touch $@

demo: $(STAMP)
	$(BIN)/tucker-sweep launch configs/digits.yaml --name digits-$$(date +%Y%m%d-%H%M%S)

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports  # the layering contracts of pyproject.toml
	$(BIN)/deptry .  # the packages import only what pyproject.toml declares
	$(BIN)/deptry tests benchmarks scripts examples --ignore DEP002,DEP004 --exclude '^$$' --extend-exclude '^$$'  # they may use the dev extra
	sh scripts/ensure-chromium.sh  # headless Chromium for the HTML report test (apt, if root)
	# Two processes, whole files each (module fixtures are built once): most of the suite's time
	# is real processes starting and waiting (CLIs, Ray, MLflow servers, paced epochs), which the
	# second process overlaps on two cores. tests/conftest.py starts the longest files first.
	$(BIN)/pytest --numprocesses 2 --dist loadfile

lint: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: $(STAMP)
	$(BIN)/python benchmarks/layer_speed.py
	$(BIN)/python benchmarks/sweep_efficiency.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
