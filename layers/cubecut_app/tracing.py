"""The Lambda handlers' powertools Tracer, built at the first invocation instead of at import.

powertools' ``Tracer()`` imports ``aws_xray_sdk``, whose global recorder builds an X-Ray
client at import (0.14 s with tracing disabled, 0.18 s enabled as in Lambda, measured in
benchmarks/results/imports.md). A handler decorated with :func:`traced` builds the one
Tracer of the process (:func:`tracer`) when it is first invoked, before that invocation's
first AWS call, so its botocore patches still see every call; importing the handler module
loads no X-Ray SDK. Every handler module in functions/ uses it (tests/stack/test_packaging.py).
"""
from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, Callable, TypeVar

if TYPE_CHECKING:
    from aws_lambda_powertools import Tracer

Handler = TypeVar("Handler", bound=Callable[..., Any])


@functools.cache
def tracer() -> "Tracer":
    """The process's powertools Tracer, built on first use."""
    from aws_lambda_powertools import Tracer

    return Tracer()


def traced(handler: Handler | None = None, *, capture_response: bool = True) -> Any:
    """``Tracer().capture_lambda_handler`` for ``handler``, with the Tracer built and the
    wrapping done at the first invocation. ``capture_response=False`` keeps the handler's
    answer out of the trace (the API's answers hold presigned URLs). Use as ``@traced`` or
    ``@traced(capture_response=False)``."""

    def wrap(function: Handler) -> Handler:
        @functools.cache
        def capturing() -> Callable[..., Any]:
            return tracer().capture_lambda_handler(function, capture_response=capture_response)

        @functools.wraps(function)
        def invoke(event: Any, context: Any) -> Any:
            return capturing()(event, context)

        return invoke  # type: ignore[return-value]

    return wrap(handler) if handler is not None else wrap
