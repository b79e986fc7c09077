#!/usr/bin/env bash
# Builds (once) the control plane binaries of the pinned release and prints their directory as the
# last line of output:
#   kube-apiserver, etcd, kube-controller-manager, kubectl
# If KUBEBUILDER_ASSETS names a directory holding kube-apiserver and etcd (the envtest convention),
# that directory is used instead and nothing is built. Otherwise the binaries are cached under
#   ${XDG_CACHE_HOME:-~/.cache}/symbol-operator/k8s/<version>-<go.sum hash>/bin
# which is safe to keep between runs: the key changes whenever go.mod or go.sum does.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=versions.env
. "$here/versions.env"

if [ -n "${KUBEBUILDER_ASSETS:-}" ]; then
  if [ -x "$KUBEBUILDER_ASSETS/kube-apiserver" ] && [ -x "$KUBEBUILDER_ASSETS/etcd" ]; then
    echo "$KUBEBUILDER_ASSETS"
    exit 0
  fi
  echo "KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS has no kube-apiserver and etcd; building instead" >&2
fi

key=$(cat "$here/go.mod" "$here/go.sum" | sha256sum | cut -c1-12)
bin="${XDG_CACHE_HOME:-$HOME/.cache}/symbol-operator/k8s/${KUBERNETES_VERSION}-${key}/bin"
if [ -f "$bin/.complete" ]; then
  echo "$bin"
  exit 0
fi

command -v go >/dev/null || { echo "build.sh: the go command is required (Go >= 1.26)" >&2; exit 1; }
mkdir -p "$bin"
# One build at a time per cache key: a second caller (a parallel setup) waits, then reuses it.
exec 9>"$bin/../.build.lock"
flock 9
if [ -f "$bin/.complete" ]; then
  echo "$bin"
  exit 0
fi
minor=${KUBERNETES_VERSION#v1.}; minor=${minor%%.*}
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $pkg.gitVersion=${KUBERNETES_VERSION} -X $pkg.gitMajor=1 -X $pkg.gitMinor=${minor}"
  ldflags+=" -X $pkg.gitTreeState=clean"
done
cd "$here"
export GOFLAGS="-mod=readonly -buildvcs=false"
start=$(date +%s)
build() {
  echo "build.sh: building $1" >&2
  go build -trimpath -ldflags="$ldflags" -o "$bin/$1.tmp" "$2"
  mv "$bin/$1.tmp" "$bin/$1"
}
build etcd go.etcd.io/etcd/server/v3
build kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver
build kube-controller-manager k8s.io/kubernetes/cmd/kube-controller-manager
build kubectl k8s.io/kubernetes/cmd/kubectl
"$bin/kube-apiserver" --version >&2
touch "$bin/.complete"
echo "build.sh: built in $(( $(date +%s) - start ))s" >&2
echo "$bin"
