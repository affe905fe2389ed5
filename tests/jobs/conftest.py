"""A fake Builder and a matrix writer for the library-level tests of the jobs.

Why a fake: the engines (publish, assemble) are tested through manifesto's public API with no
builder tool, no qemu and no busybox download. FakeBuilder implements the Builder protocol
(manifesto/builders/base.py) by writing a tiny, deterministic image for the requested platform
into the requested layout (tests/support/images.py) and reading it back through the same check
every real build goes through (base.load_built: bytes and platform verified).
"""

from __future__ import annotations

import textwrap
import threading
from collections.abc import Callable
from pathlib import Path

from manifesto.builders.base import BuildRequest, BuiltImage, Problem, load_built
from manifesto.errors import BuildError
from tests.support.images import build_image

# platform as a request names it -> Debian arch of tests/support/images.py
DEBIAN_ARCH = {
    "linux/amd64": "amd64",
    "linux/arm64/v8": "arm64",
    "linux/arm/v7": "armhf",
    "linux/ppc64le": "ppc64el",
    "linux/s390x": "s390x",
}
THREE = ("linux/amd64", "linux/arm64/v8", "linux/arm/v7")


class FakeBuilder:
    """A Builder that writes a tiny image per platform; `fail` names platforms whose build fails."""

    name = "fake"

    def __init__(self, fail: tuple[str, ...] = (), content: bytes = b"fake busybox"):
        self.fail = set(fail)
        self.content = content
        self.requests: list[BuildRequest] = []
        self.cancelled = False
        self._lock = threading.Lock()

    @property
    def built(self) -> list[str]:
        """The platforms asked for, in the order the builds started."""
        return [str(r.platform) for r in self.requests]

    def check(self) -> list[Problem]:
        return []

    def build(self, request: BuildRequest, on_line: Callable[[str], None]) -> BuiltImage:
        with self._lock:
            self.requests.append(request)
        platform = str(request.platform)
        on_line(f"fake build of {platform}")
        if platform in self.fail:
            raise BuildError(f"{platform}: the fake build failed", log_tail="step 1/1: boom")
        arch = DEBIAN_ARCH[platform]
        build_image(
            arch,
            request.output,
            format=request.media_format,  # type: ignore[arg-type]
            tag=request.tag,
            busybox=self.content + b" " + arch.encode(),
        )
        return load_built(request, self.name)

    def cancel(self) -> None:
        self.cancelled = True


def write_matrix(directory: Path, image: str, *, platforms: tuple[str, ...] = THREE, extra: str = "") -> Path:
    """A platforms.yaml (and a build context with a Dockerfile) for `image` in `directory`."""
    context = directory / "ctx"
    context.mkdir(parents=True, exist_ok=True)
    (context / "Dockerfile").write_text("FROM scratch\nCOPY hello /hello\n")
    (context / "hello").write_text("hello\n")
    path = directory / "platforms.yaml"
    entries = "".join(f"  - {p}\n" for p in platforms)
    path.write_text(
        textwrap.dedent(
            f"""\
            image: {image}
            tags: ["1.0", "latest"]
            build:
              context: ctx
            """
        )
        + extra
        + "platforms:\n"
        + entries
    )
    return path
