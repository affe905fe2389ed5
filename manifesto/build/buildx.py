"""Build with docker buildx: `docker buildx build --output type=oci,tar=false` into a private
layout, then copy the image into the requested layout under its tag.

The copy step exists because BuildKit's oci exporter writes a whole layout (its own
index.json), which would drop the other tags of a shared output layout. Provenance attestations
are turned off: a single-platform build should give a plain image manifest; if an index comes
out anyway, the entry for the requested platform is taken from it.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from manifesto.build.base import (
    BuildRequest,
    BuiltImage,
    Problem,
    common_flags,
    load_built,
    normalized,
    validate_request,
)
from manifesto.build.runner import Runner, missing_tool_message
from manifesto.errors import BuildError, ContentError
from manifesto.log import get_logger
from manifesto.oci import mediatype
from manifesto.oci.descriptor import Descriptor
from manifesto.oci.manifest import ImageIndex, ImageManifest
from manifesto.store.layout import LayoutStore

log = get_logger("manifesto.build")

NO_ENGINE_FIX = (
    "start the docker daemon (systemctl start docker), point DOCKER_HOST at a reachable engine, "
    "or use --builder buildah"
)


class BuildxBuilder:
    """Builds with `docker buildx` (needs a reachable docker engine)."""

    name = "buildx"
    tool = "docker"

    def __init__(self, runner: Runner | None = None, *, executable: str | None = None, builder: str | None = None):
        self.runner = runner or Runner()
        self.executable = executable or self.tool
        self.builder = builder

    def check(self) -> list[Problem]:
        """The docker CLI, its buildx plugin, and a reachable engine."""
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
        return problems

    def build_args(self, request: BuildRequest, dest: Path) -> list[str]:
        args = [self.executable, "buildx", "build"]
        if self.builder:
            args += ["--builder", self.builder]
        args += [
            "--platform", str(request.platform),
            "-f", str(request.dockerfile),
            "--provenance=false",
            "--output", f"type=oci,dest={dest},tar=false,name={request.tag}",
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
        label = str(request.platform)
        problems = self.check()
        if problems:
            raise BuildError(
                f"{label}: buildx cannot build here: {problems[0].message}", log_tail="\n".join(map(str, problems))
            )
        request.output.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".manifesto-buildx-", dir=request.output.parent))
        env = {"SOURCE_DATE_EPOCH": str(request.source_date_epoch)} if request.source_date_epoch is not None else None
        try:
            dest = tmp / "layout"
            self.runner.run(self.build_args(request, dest), on_line=on_line, label=label, env=env)
            copy_image(LayoutStore(dest), request, LayoutStore(request.output, create=True))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return load_built(request, self.name)


def copy_image(src: LayoutStore, request: BuildRequest, dst: LayoutStore) -> None:
    """Copy the single image of a fresh build layout into `dst` under request.tag."""
    entries = src.descriptors()
    if len(entries) != 1:
        raise ContentError(f"{src.path}: expected one image in the build output, found {len(entries)}")
    desc = entries[0]
    if mediatype.is_index(desc.media_type):
        index = ImageIndex.parse(src.read_bytes(desc.digest, "index"), desc.media_type)
        want = normalized(request.platform)
        picked = [d for d in index.images() if d.platform is not None and normalized(d.platform).same_as(want)]
        if len(picked) != 1:
            raise ContentError(f"{src.path}: no single image for {request.platform} in the build output index")
        desc = picked[0]
    raw = src.read_bytes(desc.digest, "manifest")
    manifest = ImageManifest.parse(raw, desc.media_type)
    for blob in manifest.blobs():
        dst.add_blob(Descriptor(blob.media_type, blob.digest, blob.size), src.blob_path(blob.digest))
    dst.put_manifest_sync(request.tag, raw, desc.media_type)
