"""action.yml, the composite GitHub Action: its structure, and its steps run like a runner runs them.

The runner is imitated closely enough to catch a broken action: each `run:` step is written to
a file and run with `bash --noprofile --norc -eo pipefail FILE` (GitHub's `shell: bash`), its
`${{ }}` expressions (only in `if:`, `env:`, `working-directory:` and `with:`) evaluated from
the inputs, with fresh GITHUB_ENV / GITHUB_PATH / GITHUB_OUTPUT files per step whose contents
carry into the next steps and the action's outputs. The action's checkout is a fresh copy of
this project (what `uses: OWNER/manifesto@REF` fetches), and the install step really installs
it into a new venv with pip; PATH holds only the system and a bare Python, not this venv.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from manifesto.builders.binfmt import check as binfmt_check
from manifesto.oci.platform import Platform
from tests.support import Registry
from tests.support.checkout import fresh_clone
from tests.support.images import busybox_path, cache_dir
from tests.support.tools import REPO_ROOT, missing, private_home

ACTION = REPO_ROOT / "action.yml"
EXPR = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")
CONDITION = re.compile(r"^inputs\.([\w-]+) (==|!=) '([^']*)'$")
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
FOREIGN = ["linux/arm64/v8", "linux/arm/v7", "linux/ppc64le", "linux/s390x"]
RUN = "manifesto ${{ inputs.command }}"  # the name of the step that runs the command


def action() -> dict[str, Any]:
    return yaml.safe_load(ACTION.read_text())


# ---- structure ---------------------------------------------------------------------------------


def test_the_action_is_a_composite_whose_inputs_and_outputs_are_wired() -> None:
    doc = action()
    assert doc["runs"]["using"] == "composite"
    steps = doc["runs"]["steps"]
    inputs = doc["inputs"]
    assert {"command", "args", "file", "setup-qemu", "python-version", "working-directory"} <= set(inputs)
    assert inputs["command"]["default"] == "publish" and inputs["setup-qemu"]["default"] == "true"
    used: set[str] = set()
    for step in steps:
        if "run" in step:
            assert step.get("shell") == "bash", f"a composite run step must name its shell: {step.get('name')}"
            # inputs reach scripts through env only: an expression spliced into a script is an injection
            assert "${{" not in step["run"], f"expression inside run: of {step.get('name')}"
        else:
            assert step["uses"].startswith("actions/setup-python@"), step
            assert step["if"] == "inputs.python-version != ''"
            assert step["with"] == {"python-version": "${{ inputs.python-version }}"}
        texts = [str(v) for k, v in step.items() if k in ("if", "env", "working-directory", "with", "name")]
        for text in texts:
            used |= set(re.findall(r"inputs\.([\w-]+)", text))
        if "if" in step:
            assert CONDITION.match(step["if"]), f"condition this test cannot evaluate: {step['if']}"
    assert used == set(inputs), f"inputs never used: {set(inputs) - used}; unknown: {used - set(inputs)}"
    [install] = [s for s in steps if s.get("name") == "install manifesto"]
    assert re.search(r'pip install .*"\$GITHUB_ACTION_PATH"', install["run"]), "installs the action's own checkout"
    ids = {s["id"] for s in steps if "id" in s}
    for name in ("digest", "image", "tags"):
        assert doc["outputs"][name]["value"] == f"${{{{ steps.run.outputs.{name} }}}}"
    assert "run" in ids


# ---- running it ---------------------------------------------------------------------------------


@dataclasses.dataclass
class Run:
    """What one use of the action did: each step's stdout+stderr and the action's outputs."""

    logs: dict[str, str]
    stdout: dict[str, str]
    outputs: dict[str, str]
    path: list[str]  # the job's PATH afterwards (the action adds manifesto's venv for later steps)
    failed: str | None  # the name of the step that failed, if one did


def read_commands_file(path: Path) -> dict[str, str]:
    """A GITHUB_ENV / GITHUB_OUTPUT file: `k=v` lines and `k<<DELIM ... DELIM` blocks."""
    out: dict[str, str] = {}
    lines = path.read_text().splitlines() if path.exists() else []
    i = 0
    while i < len(lines):
        line = lines[i]
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            key, delim = line.split("<<", 1)
            end = lines.index(delim, i + 1)
            out[key] = "\n".join(lines[i + 1 : end])
            i = end + 1
            continue
        if line:
            key, value = line.split("=", 1)
            out[key] = value
        i += 1
    return out


@dataclasses.dataclass
class Job:
    """One job on one runner: the action's checkout, the workspace, the runner's temp dir and HOME."""

    action_path: Path
    workspace: Path
    root: Path
    uses: int = 0


def run_action(job: Job, inputs: dict[str, str]) -> Run:
    """Use the action once in `job` with `inputs` (defaults for the rest)."""
    doc = action()
    job.uses += 1
    tmp = job.root / f"use-{job.uses}"
    tmp.mkdir()
    action_path, workspace = job.action_path, job.workspace
    values = {k: str(v.get("default", "")) for k, v in doc["inputs"].items()}
    assert set(inputs) <= set(values), set(inputs) - set(values)
    values.update(inputs)
    step_outputs: dict[str, dict[str, str]] = {}

    def expand(text: str) -> str:
        def one(m: re.Match[str]) -> str:
            expr = m.group(1)
            if expr.startswith("inputs."):
                return values[expr[len("inputs.") :]]
            parts = expr.split(".")
            if parts[0] == "steps" and parts[2] == "outputs":
                return step_outputs.get(parts[1], {}).get(parts[3], "")
            raise AssertionError(f"expression this runner does not know: {expr}")

        return EXPR.sub(one, text)

    def condition(text: str) -> bool:
        m = CONDITION.match(text)
        assert m, text
        return (values[m.group(1)] == m.group(3)) == (m.group(2) == "==")

    runner_temp = job.root / "runner-temp"
    runner_temp.mkdir(parents=True, exist_ok=True)
    job_env: dict[str, str] = {
        **private_home(job.root / "home"),
        "MANIFESTO_KEYRING": "file",
        "SOURCE_DATE_EPOCH": "1700000000",
        "CI": "true",
        "GITHUB_ACTIONS": "true",
        "GITHUB_WORKSPACE": str(workspace),
        "GITHUB_ACTION_PATH": str(action_path),
        "RUNNER_TEMP": str(runner_temp),
        "GITHUB_STEP_SUMMARY": str(tmp / "step-summary.md"),
        # pip's settings of this machine (index, certificates) as a runner has its own
        **{k: v for k, v in os.environ.items() if k.startswith("PIP_")},
    }
    # a bare Python (like setup-python's) and the system: not this project's venv
    path = [str(Path(sys.base_prefix) / "bin"), "/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"]
    logs: dict[str, str] = {}
    stdout: dict[str, str] = {}
    for n, step in enumerate(doc["runs"]["steps"]):
        name = step.get("name", f"step {n}")
        if "if" in step and not condition(step["if"]):
            continue
        assert "run" in step, f"this runner runs only run: steps ({name} would use {step.get('uses')})"
        files = {k: tmp / f"{n}.{k.lower()}" for k in ("GITHUB_ENV", "GITHUB_PATH", "GITHUB_OUTPUT")}
        for f in files.values():
            f.write_text("")
        script = tmp / f"{n}.sh"
        script.write_text(step["run"])
        cwd = workspace / expand(step.get("working-directory", "."))
        env = {**job_env, **{k: expand(str(v)) for k, v in (step.get("env") or {}).items()},
               **{k: str(f) for k, f in files.items()}, "PATH": ":".join(path)}  # fmt: skip
        done = subprocess.run(
            ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)],
            cwd=cwd, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
        logs[name], stdout[name] = done.stdout + done.stderr, done.stdout
        if done.returncode != 0:
            return Run(logs, stdout, {}, path, name)
        job_env.update(read_commands_file(files["GITHUB_ENV"]))
        path[:0] = reversed([p for p in files["GITHUB_PATH"].read_text().splitlines() if p])
        if "id" in step:
            step_outputs[step["id"]] = read_commands_file(files["GITHUB_OUTPUT"])
    outputs = {k: expand(v["value"]) for k, v in doc["outputs"].items()}
    return Run(logs, stdout, outputs, path, None)


@pytest.fixture(scope="module")
def job(tmp_path_factory: pytest.TempPathFactory) -> Job:
    """A job whose action checkout and workspace are two fresh copies of this project, the
    workspace's examples/hello-native prepared with the cached busybox binaries. The tests
    use the action in it one after the other, as steps of one job do."""
    root = tmp_path_factory.mktemp("action")
    action_path, workspace = fresh_clone(root / "action"), fresh_clone(root / "workspace")
    for arch in ("amd64", "arm64", "armhf", "ppc64el", "s390x"):
        busybox_path(arch)
    subprocess.run(["bash", "examples/hello-native/prepare.sh"], cwd=workspace, check=True, timeout=120,
                   env={**os.environ, "MANIFESTO_TEST_CACHE": str(cache_dir())}, capture_output=True)  # fmt: skip
    (root / "job").mkdir()
    return Job(action_path, workspace, root / "job")


def test_the_action_installs_from_its_checkout_publishes_and_inspects(job: Job, registry: Registry) -> None:
    image = registry.ref("action/hello-native")
    published = run_action(job, {
        "file": "examples/hello-native/platforms.yaml",
        "args": f"--image {image} --tag 1.0.0 --tag 'latest'",
    })  # fmt: skip
    assert published.failed is None, published.logs
    install = published.logs["install manifesto"]
    assert install.strip().splitlines()[-1] == f"manifesto {version()}", install
    # the venv the action made, from its own checkout (not this project's .venv)
    venv = job.root / "runner-temp" / "manifesto-venv"
    assert shutil.which("manifesto", path=":".join(published.path)) == str(venv / "bin" / "manifesto")
    assert "qemu: not needed" in published.logs["set up qemu for the foreign platforms"]
    out = published.stdout[RUN]
    digest = out.strip().splitlines()[-1]  # publish prints the index digest last
    assert DIGEST.match(digest), published.logs[RUN]
    assert published.outputs == {"digest": digest, "image": image, "tags": "1.0.0,latest"}

    # the workspace's own platforms.yaml builds with buildah: qemu for the four foreign platforms
    # (checked here first: the step would install and enable them, as root)
    problems = binfmt_check([Platform.parse(p) for p in FOREIGN])
    if problems:
        missing("qemu binfmt not usable: " + "; ".join(p.message for p in problems))
    inspected = run_action(job, {"command": "inspect", "args": f"{image}:latest"})
    assert inspected.failed is None, inspected.logs
    assert f"qemu: ready for {', '.join(FOREIGN)}" in inspected.logs["set up qemu for the foreign platforms"]
    # the second use in the job: same sources, the venv is kept
    assert inspected.logs["install manifesto"].startswith("manifesto: already installed from "), inspected.logs
    table = inspected.stdout[RUN]
    for platform in ("linux/amd64", "linux/arm64/v8", "linux/arm/v7", "linux/ppc64le", "linux/s390x"):
        assert platform in table, table


def test_args_are_split_like_words_and_never_evaluated(job: Job, tmp_path: Path) -> None:
    """A `$(...)` in an input is a word, not a command; bad quoting fails the step, saying why."""
    canary = tmp_path / "canary"
    bad = run_action(job, {
        "command": "inspect", "setup-qemu": "false", "args": f"\"$(touch {canary})\" 'unbalanced",
    })  # fmt: skip
    assert bad.failed == RUN
    assert "set up qemu for the foreign platforms" not in bad.logs  # setup-qemu: false
    assert "::error::manifesto action: input args: No closing quotation" in bad.logs[RUN]
    # the same script the step runs, with this venv's python: one word, passed as it is
    done = subprocess.run(
        [sys.executable, str(job.action_path / "scripts" / "action-run.py")],
        env={**os.environ, "INPUT_COMMAND": "inspect --raw", "INPUT_FILE": "", "INPUT_ARGS": f"\"$(touch {canary})\" `id`"},
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode != 0
    assert f"+ manifesto inspect --raw '$(touch {canary})' '`id`'" in done.stderr
    assert not canary.exists()


def version() -> str:
    found = re.search(r'^version = "([^"]+)"', (REPO_ROOT / "pyproject.toml").read_text(), re.MULTILINE)
    assert found
    return found.group(1)
