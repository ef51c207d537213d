# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
export OMP_WAIT_POLICY := PASSIVE
export FLWR_TELEMETRY_ENABLED := 0
export RAY_USAGE_STATS_ENABLED := 0

DEMO_RUN := runs/demo

.PHONY: setup demo test test-all bench demo-data clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# the CPU wheel first: an unpinned torch (asked for by another package) pulls a multi-GB CUDA build
	$(PY) -m pip install --quiet "torch==2.13.0"
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(VENV)/bin/fedsynth simulate --hospitals 3 --epsilon 10 --partition iid --data demo \
		--image-size 32 --out $(DEMO_RUN) --overwrite
	$(VENV)/bin/fedsynth generate --run $(DEMO_RUN) --n 60 --out $(DEMO_RUN)/samples
	@echo
	@echo "Outputs:"
	@echo "  run directory     $(DEMO_RUN)/  (config.json, rounds.jsonl, checkpoints/, ledger/)"
	@echo "  sample grids      $(DEMO_RUN)/grids/  (one per round, fixed latents; rows = classes)"
	@echo "  generated images  $(DEMO_RUN)/samples/  (PNGs + manifest.json)"

test: setup
	$(PY) -m pytest -q

test-all: setup
	$(PY) -m pytest -q -m ""

bench: setup
	$(PY) benchmarks/bench_nn_ssim.py

# Rebuild the bundled demo data set from Debian packages (needs root for apt-get).
demo-data: setup
	apt-get update && apt-get install -y invesalius-examples mricron-data
	$(PY) -m pip install --quiet -e ".[build-demo]"
	$(VENV)/bin/fedsynth data build-demo --force

clean:
	rm -rf $(VENV) runs .pytest_cache
