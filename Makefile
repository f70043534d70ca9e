# Two commands on a fresh clone: `make demo` and `make test`. `make help` lists every target.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
DVC := $(VENV)/bin/dvc
# uv installs the same pinned requirements as pip in well under half the time (56 s vs 2 min 9 s on the 2-core box,
# empty caches); `pip install -r requirements-dev.txt` still works by hand. --compile-bytecode: pip writes the .pyc
# files at install and uv does not; with PYTHONDONTWRITEBYTECODE set (below) every task would compile scikit-learn,
# SciPy and pandas again.
UV := $(VENV)/bin/uv
STAMP := $(VENV)/.installed-$(shell cat requirements.txt requirements-dev.txt pyproject.toml | sha256sum | cut -c1-12)
OUT := out
# The demo's generated production days: five stable ones, then a drifted one.
DEMO_FIRST := 2026-01-01
DEMO_LAST := 2026-01-06
# pytest-xdist workers of `make test`: each test module stays on one worker (tests/conftest.py), so one worker
# runs the flow runs while the other runs unit tests or another module's flows (2 = the 2-core CI box).
TEST_WORKERS ?= 2

# Metaflow needs a user name and refuses "root" (CI runs as root); LightGBM/OpenMP must not spin on 2 busy cores.
export METAFLOW_USER ?= $(or $(filter-out root,$(shell id -un 2>/dev/null)),ci)
export OMP_WAIT_POLICY := PASSIVE
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: help setup data train distill score monitor demo notebooks test test-fast lint bench package deploy clean

help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}'

setup: $(STAMP) ## Create .venv and install the pinned dependencies (once per requirements change)

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet $$(grep -E '^uv==' requirements-dev.txt)
	$(UV) pip install --python $(PY) --quiet --compile-bytecode -r requirements-dev.txt
	$(UV) pip install --python $(PY) --quiet --no-deps --no-build-isolation -e .
	$(PY) -m pip check
	rm -f $(VENV)/.installed-* && touch $@

data: setup ## Generate the sample data under data/ (byte-identical to data.dvc), cache it and push it to the DVC remote
	$(PY) -m steps.data.synth --out data/transactions.parquet
	$(DVC) commit --force --quiet data.dvc
	@git diff --quiet -- data.dvc || { echo "data/ no longer matches data.dvc (generator or pinned pyarrow changed): review and commit data.dvc"; exit 1; }
	$(DVC) status data.dvc
	$(DVC) push --quiet

train: setup ## Run TrainFlow on the default data and config (gates, then registration)
	$(PY) flows/train_flow.py run

demo: data ## The whole lifecycle on the sample data: train, gates, distill, score, monitor drift, alert, retrain, rollback
	$(PY) flows/train_flow.py run
	$(PY) -m steps.registry show
	$(PY) flows/distill_flow.py run
	$(PY) -m steps.ops.scenario --out $(OUT)/scenario --first-day $(DEMO_FIRST) --days 6 --covariate-drift-day $(DEMO_LAST) \
		--concept-drift-day $(DEMO_LAST) --backfill 5 --predictions $(OUT)/predictions
	$(PY) flows/score_flow.py run --input $(OUT)/scenario/incoming/dt=$(DEMO_LAST) --date $(DEMO_LAST)
	$(PY) flows/monitor_flow.py run --date $(DEMO_LAST) --days 6 --labels $(OUT)/scenario/labels \
		--retrain-data $(OUT)/scenario/labelled.parquet
	@run=$$($(PY) -m steps.reporting.report --retrained-run) && \
	if $(PY) -m steps.registry show | grep -q "^champion: *$$run "; then echo "retrained run $$run passed its gates"; \
	else $(PY) -m steps.registry promote $$run --force --reason "demo: a hasty manual promotion of the retrained model"; fi
	$(PY) -m steps.registry rollback --reason "demo: one command undoes it"
	$(PY) -m steps.registry history
	$(PY) -m steps.reporting.report --out $(OUT)

monitor: setup ## Judge today's scored partition for drift and late-label performance; alert; retrain when due
	$(PY) flows/monitor_flow.py run

distill: setup ## Distil the champion into small ONNX students (DistillFlow)
	$(PY) flows/distill_flow.py run

score: setup ## Score data/transactions.parquet with the champion into out/predictions/dt=<today>/ (ScoreFlow)
	$(PY) flows/score_flow.py run

# Extra options of `make notebooks`, e.g. NOTEBOOK_OPTS="--no-browser --port 8890" on a remote box (as root, e.g. in
# a container, --allow-root is added: JupyterLab refuses root otherwise).
NOTEBOOK_OPTS ?=

notebooks: setup ## Open JupyterLab on notebooks/ (kernels find the project's runs and steps/ from there)
	$(VENV)/bin/jupyter lab --notebook-dir=notebooks $(if $(filter 0,$(shell id -u)),--allow-root) $(NOTEBOOK_OPTS)

# compileall first: every Metaflow task, card and CLI call is a fresh process that imports steps/ and the flow;
# where PYTHONDONTWRITEBYTECODE is set (this machine's image) none of them caches the bytecode it compiles.
test: lint ## Lint, then run every test (unit, flows, cloud, notebooks) on TEST_WORKERS xdist workers
	$(PY) -m compileall -q steps flows
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadgroup

lint: setup ## ruff (pyflakes, pycodestyle, isort, pyupgrade, bugbear), import layers (import-linter), mypy
	$(VENV)/bin/ruff check steps flows tests benchmarks
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy

test-fast: setup ## Run the unit tests only
	$(PY) -m pytest tests/unit

bench: setup ## Run the benchmarks and write benchmarks/results/*.md (copied into the README)
	$(PY) -m benchmarks.run

package: setup ## Show what Metaflow ships to remote tasks (steps/ and config/ must be in it)
	$(PY) flows/train_flow.py package list

DEPLOY_PROFILE ?= config/profiles/aws.yaml
DEPLOY_FLOWS ?= $(sort $(wildcard flows/*_flow.py))
DEPLOY_OPTS ?= --production

deploy: setup ## Check the AWS settings, then `step-functions create` every flow with the aws profile
	$(PY) -m steps.ops.deploy check --target step-functions --profile $(DEPLOY_PROFILE)
	@for flow in $(DEPLOY_FLOWS); do \
		echo "step-functions create $$flow"; \
		$(PY) $$flow --config profile $(DEPLOY_PROFILE) $(DEPLOY_OPTS) step-functions create || exit 1; \
	done

clean: ## Remove generated data, runs and outputs (keeps .venv)
	rm -rf data $(OUT) .metaflow .pytest_cache
