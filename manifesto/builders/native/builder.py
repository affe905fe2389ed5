"""The native builder: a Dockerfile that needs no execution, written as an image by manifesto itself.

Why: most release images only add files to a base and set config; for those, no daemon, no
builder tool and no qemu are needed. Per platform, the builder reads the Dockerfile's FROM,
fetches the base's manifest and config for that platform (base_image.py), interprets the
instructions (instructions.py), writes one layer per COPY/ADD and per WORKDIR that creates a
directory (layer.py), and writes the new config and manifest into the OCI layout at
request.output under request.tag, like every builder; the result is verified against its
platform by the same check buildah's builds go through (base.load_built).

Design decisions:
- Base layers are never downloaded to build. The layout holds the new layers, the config and
  the manifest; BuiltImage.base names where the base's blobs are, and copies take them from
  there (store/overlay.py, transfer.py): mounted within one registry, streamed once otherwise.
- So the base's filesystem is unknown. Every ancestor of a COPY destination (when the base is
  not scratch), a destination directory without `--chown` (same condition) and every directory
  this build created earlier are treated as existing directories: no entries are written for
  them, so the base's modes and owners stay (`COPY x /tmp/` keeps /tmp 1777), and a missing one
  is created 0755 0:0 by the tar applier, as docker creates it. With `--chown` the destination
  directory is written with that owner, as docker creates a missing one (an existing one of the
  base gets that owner and 0755). A destination WITHOUT a trailing slash is a file
  unless this build created it as a directory (WORKDIR, an earlier COPY): `COPY app
  /usr/local/bin/` needs its slash to copy into a directory of the base. A WORKDIR's own
  directory is written (0755, the numeric USER or 0:0), as both buildkit and buildah create it.
- The config is the base's config document with `config` replaced by what the Dockerfile made
  of it, `history` and `rootfs.diff_ids` appended, `created` (SOURCE_DATE_EPOCH or now),
  `author` (MAINTAINER) and the platform's os/architecture/variant set; every other field is
  kept. We author it, so it is canonical JSON (oci/canonical.py).
- Media types follow request.media_format: "oci" gives OCI manifest, config and layer types;
  "docker" Docker schema 2. The base's layer descriptors are kept as its manifest has them,
  their media types converted when the base is in the other format (same bytes).
- The Builder protocol is synchronous: build() is the documented sync wrapper that runs the
  async core with asyncio.run (in a thread of its own when the caller already runs a loop).
  cancel() stops running builds between steps and cancels their tasks.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from manifesto.builders.base import (
    MEDIA_FORMATS,
    BuildRequest,
    BuiltImage,
    Problem,
    load_built,
    requested_format,
    validate_request,
)
from manifesto.builders.native import base_image
from manifesto.builders.native.context import Context
from manifesto.builders.native.instructions import interpret, read_base
from manifesto.builders.native.layer import Layer, write_dirs_layer, write_layer
from manifesto.builders.native.steps import ConfigStep, CopyStep
from manifesto.errors import BuildError, ContentError, ManifestoError, UsageError
from manifesto.fileio import write_atomic
from manifesto.log import get_logger
from manifesto.oci import canonical, mediatype
from manifesto.oci.descriptor import Descriptor
from manifesto.oci.digest import Digest
from manifesto.oci.manifest import MAX_MANIFEST_BYTES
from manifesto.store.layout import LayoutStore
from manifesto.store.registry.pool import Registries

log = get_logger("manifesto.builders")

HISTORY_COMMENT = "buildkit.dockerfile.v0"  # what docker records on each Dockerfile step's history entry
OCI_NONDISTRIBUTABLE = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
# A base layer's media type in the other format (same bytes); absent: no equivalent there.
_TO_DOCKER = {
    mediatype.OCI_LAYER_GZIP: mediatype.DOCKER_LAYER,
    OCI_NONDISTRIBUTABLE: mediatype.DOCKER_FOREIGN_LAYER,
    mediatype.DOCKER_LAYER: mediatype.DOCKER_LAYER,
    mediatype.DOCKER_FOREIGN_LAYER: mediatype.DOCKER_FOREIGN_LAYER,
}
_TO_OCI = {
    mediatype.DOCKER_LAYER: mediatype.OCI_LAYER_GZIP,
    mediatype.DOCKER_FOREIGN_LAYER: OCI_NONDISTRIBUTABLE,
}


@dataclass(frozen=True)
class Types:
    """The media types of one image format: manifest, config, new layers."""

    manifest: str
    config: str
    layer: str

    @classmethod
    def of(cls, fmt: str) -> Types:
        if fmt == "docker":
            return cls(mediatype.DOCKER_MANIFEST, mediatype.DOCKER_CONFIG, mediatype.DOCKER_LAYER)
        return cls(mediatype.OCI_MANIFEST, mediatype.OCI_CONFIG, mediatype.OCI_LAYER_GZIP)


def rfc3339(seconds: int) -> str:
    """A Unix time as the RFC 3339 UTC text image configs carry."""
    return datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parents(path: str) -> list[str]:
    """The ancestors of an absolute image path, outermost first ("/" left out)."""
    parts = [p for p in path.strip("/").split("/") if p]
    return ["/" + "/".join(parts[:k]) for k in range(1, len(parts))]


def base_layer(descriptor: Descriptor, fmt: str, label: str) -> Descriptor:
    """A base layer's descriptor as the new manifest lists it: kept, its type in `fmt`."""
    table = _TO_DOCKER if fmt == "docker" else _TO_OCI
    if fmt == "oci" and descriptor.media_type not in table:
        return descriptor  # already an OCI type (or one no conversion applies to)
    converted = table.get(descriptor.media_type)
    if converted is None:
        raise UsageError(
            f"base image {label}: layer media type {descriptor.media_type} has no Docker equivalent; use format: oci"
        )
    return descriptor.with_(media_type=converted)


