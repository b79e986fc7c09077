# The two entry points of the README. Both work on a fresh Debian machine.
.PHONY: run test lint bench dev-cluster mutation

run:  ## set up, then serve the embedded default (a local filesystem store) on 127.0.0.1:8080
	scripts/setup
	.venv/bin/symbol-proxy serve $(if $(CONFIG),--config $(CONFIG),)

test:  ## set up everything the tests need, then run the whole suite (lint, types, tests)
	scripts/setup --test
	.venv/bin/ruff check sidecar operator service publish tests bench
	.venv/bin/mypy
	.venv/bin/lint-imports
	.venv/bin/python -m pytest -q $(PYTEST_ARGS)

lint:
	.venv/bin/ruff check sidecar operator service publish tests bench
	.venv/bin/mypy

bench:  ## the side-by-side benchmark against nginx and elfutils debuginfod
	scripts/setup --bench
	.venv/bin/python bench/run.py
	.venv/bin/python bench/fanout.py

mutation:  ## mutation testing of the core modules with mutmut (slow, not part of test); MODULES="keys ranges" for some
	scripts/setup --test
	[ -x .venv/bin/mutmut ] || .venv/bin/python -m pip install -q -e '.[dev,operator,cloud,mutation]'
	.venv/bin/python scripts/mutation $(MODULES)

dev-cluster:  ## a real kube-apiserver + etcd on loopback for kubectl experiments
	scripts/setup --test
	tests/controlplane/dev-cluster.sh
