# Two entry points: `make demo` (SynthRef benchmark + leaderboard) and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
REFBENCH := $(VENV)/bin/refbench

.PHONY: setup demo live-demo test docs docs-serve clean-data

setup: $(VENV)/.installed

# torch/torchvision unpinned: pip takes the build this machine offers (CUDA or CPU).
$(VENV)/.installed: pyproject.toml $(wildcard plugins/*/pyproject.toml)
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch torchvision
	$(PY) -m pip install --quiet -e '.[test,docs]' -e plugins/clip_shaded -e plugins/visual_prompts -e 'plugins/live_models[test]'
	touch $@

demo: setup
	$(REFBENCH) synth data/synthref
	$(REFBENCH) run benchmarks/synthref_testA.yaml
	$(REFBENCH) run benchmarks/synthref+_testA.yaml
	$(REFBENCH) leaderboard --benchmark synthref/unc --latest
	$(REFBENCH) leaderboard --benchmark synthref+/unc --latest

# tiny random models of every live family (built once into data/tiny), run on SynthRef testA
live-demo: setup
	test -f data/synthref/synthref/instances.json || $(REFBENCH) synth data/synthref
	$(PY) -m live_models.tiny data/tiny
	$(REFBENCH) run benchmarks/synthref_live.yaml

test: setup
	$(PY) -m pytest -q

# the documentation site, strict (a broken link or an undocumented public name fails), in build/site
docs: setup
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

docs-serve: setup
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs serve

clean-data:
	rm -rf data/synthref
