"""docs/tutorial.md and README.md run as written: their shell blocks, in order, in a fresh clone.

Every ```sh block runs, one after the other in ONE bash (`set -euo pipefail`, so a variable
exported in one block is there in the next, as in the reader's terminal), in a fresh copy of
this project made a git repository (a clone). In a ```console block each `$ ` line is a
command and the lines after it are its expected output: each must appear in that order, `...`
standing for any text (a line of just `...` for any lines). A block right after an HTML comment
`<!-- not-run: REASON -->` is not run; those are counted, so a new one cannot slip in.

Substituted, and only this: `localhost:5000` becomes `localhost:PORT` (a free port) in the
blocks and in the clone's platforms.yaml files, so the docs' own `scripts/registry.sh start`
starts their registry there; `manifesto` is this project's venv's (the not-run install block
makes the reader's); MANIFESTO_TEST_CACHE points prepare.sh at the test busybox cache instead
of downloading the .debs again; HOME and XDG dirs are the test's own.
"""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from manifesto.builders.binfmt import check as binfmt_check
from manifesto.oci.platform import Platform
from tests.support.checkout import fresh_clone
from tests.support.images import busybox_path, cache_dir
from tests.support.tools import REPO_ROOT, free_port, missing, private_home, require

TUTORIAL = REPO_ROOT / "docs" / "tutorial.md"
README = REPO_ROOT / "README.md"
SHELL = ("sh", "console")
FENCE = re.compile(r"^```(\S*)\s*$")
NOT_RUN = re.compile(r"^<!-- not-run: (.+?) -->$")
FOREIGN = ["linux/arm64/v8", "linux/arm/v7", "linux/ppc64le", "linux/s390x"]


@dataclasses.dataclass(frozen=True)
class Block:
    """One fenced block: its language, text, first line in the file, and why it is not run."""

    lang: str
    text: str
    line: int
    not_run: str | None


def blocks(path: Path) -> list[Block]:
    out: list[Block] = []
    lines = path.read_text().splitlines()
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
        before = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), "")
        reason = NOT_RUN.match(before.strip())
        out.append(Block(m.group(1), "\n".join(lines[i + 1 : end]), i + 2, reason.group(1) if reason else None))
        i = end + 1
    return out


def console_commands(block: Block) -> list[tuple[str, list[str]]]:
    """A console block's (command, expected output lines) pairs."""
    pairs: list[tuple[str, list[str]]] = []
    for line in block.text.splitlines():
        if line.startswith("$ "):
            pairs.append((line[2:], []))
        else:
            assert pairs, f"{block.line}: console output before any `$ ` command"
            pairs[-1][1].append(line)
    return pairs


def matches(expected: list[str], actual: str) -> str | None:
    """None if every expected line occurs in `actual`, in order (`...` = any text); else the first one missing."""
    got = actual.splitlines()
    at = 0
    for want in expected:
        if want.strip() == "...":
            continue
        pattern = re.compile("^" + ".*".join(re.escape(part) for part in want.split("...")) + "$")
        found = next((k for k in range(at, len(got)) if pattern.match(got[k])), None)
        if found is None:
            return want
        at = found + 1
    return None


@dataclasses.dataclass
class DocRun:
    """A doc's runnable blocks turned into one bash script, and what to check afterwards."""

    script: str
    markers: list[str]  # `block N (file:line)`, in order
    expected: dict[str, list[str]]  # output file name -> expected lines


def doc_run(path: Path, port: int) -> DocRun:
    parts = ["set -euo pipefail"]
    markers: list[str] = []
    expected: dict[str, list[str]] = {}
    for n, block in enumerate(b for b in blocks(path) if b.lang in SHELL and b.not_run is None):
        marker = f"block {n + 1} ({path.name}:{block.line})"
        markers.append(marker)
        parts.append(f"echo '::: {marker}' >&2")
        text = block.text.replace("localhost:5000", f"localhost:{port}")
        if block.lang == "sh":
            parts.append(text)
            continue
        for k, (command, lines) in enumerate(console_commands(Block(block.lang, text, block.line, None))):
            name = f"out-{n + 1}-{k + 1}.txt"
            expected[name] = lines
            parts.append(f'{{ {command}\n}} > "$DOCS_OUT/{name}" 2>&1 || {{ cat "$DOCS_OUT/{name}" >&2; exit 1; }}')
    parts.append("echo '::: done' >&2")
    return DocRun("\n".join(parts) + "\n", markers, expected)


def clone_for_docs(root: Path, port: int) -> Path:
    """A fresh clone (a git repository with one commit) whose platforms.yaml files name `port`."""
    git = require("git")
    clone = fresh_clone(root / "clone")
    for spec in clone.rglob("platforms.yaml"):
        spec.write_text(spec.read_text().replace("localhost:5000", f"localhost:{port}"))
    env = {"PATH": os.environ["PATH"], "HOME": str(root), "GIT_CONFIG_NOSYSTEM": "1",
           "GIT_AUTHOR_DATE": "@1700000000 +0000", "GIT_COMMITTER_DATE": "@1700000000 +0000"}  # fmt: skip
    for args in (["init", "-q"], ["add", "-A"], ["-c", "user.name=docs", "-c", "user.email=docs@example.com", "commit", "-q", "-m", "clone"]):
        subprocess.run([git, *args], cwd=clone, env=env, check=True, capture_output=True, timeout=60)
    return clone


