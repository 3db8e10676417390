# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PY      ?= python3
VENV    := .venv
BIN     := $(abspath $(VENV))/bin
STAMP   := $(VENV)/.installed
# The demo needs only DVC, plots and the web view (ui), not the test tools: its own stamp in the same venv
# (`make test` later adds the rest; after `make test` the demo finds it all there).
DEMO_STAMP := $(VENV)/.installed-demo
DEMO_EXTRAS := dvc,plots,ui

.PHONY: demo test install lint bench clean services soak fuzz mutate

$(BIN)/python:
	@echo "== creating $(VENV)"
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q -U pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[test]'
	# editable installs compile nothing, and PYTHONDONTWRITEBYTECODE may forbid caching later:
	# compile once so every `git exp` starts from bytecode
	$(BIN)/python -m compileall -q src
	touch $(STAMP)

$(DEMO_STAMP): pyproject.toml | $(BIN)/python
	@if [ -f $(STAMP) ] && [ $(STAMP) -nt pyproject.toml ]; then \
		echo "== $(VENV) already has everything (make test installed it)"; \
	else \
		echo "== installing gitexp with the extras the demo uses ($(DEMO_EXTRAS)) into $(VENV)"; \
		$(BIN)/pip install --progress-bar on -e '.[$(DEMO_EXTRAS)]' && \
		$(BIN)/python -m compileall -q src; \
	fi
	touch $(DEMO_STAMP)

install: $(STAMP)

services:
	bash scripts/install-services.sh

demo: $(DEMO_STAMP)
	PATH="$(BIN):$$PATH" bash examples/demo.sh

test: $(STAMP) services
	PATH="$(BIN):$$PATH" $(BIN)/pytest -n 2 --dist loadgroup -q --durations=25

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy

# Long randomized runs, outside `make test`. Fault soak: GITEXP_SOAK_N rounds (seed printed;
# GITEXP_SOAK_SEED replays one). Log soak: 1 GB of job output through the agent, RSS bounded.
soak: $(STAMP)
	PATH="$(BIN):$$PATH" $(BIN)/pytest -q -s tests/faults.py
	PATH="$(BIN):$$PATH" $(BIN)/python benchmarks/soak_log.py --size 1G --bound-mb 150

# Coverage-guided fuzzing of the record and --where parsers (atheris, not a test dependency).
FUZZ_SECONDS ?= 60
fuzz: $(STAMP)
	$(BIN)/pip install -q atheris
	$(BIN)/python tests/fuzz_atheris.py -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=2048

# Mutation testing of the core modules with mutmut 3 (outside `make test`; not run by CI).
# What is mutated and which tests run: [tool.mutmut] in pyproject.toml; the run state is
# model/runstate.py and, of service/runs.py, find, observe and liveness (not logs, cancel).
# Most tests reach gitexp through `git exp` children: PYTHONPATH makes them run the mutants too, and report what they
# covered (scripts/mutmut/). A fresh run each time. Slow: ~3,600 mutants at ~12 a minute on
# 2 idle cores, after ~25 minutes of stats and clean runs; one module at a time with e.g.
# `make mutate MUTATE_NAMES="'gitexp.service.gc.*'"`.
MUTATE_CHILDREN  ?= 2
MUTATE_MAX_TESTS ?= 4
MUTATE_RUNS := $(foreach f,read_run _read_all list_runs _observe_all find store_of _observable \
	_backend_of observe _live_result _launch_lost,\
	'gitexp.service.runs.x_$(f)__mutmut_*')
MUTATE_NAMES ?= $(foreach m,git.snapshot model.record model.checks model.ids model.runstate \
	model.liveness service.where \
	service.rerun service.gc service.index service.diff secrets worker.workspace,\
	'gitexp.$(m).*') $(MUTATE_RUNS)
# MUTATE_SAMPLE=N checks a seeded random sample of N of them (the score then gives the
# interval for all): its names come from a first pass that only makes the mutants (a
# minute), then the sample runs alone: about an hour for 300 on 2 cores instead of many.
MUTATE_SAMPLE ?=
MUTATE_SEED   ?= 12
MUTMUT := PATH="$(BIN):$$PATH" PYTHONPATH="$(CURDIR)/mutants/src:$(CURDIR)/scripts/mutmut" \
	GITEXP_MUTATE_MAX_TESTS=$(MUTATE_MAX_TESTS) FUZZ_EXAMPLES=60 SNAPSHOT_EXAMPLES=25 \
	$(BIN)/mutmut run --max-children $(MUTATE_CHILDREN)
mutate: $(STAMP)
	$(BIN)/pip install -q 'mutmut>=3.8,<4'
	rm -rf mutants && mkdir -p mutants/src  # on PYTHONPATH: it must exist as Python starts
ifeq ($(MUTATE_SAMPLE),)
	$(MUTMUT) $(MUTATE_NAMES) > mutants.log
else
	$(BIN)/python scripts/mutmut/generate.py \
		$(MUTATE_CHILDREN) > mutants.log  # only the mutants, for their names: no stats
	names=$$($(BIN)/python scripts/mutmut/sample.py $(MUTATE_SAMPLE) $(MUTATE_SEED) \
		$(MUTATE_NAMES)) && rm -rf mutants && mkdir -p mutants/src && \
		$(MUTMUT) $$names >> mutants.log  # one run: stats and checks of the sample
endif
	$(BIN)/python scripts/mutation_score.py

bench: $(STAMP)
	PATH="$(BIN):$$PATH" bash benchmarks/run-all.sh

clean:
	rm -rf $(VENV) demo dist build mutants
