# The two entry points of a fresh machine: `make demo` (the main job) and
# `make test` (what CI runs). Each creates the virtual environment on first use.
PYTHON ?= python3
VENV ?= .venv
# Pins the CPU torch wheel of the dev/CI machine, for uv and pip alike; `make CONSTRAINTS= ...`
# to let the installer choose (e.g. a CUDA build on a GPU box).
CONSTRAINTS ?= constraints.txt
# auto: uv when it is on the PATH or can be had with `pip install --user uv` (seconds), else pip;
# `make INSTALLER=pip ...` forces pip, INSTALLER=uv refuses to fall back. scripts/setup_venv.
INSTALLER ?= auto
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint format bench clean

# A change of pyproject.toml or constraints.txt reinstalls (in place); the stamp names the
# installer that ran.
$(STAMP): pyproject.toml $(CONSTRAINTS)
	$(PYTHON) -m scripts.setup_venv --venv $(VENV) --installer '$(INSTALLER)' \
		$(if $(CONSTRAINTS),--constraints $(CONSTRAINTS)) --stamp $@ -- -e '.[dev]'

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
