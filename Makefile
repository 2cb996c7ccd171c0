# Feedhouse: `make dev` runs the product on embedded defaults, `make test` runs every test.
# Both create .venv and install what they need (PyPI only) on first use; `make test` also installs
# Debian's chromium for the browser tests when it is missing (apt-get; we run as root).

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install dev test unit integration lint bench clean chromium screenshots

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# The browser tests drive Debian's chromium through Playwright (never `playwright install`,
# which downloads a browser build of its own).
CHROMIUM ?= /usr/bin/chromium
chromium: $(CHROMIUM)
$(CHROMIUM):
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-dejavu-core >/dev/null

dev: $(STAMP)
	$(BIN)/feedhouse dev

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest tests/unit -q

integration: $(STAMP) chromium
	$(BIN)/pytest tests/integration -q

test: lint chromium
	$(BIN)/pytest -q

# The app's screenshots in docs/img (README), made by the browser tests themselves.
screenshots: $(STAMP) chromium
	FEEDHOUSE_SCREENSHOTS=docs/img $(BIN)/pytest tests/integration/test_app_browser.py \
		tests/integration/test_app_audiences.py tests/integration/test_app_status.py -q

bench: $(STAMP)
	$(BIN)/python -m bench --update-docs

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
