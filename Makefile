# pifs-book — `make book` builds the HTML book, `make test` runs the tests; both set up first.
#
# Set-up: with a virtual/conda environment active, it is used as is; otherwise a local
# `.venv` is created. A torch that is already importable (say a CUDA build) is kept; where
# none is, TORCH_SPEC is installed (on the project's CPU machines `torch==2.13.0` is a local
# CPU build; elsewhere add TORCH_INDEX=https://download.pytorch.org/whl/cpu for a CPU wheel).
PROFILE ?= small
JOBS ?= 2
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?=
PYTEST_ARGS ?=
PARAMS ?=

ifneq ($(strip $(VIRTUAL_ENV)$(CONDA_PREFIX)),)
PY := python
STAMP := .pifs-setup.stamp
else
PY := .venv/bin/python
STAMP := .venv/.pifs-setup.stamp
endif

.PHONY: setup book test check-html clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@if [ "$(PY)" = ".venv/bin/python" ] && [ ! -x .venv/bin/python ]; then python3 -m venv .venv; fi
	$(PY) -m pip install --quiet --upgrade pip
	@if $(PY) -c "import torch" 2>/dev/null; then \
	  echo "setup: keeping the installed torch $$($(PY) -c 'import torch; print(torch.__version__)')"; \
	else \
	  echo "setup: installing $(TORCH_SPEC)"; \
	  $(PY) -m pip install --quiet "$(TORCH_SPEC)" $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)); \
	fi
	$(PY) -m pip install --quiet -e ".[book,test]"
	@touch $@

book: setup
	$(PY) -m pifs.build --profile $(PROFILE) --jobs $(JOBS) $(foreach p,$(PARAMS),--param $(p))

test: setup
	$(PY) -m pytest -n 2 --ignore=tests/browser $(PYTEST_ARGS)

# the built book in headless Chromium (Debian's `chromium` package) over file://, with no network
check-html: setup
	PIFS_BOOK_HTML=$(CURDIR)/_build/html $(PY) -m pytest tests/browser -p no:xdist -q

clean:
	rm -rf _build .pytest_cache .hypothesis
