"""A repository's tags, and deleting a manifest: the distribution API's content discovery and
content management endpoints (distribution spec, "Listing Tags" and "Deleting Manifests").

Why apart from the client: they are the registry verbs' alone (nothing that copies or pushes
uses them), and they speak through the client's one request path, so credentials, retries and
error messages are the same as everywhere else. `pages` walks any paged answer (tag lists
here, the referrers API in referrers.py) by its `Link: <...>; rel="next"` headers.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import httpx

from manifesto.errors import ContentError, RegistryError
from manifesto.oci.digest import Digest
from manifesto.store.registry.auth import repository_scope
from manifesto.store.registry.client import RegistryClient

MAX_PAGE_BYTES = 16 * 1024 * 1024
MAX_PAGES = 10_000  # a registry whose `next` links never end must not keep us forever


async def list_tags(client: RegistryClient, repo: str, *, page_size: int | None = None) -> list[str]:
    """Every tag of `repo`, in the registry's order, following `Link: <...>; rel="next"` pages.

    `page_size` asks for that many tags a page (`?n=`); without it the registry chooses (some
    answer everything at once, others page anyway). A next link to a page already read ends the
    walk rather than looping.
    """
    name = f"{client.registry}/{repo}"
    what = f"tags of {name}"
    tags: list[str] = []
    async for resp in pages(
        client,
        f"/v2/{quote(repo, safe='/')}/tags/list",
        {"n": str(page_size)} if page_size else None,
        max_pages=MAX_PAGES,
        scopes=frozenset({repository_scope(repo, "pull")}),
        what=what,
        max_body=MAX_PAGE_BYTES,
        doing=f"listing the tags of {name}",
    ):
        tags += _page_tags(resp.content, what)
    return tags


async def pages(
    client: RegistryClient, url: str, params: dict[str, str] | None, *, max_pages: int, what: str, **request: Any
) -> AsyncIterator[httpx.Response]:
    """Every page of a paged GET (tag lists, referrers), following `Link: <...>; rel="next"`.

    The first request carries `params`; a next link carries its query itself. A link to a page
    already read ends the walk rather than looping; more than `max_pages` is a ContentError.
    `request` goes to RegistryClient.request as it is.
    """
    seen: set[str] = set()
    for _ in range(max_pages):
        resp = await client.request("GET", url, params=params, what=what, **request)
        yield resp
        seen.add(str(resp.request.url))
        following = _next_link(resp)
        if following is None or following in seen:
            return
        url, params = following, None
    raise ContentError(f"{what}: more than {max_pages} pages; stopped")


def _page_tags(body: bytes, what: str) -> list[str]:
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):
        raise ContentError(f"{what}: the registry answered something that is not JSON") from None
    found = doc.get("tags") if isinstance(doc, dict) else None
    if found is None:  # distribution says `"tags": null` for a repository without tags
        return []
    if not isinstance(found, list) or not all(isinstance(t, str) for t in found):
        raise ContentError(f"{what}: `tags` is not a list of strings")
    return found


def _next_link(resp: httpx.Response) -> str | None:
    """The absolute URL of the `rel="next"` link (RFC 8288), relative links resolved."""
    for link in resp.headers.get_list("link", split_commas=True):
        target, _, params = link.partition(";")
        rels = {p.strip().replace('"', "") for p in params.split(";")}
        if "rel=next" in rels and target.strip().startswith("<") and target.strip().endswith(">"):
            return str(resp.url.join(target.strip()[1:-1]))
    return None


async def delete_manifest(client: RegistryClient, repo: str, digest: Digest) -> None:
    """Delete the manifest `digest` from `repo` (and, as distribution does, every tag naming it).

    A registry that does not allow deleting answers 405 or UNSUPPORTED: that becomes one
    RegistryError saying so, rather than the bare status.
    """
    name = f"{client.registry}/{repo}@{digest}"
    try:
        await client.request(
            "DELETE",
            f"/v2/{quote(repo, safe='/')}/manifests/{digest}",
            scopes=frozenset({repository_scope(repo, "delete")}),
            what=f"delete {name}",
        )
    except RegistryError as e:
        if e.status == 405 or e.code == "UNSUPPORTED":
            raise RegistryError(
                f"delete {name}: {client.registry} does not allow deleting manifests "
                f"(HTTP {e.status}{' ' + e.code if e.code else ''}; distribution needs storage.delete.enabled)",
                status=e.status,
                code=e.code,
            ) from None
        raise
