"""platforms.yaml `attestations:` on an `image:` entry: keep or strip (the default), nowhere else."""

from __future__ import annotations

import pytest

from manifesto.errors import SpecError
from manifesto.matrix.plan import make_plan


def _text(entry: str) -> str:
    return f"image: localhost:5000/x\ntags: [a]\nplatforms:\n{entry}"


def test_an_image_entry_strips_attestations_unless_it_says_keep(spec):
    m = spec(_text("  - image: golang:alpine\n    platform: linux/amd64\n  - image: golang:1\n    attestations: keep\n"))
    assert [e.attestations for e in m.entries] == ["strip", "keep"]
    assert [s.attestations for s in make_plan(m).assemble_steps] == ["strip", "keep"]


def test_an_unknown_attestations_value_is_refused_with_its_line(spec):
    with pytest.raises(SpecError, match=r"platforms.yaml:5: unknown attestations 'kept' \(did you mean 'keep'"):
        spec(_text("  - image: golang:alpine\n    attestations: kept\n"))


def test_attestations_on_a_built_entry_is_refused(spec):
    with pytest.raises(SpecError, match="'attestations' applies to an entry with 'image'"):
        spec(_text("  - platform: linux/amd64\n    attestations: keep\n"))