def needs_builders() -> None:
    """The tutorial builds with buildah, foreign platforms under qemu, into docker-registry."""
    require("buildah")
    require("docker-registry")
    problems = binfmt_check([Platform.parse(p) for p in FOREIGN])
    if problems:
        missing("qemu binfmt not usable: " + "; ".join(p.message for p in problems))
    for arch in ("amd64", "arm64", "armhf", "ppc64el", "s390x"):
        busybox_path(arch)  # fetched once into the test cache; prepare.sh reads it from there


def run_doc(path: Path, tmp_path: Path) -> tuple[subprocess.CompletedProcess[str], DocRun, Path]:
    port = free_port()
    clone = clone_for_docs(tmp_path, port)
    run = doc_run(path, port)
    out = tmp_path / "outputs"
    out.mkdir(parents=True, exist_ok=True)
    env = {
        "PATH": f"{Path(sys.executable).parent}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        **private_home(tmp_path / "home"),
        "MANIFESTO_KEYRING": "file",
        "MANIFESTO_TEST_CACHE": str(cache_dir()),
        "DOCS_OUT": str(out),
        "LANG": "C.UTF-8",
    }
    script = tmp_path / f"{path.stem}.sh"
    script.write_text(run.script)
    try:
        done = subprocess.run(["bash", str(script)], cwd=clone, env=env, capture_output=True, text=True,
                              timeout=300, stdin=subprocess.DEVNULL, check=False)  # fmt: skip
    finally:  # the docs may stop their registry themselves; never leave one behind
        subprocess.run(["bash", "scripts/registry.sh", "stop"], cwd=clone, env=env, capture_output=True, timeout=60, check=False)
    return done, run, out


def check_ran(done: subprocess.CompletedProcess[str], run: DocRun, out: Path) -> None:
    reached = [line[4:] for line in done.stderr.splitlines() if line.startswith("::: ")]
    if done.returncode != 0:
        last = reached[-1] if reached else "before the first block"
        pytest.fail(f"{last} failed (exit {done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-4000:]}", pytrace=False)
    assert reached == [*run.markers, "done"]
    for name, lines in run.expected.items():
        missing_line = matches(lines, (out / name).read_text())
        assert missing_line is None, f"{name}: expected output line not found: {missing_line!r}\n{(out / name).read_text()[-3000:]}"


# ---- the tutorial -----------------------------------------------------------------------------


def test_the_tutorial_runs_as_written(tmp_path: Path) -> None:
    needs_builders()
    all_blocks = blocks(TUTORIAL)
    assert [b.line for b in all_blocks if b.not_run] == [b.line for b in all_blocks if b.lang == "sh"][:1]  # just the install
    assert sum(1 for b in all_blocks if b.lang in SHELL and not b.not_run) >= 10
    done, run, out = run_doc(TUTORIAL, tmp_path)
    check_ran(done, run, out)
    assert "registry at localhost:" in done.stdout and "stopped" in done.stdout  # its last block stopped it


def test_the_tutorials_files_are_the_repositorys() -> None:
    """The platforms.yaml and the Dockerfile the tutorial shows are the ones it runs."""
    shown = [b for b in blocks(TUTORIAL) if b.lang in ("yaml", "dockerfile")]
    [spec] = [b for b in shown if b.lang == "yaml"]
    assert yaml.safe_load(spec.text) == yaml.safe_load((REPO_ROOT / "platforms.yaml").read_text())
    [dockerfile] = [b for b in shown if b.lang == "dockerfile"]
    real = (REPO_ROOT / "examples" / "hello-native" / "Dockerfile").read_text().splitlines()
    assert dockerfile.text.splitlines() == [line for line in real if not line.startswith("#")]


# ---- the README ----------------------------------------------------------------------------------


def test_the_readme_examples_run_as_written(tmp_path: Path) -> None:
    needs_builders()
    all_blocks = [b for b in blocks(README) if b.lang in SHELL]
    not_run = [b for b in all_blocks if b.not_run]
    assert len(not_run) == 2, [(b.line, b.not_run) for b in not_run]  # make demo/test; Docker Hub and a login
    done, run, out = run_doc(README, tmp_path)
    check_ran(done, run, out)


# ---- the runner itself --------------------------------------------------------------------------


def test_a_failing_block_fails_the_run_and_names_it(tmp_path: Path) -> None:
    """The runner stops at the first failing command and says which block it was in; a console
    block's output must match; a not-run block is left out."""
    doc = tmp_path / "doc.md"
    doc.write_text(
        "```sh\nexport X=1\n```\n\n<!-- not-run: just an example -->\n```sh\nexit 3\n```\n\n"
        "```console\n$ echo \"x=$X at localhost:5000\"\nx=... at localhost:5000\n```\n\n"
        "```sh\nfalse\necho never\n```\n"
    )
    run = doc_run(doc, 6000)
    assert "exit 3" not in run.script
    out = tmp_path / "out"
    out.mkdir()
    done = subprocess.run(["bash", "-c", run.script], env={**os.environ, "DOCS_OUT": str(out)}, capture_output=True,
                          text=True, timeout=60, check=False)  # fmt: skip
    assert done.returncode != 0 and "never" not in done.stdout
    assert [line for line in done.stderr.splitlines() if line.startswith("::: ")][-1] == "::: block 3 (doc.md:16)"
    assert (out / "out-2-1.txt").read_text() == "x=1 at localhost:6000\n"  # the port substituted, X exported
    assert matches(run.expected["out-2-1.txt"], (out / "out-2-1.txt").read_text()) is None
    assert matches(["a", "...", "c ... e"], "a\nb\nc d e\n") is None
    assert matches(["c ... e", "a"], "a\nb\nc d e\n") == "a"  # in order
