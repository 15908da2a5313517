# Two entry points (see README): `make run` (set up + the main job, a study) and `make test` (set up + lint + tests).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
CONFIG ?= configs/default.yaml
SPACE  ?= search_spaces/ratio.yaml

.PHONY: setup run train lint test bench bench-quick clean

setup: $(VENV)/.installed

# Reinstall when pyproject.toml changes. torch/torchvision are pinned there.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[study,test,analysis]'
	touch $@

# the main job: a hyperparameter study (Ray Tune + Optuna) on the embedded synthetic data
run: setup
	$(PY) -m study.run $(SPACE)

# one training run, no Ray
train: setup
	$(PY) -m splicemix.train --config $(CONFIG)

# ruff (rules and format) and mypy (strict for the core modules), configured in pyproject.toml
lint: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

test: setup lint
	$(PY) -m pytest -q

# speed measurements: one table, written to benchmarks/results/results.{json,csv}
bench: setup
	$(PY) -m benchmarks

bench-quick: setup
	$(PY) -m benchmarks --quick --out /tmp/splicemix-bench-quick

clean:
	rm -rf $(VENV) runs data/synthetic*
