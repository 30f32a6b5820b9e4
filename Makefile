# One command each: `make demo` and `make test` set up .venv (torch first) and run.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.qtoolkit-installed

.PHONY: setup demo test test-all lint

$(STAMP): pyproject.toml scripts/setup.sh
	VENV=$(VENV) bash scripts/setup.sh
	touch $(STAMP)

setup: $(STAMP)

# The main job on real data: fine-tune MiniLM briefly, PTQ sweep chosen on dev, export, benchmark.
demo: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) scripts/demo.py

# One worker per core, one PyTorch thread per worker (tests/conftest.py). Each test file stays on
# one worker (--dist loadfile) and files go out in collection order (--no-loadscope-reorder):
# tests/conftest.py puts the file that fine-tunes the shared MiniLM first and the other files
# that need it last. `pytest -q` alone runs the same tests in one process.
test: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q -n auto --dist loadfile --no-loadscope-reorder

lint: $(STAMP)
	$(VENV)/bin/ruff check qtoolkit tests scripts
	$(VENV)/bin/ruff format --check qtoolkit tests scripts
