#!/usr/bin/env bash
# Lay out a tiny per-architecture root filesystem for the hello example:
#
#   rootfs-<goarch>/bin/busybox     Debian's busybox-static for that architecture
#   rootfs-<goarch>/bin/{sh,...}    symlinks to it
#   rootfs-<goarch>/etc/            where the RUN step records `uname -m`
#
#   examples/hello/prepare.sh [DEBIAN_ARCH...]   default: amd64 arm64 armhf ppc64el s390x
#
# Why: the Dockerfile starts FROM scratch (there is no registry to pull a base from offline),
# so each platform's busybox comes from the build context. Directories are named by the Go
# architecture name that buildah/podman/buildx pass as TARGETARCH (amd64 arm64 arm ppc64le
# s390x), so the Dockerfile can say `COPY rootfs-${TARGETARCH}/ /`.
#
# The .debs are fetched and cached by scripts/fetch-busybox.sh (private apt state; never
# touches the system's dpkg); this script only lays out the directories. Idempotent.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
fetch="$repo/scripts/fetch-busybox.sh"
cache="${MANIFESTO_TEST_CACHE:-$repo/.cache/busybox}"
if [ "$#" -gt 0 ]; then arches=("$@"); else arches=(amd64 arm64 armhf ppc64el s390x); fi

goarch() {  # Debian architecture -> Go/OCI architecture (TARGETARCH)
    case "$1" in
        armhf | armel) echo arm ;;
        ppc64el) echo ppc64le ;;
        i386) echo 386 ;;
        mips64el) echo mips64le ;;
        *) echo "$1" ;;
    esac
}

if [ ! -x "$fetch" ]; then
    echo "prepare: $fetch is missing (it downloads busybox-static per architecture)" >&2
    exit 1
fi
bash "$fetch" "${arches[@]}"

# One writer at a time (parallel test workers run this too); later runs are no-ops.
exec 8>"$cache/.hello-rootfs.lock"
flock 8

applets=(sh cat echo uname ls mkdir env true)
for a in "${arches[@]}"; do
    src="$cache/$a/busybox"
    dest="$here/rootfs-$(goarch "$a")"
    if [ -x "$dest/bin/busybox" ] && cmp -s "$src" "$dest/bin/busybox"; then
        continue
    fi
    tmp="$(mktemp -d "$here/.rootfs.XXXXXX")"
    mkdir -p "$tmp/bin" "$tmp/etc" "$tmp/tmp"
    chmod 1777 "$tmp/tmp"
    install -m 0755 "$src" "$tmp/bin/busybox"
    for app in "${applets[@]}"; do ln -s busybox "$tmp/bin/$app"; done
    # Empty directories survive COPY, but give etc/ a file so no tool ever drops it.
    echo "hello example rootfs for $a (busybox $(cat "$cache/$a/version"))" > "$tmp/etc/rootfs-info"
    chmod 0755 "$tmp"
    # Fixed mtimes: the same busybox gives the same layer bytes whenever this script runs.
    find "$tmp" -exec touch -h -d "@${SOURCE_DATE_EPOCH:-0}" {} +
    rm -rf "$dest"
    mv "$tmp" "$dest"
    echo "prepare: $dest" >&2
done
