"""S3 through botocore: the pooled client, ranged reads pinned by ``If-Match``, whole GETs.

The client honours the standard AWS environment (:mod:`cubecut.storage.s3_config`), so a
local S3-compatible server and AWS are one code path; its requests are unsigned when
:func:`~cubecut.storage.s3_config.anonymous` says so, as public buckets such as MAST's
``stpubdata`` accept, and time out and retry as the
:func:`~cubecut.storage.deadlines.deadlines` profile says.
"""
from __future__ import annotations

import functools
import os
from typing import TYPE_CHECKING, Any

from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import ClientError

from ..errors import StaleObjectError
from .base import ReadStats
from .deadlines import BATCH, S3Deadlines, deadlines
from .location import Location
from .retry import BodyError, read_exactly
from .s3_config import MAX_POOL_CONNECTIONS, anonymous, endpoint, region
from .s3_failures import BODY_ERRORS, error_code, s3_read_errors

if TYPE_CHECKING:  # boto3 itself (sessions, s3transfer) loads with the first client
    import boto3


@functools.lru_cache(maxsize=16)
def _client(endpoint: str | None, region: str | None, unsigned: bool = False,
            limits: S3Deadlines = BATCH) -> "boto3.client":
    config = Config(
        max_pool_connections=MAX_POOL_CONNECTIONS,
        retries={"total_max_attempts": limits.attempts, "mode": "standard"},
        connect_timeout=limits.connect_timeout,
        read_timeout=limits.read_timeout,
        tcp_keepalive=True,
        s3={"addressing_style": "path"} if endpoint else None,
        signature_version=UNSIGNED if unsigned else "s3v4",
    )
    import boto3.session

    session = boto3.session.Session()
    return session.client("s3", endpoint_url=endpoint, region_name=region or session.region_name
                          or "us-east-1", config=config)


# A forked child opens connections of its own: sockets shared with the parent would mix
# both processes' responses.
os.register_at_fork(after_in_child=_client.cache_clear)


def s3_client(anon: bool | None = None):
    """A thread-safe, connection-pooled S3 client configured from the environment.

    Its requests are unsigned when :func:`anonymous` says so for ``anon``, and time out
    and retry as :func:`deadlines` says.
    """
    return _client(endpoint(), region(), anonymous(anon), deadlines())


def clear_clients() -> None:
    """Forget the cached clients (the next call meets the environment's credentials anew)."""
    _client.cache_clear()


class S3Source:
    """An S3 object read by ranged GETs; the size and ETag come from a HEAD unless known.

    When ``size``/``etag`` are known (e.g. from an index) no HEAD request is made. Every
    ranged GET carries ``If-Match`` once the ETag is known, so a reader never mixes bytes
    from two versions of an object: a replaced object raises :class:`StaleObjectError`.
    """

    def __init__(self, location: Location, stats: ReadStats | None = None, *,
                 size: int | None = None, etag: str | None = None) -> None:
        self.location = location
        self.stats = stats if stats is not None else ReadStats()
        self._client = s3_client(location.anon)
        if size is None:
            with s3_read_errors(location):
                head = self._client.head_object(Bucket=location.bucket, Key=location.key)
            self.stats.add(0)
            size, etag = head["ContentLength"], head.get("ETag")
        self.size: int = size
        self.etag = etag

    def read(self, start: int, stop: int) -> bytes:
        if stop <= start:
            return b""
        kwargs = {"Bucket": self.location.bucket, "Key": self.location.key,
                  "Range": f"bytes={start}-{stop - 1}"}
        if self.etag:
            kwargs["IfMatch"] = self.etag
        # Within the object's known size S3 returns exactly the bytes asked for; fewer means
        # the transfer broke (a reader past the end gets what there is and checks itself).
        expected = max(0, min(stop, self.size) - start)

        def fetch() -> bytes:
            return _body(self._client, self.location, kwargs)[0]

        data = read_exactly(fetch, expected, f"{self.location.url} bytes [{start}, {stop})")
        self.stats.add(len(data))
        return data


def get_object(location: Location, stats: ReadStats | None) -> tuple[bytes, str | None]:
    """The whole object and its ETag, in one GET (retried whole if its body breaks off)."""
    etag: list[str | None] = [None]

    def fetch() -> bytes:
        data, etag[0] = _body(s3_client(location.anon), location, {"Bucket": location.bucket, "Key": location.key})
        return data  # botocore checks the length against Content-Length

    data = read_exactly(fetch, None, location.url)
    if stats is not None:
        stats.add(len(data))
    return data, etag[0]


def _body(client: Any, location: Location, kwargs: dict[str, str]) -> tuple[bytes, str | None]:
    """One GetObject: the body and the ETag. A failed ``IfMatch`` is StaleObjectError,
    other failures are named errors; a body that breaks off is :class:`BodyError`."""
    try:
        with s3_read_errors(location):
            try:
                response = client.get_object(**kwargs)
            except ClientError as exc:
                if kwargs.get("IfMatch") and error_code(exc) in {"PreconditionFailed", "412"}:
                    raise StaleObjectError(f"{location.url} changed while being read") from None
                raise
        return response["Body"].read(), response.get("ETag")
    except BODY_ERRORS as exc:  # the body (of an answer, or of an error answer) broke off
        raise BodyError(exc) from None
