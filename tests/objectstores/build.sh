#!/usr/bin/env bash
# Builds (once) an object-store server used by the tests and prints the binary's path as the last
# line of output:
#   build.sh fake-gcs-server     the GCS JSON-API emulator (github.com/fsouza/fake-gcs-server)
#   build.sh minio               the MinIO S3-compatible server (github.com/minio/minio)
# Binaries are cached under
#   ${XDG_CACHE_HOME:-~/.cache}/symbol-operator/<name>/<version>/<name>
# so the key changes whenever versions.env does. A lock per version serialises parallel builds: a
# second caller waits, then reuses the first one's binary.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=versions.env
. "$here/versions.env"

name=${1:-}
case "$name" in
  fake-gcs-server) module=$FAKE_GCS_SERVER_MODULE; version=$FAKE_GCS_SERVER_VERSION ;;
  minio) module=$MINIO_MODULE; version=$MINIO_VERSION ;;
  *) echo "usage: $0 fake-gcs-server|minio" >&2; exit 2 ;;
esac

dir="${XDG_CACHE_HOME:-$HOME/.cache}/symbol-operator/$name/$version"
if [ -f "$dir/.complete" ]; then
  echo "$dir/$name"
  exit 0
fi
command -v go >/dev/null || { echo "build.sh: the go command is required" >&2; exit 1; }
mkdir -p "$dir"
exec 9>"$dir/.build.lock"
flock 9
if [ -f "$dir/.complete" ]; then
  echo "$dir/$name"
  exit 0
fi
start=$(date +%s)
echo "build.sh: building $module@$version" >&2
# go install builds the module's own go.mod and go.sum (both checked against the checksum
# database), so the pinned version is all the build needs. GOBIN keeps the binary in the cache.
tmp=$(mktemp -d "$dir/.gobin.XXXXXX")
GOFLAGS="-buildvcs=false" GOBIN="$tmp" nice go install -trimpath -ldflags="-s -w" "$module@$version"
mv "$tmp/$(basename "$module")" "$dir/$name"
rmdir "$tmp"
touch "$dir/.complete"
echo "build.sh: built $name in $(( $(date +%s) - start ))s" >&2
echo "$dir/$name"
