"""Variable expansion in Dockerfile words, as buildkit's shell lexer does it.

The native builder must give the same values docker gives, so the rules are buildkit's (its
Dockerfile reference, "Environment replacement"), not a real shell's: `$VAR`, `${VAR}`,
`${VAR:-word}`, `${VAR-word}`, `${VAR:+word}`, `${VAR+word}`, `${VAR:?msg}`, `${VAR?msg}`,
`${VAR#pat}`, `${VAR##pat}`, `${VAR%pat}`, `${VAR%%pat}`, `${VAR/pat/repl}`, `${VAR//pat/repl}`;
single quotes keep everything literal, double quotes expand `$` and let the escape character
escape only `"`, `$` and itself; outside quotes the escape character makes the next character
literal. Quotes are removed. A `$` not followed by a name stays a `$`. Unset variables expand
to "". `words()` also splits the result on white space that did not come from a quote or an
escape (EXPOSE does this).
"""

from __future__ import annotations

import re

from manifesto.errors import UsageError

_SPECIAL_PARAMS = set("@*#?-$!0")


def expand(word: str, env: dict[str, str], escape: str = "\\") -> str:
    """`word` with its variables replaced and its quotes removed."""
    return _Lexer(word, env, escape).run()[0]


def words(word: str, env: dict[str, str], escape: str = "\\") -> list[str]:
    """`word` expanded, then split on unquoted white space (empty words dropped)."""
    return _Lexer(word, env, escape).run()[1]


class _Words:
    """Collects the split words alongside the joined result."""

    def __init__(self) -> None:
        self.done: list[str] = []
        self.word = ""
        self.open = False

    def char(self, ch: str) -> None:
        """A character that splits words when it is white space."""
        if ch.isspace():
            if self.open and self.word:
                self.done.append(self.word)
                self.word, self.open = "", False
        else:
            self.raw(ch)

    def text(self, text: str) -> None:
        """Expanded text: its white space splits words."""
        for ch in text:
            self.char(ch)

    def raw(self, text: str) -> None:
        """Quoted or escaped text: kept whole."""
        self.word += text
        self.open = True

    def result(self) -> list[str]:
        """The words, the one under way included."""
        return self.done + ([self.word] if self.word else [])


