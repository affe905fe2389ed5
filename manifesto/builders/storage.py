"""The storage driver buildah and podman build with: overlay where it works here, else vfs.

Why overlay: with vfs, every build step that runs again starts its container from a full copy
of the image's root filesystem and commits by walking it, so one changed file after a cached
`RUN` costs a copy of the whole base per remaining step and platform; overlay stacks the layers
instead. Why not always: overlay fails inside many containers (overlay on overlay), on some
filesystems, and for a user without a mount namespace, while vfs works everywhere. buildah and
podman themselves default to overlay where it works; so does manifesto, but it asks the place.

An explicit choice wins and nothing is probed: the builder's `storage_driver=` option, else
`STORAGE_DRIVER` (the variable buildah and podman honour). Otherwise (`auto`) a probe does in
a throw-away overlay store beside the build stores what a build needs: a container with one
layer under it (buildah: an image taken from a one-layer OCI archive, one command where making
and committing a layer takes four; podman: an imported one), mounted read-write, read and
written through the mount, then unmounted. overlay when every step worked, else vfs, with
the reason (a log line, `storage_driver_fallback`). A verdict from a probe that could not run
(the tool did not answer, the storage could not be written) holds for this run only; otherwise
it is kept on disk beside the stores (cache.DRIVER_VERDICT) under a key of what it depends on —
the tool's executable (path, size, mtime), the kernel release, the user and its capabilities,
the filesystem the stores are on, and the storage settings (`STORAGE_OPTS`, storage.conf) — so
each storage location and tool is probed once, and again after an upgrade. The probe runs under a lock file (cache.DRIVER_LOCK): builds
starting at once wait for one probe and read its verdict. `cache prune` forgets the verdict.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import tarfile
import tempfile
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from manifesto.builders.cache import DRIVER_LOCK, DRIVER_VERDICT, PROBE_PREFIX, file_lock, unmount_under
from manifesto.builders.runner import Captured, Runner
from manifesto.errors import BuildError, UsageError
from manifesto.log import get_logger
from manifesto.oci.platform import Platform

log = get_logger("manifesto.builders")

AUTO = "auto"
OVERLAY = "overlay"
VFS = "vfs"
ENV = "STORAGE_DRIVER"
PROBE_TIMEOUT = 60.0  # seconds for each probe command: they take a fraction of one
PROBE_IMAGE = "localhost/manifesto-probe:latest"
PROBE_FILE = "probe"
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")  # c/storage driver names: overlay, vfs, btrfs, zfs, ...
# storage.conf files buildah and podman read (root; then a user's own), besides STORAGE_OPTS.
STORAGE_CONFS = (Path("/usr/share/containers/storage.conf"), Path("/etc/containers/storage.conf"))



@dataclass(frozen=True)
class Probe:
    """A tool's probe: subcommands that make a container over one layer (`{tar}`: the layer's
    tar file, `{archive}`: an OCI archive of an image of that layer named PROBE_IMAGE,
    `{policy}`: a signature policy accepting it, `{image}`: PROBE_IMAGE), the one that mounts
    it and prints where, and the one that unmounts every container."""

    setup: tuple[tuple[str, ...], ...]
    mount: tuple[str, ...]
    unmount: tuple[str, ...]


# The archive's own signature policy: the probe must not depend on /etc/containers/policy.json.
BUILDAH_PROBE = Probe(
    setup=(("from", "--quiet", "--signature-policy", "{policy}", "--name", "manifesto-probe", "oci-archive:{archive}"),),
    mount=("mount", "manifesto-probe"),
    unmount=("umount", "--all"),
)
PODMAN_PROBE = Probe(
    setup=(("import", "--quiet", "{tar}", "{image}"), ("create", "--name", "manifesto-probe", "{image}", "/probe")),
    mount=("mount", "manifesto-probe"),
    unmount=("unmount", "--all"),
)


class NotKept(str):
    """A probe's failure that says nothing of overlay (the tool did not start or answer, the
    storage could not be written): vfs for this run, and the next run probes again."""


@dataclass(frozen=True)
class Verdict:
    """The driver a builder uses, and why (`auto: ...`, `STORAGE_DRIVER`, `storage_driver=`)."""

    driver: str
    reason: str


class DriverChoice:
    """The storage driver of a buildah-like builder (its `storage`, `executable` and `runner`):
    chosen, kept, or probed once when first needed; `probe_steps` and `probe_args` are the
    tool's (podman overrides them)."""

    storage: Path
    executable: str
    runner: Runner
    probe_steps: Probe = BUILDAH_PROBE

    def choose_driver(self, option: str | None) -> None:
        """`option` (None or auto: probe when first needed; STORAGE_DRIVER still wins)."""
        self._verdict = requested(option)
        self._verdict_lock = threading.Lock()

    @property
    def storage_driver(self) -> str:
        """The driver builds use: the explicit one, else overlay where the probe says it
        works in this storage, else vfs (probed once, when first needed)."""
        return self.storage_verdict.driver

    @property
    def storage_verdict(self) -> Verdict:
        """storage_driver with the reason it was chosen."""
        with self._verdict_lock:
            if self._verdict is None:
                self._verdict = choose(self.storage, self.executable, self.overlay_probe)
            return self._verdict

    def known_store(self, platform: Platform) -> Path | None:
        """store(platform) if the driver is known without a probe (chosen, or kept), else None."""
        with self._verdict_lock:
            self._verdict = self._verdict or kept(self.storage, self.executable)
        return self.store(platform) if self._verdict is not None else None  # type: ignore[attr-defined]

    def probe_args(self, root: Path, runroot: Path) -> list[str]:
        """Global options for the probe's throw-away overlay store at `root`."""
        return ["--root", str(root), "--runroot", str(runroot), "--storage-driver", OVERLAY]

    def overlay_probe(self, work: Path) -> str | None:
        """Whether overlay works in a store under `work` (run_probe): None, or why not."""
        return run_probe(self.runner, self.executable, self.probe_args, work, self.probe_steps)


