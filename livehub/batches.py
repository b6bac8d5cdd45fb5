"""Batches that one bad item cannot sink.

Batch writers (the in-stream checkout, the chat archive) put many items in one statement: that is what
makes a flash drop or a busy chat cheap. If the statement fails because of one item (a value PostgreSQL
refuses, a bug a particular input triggers), failing the whole batch would let one attacker's frame fail
everyone else's purchase in that instant, or block the chat archive behind one message forever. So a batch
that fails for any reason but the database being away is split in halves and each half tried again, down
to single items: only the poisoned item fails, the rest are written (a single bad item in a batch of 50
costs about a dozen extra statements). The database being away fails the rest of the batch at once: no
split would help, and the caller keeps the items or answers them.

Writers must be safe to repeat for the items of a failed attempt: a failed statement committed nothing,
and an attempt that failed after committing (in Python, after the statement) is repeated with the same
request ids or row ids, which the storage side answers idempotently.
"""

from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from livehub.errors import Unavailable, to_error

T = TypeVar("T")


async def write_isolating(
    items: Sequence[T],
    write: Callable[[list[T]], Awaitable[None]],
    poisoned: Callable[[T, Exception], None],
    *,
    refuses_all: Callable[[Exception], bool] = lambda exc: False,
) -> list[T]:
    """`write` every item, in order, in as few calls as failures allow; `poisoned(item, error)` for each
    item that fails on its own, and for every item of a call that failed with an error `refuses_all` says
    is about the whole batch (a rule the storage function applied to all of it: splitting would only
    repeat it). Returns the items left unwritten because the database is away (empty when every item was
    written or answered)."""
    pending: list[list[T]] = [list(items)] if items else []
    while pending:
        chunk = pending.pop(0)
        try:
            await write(chunk)
        except Exception as exc:
            if isinstance(to_error(exc), Unavailable):
                return [item for part in (chunk, *pending) for item in part]
            if len(chunk) == 1 or refuses_all(exc):
                for item in chunk:
                    poisoned(item, exc)
            else:
                half = len(chunk) // 2
                pending[:0] = [chunk[:half], chunk[half:]]
    return []
