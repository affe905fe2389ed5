"""What a publishing command ends with, and where it goes: `--report`, CI outputs, a dotenv file.

Why one place: `publish`, `assemble`, `push` and `copy` each end with the same facts (the image,
the digest its tags now name, which tags moved, one row per platform) and each must say them in
several forms: the `--report` JSON (schemaVersion, tool version, timings; written on failure
too, saying what succeeded and what did not), GitHub Actions outputs and step summary, and
GitLab's dotenv report (cli/ci.py renders those). A command wraps its run in `Recorder`, hands
it the facts when it succeeds, and the recorder writes every form, on success and on failure.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from manifesto.errors import ManifestoError, UsageError

SCHEMA_VERSION = 1  # of the --report document: bumped when a field changes meaning or goes away
STDOUT = "-"  # `--report -`: the report is the command's stdout (the digest is in it)


@dataclass(frozen=True)
class Row:
    """One platform's line: how it ended (ok, failed, pushed, built, not started) and where it is."""

    platform: str
    status: str
    digest: str | None = None
    size: int | None = None
    source: str = "built"


@dataclass(frozen=True)
class Facts:
    """A command's result as every output form says it.

    `image`: the repository (or oci:DIR) written to; `digest`: what its tags now name (a
    copied image, a list, an index; with push-by-digest and one platform, that image);
    `body`: the command's own report fields (publish's Result.report(), for one).
    """

    command: str
    image: str
    digest: str | None = None
    tags_moved: tuple[str, ...] = ()
    tags_unchanged: tuple[str, ...] = ()
    rows: tuple[Row, ...] = ()
    body: Mapping[str, Any] = field(default_factory=dict)
    error: str | None = None

    @property
    def tags(self) -> tuple[str, ...]:
        """Every tag that names `digest` now: those moved, then those that already did."""
        return self.tags_moved + self.tags_unchanged

    @property
    def status(self) -> str:
        return "failed" if self.error is not None else "ok"


def first_line(error: BaseException) -> str:
    """An error as a report, summary or dotenv names it: its first line, scrubbed of secrets
    (manifesto/redact.py), since error text may quote a registry's answer or a build's log."""
    from manifesto.redact import scrub

    return (scrub(str(error).strip()).splitlines() or [type(error).__name__])[0]


def refuse_dry_run(args: Any) -> None:
    """`--dry-run` with `--report` or `--report-env`: a usage error, before anything is read.

    Why refused rather than written: a dry run prints a plan and ends with no result, so a
    report of it would have no digest, no tags and no status a later step could act on; and
    `--report -` would put a plan and a JSON document on the same stdout. `publish --check`
    is the run that reports what a publish would do without pushing.
    """
    if not getattr(args, "dry_run", False):
        return
    for flag, value in (("--report", getattr(args, "report", None)), ("--report-env", getattr(args, "report_env", None))):
        if value:
            raise UsageError(
                f"--dry-run does not go with {flag} (a dry run prints its plan and has no result to report; "
                "`publish --check` reports what a publish would change without pushing)"
            )


def _iso(when: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(when)) + f".{int(when % 1 * 1000):03d}Z"


class Recorder:
    """Times one command and, when it ends, writes its facts to every output asked for.

    Used as a context manager around the command's work: `succeeded(facts)` before leaving
    records the result; leaving by a ManifestoError or Ctrl-C writes the failure instead (with
    the facts `failed_with` gave, else just the error), then lets the error go on. `phases` are
    wall-clock seconds per phase (they may overlap: pushes run while other builds still do).
    """

    def __init__(self, command: str, args: Any, image: str, *, environ: Mapping[str, str] | None = None):
        self.command = command
        self.image = image
        self.report: str | None = getattr(args, "report", None)
        self.report_env: str | None = getattr(args, "report_env", None)
        self.environ = os.environ if environ is None else environ
        self.started = time.time()
        self.phases: dict[str, float] = {}
        self._facts: Facts | None = None
        self._partial: Facts | None = None

    @property
    def owns_stdout(self) -> bool:
        """`--report -`: the report is the command's stdout, so the command prints nothing there."""
        return self.report == STDOUT

    def succeeded(self, facts: Facts) -> None:
        self._facts = facts

    def failed_with(self, facts: Facts) -> None:
        """What a failing run had done (rows, body) when its error is raised."""
        self._partial = facts

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: object) -> None:
        if error is None and self._facts is not None:
            self._write(self._facts)
        elif isinstance(error, (ManifestoError, KeyboardInterrupt)):
            text = "interrupted" if isinstance(error, KeyboardInterrupt) else first_line(error)
            base = self._partial or Facts(self.command, self.image)
            try:
                self._write(_with_error(base, text))
            except ManifestoError:
                pass  # the run's own error is the one to report; this one would hide it

    def document(self, facts: Facts, ended: float) -> dict[str, Any]:
        """The --report JSON: the envelope, then the command's own fields."""
        timings: dict[str, Any] = {
            "started": _iso(self.started),
            "ended": _iso(ended),
            "seconds": round(ended - self.started, 3),
        }
        if self.phases:
            timings["phases"] = {k: round(v, 3) for k, v in self.phases.items()}
        from manifesto import __version__

        out: dict[str, Any] = {
            "schemaVersion": SCHEMA_VERSION,
            "tool": {"name": "manifesto", "version": __version__},
            "command": facts.command,
            "status": facts.status,
        }
        if facts.error is not None:
            out["error"] = facts.error
        out["target"] = facts.image
        out.update({k: v for k, v in facts.body.items() if k not in out})
        out["timings"] = timings
        return out

    def _write(self, facts: Facts) -> None:
        from manifesto.cli import ci

        ended = time.time()
        if self.report:
            _write_report(self.report, self.document(facts, ended))
        if self.report_env:
            ci.write_dotenv(Path(self.report_env), facts)
        ci.write_github(facts, self.environ)