def requested(option: str | None, environ: Mapping[str, str] | None = None) -> Verdict | None:
    """The explicit choice: `option` unless None or auto, else STORAGE_DRIVER unless unset,
    empty or auto; None when neither chooses (the probe does)."""
    environ = os.environ if environ is None else environ
    for value, source in ((option, "storage_driver="), (environ.get(ENV), ENV)):
        name = (value or "").strip().lower()
        if name and name != AUTO:
            if not _NAME.match(name):
                raise UsageError(f"{source}: {value!r} is not a storage driver name (overlay, vfs, ...)")
            return Verdict(name, f"chosen by {source}")
    return None


def choose(
    storage: Path,
    executable: str,
    probe: Callable[[Path], str | None],
    environ: Mapping[str, str] | None = None,
) -> Verdict:
    """The driver for builds in `storage` (auto): the kept verdict when its key matches, else
    what `probe` says (None: overlay works; else why not), kept for the next builder.

    `probe(work)` runs in a fresh directory `work` under `storage`, removed afterwards. Without
    the executable there is nothing to probe (vfs, not kept: once it is installed it is
    probed); a storage that cannot be written gives vfs too, and the builder's check() says
    what is wrong there.
    """
    verdict = _choose(storage, executable, probe, os.environ if environ is None else environ)
    if verdict.driver == VFS:
        log.info("storage_driver_fallback", storage=str(storage), driver=VFS, reason=verdict.reason)
    else:
        log.debug("storage_driver", storage=str(storage), driver=verdict.driver, reason=verdict.reason)
    return verdict


def _choose(storage: Path, executable: str, probe: Callable[[Path], str | None], environ: Mapping[str, str]) -> Verdict:
    try:
        storage.mkdir(parents=True, exist_ok=True)
        key = probe_key(executable, storage, environ)
    except OSError as e:
        return Verdict(VFS, f"auto: the storage {storage} cannot be used: {e.strerror or e}")
    if key is None:
        return Verdict(VFS, f"auto: {executable} is not installed, nothing to probe")
    if (kept := _read(storage, key)) is not None:
        return kept
    try:
        return _probed(storage, key, probe)
    except BuildError as e:  # the probe's lock file cannot be made
        return Verdict(VFS, f"auto: {e}")


