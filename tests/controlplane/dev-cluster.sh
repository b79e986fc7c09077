#!/usr/bin/env bash
# Starts the test control plane by hand (etcd + kube-apiserver with RBAC, plus the garbage collector
# and namespace controllers), installs crds/, and prints the KUBECONFIG to export in another shell:
#   make dev-cluster            # or: tests/controlplane/dev-cluster.sh [--dir DIR]
#   export KUBECONFIG=...; kubectl apply -f examples/k8s/filesystem-sources.yaml
# Ctrl-C stops everything and removes the state (unless --dir was given).
set -euo pipefail
cd "$(dirname "$0")/../.."
exec .venv/bin/python -m tests.support.controlplane --controller-manager "$@"
