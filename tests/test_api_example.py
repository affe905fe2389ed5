"""docs/api.md's worked example runs: every `python` block, in order, in one namespace.

Why: a library example that is not run rots with the first rename. The example reads the
registry from MANIFESTO_EXAMPLE_REGISTRY; here that is a real registry holding the docker-library
style busybox images it starts from (amd64/busybox:1, arm64v8/busybox:1).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.support import LibraryRepo, Registry, require, run
from tests.support.images import inspect_raw

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "api.md"


def python_blocks(text: str) -> list[str]:
    """The bodies of the ```python fenced blocks of a markdown text, in order."""
    return re.findall(r"^```python\n(.*?)^```$", text, flags=re.MULTILINE | re.DOTALL)


def test_the_block_finder() -> None:
    text = "a\n```python\nx = 1\n```\n```sh\nno\n```\n```python\ny = 2\n\nz = 3\n```\n"
    assert python_blocks(text) == ["x = 1\n", "y = 2\n\nz = 3\n"]


def test_the_worked_example_runs(
    tmp_home, registry: Registry, library_repos: dict[str, LibraryRepo], monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.setenv("MANIFESTO_EXAMPLE_REGISTRY", registry.host)
    blocks = python_blocks(DOC.read_text())
    assert len(blocks) >= 5
    namespace: dict = {"__name__": "api_example"}
    for number, block in enumerate(blocks, 1):
        exec(compile(block, f"{DOC}:python block {number}", "exec"), namespace)
    out = capsys.readouterr().out

    # what the example did is really there, as peers see it
    assembled, built, final = namespace["assembled"], namespace["built"], namespace["final"]
    raw = inspect_raw(f"{registry.host}/demo/busybox:latest")
    assert raw == assembled.index.raw
    children = {str(c.platform): str(c.digest) for c in assembled.children}
    assert children["linux/amd64"] == library_repos["amd64"].digest
    assert children["linux/arm64/v8"] == library_repos["arm64"].digest
    assert inspect_raw(f"{registry.host}/demo/hello:1.0") == final.index.raw
    assert [str(c.platform) for c in built.children] == ["linux/amd64", "linux/arm64/v8"]
    assert f"wrote {namespace['work'] / 'out'} {built.index.digest}" in out
    assert "not found:" in out
    # the layout (with the base's layers copied in) is one a peer accepts
    run([require("oci-image-tool"), "validate", "--type", "image", "--ref", "name=1.0", str(namespace["work"] / "out")])
