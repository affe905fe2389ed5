"""CI-native output: GitHub Actions outputs, step summary, log groups and annotations; GitLab dotenv.

Why: in a workflow the next step needs the digest and tags this one pushed, and people read a
run's summary page and annotations before its log. Under GitHub Actions (GITHUB_ACTIONS=true)
the publishing commands append `digest=`, `image=` and `tags=` to $GITHUB_OUTPUT and a table
to $GITHUB_STEP_SUMMARY, each platform's build log is folded into a `::group::`, and an error
becomes an `::error` annotation (a platforms.yaml one on its file and line). GitLab has no such
files: `--report-env FILE` writes the same facts as a dotenv report. Workflow commands are
escaped as GitHub's toolkit does; text we did not write (build output, registry answers, error
messages quoting either) cannot issue any: `guard` is the one rule, and puts such text between
`::stop-commands::` markers. Every error text and build log line is scrubbed of secrets
(manifesto/redact.py) first. Nothing here imports more than the standard library and redact.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from manifesto.fileio import random_hex
from manifesto.redact import scrub

if TYPE_CHECKING:
    from manifesto.cli.report import Facts
    from manifesto.jobs.progress import Event


def github(environ: Mapping[str, str] | None = None) -> bool:
    """Running as a GitHub Actions step."""
    return (os.environ if environ is None else environ).get("GITHUB_ACTIONS") == "true"


# ---- workflow commands ------------------------------------------------------------------------


def escape_data(text: str) -> str:
    """A workflow command's message: %, CR and LF percent-encoded (else a newline ends it)."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    """A workflow command's property value: as data, and `:` and `,` too (they end a property)."""
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def command(name: str, message: str, **properties: object) -> str:
    """`::name key=value,...::message`, properties with a None value left out."""
    props = ",".join(f"{k}={escape_property(str(v))}" for k, v in properties.items() if v is not None)
    return f"::{name}{' ' + props if props else ''}::{escape_data(message)}"


def error_annotation(error: BaseException, workspace: str | None = None, message: str | None = None) -> str:
    """An `::error` annotation for a failed command; a platforms.yaml error points at its file
    (relative to `workspace`, the checkout, when inside it: GitHub links those), line and column
    (when the error knows one), its message (`message`, else the error's text, scrubbed of
    secrets like every error text) without the `file:line: ` prefix."""
    text = scrub((str(error) if message is None else message).strip()) or type(error).__name__
    file, line, col = (getattr(error, name, None) for name in ("file", "line", "column"))
    if file and line:
        text = text.removeprefix(f"{file}:{line}: ")
    shown = file
    if file and workspace:
        path, root = os.path.abspath(file), os.path.abspath(workspace)
        if os.path.commonpath([path, root]) == root:
            shown = os.path.relpath(path, root)
    return command("error", text, file=shown, line=line if file else None, col=col if file and line else None)


def could_be_command(text: str) -> bool:
    """Could some line of `text` be read by the runner as a workflow command?

    The runner takes a line whose start, after leading whitespace, is `::` (so indenting a line
    does not defuse it), and a line holding `##[` anywhere (the older form). A valid tag, digest
    or platform holds neither; text quoted from a registry or a build may.
    """
    # str.lstrip strips at least the whitespace the runner does, splitlines splits at least where
    # it does: both err on the side of "could be".
    return "##[" in text or any(line.lstrip().startswith("::") for line in text.splitlines())


def guard(text: str, environ: Mapping[str, str] | None = None) -> str:
    """`text` as it may go to the log (one or more lines, without the final newline): under
    GitHub Actions, when some line of it could be a workflow command, the whole of it between
    `::stop-commands::` markers, so the runner shows it and obeys none of it. The one rule for
    every line that quotes a registry or a build: errors, log events, tag names, build logs."""
    return _inert(text) if github(environ) else text


def _inert(text: str) -> str:
    if not could_be_command(text):
        return text
    token = _token()
    return f"::stop-commands::{token}\n{text}\n::{token}::"


def _token() -> str:
    """A `::stop-commands::` token: random, so text written after it cannot guess and end it."""
    return f"manifesto-{random_hex()}"


# ---- $GITHUB_OUTPUT and $GITHUB_STEP_SUMMARY ----------------------------------------------------


def output_lines(name: str, value: str) -> str:
    """One output in $GITHUB_OUTPUT's format: `name=value`, or a heredoc when the value has a
    line break (with a delimiter the value cannot contain)."""
    if "\n" not in value and "\r" not in value:
        return f"{name}={value}\n"
    while (delimiter := f"ghadelimiter_{random_hex()}") in value:
        pass
    return f"{name}<<{delimiter}\n{value}\n{delimiter}\n"


def _append(path: str, text: str) -> None:
    """Append to a file GitHub gave us (never truncate: earlier steps' lines are in it)."""
    from manifesto.fileio import write_file

    write_file(Path(path), text.encode(), append=True)


def _cell(text: object) -> str:
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def summary_markdown(facts: Facts) -> str:
    """The step summary: a heading, one row per platform (status, digest, size, source), the
    digest and the tags moved and unchanged; a failure says its error."""
    from manifesto.cli.render import size

    mark = {"ok": "✅", "failed": "❌"}
    lines = [f"### manifesto {facts.command}: {_cell(facts.image)} {mark.get(facts.status, '')}".rstrip(), ""]
    if facts.error is not None:
        lines += [f"**Failed:** {_cell(facts.error)}", ""]
    if facts.rows:
        lines += ["| platform | status | digest | size | source |", "| --- | --- | --- | --- | --- |"]
        for r in facts.rows:
            digest = f"`{r.digest}`" if r.digest else ""
            lines.append(f"| {_cell(r.platform)} | {_cell(r.status)} | {digest} | {size(r.size) if r.size else ''} | {_cell(r.source)} |")
        lines.append("")
    if facts.digest:
        lines.append(f"Digest: `{facts.digest}`")
    if facts.error is None:
        moved = ", ".join(f"`{t}`" for t in facts.tags_moved) or "none"
        unchanged = ", ".join(f"`{t}`" for t in facts.tags_unchanged) or "none"
        lines.append(f"Tags moved: {moved}; unchanged: {unchanged}")
    return "\n".join(lines) + "\n\n"


def write_github(facts: Facts, environ: Mapping[str, str]) -> None:
    """Under GitHub Actions: outputs (on success) and the step summary (always)."""
    if not github(environ):
        return
    out = environ.get("GITHUB_OUTPUT")
    if out and facts.error is None:
        text = output_lines("digest", facts.digest or "") + output_lines("image", facts.image)
        _append(out, text + output_lines("tags", ",".join(facts.tags)))
    summary = environ.get("GITHUB_STEP_SUMMARY")
    if summary:
        _append(summary, summary_markdown(facts))


# ---- GitLab: --report-env ---------------------------------------------------------------------


def dotenv(facts: Facts) -> str:
    """The facts as GitLab's dotenv report reads them: NAME=value lines, no quotes, no blank
    lines, no empty values; the tags comma-separated (a tag cannot hold a comma)."""
    values = {
        "MANIFESTO_STATUS": facts.status,
        "MANIFESTO_IMAGE": facts.image,
        "MANIFESTO_DIGEST": facts.digest or "",
        "MANIFESTO_TAGS": ",".join(facts.tags),
    }
    return "".join(f"{k}={' '.join(v.split())}\n" for k, v in values.items() if v)


def write_dotenv(path: Path, facts: Facts) -> None:
    from manifesto.fileio import write_file

    write_file(path, dotenv(facts).encode())


# ---- build logs in groups ---------------------------------------------------------------------


class Groups:
    """Each platform's build log as one `::group::PLATFORM` block, written when its build ends.

    Why buffered: builds run in parallel and their lines interleave, but a group is a run of
    consecutive lines; so a platform's lines are held until its build is over (built, failed,
    or at the latest when the run ends) and then written together. The phase lines still go
    out as they happen. The block runs between `::stop-commands::` markers so that nothing a
    Dockerfile prints can set outputs or annotations. Lines arrive as `[PLATFORM] text`
    (jobs/builds.py).
    """

    def __init__(self, write: Callable[[str], None]):
        self.write = write
        self._lock = threading.Lock()
        self._held: dict[str, list[str]] = {}

    def line(self, text: str) -> None:
        platform, sep, rest = text.partition("] ")
        if not (text.startswith("[") and sep):
            self.write(_inert(scrub(text)))
            return
        with self._lock:
            self._held.setdefault(platform[1:], []).append(rest)

    def event(self, event: Event) -> None:
        from manifesto.jobs import progress

        if event.phase in (progress.BUILT, progress.FAILED, progress.NOT_STARTED):
            self._flush(event.platform)

    def _flush(self, platform: str) -> None:
        with self._lock:
            lines = self._held.pop(platform, None)
            if not lines:
                return
            token = _token()
            self.write(command("group", f"{platform} build log"))
            self.write(command("stop-commands", token))
            for text in lines:
                self.write(scrub(text))  # a RUN step may print a token
            self.write(f"::{token}::")
            self.write("::endgroup::")

    def close(self) -> None:
        """Write what is still held (a run that ended before a build did)."""
        for platform in list(self._held):
            self._flush(platform)


def report_failure(
    error: BaseException, fail: Callable[[], None], environ: Mapping[str, str] | None = None, message: str | None = None
) -> None:
    """Under GitHub Actions: a failed command's error as an `::error` annotation on stderr, then
    `fail()` (the error line). When the error (or `message`, the text `fail` writes) has more
    lines (a build log's tail, printed indented: the runner strips indentation before it looks
    for a command) or a line that could be a command, `fail()` runs with workflow commands off,
    so neither a Dockerfile nor a registry can issue one through an error."""
    environ = os.environ if environ is None else environ
    text = (str(error) if message is None else message).strip()
    sys.stderr.write(error_annotation(error, environ.get("GITHUB_WORKSPACE"), message) + "\n")
    if "\n" not in text and not could_be_command(f"manifesto: error: {text}"):
        fail()
        return
    token = _token()
    sys.stderr.write(f"::stop-commands::{token}\n")
    try:
        fail()
    finally:
        sys.stderr.write(f"::{token}::\n")
