"""One event loop in a thread of its own, fed from the build threads.

Why: a publish pushes each platform's image while the others still build. The builds keep the
main thread (where Ctrl-C and SIGTERM land, so build_all can cancel running builders as it
always has) and run in worker threads; the pushes are async (httpx) and need one event loop
that keeps running while the main thread waits on builds. This is that loop: coroutines are
submitted from any thread, `wait` blocks for one's result, and leaving the block cancels
whatever still runs and closes the loop, so nothing outlives the publish.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from typing import Any, TypeVar

T = TypeVar("T")


class LoopThread:
    """An event loop running in a daemon thread for the length of a `with` block."""

    def __init__(self, name: str = "push"):
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)

    def __enter__(self) -> LoopThread:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        async def cancel_rest() -> None:
            rest = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in rest:
                task.cancel()
            await asyncio.gather(*rest, return_exceptions=True)
            await self.loop.shutdown_asyncgens()

        try:
            asyncio.run_coroutine_threadsafe(cancel_rest(), self.loop).result(timeout=30)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=30)
            if not self._thread.is_alive():
                self.loop.close()

    def submit(self, coro: Coroutine[Any, Any, T]) -> Future[T]:
        """Start `coro` on the loop; its result (or exception) arrives in the Future."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def call(self, fn: Callable[..., object], *args: object) -> None:
        """Run a plain function on the loop's thread soon (e.g. an asyncio.Queue's put_nowait)."""
        self.loop.call_soon_threadsafe(fn, *args)

    def wait(self, future: Future[T]) -> T:
        """Block for a submitted coroutine's result; Ctrl-C cancels it (then re-raises)."""
        try:
            return future.result()
        except KeyboardInterrupt:
            future.cancel()
            raise