def _probed(storage: Path, key: str, probe: Callable[[Path], str | None]) -> Verdict:
    """Probe under the storage's probe lock, unless a verdict under `key` is there by then."""
    with file_lock(storage / DRIVER_LOCK, f"the storage probe in {storage}"):
        if (kept := _read(storage, key)) is not None:  # another builder probed while this one waited
            return kept
        try:
            work = Path(tempfile.mkdtemp(prefix=PROBE_PREFIX, dir=storage))
        except OSError as e:
            return Verdict(VFS, f"auto: the storage {storage} cannot be used: {e.strerror or e}")
        try:
            why = probe(work)
        finally:
            unmount_under(work)
            shutil.rmtree(work, ignore_errors=True)
        verdict = Verdict(OVERLAY, "auto: overlay works here") if why is None else Verdict(VFS, f"auto: {why}")
        if not isinstance(why, NotKept):
            _write(storage, key, verdict)
    return verdict


def describe(name: str) -> str:
    """A builder's name as doctor shows it: with its storage driver when it keeps a layer
    store (`buildah (overlay storage)`), and why when auto fell back to vfs."""
    from manifesto.builders import get_builder
    from manifesto.builders.cache import TOOLS

    if name not in TOOLS:
        return name
    verdict = get_builder(name).storage_verdict  # type: ignore[attr-defined]
    why = verdict.reason.removeprefix("auto: ") if verdict.driver == VFS and verdict.reason.startswith("auto: ") else ""
    return f"{name} ({verdict.driver} storage{': ' + why if why else ''})"