class _Lexer:
    """One pass over one word."""

    def __init__(self, word: str, env: dict[str, str], escape: str):
        self.src = word
        self.pos = 0
        self.env = env
        self.escape = escape
        self.raw_escapes = False

    def peek(self) -> str:
        return self.src[self.pos] if self.pos < len(self.src) else ""

    def next(self) -> str:
        ch = self.peek()
        self.pos += 1 if ch else 0
        return ch

    def run(self) -> tuple[str, list[str]]:
        try:
            return self.until("", raw_escapes=False)
        except UsageError as e:
            raise UsageError(f"failed to process {self.src!r}: {e}") from None

    def until(self, stop: str, *, raw_escapes: bool) -> tuple[str, list[str]]:
        """Read up to `stop` (consumed; "" means the end of the word)."""
        saved, self.raw_escapes = self.raw_escapes, raw_escapes
        try:
            out: list[str] = []
            split = _Words()
            while self.peek():
                ch = self.peek()
                if stop and ch == stop:
                    self.next()
                    return "".join(out), split.result()
                if ch == "$":
                    text = self.dollar()
                    out.append(text)
                    split.text(text)
                elif ch in ("'", '"'):
                    text = self.single_quoted() if ch == "'" else self.double_quoted()
                    out.append(text)
                    split.raw(text)
                else:
                    ch = self.next()
                    if ch == self.escape:
                        if self.raw_escapes:
                            out.append(ch)
                            split.raw(ch)
                        ch = self.next()
                        if not ch:
                            break
                        split.raw(ch)
                    else:
                        split.char(ch)
                    out.append(ch)
            if stop:
                raise UsageError(f"unexpected end of statement while looking for matching {stop}")
            return "".join(out), split.result()
        finally:
            self.raw_escapes = saved

    def single_quoted(self) -> str:
        self.next()
        out = []
        while True:
            ch = self.next()
            if not ch:
                raise UsageError("unexpected end of statement while looking for matching single-quote")
            if ch == "'":
                return "".join(out)
            out.append(ch)

    def double_quoted(self) -> str:
        self.next()
        out = []
        while True:
            ch = self.peek()
            if not ch:
                raise UsageError("unexpected end of statement while looking for matching double-quote")
            if ch == '"':
                self.next()
                return "".join(out)
            if ch == "$":
                out.append(self.dollar())
                continue
            ch = self.next()
            if ch == self.escape:
                if self.raw_escapes:
                    out.append(ch)
                if not self.peek():
                    continue
                if self.peek() in ('"', "$", self.escape):
                    ch = self.next()
            out.append(ch)

    def name(self) -> str:
        """A variable name: letters, digits, `_`; or all digits; or one special parameter."""
        first = self.peek()
        if first.isdigit():
            start = self.pos
            while self.peek().isdigit():
                self.next()
            return self.src[start : self.pos]
        if first and first in _SPECIAL_PARAMS:
            return self.next()
        start = self.pos
        while self.peek() and (self.peek().isalnum() or self.peek() == "_"):
            self.next()
        return self.src[start : self.pos]

    def dollar(self) -> str:
        self.next()
        if self.peek() != "{":
            name = self.name()
            return self.env.get(name, "") if name else "$"
        self.next()
        if not self.peek():
            raise UsageError("syntax error: missing '}'")
        if self.peek() in "{}:":
            raise UsageError("syntax error: bad substitution")
        name = self.name()
        op = self.next()
        if op == "}":
            return self.env.get(name, "")
        if op == "/":
            return self.replace(name)
        colon = op == ":"
        if colon:
            op = self.next()
        if op not in ("-", "+", "?", "#", "%"):
            raise UsageError(f"unsupported modifier ({':' if colon else ''}{op}) in substitution")
        try:
            word, _ = self.until("}", raw_escapes=op in "#%")
        except UsageError:
            if not self.peek():
                raise UsageError("syntax error: missing '}'") from None
            raise
        is_set = name in self.env
        value = self.env.get(name, "")
        empty = not is_set or (colon and value == "")
        if op == "-":
            return word if empty else value
        if op == "+":
            return "" if empty else word
        if op == "?":
            if empty:
                default = "is not allowed to be unset" if not is_set else "is not allowed to be empty"
                raise UsageError(f"{name}: {word or default}")
            return value
        greedy = word[:1] == op
        pattern = _pattern(word[1:] if greedy else word)
        return _trim(value, pattern, suffix=op == "%", longest=greedy)

    def replace(self, name: str) -> str:
        every = self.peek() == "/"
        if every:
            self.next()
        pattern, _ = self.until("/", raw_escapes=True)
        replacement, _ = self.until("}", raw_escapes=True)
        value = self.env.get(name, "")
        regex = re.compile(_pattern(pattern, greedy=True))
        return regex.sub(lambda m: replacement, value, count=0 if every else 1)


def _pattern(pattern: str, *, greedy: bool = True) -> str:
    """A shell pattern (`*`, `?`, backslash escapes; no brackets) as a regular expression."""
    out = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        i += 1
        if ch == "*":
            out.append(".*" if greedy else ".*?")
        elif ch == "?":
            out.append(".")
        elif ch == "\\":
            nxt = pattern[i : i + 1]
            if nxt in ("}", "/"):
                continue
            if nxt not in ("*", "?", "\\"):
                raise UsageError(f"invalid pattern ({pattern}) in substitution: invalid escape '\\{nxt}'")
            out.append("\\" + nxt)
            i += 1
        else:
            out.append(re.escape(ch))
    return "".join(out)


def _trim(value: str, regex: str, *, suffix: bool, longest: bool) -> str:
    """Remove the shortest (or longest) prefix or suffix of `value` the pattern matches."""
    compiled = re.compile(regex, re.DOTALL)
    cuts = range(len(value) + 1)
    if suffix:
        for cut in cuts if longest else reversed(cuts):
            if compiled.fullmatch(value, cut):
                return value[:cut]
    else:
        for cut in reversed(cuts) if longest else cuts:
            if compiled.fullmatch(value[:cut]):
                return value[cut:]
    return value
