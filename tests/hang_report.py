"""What a test stuck near its timeout is waiting for. pytest-timeout's own dump shows threads only, and an
event loop stuck on an await is just a thread idle in select(); so shortly before the timeout the stacks of
the asyncio tasks still pending are written to stderr, which pytest shows with the test's failure."""

import asyncio
import sys
import threading

import pytest

MOST = 60  # tasks shown at most


def _pending() -> list[asyncio.Task]:
    # Every loop's tasks (the test's loop is not reachable from this thread). Read from another thread:
    # the set may change while it is copied, so the copy is tried again.
    tasks = getattr(asyncio.tasks, "_scheduled_tasks", None) or getattr(asyncio.tasks, "_all_tasks", ())
    for _ in range(10):
        try:
            return [task for task in list(tasks) if not task.done()]
        except RuntimeError:
            continue
    return []


def _report(nodeid: str, after_s: float) -> None:
    tasks = _pending()
    out = sys.stderr
    print(f"\n--- {nodeid} still running after {after_s:.0f} s: {len(tasks)} asyncio tasks pending ---", file=out)
    for task in tasks[:MOST]:
        try:
            task.print_stack(limit=12, file=out)
        except Exception as exc:  # a frame changing under us: say so and go on
            print(f"{task.get_name()}: stack unreadable ({exc!r})", file=out)
    out.flush()


def arm(item: pytest.Item) -> threading.Timer | None:
    """A timer reporting the pending tasks 15 s before the item's timeout (ini `timeout` or its marker)."""
    marker = item.get_closest_marker("timeout")
    try:
        timeout = float(marker.args[0]) if marker and marker.args else float(item.config.getini("timeout") or 0)
    except (TypeError, ValueError):
        return None
    if timeout <= 30:
        return None
    timer = threading.Timer(timeout - 15, _report, args=(item.nodeid, timeout - 15))
    timer.daemon = True
    timer.start()
    return timer
