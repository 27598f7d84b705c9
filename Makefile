# Two commands on a fresh clone:
#   make quickstart   set up .venv if needed, then train recipes/quickstart.yaml
#   make test         set up .venv if needed, then run the tests (what .ci/run runs)
# The set-up installs requirements.txt (the CPU torch pin, the package, dev tools) once, and again
# only when requirements.txt or pyproject.toml changed (the stamp file records the last install).
# `make test` also needs PostgreSQL's server binaries (the distributed-search tests start a
# throwaway cluster): .ci/need-postgresql installs Debian's `postgresql` when missing (as root).

PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: quickstart test setup

quickstart: $(STAMP)
	$(VENV)/bin/incentive run recipes/quickstart.yaml

test: $(STAMP)
	@sh .ci/need-postgresql
	$(VENV)/bin/pytest -n 2

setup: $(STAMP)

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): requirements.txt pyproject.toml | $(VENV)/bin/python
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $(STAMP)
