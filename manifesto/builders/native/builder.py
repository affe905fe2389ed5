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
- So the base's filesystem is unknown, and a base's directory must never be rewritten. On a
  base other than scratch, a COPY/ADD layer holds no entry for a directory the step only
  implies (its destination, their parents, an archive's missing parents; layer.py): the base's
  mode and owner stay (`COPY --chown=1000 x /tmp/` keeps /tmp 1777 0:0), and a missing one is
  made 0755 0:0 by the tar applier (docker would give a missing destination --chown's owner:
  the one difference, documented). A file copied to a destination WITHOUT a trailing slash
  goes inside it when the destination is a directory the build knows of — one it made
  (WORKDIR, an earlier COPY), one of the usual FHS directories every Linux base has
  (/usr/local/bin, /etc, /opt, ...), or the base config's WorkingDir or a Volume — and is
  written at that path otherwise, docker's documented rule for a destination that does not
  exist (base_directories). On scratch every implied directory is written (0755, the step's
  owner). A WORKDIR's own directory is written (0755, the numeric USER or 0:0), as both
  buildkit and buildah create it.
- The config is the base's config document with `config` replaced by what the Dockerfile made
  of it, `history` and `rootfs.diff_ids` appended, `created` (SOURCE_DATE_EPOCH or now),
  `author` (MAINTAINER) and the platform's os/architecture/variant set; every other field is
  kept. We author it, so it is canonical JSON (oci/canonical.py).
- Media types follow request.media_format: "oci" gives OCI manifest, config and layer types;
  "docker" Docker schema 2. The base's layer descriptors are kept as its manifest has them,
  their media types converted when the base is in the other format (same bytes).
- The Builder protocol is synchronous: build() is the documented sync wrapper that runs the
  async core with asyncio.run (in a thread of its own when the caller already runs a loop).
  cancel() sets each running build's own flag (checked between steps, and by the layer writer
  per entry and per chunk) and cancels its tasks; a build started afterwards runs as usual.
- Layers are written into a temporary directory inside the output layout and renamed into
  blobs/sha256 once complete, so a crash never leaves a partial file among the blobs.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import posixpath
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from manifesto import tasks
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
from manifesto.builders.native.steps import ConfigStep, CopyStep, Recipe
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

TMP_PREFIX = ".tmp-"  # a directory in the output layout: layers being written, renamed into blobs/sha256 when done
HISTORY_COMMENT = "buildkit.dockerfile.v0"  # what docker records on each Dockerfile step's history entry
OCI_NONDISTRIBUTABLE = mediatype.OCI_NONDISTRIBUTABLE_GZIP
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


# Directories every Linux base image has (the FHS): a file copied to one of them without a
# trailing "/" goes inside it, as docker would do on any real base.
USUAL_DIRECTORIES = frozenset(
    "/ /bin /etc /home /lib /opt /root /run /sbin /srv /tmp /usr /usr/bin /usr/lib /usr/local "
    "/usr/local/bin /usr/local/lib /usr/local/sbin /usr/local/share /usr/sbin /usr/share /var "
    "/var/lib /var/log /var/tmp".split()
)


