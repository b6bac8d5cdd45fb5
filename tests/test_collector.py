"""The node's garbage-collector policy (livehub/collector.py): what is alive at start-up and what survives
later collections is frozen out of the collector's walks; a sweep still frees cycles among frozen objects."""

import gc
import weakref

import pytest

from livehub.collector import Collector
from livehub.settings import Settings


@pytest.fixture
def collector_state():
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


class Node:
    """Stands for a connection's objects: a reference cycle, as aiohttp's response and protocol make."""

    def __init__(self):
        self.me = self


def test_start_freezes_what_is_alive_and_raises_the_young_threshold_stop_puts_it_back(collector_state):
    before = gc.get_threshold()
    collector = Collector(Settings(gc_young_threshold=12_345))
    collector.start()
    assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == (12_345, before[1], before[2])
    collector.stop()
    assert gc.get_freeze_count() == 0
    assert gc.get_threshold() == before


def test_turned_off_it_leaves_the_collector_alone(collector_state):
    before = gc.get_threshold()
    collector = Collector(Settings(gc_freeze_interval_s=0))
    assert not collector.enabled
    collector.start()
    assert gc.get_freeze_count() == 0
    assert gc.get_threshold() == before


def test_a_cycle_frozen_while_alive_is_freed_by_the_sweep_not_before(collector_state):
    collector = Collector(Settings(gc_sweep_interval_s=3600))
    collector.start()
    node = Node()
    gone = weakref.ref(node)
    collector.tick()  # a freeze: the node survives it, being alive
    del node
    gc.collect()
    assert gone() is not None  # frozen: no collection walks it
    collector.sweep()
    assert gone() is None
    assert gc.get_freeze_count() > 0  # everything alive is frozen again


def test_garbage_new_since_the_last_freeze_is_collected_by_the_next(collector_state):
    collector = Collector(Settings())
    collector.start()
    node = Node()
    gone = weakref.ref(node)
    del node
    collector.tick()
    assert gone() is None


def test_what_survives_a_full_collection_is_frozen_at_once(collector_state):
    collector = Collector(Settings(gc_freeze_interval_s=3600))
    collector.start()
    gc.unfreeze()
    assert gc.get_freeze_count() == 0
    gc.collect()  # as the collector runs one by itself when enough has piled up
    assert gc.get_freeze_count() > 0
    collector.stop()
    assert collector._after_collection not in gc.callbacks
