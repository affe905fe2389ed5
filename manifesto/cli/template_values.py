"""Values and functions of `--format` templates, as Go's text/template and fmt treat them.

Why apart from the parser: what a value prints as (`<nil>`, `<no value>`, `map[k:v]`), what is
true, and the functions people call are one table to read against Go's documentation.
"""

from __future__ import annotations

import json
import re
from typing import Any

from manifesto.errors import UsageError

FUNCTIONS = frozenset(
    "and or not eq ne lt le gt ge len index print printf println json join upper lower".split()
)


class Record(dict):
    """An object of the documented data model: asking it for a field it lacks is an error."""


class _Missing:
    def __repr__(self) -> str:
        return "<no value>"


MISSING = _Missing()


def truth(value: Any) -> bool:
    """Go's truth: false, 0, nil, and empty strings, lists and maps are false."""
    return value is not MISSING and bool(value)


def text_of(value: Any) -> str:
    """A value as Go's fmt prints it with %v."""
    if value is MISSING:
        return "<no value>"
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)):
        return "[" + " ".join(text_of(v) for v in value) + "]"
    if isinstance(value, dict):
        return "map[" + " ".join(f"{k}:{text_of(value[k])}" for k in sorted(value)) + "]"
    return str(value)


def call(name: str, args: list[Any]) -> Any:
    """Run one of FUNCTIONS (the parser refuses any other name)."""
    if name == "and":
        return _fold(args, stop_when=False)
    if name == "or":
        return _fold(args, stop_when=True)
    if name == "not":
        _arity(name, args, 1)
        return not truth(args[0])
    if name in ("eq", "ne"):
        if len(args) < 2:
            raise UsageError(f"--format: {name} needs two arguments")
        same = any(_plain(args[0]) == _plain(b) for b in args[1:])
        return same if name == "eq" else not same
    if name in ("lt", "le", "gt", "ge"):
        _arity(name, args, 2)
        a, b = _plain(args[0]), _plain(args[1])
        try:
            return {"lt": a < b, "le": a <= b, "gt": a > b, "ge": a >= b}[name]
        except TypeError:
            raise UsageError(f"--format: {name} can't compare {text_of(a)!r} and {text_of(b)!r}") from None
    if name == "len":
        _arity(name, args, 1)
        if not isinstance(args[0], (str, list, tuple, dict)):
            raise UsageError(f"--format: len of {text_of(args[0])!r}")
        return len(args[0])
    if name == "index":
        return _index(args)
    if name == "print":
        return "".join(
            (" " if i and not isinstance(a, str) and not isinstance(args[i - 1], str) else "") + text_of(a)
            for i, a in enumerate(args)
        )
    if name == "println":
        return " ".join(text_of(a) for a in args) + "\n"
    if name == "printf":
        if not args or not isinstance(args[0], str):
            raise UsageError("--format: printf needs a format string")
        return printf(args[0], args[1:])
    if name == "json":
        _arity(name, args, 1)
        return json.dumps(_plain(args[0]), separators=(",", ":"), ensure_ascii=False)
    if name == "join":
        _arity(name, args, 2)
        items, sep = args
        if not isinstance(items, (list, tuple)):
            raise UsageError("--format: join needs a list and a separator")
        return str(sep).join(text_of(i) for i in items)
    if name in ("upper", "lower"):
        _arity(name, args, 1)
        return text_of(args[0]).upper() if name == "upper" else text_of(args[0]).lower()
    raise AssertionError(name)


def _arity(name: str, args: list[Any], n: int) -> None:
    if len(args) != n:
        raise UsageError(f"--format: {name} takes {n} argument{'s' if n > 1 else ''}, got {len(args)}")


def _fold(args: list[Any], stop_when: bool) -> Any:
    if not args:
        raise UsageError("--format: and/or need arguments")
    for a in args:
        if truth(a) == stop_when:
            return a
    return args[-1]


def _plain(value: Any) -> Any:
    return None if value is MISSING else value


def _index(args: list[Any]) -> Any:
    if not args:
        raise UsageError("--format: index needs a value")
    value = args[0]
    for key in args[1:]:
        if isinstance(value, dict):
            value = value.get(key, "")  # a missing map key is the zero value, as in Go
        elif isinstance(value, (list, tuple, str)) and isinstance(key, int) and not isinstance(key, bool):
            if not 0 <= key < len(value):
                raise UsageError(f"--format: index {key} out of range (length {len(value)})")
            value = value[key]
        elif value is None or value is MISSING:
            return MISSING
        else:
            raise UsageError(f"--format: can't index {text_of(value)[:40]!r} with {text_of(key)!r}")
    return value


_VERB = re.compile(r"%([-+# 0]*)(\d+)?(?:\.(\d+))?([a-zA-Z%])")
_MAX_WIDTH = 1_000_000  # Go's fmt: a larger width or precision prints %!(BADWIDTH) / %!(BADPREC)


def _too_large(digits: str | None) -> bool:
    return digits is not None and (len(digits) > 7 or int(digits) > _MAX_WIDTH)


def printf(fmt: str, args: list[Any]) -> str:
    """Go's fmt.Sprintf for the verbs people use: %s %v %d %q %x %X %t %%, with flags and width."""
    out: list[str] = []
    pos = 0
    n = 0
    for m in _VERB.finditer(fmt):
        out.append(fmt[pos : m.start()])
        pos = m.end()
        flags, width, prec, verb = m.group(1), m.group(2), m.group(3), m.group(4)
        if verb == "%":
            out.append("%")
            continue
        if _too_large(width) or _too_large(prec):
            out.append("%!(BADWIDTH)" if _too_large(width) else "%!(BADPREC)")
            n += 1  # its operand is spent all the same
            continue
        if n >= len(args):
            out.append(f"%!{verb}(MISSING)")
            continue
        arg = _plain(args[n])
        n += 1
        if verb in ("s", "v"):
            text = text_of(args[n - 1])
            if prec is not None:
                text = text[: int(prec)]
        elif verb == "d" and isinstance(arg, int) and not isinstance(arg, bool):
            text = str(arg)
        elif verb == "q":
            text = json.dumps(text_of(arg) if not isinstance(arg, str) else arg, ensure_ascii=False)
        elif verb in ("x", "X") and isinstance(arg, (int, str)) and not isinstance(arg, bool):
            text = format(arg, "x") if isinstance(arg, int) else arg.encode().hex()
            text = text.upper() if verb == "X" else text
        elif verb == "t" and isinstance(arg, bool):
            text = text_of(arg)
        else:
            text = f"%!{verb}({text_of(arg)})"
        if width:
            pad = "0" if "0" in flags and verb in "dxX" else " "
            text = text.ljust(int(width)) if "-" in flags else text.rjust(int(width), pad)
        out.append(text)
    out.append(fmt[pos:])
    return "".join(out)
