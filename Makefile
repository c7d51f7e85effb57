# The two commands a new user needs: `make demo` (set up, train a tiny model, open the dashboard)
# and `make test` (set up, run every test). Both create the virtual environment on first use: the demo
# installs only torch and the `train` extra; the tests add DeepSpeed, the dev tools and the Supabase CLI.
VENV ?= .venv
PY := $(VENV)/bin/python
PORT ?= 8501
DEMO_ARGS ?=

.PHONY: setup demo-setup chromium demo dashboard test lint bench screenshots clean

SUPABASE_CLI := devtools/node_modules/.bin/supabase

setup: $(VENV)/.installed $(SUPABASE_CLI)
demo-setup: $(VENV)/.installed-demo

# The official Supabase CLI, pinned in devtools/package-lock.json: the tests apply and check the
# migrations with it (tests/test_supabase_cli.py). Needs node 20 and npm.
$(SUPABASE_CLI): devtools/package.json devtools/package-lock.json
	npm ci --prefix devtools --no-audit --no-fund
	touch $@

# What the demo and the dashboard need: torch and the `train` extra, in one pip run (one resolution; the
# pin makes 2.13.0 the torch it installs). Not byte-compiled (--no-compile): compiling all 13,000 files took
# 60 s of CPU, the demo's first start compiles the 3,500 it loads in 15 s. A pip older than 25 is upgraded
# first (Python 3.11's 23.2 spent twice the CPU reading the index). The .installing mark stays when an
# install is cut short (Ctrl-C): the next run then starts from a fresh venv, because pip may count a
# half-unpacked package as installed; the stamp is made only once everything is in.
$(VENV)/.installed-demo: pyproject.toml
	if [ -e $(VENV)/.installing ] || ! $(PY) -m pip --version >/dev/null 2>&1; then \
		python3 -m venv --clear $(VENV); fi
	touch $(VENV)/.installing
	$(PY) -c "import pip, sys; sys.exit(int(pip.__version__.split('.')[0]) < 25)" || \
		$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --no-compile torch==2.13.0 -e ".[train]"
	rm $(VENV)/.installing
	touch $@

# Everything the tests need, on top of the demo's environment (made afresh if an install was cut short).
$(VENV)/.installed: $(VENV)/.installed-demo pyproject.toml
	if [ -e $(VENV)/.installing ]; then rm -f $(VENV)/.installed-demo && $(MAKE) $(VENV)/.installed-demo; fi
	touch $(VENV)/.installing
	$(PY) -m pip install --quiet -e ".[train,dist,dev]"
	# The tests start many Python processes: compile what the demo's install left as source, on every
	# core (like pip, skipping the few files not meant for this Python, e.g. torch's py312 test helpers).
	$(PY) -m compileall -qq -j 0 $(VENV)/lib || true
	# DeepSpeed compiles its CPU communication op on first use (about a minute); once, into the venv.
	DS_ACCELERATOR=cpu TORCH_EXTENSIONS_DIR=$(abspath $(VENV))/torch_extensions $(PY) -c \
		"from deepspeed.ops.op_builder.cpu import ShareMemCommBuilder; ShareMemCommBuilder().load()"
	rm $(VENV)/.installing
	touch $@

chromium:
	@command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null)

# PYTHONDONTWRITEBYTECODE emptied for the venv this Makefile owns: where it is set (many images), every
# start compiled the 3,500 modules the demo loads again (15 s of CPU); they are cached after the first.
demo: demo-setup
	PYTHONDONTWRITEBYTECODE= $(PY) -m predictions demo --dashboard --port $(PORT) $(DEMO_ARGS)

# The dashboard over this folder's store, as `predictions dashboard` serves it in any folder.
dashboard: demo-setup
	PYTHONDONTWRITEBYTECODE= $(PY) -m predictions dashboard --port $(PORT)

test: setup chromium
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports
	$(PY) -m pytest

lint: setup
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: setup
	$(PY) bench/run_all.py

# The README's screenshots, every page in Chromium, from the store `make demo` wrote (run it first).
screenshots: setup chromium
	$(PY) -m devtools.screenshots

clean:
	rm -rf $(VENV) .predictions .pytest_cache devtools/node_modules
