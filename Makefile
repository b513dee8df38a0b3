# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The IaC tools (SAM CLI, checkov) live in their own venv: aws-sam-cli pins boto3/click apart.
IAC := $(VENV)/iac
IAC_STAMP := $(IAC)/.installed
# Python 3.12, the functions' runtime: the SAM venv runs on it, and `sam build` needs it on PATH.
PY312 ?= $(firstword $(wildcard $(HOME)/.pyenv/versions/3.12*/bin/python3.12) \
	$(shell command -v python3.12 2>/dev/null))

.PHONY: demo test lint install iac-tools clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first, pinned: on this machine kind it is a local CPU wheel (no CUDA download).
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

$(IAC_STAMP): infra/iac-tools.txt | $(STAMP)
	$(or $(PY312),$(PY)) -m venv $(IAC)
	$(IAC)/bin/pip install -q --upgrade pip
	$(IAC)/bin/pip install -q -r infra/iac-tools.txt
	touch $(IAC_STAMP)

iac-tools: $(IAC_STAMP)

demo: $(STAMP)
	$(BIN)/mbs demo

test: $(STAMP) $(IAC_STAMP)
	$(BIN)/ruff check .
	MBS_REQUIRE_IAC_TOOLS=1 $(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) .pytest_cache
