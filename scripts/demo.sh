#!/usr/bin/env bash
# The end-to-end demo behind `make demo`:
#   1. start a throwaway registry on a free loopback port;
#   2. `manifesto publish` examples/hello for five architectures (builds run under qemu), which
#      also pushes docker-library style per-arch repos (amd64/hello, arm64v8/hello, ...);
#   3. assemble those per-arch repos by hand with create / annotate / push, like `docker manifest`;
#   4. show both lists with `manifesto inspect`;
#   5. pull each platform back out of the list and run it under qemu: each prints its machine;
#   6. the same for examples/hello-native, which has no RUN: manifesto's native builder writes
#      its five images itself (no buildah, no qemu), and each runs its own ENTRYPOINT + CMD.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
M="$repo/.venv/bin/manifesto"
work="$(mktemp -d /tmp/manifesto-demo.XXXXXX)"
registry_pid=""
cleanup() {
    [ -n "$registry_pid" ] && kill "$registry_pid" 2>/dev/null && wait "$registry_pid" 2>/dev/null || true
    buildah --root "$work/buildah" --runroot "$work/buildah-run" --storage-driver vfs rm --all >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

# Keep the demo's drafts, caches and credentials out of the user's own.
export XDG_DATA_HOME="$work/data" XDG_CACHE_HOME="${XDG_CACHE_HOME:-$HOME/.cache}"
export SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-1700000000}"

say "preparing examples/hello (busybox-static for five architectures)"
bash examples/hello/prepare.sh

say "starting a throwaway registry"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
cat > "$work/registry.yml" <<YAML
version: 0.1
log: {level: warn}
storage:
  filesystem: {rootdirectory: $work/registry}
  delete: {enabled: true}
http: {addr: 127.0.0.1:$port, secret: demo-$RANDOM}
YAML
docker-registry serve "$work/registry.yml" > "$work/registry.log" 2>&1 &
registry_pid=$!
for _ in $(seq 100); do curl -fsS "http://127.0.0.1:$port/v2/" >/dev/null 2>&1 && break; sleep 0.1; done
reg="127.0.0.1:$port"
echo "registry at $reg"

say "manifesto doctor"
"$M" doctor --image "$reg/hello"

say "manifesto publish: five platforms, one index, tags 1.0.0 and latest"
"$M" publish --image "$reg/hello" --report "$work/report.json"

say "manifesto inspect $reg/hello:1.0.0"
"$M" inspect "$reg/hello:1.0.0"

say "assembling the per-arch repos by hand: create, annotate, push"
"$M" create "$reg/hello-assembled:1.0.0" \
    "$reg/amd64/hello:1.0.0" "$reg/arm64v8/hello:1.0.0" "$reg/arm32v7/hello:1.0.0" \
    "$reg/ppc64le/hello:1.0.0" "$reg/s390x/hello:1.0.0"
"$M" annotate "$reg/hello-assembled:1.0.0" "$reg/arm64v8/hello:1.0.0" \
    --annotation org.opencontainers.image.description="hello for 64-bit ARM"
"$M" push --purge "$reg/hello-assembled:1.0.0" --tag latest
"$M" inspect -v "$reg/hello-assembled:1.0.0"

echo "{}" > "$work/auth.json"
B=(buildah --root "$work/buildah" --runroot "$work/buildah-run" --storage-driver vfs)
# run_platforms NAME REF [COMMAND...]: pull each platform of REF with buildah and run COMMAND in
# it (foreign ones under qemu); without COMMAND, the image's own ENTRYPOINT + CMD.
run_platforms() {
    local label="$1" ref="$2" platform os arch variant name argv
    shift 2
    for platform in linux/amd64 linux/arm64/v8 linux/arm/v7 linux/ppc64le linux/s390x; do
        IFS=/ read -r os arch variant <<< "$platform"
        name="demo-$label-${arch}${variant:+-$variant}"
        "${B[@]}" from --quiet --name "$name" --tls-verify=false --authfile "$work/auth.json" \
            --os "$os" --arch "$arch" ${variant:+--variant "$variant"} "docker://$ref" >/dev/null
        if [ "$#" -gt 0 ]; then
            argv=("$@")
        else
            mapfile -t argv < <("${B[@]}" inspect --format \
                '{{range .OCIv1.Config.Entrypoint}}{{println .}}{{end}}{{range .OCIv1.Config.Cmd}}{{println .}}{{end}}' "$name")
        fi
        printf '%-16s %s\n' "$platform" "$("${B[@]}" run --isolation chroot "$name" -- "${argv[@]}")"
    done
}

say "running every platform from the published list (foreign ones under qemu)"
run_platforms hello "$reg/hello:1.0.0" /bin/sh -c 'echo "hello from $(cat /etc/built-on) (uname -m: $(uname -m))"'

say "hello-native: no RUN, so the native builder writes each image itself (no buildah, no qemu)"
bash examples/hello-native/prepare.sh
"$M" publish -f examples/hello-native/platforms.yaml --image "$reg/hello-native" --dry-run
"$M" publish -f examples/hello-native/platforms.yaml --image "$reg/hello-native" --quiet
"$M" inspect "$reg/hello-native:1.0.0"

say "running every platform of hello-native: each runs its own ENTRYPOINT + CMD"
run_platforms hello-native "$reg/hello-native:1.0.0"

say "done"
