"""The one retry policy of every byte source: a response body that breaks off or comes up
short is fetched again, with full-jitter exponential backoff, and counted."""
from __future__ import annotations

import random
import threading
import time
from collections import Counter
from typing import Callable, TypeVar

from ..errors import StorageError
from .base import ReadStats
from .s3_config import deadlines

#: Attempts of one read whose response *body* failed or came up short. The clients retry a
#: request that fails (5xx, throttling, resets before the answer) with backoff and jitter,
#: but not a body that breaks off after the headers arrived, nor one shorter than asked
#: for: those are retried here.
READ_ATTEMPTS = 5
RETRY_BASE_SECONDS = 0.1
RETRY_MAX_SECONDS = 5.0
#: How often each kind of body retry happened in this process (figures for reports).
RETRIES: Counter = Counter()
_retries_lock = threading.Lock()


def _note_retry(kind: str, attempt: int) -> None:
    """Count a retry of ``kind`` and wait before retry ``attempt`` (0-based): full jitter,
    exponential, capped."""
    with _retries_lock:
        RETRIES[kind] += 1
    time.sleep(random.uniform(0.0, min(RETRY_MAX_SECONDS, RETRY_BASE_SECONDS * 2 ** attempt)))


class BodyError(Exception):
    """Raised by a ``fetch`` of :func:`read_exactly` when a response body broke off (the
    request itself was answered): the read is retried."""


Body = TypeVar("Body", bytes, memoryview)


def read_exactly(fetch: Callable[[], Body], expected: int | None, what: str, stats: ReadStats | None) -> Body:
    """``fetch()`` until it returns ``expected`` bytes (None: any number), counted in ``stats``.

    A body that breaks off (``fetch`` raises :class:`BodyError`) or comes up short is
    fetched again, with full-jitter exponential backoff, up to :data:`READ_ATTEMPTS`
    times, and no more than the :func:`~cubecut.storage.s3_config.deadlines`' attempts;
    any other exception propagates.
    """
    attempts = min(READ_ATTEMPTS, deadlines().attempts)
    for attempt in range(attempts):
        last = attempt + 1 == attempts
        try:
            data = fetch()
        except BodyError as exc:
            if last:
                raise StorageError(f"{what}: the response body failed {attempts} times: {exc}") from None
            _note_retry("body", attempt)
            continue
        if expected is None or len(data) == expected:
            if stats is not None:
                stats.add(len(data))
            return data
        if last:
            raise StorageError(f"{what}: short read, {len(data)} of {expected} bytes in each of "
                               f"{attempts} attempts")
        _note_retry("short_read", attempt)
    raise AssertionError("unreachable: attempts >= 1")


def read_whole(fetch: Callable[[], tuple[bytes, str | None]], what: str,
               stats: ReadStats | None) -> tuple[bytes, str | None]:
    """``fetch()`` of a whole object and its ETag, retried as :func:`read_exactly` retries a
    body that breaks off and counted in ``stats``."""
    etag: list[str | None] = [None]

    def body() -> bytes:
        data, etag[0] = fetch()
        return data

    return read_exactly(body, None, what, stats), etag[0]
