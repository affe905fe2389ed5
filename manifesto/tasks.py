"""Run awaitables together; when one fails, stop the others before raising.

`asyncio.gather` leaves the siblings of a failed awaitable running: they go on uploading after
the command has decided to fail, and whatever they start while the event loop shuts down is
never awaited (Python then warns on stderr, after the one-line error). Here nothing outlives the
call: on the first failure (or our own cancellation) every sibling is cancelled and waited for.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")


async def gather(*aws: Awaitable[Any], in_order: bool = False) -> list[Any]:
    """The results in order, or the first failure (in argument order) once all have stopped.

    By default the first failure to happen stops the rest at once, so which one is raised can
    depend on timing. With `in_order`, a failure stops only the awaitables after it; those before
    it run on (one of them may fail too), so the failure raised is always the first in argument
    order, whatever finished first (an index's first bad entry, not the fastest).
    """
    tasks = [asyncio.ensure_future(a) for a in aws]
    if not tasks:
        return []
    try:
        if in_order:
            await _until_first_in_order(tasks)
        else:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    except BaseException:
        await _stop(tasks)
        raise
    failed = [t for t in tasks if t.done() and not t.cancelled() and t.exception() is not None]
    if failed:
        await _stop(tasks)
        raise failed[0].exception()  # type: ignore[misc]
    return [t.result() for t in tasks]


async def _until_first_in_order(tasks: list[asyncio.Future[Any]]) -> None:
    """Wait until every task is done, cancelling those after the earliest failure so far."""
    limit = len(tasks)
    pending = set(tasks)
    while pending:
        _, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_EXCEPTION)
        for i, task in enumerate(tasks[:limit]):
            if task.done() and not task.cancelled() and task.exception() is not None:
                for later in tasks[i + 1 : limit]:
                    later.cancel()
                limit = i
                break


async def _stop(tasks: list[asyncio.Future[Any]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def off_loop(call: Callable[[], T]) -> T:
    """`call()` here, or in a thread of its own when this thread already runs an event loop.

    For sync wrappers whose `call` runs asyncio.run (which refuses to start inside a running
    loop): a library caller inside async code still gets the result, or the exception, here.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return call()
    out: dict[str, Any] = {}

    def target() -> None:
        try:
            out["value"] = call()
        except BaseException as e:  # handed to the caller's thread
            out["error"] = e

    thread = threading.Thread(target=target, name="off-loop", daemon=True)
    thread.start()
    thread.join()
    if "error" in out:
        raise out["error"]
    return out["value"]
