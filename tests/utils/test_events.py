"""The event log behind the live stream: order and ids, resuming, falling out of the ring, and readers
woken from other threads without a writer ever waiting on them."""

from __future__ import annotations

import asyncio
import threading

import pytest

from tests.support.clock import Clock
from utils.events import EventLog, Missed


def test_events_are_numbered_in_order_with_ids_of_this_log() -> None:
    clock = Clock(1_000)
    log = EventLog(clock)
    first = log.publish("job", "a")
    clock.now += 5
    second = log.publish("order", "7", payload={"x": 1})
    assert (first.seq, second.seq) == (1, 2)
    assert first.id == f"{log.log_id}-1" and second.id == f"{log.log_id}-2"
    assert (first.time, second.time) == (1_000, 1_005)
    assert log.after(0) == [first, second] and log.after(1) == [second] and log.after(2) == []
    assert EventLog(clock).log_id != log.log_id, "a new process (log) never reuses another's ids"


@pytest.mark.parametrize(
    ("last_event_id", "expected"),
    [
        (None, 3),  # a new reader starts at the end: only what happens from now on
        ("{log}-3", 3),
        ("{log}-1", 1),
        ("{log}-0", 0),
        ("{log}-4", "missed"),  # ahead of the log: not one of ours
        ("deadbeef-2", "missed"),  # another process, or before a restart
        ("{log}-x", "missed"),
        ("{log}", "missed"),
        ("", "missed"),
    ],
)
def test_position_of_a_last_event_id(last_event_id: str | None, expected: int | str) -> None:
    log = EventLog(Clock(0))
    for key in "abc":
        log.publish("job", key)
    asked = None if last_event_id is None else last_event_id.format(log=log.log_id)
    position = log.position(asked)
    if expected == "missed":
        assert position == Missed(asked, 3)
    else:
        assert position == expected


def test_a_reader_older_than_the_ring_is_told_it_missed_events() -> None:
    log = EventLog(Clock(0), capacity=3)
    events = [log.publish("job", str(i)) for i in range(5)]  # seq 1..5; the ring keeps 3..5
    assert log.after(2) == events[2:]
    assert log.after(1) == Missed(f"{log.log_id}-1", 5)
    assert log.position(events[1].id) == 2
    assert log.position(events[0].id) == Missed(events[0].id, 5)


def test_a_reader_waiting_in_its_loop_is_woken_by_a_writer_thread() -> None:
    log = EventLog(Clock(0))

    async def read_three() -> list[str]:
        seen: list[str] = []
        async for batch in log.follow(0, idle_s=5):
            assert not isinstance(batch, Missed) and batch is not None
            seen += [e.key for e in batch]
            if len(seen) >= 3:
                return seen
        raise AssertionError("follow ended")

    async def main() -> list[str]:
        reader = asyncio.create_task(read_three())
        while log.readers == 0:
            await asyncio.sleep(0)
        writer = threading.Thread(target=lambda: [log.publish("job", k) for k in "xyz"])
        writer.start()
        seen = await asyncio.wait_for(reader, timeout=10)
        writer.join()
        return seen

    assert asyncio.run(main()) == ["x", "y", "z"]
    assert log.readers == 0, "a finished reader leaves the log"


def test_an_idle_reader_gets_none_and_a_fallen_behind_one_missed() -> None:
    log = EventLog(Clock(0), capacity=2)

    async def main() -> list[object]:
        got: list[object] = []
        stream = log.follow(0, idle_s=0.01)
        got.append(await anext(stream))  # nothing yet: the idle tick
        for i in range(4):
            log.publish("job", str(i))  # seq 1..4, the ring keeps 3..4: the reader at 0 missed 1..2
        got.append(await anext(stream))
        log.publish("job", "after")
        got.append(await anext(stream))
        await stream.aclose()
        return got

    idle, missed, batch = asyncio.run(main())
    assert idle is None
    assert missed == Missed(f"{log.log_id}-0", 4)
    assert isinstance(batch, list) and [e.key for e in batch] == ["after"]
    assert log.readers == 0
