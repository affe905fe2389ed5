"""Verify what a reference holds: every child there with all its blobs, each the platform it claims.

Why: a list can point at children a registry lost or never got (a garbage collection, a mirror
that copied only the index, a push cut short), and an entry can name a platform its config
denies; `docker pull` only finds out on the machine of that platform. Here each child's
manifest is read by digest (its bytes verified), every blob is asked for with a HEAD (bounded,
concurrently; non-distributable layers live elsewhere and are not asked for), its config is
read and compared with the entry's platform by the one rule for that (lists.rules.config_problem),
and, given a matrix's platforms, the index must hold exactly those. Attestations are listed and
skipped. With `run`, each platform also runs (builders/trial.py) and what it prints must be a
machine of that platform. Nothing is written anywhere.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from manifesto import tasks
from manifesto.errors import ManifestoError, NotFound, UsageError
from manifesto.lists import rules
from manifesto.lists.entry import Entry
from manifesto.oci import mediatype
from manifesto.oci.config import ImageConfig
from manifesto.oci.descriptor import Descriptor
from manifesto.oci.digest import Digest
from manifesto.oci.manifest import ImageIndex, ImageManifest, parse
from manifesto.oci.platform import Platform, matches, pick
from manifesto.oci.reference import Reference
from manifesto.store.places import Location, manifest_reference, open_store
from manifesto.store.protocol import Store
from manifesto.store.registry.pool import Registries

OK, FAILED, MISSING, SKIPPED = "ok", "failed", "missing", "skipped"
BLOB_HEADS = 8  # blob HEADs in flight at once, over every child

# (image reference by digest, platform) -> what the image printed; raises ManifestoError
Run = Callable[[Reference, Platform], str]


@dataclass(frozen=True)
class Row:
    """One platform's verdict: `status` OK, FAILED, MISSING (in the matrix, not the index) or
    SKIPPED (an attestation, a nested index); `notes` say what was found or what is wrong."""

    platform: str
    digest: str
    status: str
    notes: tuple[str, ...] = ()
    output: str | None = None  # what `run` printed
    claimed: Platform | None = field(default=None, compare=False)  # the platform checked

    @property
    def ok(self) -> bool:
        return self.status in (OK, SKIPPED)


@dataclass(frozen=True)
class Report:
    """The verdict on one reference: a row per entry (and per matrix platform it lacks)."""

    ref: str
    digest: str
    media_type: str
    rows: tuple[Row, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.rows)

    @property
    def failed(self) -> tuple[Row, ...]:
        return tuple(r for r in self.rows if not r.ok)


async def verify(
    registries: Registries,
    ref: Location,
    *,
    platforms: Sequence[Platform] | None = None,
    run: Run | None = None,
) -> Report:
    """Check `ref` (an index or one image, in a registry or an OCI layout); `platforms`: the
    matrix it must hold exactly.

    `run` runs each verified platform's image, one at a time in a thread (they may run under
    qemu, which is slow and hungry); its output must be that platform's machine (fits()). It
    pulls from a registry: a layout cannot be run.
    """
    if run is not None and not isinstance(ref, Reference):
        raise UsageError(f"{ref}: running the images needs a registry reference, not an OCI layout")
    store, repo = open_store(registries, ref)
    fetched = await store.get_manifest(repo, manifest_reference(ref))
    doc = parse(fetched.raw, fetched.media_type, ref.familiar)
    heads = asyncio.Semaphore(BLOB_HEADS)
    if isinstance(doc, ImageIndex):
        descriptors = list(doc.manifests)
    else:
        descriptors = [fetched.descriptor()]
    rows = list(await tasks.gather(*(_child(store, repo, ref, d, heads, isinstance(doc, ImageIndex)) for d in descriptors)))
    if platforms is not None:
        rows = _against_matrix(rows, descriptors, platforms)
    if run is not None:
        assert isinstance(ref, Reference)
        for i, row in enumerate(rows):
            if row.status == OK and row.claimed is not None:
                rows[i] = await asyncio.to_thread(_run_one, run, ref, row)
    return Report(str(ref), str(fetched.digest), fetched.media_type, tuple(rows))


async def _child(store: Store, repo: str, ref: Location, d: Descriptor, heads: asyncio.Semaphore, listed: bool) -> Row:
    """One entry: its manifest by digest, every blob HEADed, its config against its platform."""
    name = str(d.platform) if d.platform is not None else "?"
    if d.is_attestation:
        return Row("attestation", str(d.digest), SKIPPED, ("an attestation: not a platform, not checked",))
    try:
        got = await store.get_manifest(repo, str(d.digest))
    except NotFound:
        return Row(name, str(d.digest), FAILED, ("the manifest is not in the repository",))
    notes: list[str] = []
    if listed and (got.media_type, len(got.raw)) != (d.media_type, d.size):
        notes.append(f"the index says {d.media_type}, {d.size} bytes; served as {got.media_type}, {len(got.raw)} bytes")
    child = parse(got.raw, got.media_type, f"{ref.familiar}@{d.digest}")
    if isinstance(child, ImageIndex):
        return Row(name, str(d.digest), SKIPPED, ("a nested index: verify it by its digest",))
    assert isinstance(child, ImageManifest)
    blobs = [b for b in child.blobs() if not mediatype.is_nondistributable(b.media_type)]

    async def head(blob: Descriptor) -> int | None:
        async with heads:
            return await store.blob_size(repo, blob.digest)

    sizes = await tasks.gather(*(head(b) for b in blobs))
    for blob, size in zip(blobs, sizes):
        if size is None:
            notes.append(f"blob {blob.digest} is missing")
        elif size != blob.size:
            notes.append(f"blob {blob.digest} is {size} bytes, not {blob.size}")
    config_platform = None
    if not child.has_image_config:
        notes.append(f"not a container image ({child.artifact})")
    elif sizes[0] is not None:
        raw = await store.read_blob_bytes(repo, child.config.digest)
        config_platform = ImageConfig.parse(raw, f"config of {ref.familiar}@{d.digest}", require_platform=False).platform
        if config_platform is None:
            notes.append("its config names no os/architecture")
    claimed = d.platform if listed else config_platform
    problem = rules.config_problem(Entry(None, d.with_(platform=claimed), got.raw, config_platform))
    if problem is not None:
        notes.append(problem.message)
    if claimed is None and listed:
        notes.append("the index gives it no platform")
    name = str(claimed) if claimed is not None else name
    if notes:
        return Row(name, str(d.digest), FAILED, tuple(notes))
    return Row(name, str(d.digest), OK, (f"{len(blobs)} blobs present", f"config says {config_platform}"), claimed=claimed)


def _against_matrix(rows: list[Row], descriptors: list[Descriptor], platforms: Sequence[Platform]) -> list[Row]:
    """Rows for an index that must hold exactly `platforms`: extra entries fail, and each
    platform it lacks gets a MISSING row."""
    out = []
    images = [d for d in descriptors if not d.is_attestation]
    for row, d in zip(rows, descriptors):
        if not d.is_attestation and not any(d.platform is not None and matches(d.platform, p) for p in platforms):
            row = Row(row.platform, row.digest, FAILED, (*row.notes, "not a platform of the matrix"))
        out.append(row)
    for p in platforms:
        if not pick(images, p):
            out.append(Row(str(p), "-", MISSING, ("a platform of the matrix, not in the index",)))
    return out


def _run_one(run: Run, ref: Reference, row: Row) -> Row:
    """Run one verified platform's image (by digest); its output must fit the platform."""
    platform = row.claimed
    assert platform is not None
    try:
        output = run(ref.with_digest(Digest.parse(row.digest)), platform)
    except ManifestoError as e:
        first = (str(e).splitlines() or [type(e).__name__])[0]
        return Row(row.platform, row.digest, FAILED, (*row.notes, f"did not run: {first}"))
    said = (output.strip().splitlines() or [""])[-1].strip()
    if not fits(said, platform):
        return Row(row.platform, row.digest, FAILED, (*row.notes, f"ran, but printed {said!r}"), said)
    note = f"runs: {said}"
    if Platform.parse(said).architecture != platform.architecture:  # fits() let a native 32-bit run pass
        note += f" (run natively: this host cannot tell {platform} from its own {said})"
    return Row(row.platform, row.digest, OK, (*row.notes, note), said)


