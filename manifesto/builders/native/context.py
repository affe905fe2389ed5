"""The build context: which files COPY and ADD may see, and what each source names.

Why: a native build must pick exactly the files docker would. Two sets of rules decide it, both
from docker's documentation: `.dockerignore` (patterns matched against context-relative paths,
`**` for any number of directories, `!` exceptions, the last matching line wins, a pattern that
matches a parent directory matches everything under it) and COPY/ADD source resolution
(context-relative paths that may not leave the context, globs matched per path component as Go's
filepath.Match does, a top-level symlink followed inside the context). Files the ignore file
excludes are absent: a source that is entirely ignored is "not found", as docker says.
"""

from __future__ import annotations

import os
import posixpath
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from manifesto.builders.native.steps import CopyStep
from manifesto.errors import UsageError

IGNORE_FILES = (".dockerignore", ".containerignore")
_MAX_LINKS = 255  # symlink hops while resolving one path, as the kernel's limit


def _translate(pattern: str, *, double_star: bool) -> str:
    """Regex text for one pattern: `*` and `?` never cross "/", `[...]` classes, `\\` escapes.

    With `double_star` (ignore files), `**` matches any number of directories, zero included.
    Raise ValueError on an unterminated class, as Go's filepath.Match reports a bad pattern.
    """
    out, i, n = [], 0, len(pattern)
    while i < n:
        ch = pattern[i]
        if ch == "*":
            if double_star and pattern[i + 1 : i + 2] == "*":
                i += 1
                if pattern[i + 1 : i + 2] == "/":
                    i += 1
                out.append(".*" if i + 1 >= n else "(?:.*/)?")
            else:
                while pattern[i + 1 : i + 2] == "*":  # several stars are one in a path component
                    i += 1
                out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "\\":
            if i + 1 < n:
                i += 1
                out.append(re.escape(pattern[i]))
            else:
                out.append(re.escape("\\"))
        elif ch == "[":
            j, body = i + 1, []
            if pattern[j : j + 1] == "^":
                body.append("^")
                j += 1
            while j < n and pattern[j] != "]":
                c = pattern[j]
                if c == "\\" and j + 1 < n:
                    j += 1
                    body.append(re.escape(pattern[j]))
                elif c == "-":
                    body.append("-")
                else:
                    body.append(re.escape(c))
                j += 1
            if j >= n or len(body) == (1 if body[:1] == ["^"] else 0):
                raise ValueError(f"bad pattern {pattern!r}: unterminated or empty character class")
            out.append("[" + "".join(body) + "]")
            i = j
        else:
            out.append(re.escape(ch))
        i += 1
    return "".join(out)


@dataclass(frozen=True)
class IgnorePattern:
    """One line of an ignore file, cleaned: `text` without its `!`, and its compiled form."""

    text: str
    exclusion: bool
    regex: re.Pattern[str]

    def matches(self, rel: str) -> bool:
        """True when the pattern matches `rel` or one of its parent directories."""
        if self.regex.fullmatch(rel):
            return True
        parts = rel.split("/")
        return any(self.regex.fullmatch("/".join(parts[:k])) for k in range(1, len(parts)))


