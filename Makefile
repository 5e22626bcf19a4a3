# kubectl-kdoctor developer entry points. `make test` is what CI runs (.ci/run).
# hack/setup says which Debian packages a target needs and asks before installing them
# (`make test` and CI consent: hack/setup --yes).
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: try setup test check lint typecheck unit bench clean cluster-up cluster-down

## First run: venv + a loopback nginx + `kubectl kdoctor http --local` against it.
try:
	hack/try

setup:
	hack/setup

## The whole suite on a fresh machine, in timed phases (hack/test): packages, venv, cluster
## binaries, krew, lint, types, then tests/unit, engine, report, dist, e2e (+ realnode); ends
## with a table of each phase's time and each folder's test counts.
test:
	hack/test

check: lint typecheck

lint:
	$(VENV)/bin/ruff check kubectl_kdoctor tests bench hack/localcluster
	$(VENV)/bin/ruff format --check kubectl_kdoctor tests bench hack/localcluster
	$(VENV)/bin/lint-imports

typecheck:
	$(VENV)/bin/mypy

## Fast feedback: unit tests only, no cluster.
unit:
	hack/setup --target unit
	$(PY) -m pytest tests/unit

bench:
	$(PY) -m bench

cluster-up:
	hack/cluster up --nodes 3

cluster-down:
	hack/cluster down

clean:
	rm -rf build dist *.egg-info .mypy_cache .ruff_cache .pytest_cache

.PHONY: dist demo

## krew release: dist/kubectl-kdoctor_v<ver>_<os>_<arch>.tar.gz and dist/plugin.yaml (their sha256).
dist:
	hack/dist

## The local cluster, netreach, a cut link node-1 <-> node-2, netreach again, what changed.
demo:
	hack/demo

.PHONY: image release-dry-run

## The agent image without Docker or a registry: $(IMAGE_OUT)/kubectl-kdoctor-agent_v<ver>_linux_<arch>.oci.tar
## (root, debootstrap; cached). Load it with ctr/kind/k3s or copy it with skopeo/crane: docs/install.md.
IMAGE_OUT ?= dist
image:
	hack/image build --out $(IMAGE_OUT)

## What the release workflow builds (wheel, sdist, krew archives, plugin.yaml, SHA256SUMS), built
## into dist/release and checked; nothing published (hack/release --dry-run).
release-dry-run:
	hack/release --dry-run --out dist/release
