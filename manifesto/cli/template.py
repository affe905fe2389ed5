"""`--format TEMPLATE`: the subset of Go's text/template that docker, regctl and imagetools users type.

Why a small evaluator of our own: people paste `{{json .Manifest}}` or `{{range .Manifests}}...`
from those tools, and no Python package reads Go templates; jinja or eval would run far more
than a format string should. Supported: `{{.Field.Field}}` (a field matches a key exactly or
case-insensitively, so `.MediaType` finds `mediaType`), `$` and `$var`, string/number/bool/nil
literals, `( ... )`, pipes `|`, `{{$v := ...}}`, `if`/`else if`/`else`, `range` (with
`$i, $e :=`), `with`, `end`, trim markers `{{-`/`-}}`, comments `{{/* */}}`, and the functions
and, or, not, eq, ne, lt, le, gt, ge, len, index, print, printf, println, json, join, upper,
lower. Text prints exactly as written (`\\n` stays two characters, as in Go).

A field that a Record (the documented data model) lacks is an error; a key missing from plain
JSON (a manifest, a config) prints `<no value>`, as Go prints a missing map key.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from manifesto.cli.template_values import FUNCTIONS, MISSING, Record, call, text_of, truth
from manifesto.errors import UsageError

# ---- parsing ----------------------------------------------------------------------------------

_ACTION = re.compile(r"\{\{(-\s)?(.*?)(\s-)?\}\}", re.S)
_TOKEN = re.compile(
    r"""\s*(?:
      (?P<str>"(?:[^"\\]|\\.)*")
    | (?P<raw>`[^`]*`)
    | (?P<num>-?\d+(?:\.\d+)?)
    | (?P<var>\$[A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)
    | (?P<field>(?:\.[A-Za-z_][A-Za-z0-9_]*)+|\.)
    | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
    | (?P<punct>:=|=|\||\(|\)|,)
    )""",
    re.X,
)


@dataclass
class _Pipe:
    decl: list[str]
    cmds: list[list[tuple]]  # each command: operands, e.g. ("field", base, names)


@dataclass
class _Node:
    kind: str  # text | out | set | if | range | with
    text: str = ""
    pipe: _Pipe | None = None
    body: list[_Node] = field(default_factory=list)
    other: list[_Node] = field(default_factory=list)


def parse(template: str) -> list[_Node]:
    """The template's node tree; UsageError naming what is wrong if it does not parse."""
    items: list[tuple[str, str]] = []
    pos = 0
    for m in _ACTION.finditer(template):
        text = template[pos : m.start()]
        if m.group(1):
            text = text.rstrip()
        if items and items[-1][0] == "trim":
            items.pop()
            text = text.lstrip()
        items.append(("text", text))
        items.append(("action", m.group(2)))
        if m.group(3):
            items.append(("trim", ""))
        pos = m.end()
    tail = template[pos:]
    if items and items[-1][0] == "trim":
        items.pop()
        tail = tail.lstrip()
    if "{{" in tail:
        raise UsageError(f"--format: unclosed action at {tail[tail.index('{{'):][:20]!r}")
    items.append(("text", tail))
    try:
        nodes, _ = _block(items, 0, top=True)
    except RecursionError:  # blocks and parentheses are read recursively
        raise UsageError("--format: nested too deeply") from None
    return nodes


def _block(items: list[tuple[str, str]], i: int, top: bool = False) -> tuple[list[_Node], int]:
    """Nodes until `end`/`else` (returned index points at it) or the end of the template."""
    out: list[_Node] = []
    while i < len(items):
        kind, text = items[i]
        if kind == "text":
            if text:
                out.append(_Node("text", text))
            i += 1
            continue
        action = text.strip()
        if action.startswith("/*"):
            if not action.endswith("*/"):
                raise UsageError(f"--format: unclosed comment {{{{{action}}}}}")
            i += 1
            continue
        word = action.split(None, 1)[0] if action else ""
        if word in ("end", "else"):
            if top:
                raise UsageError(f"--format: unexpected {{{{{action}}}}}")
            return out, i
        if word in ("if", "range", "with"):
            node, i = _control(items, i, word, action[len(word) :])
            out.append(node)
            continue
        if not action:
            raise UsageError("--format: empty action {{}}")
        pipe = _pipeline(action)
        out.append(_Node("set" if pipe.decl else "out", pipe=pipe))
        i += 1
    if not top:
        raise UsageError("--format: missing {{end}}")
    return out, i


def _control(items: list[tuple[str, str]], i: int, word: str, rest: str) -> tuple[_Node, int]:
    if not rest.strip():
        raise UsageError(f"--format: {{{{{word}}}}} needs an argument")
    node = _Node(word, pipe=_pipeline(rest))
    node.body, i = _block(items, i + 1)
    action = items[i][1].strip()
    if action.startswith("else"):
        after = action[4:].strip()
        if after.startswith(("if ", "with ")):  # `else if X` is `else` + a nested `if X ... end`
            inner_word = after.split(None, 1)[0]
            inner, i = _control(items, i, inner_word, after[len(inner_word) :])
            node.other = [inner]
            return node, i
        if after:
            raise UsageError(f"--format: unexpected {{{{{action}}}}}")
        node.other, i = _block(items, i + 1)
        action = items[i][1].strip()
    if action != "end":
        raise UsageError(f"--format: unexpected {{{{{action}}}}}")
    return node, i + 1


def _tokens(text: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise UsageError(f"--format: cannot read {text[pos:].strip()[:20]!r} in {{{{{text.strip()}}}}}")
        kind = m.lastgroup or ""
        out.append((kind, m.group(kind)))
        pos = m.end()
    return out


def _pipeline(text: str) -> _Pipe:
    toks = _tokens(text)
    pipe, rest = _parse_pipe(toks, 0, text)
    if rest != len(toks):
        raise UsageError(f"--format: unexpected {toks[rest][1]!r} in {{{{{text.strip()}}}}}")
    return pipe


def _parse_pipe(toks: list[tuple[str, str]], i: int, text: str) -> tuple[_Pipe, int]:
    decl: list[str] = []
    # `$x :=` or `$i, $e :=` (the latter only for range)
    j = i
    names = []
    while j < len(toks) and toks[j][0] == "var" and "." not in toks[j][1]:
        names.append(toks[j][1])
        if j + 1 < len(toks) and toks[j + 1][1] == ",":
            j += 2
            continue
        j += 1
        break
    if names and j < len(toks) and toks[j][1] in (":=", "="):
        decl, i = names, j + 1
    cmds: list[list[tuple]] = [[]]
    while i < len(toks):
        kind, value = toks[i]
        if value == ")":
            break
        if value == "|":
            if not cmds[-1]:
                raise UsageError(f"--format: missing command before '|' in {{{{{text.strip()}}}}}")
            cmds.append([])
            i += 1
            continue
        if value == "(":
            inner, i = _parse_pipe(toks, i + 1, text)
            if i >= len(toks) or toks[i][1] != ")":
                raise UsageError(f"--format: unclosed '(' in {{{{{text.strip()}}}}}")
            i += 1
            op: tuple = ("paren", inner, [])
            if i < len(toks) and toks[i][0] == "field" and toks[i][1] != ".":
                op = ("paren", inner, toks[i][1][1:].split("."))
                i += 1
            cmds[-1].append(op)
            continue
        cmds[-1].append(_operand(kind, value, text))
        i += 1
    if not cmds[-1]:
        raise UsageError(f"--format: missing value in {{{{{text.strip()}}}}}")
    for cmd in cmds:
        if len(cmd) > 1 and cmd[0][0] != "func":
            raise UsageError(f"--format: {cmd[0][1]!r} is not a function in {{{{{text.strip()}}}}}")
    return _Pipe(decl, cmds), i


def _operand(kind: str, value: str, text: str) -> tuple:
    if kind == "str":
        try:
            return ("lit", json.loads(value))
        except ValueError:
            raise UsageError(f"--format: bad string {value} in {{{{{text.strip()}}}}}") from None
    if kind == "raw":
        return ("lit", value[1:-1])
    if kind == "num":
        return ("lit", float(value) if "." in value else int(value))
    if kind == "field":
        return ("field", ".", [] if value == "." else value[1:].split("."))
    if kind == "var":
        name, *names = value.split(".")
        return ("field", name, names)
    if kind == "ident":
        if value in ("true", "false"):
            return ("lit", value == "true")
        if value == "nil":
            return ("lit", None)
        if value not in FUNCTIONS:
            raise UsageError(f'--format: function "{value}" not defined (have: {", ".join(sorted(FUNCTIONS))})')
        return ("func", value)
    raise UsageError(f"--format: unexpected {value!r} in {{{{{text.strip()}}}}}")


# ---- running ----------------------------------------------------------------------------------


def render(nodes: list[_Node], data: Any) -> str:
    """The template's output for `data` (`.` and `$`); UsageError for an unknown field."""
    out: list[str] = []
    try:
        _run(nodes, data, [{"$": data}], out)
    except RecursionError:
        raise UsageError("--format: nested too deeply") from None
    return "".join(out)


def _run(nodes: list[_Node], dot: Any, scopes: list[dict[str, Any]], out: list[str]) -> None:
    for node in nodes:
        if node.kind == "text":
            out.append(node.text)
        elif node.kind == "out":
            assert node.pipe is not None
            out.append(text_of(_eval_pipe(node.pipe, dot, scopes)))
        elif node.kind == "set":
            assert node.pipe is not None
            scopes[-1][node.pipe.decl[0]] = _eval_pipe(node.pipe, dot, scopes)
        elif node.kind in ("if", "with"):
            assert node.pipe is not None
            value = _eval_pipe(node.pipe, dot, scopes)
            inner = [*scopes, {}]
            if node.pipe.decl:
                inner[-1][node.pipe.decl[0]] = value
            if truth(value):
                _run(node.body, value if node.kind == "with" else dot, inner, out)
            else:
                _run(node.other, dot, inner, out)
        elif node.kind == "range":
            assert node.pipe is not None
            _range(node, dot, scopes, out)


def _range(node: _Node, dot: Any, scopes: list[dict[str, Any]], out: list[str]) -> None:
    assert node.pipe is not None
    value = _eval_pipe(node.pipe, dot, scopes)
    if isinstance(value, dict):
        pairs = [(k, value[k]) for k in sorted(value)]
    elif isinstance(value, (list, tuple)):
        pairs = list(enumerate(value))
    elif value is None or value is MISSING:
        pairs = []
    else:
        raise UsageError(f"--format: range can't iterate over {text_of(value)}")
    if not pairs:
        _run(node.other, dot, scopes, out)
        return
    decl = node.pipe.decl
    for key, item in pairs:
        inner = [*scopes, {}]
        if len(decl) == 1:
            inner[-1][decl[0]] = item
        elif len(decl) >= 2:
            inner[-1][decl[0]], inner[-1][decl[1]] = key, item
        _run(node.body, item, inner, out)


def _eval_pipe(pipe: _Pipe, dot: Any, scopes: list[dict[str, Any]]) -> Any:
    value: Any = MISSING
    for n, cmd in enumerate(pipe.cmds):
        piped = () if n == 0 else (value,)
        head = cmd[0]
        if head[0] == "func":
            args = [_eval_operand(op, dot, scopes) for op in cmd[1:]] + list(piped)
            value = call(head[1], args)
        else:
            if piped:
                raise UsageError("--format: a pipe needs a function after '|'")
            value = _eval_operand(head, dot, scopes)
    return value


def _eval_operand(op: tuple, dot: Any, scopes: list[dict[str, Any]]) -> Any:
    kind = op[0]
    if kind == "lit":
        return op[1]
    if kind == "func":
        return call(op[1], [])
    if kind == "paren":
        return _walk(_eval_pipe(op[1], dot, scopes), op[2])
    base, names = op[1], op[2]
    if base == ".":
        start = dot
    else:
        for scope in reversed(scopes):
            if base in scope:
                start = scope[base]
                break
        else:
            raise UsageError(f"--format: undefined variable {base}")
    return _walk(start, names)


def _walk(value: Any, names: list[str]) -> Any:
    for name in names:
        value = _field(value, name)
    return value


def _field(value: Any, name: str) -> Any:
    if isinstance(value, dict):
        if name in value:
            return value[name]
        folded = [k for k in value if isinstance(k, str) and k.lower() == name.lower()]
        if len(folded) == 1:
            return value[folded[0]]
        if isinstance(value, Record):
            raise UsageError(f"--format: no field {name!r} (have: {', '.join(_names(value))})")
        return MISSING
    if value is None or value is MISSING:
        return MISSING
    raise UsageError(f"--format: can't read field {name!r} of {text_of(value)[:40]!r}")


def _names(record: dict) -> list[str]:
    return [k[:1].upper() + k[1:] for k in record]
