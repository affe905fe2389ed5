"""`publish --check` under GitHub Actions: its build logs are folded with workflow commands off,
as publish's are (a Dockerfile's output must not set outputs, masks or annotations)."""

from __future__ import annotations

import re
from pathlib import Path

from tests.cli.conftest import hello_native
from tests.publish.conftest import State
from tests.support import Registry


def test_check_folds_each_build_log_with_commands_off(tmp_path: Path, registry: Registry) -> None:
    spec = hello_native(tmp_path)
    spec.write_text(spec.read_text().replace("localhost:5000/hello-native", f"{registry.host}/check/folded"))
    state = State.make(tmp_path / "state")
    github = {"GITHUB_ACTIONS": "true", "GITHUB_OUTPUT": str(tmp_path / "out"), "GITHUB_STEP_SUMMARY": str(tmp_path / "sum")}
    rc, out, err = state.run("publish", "-f", spec, "--check", env=github)
    assert rc == 8, out + err
    for platform in ("linux/amd64", "linux/arm64/v8"):
        block = re.search(rf"^::group::{platform} build log\n::stop-commands::(\S+)\n(.*?)\n::\1::\n::endgroup::$", err, re.M | re.S)
        assert block and "COPY" in block.group(2), err
    # no build line outside a block
    outside = re.sub(r"^::stop-commands::(\S+)\n.*?\n::\1::\n", "", err, flags=re.M | re.S)
    assert "COPY" not in outside, err
