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

# One worker per core, one PyTorch thread per worker (tests/conftest.py); the tests that share a
# fine-tuned model stay on one worker (--dist loadgroup). `pytest -q` alone runs them serially.
test: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q -n auto --dist loadgroup

lint: $(STAMP)
	$(VENV)/bin/ruff check qtoolkit tests scripts
	$(VENV)/bin/ruff format --check qtoolkit tests scripts