@dataclass(frozen=True)
class Ignore:
    """The patterns of an ignore file, in order; the last one that matches a path decides."""

    patterns: tuple[IgnorePattern, ...] = ()
    source: str = ""

    @classmethod
    def parse(cls, text: str, source: str = ".dockerignore") -> Ignore:
        """Read ignore-file text: `#` in column 1 is a comment, blank lines are skipped, each
        pattern is trimmed and cleaned (`./` and a leading `/` dropped), `!` marks an exception.
        """
        patterns: list[IgnorePattern] = []
        for number, raw in enumerate(text.lstrip("\ufeff").splitlines(), start=1):
            if raw.startswith("#"):
                continue
            line = raw.strip()
            if not line:
                continue
            exclusion = line.startswith("!")
            if exclusion:
                line = line[1:].strip()
                if not line:
                    raise UsageError(f"{source}:{number}: illegal exception pattern '!'")
            cleaned = posixpath.normpath(line)
            if len(cleaned) > 1 and cleaned.startswith("/"):
                cleaned = cleaned.lstrip("/") or "/"
            try:
                regex = re.compile(_translate(cleaned, double_star=True), re.DOTALL)
            except (ValueError, re.error) as e:
                raise UsageError(f"{source}:{number}: {e}") from None
            patterns.append(IgnorePattern(cleaned, exclusion, regex))
        return cls(tuple(patterns), source)

    @property
    def has_exceptions(self) -> bool:
        """True when some `!` line may bring back a path below an ignored directory."""
        return any(p.exclusion for p in self.patterns)

    def ignored(self, rel: str) -> bool:
        """True when the context-relative path `rel` ("a/b", no leading "./") is excluded."""
        matched = False
        for p in self.patterns:
            if p.exclusion == matched and p.matches(rel):
                matched = not p.exclusion
        return matched


@dataclass(frozen=True)
class Source:
    """One matched COPY/ADD source: the context path matched (`match`, whose name a file keeps
    when copied into a directory), that path after following symlinks (`rel`, "" for the context
    root), the lstat result of `rel` and the source as the step wrote it (`named`)."""

    match: str
    rel: str
    named: str
    st: os.stat_result

    @property
    def is_dir(self) -> bool:
        """True for a directory, whose contents (not itself) are copied."""
        return stat.S_ISDIR(self.st.st_mode)


