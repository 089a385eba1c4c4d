# Guest-kernel migration harness.
#   make test        fast offline test suite (own virtualenv)
#   make test-guest  build, boot and check real kernels (see README.md)

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: test venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

test: $(STAMP)
	$(BIN)/pytest -q tests

clean:
	rm -rf $(VENV) build *.egg-info
