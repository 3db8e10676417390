# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed

.PHONY: demo test install lint bench clean services soak fuzz

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q -U pip
	$(BIN)/pip install -q -e '.[test]'
	# editable installs compile nothing, and PYTHONDONTWRITEBYTECODE may forbid caching later:
	# compile once so every `git exp` starts from bytecode
	$(BIN)/python -m compileall -q src
	touch $(STAMP)

install: $(STAMP)

services:
	bash scripts/install-services.sh

demo: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" bash examples/demo.sh

test: $(STAMP) services
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/pytest -n 2 --dist loadgroup -q

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy

# Long randomized runs, outside `make test`. Fault soak: GITEXP_SOAK_N rounds (seed printed;
# GITEXP_SOAK_SEED replays one). Log soak: 1 GB of job output through the agent, RSS bounded.
soak: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/pytest -q -s tests/faults.py
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python benchmarks/soak_log.py --size 1G --bound-mb 150

# Coverage-guided fuzzing of the record and --where parsers (atheris, not a test dependency).
FUZZ_SECONDS ?= 60
fuzz: $(STAMP)
	$(BIN)/pip install -q atheris
	$(BIN)/python tests/fuzz_atheris.py -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=2048

bench: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" bash benchmarks/run-all.sh

clean:
	rm -rf $(VENV) demo dist build
