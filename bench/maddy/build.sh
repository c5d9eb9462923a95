#!/usr/bin/env bash
# Builds maddy v0.8.1 (the version pinned in bench/maddy/go.mod) for the
# side-by-side benchmarks and prints the path of the binary.
#
#   bench/maddy/build.sh            # -> $MADDY_CACHE/maddy (default ~/.cache/postern-bench/maddy-v0.8.1)
#   go test -bench InboundVsPeers ./bench/ -maddy.bin "$(bench/maddy/build.sh)"
#
# maddy's default storage (imapsql) keeps its index in SQLite. With cgo it
# uses mattn/go-sqlite3 (C SQLite, what maddy's own builds ship), so gcc is
# installed from Debian when missing; without a C compiler (and not root)
# the build falls back to CGO_ENABLED=0, where maddy picks the pure-Go
# modernc.org/sqlite. The debugflags tag only adds opt-in command-line
# flags (used here: -debug.dnsoverride, so maddy never asks the system
# resolver); it changes nothing when they are not given.
set -euo pipefail
cd "$(dirname "$0")"
export PATH="$PATH:/usr/local/go/bin"
out="${MADDY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/postern-bench/maddy-v0.8.1}"
mkdir -p "$out"
cgo=1
if ! command -v gcc >/dev/null 2>&1; then
	if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
		apt-get update -qq >&2
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gcc libc6-dev >&2
	else
		echo "build.sh: no gcc: building maddy with the pure-Go SQLite (modernc.org/sqlite)" >&2
		cgo=0
	fi
fi
CGO_ENABLED=$cgo GOBIN="$out" go install -tags debugflags github.com/foxcpp/maddy/cmd/maddy >&2
echo "$out/maddy"
