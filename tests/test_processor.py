"""Updates from different users run concurrently; one user's updates keep their order."""

from __future__ import annotations

import asyncio

from telegram import Update

from bot.processor import PerUserUpdateProcessor


def update_from(user_id: int, update_id: int) -> Update:
    return Update.de_json(
        {
            "update_id": update_id,
            "message": {
                "message_id": update_id,
                "date": 0,
                "chat": {"id": user_id, "type": "private"},
                "from": {"id": user_id, "is_bot": False, "first_name": "x"},
                "text": "hi",
            },
        },
        None,
    )


async def test_a_slow_user_does_not_hold_up_another() -> None:
    processor = PerUserUpdateProcessor(max_concurrent_updates=8)
    release = asyncio.Event()
    done: list[str] = []

    async def slow() -> None:
        await release.wait()
        done.append("slow")

    async def quick() -> None:
        done.append("quick")

    slow_task = asyncio.create_task(processor.process_update(update_from(1, 1), slow()))
    await asyncio.sleep(0)
    await asyncio.wait_for(processor.process_update(update_from(2, 2), quick()), timeout=2)
    assert done == ["quick"]  # user 2 was answered while user 1's update was still running
    release.set()
    await slow_task
    assert done == ["quick", "slow"]


async def test_one_users_updates_stay_in_order() -> None:
    processor = PerUserUpdateProcessor(max_concurrent_updates=8)
    order: list[int] = []

    async def handle(n: int, delay: float) -> None:
        await asyncio.sleep(delay)
        order.append(n)

    # The first update is the slowest: without ordering it would finish last.
    delays = [0.05, 0.0, 0.02, 0.0, 0.01]
    await asyncio.gather(
        *(processor.process_update(update_from(5, n), handle(n, d)) for n, d in enumerate(delays))
    )
    assert order == [0, 1, 2, 3, 4]
    assert processor._locks == {}  # idle users are forgotten


async def test_a_flood_from_one_user_is_cut_at_the_backlog() -> None:
    processor = PerUserUpdateProcessor(max_concurrent_updates=64, max_backlog=3)
    handled: list[int] = []
    gate = asyncio.Event()

    async def handle(n: int) -> None:
        await gate.wait()
        handled.append(n)

    tasks = [
        asyncio.create_task(processor.process_update(update_from(9, n), handle(n)))
        for n in range(10)
    ]
    await asyncio.sleep(0.01)
    gate.set()
    await asyncio.gather(*tasks)
    assert handled == [0, 1, 2]
