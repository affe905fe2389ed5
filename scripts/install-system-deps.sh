#!/usr/bin/env bash
# Install the Debian packages manifesto's tests and demo need, then make sure
# qemu binfmt handlers are registered (foreign-architecture builds and checks).
#
# Only calls apt-get when something is missing (checked with dpkg-query), and runs
# `apt-get update` only when the package lists are empty or an install fails.
# binfmt problems are fatal under CI=true and a warning elsewhere.
set -euo pipefail

PKGS=(docker-registry skopeo buildah podman qemu-user-static binfmt-support
      apache2-utils busybox-static uidmap fuse-overlayfs umoci oci-image-tool)

is_ci() { case "${CI:-}" in true|TRUE|1|yes) return 0 ;; *) return 1 ;; esac; }

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO=(sudo); else SUDO=(false-not-root); fi
fi
as_root() {
    if [ "${SUDO[0]:-}" = false-not-root ]; then
        echo "system-deps: need root (or sudo) for: $*" >&2
        return 1
    fi
    "${SUDO[@]}" "$@"
}

missing=()
for p in "${PKGS[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$p")
    fi
done

if [ "${#missing[@]}" -gt 0 ]; then
    echo "system-deps: installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    if ! compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null; then
        as_root apt-get update -q
    fi
    if ! as_root apt-get install -y -q "${missing[@]}"; then
        as_root apt-get update -q
        as_root apt-get install -y -q "${missing[@]}"
    fi
else
    echo "system-deps: all packages present" >&2
fi

binfmt() {
    if ! mountpoint -q /proc/sys/fs/binfmt_misc; then
        as_root mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc || return 1
    fi
    as_root update-binfmts --enable >/dev/null 2>&1 || true
    local a
    for a in aarch64 arm ppc64le s390x; do
        if [ "$(head -n1 "/proc/sys/fs/binfmt_misc/qemu-$a" 2>/dev/null)" != enabled ]; then
            as_root update-binfmts --enable "qemu-$a" || true
            [ "$(head -n1 "/proc/sys/fs/binfmt_misc/qemu-$a" 2>/dev/null)" = enabled ] || {
                echo "system-deps: qemu-$a binfmt handler not enabled" >&2
                return 1
            }
        fi
    done
}

if binfmt; then
    echo "system-deps: qemu binfmt handlers enabled" >&2
elif is_ci; then
    echo "system-deps: error: qemu binfmt_misc is unavailable (required in CI)" >&2
    exit 1
else
    echo "system-deps: warning: qemu binfmt_misc unavailable; foreign-arch tests will skip" >&2
fi
