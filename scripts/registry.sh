#!/usr/bin/env bash
# A throwaway local registry for the tutorial and the README's examples: Debian's
# docker-registry (distribution 2.8), plain HTTP on a loopback address, deletes enabled.
#
#   scripts/registry.sh start [HOST:PORT]    default localhost:5000; runs in the background
#   scripts/registry.sh stop                 stops it and deletes what it stored
#
# Its config, storage, log and pid live in out/registry/ of this checkout ($MANIFESTO_REGISTRY_DIR
# overrides). manifesto talks plain HTTP to loopback registries by itself, so no TLS is needed.
# `start` when it already runs at that address does nothing; at another address it refuses.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dir="${MANIFESTO_REGISTRY_DIR:-$repo/out/registry}"
pidfile="$dir/pid"

running() {  # the pid of the registry this script started, if it still runs
    local pid
    pid="$(cat "$pidfile" 2>/dev/null)" || return 1
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

start() {
    local addr="${1:-localhost:5000}" host port bin
    host="${addr%:*}" port="${addr##*:}"
    case "$host" in
        localhost | 127.* | "[::1]") ;;
        *) echo "registry.sh: $addr is not a loopback address (this registry has no TLS and no login)" >&2; exit 2 ;;
    esac
    if running >/dev/null; then
        if [ "$(cat "$dir/addr")" = "$addr" ]; then
            echo "registry already running at $addr"
            return 0
        fi
        echo "registry.sh: a registry already runs at $(cat "$dir/addr") (scripts/registry.sh stop first)" >&2
        exit 1
    fi
    bin="$(command -v docker-registry || true)"
    if [ -z "$bin" ]; then
        echo "registry.sh: docker-registry not found: apt-get install docker-registry (make system-deps does)" >&2
        exit 1
    fi
    rm -rf "$dir"
    mkdir -p "$dir/storage"
    cat > "$dir/config.yml" <<YAML
version: 0.1
log: {level: warn}
storage:
  filesystem: {rootdirectory: $dir/storage}
  delete: {enabled: true}
http: {addr: "$addr", secret: "throwaway-$RANDOM$RANDOM"}
YAML
    echo "$addr" > "$dir/addr"
    # setsid: its own session, so it outlives this script and a Ctrl-C in the shell that ran it
    setsid "$bin" serve "$dir/config.yml" > "$dir/registry.log" 2>&1 < /dev/null &
    echo $! > "$pidfile"
    for _ in $(seq 100); do
        if ! running >/dev/null; then
            echo "registry.sh: docker-registry exited; its log ($dir/registry.log) ends:" >&2
            tail -n 5 "$dir/registry.log" >&2
            exit 1
        fi
        if (exec 3<>"/dev/tcp/${host//[\[\]]/}/$port") 2>/dev/null; then
            echo "registry running at $addr (log: ${dir#"$repo"/}/registry.log)"
            return 0
        fi
        sleep 0.1
    done
    echo "registry.sh: nothing answers at $addr after 10 s" >&2
    stop
    exit 1
}

stop() {
    local pid
    if pid="$(running)"; then
        kill "$pid"
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        echo "registry at $(cat "$dir/addr") stopped"
    fi
    rm -rf "$dir"
}

case "${1:-}" in
    start) start "${2:-}" ;;
    stop) stop ;;
    *) echo "usage: scripts/registry.sh start [HOST:PORT] | stop" >&2; exit 2 ;;
esac
