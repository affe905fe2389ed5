"""The one retry policy for registry requests (tenacity).

Retried: connection and read errors, 408, 429 and 5xx, with exponential backoff that honours
Retry-After (seconds or an HTTP date), capped so a hostile header cannot park us for hours.
Never retried: any other 4xx. A request whose body cannot be replayed is sent once; the
transfer layer restarts the whole upload instead.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Awaitable, Callable

import httpx
import tenacity

RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
MAX_RETRY_AFTER = 30.0


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


class _RetryableStatus(Exception):
    def __init__(self, response: httpx.Response):
        self.response = response


def _wait(base: tenacity.wait.wait_base) -> Callable[[tenacity.RetryCallState], float]:
    def wait(state: tenacity.RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, _RetryableStatus):
            after = retry_after_seconds(exc.response.headers.get("retry-after"))
            if after is not None:
                return after
        return base(state)

    return wait


async def send(
    attempt: Callable[[], Awaitable[httpx.Response]],
    *,
    attempts: int = 5,
    backoff: float = 0.25,
    on_retry: Callable[[str], None] | None = None,
) -> httpx.Response:
    """Call `attempt()` until it gives a response that is not retryable, or attempts run out.

    The last response is returned even when its status is retryable, so callers report the
    registry's own error; the last transport error is raised when nothing ever answered.
    """

    async def once() -> httpx.Response:
        response = await attempt()
        if response.status_code in RETRY_STATUSES:
            await response.aread()
            raise _RetryableStatus(response)
        return response

    def before_sleep(state: tenacity.RetryCallState) -> None:
        if on_retry and state.outcome is not None:
            exc = state.outcome.exception()
            why = f"HTTP {exc.response.status_code}" if isinstance(exc, _RetryableStatus) else type(exc).__name__
            on_retry(why)

    retrying = tenacity.AsyncRetrying(
        stop=tenacity.stop_after_attempt(max(1, attempts)),
        wait=_wait(tenacity.wait_exponential(multiplier=backoff, max=8.0)),
        retry=tenacity.retry_if_exception_type((_RetryableStatus, httpx.TransportError)),
        before_sleep=before_sleep,
        reraise=True,
    )
    try:
        return await retrying(once)
    except _RetryableStatus as e:
        return e.response
