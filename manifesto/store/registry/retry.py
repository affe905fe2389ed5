"""The one retry policy for registry requests (tenacity, imported on the first retry).

Retried: connection and read errors (a body cut short included: callers read bodies they keep
in memory inside the attempt), 408, 429 and 5xx, with exponential backoff that honours
Retry-After (seconds or an HTTP date), capped so a hostile header cannot park us for hours.
Never retried: any other 4xx, a TLS certificate that fails verification (that is not
transient: only a CA or --insecure fixes it), and a request HTTP cannot carry (a header value
it does not allow). A request whose body cannot be replayed is sent once; the transfer layer
restarts the whole upload instead (with the same attempts and pauses: ATTEMPTS, pause()).
"""

from __future__ import annotations

import email.utils
import ssl
import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from pathlib import Path

import httpx

TYPE_CHECKING = False
if TYPE_CHECKING:  # tenacity is imported when a first attempt fails: most commands never retry
    import tenacity

from manifesto.errors import ConnectionLost, NetworkError
from manifesto.store.registry.tls import verification_failed

RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
MAX_RETRY_AFTER = 30.0
ATTEMPTS = 5  # of a request, and of a streamed blob copy (transfer.py), before giving up
BACKOFF = 0.25  # seconds before the second attempt; doubled for each later one
MAX_BACKOFF = 8.0

Guard = Callable[[], Awaitable[None]]
GUARD: ContextVar[Guard | None] = ContextVar("manifesto_retry_guard", default=None)
"""Awaited before each retry of a request sent while it is set; what it raises ends the retries.

A retry waits (backoff, Retry-After) and the world moves meanwhile: a compare-and-swap tag PUT
(tags.py) sets a guard that reads the tag again, so a PUT retried after a pause never lands on
a tag another writer moved during that pause. Requests the guard sends itself run without it.
"""


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """Parse Retry-After (delta-seconds or HTTP-date) into seconds, capped; None if absent/bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), MAX_RETRY_AFTER)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    delta = when.timestamp() - (time.time() if now is None else now)
    return min(max(delta, 0.0), MAX_RETRY_AFTER)


def pause(attempt: int, backoff: float = BACKOFF, retry_after: float | None = None) -> float:
    """Seconds to wait after failed attempt number `attempt` (1 for the first): what the
    registry's Retry-After asked (retry_after_seconds, capped), else `backoff` doubled for each
    attempt, at most MAX_BACKOFF."""
    if retry_after is not None:
        return retry_after
    return min(backoff * 2 ** (attempt - 1), MAX_BACKOFF)


def certificate_failure(error: BaseException) -> ssl.SSLCertVerificationError | None:
    """The certificate verification failure behind a transport error, if that is what it is."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, ssl.SSLCertVerificationError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


class GaveUp(httpx.TransportError):
    """The last transport error once attempts ran out (or at once, for a permanent one).

    A TransportError itself, so callers that catch httpx errors keep working; `error` is the
    original and `attempts` how many were made, for messages that say what happened.
    """

    def __init__(self, error: httpx.TransportError, attempts: int):
        super().__init__(str(error), request=getattr(error, "_request", None))
        self.error = error
        self.attempts = attempts


def _transient(error: BaseException) -> bool:
    if isinstance(error, _RetryableStatus):
        return True
    if isinstance(error, httpx.LocalProtocolError):
        return False  # the request itself cannot be sent: it never will be
    return isinstance(error, httpx.TransportError) and certificate_failure(error) is None


class _RetryableStatus(Exception):
    def __init__(self, response: httpx.Response):
        self.response = response


def _wait(backoff: float) -> Callable[[tenacity.RetryCallState], float]:
    def wait(state: tenacity.RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        after = retry_after_seconds(exc.response.headers.get("retry-after")) if isinstance(exc, _RetryableStatus) else None
        return pause(state.attempt_number, backoff, after)

    return wait


async def send(
    attempt: Callable[[], Awaitable[httpx.Response]],
    *,
    attempts: int = ATTEMPTS,
    backoff: float = BACKOFF,
    on_retry: Callable[[str], None] | None = None,
) -> httpx.Response:
    """Call `attempt()` until it gives a response that is not retryable, or attempts run out.

    The last response is returned even when its status is retryable, so callers report the
    registry's own error; when the last attempt failed in transport, GaveUp is raised.
    """
    made = 0

    async def once() -> httpx.Response:
        nonlocal made
        made += 1
        response = await attempt()
        if response.status_code in RETRY_STATUSES:
            await response.aread()
            raise _RetryableStatus(response)
        return response

    first: BaseException | None
    try:  # the first attempt without tenacity: nearly every request needs no other
        return await once()
    except _RetryableStatus as e:
        if attempts <= 1:
            return e.response
        first = e
    except httpx.TransportError as e:
        if attempts <= 1 or not _transient(e):
            raise GaveUp(e, made) from e
        first = e

    import tenacity

    def before_sleep(state: tenacity.RetryCallState) -> None:
        if on_retry and state.outcome is not None:
            exc = state.outcome.exception()
            why = f"HTTP {exc.response.status_code}" if isinstance(exc, _RetryableStatus) else type(exc).__name__
            on_retry(why)

    async def again() -> httpx.Response:
        """tenacity's attempt 1 is the one already made (it fails at once with its error)."""
        nonlocal first
        if first is not None:
            failed, first = first, None
            raise failed
        guard = GUARD.get()
        if guard is not None:
            token = GUARD.set(None)
            try:
                await guard()
            finally:
                GUARD.reset(token)
        return await once()

    retrying = tenacity.AsyncRetrying(
        stop=tenacity.stop_after_attempt(max(1, attempts)),
        wait=_wait(backoff),
        retry=tenacity.retry_if_exception(_transient),
        before_sleep=before_sleep,
        reraise=True,
    )
    try:
        return await retrying(again)
    except _RetryableStatus as e:
        return e.response
    except httpx.TransportError as e:
        raise GaveUp(e, made) from e


_UNREACHED = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


def network_error(
    error: httpx.HTTPError, *, registry: str, what: str, doing: str, certs_dir: Path, peer: str | None = None
) -> NetworkError:
    """What a failed exchange means, in one line: a certificate that does not verify, nothing
    answering ("cannot reach"), or a registry that answered and then the connection broke.
    `peer`: who was asked when that is not the registry itself (its token service)."""
    attempts = error.attempts if isinstance(error, GaveUp) else 1
    cause: httpx.HTTPError = error.error if isinstance(error, GaveUp) else error
    bad = certificate_failure(cause)
    if bad is not None:
        request = getattr(cause, "_request", None)
        host = request.url.netloc.decode() if request is not None else registry
        return NetworkError(verification_failed(registry, host, bad, certs_dir))
    detail = (str(cause) or type(cause).__name__).splitlines()[0]
    if isinstance(cause, _UNREACHED):
        plural = "" if attempts == 1 else "s"
        unreached = NetworkError(f"{what}: cannot reach {peer or registry}: {detail} ({attempts} attempt{plural})")
        unreached.attempts = attempts
        return unreached
    if isinstance(cause, httpx.LocalProtocolError):
        return NetworkError(f"{what}: {detail}")
    if isinstance(cause, httpx.TransportError):
        return ConnectionLost(doing, attempts, detail)
    return NetworkError(f"{what}: {detail}")
