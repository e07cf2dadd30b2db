"""Who is calling: the identity API Gateway's authorizer established for a request.

An HTTP API (payload 2.0) puts it under ``requestContext.authorizer``: ``iam`` for SigV4
callers (RequireAuth ``iam``; the principal's ``userArn``) or ``jwt`` for bearer tokens
(RequireAuth ``jwt``; the token's ``iss`` and ``sub`` claims). With RequireAuth ``none``
there is none: the caller is anonymous (None).
"""
from __future__ import annotations

from typing import Any, Mapping


def caller(event: Mapping[str, Any]) -> str | None:
    """``iam:<user ARN>``, ``jwt:<issuer> <subject>``, or None for an anonymous caller."""
    authorizer = (event.get("requestContext") or {}).get("authorizer") or {}
    iam = authorizer.get("iam") or {}
    if iam.get("userArn"):
        return f"iam:{iam['userArn']}"
    claims = (authorizer.get("jwt") or {}).get("claims") or {}
    if claims.get("sub"):
        return f"jwt:{claims.get('iss', '')} {claims['sub']}"
    return None
