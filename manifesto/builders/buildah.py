"""Build with buildah: `buildah build --platform ...` straight into an OCI image layout.

Made to work unprivileged-container style on a plain host as root: private storage roots in
manifesto's cache (never the system's /var/lib/containers), the overlay storage driver where a
probe shows it works there and vfs elsewhere (storage.py: overlay fails inside many containers
and on some filesystems; vfs works everywhere, at the cost of a full copy of the root
filesystem for each step it runs) and chroot isolation (no runc/crun or cgroups needed).

Builds cache their layers (`--layers`) in a persistent store per platform (cache.py: one store
would hand one platform's cached layers to another), under that store's lock; `no_cache`
rebuilds every step (`--no-cache`), and `cache_from`/`cache_to` name registry repositories
buildah reads cached layers from and pushes them to (`--cache-from`, `--cache-to`).

Each platform's image is kept in its store's directory as an OCI layout (buildkey.EXPORT_DIR)
beside the build key of its inputs (buildkey.py): a build whose key is the saved one runs no
buildah at all and copies that image into the requested layout, byte for byte. Otherwise the
platform is built into its store under a fixed local name (kept there: the last step's image is
the cache of that step), `push`ed into that export as `oci:DIR:TAG` (which writes only the blobs
the previous image there lacks: export.py) and copied out from there. Both the build and the
push use the store's blob cache (cache.prepare_blob_cache), so a push takes each pulled base
layer's compressed bytes instead of compressing the base again: exported base layers are the
bytes the base's registry serves, in every store alike. The oci: transport can only hold OCI
manifests, so a Docker-format build goes through a private `dir:` directory (dirimage.py;
buildah 1.28 writes a random container ID and hostname into a Docker config even with
--timestamp: those are made fixed, so Docker-format builds are reproducible too).

buildah sets TARGETPLATFORM/TARGETOS/TARGETARCH/TARGETVARIANT itself from --platform (checked on
1.28: the same values the plan computes, TARGETVARIANT only when the platform has a variant), so
those plan args are not passed again. buildah 1.28 still warns that its own TARGET* args were
"not consumed" when a Dockerfile does not declare them (containers/buildah#4485, fixed upstream
by #4634); that warning is trimmed to the names that are really ours.
With --timestamp (SOURCE_DATE_EPOCH) buildah clamps the config, history and layer file times,
so the same inputs give the same manifest digest.

Bases are pulled with the registry settings manifesto itself uses (access.py): loopback and
--insecure registries over plain HTTP, manifesto's credentials through a private auth file.
The built image names its base (bases.py), so a push can mount the base's layers.

PodmanBuilder (podman.py) is this class with a different tool name and a few flags.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from manifesto.builders import buildkey
from manifesto.builders.access import Access, Resolve, default_resolve, pulled_images, registry_access, short_names
from manifesto.builders.base import (
    MEDIA_FORMATS,
    BuildRequest,
    BuiltImage,
    Problem,
    common_flags,
    load_built,
    requested_format,
    validate_request,
)
from manifesto.builders.bases import base_origin
from manifesto.builders.buildkey import EXPORT_DIR, EXPORT_TAG, PulledDigests, copy_layout_image
from manifesto.builders.dirimage import export_via_dir
from manifesto.builders.export import intact, keep_last
from manifesto.builders.cache import BLOB_CACHE, cache_home, platform_dir, prepare_blob_cache, store_lock
from manifesto.builders.storage import DriverChoice
from manifesto.builders.runner import Runner, apt_package, missing_tool_message
from manifesto.errors import (
    BuildError,
    ManifestoError,
    VerificationError,
)
from manifesto.log import get_logger
from manifesto.oci.platform import PLATFORM_ARGS, Platform, normalized, platform_args
from manifesto.oci.reference import LAYOUT_PREFIX
from manifesto.store.layout import LayoutStore

log = get_logger("manifesto.builders")

# The local name every build commits to in its store; builds in one store run one at a time.
LOCAL_IMAGE = "localhost/manifesto-build:latest"

_UNCONSUMED = re.compile(r"^\[Warning\] one or more build args were not consumed: \[(?P<names>[^\]]*)\]\s*$")


def own_args(platform: Platform) -> dict[str, str]:
    """The TARGET* build args buildah derives from `--platform` (containerd-normalized)."""
    return platform_args(normalized(platform))


def default_storage(tool: str) -> Path:
    """`$XDG_CACHE_HOME/manifesto/<tool>` (or ~/.cache/manifesto/<tool>)."""
    return cache_home() / tool


class BuildahBuilder(DriverChoice):
    """Builds with buildah into OCI layouts; safe to call from several threads at once. Its
    storage driver: storage.DriverChoice."""

    name = "buildah"
    tool = "buildah"

    def __init__(
        self,
        runner: Runner | None = None,
        *,
        storage: Path | None = None,
        storage_driver: str | None = None,
        isolation: str = "chroot",
        executable: str | None = None,
        credentials: Resolve | None = None,
    ):
        self.runner = runner or Runner()
        self.credentials = credentials  # host -> Credential; None: manifesto's own lookup
        self.executable = executable or self.tool
        self.storage = Path(storage) if storage else default_storage(self.tool)
        self.choose_driver(storage_driver)
        self.isolation = isolation
        self.pulled = PulledDigests(self.credentials or default_resolve)
        self.file_digests: dict[tuple[int, ...], str] = {}  # buildkey.context_digest's memo
        # One walk of a context at a time: the platforms of a run share one, and builds start
        # together, so each would read every file before any finds it in the memo.
        self._context_locks: dict[Path, threading.Lock] = {}

    def __repr__(self) -> str:
        driver = self._verdict.driver if self._verdict is not None else "auto"  # repr does not probe
        return f"{type(self).__name__}(storage={str(self.storage)!r}, driver={driver!r})"

    def cancel(self) -> None:
        """Stop running builds (Builder protocol): their process groups, through the runner."""
        self.runner.cancel()

    # ---- command lines (one place each, so podman overrides only what differs) -------------

    @property
    def storage_root(self) -> Path:
        """One root per storage driver: c/storage refuses a root made by another driver."""
        return self.storage / self.storage_driver

    @property
    def runroot(self) -> Path:
        """Where the tool keeps run-time state (locks, mount points) for our storage."""
        return self.storage_root / "run"

    def store(self, platform: Platform | None = None) -> Path:
        """The layer store of builds for `platform` (cache.py); None: the one `check` opens."""
        return self.storage_root if platform is None else self.storage_root / platform_dir(platform)

    def runroot_of(self, store: Path) -> Path:
        """The runroot of the store at `store`."""
        return self.runroot if store == self.storage_root else store / "run"

    def global_args(self, platform: Platform | None = None) -> list[str]:
        store = self.store(platform)
        runroot = self.runroot_of(store)
        return ["--root", str(store / "root"), "--runroot", str(runroot), "--storage-driver", self.storage_driver]

    def command(self, *args: str, platform: Platform | None = None) -> list[str]:
        return [self.executable, *self.global_args(platform), *args]

    def build_args(
        self,
        request: BuildRequest,
        destination: str | None = None,
        authfile: Path | None = None,
        blobs: Path | None = None,
    ) -> list[str]:
        """The `build` arguments: write the image to `destination` (a containers/image
        reference), by default straight into the OCI layout as `oci:DIR:TAG`; read registry
        credentials from `authfile` (see access.py); keep pulled blobs in the blob cache `blobs`."""
        args = [
            "build",
            "--isolation", self.isolation,
            "--platform", str(request.platform),
            "--format", requested_format(request),
            "--disable-compression=false",  # gzip layers, as a push would
            "--layers",
            "--force-rm",  # a failed step's container too: on overlay it would stay mounted
            "-f", str(request.dockerfile),
        ]  # fmt: skip
        if request.no_cache:
            args.append("--no-cache")
        if request.cache_from:
            args += ["--cache-from", request.cache_from]
        if request.cache_to:
            args += ["--cache-to", request.cache_to]
        if authfile is not None:
            args += ["--authfile", str(authfile)]
        if blobs is not None:
            args += ["--blob-cache", str(blobs)]
        if request.source_date_epoch is not None:
            args += ["--timestamp", str(request.source_date_epoch)]
        args += common_flags(request, self.build_arg_values(request))
        args += ["-t", destination or f"{LAYOUT_PREFIX}{request.output}:{request.tag}", str(request.context)]
        return args

    def build_arg_values(self, request: BuildRequest) -> dict[str, str]:
        """request.args without the TARGET* args buildah sets itself to the same value, plus
        SOURCE_DATE_EPOCH when the Dockerfile can use it (as BuildKit passes it).

        An empty TARGETVARIANT is the exception: buildah does not set it for a platform without
        a variant and warns about a declared `ARG TARGETVARIANT` it has no value for, so it
        stays when the Dockerfile names it.
        """
        values = dict(request.args)
        text: str | None = None

        def mentions(word: str) -> bool:
            nonlocal text
            if text is None:
                text = _read_text(request.dockerfile)
            return word in text

        for key, value in own_args(request.platform).items():
            if key in values and values[key] == value and (value or not mentions(key)):
                del values[key]
        if request.source_date_epoch is not None and mentions("SOURCE_DATE_EPOCH"):
            values.setdefault("SOURCE_DATE_EPOCH", str(request.source_date_epoch))
        return values

    def implicit_args(self, request: BuildRequest) -> frozenset[str]:
        """TARGET* names buildah may call "not consumed" that are its own (or equal to it)."""
        values = self.build_arg_values(request)
        own = own_args(request.platform)
        return frozenset(k for k in PLATFORM_ARGS if values.get(k, own[k]) == own[k])

    def info_args(self) -> list[str]:
        return ["info"]

    def blob_cache(self, store: Path) -> Path | None:
        """Where the platform store at `store` keeps its blob cache (cache.prepare_blob_cache);
        None for a tool without `--blob-cache`."""
        return store / BLOB_CACHE

    # ---- the Builder protocol ------------------------------------------------------------

    def check(self) -> list[Problem]:
        """Tool installed, storage root writable, and the tool can open its storage there."""
        if shutil.which(self.executable) is None:
            pkg = apt_package(self.executable) or self.tool
            return [
                Problem(
                    f"{missing_tool_message(self.executable)}: the {self.name} builder needs it",
                    fix=f"apt-get install {pkg}",
                    commands=(("apt-get", "install", "-y", pkg),),
                )
            ]
        try:
            self.storage_root.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            return [Problem(f"{self.name} storage {self.storage_root} cannot be created: {e.strerror}")]
        if not os.access(self.storage_root, os.W_OK):
            return [Problem(f"{self.name} storage {self.storage_root} is not writable")]
        try:
            done = self.runner.capture(self.command(*self.info_args()), check=False)
        except BuildError as e:
            return [Problem(f"{self.name}: {e}")]
        if done.returncode != 0:
            return [
                Problem(
                    f"{self.name} cannot use its storage at {self.storage_root} "
                    f"(driver {self.storage_driver}): {done.first_error_line()}"
                )
            ]
        return []

    def build(self, request: BuildRequest, on_line: Callable[[str], None]) -> BuiltImage:
        """Build into the layout at request.output under request.tag, then verify what was written.

        A failed build leaves no layout behind that was not there before.
        """
        request = validate_request(request)
        fmt = requested_format(request)
        label = str(request.platform)
        log.info(
            "build_start", builder=self.name, platform=label, output=str(request.output), tag=request.tag, format=fmt
        )
        lines = trim_unconsumed_warning(on_line, self.implicit_args(request))
        existed = request.output.exists()
        store = self.store(request.platform)
        try:
            with store_lock(store, cancelled=lambda: self.runner.cancelled, on_wait=lines):
                if (blobs := self.blob_cache(store)) is not None:
                    prepare_blob_cache(store, blobs, layers=store / "root")
                key = self.build_key(request)
                unchanged = not request.no_cache and key is not None and buildkey.saved(store) == key
                if unchanged and key is not None and self._reuse(request, store):
                    lines(f"unchanged since the last build (key {key[:12]}): reused its image from {store}")
                else:
                    self._build_keyed(request, store, key, lines, label)
        except BaseException:
            if not existed:
                _remove_if_untagged(request.output)
            raise
        built = load_built(request, self.name)
        if built.media_type != MEDIA_FORMATS[fmt]:
            raise VerificationError(
                f"{label}: {self.name} image {request.output}:{request.tag}: "
                f"{fmt} format was requested, but its manifest is {built.media_type}"
            )
        log.info("build_done", builder=self.name, platform=label, digest=str(built.digest))
        return replace(built, base=base_origin(request, own_args(request.platform), self.pulled))  # bases.py

    def _build_keyed(
        self, request: BuildRequest, store: Path, key: str | None, on_line: Callable[[str], None], label: str
    ) -> None:
        """Build `request` in `store`, save `key` as its key, copy the image out. The
        registries' credentials are looked up here, not before the key is compared: a build
        that reuses its image needs none (and the lookup may load the keyring)."""
        with registry_access(request, own_args(request.platform), self.credentials) as access:
            if access.insecure_hosts:
                log.info("registries_without_tls", builder=self.name, hosts=list(access.insecure_hosts))
            buildkey.forget_key(store)
            self._build_export(request, store, on_line, label, access)
            if key is not None and self._key_kept(request, key):
                buildkey.save(store, key)
            self._copy_out(request, store)

    def build_key(self, request: BuildRequest) -> str | None:
        """The key of `request`'s inputs (buildkey.py); None when one cannot be had."""
        tool = buildkey.tool_identity(self.executable)
        if tool is None:
            return None
        try:
            text = request.dockerfile.read_bytes()
        except OSError:
            return None
        platform = str(request.platform)
        source = text.decode(errors="replace")
        if steps := buildkey.unkeyable(source):
            log.info("build_key_unavailable", platform=platform, reason="remote or unknown inputs", steps=steps)
            return None
        unresolved: list[str] = []
        try:
            names = short_names()
            settings = buildkey.builder_settings()
        except (OSError, ManifestoError) as e:  # an unreadable registries.conf: the build says what
            log.info("build_key_unavailable", platform=platform, reason=str(e))
            return None
        builtins = own_args(request.platform)
        refs = pulled_images(source, request.args, builtins, str(request.dockerfile), names, unresolved)
        if unresolved:
            log.info("build_key_unavailable", platform=platform, reason="images of no one name", images=unresolved)
            return None
        bases = self.pulled.digests(refs, request.insecure)
        if bases is None:
            return None
        try:
            walk = self._context_locks.setdefault(request.context.resolve(), threading.Lock())  # atomic
            with walk:
                context = buildkey.context_digest(request.context, request.dockerfile, self.file_digests)
        except (OSError, ManifestoError) as e:  # unreadable: the build itself says what
            log.info("build_key_unavailable", platform=platform, reason=str(e))
            return None
        argv = self.build_args(replace(request, no_cache=False), f"{LAYOUT_PREFIX}-", None)
        return buildkey.build_key({
            "builder": self.name, "tool": tool, "driver": self.storage_driver, "isolation": self.isolation,
            "argv": argv, "insecure": request.insecure, "bases": bases, "settings": settings,
            "manifesto": buildkey.own_version(), "dockerfile": hashlib.sha256(text).hexdigest(), "context": context,
        })  # fmt: skip

    def _key_kept(self, request: BuildRequest, key: str) -> bool:
        """Whether `request`'s inputs still have `key` after its build: one that changed while
        buildah read it (a context file being edited) may be in the image in either form."""
        try:
            kept = self.build_key(request) == key
        except ManifestoError:  # a Dockerfile edited into one the parser refuses
            kept = False
        if not kept:
            log.info("build_key_changed", builder=self.name, platform=str(request.platform))
        return kept

    def _reuse(self, request: BuildRequest, store: Path) -> bool:
        """Put the store's last image into the requested layout; False (and a log line) when
        the export cannot be read whole: the build then runs and replaces it."""
        try:
            if not intact(store / EXPORT_DIR):
                raise ManifestoError("its export changed since it was sealed")
            self._copy_out(request, store)
        except (ManifestoError, OSError) as e:
            log.info("build_reuse_failed", builder=self.name, platform=str(request.platform), reason=str(e))
            return False
        log.info("build_reused", builder=self.name, platform=str(request.platform), store=str(store))
        return True

    @staticmethod
    def _copy_out(request: BuildRequest, store: Path) -> None:
        """The store's last image into the requested layout under the requested tag."""
        export = LayoutStore(store / EXPORT_DIR)
        copy_layout_image(export, EXPORT_TAG, LayoutStore(request.output, create=True), request.tag)

    def _build_export(
        self, request: BuildRequest, store: Path, on_line: Callable[[str], None], label: str, access: Access
    ) -> None:
        """Build `request` into the store's export layout (buildkey.EXPORT_DIR) as EXPORT_TAG.

        The build commits to the local name, whose last step is then cached too, and the image
        is pushed from there into the previous export, which gets only the blobs it lacks
        (export.py; --no-cache starts from an empty export). Building straight to `oci:` saves
        that push but breaks in buildah 1.28 whenever the last step is a cache hit ("locating
        new copy of image ... image not known"), and with --cache-to ("repository name must
        have at least one component"). A Docker-format image goes through `dir:`
        (dirimage.export_via_dir), into an empty export: that push writes every blob anyway.
        """
        export = store / EXPORT_DIR
        build = self.build_args(request, LOCAL_IMAGE, access.authfile, self.blob_cache(store))
        self.runner.run(self.command(*build, platform=request.platform), on_line=on_line, label=label, env=access.env)
        oci = requested_format(request) == "oci"
        keep_last(export, EXPORT_TAG, fresh=request.no_cache or not oci)
        if oci:
            self._push(request, f"{LAYOUT_PREFIX}{export}:{EXPORT_TAG}", on_line, label, access)
        else:
            push = lambda destination: self._push(request, destination, on_line, label, access)  # noqa: E731
            export_via_dir(push, export, EXPORT_TAG, self.tool, reproducible=request.source_date_epoch is not None)
        keep_last(export, EXPORT_TAG, seal=True)

    def push_args(self, destination: str, authfile: Path, blobs: Path | None = None) -> list[str]:
        """The `push` arguments: the built image to `destination`, layers gzip-compressed, a
        layer whose compressed bytes the blob cache `blobs` holds taken from there.

        The auth file is passed although nothing is sent to a registry: without one, a
        DOCKER_CONFIG holding no config.json fails the push ("checking authfile").
        """
        compress = ["--compression-format", "gzip"]
        cache = ["--blob-cache", str(blobs)] if blobs is not None else []
        return ["push", "--quiet", "--authfile", str(authfile), *compress, *cache, LOCAL_IMAGE, destination]

    def _push(
        self, request: BuildRequest, destination: str, on_line: Callable[[str], None], label: str, access: Access
    ) -> None:
        blobs = self.blob_cache(self.store(request.platform))
        argv = self.command(*self.push_args(destination, access.authfile, blobs), platform=request.platform)
        self.runner.run(argv, on_line=on_line, label=label, env=access.env)


def trim_unconsumed_warning(on_line: Callable[[str], None], implicit: frozenset[str]) -> Callable[[str], None]:
    """`on_line`, but buildah's "build args were not consumed" warning names only our args.

    buildah 1.28 counts the TARGET* args it sets itself from --platform (containers/buildah
    #4485); those names are dropped, and the whole line when nothing else is left.
    """
    if not implicit:
        return on_line

    def trimmed(line: str) -> None:
        m = _UNCONSUMED.match(line)
        if m is None:
            on_line(line)
            return
        names = [n for n in m["names"].split() if n not in implicit]
        if names:
            on_line(f"[Warning] one or more build args were not consumed: [{' '.join(names)}]")

    return trimmed


def _remove_if_untagged(layout: Path) -> None:
    """Remove a layout this build created, unless another build has since tagged into it."""
    try:
        tagged = bool(LayoutStore(layout).tags())
    except (ManifestoError, OSError):  # missing, half-written or unreadable
        tagged = False
    if not tagged:
        shutil.rmtree(layout, ignore_errors=True)


def _read_text(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""
