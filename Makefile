# The two commands a newcomer needs (see README.md):
#   make demo   set up .venv, fetch the model files, classify the bundled example
#   make test   set up .venv (with the test tools), run the test suite
PY := .venv/bin/python

.PHONY: setup setup-test demo test lint bench results
setup:
	scripts/setup.sh

setup-test:
	scripts/setup.sh --with-test-tools

demo: setup
	$(PY) -m audio.models download
	$(PY) parse_file.py examples/speech.wav

test: setup-test
	$(PY) -m pytest

lint: setup-test
	$(PY) -m ruff check .

bench: setup
	$(PY) bench/frontend.py
	$(PY) bench/embed.py
