"""Build with docker buildx: `docker buildx build --output type=oci,tar=false` into a private
layout, then copy the image into the requested layout under its tag.

The copy step exists because BuildKit's oci exporter writes a whole layout (its own
index.json), which would drop the other tags of a shared output layout. Provenance attestations
are turned off: a single-platform build should give a plain image manifest; if an index comes
out anyway, the entry for the requested platform is taken from it.

The exporter's options carry the rest of the request: `oci-mediatypes=false` for a Docker-format
image, and with SOURCE_DATE_EPOCH `rewrite-timestamp=true` (BuildKit >= 0.13; older BuildKit
ignores it) so that files created by RUN steps get the epoch as their mtime too, not only the
config and history. The default `docker` driver cannot export type=oci at all, so check() asks
`docker buildx inspect` which driver the builder uses.

Registry settings are BuildKit's own: it pulls with docker's credentials (config.json and its
helpers, which manifesto reads too; a `manifesto login` kept in the keyring does not reach it),
and plain HTTP to a registry needs `http = true` for it in the builder's buildkitd.toml, fixed
when the builder is created. A build whose bases are on a loopback or --insecure registry is
warned about, with that fix.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from manifesto.builders.access import plain_http_hosts, pulled_registries
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
from manifesto.builders.runner import Runner, missing_tool_message
from manifesto.errors import BuildError, ContentError, VerificationError
from manifesto.log import get_logger
from manifesto.oci import mediatype
from manifesto.oci.descriptor import Descriptor
from manifesto.oci.manifest import ImageIndex, ImageManifest
from manifesto.oci.platform import PLATFORM_ARGS, pick
from manifesto.store.layout import LayoutStore

log = get_logger("manifesto.builders")

NO_ENGINE_FIX = (
    "start the docker daemon (systemctl start docker), point DOCKER_HOST at a reachable engine, "
    "or use --builder buildah"
)
CONTAINER_DRIVER_FIX = "docker buildx create --driver docker-container --use"
REWRITE_TIMESTAMP = (0, 13)  # the first BuildKit whose exporters know rewrite-timestamp

_DRIVER = re.compile(r"^Driver:\s*(\S+)", re.MULTILINE)
_BUILDKIT = re.compile(r"^\s*BuildKit(?: version)?:\s*v?(\d+)\.(\d+)", re.MULTILINE | re.IGNORECASE)


class BuildxBuilder:
    """Builds with `docker buildx` (needs a reachable docker engine)."""

    name = "buildx"
    tool = "docker"

    def __init__(self, runner: Runner | None = None, *, executable: str | None = None, builder: str | None = None):
        self.runner = runner or Runner()
        self.executable = executable or self.tool
        self.builder = builder
        self.buildkit: tuple[int, int] | None = None  # BuildKit version seen by the last check()

    def cancel(self) -> None:
        """Stop running builds (Builder protocol): their process groups, through the runner."""
        self.runner.cancel()

    def check(self) -> list[Problem]:
        """The docker CLI, its buildx plugin, a reachable engine, and a builder that can export OCI."""
        if shutil.which(self.executable) is None:
            return [
                Problem(
                    f"{missing_tool_message(self.executable)}: the buildx builder needs it",
                    fix="apt-get install docker.io",
                )
            ]
        problems: list[Problem] = []
        try:
            info = self.runner.capture(
                [self.executable, "info", "--format", "{{.ServerVersion}}"], check=False, timeout=30
            )
        except BuildError as e:
            return [Problem(f"buildx: {e}", fix=NO_ENGINE_FIX)]
        if info.returncode != 0 or not info.stdout.strip():
            problems.append(Problem(f"no docker engine reachable: {info.first_error_line()}", fix=NO_ENGINE_FIX))
        version = self.runner.capture([self.executable, "buildx", "version"], check=False, timeout=30)
        if version.returncode != 0:
            problems.append(
                Problem(
                    f"the docker buildx plugin is not installed: {version.first_error_line()}",
                    fix="install the buildx plugin (docker-buildx-plugin from Docker's apt repository)",
                )
            )
        if not problems:
            problems += self._check_builder()
        return problems

    def _check_builder(self) -> list[Problem]:
        """The builder's driver must export type=oci: the default `docker` driver cannot."""
        argv = [self.executable, "buildx", "inspect"] + ([self.builder] if self.builder else [])
        done = self.runner.capture(argv, check=False, timeout=30)
        name = f"buildx builder {self.builder}" if self.builder else "the current buildx builder"
        if done.returncode != 0:
            fix = (
                f"docker buildx create --name {self.builder} --driver docker-container"
                if self.builder
                else CONTAINER_DRIVER_FIX
            )
            return [Problem(f"{name} cannot be inspected: {done.first_error_line()}", fix=fix)]
        found = _BUILDKIT.search(done.stdout)
        self.buildkit = (int(found[1]), int(found[2])) if found else None
        driver = _DRIVER.search(done.stdout)
        if driver is not None and driver[1] == "docker":
            return [
                Problem(
                    f"{name} uses the docker driver, which cannot export an OCI layout (--output type=oci)",
                    fix=CONTAINER_DRIVER_FIX,
                )
            ]
        return []

    def build_args(self, request: BuildRequest, dest: Path) -> list[str]:
        args = [self.executable, "buildx", "build"]
        if self.builder:
            args += ["--builder", self.builder]
        output = f"type=oci,dest={dest},tar=false,name={request.tag}"
        if requested_format(request) == "docker":
            output += ",oci-mediatypes=false"
        if request.source_date_epoch is not None:
            output += ",rewrite-timestamp=true"
        args += [
            "--platform", str(request.platform),
            "-f", str(request.dockerfile),
            "--provenance=false",
            "--output", output,
        ]  # fmt: skip
        build_args = dict(request.args)
        if request.source_date_epoch is not None:
            build_args.setdefault("SOURCE_DATE_EPOCH", str(request.source_date_epoch))
        args += common_flags(request, build_args)
        args.append(str(request.context))
        return args

    def build(self, request: BuildRequest, on_line: Callable[[str], None]) -> BuiltImage:
        """Build into a private layout, copy the image into request.output, verify it."""
        request = validate_request(request)
        fmt = requested_format(request)
        label = str(request.platform)
        problems = self.check()
        if problems:
            raise BuildError(
                f"{label}: buildx cannot build here: {problems[0].message}", log_tail="\n".join(map(str, problems))
            )
        if request.source_date_epoch is not None and self.buildkit is not None and self.buildkit < REWRITE_TIMESTAMP:
            log.warning(
                "buildkit_too_old_for_rewrite_timestamp",
                platform=label,
                buildkit=".".join(map(str, self.buildkit)),
                effect="files created by RUN steps keep their build-time mtimes",
            )
        self._warn_plain_http(request)
        request.output.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".manifesto-buildx-", dir=request.output.parent))
        env = {"SOURCE_DATE_EPOCH": str(request.source_date_epoch)} if request.source_date_epoch is not None else None
        try:
            dest = tmp / "layout"
            self.runner.run(self.build_args(request, dest), on_line=on_line, label=label, env=env)
            copy_image(LayoutStore(dest), request, LayoutStore(request.output, create=True))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        built = load_built(request, self.name)
        if built.media_type != MEDIA_FORMATS[fmt]:
            raise VerificationError(
                f"{label}: buildx image {request.output}:{request.tag}: "
                f"{fmt} format was requested, but its manifest is {built.media_type}"
            )
        return built

    def _warn_plain_http(self, request: BuildRequest) -> None:
        targets = {k: v for k, v in request.args.items() if k in PLATFORM_ARGS}
        hosts = plain_http_hosts(request, pulled_registries(request, targets))
        if hosts:
            log.warning(
                "buildx_plain_http_registries",
                platform=str(request.platform),
                hosts=list(hosts),
                fix="create the builder with --config buildkitd.toml naming "
                + ", ".join(f'[registry."{h}"] http = true' for h in hosts),
            )


def copy_image(src: LayoutStore, request: BuildRequest, dst: LayoutStore) -> None:
    """Copy the single image of a fresh build layout into `dst` under request.tag."""
    entries = src.descriptors()
    if len(entries) != 1:
        raise ContentError(f"{src.path}: expected one image in the build output, found {len(entries)}")
    desc = entries[0]
    if mediatype.is_index(desc.media_type):
        index = ImageIndex.parse(src.read_bytes(desc.digest, "index"), desc.media_type)
        picked = pick(index.images(), request.platform)
        if len(picked) != 1:
            raise ContentError(f"{src.path}: no single image for {request.platform} in the build output index")
        desc = picked[0]
    raw = src.read_bytes(desc.digest, "manifest")
    manifest = ImageManifest.parse(raw, desc.media_type)
    for blob in manifest.blobs():
        dst.add_blob(Descriptor(blob.media_type, blob.digest, blob.size), src.blob_path(blob.digest))
    dst.put_manifest_sync(request.tag, raw, desc.media_type)
