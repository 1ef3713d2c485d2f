#!/usr/bin/env bash
# opensearch-dist.sh [cache_dir]
#
# Makes sure the OpenSearch integ-test distribution (a zip on Maven Central, no bundled JDK) is
# unpacked at <cache_dir>/opensearch/opensearch-<version>/ and prints that directory on stdout.
# Idempotent and safe to run concurrently (parallel test binaries call it through
# internal/testkit/osnode). Needs Java and Maven; unzip is used when present.
#
#   OPENSEARCH_VERSION  distribution version (default 2.19.6)
#   cache_dir           default: .cache in the repository root
set -euo pipefail

version="${OPENSEARCH_VERSION:-2.19.6}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${1:-$root/.cache}"
mkdir -p "$cache/opensearch"
cache="$(cd "$cache" && pwd)"
home="$cache/opensearch/opensearch-$version"
# The jar is the last thing to appear: the tree is moved into place only when complete.
jar="$home/lib/opensearch-$version.jar"

if [[ -f "$jar" ]]; then
	echo "$home"
	exit 0
fi

# One download at a time; whoever waited finds the work done.
if command -v flock >/dev/null 2>&1; then
	exec 9>"$cache/opensearch/.lock"
	flock 9
	if [[ -f "$jar" ]]; then
		echo "$home"
		exit 0
	fi
fi

tmp="$(mktemp -d "$cache/opensearch/.unpack-XXXXXX")"
trap 'rm -rf "$tmp"' EXIT

zip="$cache/dl/opensearch-$version.zip"
if [[ ! -f "$zip" ]]; then
	if ! command -v mvn >/dev/null 2>&1; then
		echo "opensearch-dist.sh: mvn not found: install Maven (Debian: apt-get install maven)" >&2
		exit 1
	fi
	echo "opensearch-dist.sh: downloading OpenSearch $version from Maven Central" >&2
	# Download into the temp dir first so that an interrupted download never looks complete.
	mvn -q -B -Dmaven.repo.local="$cache/m2" dependency:copy \
		-Dartifact="org.opensearch.distribution.integ-test-zip:opensearch:$version:zip" \
		-DoutputDirectory="$tmp/dl" >&2
	mkdir -p "$cache/dl"
	mv "$tmp/dl/opensearch-$version.zip" "$zip"
fi

mkdir -p "$tmp/x"
if command -v unzip >/dev/null 2>&1; then
	unzip -q "$zip" -d "$tmp/x"
elif command -v jar >/dev/null 2>&1; then
	(cd "$tmp/x" && jar xf "$zip")
elif command -v python3 >/dev/null 2>&1; then
	python3 -m zipfile -e "$zip" "$tmp/x"
else
	echo "opensearch-dist.sh: need unzip, jar or python3 to unpack $zip" >&2
	exit 1
fi
# jar and python3 drop the executable bits that unzip keeps.
chmod a+x "$tmp/x/opensearch-$version"/bin/*
mv "$tmp/x/opensearch-$version" "$home"
echo "$home"
