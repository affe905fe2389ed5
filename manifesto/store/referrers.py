"""Find what refers to a manifest in any store: the referrers API where there is one, else tags.

OCI distribution spec 1.1: a registry with the referrers API lists referrers itself; elsewhere
(distribution 2.8, an OCI layout) the writers keep a referrers index under the tag
`sha256-<hex>` of the subject (the "Referrers Tag Schema"). cosign's `sha256-<hex>.sig`, `.att`
and `.sbom` tags are looked for in both cases, since cosign writes them whatever the registry
can do. Referrers have referrers of their own (a signature of an SBOM): the walk follows them,
to a bounded depth and never through a manifest twice. Works through the Store protocol alone;
the API is passed in by whoever knows the store is a registry (store/registry/referrers.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field, replace

from manifesto import tasks
from manifesto.errors import ContentError, NotFound
from manifesto.log import get_logger
from manifesto.oci import mediatype
from manifesto.oci.descriptor import Descriptor
from manifesto.oci.digest import Digest
from manifesto.oci.manifest import ImageIndex, parse
from manifesto.oci.referrers import API, TAG, cosign_tags, describe, fallback_tag
from manifesto.store.protocol import Fetched, Store

log = get_logger("manifesto.referrers")

MAX_DEPTH = 4  # image → signature → signature of the signature → ...: deeper is not followed

Api = Callable[[str, Digest], Awaitable[tuple[Descriptor, ...] | None]]
"""The referrers API of a registry: (repo, digest) → the referrers listed, or None (no API)."""


@dataclass(frozen=True)
class Referrer:
    """A manifest that refers to `subject`, as listed (or, for a cosign tag, as described)."""

    descriptor: Descriptor
    subject: Digest
    found: str  # API (the referrers API) or TAG (a referrers index tag, or a cosign tag)
    listed: bool = True  # named by a referrers list (API or tag index), not by a cosign tag alone
    tags: tuple[str, ...] = ()  # the cosign tags naming it
    depth: int = 1  # 1: refers to the image itself; 2: to one of its referrers; ...
    fetched: Fetched | None = field(default=None, compare=False, repr=False)  # when already read


class Finder:
    """Finds referrers in one repository of a store, remembering whether its registry has the API."""

    def __init__(self, store: Store, repo: str, api: Api | None = None, max_depth: int = MAX_DEPTH):
        self.store = store
        self.repo = repo
        self.api = api
        self.max_depth = max_depth
        self.has_api: bool | None = None if api is not None else False  # None: not asked yet
        self._first = asyncio.Lock()  # the first answer says whether there is an API: ask once

    async def walk(self, subjects: Iterable[Digest]) -> list[Referrer]:
        """Every referrer of `subjects` and of their referrers (to `max_depth`).

        Each manifest is asked about once, so a cycle ends; one listed for two subjects is there
        once for each (each subject's list names it). A subject listed as a referrer is not one.
        """
        level: list[Digest] = list(dict.fromkeys(subjects))  # in the caller's order
        tree, asked = frozenset(level), set(level)
        pairs: set[tuple[Digest, Digest]] = set()
        out: list[Referrer] = []
        for depth in range(1, self.max_depth + 1):
            if not level:
                break
            found = await tasks.gather(*(self.direct(d, depth) for d in level), in_order=True)
            level = []
            for r in (r for referrers in found for r in referrers):
                digest = r.descriptor.digest
                if digest in tree or (digest, r.subject) in pairs:
                    continue
                pairs.add((digest, r.subject))
                out.append(r)
                if digest not in asked:
                    asked.add(digest)
                    level.append(digest)
        return out

    async def direct(self, digest: Digest, depth: int = 1) -> list[Referrer]:
        """The referrers of `digest` itself: listed ones first, then those cosign tags name."""
        listed, how = await self._listed(digest)
        by_digest = {d.digest: Referrer(d, digest, how, depth=depth) for d in listed}
        for tag, fetched in await self._cosign(digest):
            have = by_digest.get(fetched.digest)
            if have is not None:
                by_digest[fetched.digest] = replace(have, tags=(*have.tags, tag), fetched=fetched)
            else:
                doc = parse(fetched.raw, fetched.media_type, f"{self.repo}:{tag}")
                by_digest[fetched.digest] = Referrer(describe(doc), digest, TAG, False, (tag,), depth, fetched)
        return list(by_digest.values())

    async def _listed(self, digest: Digest) -> tuple[tuple[Descriptor, ...], str]:
        """The referrers a list names: the API's, or (no API) the `sha256-<hex>` tag's index."""
        if self.api is not None and self.has_api is None:
            async with self._first:
                if self.has_api is None:
                    answer = await self.api(self.repo, digest)
                    self.has_api = answer is not None
                    if answer is not None:
                        return answer, API
        if self.api is not None and self.has_api:
            answer = await self.api(self.repo, digest)
            if answer is not None:  # (a 404 here breaks the spec: then the tag is asked, as without)
                return answer, API
        tag = fallback_tag(digest)
        try:
            fetched = await self.store.get_manifest(self.repo, tag)
        except NotFound:
            return (), TAG
        if not mediatype.is_index(fetched.media_type):
            log.info("referrers_tag_not_an_index", repository=self.repo, tag=tag, media_type=fetched.media_type)
            return (), TAG
        return ImageIndex.parse(fetched.raw, fetched.media_type, f"{self.repo}:{tag}").manifests, TAG

    async def _cosign(self, digest: Digest) -> list[tuple[str, Fetched]]:
        async def one(tag: str) -> tuple[str, Fetched] | None:
            try:
                return tag, await self.store.get_manifest(self.repo, tag)
            except NotFound:
                return None

        return [f for f in await tasks.gather(*(one(t) for t in cosign_tags(digest))) if f is not None]

    async def fetch(self, referrer: Referrer) -> Fetched:
        """The referrer's manifest, its digest and size checked against what listed it."""
        if referrer.fetched is not None:
            return referrer.fetched
        d = referrer.descriptor
        fetched = await self.store.get_manifest(self.repo, d.digest)  # verified against the digest
        if len(fetched.raw) != d.size:
            raise ContentError(
                f"referrer {self.repo}@{d.digest} of {referrer.subject}: listed as {d.size} bytes, it is {len(fetched.raw)}"
            )
        return fetched
