#!/usr/bin/env bash
# Builds (once) the pinned Helm release from the Go module proxy and prints its directory as the last
# line of output. If HELM_BIN names an executable helm, its directory is used and nothing is built.
# Otherwise helm is cached under
#   ${XDG_CACHE_HOME:-~/.cache}/symbol-operator/helm/<version>-<hash of this script>/bin
# keyed by the version and the build recipe, so changing either builds a new one next to the old.
set -euo pipefail
HELM_VERSION=v3.22.0

if [ -n "${HELM_BIN:-}" ]; then
  if [ -x "$HELM_BIN" ]; then
    dirname "$HELM_BIN"
    exit 0
  fi
  echo "HELM_BIN=$HELM_BIN is not executable; building instead" >&2
fi

here="$(cd "$(dirname "$0")" && pwd)"
key=$(sha256sum "$here/build.sh" | cut -c1-12)
bin="${XDG_CACHE_HOME:-$HOME/.cache}/symbol-operator/helm/${HELM_VERSION}-${key}/bin"
if [ -f "$bin/.complete" ]; then
  echo "$bin"
  exit 0
fi
command -v go >/dev/null || { echo "build.sh: the go command is required" >&2; exit 1; }
mkdir -p "$bin"
# One build at a time per version: a second caller (a parallel setup) waits, then reuses it.
exec 9>"$bin/../.build.lock"
flock 9
if [ -f "$bin/.complete" ]; then
  echo "$bin"
  exit 0
fi
start=$(date +%s)
echo "build.sh: building helm ${HELM_VERSION}" >&2
major=${HELM_VERSION%%.*}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
module="helm.sh/helm/${major}"
# Helm's Makefile stamps the Kubernetes version of its client-go (the version `helm template` and
# `helm lint` assume without a cluster; unstamped it is 1.20, older than our chart's kubeVersion).
gomod=$(go mod download -json "${module}@${HELM_VERSION}" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
client_go=$(awk '$1 == "k8s.io/client-go" {print $2}' "$gomod")
k8s_minor=$(echo "$client_go" | cut -d. -f2)
ldflags="-s -w -X ${module}/internal/version.version=${HELM_VERSION} -X ${module}/internal/version.gitTreeState=clean"
for pkg in pkg/lint/rules pkg/chartutil; do
  ldflags+=" -X ${module}/${pkg}.k8sVersionMajor=1 -X ${module}/${pkg}.k8sVersionMinor=${k8s_minor}"
done
# `go install module@version` resolves exactly the release's own go.mod/go.sum through the proxy.
GOBIN="$tmp" GOFLAGS="-buildvcs=false" go install -trimpath -ldflags="$ldflags" "${module}/cmd/helm@${HELM_VERSION}"
mv "$tmp/helm" "$bin/helm"
"$bin/helm" version --short >&2
touch "$bin/.complete"
echo "build.sh: built in $(( $(date +%s) - start ))s" >&2
echo "$bin"
