"""Edit the list a tag holds: add entries (replacing a platform's), remove entries, check a change held.

Why pure and apart from the I/O: `index add` and `index rm` read a list, change it and write it
back, perhaps several times (another writer moved the tag meanwhile), applying the same Change
to whatever they read each time, and after writing they ask whether the list the tag holds
still carries this run's change. The list's own JSON is edited, not rebuilt from descriptors:
the entries a change does not touch stay as parsed (unknown fields included, in their order),
as do the media type, the annotations and every other top-level field.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from manifesto.errors import ContentError, UsageError
from manifesto.lists import rules
from manifesto.lists.entry import Entry
from manifesto.oci import canonical, mediatype
from manifesto.oci.descriptor import Descriptor
from manifesto.oci.digest import Digest
from manifesto.oci.manifest import MAX_MANIFEST_BYTES, ImageIndex
from manifesto.oci.platform import Platform, matches


@dataclass(frozen=True)
class Change:
    """What a run does to a list: entries to add (an image replaces the entry of its platform,
    with that entry's attestations), platforms and digests to remove (with their attestations)."""

    added: tuple[Entry, ...] = ()
    platforms: tuple[Platform, ...] = ()
    digests: tuple[Digest, ...] = ()


@dataclass(frozen=True)
class Applied:
    """A change applied to one list: the list it was applied to (None: there was none), the
    new list (None: the change was already there), and what went out and came in."""

    base: ImageIndex | None
    index: ImageIndex | None
    removed: tuple[Descriptor, ...]
    added: tuple[Descriptor, ...]
    unmatched: tuple[str, ...]  # selectors of `rm` that named nothing in `base`


def _is_image(d: Descriptor) -> bool:
    return not d.is_attestation and d.platform is not None


def _selected(d: Descriptor, change: Change) -> bool:
    if d.digest in change.digests:
        return True
    return _is_image(d) and any(matches(d.platform, p) for p in change.platforms)  # type: ignore[arg-type]


def apply(base: ImageIndex | None, change: Change, media_type: str | None = None) -> Applied:
    """The list `base` with `change` applied.

    An added image whose platform some image of the list has replaces that entry in its place;
    other added entries go at the end, in the order given; an entry already in the list (same
    digest) stays as it is. Attestations of an entry that goes (`vnd.docker.reference.digest`
    naming it) go with it. `media_type` (`--format`) overrides the list's; a new list takes the
    rules' choice. Raises UsageError when the list would be left with no entries.
    """
    old = list(base.manifests) if base is not None else []
    doc: dict[str, Any] = json.loads(base.raw) if base is not None else {"schemaVersion": 2}
    raw_entries: list[Any] = list(doc.get("manifests") or [])
    present = {d.digest for d in old}
    incoming = [e for e in dict((e.digest, e) for e in change.added).values() if e.digest not in present]
    replaced: dict[int, Entry] = {}  # position in `old` -> the image taking its place there
    gone: set[int] = set()
    for i, d in enumerate(old):
        if _selected(d, change):
            gone.add(i)
            continue
        e = next((e for e in incoming if _is_image(d) and _is_image(e.descriptor) and _same_platform(d, e.descriptor)), None)
        if e is not None:
            if e in replaced.values():
                gone.add(i)  # a second entry of that platform: the one replacement is in place already
            else:
                replaced[i] = e
    leaving = {str(old[i].digest) for i in gone | set(replaced)}
    gone |= {i for i, d in enumerate(old) if d.attests in leaving}
    was = base.media_type if base is not None else None
    chosen = media_type or was or rules.choose_media_type(incoming, None)
    new = dict(zip((e.digest for e in incoming), _written(incoming, chosen)))
    out: list[Any] = []
    for i, item in enumerate(raw_entries):
        if i in replaced:
            out.append(new.pop(replaced[i].digest))
        elif i not in gone:
            out.append(item)
    out += [new[e.digest] for e in incoming if e.digest in new]
    removed = tuple(old[i] for i in sorted(gone | set(replaced)))
    unmatched = _unmatched(old, change)
    if not removed and not incoming and chosen == was:
        return Applied(base, None, (), (), unmatched)
    if not out:
        raise UsageError("the list would have no entries left; nothing changed")
    doc["mediaType"] = chosen
    doc["manifests"] = out
    if chosen == mediatype.DOCKER_LIST:
        doc.pop("annotations", None)
    raw = canonical.dumps(doc)
    if len(raw) > MAX_MANIFEST_BYTES:
        raise ContentError(f"the list would be {len(raw)} bytes; registries refuse manifests over 4 MiB")
    index = ImageIndex.parse(raw, chosen, "edited list")
    return Applied(base, index, removed, tuple(e.descriptor for e in incoming), unmatched)


def _same_platform(a: Descriptor, b: Descriptor) -> bool:
    return a.platform is not None and b.platform is not None and matches(a.platform, b.platform)


def _written(entries: Sequence[Entry], media_type: str) -> list[dict[str, Any]]:
    """The descriptor objects the list names `entries` with (a Docker list carries no annotations)."""
    if not entries:
        return []
    return [d.to_dict() for d in rules.build_index(entries, media_type, {}).manifests]


def _unmatched(old: Sequence[Descriptor], change: Change) -> tuple[str, ...]:
    """The selectors of `change` that name no entry of `old`."""
    out = [str(p) for p in change.platforms if not any(_is_image(d) and matches(d.platform, p) for d in old)]  # type: ignore[arg-type]
    out += [str(g) for g in change.digests if not any(d.digest == g for d in old)]
    return tuple(out)


def held(now: ImageIndex, applied: Applied) -> bool:
    """Does the list a tag holds now carry this run's change?

    Every added entry is in it, or (an image) its platform is held by an entry that was not in
    the list the change was applied to: a later writer replaced it on purpose, which is not a
    lost change. An added attestation whose image is gone went with it. Every removed entry is
    out of it. A list written by someone who never saw this run's change fails here.
    """
    digests = {d.digest for d in now.manifests}
    named = {str(g) for g in digests}
    before = {d.digest for d in applied.base.manifests} if applied.base is not None else set()
    for d in applied.added:
        if d.digest in digests:
            continue
        if d.is_attestation:
            if d.attests in named:
                return False
            continue
        if not any(_is_image(n) and n.digest not in before and _same_platform(n, d) for n in now.manifests):
            return False
    return not any(d.digest in digests for d in applied.removed)
