"""`index add` and `index rm`: change the list a tag holds in a registry (jobs/index.py).

The list's digest goes to stdout (as `push` prints it), one line saying what changed to
stderr, and a line for whatever was left out (attestations under `--attestations strip`).
"""

from __future__ import annotations

import argparse

from manifesto.cli.publishing import _platforms
from manifesto.cli.publishing import _stderr as _say
from manifesto.cli.render import entry_count


def _report(result) -> int:  # noqa: ANN001 — a jobs.index.Edited
    from manifesto.oci import mediatype

    name = result.target.familiar
    kind = mediatype.format_name(result.index.media_type)
    count = entry_count(len(result.index.manifests))
    if result.unchanged:
        _say(f"{name} unchanged ({kind}, {count}): it already was as asked")
    else:
        what = f"added {len(result.added)}, removed {len(result.removed)}"
        made = "Created" if result.created else "Updated"
        tries = f"; {result.attempts} attempts (another writer moved the tag)" if result.attempts > 1 else ""
        _say(f"{made} {name} ({kind}, {count}): {what}{tries}")
    print(result.index.digest)
    return 0


def add(args: argparse.Namespace) -> int:
    from manifesto.jobs.index import index_add

    result = index_add(
        args.target,
        args.sources,
        platforms=_platforms(args.platform or []),
        attestations=args.attestations,
        format=args.format,
        insecure=args.insecure,
        on_notice=_say,
    )
    return _report(result)


def rm(args: argparse.Namespace) -> int:
    from manifesto.jobs.index import index_remove

    result = index_remove(args.target, platforms=_platforms(args.platform or []), digests=args.digest or [], insecure=args.insecure)
    return _report(result)
