"""One error tree for the whole tool.

Library code raises these; only the CLI maps them to exit codes (its table in cli/main.py) and
one-line messages, so a library user never meets a process-level concern on an exception.
Foreign errors (httpx, yaml, subprocess, OSError) are converted where they arise.
"""

from __future__ import annotations


class ManifestoError(Exception):
    """Root of every error manifesto raises on purpose."""


class UsageError(ManifestoError):
    """Bad input from the user: arguments, references, files."""


class InvalidReference(UsageError):
    """An image reference that does not parse."""


class InvalidDigest(UsageError):
    """A digest that is not `algorithm:hex` of a known algorithm."""


class InvalidPlatform(UsageError):
    """A platform string or combination that cannot exist."""


class SpecError(UsageError):
    """A platforms.yaml problem; carries the file and line it comes from."""

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None):
        self.file = file
        self.line = line
        where = file or ""
        if file and line:
            where = f"{file}:{line}"
        super().__init__(f"{where}: {message}" if where else message)


class AuthError(ManifestoError):
    """Credentials missing, rejected, or lacking the scope needed."""


class NotFound(ManifestoError):
    """A repository, manifest, blob or draft that does not exist."""


class ContentError(ManifestoError):
    """Bytes that are not what they claim: bad digest, bad JSON, wrong media type."""


class DigestMismatch(ContentError):
    """Received bytes whose sha256 differs from the digest asked for or announced."""


class RegistryError(ManifestoError):
    """A registry answered with an error status that is not auth or not-found."""

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None):
        self.status = status
        self.code = code
        self.retry_after: float | None = None  # seconds the registry asked to wait, if it did
        self.attempts = 1  # requests sent, this answer to the last
        super().__init__(message)


class NetworkError(ManifestoError):
    """The registry could not be reached (after retries)."""

    attempts = 1  # how many times the exchange was tried


class ConnectionLost(NetworkError):
    """A registry answered, then the connection broke before the exchange was done (after retries).

    Told apart from "cannot reach": the registry is there. `doing` says what was under way and
    `attempts` how many were made, so a caller that restarts the whole exchange can say so.
    """

    def __init__(self, doing: str, attempts: int, detail: str):
        self.doing, self.attempts, self.detail = doing, attempts, detail
        plural = "" if attempts == 1 else "s"
        super().__init__(f"connection lost while {doing} after {attempts} attempt{plural}: {detail}")


class BuildError(ManifestoError):
    """A builder failed; carries the tail of its log."""

    def __init__(self, message: str, *, log_tail: str = ""):
        self.log_tail = log_tail
        super().__init__(message)


class VerificationError(ManifestoError):
    """A pushed image is not what it claims to be (platform, digest, children)."""


class ConcurrentUpdate(ManifestoError):
    """A tag moved under us: another writer changed it since this run first read it.

    Raised instead of overwriting what the other writer put there (or after our write, when the
    read-back shows theirs replaced ours): losing a list's entries silently is worse than failing.
    """
