# The README's two commands: `make demo` and `make test`. Each creates .venv and installs what
# it needs; `make test` also installs OpenSSH's sshd (the tests start a real one on 127.0.0.1).
# `make lint` (ruff: lint and import order; mypy: types) installs the test extras the same way.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# Parallel test workers on the CI machine's 2 cores: four, since much of the suite's time is
# spent waiting (on the processes, servers and disks the tests use), not computing. Measured on a
# quiet 2-core machine, same commit, clean clone: 2 workers 614 s, 3 workers 552 s and 518 s,
# 4 workers 473 s (the run then used 1.76 and 1.85 cores on average). Every test must pass
# under such load anyway: none waits a fixed time or asserts one.
WORKERS ?= 4

.PHONY: demo test lint bench sshd clean

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11 or newer is needed (set PYTHON=python3.11)")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed-app: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	@touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $@ $(VENV)/.installed-app

demo: $(VENV)/.installed-app
	$(BIN)/report-keeper --demo

sshd:
	@bash tools/ensure-sshd.sh

# The product's bytecode is written first: hundreds of tests start report-keeper as a process,
# and where PYTHONDONTWRITEBYTECODE is set each one would otherwise compile every module again.
test: $(VENV)/.installed-test sshd
	$(BIN)/python -m compileall -q tui > /dev/null
	$(BIN)/python -m pytest -n $(WORKERS) --dist loadfile -q

lint: $(VENV)/.installed-test
	$(BIN)/python -m ruff check tui tests benchmarks
	$(BIN)/python -m mypy

$(VENV)/.installed-bench: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	@touch $@ $(VENV)/.installed-test $(VENV)/.installed-app

bench: $(VENV)/.installed-test $(VENV)/.installed-bench sshd
	$(BIN)/python benchmarks/verify_year.py
	$(BIN)/python benchmarks/export_year.py
	$(BIN)/python benchmarks/download.py
	$(BIN)/python benchmarks/tui.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache snapshot_report.html
