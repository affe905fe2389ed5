"""binfmt_misc checks: fake /proc trees for what is wrong, the real system for what is right."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import pytest

from manifesto.builders import binfmt
from manifesto.builders.base import Problem
from manifesto.builders.runner import Completed, Runner
from manifesto.oci.platform import Platform
from tests.support.tools import missing

FOREIGN = [Platform.parse(p) for p in ("linux/arm64/v8", "linux/arm/v7", "linux/ppc64le", "linux/s390x")]
ARM64 = Platform.parse("linux/arm64/v8")

GOOD = """enabled
interpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P
flags: PF
offset 0
magic 7f454c460201010000000000000000000200b700
mask ffffffffffffff00fffffffffffffffffeffffff
"""


def fake_proc(tmp_path: Path, handlers: dict[str, str] | None = None, mounted: bool = True) -> Path:
    root = tmp_path / "binfmt_misc"
    root.mkdir()
    if mounted:
        (root / "status").write_text("enabled\n")
        (root / "register").write_text("")
    for name, text in (handlers or {}).items():
        (root / name).write_text(text)
    return root


def fake_binfmts(tmp_path: Path, *names: str) -> Path:
    d = tmp_path / "binfmts"
    d.mkdir()
    for n in names:
        (d / n).write_text(f"package qemu-user-static\ninterpreter /usr/libexec/qemu-binfmt/{n}\n")
    return d


def test_handler_parse() -> None:
    h = binfmt.Handler.parse("qemu-aarch64", GOOD)
    assert h.enabled and h.fix_binary and h.flags == "PF"
    assert h.interpreter == "/usr/libexec/qemu-binfmt/aarch64-binfmt-P"
    h = binfmt.Handler.parse("qemu-arm", "disabled\ninterpreter /usr/bin/qemu-arm\nflags: OC\n")
    assert not h.enabled and not h.fix_binary and h.flags == "OC"
    h = binfmt.Handler.parse("x", "enabled\ninterpreter /x\nflags: \n")
    assert h.flags == "" and not h.fix_binary


def test_handler_names_and_native() -> None:
    names = {str(p): binfmt.handler_name(p) for p in FOREIGN}
    assert names == {
        "linux/arm64/v8": "qemu-aarch64",
        "linux/arm/v7": "qemu-arm",
        "linux/ppc64le": "qemu-ppc64le",
        "linux/s390x": "qemu-s390x",
    }
    assert binfmt.is_native(Platform.parse("linux/amd64"), "x86_64")
    assert binfmt.is_native(Platform.parse("linux/386"), "x86_64")
    assert not binfmt.is_native(ARM64, "x86_64")
    assert binfmt.is_native(Platform.parse("linux/arm64"), "aarch64")
    assert binfmt.is_native(Platform.parse("linux/arm/v6"), "armv7l")
    assert not binfmt.is_native(Platform.parse("linux/amd64"), "aarch64")
    assert not binfmt.is_native(Platform.parse("windows/amd64"), "x86_64")


def test_unmounted(tmp_path: Path) -> None:
    root = fake_proc(tmp_path, mounted=False)
    problems = binfmt.check([ARM64, Platform.parse("linux/s390x")], root=root, machine="x86_64")
    assert len(problems) == 1
    (p,) = problems
    assert "not mounted" in p.message
    assert p.fix == (
        f"mount -t binfmt_misc binfmt_misc {root}"
        " && update-binfmts --enable qemu-aarch64 && update-binfmts --enable qemu-s390x"
    )
    assert p.commands[0] == ("mount", "-t", "binfmt_misc", "binfmt_misc", str(root))


def test_real_path_fix_text_when_unmounted(tmp_path: Path) -> None:
    # The message users copy: exactly the documented command for the real /proc path.
    assert " ".join(binfmt.MOUNT_ARGV) == "mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc"


def test_missing_handler_known_to_binfmt_support(tmp_path: Path) -> None:
    root = fake_proc(tmp_path)
    problems = binfmt.check([ARM64], root=root, binfmts=fake_binfmts(tmp_path, "qemu-aarch64"), machine="x86_64")
    assert [p.fix for p in problems] == ["update-binfmts --enable qemu-aarch64"]
    assert "not registered" in problems[0].message


def test_missing_handler_not_installed(tmp_path: Path) -> None:
    root = fake_proc(tmp_path)
    (p,) = binfmt.check([ARM64], root=root, binfmts=fake_binfmts(tmp_path), machine="x86_64")
    assert p.fix == "apt-get install qemu-user-static binfmt-support && update-binfmts --enable qemu-aarch64"
    assert p.commands[0] == ("apt-get", "install", "-y", "qemu-user-static", "binfmt-support")


def test_disabled_handler(tmp_path: Path) -> None:
    root = fake_proc(tmp_path, {"qemu-aarch64": GOOD.replace("enabled", "disabled", 1)})
    (p,) = binfmt.check([ARM64], root=root, machine="x86_64")
    assert "disabled" in p.message and p.fix == "update-binfmts --enable qemu-aarch64"


def test_handler_without_fix_binary_flag(tmp_path: Path) -> None:
    root = fake_proc(tmp_path, {"qemu-aarch64": GOOD.replace("flags: PF", "flags: P")})
    (p,) = binfmt.check([ARM64], root=root, machine="x86_64")
    assert "F (fix-binary)" in p.message and "flags: P" in p.message
    assert p.fix.endswith("update-binfmts --disable qemu-aarch64 && update-binfmts --enable qemu-aarch64")


def test_good_handler_native_and_unsupported(tmp_path: Path) -> None:
    root = fake_proc(tmp_path, {"qemu-aarch64": GOOD})
    assert binfmt.check([ARM64, Platform.parse("linux/amd64")], root=root, machine="x86_64") == []
    # native platforms need nothing, even with binfmt_misc unmounted
    (tmp_path / "u").mkdir()
    unmounted = fake_proc(tmp_path / "u", mounted=False)
    assert binfmt.check([Platform.parse("linux/amd64")], root=unmounted, machine="x86_64") == []
    (p,) = binfmt.check([Platform.parse("windows/amd64")], root=root, machine="x86_64")
    assert "windows/amd64" in p.message


class RecordingRunner:
    """Stands in for Runner: records argv, answers with the given exit codes."""

    def __init__(self, codes: dict[str, int] | None = None):
        self.calls: list[tuple[str, ...]] = []
        self.codes = codes or {}

    def run(self, argv: Sequence[str], **kwargs: object) -> Completed:
        self.calls.append(tuple(argv))
        code = self.codes.get(argv[0], 0)
        return Completed(code, ("permission denied",) if code else ())


def test_fix_runs_commands_in_order_and_reports_failures(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(binfmt.os, "geteuid", lambda: 0)
    ok = Problem("a", "x", (("update-binfmts", "--enable", "qemu-arm"),))
    manual = Problem("needs a human")
    failing = Problem(
        "b", "y", (("mount", "-t", "binfmt_misc", "binfmt_misc", "/p"), ("update-binfmts", "--enable", "q"))
    )
    runner = RecordingRunner({"mount": 32})
    left = binfmt.fix([ok, manual, failing], runner)  # type: ignore[arg-type]
    assert runner.calls == [
        ("update-binfmts", "--enable", "qemu-arm"),
        ("mount", "-t", "binfmt_misc", "binfmt_misc", "/p"),
    ]
    assert left[0].message == "needs a human"
    assert left[1].message == "b\n    `mount -t binfmt_misc binfmt_misc /p` exited 32:\n      permission denied"
    assert (left[1].fix, left[1].commands) == (failing.fix, failing.commands)


def test_fix_does_nothing_unless_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(binfmt.os, "geteuid", lambda: 1000)
    p = Problem("a", "x", (("update-binfmts", "--enable", "qemu-arm"),))
    runner = RecordingRunner()
    assert binfmt.fix([p], runner) == [p]  # type: ignore[arg-type]
    assert runner.calls == []


class ScriptedRunner:
    """Stands in for Runner: records argv and env, answers each argv prefix as scripted."""

    def __init__(self, answers: dict[tuple[str, ...], tuple[int, tuple[str, ...]]] | None = None):
        self.calls: list[tuple[str, ...]] = []
        self.envs: list[dict[str, str] | None] = []
        self.answers = answers or {}

    def run(self, argv: Sequence[str], *, env: dict[str, str] | None = None, **kwargs: object) -> Completed:
        self.calls.append(tuple(argv))
        self.envs.append(env)
        for prefix, (code, tail) in self.answers.items():
            if tuple(argv[: len(prefix)]) == prefix:
                return Completed(code, tail)
        return Completed(0, ())


def test_fixes_update_apt_once_before_the_first_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(binfmt.os, "geteuid", lambda: 0)
    root = fake_proc(tmp_path)  # mounted, no handlers, and no binfmt definitions installed
    problems = binfmt.check([ARM64, Platform.parse("linux/s390x")], root=root, binfmts=root, machine="x86_64")
    assert [p.commands[0] for p in problems] == [binfmt.INSTALL_ARGV, binfmt.INSTALL_ARGV]
    builder = Problem("buildah is not installed", "apt-get install buildah", (("apt-get", "install", "-y", "buildah"),))
    runner = ScriptedRunner()
    assert binfmt.run_fixes([*problems, builder], runner) == []  # type: ignore[arg-type]
    assert runner.calls == [
        ("apt-get", "update"),
        binfmt.INSTALL_ARGV,  # once, though both handlers need it
        ("update-binfmts", "--enable", "qemu-aarch64"),
        ("update-binfmts", "--enable", "qemu-s390x"),
        ("apt-get", "install", "-y", "buildah"),
    ]
    apt_envs = [env for argv, env in zip(runner.calls, runner.envs, strict=True) if argv[0] == "apt-get"]
    assert apt_envs == [{"DEBIAN_FRONTEND": "noninteractive"}] * 3


def test_a_failed_fix_says_which_command_failed_and_what_it_printed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(binfmt.os, "geteuid", lambda: 0)
    enable = ("update-binfmts", "--enable", "qemu-aarch64")
    problem = Problem("qemu-aarch64 missing", "x", (binfmt.INSTALL_ARGV, enable))
    runner = ScriptedRunner(
        {
            ("apt-get", "update"): (100, ("Err:1 http://deb.example stable InRelease", "E: Some index files failed")),
            ("apt-get", "install"): (
                100,
                ("Reading package lists...", "", "E: Unable to locate package qemu-user-static"),
            ),
        }
    )
    (failure,) = binfmt.run_fixes([problem], runner)  # type: ignore[arg-type]
    assert runner.calls == [("apt-get", "update"), binfmt.INSTALL_ARGV]  # the install is still tried
    assert failure.problem is problem and failure.argv == binfmt.INSTALL_ARGV
    assert failure.output == ("Reading package lists...", "E: Unable to locate package qemu-user-static")
    assert failure.describe() == (
        "    `apt-get install -y qemu-user-static binfmt-support` exited 100"
        " (after `apt-get update` exited 100: E: Some index files failed):\n"
        "      Reading package lists...\n"
        "      E: Unable to locate package qemu-user-static"
    )
    # a missing tool is a failure too, not an exception
    gone = Problem("b", "y", (("update-binfmts", "--enable", "qemu-arm"),))
    (failure,) = binfmt.run_fixes([gone], Runner(env={"PATH": "/nonexistent"}))
    assert failure.describe().startswith("    `update-binfmts --enable qemu-arm` could not run: update-binfmts is not")


def test_run_fixes_as_non_root_runs_nothing_and_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(binfmt.os, "geteuid", lambda: 1000)
    p = Problem("a", "x", (("update-binfmts", "--enable", "qemu-arm"),))
    runner = ScriptedRunner()
    (failure,) = binfmt.run_fixes([p, Problem("manual")], runner)  # type: ignore[arg-type]
    assert runner.calls == [] and failure.argv is None
    assert failure.annotate(p).message == (
        "a\n    not fixed: fixes run only as root (run `manifesto doctor --fix` as root)"
    )


# ---- the real system ------------------------------------------------------------------------


def ensure_binfmt(platforms: list[Platform]) -> None:
    """Make the real host able to run `platforms` (fix as root), or skip (fail in CI)."""
    problems = binfmt.check(platforms)
    if problems and os.geteuid() == 0:
        binfmt.fix(problems)
        problems = binfmt.check(platforms)
    if problems:
        missing("qemu binfmt not usable here: " + "; ".join(map(str, problems)))


def test_real_system_runs_the_example_platforms() -> None:
    ensure_binfmt(FOREIGN)
    assert binfmt.is_mounted()
    host = binfmt.host_platform_of()
    assert host is not None and binfmt.is_native(host)
    for p in FOREIGN:
        if binfmt.is_native(p):
            continue
        name = binfmt.handler_name(p)
        assert name is not None
        h = binfmt.read_handler(name)
        assert h is not None and h.enabled and h.fix_binary, h
    assert binfmt.check(FOREIGN) == []
