# flagrail: `make demo` and `make test` are the two commands; everything else is a step of them.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

PYTHON ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
TARGET_DIR := target
NODE_DIR := bindings-node
NODE_ADDON := $(NODE_DIR)/flagrail.node
NODE_MODULES := $(NODE_DIR)/node_modules/.installed
DIST := dist
# maturin must install into our venv even when another one is activated.
MATURIN := VIRTUAL_ENV=$(CURDIR)/$(VENV) $(VENV)/bin/maturin

.PHONY: help demo test setup system-deps build build-cli build-cli-release build-python build-python-release \
        build-node build-node-release build-pyo3-floor lint test-rust test-python test-node test-cross test-redis bench bench-redis-kill clean \
        dist test-dist

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/'

setup: system-deps $(VENV)/.installed $(NODE_MODULES) ## create .venv with the Python dev tools, and the Node dev packages

system-deps: ## redis-server, nginx, chromium, openssl via apt-get when missing (tests start them)
	bash tools/install-system-deps.sh
$(VENV)/.installed: requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

# The Node tests' dev packages (OpenFeature server SDK, OpenTelemetry API + SDK), from the
# committed lockfile; the published package itself depends on nothing.
$(NODE_MODULES): $(NODE_DIR)/package.json $(NODE_DIR)/package-lock.json
	cd $(NODE_DIR) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

build-cli: ## the flagrail command (debug, for tests)
	cargo build -q -p flagrail-cli

build-cli-release: ## target/release/flagrail
	cargo build -q --release -p flagrail-cli

build-python: setup ## build the wheel and install it into .venv
	$(MATURIN) develop --quiet

build-python-release: setup
	$(MATURIN) develop --quiet --release

# The addon is copied with a temp file + rename so a running process never sees half a file.
build-node: ## build the Node addon into bindings-node/
	cargo build -q -p flagrail-node
	cp $(TARGET_DIR)/debug/libflagrail_node.so $(NODE_ADDON).tmp
	mv -f $(NODE_ADDON).tmp $(NODE_ADDON)

build-node-release:
	cargo build -q --release -p flagrail-node
	cp $(TARGET_DIR)/release/libflagrail_node.so $(NODE_ADDON).tmp
	mv -f $(NODE_ADDON).tmp $(NODE_ADDON)

build: build-cli build-python build-node ## everything the tests need

# rustdoc with private items (maintainers read these docs): every link must resolve; a link
# from a public item to a private one is allowed.
lint: setup ## rustfmt, clippy, rustdoc, the layer check and the vector files; warnings are errors
	cargo fmt --all -- --check
	cargo clippy -q --workspace --all-targets -- -D warnings
	RUSTDOCFLAGS="-D warnings -A rustdoc::private_intra_doc_links" \
		cargo doc -q --no-deps --workspace --document-private-items
	$(VPY) tools/check_layers.py
	$(VPY) tests/vectors/tools/gen_bucketing_vectors.py --check
	$(VPY) tests/vectors/tools/gen_eval_vectors.py --check

test-rust: ## Rust unit, vector, property and CLI tests
	cargo test -q --workspace

test-python: build-python build-node build-cli ## pytest against the installed wheel (the fleet drill also runs Node processes; the report test runs the CLI)
	MYPY_CACHE_DIR=$(VENV)/.mypy_cache $(VPY) -m mypy.stubtest flagrail._flagrail
	MYPY_CACHE_DIR=$(VENV)/.mypy_cache $(VPY) -m mypy --strict bindings-python/python/flagrail tests/python
	$(VPY) -m pytest -q tests/python

test-node: build-cli build-node $(NODE_MODULES) ## node --test against the built addon
	cd $(NODE_DIR) && node --test __test__/*.test.js

test-redis: build-cli build-python build-node ## the Redis source, push and CLI against a real redis-server and a 3-node cluster
	cargo test -q -p flagrail-fleet
	cargo test -q -p flagrail-cli --test redis
	$(VPY) -m pytest -q tests/python/test_redis_source.py
	cd $(NODE_DIR) && node --test __test__/redis_source.test.js

test-cross: build-cli build-python build-node ## Rust, Python and Node agree on 100k contexts
	$(VPY) -m pytest -q --tb=short tests/cross

test: setup ## every test: lint, Rust, Python, Node, cross-language, release packages
	$(MAKE) lint
	$(MAKE) test-rust
	$(MAKE) test-python
	$(MAKE) test-node
	$(MAKE) test-cross
	$(MAKE) test-dist

# Release packages (docs/ecosystem.md, "Release packages"). The wheel is abi3 (CPython >= 3.10),
# stripped, and tagged with the lowest manylinux its symbols allow (maturin's auditwheel check
# fails the build on a non-compliant library). The npm tarball is packed from a staging copy
# with the release, stripped addon (bindings-node/scripts/pack.js), never the debug build of
# bindings-node/.
dist: setup ## dist/: a manylinux wheel (maturin build --release) and an npm tarball with the release, stripped addon
	rm -rf $(DIST)
	$(MATURIN) build --quiet --release --strip --auditwheel check -i $(VPY) --out $(DIST)
	node $(NODE_DIR)/scripts/pack.js $(DIST)

test-dist: dist ## install dist/ into a clean venv and a scratch npm project (local files only) and run the README quickstarts there
	$(VPY) -m pytest -q tests/dist

demo: setup build-cli-release build-python build-node ## the main demo on examples/flags.json
	bash examples/demo.sh

# The PyO3 floor that bench/python_eval.py measures beside flags.variant (bench only).
build-pyo3-floor: setup
	$(MATURIN) develop --quiet --release -m bench/pyo3-floor/Cargo.toml

bench: setup build-python-release build-pyo3-floor build-node-release ## ns per evaluation and call overhead in Rust, Python and Node
	cargo bench -p flagrail-core --bench evaluate
	$(VPY) bench/python_eval.py
	$(VPY) bench/python_call.py
	node bench/node_eval.mjs
	node bench/node_call.mjs

bench-redis-kill: setup build-cli-release build-python-release build-node-release ## kill propagation over Redis to 16 processes (8 Python, 8 Node): p50/p99
	$(VPY) bench/redis_kill_propagation.py

clean:
	cargo clean
	rm -rf $(VENV) $(DIST) $(NODE_DIR)/*.node bindings-python/python/flagrail/*.so
