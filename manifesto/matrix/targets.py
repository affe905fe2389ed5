"""`image:` of platforms.yaml: one target, or a list of them (a registry and its mirrors).

Why a module of its own: spec.py walks the document; this is the one rule for what the list
may hold, checked with spec.py's validator (file:line errors). Each item is a Target as
`--image` takes it (a repository without tag or digest, or `oci:DIR`); the same target twice
is refused, since it would get every push twice and no more safety.
"""

from __future__ import annotations

from typing import Any

from manifesto.errors import InvalidReference, UsageError
from manifesto.matrix.located import LocatedList
from manifesto.matrix.model import Target


def targets_section(validator: Any, doc: Any) -> tuple[Target, ...]:
    """The targets `image:` names, first one first; errors through `validator`."""
    value = doc["image"]
    if not isinstance(value, LocatedList):
        if isinstance(value, dict):
            validator.fail(doc.value_line("image"), "image must be a repository or a list of them, got a mapping")
        return (_target(validator, validator.field(doc, "image"), doc.value_line("image")),)
    if not value:
        validator.fail(doc.value_line("image"), "image must not be an empty list; name at least one repository")
    out: list[Target] = []
    seen: dict[str, int] = {}
    for i, item in enumerate(value):
        line = value.item_line(i)
        target = _target(validator, validator.string(item, value.raw(i), line, "an image", '"{raw}"'), line)
        if str(target) in seen:
            validator.fail(line, f"duplicate image {str(target)!r} (also on line {seen[str(target)]})")
        seen[str(target)] = line
        out.append(target)
    return tuple(out)


def _target(validator: Any, text: str, line: int) -> Target:
    try:
        return Target.parse(text, validator.base)
    except InvalidReference as e:
        validator.fail(line, f"image: {e}")
    except UsageError as e:
        validator.fail(line, str(e))
