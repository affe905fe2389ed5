"""The referrers API: `GET /v2/<name>/referrers/<digest>` (OCI distribution spec 1.1, "Listing Referrers").

The answer is an OCI image index whose entries are the manifests naming `<digest>` as their
subject, each with its `artifactType`; it may come in pages (`Link: <...>; rel="next"`, as tag
lists do) and may be filtered by `?artifactType=` (a registry that did not filter says nothing in
`OCI-Filters-Applied`, and the filter is applied here). A registry without the API answers 404
(the spec forbids a 404 from one that has it): that is "no API", and the caller falls back to
the tag schema (store/referrers.py).
"""

from __future__ import annotations

from urllib.parse import quote

from manifesto.errors import NotFound
from manifesto.oci import mediatype
from manifesto.oci.descriptor import Descriptor
from manifesto.oci.digest import Digest
from manifesto.oci.manifest import MAX_MANIFEST_BYTES, ImageIndex
from manifesto.store.registry.auth import repository_scope
from manifesto.store.registry.catalog import pages  # the one walk of `rel="next"` links
from manifesto.store.registry.client import RegistryClient

MAX_PAGES = 1000  # a registry whose `next` links never end must not keep us forever
FILTERS_APPLIED = "oci-filters-applied"


async def list_referrers(
    client: RegistryClient, repo: str, digest: Digest, *, artifact_type: str | None = None
) -> tuple[Descriptor, ...] | None:
    """The referrers of `digest` in `repo` as the registry lists them; None when it has no API.

    Every page is read and capped like a manifest; a page that is not an image index is a
    ContentError (a registry claiming the API must answer with one).
    """
    name = f"{client.registry}/{repo}@{digest}"
    what = f"referrers of {name}"
    found: list[Descriptor] = []
    read_one = False
    try:
        async for resp in pages(
            client,
            f"/v2/{quote(repo, safe='/')}/referrers/{digest}",
            {"artifactType": artifact_type} if artifact_type else None,
            max_pages=MAX_PAGES,
            scopes=frozenset({repository_scope(repo, "pull")}),
            headers={"Accept": mediatype.OCI_INDEX},
            what=what,
            max_body=MAX_MANIFEST_BYTES,
            doing=f"listing the referrers of {name}",
        ):
            read_one = True
            entries = ImageIndex.parse(resp.content, mediatype.OCI_INDEX, what).manifests
            if artifact_type and "artifacttype" not in resp.headers.get(FILTERS_APPLIED, "").lower():
                entries = tuple(d for d in entries if d.artifact_type == artifact_type)
            found += entries
    except NotFound:
        if not read_one:  # the first page: no API
            return None
        raise
    return tuple(found)
