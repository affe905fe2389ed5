"""The builder each build step runs with: jobs.builds resolves `auto`, and falls back to buildah.

Why here and not in the plan: choosing reads each Dockerfile (the plan is pure), and only a
build finds the refusals that depend on the base or the context (a USER name the base sets, a
base with ONBUILD triggers, an ambiguous COPY destination). `auto` must never turn a build
buildah can do into a failure, so the native builder's NeedsBuilder sends that step to buildah.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

import manifesto
import manifesto.builders
from manifesto.builders.base import BuildRequest, BuiltImage, Problem
from manifesto.builders.native.instructions import NeedsBuilder
from manifesto.builders.native.steps import Where
from manifesto.errors import BuildError
from manifesto.jobs.builds import Options, build_all, choose_builders
from tests.jobs.conftest import FakeBuilder, write_matrix


class RefusingNative:
    """A native builder that refuses `refuse` (platform names) the way the real one does."""

    name = "native"

    def __init__(self, refuse: tuple[str, ...]):
        self.refuse = set(refuse)
        self.inner = FakeBuilder()
        self.inner.name = "native"

    def check(self) -> list[Problem]:
        return []

    def build(self, request: BuildRequest, on_line: Callable[[str], None]) -> BuiltImage:
        if str(request.platform) in self.refuse:
            raise NeedsBuilder(Where("Dockerfile", 3), "WORKDIR creates /srv owned by USER app (the base's)")
        return self.inner.build(request, on_line)

    def cancel(self) -> None:
        pass


@pytest.fixture
def builders(monkeypatch) -> dict[str, object]:
    made: dict[str, object] = {"native": RefusingNative(refuse=("linux/arm64/v8",)), "buildah": FakeBuilder()}
    asked: list[str] = []

    def get_builder(name: str, runner=None, **options):
        asked.append(name)
        return made[name]

    monkeypatch.setattr(manifesto.builders, "get_builder", get_builder)
    made["asked"] = asked
    return made


def test_auto_rebuilds_a_refused_step_with_buildah(tmp_path: Path, builders) -> None:
    plan = manifesto.plan(write_matrix(tmp_path, f"oci:{tmp_path / 'out'}"))
    assert [c.builder for c in choose_builders(plan)] == ["native"] * 3
    notices: list[str] = []
    built = build_all(plan, Options(jobs=1, on_notice=notices.append), tmp_path / "work")
    assert [str(b.platform) for b in built] == ["linux/amd64", "linux/arm64/v8", "linux/arm/v7"]
    assert notices == [
        "linux/arm64/v8: native builder cannot: Dockerfile:3: WORKDIR creates /srv owned by USER app (the base's); "
        "building with buildah"
    ]
    assert builders["buildah"].built == ["linux/arm64/v8"]  # type: ignore[attr-defined]
    assert builders["native"].inner.built == ["linux/amd64", "linux/arm/v7"]  # type: ignore[attr-defined]
    assert builders["asked"] == ["native", "buildah"]  # buildah made once, when first needed


def test_a_builder_the_user_named_is_not_second_guessed(tmp_path: Path, builders) -> None:
    plan = manifesto.plan(write_matrix(tmp_path, f"oci:{tmp_path / 'out'}"), builder="native")
    with pytest.raises(BuildError, match="linux/arm64/v8: build failed: Dockerfile:3: WORKDIR"):
        build_all(plan, Options(jobs=1), tmp_path / "work")
    assert builders["buildah"].built == []  # type: ignore[attr-defined]


def test_auto_sends_a_user_name_before_workdir_to_buildah_up_front(tmp_path: Path) -> None:
    path = write_matrix(tmp_path, "localhost:5000/x", platforms=("linux/amd64",))
    (tmp_path / "ctx" / "Dockerfile").write_text("FROM alpine\nUSER app\nWORKDIR /srv\n")
    (choice,) = choose_builders(manifesto.plan(path))
    assert choice.builder == "buildah"
    assert choice.reason == "auto: Dockerfile:3: WORKDIR creates /srv owned by USER app: only the image's /etc/passwd resolves that name"
    (tmp_path / "ctx" / "Dockerfile").write_text("FROM alpine\nUSER 1000:1000\nWORKDIR /srv\n")
    assert choose_builders(manifesto.plan(path))[0].builder == "native"


def test_dry_run_and_doctor_name_the_builders_the_run_uses(tmp_path: Path, monkeypatch, capsys) -> None:
    """publish --dry-run prints each platform's builder and why, and doctor checks those
    builders: both from jobs.builds.choose_builders, as the run chooses."""
    from manifesto.cli.main import main

    path = write_matrix(tmp_path, "localhost:5000/x", platforms=("linux/amd64", "linux/arm64"))
    (tmp_path / "ctx" / "Dockerfile.run").write_text("FROM alpine\nRUN true\n")
    text = path.read_text().replace("  - linux/arm64\n", "  - platform: linux/arm64\n    dockerfile: Dockerfile.run\n")
    path.write_text(text)
    monkeypatch.chdir(tmp_path)
    assert main(["publish", "-f", str(path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    amd = next(line for line in out.splitlines() if line.startswith("  linux/amd64"))
    arm = next(line for line in out.splitlines() if line.startswith("  linux/arm64"))
    assert "native (auto: no instruction needs execution)" in amd
    assert "buildah (auto: Dockerfile.run:2: RUN needs a builder that executes commands)" in arm

    import manifesto.jobs.doctor

    checked: list[tuple[str, ...]] = []
    monkeypatch.setattr(manifesto.jobs.doctor, "run_checks", lambda names, *a, **k: checked.append(tuple(names)) or [])
    assert main(["doctor", "-f", str(path)]) == 0
    assert checked == [("native", "buildah")]  # what the run uses, not `auto`