def _with_error(facts: Facts, error: str) -> Facts:
    from dataclasses import replace

    return replace(facts, error=error)


def _write_report(target: str, data: dict[str, Any]) -> None:
    if target == STDOUT:
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
        sys.stdout.flush()
        return
    from manifesto.jobs.publish import write_json

    write_json(Path(target), data)


def publish_phases(events: Iterable[Any], started: float, ended: float) -> dict[str, float]:
    """Seconds per phase of a publish, from its progress events (jobs/progress.py).

    preflight: until the first platform is queued; build: first build began .. last one ended;
    push: first push began .. last one ended; index: from the last build or push to the end
    (verifying every child from the target, the index and its tags). A phase that never began
    is left out.
    """
    from manifesto.jobs import progress

    events = list(events)

    def times(*phases: str) -> list[float]:
        return [e.time for e in events if e.phase in phases]

    out: dict[str, float] = {}
    queued = times(progress.QUEUED)
    if queued:
        out["preflight"] = max(0.0, min(queued) - started)
    began, built = times(progress.BUILDING, progress.STEP), times(progress.BUILT, progress.FAILED)
    if began:
        out["build"] = max(built or began) - min(began)
    pushing, pushed = times(progress.PUSHING), times(progress.PUSHED)
    if pushing:
        out["push"] = max(pushed or pushing) - min(pushing)
    last = built + pushed
    if last and times(progress.VERIFIED):
        out["index"] = max(0.0, ended - max(last))
    return out


def outcome_rows(outcomes: Sequence[Any], children: Sequence[Any] = ()) -> tuple[Row, ...]:
    """Rows for the built platforms (jobs.progress.Outcome), then the entries a run copied in,
    as the summary table on stderr lists them (cli/progress.summary)."""
    rows = [Row(o.platform, o.status, o.digest, o.size) for o in outcomes]
    built = {o.platform for o in outcomes}
    for c in children:
        if str(c.platform) not in built or c.source is not None:
            rows.append(Row(str(c.platform), "ok", str(c.digest), c.size, c.source_label))
    return tuple(rows)



def check_facts(check: Any) -> Facts:
    """`publish --check` (jobs.check.Check) as facts: the index a publish would push, its
    children (nothing was pushed: status `built`, or `ok` for an `image:` entry read), the
    index's tags that already name it (none moved), and every tag's `now` → `wanted` under
    `check`, with `wouldChange`."""
    index = check.index
    unchanged = (t.name.rsplit(":", 1)[1] for t in check.tags if t.wanted == index.digest and not t.changes)
    rows = tuple(Row(str(c.platform), "built" if c.source is None else "ok", str(c.digest), c.size, c.source_label) for c in check.children)
    tags = [{"tag": t.name, "now": str(t.now) if t.now else None, "wanted": str(t.wanted), "changes": t.changes} for t in check.tags]
    body = {
        "platforms": [c.to_record() for c in check.children],
        "index": {"digest": str(index.digest), "mediaType": index.media_type, "size": index.size},
        "check": {"wouldChange": check.would_change, "tags": tags},
    }
    return Facts("publish --check", check.target, str(index.digest), (), tuple(dict.fromkeys(unchanged)), rows, body)
