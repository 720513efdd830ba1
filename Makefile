# Two commands on a fresh machine: `make demo` and `make test`. See README.md.
SHELL := /bin/bash
PY := .venv/bin/python
PIP := .venv/bin/pip
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: demo test install install-dev system-deps services lint format bench clean messages

# The portal alone (what `make demo` runs on), then the test and lint tooling on top.
.venv/.installed: pyproject.toml
	python3 -m venv .venv
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e .
	touch $@

.venv/.installed-dev: .venv/.installed
	$(PIP) install -q -e '.[dev]'
	touch $@

install: .venv/.installed

install-dev: .venv/.installed-dev

# Debian packages the suite needs (WeasyPrint's pango, fonts, poppler, Chromium).
system-deps:
	@bash scripts/system-deps.sh

# PostgreSQL and Redis on 127.0.0.1, started if they are down.
services:
	@bash scripts/services.sh

demo: install
	DJANGO_SETTINGS_MODULE=config.settings.local $(PY) manage.py migrate --noinput
	DJANGO_SETTINGS_MODULE=config.settings.local $(PY) manage.py seed_demo
	@bash scripts/demo.sh

lint: install-dev
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/lint-imports

format: install-dev
	.venv/bin/ruff check --fix .
	.venv/bin/ruff format .

test: install-dev system-deps services lint
	DJANGO_SETTINGS_MODULE=config.settings.test .venv/bin/pytest -n 2 --dist loadgroup -q $(PYTEST_ARGS)

bench: install-dev services
	$(PY) bench/run.py

# German catalogue: collect new strings into locale/de/LC_MESSAGES/django.po (needs GNU
# gettext's xgettext), then compile django.mo with Babel. Both files are committed, so the
# portal runs without gettext; tests/test_translations.py fails when the .mo is stale.
messages: install-dev
	DJANGO_SETTINGS_MODULE=config.settings.local $(PY) manage.py makemessages -l de --no-location -i "tests/*" -i "bench/*" -i "var/*" -i "test-artifacts/*" -i ".venv/*"
	.venv/bin/pybabel compile -d locale -D django

clean:
	rm -rf .venv db.sqlite3 var staticfiles media
