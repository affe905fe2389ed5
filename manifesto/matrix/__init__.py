"""The platform matrix: platforms.yaml → Matrix (spec) → Plan (plan), both pure but for reading the spec.

manifesto.jobs (which runs a Plan) is not imported here, so loading a spec never pulls in stores or builders.
"""

from manifesto.matrix.model import BuildSettings, Entry, Matrix, Target
from manifesto.matrix.plan import (
    AssembleStep,
    BuildStep,
    Plan,
    Step,
    make_plan,
    platform_args,
    render,
)
from manifesto.matrix.spec import load, loads

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
