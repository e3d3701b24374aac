"""Hot-path values: fresh ids are unique, the right size, and never repeated by a forked worker."""

from __future__ import annotations

import os

from inferenceops.values import fresh_id


def test_fresh_ids_are_hex_of_the_size_asked_and_do_not_repeat() -> None:
    ids = {fresh_id(12) for _ in range(10_000)}
    assert len(ids) == 10_000
    assert all(len(i) == 24 and int(i, 16) >= 0 for i in ids)
    assert len(fresh_id(9)) == 18


def test_a_forked_worker_does_not_repeat_its_parents_ids() -> None:
    """granian forks its workers from one process: each must draw its own ids."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next ids, then out at once
        os.write(write, ",".join(fresh_id(12) for _ in range(5)).encode())
        os._exit(0)
    os.close(write)
    mine = [fresh_id(12) for _ in range(5)]
    with os.fdopen(read) as pipe:
        theirs = pipe.read().split(",")
    os.waitpid(pid, 0)
    assert len(theirs) == 5 and not set(theirs) & set(mine)
