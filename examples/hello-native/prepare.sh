#!/usr/bin/env bash
# Put a static binary per architecture into bin/, named as the Dockerfile asks for it:
#
#   bin/busybox-${TARGETARCH}${TARGETVARIANT}    amd64 arm64v8 armv7 ppc64le s390x
#
#   examples/hello-native/prepare.sh
#
# The binaries are Debian's busybox-static, fetched once and cached by scripts/fetch-busybox.sh
# (private apt state; never touches the system's dpkg). A Go, Rust or C project would put its
# cross-compiled binaries here instead. Fixed mtimes, so the layers are the same bytes whenever
# this runs. Idempotent.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
cache="${MANIFESTO_TEST_CACHE:-$repo/.cache/busybox}"

bash "$repo/scripts/fetch-busybox.sh" amd64 arm64 armhf ppc64el s390x
mkdir -p "$here/bin"
# Debian architecture -> ${TARGETARCH}${TARGETVARIANT} as builders pass them
for pair in amd64:amd64 arm64:arm64v8 armhf:armv7 ppc64el:ppc64le s390x:s390x; do
    src="$cache/${pair%%:*}/busybox"
    dest="$here/bin/busybox-${pair#*:}"
    if [ -x "$dest" ] && cmp -s "$src" "$dest"; then
        continue
    fi
    install -m 0755 "$src" "$dest.tmp"
    touch -d @0 "$dest.tmp"
    mv -f "$dest.tmp" "$dest"
    echo "prepare: $dest" >&2
done
