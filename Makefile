# slm4offer: `make all` regenerates the headline's figures and tables (opt-in: `make ablations`, `make new-domain`,
# `make size-study`, `make tune`); `make test` runs the whole suite.
# Both create .venv on first use (torch's CPU build first, then the pinned package) and never
# reinstall unless pyproject.toml changes.

PROFILE ?= default
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# The one torch pin lives in pyproject.toml; it is installed alone first so that pip never
# pulls a multi-GB CUDA build to satisfy it.
TORCH_PIN := $(shell grep -o '"torch==[0-9.]*"' pyproject.toml | tr -d '"')
# The rest goes in with uv, which resolves the same versions as pip (checked: equal `pip freeze`)
# in a fraction of the time; it keeps the torch already there, since the pin is satisfied. It
# compiles bytecode as pip does: where PYTHONDONTWRITEBYTECODE is set, every import would otherwise
# compile transformers anew (5 s more a process).
UV_PIN := uv==0.13.9
# Opt-in notebooks have their own targets: with five seeds per model the headline fills `make all`'s
# 90-minute budget, so breadth (ablations, a second domain, model sizes) comes after it.
OPT_IN := notebooks/07_ablations.ipynb notebooks/08_new_domain.ipynb notebooks/10_model_size.ipynb
NOTEBOOKS := $(filter-out $(OPT_IN),$(sort $(wildcard notebooks/[0-9][0-9]_*.ipynb)))
RUN_STAMPS := $(patsubst notebooks/%.ipynb,artifacts/$(PROFILE)/.ran/%,$(NOTEBOOKS))
PACKAGE_SOURCES := $(shell find slm4offer -name '*.py' -o -name '*.yaml')

# A failed recipe leaves no half-made target behind (papermill writes its output on failure).
.DELETE_ON_ERROR:
.PHONY: all ablations new-domain size-study tune tune-size-study test check bench lint venv clean help

help:
	@echo "make all        # create .venv, execute notebooks 01-06 and 09 (PROFILE=$(PROFILE)), write figures/ and results/"
	@echo "make ablations  # after make all: notebook 07, the ablations and the lambda = 1 scorer (opt-in)"
	@echo "make new-domain # after make all: notebook 08, the whole pipeline on the ecommerce domain (opt-in)"
	@echo "make test       # create .venv, unit tests + notebooks under nbval on the smoke profile"
	@echo "make size-study # after make all: notebook 10, the contrastive gain at three model sizes (hours on 2 cores)"
	@echo "make tune       # opt-in, before make all: the learning-rate search of both methods on validation -> results/tuning.*"
	@echo "make tune-size-study # opt-in: the same search at the size study's other widths (before make size-study)"
	@echo "make check      # after make all: compare results/ with the committed ones, number by number, within tolerances"
	@echo "make bench      # training/generation speed on this machine -> results/bench.{md,json}"
	@echo "make lint       # ruff and mypy"
	@echo "make clean      # remove cached artifacts (not .venv)"

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH_PIN)"
	$(BIN)/python -m pip install --quiet "$(UV_PIN)"
	$(BIN)/python -m uv pip install --quiet --compile-bytecode --python $(BIN)/python -e ".[dev]"
	touch $@

all: $(RUN_STAMPS)
ifeq ($(PROFILE),default)
	$(BIN)/slm4offer reproduce  # REPRODUCE.md's numbers: rewritten only if a conclusion changed
endif

# Notebook 07: the ablations (in-batch negatives only, the lambda = 1 model as a scorer), 3 seeds each.
ablations: artifacts/$(PROFILE)/.ran/07_ablations

# Notebook 08: the whole pipeline on the ecommerce domain, the profile's study_seeds (3).
new-domain: artifacts/$(PROFILE)/.ran/08_new_domain

# Notebook 10: SFT and contrastive at half, one and two times the profile's width, study_seeds (3) each.
size-study: artifacts/$(PROFILE)/.ran/10_model_size

# The same grid for SFT and contrastive on a tuning seed, chosen on validation; make all trains the
# choices (results/tuning.json). Opt-in: it trains 9 models at the profile's width.
tune: $(STAMP)
	$(BIN)/slm4offer tune --profile $(PROFILE) --write-results

tune-size-study: $(STAMP)
	$(BIN)/slm4offer tune --profile $(PROFILE) --write-results --no-equal-compute \
		--widths $$($(BIN)/python -c "from slm4offer.config import load_config; d = load_config('$(PROFILE)').d_model; print(f'{d // 2},{2 * d}')")

# Compares results/ with the committed results (read from git HEAD) and fails on a number outside
# its stated tolerance or a changed conclusion. New reference results: slm4offer reproduce --write
check: $(STAMP)
	$(BIN)/slm4offer check

# Each notebook is executed with the profile as a papermill parameter (recorded in it). The default
# profile's run replaces the notebook in place (outputs are committed for readers); any other
# profile's executed notebook goes beside its figures, figures/<profile>/notebooks/, and the
# committed notebooks stay as they are. The stamp, written after it, records the run, so an
# unchanged notebook and package are not run again. Its wall time goes into results/manifest.json.
EXECUTED = $(if $(filter default,$(PROFILE)),notebooks,figures/$(PROFILE)/notebooks)
# A cell that runs this long is taken to hang. One cell of an opt-in notebook trains all its models
# (the ablations: 12, most of them contrastive, several minutes each on 2 cores), so the guard is hours.
CELL_TIMEOUT ?= 21600

artifacts/$(PROFILE)/.ran/%: notebooks/%.ipynb $(PACKAGE_SOURCES) $(STAMP)
	@mkdir -p $(@D) $(EXECUTED)
	@date +%s > $@.start
	SLM4OFFER_PROFILE=$(PROFILE) $(BIN)/papermill --cwd notebooks -k python3 --log-level WARNING \
		-p profile $(PROFILE) --execution-timeout $(CELL_TIMEOUT) $< notebooks/.$*.$(PROFILE).tmp.ipynb
	mv notebooks/.$*.$(PROFILE).tmp.ipynb $(EXECUTED)/$*.ipynb
	$(BIN)/slm4offer mark-parameters $(EXECUTED)/$*.ipynb  # the recorded profile: kept, skipped by nbval
	SLM4OFFER_PROFILE=$(PROFILE) $(BIN)/slm4offer record-stage $* $$(( $$(date +%s) - $$(cat $@.start) ))
	touch $@

# Tests run in parallel, one torch thread per worker, the unit tests and the notebooks (under nbval,
# on the smoke profile) in one session so that the two workers stay busy to the end. A notebook's
# cells share one kernel, so each notebook goes to one worker whole (loadscope), as does each test
# module; the slowest go first (tests/conftest.py). One thread each, because two workers
# of two threads on two cores are far slower than either alone.
TEST_WORKERS ?= auto
PYTEST_PARALLEL := -n $(TEST_WORKERS) --maxprocesses 4
test: $(STAMP)
	SLM4OFFER_PROFILE=smoke OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q $(PYTEST_PARALLEL) \
		--dist loadscope --no-loadscope-reorder --nbval-lax --nbval-current-env -p no:cacheprovider tests notebooks

# Performance lives here, not in tests: every number in results/bench.* is measured in one run.
bench: $(STAMP)
	SLM4OFFER_PROFILE=$(PROFILE) $(BIN)/python benchmarks/bench_training.py

lint: $(STAMP)
	$(BIN)/ruff check slm4offer tests benchmarks notebooks
	$(BIN)/mypy

clean:
	rm -rf artifacts
