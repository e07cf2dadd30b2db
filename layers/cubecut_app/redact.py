"""Keep credentials out of logs: presigned-URL query strings and AWS secrets are masked.

A presigned URL carries ``X-Amz-Signature``, ``X-Amz-Credential`` (the access key ID) and,
with temporary credentials (every Lambda), ``X-Amz-Security-Token``: whoever holds it can
read the object, and the token is a credential of the function's role. The API never logs
URLs, events or headers on purpose; :class:`RedactingFilter` is the backstop for anything
else (a library's debug message, an exception text) that would carry one.
"""
from __future__ import annotations

import logging
import re

#: ``X-Amz-Signature=...`` and friends, in a query string, a header or JSON text.
_SECRET_VALUE = re.compile(r"(?i)(X-Amz-(?:Signature|Credential|Security-Token)|AWSAccessKeyId|Signature"
                           r"|x-amz-security-token|Authorization)([\"']?\s*[=:]\s*[\"']?)[^&\s\"',;}]+")
MASK = "REDACTED"


def redact(text: str) -> str:
    """``text`` with the value of every credential-bearing parameter or header masked."""
    return _SECRET_VALUE.sub(lambda m: f"{m.group(1)}{m.group(2)}{MASK}", text)


class RedactingFilter(logging.Filter):
    """Masks credentials in a record's message, arguments and extra fields (keeps it)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if record.args:
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args) \
                if isinstance(record.args, tuple) else record.args
        for key, value in list(vars(record).items()):
            if isinstance(value, str) and key not in ("msg", "name", "levelname", "pathname", "filename", "module",
                                                         "funcName", "processName", "threadName"):
                setattr(record, key, redact(value))
        return True