@dataclass(frozen=True)
class Context:
    """A build context directory and the ignore rules that apply to it."""

    root: Path
    ignore: Ignore = Ignore()

    @classmethod
    def load(cls, root: Path, dockerfile: Path | None = None) -> Context:
        """The context at `root`, with `<Dockerfile>.dockerignore` beside the Dockerfile when it
        exists, else the context's `.dockerignore` (or `.containerignore`)."""
        root = Path(root).resolve()
        if not root.is_dir():
            raise UsageError(f"build context {root} is not a directory")
        candidates = [Path(f"{dockerfile}.dockerignore")] if dockerfile is not None else []
        candidates += [root / name for name in IGNORE_FILES]
        for path in candidates:
            if path.is_file():
                try:
                    text = path.read_text(encoding="utf-8")
                except (OSError, UnicodeDecodeError) as e:
                    raise UsageError(f"cannot read {path}: {e}") from None
                return cls(root, Ignore.parse(text, path.name))
        return cls(root)

    def path(self, rel: str) -> Path:
        """The filesystem path of a context-relative path."""
        return self.root / rel if rel else self.root

    def lstat(self, rel: str) -> os.stat_result | None:
        """lstat of a context-relative path, None when it does not exist."""
        try:
            return os.lstat(self.path(rel))
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as e:
            raise UsageError(f"cannot read {self.path(rel)}: {e.strerror}") from None

    def listdir(self, rel: str) -> list[str]:
        """The names in a context directory, sorted (byte order, as Go sorts strings)."""
        try:
            return sorted(os.listdir(self.path(rel)), key=os.fsencode)
        except OSError as e:
            raise UsageError(f"cannot read {self.path(rel)}: {e.strerror}") from None

    def present(self, rel: str, st: os.stat_result | None = None) -> bool:
        """True when `rel` is part of the context: not ignored, or a directory that still holds
        something an exception (`!`) brings back."""
        if not rel or not self.ignore.ignored(rel):
            return True
        if not self.ignore.has_exceptions:
            return False
        st = st or self.lstat(rel)
        if st is None or not stat.S_ISDIR(st.st_mode):
            return False
        return any(self.present(f"{rel}/{name}") for name in self.listdir(rel))

    def resolve(self, rel: str) -> str | None:
        """Follow symlinks in `rel` without leaving the context: an absolute target is taken
        from the context root and ".." stops at it, as docker resolves a source. None when a
        component is missing."""
        done: list[str] = []
        todo = [p for p in rel.split("/") if p not in ("", ".")]
        hops = 0
        while todo:
            part = todo.pop(0)
            if part == "..":
                if done:
                    done.pop()
                continue
            here = "/".join([*done, part])
            st = self.lstat(here)
            if st is None:
                return None
            if stat.S_ISLNK(st.st_mode):
                hops += 1
                if hops > _MAX_LINKS:
                    return None
                target = os.readlink(self.path(here))
                if target.startswith("/"):
                    done = []
                todo = [p for p in target.split("/") if p not in ("", ".")] + todo
                continue
            done.append(part)
        return "/".join(done)

    def sources(self, step: CopyStep) -> list[Source]:
        """The context paths a COPY/ADD names, in order, each glob's matches sorted.

        Raise UsageError naming `file:line` for a source outside the context, one that is
        missing or entirely ignored, a glob that matches nothing, and several sources copied
        to a destination that does not end in "/".
        """
        verb = "ADD" if step.add else "COPY"
        found: list[Source] = []
        for named in step.sources:
            clean = posixpath.normpath("/" + named).lstrip("/")
            if posixpath.normpath(named.lstrip("/") or ".").split("/")[0] == "..":
                raise UsageError(f"{step.where}: {verb} source {named!r} is outside the build context")
            if _has_magic(clean):
                matches = self._glob(clean, step, named)
                if not matches:
                    raise UsageError(f"{step.where}: {verb} source {named!r}: no file in the build context matches")
            else:
                matches = [clean]
            for match in matches:
                found.append(self._source(match, named, step))
        dest_is_dir = step.dest.endswith("/") or step.dest.endswith("/.")
        if len(found) > 1 and not dest_is_dir:
            raise UsageError(
                f"{step.where}: {verb} with more than one source file needs a destination "
                f"directory ending in '/' (got {step.dest!r})"
            )
        return found

    def _source(self, match: str, named: str, step: CopyStep) -> Source:
        """One matched path as a Source: followed if a symlink, and checked to be present."""
        verb = "ADD" if step.add else "COPY"
        real = self.resolve(match)
        st = self.lstat(real) if real is not None else None
        if real is None or st is None:
            raise UsageError(f"{step.where}: {verb} source {named!r} not found in the build context")
        for rel in {match, real}:
            if rel and not self.present(rel):
                raise UsageError(
                    f"{step.where}: {verb} source {named!r} not found in the build context "
                    f"(excluded by {self.ignore.source or '.dockerignore'})"
                )
        return Source(match, real, named, st)

    def _glob(self, pattern: str, step: CopyStep, named: str) -> list[str]:
        """Context paths matching a glob, one path component at a time, sorted per directory."""
        try:
            parts = [
                (p, re.compile(_translate(p, double_star=False), re.DOTALL) if _has_magic(p) else None)
                for p in pattern.split("/")
            ]
        except (ValueError, re.error) as e:
            verb = "ADD" if step.add else "COPY"
            raise UsageError(f"{step.where}: {verb} source {named!r}: {e}") from None
        current = [""]
        for index, (text, regex) in enumerate(parts):
            last = index == len(parts) - 1
            nxt: list[str] = []
            for base in current:
                real = self.resolve(base)
                if real is None:
                    continue
                st = self.lstat(real)
                if st is None or not stat.S_ISDIR(st.st_mode):
                    continue
                names = self.listdir(real) if regex else [text]
                for name in names:
                    if regex is not None and not regex.fullmatch(name):
                        continue
                    candidate = f"{base}/{name}" if base else name
                    if self.lstat(f"{real}/{name}" if real else name) is None:
                        continue
                    if last and not self.present(candidate):
                        continue
                    nxt.append(candidate)
            current = nxt
        return current


def _has_magic(text: str) -> bool:
    """True when a path holds glob characters."""
    return any(c in text for c in "*?[\\")
