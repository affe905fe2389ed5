"""The base of a native build for one platform: its manifest and config, never its layers.

Why: the native builder adds layers and changes the config of an image it never unpacks, so all
it needs of the base is the manifest (its layer descriptors are kept as they are) and the config
(kept but for what the Dockerfile changes). FROM names a registry reference, an `oci:DIR[:TAG]`
layout or `scratch`. An index gives the child for the platform, matched as containerd
normalizes platforms (arm64 and arm64/v8 are one; attestations are never picked); a single
image must be that platform, as its config says.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from manifesto.errors import ContentError, ManifestoError, NotFound, UsageError
from manifesto.oci.config import ImageConfig
from manifesto.oci.manifest import ImageManifest, parse
from manifesto.oci.platform import Platform, matches
from manifesto.oci.reference import LAYOUT_PREFIX, Reference, parse_layout
from manifesto.store.layout import LayoutStore
from manifesto.store.places import platform_image
from manifesto.store.protocol import Fetched, Store
from manifesto.store.registry.pool import Registries


@dataclass(frozen=True)
class BaseImage:
    """A resolved base: `origin` names where its blobs are (`host/repo` or `oci:DIR`); scratch
    has no origin, manifest or config."""

    label: str
    origin: str | None = None
    manifest: ImageManifest | None = None
    digest: str | None = None
    config: dict[str, Any] | None = None

    @property
    def is_scratch(self) -> bool:
        return self.manifest is None


SCRATCH = BaseImage("scratch")


class FirstReads:
    """What each FROM reference gave when a build of this run first read it, shared by the
    run's other builds (each platform builds in a thread and event loop of its own).

    Why: every platform of a publish then builds on the same base, even when its tag is pushed
    again while the run builds, and the registry serves (and counts as a pull) one read of it
    instead of one per platform. A read that failed is shared as its error (every platform
    fails as it did, at once, not one after another); one that was cancelled or broke otherwise
    is not: whoever waited on it reads for itself.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._reads: dict[str, concurrent.futures.Future[Fetched]] = {}

    async def get(self, key: str, read: Callable[[], Awaitable[Fetched]]) -> Fetched:
        with self._lock:
            shared = self._reads.get(key)
            if shared is None:
                shared = self._reads[key] = concurrent.futures.Future()
                shared.set_running_or_notify_cancel()  # a waiter that is cancelled cannot cancel it
                mine = True
            else:
                mine = False
        if not mine:
            try:
                return await asyncio.wrap_future(shared)
            except _NotShared:
                return await read()
        try:
            got = await read()
        except BaseException as e:
            with self._lock:
                del self._reads[key]
            shared.set_exception(e if isinstance(e, ManifestoError) else _NotShared())
            raise
        shared.set_result(got)
        return got


class _NotShared(Exception):
    """The first read of a reference was cancelled or broke: whoever waited on it reads for itself."""


async def resolve(
    image: str | None, platform: Platform, registries: Registries, where: object, reads: FirstReads | None = None
) -> BaseImage:
    """The base FROM names, for `platform`: scratch (None), a layout, or a registry image (read
    once per run when `reads` is given)."""
    if image is None:
        return SCRATCH
    if image.startswith(LAYOUT_PREFIX):
        layout = parse_layout(image)
        store = LayoutStore(Path(layout.path).resolve())
        try:
            fetched = await store.get_manifest("", store.reference(layout.reference, f"{where}: FROM {image}"))
        except NotFound as e:
            raise UsageError(f"{where}: FROM {image}: {e}") from None
        return await _for_platform(store, "", fetched, platform, image, f"{LAYOUT_PREFIX}{store.path}")
    try:
        ref = Reference.parse(image)
    except UsageError as e:
        raise UsageError(f"{where}: FROM: {e}") from None
    client = registries.client(ref)

    async def read() -> Fetched:
        return await client.get_manifest(ref.repository, ref.reference)

    try:
        fetched = await (reads.get(f"{ref}|{registries.insecure}", read) if reads is not None else read())
    except NotFound:
        raise UsageError(f"{where}: FROM {image}: no such image ({ref})") from None
    return await _for_platform(client, ref.repository, fetched, platform, ref.familiar, ref.name)


async def _for_platform(
    store: Store, repo: str, fetched: Fetched, platform: Platform, label: str, origin: str
) -> BaseImage:
    """The image for `platform` of what a reference gave: the matching child of an index, or
    the image itself when its config says that platform."""
    fetched, index = await platform_image(store, repo, fetched, platform, f"base image {label}", error=UsageError)
    doc = parse(fetched.raw, fetched.media_type, label if index is None else f"{label}@{fetched.digest}")
    assert isinstance(doc, ImageManifest)  # platform_image follows nested indexes
    if not doc.has_image_config:
        raise UsageError(f"base image {label} is not a container image (config {doc.config.media_type})")
    raw = await store.read_blob_bytes(repo, doc.config.digest)
    config = ImageConfig.parse(raw, f"config of base image {label}")
    if not matches(config.platform, platform):
        raise UsageError(
            f"base image {label} is for {config.platform}, not {platform}: "
            "a single-platform base can only build its own platform (use an index, or a base per platform)"
        )
    try:
        document = json.loads(raw)
    except (ValueError, RecursionError) as e:
        raise ContentError(f"config of base image {label}: {e}") from None
    diff_ids = (document.get("rootfs") or {}).get("diff_ids") or []
    if len(diff_ids) != len(doc.layers):
        raise ContentError(
            f"base image {label}: its config lists {len(diff_ids)} layers but its manifest {len(doc.layers)}"
        )
    return BaseImage(label, origin, doc, str(fetched.digest), document)