class NativeBuilder:
    """Builds Dockerfiles that need no execution by writing the image itself; thread-safe."""

    name = "native"

    def __init__(self, runner: object = None, *, clock: Callable[[], float] = time.time):
        self.clock = clock  # `now` for history and config times without SOURCE_DATE_EPOCH
        self._lock = threading.Lock()
        self._cancelled = threading.Event()
        self._running: set[tuple[asyncio.AbstractEventLoop, asyncio.Task[Any]]] = set()

    def __repr__(self) -> str:
        return "NativeBuilder()"

    # ---- the Builder protocol ------------------------------------------------------------

    def check(self) -> list[Problem]:
        """Nothing to install but the Dockerfile parser this package depends on."""
        if importlib.util.find_spec("dockerfile") is None:
            return [Problem("the Python package `dockerfile` is missing: the native builder parses Dockerfiles with it",
                            fix="pip install dockerfile")]
        return []

    def cancel(self) -> None:
        """Stop every running build between steps (and cancel its tasks); later builds stop at once."""
        self._cancelled.set()
        with self._lock:
            running = list(self._running)
        for loop, task in running:
            loop.call_soon_threadsafe(task.cancel)

    def build(self, request: BuildRequest, on_line: Callable[[str], None]) -> BuiltImage:
        """Build `request` (sync wrapper): the async core runs under asyncio.run, in a thread of
        its own when this thread already runs an event loop. A failed build leaves no layout
        behind that was not there before."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return self._run(request, on_line)
        out: dict[str, Any] = {}

        def target() -> None:
            try:
                out["built"] = self._run(request, on_line)
            except BaseException as e:  # handed to the caller's thread
                out["error"] = e

        thread = threading.Thread(target=target, name="native-build", daemon=True)
        thread.start()
        thread.join()
        if "error" in out:
            raise out["error"]
        return out["built"]

    # ---- the build ---------------------------------------------------------------------------

    def _run(self, request: BuildRequest, on_line: Callable[[str], None]) -> BuiltImage:
        if self._cancelled.is_set():
            raise BuildError(f"{request.platform}: build cancelled")
        request = validate_request(request)
        existed = request.output.exists()
        try:
            return asyncio.run(self._guarded(request, on_line))
        except asyncio.CancelledError:
            self._remove(request.output, existed)
            raise BuildError(f"{request.platform}: build cancelled") from None
        except BaseException:
            self._remove(request.output, existed)
            raise

    async def _guarded(self, request: BuildRequest, on_line: Callable[[str], None]) -> BuiltImage:
        task = asyncio.current_task()
        assert task is not None
        key = (asyncio.get_running_loop(), task)
        with self._lock:
            self._running.add(key)
        try:
            if self._cancelled.is_set():
                raise asyncio.CancelledError()
            return await self._build(request, on_line)
        finally:
            with self._lock:
                self._running.discard(key)

    def _step_done(self) -> None:
        if self._cancelled.is_set():
            raise asyncio.CancelledError()

    async def _build(self, request: BuildRequest, on_line: Callable[[str], None]) -> BuiltImage:
        fmt = requested_format(request)
        if request.target:
            raise UsageError(f"--target {request.target}: the native builder builds the one stage of a Dockerfile")
        types = Types.of(fmt)
        platform = request.platform
        file = _display_name(request.dockerfile, request.context)
        try:
            text = request.dockerfile.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise UsageError(f"cannot read {request.dockerfile}: {e}") from None
        args = dict(request.args)
        log.info("build_start", builder=self.name, platform=str(platform), output=str(request.output), format=fmt)
        base = read_base(text, file, args, platform)
        async with Registries(insecure=request.insecure) as registries:
            image = await base_image.resolve(base.image, platform, registries, base.where)
        on_line(f"FROM {image.label}" + (f"@{image.digest}" if image.digest else ""))
        base_config = image.config or {}
        recipe = interpret(text, file, args, platform, base_config.get("config"))
        self._step_done()

        epoch = request.source_date_epoch
        now = epoch if epoch is not None else int(self.clock())
        created = rfc3339(now)
        store = LayoutStore(request.output, create=True)
        blobs = store.blob_path(Digest.of(b"")).parent
        context = Context.load(request.context, request.dockerfile)
        made: set[str] = set()  # directories this build created
        history: list[dict[str, Any]] = []
        layers: list[Layer] = []
        for n, step in enumerate(recipe.steps, 1):
            on_line(f"STEP {n}/{len(recipe.steps)}: {step.created_by}")
            entry: dict[str, Any] = {"created": created, "created_by": step.created_by, "comment": HISTORY_COMMENT}
            if isinstance(step, CopyStep):
                known = made | (set() if image.is_scratch else set(parents(step.dest)))
                if not image.is_scratch and step.chown is None and _makes_directory(context, step, made):
                    known.add("/" + step.dest.strip("/"))  # perhaps the base's (/tmp): left as the base has it
                layers.append(await asyncio.to_thread(write_layer, context, step, blobs, epoch, existing_dirs=known))
                made.update(parents(step.dest))
                if _makes_directory(context, step, made):
                    made.add("/" + step.dest.strip("/"))
            elif isinstance(step, ConfigStep) and step.mkdir:
                known = made | (set() if image.is_scratch else set(parents(step.mkdir)))
                layer = await asyncio.to_thread(
                    write_dirs_layer, step.mkdir, step.owner, blobs, now, where=step.where, existing_dirs=known
                )
                layers.append(layer)
                made.update([*parents(step.mkdir), step.mkdir])
            else:
                entry["empty_layer"] = True
            history.append(entry)
            self._step_done()

        config = _config(base_config, recipe.config or {}, request, created, history, layers, recipe.author)
        config_raw = canonical.dumps(config)
        config_digest = Digest.of(config_raw)
        write_atomic(store.blob_path(config_digest), config_raw)
        base_layers = [base_layer(d, fmt, image.label) for d in (image.manifest.layers if image.manifest else ())]
        manifest = {
            "schemaVersion": 2,
            "mediaType": types.manifest,
            "config": Descriptor(types.config, config_digest, len(config_raw)).to_dict(),
            "layers": [d.to_dict() for d in base_layers]
            + [Descriptor(types.layer, layer.digest, layer.size).to_dict() for layer in layers],
        }
        raw = canonical.dumps(manifest)
        if len(raw) > MAX_MANIFEST_BYTES:
            raise ContentError(f"{platform}: the manifest would be {len(raw)} bytes; registries refuse over 4 MiB")
        store.put_manifest_sync(request.tag, raw, types.manifest, absent={d.digest for d in base_layers})
        built = load_built(request, self.name)
        if built.media_type != MEDIA_FORMATS[fmt]:
            raise ContentError(f"{platform}: {fmt} format was requested, but the manifest is {built.media_type}")
        log.info("build_done", builder=self.name, platform=str(platform), digest=str(built.digest))
        on_line(f"wrote {built.digest} ({len(base_layers)} base layer(s) + {len(layers)} new)")
        return replace(built, base=image.origin if base_layers else None)

    @staticmethod
    def _remove(output: Path, existed: bool) -> None:
        """Remove a layout this build created, unless another build has since tagged into it."""
        if existed:
            return
        try:
            tagged = bool(LayoutStore(output).tags())
        except (ManifestoError, OSError):
            tagged = False
        if not tagged:
            shutil.rmtree(output, ignore_errors=True)


def _config(
    base: dict[str, Any],
    inner: dict[str, Any],
    request: BuildRequest,
    created: str,
    history: list[dict[str, Any]],
    layers: list[Layer],
    author: str | None,
) -> dict[str, Any]:
    """The new image config: the base's document, with what the build changes."""
    doc = dict(base)
    platform = request.platform
    doc["architecture"], doc["os"] = platform.architecture, platform.os
    if platform.variant:
        doc["variant"] = platform.variant
    else:
        doc.pop("variant", None)
    inner = dict(inner)
    if request.labels:
        inner["Labels"] = dict(sorted({**(inner.get("Labels") or {}), **request.labels}.items()))
    doc["config"] = inner
    doc["created"] = created
    if author is not None:
        doc["author"] = author
    doc["history"] = [*(base.get("history") or []), *history]
    rootfs = dict(base.get("rootfs") or {})
    rootfs["type"] = "layers"
    rootfs["diff_ids"] = [*(rootfs.get("diff_ids") or []), *(str(layer.diff_id) for layer in layers)]
    doc["rootfs"] = rootfs
    return doc


def _makes_directory(context: Context, step: CopyStep, made: set[str]) -> bool:
    """True when a COPY/ADD leaves its destination a directory: a trailing "/", a directory
    created earlier, several sources or a directory source (its contents copied into dest)."""
    dest = "/" + step.dest.strip("/")
    if step.dest.endswith("/") or dest in made or len(step.sources) > 1:
        return True
    return any(s.is_dir for s in context.sources(step))


def _display_name(dockerfile: Path, context: Path) -> str:
    """The Dockerfile as messages name it: relative to the context when inside it."""
    try:
        return str(dockerfile.relative_to(context))
    except ValueError:
        return os.path.relpath(dockerfile)
