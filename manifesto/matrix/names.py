"""The builder names build.builder and --builder accept.

Why a module of its own: the pure matrix checks them (spec.py, through model.py) without
importing manifesto.builders, which sits above it and offers them beside get_builder; and the
command line lists them as choices without loading the matrix model at every start. `auto` is
no builder: jobs.builds chooses per Dockerfile.
"""

from __future__ import annotations

AUTO = "auto"
DEFAULT_BUILDER = AUTO
BUILDERS = ("buildah", "podman", "buildx", "native")  # each one a builder get_builder makes
BUILDER_NAMES = (AUTO, *BUILDERS)
