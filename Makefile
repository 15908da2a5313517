# Two entry points (see README): `make run` (set up + main job) and `make test` (set up + tests).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
CONFIG ?= configs/default.yaml

.PHONY: setup run test clean

setup: $(VENV)/.installed

# Reinstall when pyproject.toml changes. torch/torchvision are pinned there.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

run: setup
	$(PY) -m splicemix.train --config $(CONFIG)

test: setup
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) runs data/synthetic*
