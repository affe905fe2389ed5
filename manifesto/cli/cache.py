"""`cache prune`: delete the layer stores buildah and podman builds keep between runs."""

from __future__ import annotations

import argparse


def prune(args: argparse.Namespace) -> int:
    """Delete every store under $XDG_CACHE_HOME/manifesto (cache.prune), one line each; a store
    a running build holds is skipped and said so (exit 1: the space is not all freed)."""
    from manifesto.builders.cache import cache_home
    from manifesto.builders.cache import prune as run
    from manifesto.cli.render import size as _size

    pruned = run()
    for item in pruned:
        if item.busy:
            print(f"skipped {item.path}: a build is using it")
        else:
            print(f"removed {item.path} ({_size(item.freed)})")
    freed = sum(p.freed for p in pruned)
    print(f"freed {_size(freed)} under {cache_home()}")
    return 1 if any(p.busy for p in pruned) else 0
