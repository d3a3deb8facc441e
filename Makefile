# openssl-ccb: `make demo` and `make test` set everything up themselves.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

# Debian's own python3 with Debian's pyOpenSSL and cryptography, which link the
# system libssl: the pyOpenSSL "same-libssl" route (.venv has pip's wheels,
# which bundle their own OpenSSL: the "bundled" route).
DEBIAN_PYTHON ?= /usr/bin/python3
DEBIAN_VENV   ?= .venv-debian
DEBIAN_PY     := $(DEBIAN_VENV)/bin/python
DEBIAN_STAMP  := $(DEBIAN_VENV)/.installed
C_SOURCES     := $(wildcard src/*.c src/*.h)
SOURCES       := pyproject.toml setup.py build_ffi.py $(C_SOURCES) $(wildcard openssl_ccb/*.py)

.PHONY: deps demo test test-main test-debian test-all lint clean memcheck soak bench bench-debian

$(STAMP): pyproject.toml setup.py build_ffi.py $(C_SOURCES)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) examples/demo.py

test: test-main test-debian

test-main: $(STAMP)
	OPENSSL_CCB_EXPECT_ROUTE=bundled $(PY) -m pytest

# Installed (not editable) with Debian's cffi and setuptools; -P keeps the
# source tree, built for .venv, off sys.path.
$(DEBIAN_STAMP): $(SOURCES)
	$(DEBIAN_PYTHON) -m venv --system-site-packages $(DEBIAN_VENV)
	$(DEBIAN_PY) -m pip install --quiet --no-build-isolation --no-deps --force-reinstall .
	touch $(DEBIAN_STAMP)

test-debian: $(DEBIAN_STAMP)
	OPENSSL_CCB_EXPECT_ROUTE=same-libssl $(DEBIAN_PY) -P -m pytest -p no:cacheprovider

# Every interpreter (CPython 3.9-3.13 from PATH or pyenv, Debian's pypy3) and the
# packaging tests, each in a fresh venv: see noxfile.py.
test-all: $(STAMP)
	$(VENV)/bin/nox

# The core and pyOpenSSL tests under valgrind memcheck, in both environments
# (tools/memcheck.sh says what fails it; about 7 minutes).
memcheck: $(STAMP) $(DEBIAN_STAMP)
	tools/memcheck.sh

# 100,000 handshakes; fails unless memory stays flat (about 2 minutes; not in CI).
soak: $(STAMP)
	$(PY) tools/soak.py

# Side-by-side benchmarks (about 15 minutes, not timed as a whole; --quick a few): docs/benchmarks.md.
bench: $(STAMP)
	$(PY) -m benchmarks

# The same in Debian's python3, where pyOpenSSL takes the same-libssl route; run
# as a file so that the installed openssl_ccb is the one measured.
bench-debian: $(DEBIAN_STAMP)
	$(DEBIAN_PY) -P benchmarks/__main__.py

# Every Debian package the build and the suite need, in one list
# (.ci/debian-packages, which CI installs the same way); as root or through sudo.
deps:
	.ci/deps

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) $(DEBIAN_VENV) build dist *.egg-info .nox .pytest_cache .mypy_cache .ruff_cache
	rm -f openssl_ccb/_openssl.c openssl_ccb/*.so openssl_ccb/*.o
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
