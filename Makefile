# Two commands after cloning:  `make book`  (install + build the HTML book)
#                              `make test`  (install + run every test, notebooks included)
# Everything installs into a virtual environment in .venv; PYTHON picks the interpreter for it.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install test book lint strip clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=23"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

# Unit tests (tests/) and every chapter executed by nbval (chapters/), as CI runs them.
test: install
	$(BIN)/python -m pytest --nbval-lax

# The book, every notebook executed; any warning or failing cell fails the build.
book: install
	$(BIN)/jupyter-book build . -W -n --keep-going

lint: install
	$(BIN)/ruff check lib tests benchmarks chapters

# Remove outputs from the notebooks before committing (pre-commit does it too).
strip: install
	$(BIN)/nbstripout chapters/*.ipynb

clean:
	rm -rf _build .pytest_cache