# a 32-bit platform a 64-bit CPU runs natively, without qemu: there `uname -m` says the CPU's
# name (no runtime here sets the linux32 personality), so it cannot tell the two apart
_NATIVE_32 = {"386": "amd64", "arm": "arm64"}


def fits(machine: str, platform: Platform, host: str | None = None) -> bool:
    """Whether a machine name (`uname -m`: x86_64, aarch64, armv7l, ppc64le, s390x) is
    `platform`, by oci.platform's aliases. An ARM machine runs the older ARM variants too
    (armv7l runs arm/v6), as a v8 CPU (or qemu) does. `host` (default: this machine's name):
    a 32-bit image run natively on its 64-bit host says the host's name, which fits then."""
    try:
        ran = Platform.parse(machine)
    except ManifestoError:
        return False
    if platform.architecture == "arm" and ran.architecture == "arm":
        return (ran.variant or "v7") >= (platform.variant or "v7")
    if _NATIVE_32.get(platform.architecture) == ran.architecture and _same_machine(machine, host):
        return True
    return matches(ran.with_(os=platform.os, variant=None), platform.with_(variant=None))


def _same_machine(machine: str, host: str | None) -> bool:
    """Whether `machine` names the CPU this runs on (`host`, default os.uname's)."""
    host = host if host is not None else os.uname().machine
    try:
        return Platform.parse(machine).architecture == Platform.parse(host).architecture
    except ManifestoError:
        return False
