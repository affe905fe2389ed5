"""Cancel is part of the Builder protocol: Ctrl-C during builds stops them through the builder.

Builds run in threads and their tools in process groups of their own, which Ctrl-C does not
reach; build_all calls `builder.cancel()` (never reaching into a builder's runner).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from manifesto.builders.base import Builder, BuildRequest, BuiltImage, Problem
from manifesto.builders.buildah import BuildahBuilder
from manifesto.builders.buildx import BuildxBuilder
from manifesto.builders.podman import PodmanBuilder
from manifesto.builders.runner import Runner
from manifesto.jobs.builds import Options, build_all
from manifesto.matrix.plan import make_plan
from manifesto.matrix.spec import load


class CountingRunner(Runner):
    def __init__(self) -> None:
        super().__init__()
        self.cancels = 0

    def cancel(self) -> None:
        self.cancels += 1
        super().cancel()


@pytest.mark.parametrize("cls", [BuildahBuilder, PodmanBuilder, BuildxBuilder])
def test_each_builder_cancels_through_its_runner(cls: type, tmp_path: Path) -> None:
    runner = CountingRunner()
    builder = cls(runner) if cls is BuildxBuilder else cls(runner, storage=tmp_path)
    assert isinstance(builder, Builder)
    builder.cancel()
    assert runner.cancels == 1


class InterruptedBuilder:
    """The first build is interrupted (as Ctrl-C would); the others wait until cancel()."""

    name = "interrupted"

    def __init__(self) -> None:
        self.cancelled = threading.Event()
        self.started: list[str] = []

    def check(self) -> list[Problem]:
        return []

    def build(self, request: BuildRequest, on_line: Callable[[str], None]) -> BuiltImage:
        self.started.append(str(request.platform))
        if len(self.started) == 1:
            raise KeyboardInterrupt
        assert self.cancelled.wait(10), "cancel() never came"
        raise KeyboardInterrupt

    def cancel(self) -> None:
        self.cancelled.set()


def test_an_interrupt_cancels_running_builds_through_the_builder(tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    (tmp_path / "platforms.yaml").write_text("image: oci:out\ntags: [t]\nplatforms: [linux/amd64, linux/s390x]\n")
    plan = make_plan(load(tmp_path / "platforms.yaml"), [])
    builder = InterruptedBuilder()
    assert isinstance(builder, Builder)
    with pytest.raises(KeyboardInterrupt):
        build_all(plan, Options(builder=builder, jobs=2), tmp_path / "work")
    assert builder.cancelled.is_set()
