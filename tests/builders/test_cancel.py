"""Cancel is part of the Builder protocol: Ctrl-C during builds stops them through the builder.

Builds run in threads and their tools in process groups of their own, which Ctrl-C does not
reach; build_all calls `builder.cancel()` (never reaching into a builder's runner).
"""

from __future__ import annotations

import threading
import time
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


def test_native_cancel_interrupts_a_layer_and_the_next_build_runs(tmp_path: Path) -> None:
    """cancel() stops a native build inside the layer it is writing (a 16 GiB file: minutes to
    write), within about a second; the same builder then builds again."""
    from manifesto.builders.native.builder import NativeBuilder
    from manifesto.errors import BuildError
    from manifesto.oci.platform import Platform

    big, small = tmp_path / "big", tmp_path / "small"
    contexts = {big: {"Dockerfile": "FROM scratch\nCOPY big /big\n"}, small: {"Dockerfile": "FROM scratch\nCOPY f /f\n", "f": "f\n"}}
    for ctx, files in contexts.items():
        ctx.mkdir()
        for name, text in files.items():
            (ctx / name).write_text(text)
    with open(big / "big", "wb") as f:
        f.truncate(16 << 30)  # sparse

    def request(ctx: Path, out: str) -> BuildRequest:
        return BuildRequest(Platform.parse("linux/amd64"), ctx, ctx / "Dockerfile", {}, tmp_path / out)

    builder = NativeBuilder()
    writing = threading.Event()
    outcome: list[BaseException] = []

    def on_line(line: str) -> None:
        if line.startswith("STEP 1/"):
            writing.set()

    def run() -> None:
        try:
            builder.build(request(big, "out-big"), on_line)
        except BaseException as e:
            outcome.append(e)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert writing.wait(10)
    time.sleep(0.3)  # well inside the layer
    started = time.monotonic()
    builder.cancel()
    thread.join(5)
    assert not thread.is_alive() and time.monotonic() - started < 1.5
    assert len(outcome) == 1 and isinstance(outcome[0], BuildError) and "cancelled" in str(outcome[0])
    assert not (tmp_path / "out-big").exists()
    built = builder.build(request(small, "out-small"), lambda line: None)
    assert built.digest is not None