def base_directories(config: dict[str, Any]) -> set[str]:
    """Directories a base is known to have without unpacking it: the usual ones, its WorkingDir
    and Volumes, and their parents (COPY f /usr/local/bin copies INTO it, as docker does there)."""
    inner = config.get("config") if isinstance(config.get("config"), dict) else {}
    named = [inner.get("WorkingDir") or "/", *(inner.get("Volumes") or {})]
    known = set(USUAL_DIRECTORIES)
    for path in named:
        if isinstance(path, str) and path.startswith("/"):
            path = posixpath.normpath(path)
            known.update([*parents(path), path])
    return known


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

    def __init__(
        self, runner: object = None, *, clock: Callable[[], float] = time.time, bases: base_image.FirstReads | None = None
    ):
        self.clock = clock  # `now` for history and config times without SOURCE_DATE_EPOCH
        self.bases = bases  # a run's first read of each FROM, shared by its platforms (jobs/builds.py)
        self._lock = threading.Lock()
        self._running: set[_Run] = set()

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
        """Stop every running build: between steps, inside a layer being written (within one
        file or one chunk), and its tasks. Builds started later run as usual."""
        with self._lock:
            running = list(self._running)
        for run in running:
            run.stop.set()
            with self._lock:
                task = run.task
            if task is not None and run.loop is not None:
                run.loop.call_soon_threadsafe(task.cancel)

    def build(self, request: BuildRequest, on_line: Callable[[str], None]) -> BuiltImage:
        """Build `request` (sync wrapper): the async core runs under asyncio.run, in a thread of
        its own when this thread already runs an event loop. A failed build leaves no layout
        behind that was not there before."""
        return tasks.off_loop(lambda: self._run(request, on_line))

    # ---- the build ---------------------------------------------------------------------------

    def _run(self, request: BuildRequest, on_line: Callable[[str], None]) -> BuiltImage:
        request = validate_request(request)
        existed = request.output.exists()
        run = _Run()
        with self._lock:
            self._running.add(run)
        try:
            return asyncio.run(self._guarded(run, request, on_line))
        except BaseException as e:
            self._remove(request.output, existed)
            if run.stop.is_set() and isinstance(e, (asyncio.CancelledError, BuildError)):
                raise BuildError(f"{request.platform}: build cancelled") from None
            raise
        finally:
            with self._lock:
                self._running.discard(run)

    async def _guarded(self, run: _Run, request: BuildRequest, on_line: Callable[[str], None]) -> BuiltImage:
        with self._lock:
            run.loop, run.task = asyncio.get_running_loop(), asyncio.current_task()
        _step_done(run.stop)  # a cancel() before the task was known
        return await self._build(request, on_line, run.stop)

    async def _build(self, request: BuildRequest, on_line: Callable[[str], None], stop: threading.Event) -> BuiltImage:
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
            image = await base_image.resolve(base.image, platform, registries, base.where, self.bases)
        on_line(f"FROM {image.label}" + (f"@{image.digest}" if image.digest else ""))
        base_config = image.config or {}
        recipe = interpret(text, file, args, platform, base_config.get("config"))
        _step_done(stop)

        epoch = request.source_date_epoch
        now = epoch if epoch is not None else int(self.clock())
        created = rfc3339(now)
        store = LayoutStore(request.output, create=True)
        blobs = store.blob_path(Digest.of(b"")).parent
        # Beside blobs/, so a crash leaves nothing half-written in it; same filesystem, for the rename.
        tmp = Path(tempfile.mkdtemp(prefix=TMP_PREFIX, dir=request.output))
        try:
            layers, history = await self._steps(recipe, request, image, blobs, tmp, created, now, stop, on_line)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

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

    async def _steps(
        self,
        recipe: Recipe,
        request: BuildRequest,
        image: base_image.BaseImage,
        blobs: Path,
        tmp: Path,
        created: str,
        now: int,
        stop: threading.Event,
        on_line: Callable[[str], None],
    ) -> tuple[list[Layer], list[dict[str, Any]]]:
        """Carry out the steps: one layer per COPY/ADD and per WORKDIR that makes a directory, one
        history entry per step."""
        epoch = request.source_date_epoch
        context = Context.load(request.context, request.dockerfile)
        made: set[str] = set() if image.is_scratch else base_directories(image.config or {})  # and the base's, known
        history: list[dict[str, Any]] = []
        layers: list[Layer] = []
        for n, step in enumerate(recipe.steps, 1):
            on_line(f"STEP {n}/{len(recipe.steps)}: {step.created_by}")
            entry: dict[str, Any] = {"created": created, "created_by": step.created_by, "comment": HISTORY_COMMENT}
            if isinstance(step, CopyStep):
                layer = await asyncio.to_thread(
                    write_layer, context, step, blobs, epoch, existing_dirs=made, base_unknown=not image.is_scratch,
                    tmp_dir=tmp, stop=stop,
                )  # fmt: skip
                layers.append(layer)
                dest = "/" + step.dest.strip("/")
                made.update(parents(dest))
                if layer.into_dir:
                    made.add(dest)
                else:
                    made.discard(dest)  # a file now, whatever was there
            elif isinstance(step, ConfigStep) and step.mkdir:
                known = made | (set() if image.is_scratch else set(parents(step.mkdir)))
                layer = await asyncio.to_thread(
                    write_dirs_layer, step.mkdir, step.owner, blobs, now, where=step.where, existing_dirs=known,
                    tmp_dir=tmp,
                )
                layers.append(layer)
                made.update([*parents(step.mkdir), step.mkdir])
            else:
                entry["empty_layer"] = True
            history.append(entry)
            _step_done(stop)
        return layers, history

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


class _Run:
    """One running build: the flag cancel() sets, and its event loop and task once known."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.task: asyncio.Task[Any] | None = None


def _step_done(stop: threading.Event) -> None:
    if stop.is_set():
        raise asyncio.CancelledError()


def _display_name(dockerfile: Path, context: Path) -> str:
    """The Dockerfile as messages name it: relative to the context when inside it."""
    try:
        return str(dockerfile.relative_to(context))
    except ValueError:
        return os.path.relpath(dockerfile)
