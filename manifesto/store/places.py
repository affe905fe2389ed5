"""The store a parsed reference names, the manifest it names there, and a list's image for a platform.

Why: every verb takes the same reference forms (oci.reference.parse_location), and the native
builder's FROM and the base coverage check read the same `oci:DIR[:TAG]`. Each needs the same
steps: open a registry client or the layout directory, ask for the tag or digest given (a
layout's only tag when none is: LayoutStore.reference), and pick a list's image for a platform
by the one matching rule (oci.platform.pick). They are written once, here, below the builders
and the jobs that need them.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from manifesto.errors import ManifestoError, NotFound
from manifesto.oci import mediatype
from manifesto.oci.descriptor import Descriptor
from manifesto.oci.manifest import ImageIndex
from manifesto.oci.platform import Platform, pick
from manifesto.oci.reference import LayoutReference, Reference
from manifesto.store.layout import LayoutStore
from manifesto.store.protocol import Fetched, Store

if TYPE_CHECKING:
    from manifesto.store.registry.pool import Registries

Location = Reference | LayoutReference


def open_store(registries: Registries, location: Location, *, create: bool = False) -> tuple[Store, str]:
    """The store and repository `location` names: the registry's client, or the layout directory
    (made when `create` is true; a layout is one repository, named "")."""
    if isinstance(location, LayoutReference):
        return LayoutStore(Path(location.path), create=create), ""
    return registries.client(location), location.repository


def manifest_reference(location: Location, label: str | None = None) -> str:
    """What to ask the store for: the digest or tag given (a registry's `latest` when neither is),
    or a layout's only tag. `label` names the reference in the error (default: the reference)."""
    if isinstance(location, Reference):
        return location.reference
    return LayoutStore(Path(location.path)).reference(location.reference, label or str(location))


def offered(entries: Iterable[Descriptor]) -> str:
    """The platforms a list offers, for a message: each once, sorted; attestations and
    unknown/unknown left out (they are never picked)."""
    names = {str(d.platform) for d in entries if d.platform is not None and not d.platform.is_unknown and not d.is_attestation}
    return ", ".join(sorted(names)) or "none"


async def platform_image(
    store: Store,
    repo: str,
    fetched: Fetched,
    platform: Platform,
    label: str,
    *,
    error: type[ManifestoError] = NotFound,
    hint: str = "",
) -> tuple[Fetched, Fetched | None]:
    """The image for `platform` in what `fetched` is, and the list it was picked from (None when
    `fetched` is not a list: then it is returned as it is, its config the caller's to check).

    A list's entry is chosen by oci.platform.pick (the first match, as docker takes it), nested
    lists followed; a list without one raises `error` "LABEL has no PLATFORM image (it has
    ...)HINT".
    """
    index = None
    while mediatype.is_index(fetched.media_type):
        doc = ImageIndex.parse(fetched.raw, fetched.media_type, label)
        found = pick(doc.images(), platform)
        if not found:
            raise error(f"{label} has no {platform} image (it has {offered(doc.manifests)}){hint}")
        index = index or fetched
        fetched = await store.get_manifest(repo, found[0].digest)
    return fetched, index
