# Two commands for a fresh machine with Python 3.11: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
STAMP  := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: run test install clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[dev]'
	rm -f $(VENV)/.installed-* && touch $@

install: $(STAMP)

run: $(STAMP)  ## the embedded default: every service in one process, SQLite under ./.rapport/
	$(VENV)/bin/rapport up

# pytest-xdist processes; each file runs in one, so its shared pipelines are built once
TEST_WORKERS ?= 2

test: $(STAMP)  ## the whole suite: unit, embedded, PostgreSQL + Kafka-protocol broker
	$(VENV)/bin/pytest -n $(TEST_WORKERS) --dist loadfile -m "not serial"
	$(VENV)/bin/pytest -m serial

clean:
	rm -rf $(VENV) .rapport .pytest_cache
