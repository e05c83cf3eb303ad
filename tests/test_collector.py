"""The garbage collector's policy (sniffer.collector): what survives a collection is frozen out of
later ones, cycles still die young, and a long run's full collection frees cycles among frozen
objects. Real collections of this process; the collector's settings are restored after each."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from sniffer.collector import YOUNG_THRESHOLD, FullCollections, collect_young_only


class Node:
    """A container the collector tracks, and that a weak reference can follow."""

    def __init__(self) -> None:
        self.other: Node | None = None


def cycle() -> weakref.ref[Node]:
    """A reference cycle nobody holds: only the collector can free it."""
    a, b = Node(), Node()
    a.other, b.other = b, a
    return weakref.ref(a)


def traversed(obj: object) -> bool:
    """Whether a collection would still look at `obj` (frozen objects are in no generation)."""
    return any(o is obj for o in gc.get_objects())


@pytest.fixture(autouse=True)
def restore_the_collector() -> Iterator[None]:
    threshold, callbacks = gc.get_threshold(), list(gc.callbacks)
    yield
    gc.callbacks[:] = callbacks
    gc.set_threshold(*threshold)
    gc.unfreeze()


def test_survivors_are_frozen_and_young_cycles_are_still_freed() -> None:
    collect_young_only()
    assert gc.get_threshold()[0] == YOUNG_THRESHOLD
    kept = Node()
    assert traversed(kept)
    dead = cycle()
    gc.collect(0)
    assert dead() is None  # the cycle was collected, before the survivors were frozen
    assert not traversed(kept)  # it survived: no collection will look at it again
    collect_young_only()  # a second call does not stack a second callback
    assert sum(1 for callback in gc.callbacks if callback.__name__ == "_freeze_survivors") == 1


def test_a_full_collection_frees_cycles_among_frozen_objects_when_due() -> None:
    collect_young_only()
    a = Node()
    a.other = Node()
    gc.collect(0)  # both frozen now
    a.other.other = a  # ... and then they form a cycle, and are dropped
    dead = weakref.ref(a)
    del a
    gc.collect()
    assert dead() is not None  # out of every collection's sight
    collections = FullCollections(now=100.0, every=60.0)
    assert collections.tick(159.0) is None and dead() is not None
    freed = collections.tick(160.0)
    assert dead() is None and freed is not None and freed >= 2
    assert collections.tick(200.0) is None  # the next one is due at 220
    kept = Node()
    assert collections.tick(220.0) is not None and not traversed(kept)  # frozen again after it
