# The two commands the README opens with:
#   make lab   set up, then open the workbook (JupyterLab on 127.0.0.1)
#   make test  set up, then run every test (CI runs this through .ci/run)
# Everything lives in .venv; system packages (Debian's chromium, for the
# browser test) come from scripts/setup-system.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 8888

.PHONY: lab run test test-slow bench setup setup-system clean

$(BIN)/racelab: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

setup: $(BIN)/racelab

setup-system:
	bash scripts/setup-system

# The default experiment, headless: ten trials of the 2018 transport on
# the emulated proactor, then the same on the fixed one.
run: setup
	$(BIN)/racelab run --loop emulated-proactor-2018 --trials 10
	$(BIN)/racelab run --loop emulated-proactor --trials 10

lab: setup
	$(BIN)/racelab lab --port $(PORT)

test: setup setup-system
	$(BIN)/python -m pytest -m 'not slow' -q

test-slow: setup
	$(BIN)/python -m pytest -m slow -q

bench: setup
	$(BIN)/racelab bench

clean:
	rm -rf $(VENV) build *.egg-info
