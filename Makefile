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

# What the demo and the dashboard need: torch (the CPU build, first) and the `train` extra.
$(VENV)/.installed-demo: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e ".[train]"
	touch $@

# Everything the tests need, on top of the demo's environment.
$(VENV)/.installed: $(VENV)/.installed-demo pyproject.toml
	$(PY) -m pip install --quiet -e ".[train,dist,dev]"
	# DeepSpeed compiles its CPU communication op on first use (about a minute); once, into the venv.
	DS_ACCELERATOR=cpu TORCH_EXTENSIONS_DIR=$(abspath $(VENV))/torch_extensions $(PY) -c \
		"from deepspeed.ops.op_builder.cpu import ShareMemCommBuilder; ShareMemCommBuilder().load()"
	touch $@

chromium:
	@command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null)

demo: demo-setup
	$(PY) -m predictions demo --dashboard --port $(PORT) $(DEMO_ARGS)

dashboard: demo-setup
	$(VENV)/bin/streamlit run app.py --server.port $(PORT)

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
