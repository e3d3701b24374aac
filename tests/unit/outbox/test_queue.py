"""The outbox queue: bounded, counted, order kept, a batch-ready signal for the writer."""

from __future__ import annotations

import pytest

from inferenceops.outbox import AuditRecord, Outbox, UsageRecord


def usage(n: int) -> UsageRecord:
    return UsageRecord(f"r{n}", 0.0, "key", "team", "usr", "user", "m", "d", "d-0", "chat/completions",
                       "interactive", False, 1, 1, True, 0, 200, None, 1.0, 1.0)


def test_a_full_outbox_drops_and_counts_by_kind_never_blocks() -> None:
    box = Outbox(max_records=3, batch_size=2)
    assert all(box.put(usage(i)) for i in range(3))
    assert not box.put(usage(3)) and not box.put(AuditRecord("a", "x", "t", "i"))
    assert box.depth == 3 and box.dropped == {"usage": 1, "audit": 1, "body": 0, "key_use": 0}
    assert box.queued == {"usage": 3, "audit": 0, "body": 0}


def test_take_is_oldest_first_and_give_back_restores_the_order() -> None:
    box = Outbox(max_records=10)
    for i in range(5):
        box.put(usage(i))
    box.note_key_use("k1")
    batch, keys = box.take(3)
    assert [r.request_id for r in batch] == ["r0", "r1", "r2"] and keys == {"k1"}
    box.give_back(batch, keys)
    again, keys = box.take(10)
    assert [r.request_id for r in again] == ["r0", "r1", "r2", "r3", "r4"] and keys == {"k1"}


def test_give_back_never_exceeds_the_bound() -> None:
    box = Outbox(max_records=4)
    batch = [usage(i) for i in range(3)]
    for i in range(3, 6):
        box.put(usage(i))
    box.give_back(batch, ())
    assert box.depth == 4 and box.dropped["usage"] == 2
    assert [r.request_id for r in box.take(10)[0]] == ["r0", "r3", "r4", "r5"]


def test_key_uses_are_deduplicated_and_bounded() -> None:
    box = Outbox(max_keys=2)
    for key in ("a", "a", "b", "c"):
        box.note_key_use(key)
    assert box.take(0)[1] == {"a", "b"} and box.dropped["key_use"] == 1
    assert box.empty


async def test_the_writer_is_woken_when_a_full_batch_waits() -> None:
    box = Outbox(batch_size=3)
    ready = box.wait_ready()
    box.put(usage(0))
    box.put(usage(1))
    assert not ready.is_set()
    box.put(usage(2))
    assert ready.is_set()
    box.take(2)
    assert not ready.is_set()


@pytest.mark.parametrize("bad", [{"max_records": 0}, {"max_keys": 0}, {"batch_size": 0}])
def test_bounds_must_be_positive(bad: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        Outbox(**bad)
