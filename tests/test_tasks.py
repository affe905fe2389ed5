"""manifesto.tasks.gather: results in order, and no sibling outlives a failure."""

from __future__ import annotations

import asyncio

import pytest

from manifesto import tasks
from manifesto.tasks import gather


def test_results_in_argument_order() -> None:
    async def value(v: int, delay: float) -> int:
        await asyncio.sleep(delay)
        return v

    assert asyncio.run(gather(value(1, 0.02), value(2, 0.0), value(3, 0.01))) == [1, 2, 3]
    assert asyncio.run(gather()) == []


def test_a_failure_cancels_and_waits_for_the_siblings() -> None:
    state = {"finished": False, "cleaned_up": False}

    async def slow() -> None:
        try:
            await asyncio.sleep(10)
            state["finished"] = True
        finally:
            await asyncio.sleep(0)  # clean-up that needs the loop: must run before gather returns
            state["cleaned_up"] = True

    async def fail() -> None:
        await asyncio.sleep(0.01)
        raise ValueError("boom")

    async def main() -> None:
        with pytest.raises(ValueError, match="boom"):
            await gather(slow(), fail())
        assert state == {"finished": False, "cleaned_up": True}
        assert len(asyncio.all_tasks()) == 1  # only main itself is left

    asyncio.run(main())


def test_cancelling_the_caller_cancels_every_task() -> None:
    cancelled = []

    async def forever(i: int) -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.append(i)
            raise

    async def main() -> None:
        outer = asyncio.ensure_future(gather(forever(1), forever(2)))
        await asyncio.sleep(0.01)
        outer.cancel()
        with pytest.raises(asyncio.CancelledError):
            await outer
        assert sorted(cancelled) == [1, 2]

    asyncio.run(main())


def test_in_order_raises_the_first_failure_in_argument_order() -> None:
    """A later, faster failure stops what comes after it, not what comes before it."""
    state: dict[str, str] = {}

    async def slow_fail() -> None:
        await asyncio.sleep(0.05)
        state["first"] = "failed"
        raise ValueError("first")

    async def fast_fail() -> None:
        raise ValueError("second")

    async def after() -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            state["after"] = "cancelled"
            raise

    async def main() -> None:
        with pytest.raises(ValueError, match="first"):
            await gather(slow_fail(), fast_fail(), after(), in_order=True)
        assert state == {"first": "failed", "after": "cancelled"}
        assert len(asyncio.all_tasks()) == 1

    asyncio.run(main())
    assert asyncio.run(gather(asyncio.sleep(0, 1), asyncio.sleep(0, 2), in_order=True)) == [1, 2]


def test_off_loop_runs_a_blocking_call_outside_the_callers_event_loop() -> None:
    """Sync wrappers that use asyncio.run still work when called from async code."""
    assert tasks.off_loop(lambda: asyncio.run(asyncio.sleep(0, "here"))) == "here"

    async def inside() -> str:
        return tasks.off_loop(lambda: asyncio.run(asyncio.sleep(0, "thread")))

    assert asyncio.run(inside()) == "thread"

    async def failing() -> None:
        tasks.off_loop(lambda: asyncio.run(_boom()))

    async def _boom() -> None:
        raise ValueError("from the thread")

    with pytest.raises(ValueError, match="from the thread"):
        asyncio.run(failing())