def probe_key(executable: str, storage: Path, environ: Mapping[str, str]) -> str | None:
    """sha256 over what the verdict depends on; None when the executable is not found."""
    from manifesto.builders.buildkey import tool_identity

    tool = tool_identity(executable)
    if tool is None:
        return None
    parts = {
        "tool": tool,
        "kernel": os.uname().release,
        "uid": str(os.geteuid()),
        "capabilities": _capabilities(),  # root in a container without CAP_SYS_ADMIN cannot mount
        "filesystem": str(os.stat(storage).st_dev),
        "STORAGE_OPTS": environ.get("STORAGE_OPTS", ""),
        "CONTAINERS_STORAGE_CONF": environ.get("CONTAINERS_STORAGE_CONF", ""),
    }
    confs = [*STORAGE_CONFS, Path(environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "containers/storage.conf"]
    for conf in confs:
        try:
            parts[f"file:{conf}"] = hashlib.sha256(conf.read_bytes()).hexdigest()
        except OSError:
            continue
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def _capabilities() -> str:
    """This process's effective capabilities (CapEff of /proc/self/status), or ''."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("CapEff:"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def kept(storage: Path, executable: str, environ: Mapping[str, str] | None = None) -> Verdict | None:
    """The verdict an earlier probe kept for builds in `storage`, if it still holds; probes
    nothing and writes nothing (what `publish --dry-run` may do)."""
    try:
        key = probe_key(executable, storage, os.environ if environ is None else environ)
    except OSError:
        return None
    return _read(storage, key) if key is not None else None


def run_probe(
    runner: Runner, executable: str, global_args: Callable[[Path, Path], list[str]], work: Path, steps: Probe
) -> str | None:
    """Run the probe `steps` with `executable` in an overlay store under `work`, its global
    options `global_args(root, runroot)`: None when its container could be mounted, read and
    written, else why not.

    The runroot is a short temp directory (podman refuses one over 50 characters). Whatever the
    probe mounted the tool unmounts, and what is left is detached before its removal.
    """
    try:
        runroot = Path(tempfile.mkdtemp(prefix="manifesto-probe-"))
    except OSError as e:
        return NotKept(f"no temp directory for the probe: {e.strerror or e}")
    try:
        return _run_probe(runner, [executable, *global_args(work / "root", runroot)], work, steps)
    finally:
        unmount_under(runroot)
        shutil.rmtree(runroot, ignore_errors=True)


def _run_probe(runner: Runner, prefix: list[str], work: Path, steps: Probe) -> str | None:
    tar, archive, auth, policy, tmp = (work / n for n in ("probe.tar", "probe-oci.tar", "auth.json", "policy.json", "tmp"))
    try:
        tar.write_bytes(_probe_tar())
        archive.write_bytes(_probe_archive(_probe_tar()))
        auth.write_text("{}\n")
        policy.write_text('{"default": [{"type": "insecureAcceptAnything"}]}\n')
        tmp.mkdir()
    except OSError as e:
        return NotKept(f"the storage cannot be written: {e.strerror or e}")
    # An empty auth file of its own: with DOCKER_CONFIG naming a directory without a
    # config.json, buildah 1.28 refuses even `from scratch` ("checking authfile"). TMPDIR: where
    # an archive is unpacked, inside what the probe removes.
    env = {"REGISTRY_AUTH_FILE": str(auth), "TMPDIR": str(tmp)}

    def run(args: Sequence[str]) -> Captured:
        argv = [*prefix, *(a.format(tar=tar, archive=archive, policy=policy, image=PROBE_IMAGE) for a in args)]
        return runner.capture(argv, check=False, timeout=PROBE_TIMEOUT, env=env)

    try:
        for args in (*steps.setup, steps.mount):
            done = run(args)
            if done.returncode < 0 or runner.cancelled:  # killed (Ctrl-C): it says nothing of overlay
                return NotKept(f"overlay `{args[0]}` was stopped")
            if done.returncode != 0:
                return f"overlay `{args[0]}` failed: {done.first_error_line()}"
        lines = done.stdout.strip().splitlines()
        where = Path(lines[-1].strip()) if lines else work / "nowhere"
        try:
            shown = (where / PROBE_FILE).read_bytes() if (where / PROBE_FILE).is_file() else None
            if shown != PROBE_FILE.encode():
                return f"the overlay mount {where} does not show its layer's file"
            (where / "written").write_bytes(b"")
        except OSError as e:
            return f"the overlay mount {where} cannot be read and written: {e.strerror or e}"
        return None
    except BuildError as e:  # the tool did not start or did not answer
        return NotKept(e)
    finally:
        try:
            run(steps.unmount)
        except BuildError:
            pass


def _probe_tar() -> bytes:
    """A layer of one file, PROBE_FILE, holding its own name."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo(PROBE_FILE)
        info.size = len(PROBE_FILE)
        info.mode = 0o644
        tar.addfile(info, io.BytesIO(PROBE_FILE.encode()))
    return buf.getvalue()


def _probe_archive(layer: bytes) -> bytes:
    """An OCI archive (a tarred image layout) of one image named PROBE_IMAGE whose one layer
    is `layer`, for this host's platform (else the tool warns that it does not match)."""
    from manifesto.builders.binfmt import host_platform_of
    from manifesto.oci import canonical
    from manifesto.oci.mediatype import OCI_CONFIG, OCI_LAYER, OCI_MANIFEST
    from manifesto.store.layout import REF_NAME

    host = host_platform_of()
    files: dict[str, bytes] = {"oci-layout": canonical.dumps({"imageLayoutVersion": "1.0.0"})}

    def blob(media_type: str, data: bytes) -> dict[str, object]:
        digest = hashlib.sha256(data).hexdigest()
        files[f"blobs/sha256/{digest}"] = data
        return {"mediaType": media_type, "digest": f"sha256:{digest}", "size": len(data)}

    layer_blob = blob(OCI_LAYER, layer)
    platform = {"architecture": host.architecture, "os": host.os} if host else {"architecture": "amd64", "os": "linux"}
    if host and host.variant:
        platform["variant"] = host.variant
    config = {**platform, "rootfs": {"type": "layers", "diff_ids": [layer_blob["digest"]]}}
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": blob(OCI_CONFIG, canonical.dumps(config)),
        "layers": [layer_blob],
    }
    entry = {**blob(OCI_MANIFEST, canonical.dumps(manifest)), "annotations": {REF_NAME: PROBE_IMAGE}}
    files["index.json"] = canonical.dumps({"schemaVersion": 2, "manifests": [entry]})
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _read(storage: Path, key: str) -> Verdict | None:
    """The kept verdict when it was made under `key`."""
    try:
        doc = json.loads((storage / DRIVER_VERDICT).read_text())
        if doc["key"] == key and isinstance(doc["driver"], str) and _NAME.match(doc["driver"]):
            return Verdict(doc["driver"], str(doc["reason"]))
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None


def _write(storage: Path, key: str, verdict: Verdict) -> None:
    """Keep `verdict` whole or not at all (a temp file renamed over the old one)."""
    body = json.dumps({"key": key, "driver": verdict.driver, "reason": verdict.reason}, indent=1) + "\n"
    try:
        fd, tmp = tempfile.mkstemp(prefix=".driver-", dir=storage)
        with os.fdopen(fd, "w") as f:
            f.write(body)
        os.replace(tmp, storage / DRIVER_VERDICT)
    except OSError as e:  # not kept: the next builder probes again
        log.info("storage_driver_not_kept", storage=str(storage), reason=str(e.strerror or e))
