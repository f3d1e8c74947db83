# Every target creates .venv on first use; nothing here needs a step done by hand.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The study's environment (offline hubs, numba/matplotlib caches under data/cache/, no tokenizer
# threads) has one owner, xmr_utils/app/env.py: each command below starts through it
# (`$(PY) -m xmr_utils.app.env` alone prints the values).
XMR_ENV := $(PY) -m xmr_utils.app.env

.PHONY: demo test lab browse bench bench-quick bench-quality bench-cluster bench-collapse bench-preset venv clean-venv

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev,cluster,clip,faiss]"
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

demo: $(STAMP)
	$(XMR_ENV) $(PY) -m xmr_utils.pipeline --preset demo

# The static checks first (seconds once mypy's cache is warm), then the tests and the package's
# doctests (pyproject.toml: testpaths, --doctest-modules).
test: $(STAMP)
	$(PY) -m mypy xmr_utils
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(XMR_ENV) $(PY) -m pytest -q

# JupyterLab at the project root (notebooks/, outputs/runs/<id>/figures and executed/ in reach);
# configs/jupyter_lab_config.py says why each setting is there (root user, kernel transport, ...).
lab: $(STAMP)
	$(XMR_ENV) $(VENV)/bin/jupyter lab --config=configs/jupyter_lab_config.py

# The query browser of notebook 06 alone, as a web page (Voilà), on the LATEST run.
browse: $(STAMP)
	$(XMR_ENV) $(VENV)/bin/voila notebooks/06_query_browser.ipynb --Voila.config_file_paths=configs

bench: $(STAMP)
	$(XMR_ENV) $(PY) -m benchmarks.run

bench-quick: $(STAMP)
	$(XMR_ENV) $(PY) -m benchmarks.run --quick

# The demo grid on a 2-worker Dask LocalCluster vs. in turn; scheduler overhead; Flickr30k estimate
# (19 min here; its own block in RESULTS.md, which `make bench` keeps).
bench-cluster: $(STAMP)
	$(XMR_ENV) $(PY) -m benchmarks.bench_cluster

# The `flickr8k` preset end to end on real Flickr8k (features cached: 16 min here), into its block.
bench-preset: $(STAMP)
	$(XMR_ENV) $(PY) -m benchmarks.bench_preset

# Real Flickr8k (../shared/datasets/flickr8k or data/flickr8k): every recipe, val split.
bench-quality: $(STAMP)
	$(XMR_ENV) $(PY) -m benchmarks.bench_quality

# Why the seed collapsed (issue 11): the factor ladder of configs/collapse-ladder.yaml on real
# Flickr8k (study features, both directions, 3 seeds, 6-epoch schedule); run a part of it with
# python -m benchmarks.bench_collapse --cells ... --seeds ... (see --help).
bench-collapse: $(STAMP)
	$(XMR_ENV) $(PY) -m benchmarks.bench_collapse --out benchmarks/RESULTS.md

clean-venv:
	rm -rf $(VENV)
