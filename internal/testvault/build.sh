#!/usr/bin/env bash
# Builds the vaultdev test server (internal/testvault/vaultdev, its own Go
# module) into a cache folder outside the repository and prints its path.
# The binary is named after a hash of its sources, Go version and platform,
# so it is rebuilt only when one of them changes. A cold build takes about
# five minutes on two cores; the binary is about 110 MB.
#
#   TEARLINE_CACHE   cache folder (default ${XDG_CACHE_HOME:-$HOME/.cache}/tearline)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
src="$here/vaultdev"
go="${GO:-go}"
cache="${TEARLINE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tearline}"
# Without the symbol table and DWARF (-s -w): a test server is never
# debugged, and the link takes 7 s instead of 20 s, the binary 110 MB
# instead of 150 MB. The flags are part of the key.
flags=(-trimpath -ldflags=-s\ -w)
key="$( { cat "$src/go.mod" "$src/go.sum" "$src"/*.go; "$go" version; "$go" env GOOS GOARCH; echo "${flags[*]}"; } | sha256sum | cut -c1-16)"
bin="$cache/vaultdev-$key"
if [[ ! -x "$bin" ]]; then
	mkdir -p "$cache"
	exec 9>"$cache/vaultdev.lock"
	flock 9
	if [[ ! -x "$bin" ]]; then
		echo "building vaultdev into $bin (a cold build takes about 5 minutes)" >&2
		start=$(date +%s)
		(cd "$src" && GOWORK=off "$go" build "${flags[@]}" -o "$bin.tmp" .)
		mv "$bin.tmp" "$bin"
		echo "built vaultdev in $(( $(date +%s) - start ))s ($(du -m "$bin" | cut -f1) MB)" >&2
		# Keep only the current build.
		find "$cache" -maxdepth 1 -name 'vaultdev-*' ! -name "vaultdev-$key" -type f -delete
	fi
fi
echo "$bin"
