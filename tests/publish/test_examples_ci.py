"""examples/ci/: the GitHub Actions and GitLab CI workflows, parsed and their commands run.

Every line of every `run:` / `script:` that starts with `manifesto` is executed for real with
bash, and every use of manifesto's GitHub Action (action.yml) with a command runs that command
through the action's own scripts/action-run.py, after the CI's own variables are replaced by local values (GitHub `${{ ... }}`
expressions through a small mapping; shell variables through the environment): the per-platform
jobs run as separate processes with separate state (one "runner" each, at the same time), their
digest files travel like artifacts into the assembling job's workspace, and the assemble job's
commands push the index into a local htpasswd registry. `manifesto login` lines run too, against
that registry, with the "secrets" mapped to its test user. Lines that are not manifesto
commands (apt-get, the venv, GitLab's pinned `pip install` of manifesto, CI env plumbing, the example's
prepare.sh) are checked to be exactly the known setup lines, not executed.

The workflows list all five platforms; two of them are run here to stay fast.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.publish.conftest import (
    ARCH_NS,
    DIGEST_LINE,
    EPOCH,
    FIVE,
    State,
    index_platforms,
    sha256,
    slug,
)
from tests.support import Registry, inspect_raw, require
from tests.support.tools import REPO_ROOT

pytestmark = pytest.mark.slow

CI = REPO_ROOT / "examples" / "ci"
GITHUB = CI / "github-actions.yml"
GITLAB = CI / "gitlab-ci.yml"
VERSION = "9.9.9"  # what a `v9.9.9` tag pipeline computes

EXPR = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")
SHELL_VAR = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)")
# Setup lines the test knows and does not execute (anything else that is not `manifesto ...`
# fails the test, so a new command in a workflow cannot go unexercised silently).
SETUP = [
    re.compile(r"^apt-get update -qq$"),
    re.compile(r"^apt-get install -y -qq --no-install-recommends [a-z0-9 .+-]+$"),
    re.compile(r"^python3 -m venv /opt/manifesto$"),
    re.compile(r'^echo /opt/manifesto/bin >> "\$GITHUB_PATH"$'),
    re.compile(r'^export PATH="/opt/manifesto/bin:\$PATH"$'),
    re.compile(r'^echo "VERSION=\$\{GITHUB_REF_NAME#v\}" >> "\$GITHUB_ENV"$'),
    re.compile(r'^git config --global --add safe\.directory "\$(GITHUB_WORKSPACE|CI_PROJECT_DIR)"$'),
    re.compile(r"^epoch=\$\(git log -1 --format=%ct\)$"),
    re.compile(r'^echo "SOURCE_DATE_EPOCH=\$epoch" >> "\$GITHUB_ENV"$'),
    re.compile(r'^export VERSION="\$\{CI_COMMIT_TAG#v\}"$'),
    re.compile(r'^SOURCE_DATE_EPOCH="\$\(git log -1 --format=%ct\)"$'),
    re.compile(r"^export SOURCE_DATE_EPOCH$"),
    re.compile(r"^bash examples/hello/prepare.sh$"),  # the hello fixture has done this
]
# pinned to this project's own version (a re-run must publish with the same tool)
VERSION_PIN = re.search(r'^version = "([^"]+)"', (REPO_ROOT / "pyproject.toml").read_text(), re.MULTILINE)
PINNED = f"v{VERSION_PIN.group(1) if VERSION_PIN else '?'}"
# GitLab installs from the source the user names (MANIFESTO_SOURCE at MANIFESTO_REF) ...
PIP = 'pip install "${MANIFESTO_SOURCE}@${MANIFESTO_REF}"'
# ... GitHub uses the action at the top of this repository, under a placeholder owner
ACTION = re.compile(rf"^OWNER/manifesto@{re.escape(PINNED)}$")


def lines_of(block: str) -> list[str]:
    out = [line.strip() for line in block.splitlines()]
    out = [line for line in out if line and not line.startswith("#")]
    assert not any(line.endswith("\\") for line in out), "continued lines are not supported here"
    return out


def split_lines(lines: list[str]) -> list[str]:
    """The manifesto commands; every other line must be a known setup line (or the pip install)."""
    commands = []
    for line in lines:
        if line.startswith("manifesto "):
            commands.append(line)
        elif line == PIP:
            continue
        else:
            assert "manifesto" not in line or "/opt/manifesto" in line, f"a manifesto command not at line start: {line}"
            assert any(p.match(line) for p in SETUP), f"unknown setup line (run it or list it): {line}"
    return commands


def shell_vars(line: str) -> set[str]:
    return set(SHELL_VAR.findall(line))


# ---- running a job --------------------------------------------------------------------------------


@dataclasses.dataclass
class Machine:
    """One CI job's machine: its own manifesto state and its own checkout (workspace)."""

    state: State
    workspace: Path
    ran: list[str] = dataclasses.field(default_factory=list)
    stdout: list[str] = dataclasses.field(default_factory=list)

    def sh(self, line: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        """Run one workflow line with bash, the venv's `manifesto` first on PATH."""
        done = subprocess.run(
            ["bash", "-c", "set -euo pipefail\n" + line],
            cwd=self.workspace,
            env=self.state.shell_env(env),
            capture_output=True,
            text=True,
            timeout=600,
            stdin=subprocess.DEVNULL,
            check=False,
        )
        assert done.returncode == 0, f"`{line}` failed (exit {done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
        self.ran.append(line)
        self.stdout.append(done.stdout)
        return done

    def action(self, inputs: dict[str, str], env: dict[str, str]) -> None:
        """A use of the action with a command: its run step's script, with this venv's manifesto."""
        given = {f"INPUT_{k.upper()}": inputs.get(k, "") for k in ("command", "file", "args")}
        done = subprocess.run(
            [sys.executable, str(REPO_ROOT / "scripts" / "action-run.py")],
            cwd=self.workspace, env=self.state.shell_env({**env, **given}), capture_output=True, text=True,
            timeout=600, stdin=subprocess.DEVNULL, check=False,
        )  # fmt: skip
        assert done.returncode == 0, f"the action's {inputs} failed (exit {done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
        [echo] = [line for line in done.stderr.splitlines() if line.startswith("+ manifesto ")]
        self.ran.append(echo[2:])
        self.stdout.append(done.stdout)


def checkout(root: Path, hello: Path, platforms: list[str]) -> Path:
    """A workspace like a checkout of this repo, with platforms.yaml narrowed to `platforms`."""
    root.mkdir(parents=True)
    spec = yaml.safe_load((REPO_ROOT / "platforms.yaml").read_text())
    spec["platforms"] = platforms
    spec["build"]["context"] = str(hello)
    (root / "platforms.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return root


@pytest.fixture
def ci_registry(registry_factory: Callable[..., Registry]) -> Registry:
    """A registry that wants a login (htpasswd), so the workflows' login lines matter."""
    return registry_factory(auth="htpasswd")


def repo_platforms() -> list[str]:
    return list(yaml.safe_load((REPO_ROOT / "platforms.yaml").read_text())["platforms"])


def tags_of_auth(registry: Registry, repo: str) -> list[str] | None:
    """The repository's tags (None: the registry does not know it), as the test user."""
    with registry.client(auth=registry.creds) as c:
        r = c.get(f"/v2/{repo}/tags/list")
    if r.status_code == 404:
        return None
    r.raise_for_status()
    return list(r.json().get("tags") or [])


def check_result(registry: Registry, repo: str, platforms: list[str], assembler: Machine) -> None:
    """The assemble job pushed an index of `platforms` under VERSION and latest, and said so."""
    assert [line.split()[1] for line in assembler.ran] == ["login", "assemble", "inspect"], assembler.ran
    digest = assembler.stdout[1].strip().splitlines()[-1]  # `manifesto assemble` prints it last
    assert DIGEST_LINE.match(digest), assembler.stdout[1]
    raw = inspect_raw(registry.ref(repo, VERSION), registry)
    assert sha256(raw) == digest
    assert inspect_raw(registry.ref(repo, "latest"), registry) == raw
    assert list(index_platforms(raw)) == platforms
    assert sorted(tags_of_auth(registry, repo) or []) == sorted([VERSION, "latest"])
    report = json.loads((assembler.workspace / "report.json").read_text())
    assert report["index"]["digest"] == digest
    assert [p["platform"] for p in report["platforms"]] == platforms
    for platform in platforms:  # `manifesto inspect` lists each platform
        assert platform in assembler.stdout[2]
    # platforms.yaml's arch_tag: the docker-library tags move with the index, at assemble
    children = index_platforms(raw)
    for platform in platforms:
        arch_repo = f"{ARCH_NS[platform]}/{repo.rsplit('/', 1)[-1]}"
        assert sorted(tags_of_auth(registry, arch_repo) or []) == sorted([VERSION, "latest"])
        assert sha256(inspect_raw(registry.ref(arch_repo, VERSION), registry)) == children[platform]


def assert_nothing_tagged(registry: Registry, repo: str, platforms: list[str]) -> None:
    """After the per-platform jobs: no tag anywhere, neither the index's nor the arch tags."""
    assert tags_of_auth(registry, repo) in (None, [])
    for platform in platforms:
        assert tags_of_auth(registry, f"{ARCH_NS[platform]}/{repo.rsplit('/', 1)[-1]}") in (None, [])


# ---- GitHub Actions -------------------------------------------------------------------------------


def test_github_actions_workflow_runs_for_real(hello: Path, ci_registry: Registry, tmp_path: Path) -> None:
    wf = yaml.safe_load(GITHUB.read_text())
    on = wf.get("on", wf.get(True))  # YAML 1.1 reads a bare `on` as true
    assert "push" in on
    publish, assemble = wf["jobs"]["publish"], wf["jobs"]["assemble"]
    assert assemble["needs"] in ("publish", ["publish"])
    matrix = publish["strategy"]["matrix"]["include"]
    assert [m["platform"] for m in matrix] == list(FIVE) == repo_platforms()
    # README's tip (a matrix entry with its own `runs-on`) works: the job reads matrix.runs-on
    assert re.fullmatch(r"\$\{\{ matrix\.runs-on \|\| '[\w.-]+' \}\}", publish["runs-on"]), publish["runs-on"]
    assert "runs-on: ubuntu-24.04-arm }" in (CI / "README.md").read_text()
    assert all(m["slug"] == slug(m["platform"]) for m in matrix)

    repo = "ci-github/hello"
    expressions = {
        "vars.REGISTRY": ci_registry.host,
        "vars.IMAGE": ci_registry.ref(repo),
        "secrets.REGISTRY_USERNAME": ci_registry.username,
        "secrets.REGISTRY_PASSWORD": ci_registry.password,
    }
    # what the `>> "$GITHUB_ENV"` lines give on a v9.9.9 tag push
    github_env = {"VERSION": VERSION, "SOURCE_DATE_EPOCH": EPOCH}

    def expand(text: str, ctx: dict[str, str]) -> str:
        def one(m: re.Match[str]) -> str:
            assert m.group(1) in ctx, f"no local value for ${{{{ {m.group(1)} }}}} in {text!r}"
            return str(ctx[m.group(1)])

        return EXPR.sub(one, text)

    workflow_env = {k: expand(str(v), expressions) for k, v in wf["env"].items()}

    def run_job(job: dict[str, Any], machine: Machine, ctx: dict[str, str]) -> dict[str, Any]:
        """Run the job's manifesto lines in order; return its artifact steps' `with:`."""
        artifacts: dict[str, Any] = {"upload": [], "download": []}
        installed = False  # the action has run (manifesto is on PATH)
        for step in job["steps"]:
            uses = step.get("uses", "")
            if uses.startswith("actions/upload-artifact@"):
                assert step["with"].get("overwrite") is True, "a re-run uploads under the same name again"
                artifacts["upload"].append({k: expand(str(v), ctx) for k, v in step["with"].items()})
            elif uses.startswith("actions/download-artifact@"):
                artifacts["download"].append(step["with"])
            if uses.startswith("OWNER/"):
                assert ACTION.match(uses), f"the action, pinned to this version: {uses}"
                inputs = {k: expand(str(v), {**ctx, **{f"env.{k}": v for k, v in {**workflow_env, **github_env}.items()}})
                          for k, v in step.get("with", {}).items()}  # fmt: skip
                assert set(inputs) <= set(yaml.safe_load((REPO_ROOT / "action.yml").read_text())["inputs"])
                assert installed or inputs.get("command") == "", "the first use only installs (and sets up qemu)"
                installed = True
                if inputs.get("command"):
                    machine.action(inputs, {**workflow_env, **github_env})
            if "run" not in step:
                continue
            lines = lines_of(step["run"])
            assert PIP not in lines
            env = {**workflow_env, **github_env, **{k: expand(str(v), ctx) for k, v in (step.get("env") or {}).items()}}
            for line in split_lines(lines):
                assert installed, f"{line}: before the action installed manifesto"
                line = expand(line, ctx)
                unknown = shell_vars(line) - set(env)
                assert not unknown, f"{line}: variables the workflow never sets: {unknown}"
                if line.startswith("manifesto login"):
                    assert line == 'manifesto login "$REGISTRY" --username "$REGISTRY_USERNAME" --password-stdin <<< "$REGISTRY_PASSWORD"'
                machine.sh(line, env)
        assert installed, "each job uses the action"
        return artifacts

    chosen = [m for m in matrix if m["platform"] in ("linux/amd64", "linux/arm/v7")]
    runners = {m["platform"]: Machine(State.make(tmp_path / "runner" / m["slug"]),
                                      checkout(tmp_path / "ws" / m["slug"], hello, [c["platform"] for c in chosen]))
               for m in chosen}  # fmt: skip

    def runner(m: dict[str, str]) -> dict[str, Any]:
        return run_job(publish, runners[m["platform"]], {**expressions, **{f"matrix.{k}": v for k, v in m.items()}})

    with ThreadPoolExecutor(max_workers=len(chosen)) as pool:  # separate runners, at once
        uploads = dict(zip([m["platform"] for m in chosen], pool.map(runner, chosen)))
    for m in chosen:
        ran = runners[m["platform"]].ran
        assert [line.split()[1] for line in ran] == ["login", "doctor", "publish"], ran
        assert shlex.split(ran[-1])[-3:] == ["--push-by-digest", "--digest-file", f"digests/{m['slug']}.json"], ran[-1]
    assert_nothing_tagged(ci_registry, repo, [m["platform"] for m in chosen])

    # artifacts: each runner uploads its digest file; assemble downloads them all into digests/
    assembler = Machine(State.make(tmp_path / "assembler"),
                        checkout(tmp_path / "ws" / "assemble", hello, [c["platform"] for c in chosen]))  # fmt: skip
    [download] = [s["with"] for s in assemble["steps"] if s.get("uses", "").startswith("actions/download-artifact@")]
    assert download["path"] == "digests" and download.get("merge-multiple") is True
    for m in chosen:
        [upload] = uploads[m["platform"]]["upload"]
        assert upload["path"] == f"digests/{m['slug']}.json"
        assert fnmatch.fnmatch(upload["name"], download["pattern"])
        (assembler.workspace / "digests").mkdir(exist_ok=True)
        shutil.copy(runners[m["platform"]].workspace / upload["path"], assembler.workspace / "digests")

    run_job(assemble, assembler, dict(expressions))
    check_result(ci_registry, repo, [m["platform"] for m in chosen], assembler)


# ---- GitLab CI ------------------------------------------------------------------------------------------


def test_gitlab_ci_pipeline_runs_for_real(hello: Path, ci_registry: Registry, tmp_path: Path) -> None:
    doc = yaml.safe_load(GITLAB.read_text())
    assert doc["stages"] == ["publish", "assemble"]

    def job(name: str) -> dict[str, Any]:
        j = dict(doc[name])
        base = j.pop("extends", None)
        return {**doc[base], **j} if base else j

    publish, assemble = job("publish"), job("assemble")
    assert assemble["needs"] == ["publish"]
    [axis] = publish["parallel"]["matrix"]
    assert axis["PLATFORM"] == list(FIVE) == repo_platforms()

    repo = "ci-gitlab/hello"
    predefined = {
        "CI_REGISTRY": ci_registry.host,
        "CI_REGISTRY_IMAGE": ci_registry.ref("ci-gitlab"),
        "CI_REGISTRY_USER": ci_registry.username,
        "CI_REGISTRY_PASSWORD": ci_registry.password,
        "CI_COMMIT_TAG": f"v{VERSION}",
    }
    variables = {k: re.sub(r"\$\{?(\w+)\}?", lambda m: predefined[m.group(1)], str(v)) for k, v in doc["variables"].items()}
    assert variables["IMAGE"] == ci_registry.ref(repo)
    assert variables["MANIFESTO_REF"] == PINNED and variables["MANIFESTO_SOURCE"].startswith("git+https://")
    exported = {"VERSION": VERSION, "SOURCE_DATE_EPOCH": EPOCH}  # what the `export` lines give

    def run_job(j: dict[str, Any], machine: Machine, env: dict[str, str]) -> None:
        lines = [*j["before_script"], *j["script"]]
        assert lines.count(PIP) == 1
        for line in split_lines(lines):
            unknown = shell_vars(line) - set(env)
            assert not unknown, f"{line}: variables the pipeline never sets: {unknown}"
            if line.startswith("manifesto login"):
                assert line == 'manifesto login "$CI_REGISTRY" --username "$CI_REGISTRY_USER" --password-stdin <<< "$CI_REGISTRY_PASSWORD"'
            machine.sh(line, env)

    base_env = {**predefined, **variables, **exported}
    chosen = ["linux/arm64/v8", "linux/s390x"]
    runners = {p: Machine(State.make(tmp_path / "runner" / slug(p)), checkout(tmp_path / "ws" / slug(p), hello, chosen))
               for p in chosen}  # fmt: skip
    with ThreadPoolExecutor(max_workers=len(chosen)) as pool:
        list(pool.map(lambda p: run_job(publish, runners[p], {**base_env, "PLATFORM": p}), chosen))
    assert_nothing_tagged(ci_registry, repo, chosen)

    # artifacts: paths [digests/] from every publish job, fetched by `needs` into the same path
    assert publish["artifacts"]["paths"] == ["digests/"]
    assembler = Machine(State.make(tmp_path / "assembler"), checkout(tmp_path / "ws" / "assemble", hello, chosen))
    for p in chosen:
        produced = sorted((runners[p].workspace / "digests").glob("*.json"))
        assert [f.name for f in produced] == [f"{slug(p)}.json"]
        shutil.copytree(runners[p].workspace / "digests", assembler.workspace / "digests", dirs_exist_ok=True)
    run_job(assemble, assembler, base_env)
    assert assemble["artifacts"]["paths"] == ["report.json"]
    check_result(ci_registry, repo, chosen, assembler)


# ---- SOURCE_DATE_EPOCH from git: the lines that compute it, run for real ------------------------------

COMMIT_TIME = 1700000123


def epoch_script(ci: str) -> str:
    """The workflow's lines that compute SOURCE_DATE_EPOCH, as a script that ends by writing
    what the job would see into $GITHUB_ENV (GitHub writes there itself)."""
    if ci == "github":
        wf = yaml.safe_load(GITHUB.read_text())
        [step] = [s for s in wf["jobs"]["publish"]["steps"] if "SOURCE_DATE_EPOCH" in s.get("run", "")]
        return step["run"]
    doc = yaml.safe_load(GITLAB.read_text())
    lines = [line for line in doc[".manifesto"]["before_script"] if line.startswith("git ") or "SOURCE_DATE_EPOCH" in line]
    return "\n".join([*lines, 'echo "SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH" >> "$GITHUB_ENV"'])


def run_as_ci(ci: str, script: str, workspace: Path, home: Path, env_file: Path) -> subprocess.CompletedProcess[str]:
    """Run `script` the way each CI runs a step: GitHub `shell: bash` is `bash --noprofile
    --norc -eo pipefail {0}`; GitLab runs its generated script under `set -eo pipefail`."""
    path = home / f"{ci}-step.sh"
    path.write_text(script if ci == "github" else "set -eo pipefail\n" + script)
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": str(home),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GITHUB_ENV": str(env_file),
        "GITHUB_WORKSPACE": str(workspace),
        "GITHUB_REF_NAME": f"v{VERSION}",
        "CI_PROJECT_DIR": str(workspace),
        "CI_COMMIT_TAG": f"v{VERSION}",
    }
    return subprocess.run(
        ["bash", "--noprofile", "--norc", *(["-eo", "pipefail"] if ci == "github" else []), str(path)],
        cwd=workspace, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def git_checkout(path: Path, home: Path) -> Path:
    git = require("git")
    path.mkdir(parents=True)
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(home), "GIT_CONFIG_NOSYSTEM": "1",
           "GIT_AUTHOR_DATE": f"@{COMMIT_TIME} +0000", "GIT_COMMITTER_DATE": f"@{COMMIT_TIME} +0000"}  # fmt: skip
    (path / "README").write_text("hello\n")
    for args in (["init", "-q"], ["add", "README"], ["-c", "user.name=ci", "-c", "user.email=ci@example.com", "commit", "-q", "-m", "c"]):
        subprocess.run([git, *args], cwd=path, env=env, check=True, capture_output=True, timeout=60)
    return path


@pytest.mark.parametrize("ci", ["github", "gitlab"])
def test_the_epoch_comes_from_a_checkout_owned_by_another_user(ci: str, tmp_path: Path) -> None:
    """A container job: the checkout belongs to the runner's user, the job runs as root, and
    git refuses such a repository unless it is a safe.directory."""
    if os.geteuid() != 0:
        pytest.skip("needs root to give the checkout to another user")
    home = tmp_path / "home"
    home.mkdir()
    workspace = git_checkout(tmp_path / "workspace", home)
    subprocess.run(["chown", "-R", "65534:65534", str(workspace)], check=True, timeout=60)
    env_file = tmp_path / "github_env"
    done = run_as_ci(ci, epoch_script(ci), workspace, home, env_file)
    assert done.returncode == 0, done.stderr
    assert f"SOURCE_DATE_EPOCH={COMMIT_TIME}\n" in env_file.read_text()


@pytest.mark.parametrize("ci", ["github", "gitlab"])
def test_a_failing_git_log_fails_the_job(ci: str, tmp_path: Path) -> None:
    """No repository at all: the step must fail, not hand manifesto an empty epoch."""
    home = tmp_path / "home"
    home.mkdir()
    workspace = tmp_path / "not-a-checkout"
    workspace.mkdir()
    env_file = tmp_path / "github_env"
    done = run_as_ci(ci, epoch_script(ci), workspace, home, env_file)
    assert done.returncode != 0, (done.stdout, env_file.read_text() if env_file.exists() else "")
    assert "SOURCE_DATE_EPOCH=\n" not in (env_file.read_text() if env_file.exists() else "")
