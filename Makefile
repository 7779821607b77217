# The README's two commands are `make demo` and `make test`; each installs first when needed.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install demo test test-fast lint perf gpu-check gpu-bundle gpu-rehearsal eval-memory eval-scale test-slurm clean

install: $(STAMP)

$(STAMP): setup.cfg constraints.txt Makefile
	@echo "install 1/3: the virtual environment $(VENV) and pip"
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	@echo "install 2/3: torch and torchvision as constraints.txt pins them (the longest step: minutes, a few GB)"
	$(PY) -m pip install -q -c constraints.txt torch torchvision
	@echo "install 3/3: this suite and its packages (timm, hydra, submitit, wandb, pandas, ...)"
	# compat: the checkout on sys.path, so that Hydra finds the suite's sweeper and launcher (hydra_plugins/)
	# from any folder; setuptools' default editable mode hides namespace packages from Hydra's plugin scan
	$(PY) -m pip install -q -c constraints.txt -e '.[dev,perf]' --config-settings editable_mode=compat
	touch $(STAMP)
	@echo "installed into $(VENV)"

demo: install
	$(PY) -m bench

# the tests in TEST_WORKERS processes (pytest-xdist; 0 = in this process), one math thread each
TEST_WORKERS ?= 2
PYTEST := $(if $(filter 0,$(TEST_WORKERS)),,OMP_NUM_THREADS=1 )$(PY) -m pytest -q -n $(TEST_WORKERS) --ignore=tests/slurm

test: install
	$(PYTEST)

# the fast tier: no `slow` end-to-end training
test-fast: install
	$(PYTEST) -m "not slow"

lint: install
	$(VENV)/bin/ruff check .

# make perf [OFFICIAL=path/to/UniAD checkout] [PERF_ARGS="--batch-size 64 backbone=efficientnet_b4 ..."]
#           [OFFICIAL_DINOMALY=path/to/Dinomaly checkout] [PERF_DINOMALY_ARGS="--precisions fp32 --steps 3"]
# UniAD (docs/results/perf.md), then Dinomaly's decoder at its paper shapes (docs/results/perf_dinomaly.md)
OFFICIAL  ?=
PERF_ARGS ?=
OFFICIAL_DINOMALY  ?=
PERF_DINOMALY_ARGS ?=
perf: install
	$(PY) -m bench.tools.perf $(if $(OFFICIAL),--official $(OFFICIAL)) $(PERF_ARGS)
	$(PY) -m bench.tools.perf_dinomaly $(if $(OFFICIAL_DINOMALY),--official $(OFFICIAL_DINOMALY)) $(PERF_DINOMALY_ARGS)

# make gpu-check [OFFICIAL=path/to/UniAD checkout] [OFFICIAL_DINOMALY=path/to/Dinomaly checkout] [DEVICE=cuda]: the
# prepared GPU check from the venv: perf at the paper shapes beside the official model in fp32, bf16 and bf16 with
# fp32 scores, Dinomaly's decoder step beside the official one (fp32, bf16), a short paper-architecture
# training in each, the gpu-marked tests, the compile tests -> docs/results/perf_gpu.md and perf_gpu.json.
# DEVICE=cpu is its tiny dry run, written under outputs/gpu-check-dry-run.
DEVICE ?= cuda
gpu-check: install
	$(PY) -m bench.tools.gpu_check --device $(DEVICE) $(if $(OFFICIAL),--official $(OFFICIAL)) \
		$(if $(OFFICIAL_DINOMALY),--official-dinomaly $(OFFICIAL_DINOMALY))

# Shipping the check to a lent GPU machine without a registry (ops/gpu/, ops/gpu/README.md).
# make gpu-bundle [OFFICIAL=path/to/UniAD checkout]: what the machine lacks, as wheels in .whl/ (and the
# official checkout in .official/), both git-ignored; prints the one device command.
gpu-bundle: install
	$(PY) -m ops.gpu.bundle $(if $(OFFICIAL),--official $(OFFICIAL))

# The device command rehearsed here: no network, the venv's torch stack without this project, packages
# from .whl only, the bare check on the CPU (CI; under 2 minutes).
gpu-rehearsal: gpu-bundle
	VENV_PY=$(PY) bash ops/gpu/rehearsal.sh

# Peak memory of the streamed evaluation (eval.metrics=all) on random classes: make eval-memory [EVAL_MEMORY_ARGS="--classes 15"]
EVAL_MEMORY_ARGS ?=
eval-memory: install
	$(PY) -m bench.tools.eval_memory $(EVAL_MEMORY_ARGS)

# Time and peak memory of the exact evaluation of one Real-IAD-sized class (7,600 images at 224 px, all seven
# metrics): make eval-scale [EVAL_SCALE_ARGS="--images 760 --device cuda"]
EVAL_SCALE_ARGS ?=
eval-scale: install
	$(PY) -m bench.tools.eval_scale $(EVAL_SCALE_ARGS)

# Real-SLURM tests (root; ~5 min): a throwaway one-node cluster with accounting on loopback
# (tests/slurm/cluster.py installs Debian's slurm/munge/mariadb packages when absent), then the
# `slurm`-marked tests; prints "slurm tests: SKIPPED (reason)" where no cluster can be started.
test-slurm: install
	bash tests/slurm/run.sh

clean:
	rm -rf outputs multirun reports/out .pytest_cache
