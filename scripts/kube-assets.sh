#!/usr/bin/env bash
# kube-assets.sh [cache_dir]
#
# Makes sure a kube-apiserver and an etcd binary for envtest
# (sigs.k8s.io/controller-runtime/pkg/envtest, KUBEBUILDER_ASSETS) are at
# <cache_dir>/kube-assets/<version>/ and prints that directory on stdout.
#
# Where they come from, first found wins:
#   1. the prebuilt archive kube-apiserver-v<k8s>-etcd-v<etcd>-linux-amd64.tar.zst in
#      $PODLOGS_KUBE_ASSETS_DIR, or in ../shared/kube-assets beside the repository
#      (CI keeps a copy of shared/ beside the clone);
#   2. a build from the Go module proxy alone (10-17 minutes on 2 cores, once):
#      k8s.io/kubernetes cmd/kube-apiserver with every staging module replaced by
#      its published v0.<minor>.<patch>, and go.etcd.io/etcd/server/v3.
# Idempotent and safe to run concurrently (flock).
#
#   KUBE_VERSION  kube-apiserver version (default 1.35.4)
#   ETCD_VERSION  etcd version (default 3.6.5, the one Kubernetes 1.35 pins)
set -euo pipefail

kube="${KUBE_VERSION:-1.35.4}"
etcd="${ETCD_VERSION:-3.6.5}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${1:-$root/.cache}"
mkdir -p "$cache/kube-assets"
cache="$(cd "$cache" && pwd)"
dir="$cache/kube-assets/k8s-$kube-etcd-$etcd"

done_marker() { [[ -x "$dir/kube-apiserver" && -x "$dir/etcd" ]]; }
if done_marker; then
	echo "$dir"
	exit 0
fi

exec 9>"$cache/kube-assets/.lock"
if command -v flock >/dev/null 2>&1; then
	flock 9
	if done_marker; then
		echo "$dir"
		exit 0
	fi
fi

tmp="$(mktemp -d "$cache/kube-assets/.build-XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
archive="kube-apiserver-v$kube-etcd-v$etcd-linux-amd64.tar.zst"

found=""
for d in "${PODLOGS_KUBE_ASSETS_DIR:-}" "$root/../shared/kube-assets" "$root/../../shared/kube-assets"; do
	if [[ -n "$d" && -f "$d/$archive" ]]; then
		found="$d/$archive"
		break
	fi
done

if [[ -n "$found" && "$(uname -sm)" == "Linux x86_64" ]]; then
	echo "kube-assets: unpacking $found" >&2
	if command -v zstd >/dev/null 2>&1; then
		zstd -dc "$found" | tar -x -C "$tmp"
	else
		tar --zstd -x -C "$tmp" -f "$found"
	fi
else
	echo "kube-assets: building kube-apiserver v$kube and etcd v$etcd from the Go module proxy (once; 10-17 minutes)" >&2
	minor="${kube#*.}"
	staging="v0.$minor"
	mod="$tmp/mod"
	mkdir -p "$mod"
	cat >"$mod/tools.go" <<-EOF
		//go:build tools

		package tools

		import (
			_ "go.etcd.io/etcd/server/v3"
			_ "k8s.io/kubernetes/cmd/kube-apiserver"
		)
	EOF
	(
		cd "$mod"
		go mod init podlogs.local/kube-assets >/dev/null 2>&1
		go mod edit -require="k8s.io/kubernetes@v$kube" -require="go.etcd.io/etcd/server/v3@v$etcd"
		# Every staging module k8s.io/kubernetes requires at v0.0.0 is replaced by
		# its published version (the list is the one in its own go.mod).
		go mod download -json "k8s.io/kubernetes@v$kube" >"$tmp/k8s.json"
		gomod="$(sed -n 's/.*"GoMod": "\(.*\)".*/\1/p' "$tmp/k8s.json")"
		for m in $(awk '/^[[:space:]]*k8s.io\/[a-z0-9-]+ v0\.0\.0/ {print $1}' "$gomod" | sort -u); do
			go mod edit -replace="$m=$m@$staging"
		done
		GOFLAGS=-tags=tools go mod tidy
		CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o "$tmp/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver
		CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o "$tmp/etcd" go.etcd.io/etcd/server/v3
	)
	rm -rf "$mod"
fi

[[ -x "$tmp/kube-apiserver" && -x "$tmp/etcd" ]] || { echo "kube-assets: kube-apiserver or etcd missing after unpack/build" >&2; exit 1; }
chmod 755 "$tmp"
rm -rf "$dir"
mv "$tmp" "$dir"
trap - EXIT
echo "$dir"
