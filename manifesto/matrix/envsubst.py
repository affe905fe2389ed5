"""`${VAR}` and `${VAR:-default}` in tags, from the environment (release pipelines set
the version tag from CI variables). Pure: the caller turns a failure into a file:line error."""

from __future__ import annotations

import re
from collections.abc import Mapping

_DOLLAR = re.compile(r"\$(?:\{[^}]*\}?)?")
_VAR = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}$")


class SubstitutionError(ValueError):
    """A `$` that is not a valid substitution, or a variable with no value and no default."""


def substitute(text: str, env: Mapping[str, str]) -> str:
    """Shell semantics for `:-` (unset or empty takes the default); an empty value without a
    default is refused too, so a release never gets a truncated tag."""
    out, pos = [], 0
    for m in _DOLLAR.finditer(text):
        out.append(text[pos : m.start()])
        pos = m.end()
        var = _VAR.match(m.group(0))
        if var is None:
            raise SubstitutionError(f"bad substitution {m.group(0)!r} in tag {text!r} (use ${{VAR}} or ${{VAR:-default}})")
        name, default = var.group(1), var.group(2)
        value = env.get(name)
        if not value:
            if default is None:
                state = "is not set" if value is None else "is empty"
                raise SubstitutionError(
                    f"environment variable {name} {state} (tag {text!r}; or write ${{{name}:-default}})"
                )
            value = default
        out.append(value)
    out.append(text[pos:])
    return "".join(out)
