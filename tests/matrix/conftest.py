"""Helpers for the matrix tests: write a spec (and its Dockerfile) into a temp dir and load it."""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

from manifesto.matrix import Matrix, load

SpecLoader = Callable[..., Matrix]


@pytest.fixture
def spec(tmp_path: Path) -> SpecLoader:
    """spec(text, env={}, dockerfile=True, name="platforms.yaml") → the loaded Matrix."""

    def make(
        text: str, env: Mapping[str, str] | None = None, *, dockerfile: bool = True, name: str = "platforms.yaml"
    ) -> Matrix:
        if dockerfile:
            (tmp_path / "Dockerfile").write_text("FROM scratch\n")
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
        return load(path, env=env or {})

    return make
