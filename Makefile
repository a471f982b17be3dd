# Set-up is two commands: `make demo` (whole pipeline on the French sample, offline) and
# `make test`. Both create .venv and install what they need on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# fairseq itself, only for the parity test against real fairseq (tests/models/test_fairseq_parity.py):
# fairseq-fixed imports on current Python; it compiles for a few minutes on first use.
FAIRSEQ_VENV := .venv-fairseq
FAIRSEQ_STAMP := $(FAIRSEQ_VENV)/.installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install test demo lint clean

$(STAMP): setup.py constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[test,bench]"
	touch $(STAMP)

$(FAIRSEQ_STAMP): constraints.txt
	test -x $(FAIRSEQ_VENV)/bin/python || $(PYTHON) -m venv $(FAIRSEQ_VENV)
	grep '^torch==' constraints.txt > $(FAIRSEQ_VENV)/constraints.txt
	PIP_CONSTRAINT=$(CURDIR)/$(FAIRSEQ_VENV)/constraints.txt $(FAIRSEQ_VENV)/bin/python -m pip \
		install -q fairseq-fixed==0.12.3.1 sentencepiece
	touch $(FAIRSEQ_STAMP)

install: $(STAMP)

test: $(STAMP) $(FAIRSEQ_STAMP)
	$(BIN)/python -m pytest

demo: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" PYTHONPATH="$(CURDIR)" bash examples/demo.sh

lint: $(STAMP)
	$(BIN)/ruff check . --exclude $(VENV)

clean:
	rm -rf demo_out .pytest_cache
