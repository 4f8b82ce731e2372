# Two commands after cloning:  `make book`  (install + build the HTML book)
#                              `make test`  (install + run every test, notebooks included)
# Everything installs into a virtual environment in .venv; PYTHON picks the interpreter for it.
# The book as readers get it: `make browser` (after `make book`; needs Chromium) and `make pdf` (needs TeX Live);
# `.ci/run` installs both from Debian's packages.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# The notebooks' outputs are kept in _build/.jupyter_cache: `make test` fills it (nbval executes every
# chapter), `make book` and `make pdf` reuse it. Before a build, cached notebooks whose inputs (lib/, data
# files, packages) changed are dropped and executed again; see tests/book_cache.py.
CACHE  := $(BIN)/python -m tests.book_cache
PDF    := _build/latex/imagenet-and-ai.pdf

.PHONY: install test book browser pdf linkcheck student lint strip clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=23"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

# Unit tests (tests/) and every chapter executed by nbval (chapters/), as CI runs them. Each notebook that
# passes is stored with its outputs for the book build. The browser and PDF tests are left out here.
test: install
	$(BIN)/python -m pytest --nbval-lax -p tests.book_cache

# The book, every notebook executed (or taken from `make test`'s run); any warning or failing cell fails it.
book: install
	$(CACHE) prune
	$(BIN)/jupyter-book build . -W -n --keep-going
	$(CACHE) stamp

# Every page of the built book in headless Chromium: console errors, images, links, launch buttons,
# solutions, glossary links, maths, search, accessibility (axe-core); screenshots in _build/screenshots/.
browser: install
	$(BIN)/python -m pytest -m browser tests/browser

# The whole book as one PDF through LaTeX (xelatex), from the same executed notebooks as the HTML book;
# copied beside the HTML book (the front page links to it) and checked to hold every chapter.
pdf: install
	$(CACHE) prune
	$(BIN)/jupyter-book build . --builder pdflatex -W -n --keep-going
	$(CACHE) stamp
	test -f $(PDF)
	if [ -d _build/html ]; then cp $(PDF) _build/html/; fi
	$(BIN)/python -m pytest -m pdf tests/browser

# Every link to the outside world, checked over the internet (for maintainers; CI has no internet).
# Report: _build/linkcheck/output.txt
linkcheck: install
	$(BIN)/jupyter-book build . --builder custom --custom-builder linkcheck -n --keep-going

# The student edition: every chapter without its exercises' solutions, checked, in student/.
student: install
	$(BIN)/python -m lib.student student

lint: install
	$(BIN)/ruff check lib tests benchmarks chapters

# Remove outputs from the notebooks before committing (pre-commit does it too).
strip: install
	$(BIN)/nbstripout chapters/*.ipynb

clean:
	rm -rf _build .pytest_cache
