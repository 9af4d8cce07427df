# Veridict: `make run` serves locally with nothing to configure; `make test` runs every test.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 8000
# The PostgreSQL pass of `make test` (skipped with a note when no server answers, unless
# VERIDICT_REQUIRE_SERVICES=1, as .ci/run sets).
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/veridict
PYTEST := $(PY) -m pytest -p no:cacheprovider

.PHONY: install run test test-sqlite test-postgres bench lint clean

$(VENV)/.installed: pyproject.toml verifier/pyproject.toml client/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ./verifier -e ./client -e ".[dev]"
	touch $@

install: $(VENV)/.installed

# A development instance: DEBUG on, the public development secret key (production is the default).
run: export DJANGO_DEBUG = true
run: install
	$(PY) manage.py migrate --noinput
	$(PY) manage.py createcachetable
	$(PY) manage.py create_log_key
	$(PY) manage.py create_tsa
	$(PY) manage.py create_master_key
	mkdir -p var/celery/queue var/celery/processed var/celery/control
	@echo "Veridict on http://127.0.0.1:$(PORT)/ (API docs at /api/docs/; Ctrl-C stops the server, worker and beat)"
	trap 'kill 0' INT TERM EXIT; \
	$(VENV)/bin/celery -A veridict worker --beat --concurrency 1 --loglevel INFO & \
	{ until $(PY) -c "import socket; socket.create_connection(('127.0.0.1', $(PORT)), 1)" \
	    2>/dev/null; do sleep 1; done; \
	  test -e var/demo-seeded || { $(PY) manage.py seed_demo --no-progress && touch var/demo-seeded; }; } & \
	$(PY) manage.py runserver 127.0.0.1:$(PORT) --noreload

test: test-sqlite test-postgres

test-sqlite: install
	env -u DATABASE_URL -u REDIS_URL $(PYTEST) -m "not postgres"

test-postgres: install
	env DATABASE_URL=$(TEST_DATABASE_URL) $(PYTEST) -m "not sqlite"

bench: install
	$(PY) -m bench

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) var
