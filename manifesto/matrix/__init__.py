"""The platform matrix: platforms.yaml → Matrix (spec) → Plan (plan), both pure but for reading the spec.

manifesto.jobs (which runs a Plan) is not imported here, so loading a spec never pulls in stores or builders.
The names below load on first use: manifesto.builders reads the builder names from
matrix.model, and that must not cost the CLI the YAML reader at start-up.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from manifesto.matrix.model import BuildSettings, Entry, Matrix, Target
    from manifesto.matrix.plan import AssembleStep, BuildStep, Plan, Step, make_plan, platform_args, render
    from manifesto.matrix.spec import load, loads

_EXPORTS = {
    **dict.fromkeys(("BuildSettings", "Entry", "Matrix", "Target"), "manifesto.matrix.model"),
    **dict.fromkeys(
        ("AssembleStep", "BuildStep", "Plan", "Step", "make_plan", "platform_args", "render"), "manifesto.matrix.plan"
    ),
    **dict.fromkeys(("load", "loads"), "manifesto.matrix.spec"),
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'manifesto.matrix' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "AssembleStep",
    "BuildSettings",
    "BuildStep",
    "Entry",
    "Matrix",
    "Plan",
    "Step",
    "Target",
    "load",
    "loads",
    "make_plan",
    "platform_args",
    "render",
]
