#!/usr/bin/env bash
# Download Debian's busybox-static for several architectures into a cache and
# extract bin/busybox from each, without touching the system's dpkg/apt state.
#
#   scripts/fetch-busybox.sh [ARCH...]      default: amd64 arm64 armhf ppc64el s390x
#
# Cache dir: $MANIFESTO_TEST_CACHE, else <repo>/.cache/busybox. Result per arch:
#   $CACHE/<arch>/busybox       the static binary
#   $CACHE/<arch>/version       the Debian package version
#   $CACHE/debs/*.deb           the downloaded packages (kept, so re-extraction is offline)
# A private apt configuration (own sources copy, lists, cache, empty dpkg status)
# is used, so `dpkg --add-architecture` is never needed. The system apt.conf.d is
# still read (proxy/mirror settings). Idempotent; safe to run concurrently (flock).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
cache="${MANIFESTO_TEST_CACHE:-$repo/.cache/busybox}"
if [ "$#" -gt 0 ]; then arches=("$@"); else arches=(amd64 arm64 armhf ppc64el s390x); fi

mkdir -p "$cache/debs"
exec 9>"$cache/.lock"
flock 9

missing=()
for a in "${arches[@]}"; do
    [ -x "$cache/$a/busybox" ] || missing+=("$a")
done
[ "${#missing[@]}" -eq 0 ] && exit 0

extract() {  # extract ARCH DEB
    local a="$1" deb="$2" x
    x="$(mktemp -d "$cache/.x.XXXXXX")"
    dpkg-deb -x "$deb" "$x"
    mkdir -p "$cache/$a"
    install -m 0755 "$x/bin/busybox" "$cache/$a/busybox.tmp"
    dpkg-deb -f "$deb" Version > "$cache/$a/version"
    mv -f "$cache/$a/busybox.tmp" "$cache/$a/busybox"
    rm -rf "$x"
}

# First try the .debs already in the cache (offline path).
need_dl=()
for a in "${missing[@]}"; do
    deb="$(ls -1 "$cache/debs/"busybox-static_*_"$a".deb 2>/dev/null | sort -V | tail -n1 || true)"
    if [ -n "$deb" ]; then extract "$a" "$deb"; else need_dl+=("$a"); fi
done
[ "${#need_dl[@]}" -eq 0 ] && exit 0

apt_root="$(mktemp -d "${TMPDIR:-/tmp}/manifesto-apt.XXXXXX")"
trap 'rm -rf "$apt_root"' EXIT
mkdir -p "$apt_root/sources.list.d" "$apt_root/lists/partial" "$apt_root/cache/archives/partial" "$apt_root/preferences.d"
touch "$apt_root/status" "$apt_root/sources.list"
shopt -s nullglob
n=0
for f in /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    cp "$f" "$apt_root/sources.list.d/"; n=$((n + 1))
done
[ -f /etc/apt/sources.list ] && cp /etc/apt/sources.list "$apt_root/sources.list" && n=$((n + 1))
shopt -u nullglob
if [ "$n" -eq 0 ]; then
    echo "fetch-busybox: no apt sources found in /etc/apt" >&2
    exit 1
fi
# Drop third-party sources that pin themselves to one architecture.
{ grep -l "^Architectures:" "$apt_root"/sources.list.d/*.sources 2>/dev/null || true; } | xargs -r rm -f

archlist="$(IFS=' '; echo "${need_dl[*]}")"
apt_opts=(
    -o "APT::Architecture=${need_dl[0]}"
    -o "Dir::State=$apt_root"
    -o "Dir::State::Lists=$apt_root/lists"
    -o "Dir::State::status=$apt_root/status"
    -o "Dir::Cache=$apt_root/cache"
    -o "Dir::Cache::pkgcache=$apt_root/cache/pkgcache.bin"
    -o "Dir::Cache::srcpkgcache=$apt_root/cache/srcpkgcache.bin"
    -o "Dir::Etc::SourceList=$apt_root/sources.list"
    -o "Dir::Etc::SourceParts=$apt_root/sources.list.d"
    -o "Dir::Etc::Preferences=$apt_root/preferences"
    -o "Dir::Etc::PreferencesParts=$apt_root/preferences.d"
    -o "Acquire::Languages=none"
    -o "APT::Sandbox::User=root"
    -o "Debug::NoLocking=1"
)
for a in "${need_dl[@]}"; do apt_opts+=(-o "APT::Architectures::=$a"); done
echo "fetch-busybox: apt-get update for: $archlist" >&2
# A mirror caught mid-sync can fail one index (e.g. the security suite); retry
# once, then go on: the download below fails loudly if the package is missing.
if ! apt-get -q "${apt_opts[@]}" update >&2; then
    sleep 2
    apt-get -q "${apt_opts[@]}" update >&2 ||
        echo "fetch-busybox: warning: apt-get update reported errors; trying the download anyway" >&2
fi
cd "$cache/debs"
for a in "${need_dl[@]}"; do
    apt-get -q "${apt_opts[@]}" download "busybox-static:$a" >&2
    deb="$(ls -1 "$cache/debs/"busybox-static_*_"$a".deb | sort -V | tail -n1)"
    extract "$a" "$deb"
    echo "fetch-busybox: $a -> $cache/$a/busybox ($(cat "$cache/$a/version"))" >&2
done
