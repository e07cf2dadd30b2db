"""The HTTP API's authorization as the local gateway applies it (template.yaml RequireAuth).

* ``none``: every request goes through, with no ``requestContext.authorizer``.
* ``iam``: a request needs a SigV4 ``Authorization`` header (``AWS4-HMAC-SHA256
  Credential=<access key>/...``); without one the answer is 403 ``{"message":"Forbidden"}``
  (an HTTP API's answer). The event gets ``authorizer.iam`` with the caller's access key
  and ``userArn`` ``arn:aws:iam::<local account>:user/<access key>``. Locally the
  signature itself is NOT verified (moto holds no IAM users): the form is, and the access
  key names the principal, so tests tell callers apart by their keys.
* ``jwt``: a request needs ``Authorization: Bearer <JWT>`` whose claims have ``sub`` and,
  when configured, the ``iss`` and ``aud`` of the template's JwtIssuer/JwtAudience; else
  401 ``{"message":"Unauthorized"}``. The event gets ``authorizer.jwt`` {claims, scopes}.
  Locally the token's signature is NOT verified (no issuer's keys to fetch offline).
"""
from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from typing import Any, Mapping

from .lambda_context import LOCAL_ACCOUNT_ID

#: The modes of template.yaml's RequireAuth.
MODES = ("none", "iam", "jwt")
FORBIDDEN = (403, {"message": "Forbidden"})
UNAUTHORIZED = (401, {"message": "Unauthorized"})
_SIGV4 = re.compile(r"^AWS4-HMAC-SHA256 Credential=([A-Za-z0-9]{4,128})/\d{8}/[\w-]+/[\w-]+/aws4_request,")


@dataclass(frozen=True)
class Authorizer:
    """One RequireAuth mode (``mode``), with the JWT issuer and audience it expects (empty: any)."""

    mode: str = "none"
    issuer: str = ""
    audience: str = ""

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"RequireAuth is one of {', '.join(MODES)}, got {self.mode!r}")

    def authorize(self, headers: Mapping[str, str]) -> tuple[dict[str, Any] | None, tuple[int, dict] | None]:
        """``(requestContext.authorizer or None, None)`` for a request the gateway passes on,
        ``(None, (status, body))`` for one it refuses. ``headers``: lower-cased names."""
        if self.mode == "none":
            return None, None
        value = headers.get("authorization", "")
        if self.mode == "iam":
            match = _SIGV4.match(value)
            if match is None:
                return None, FORBIDDEN
            key = match.group(1)
            return {"iam": {"accessKey": key, "accountId": LOCAL_ACCOUNT_ID, "callerId": key, "cognitoIdentity": None,
                            "principalOrgId": None, "userArn": f"arn:aws:iam::{LOCAL_ACCOUNT_ID}:user/{key}",
                            "userId": key}}, None
        claims = _jwt_claims(value)
        if claims is None or not claims.get("sub") or (self.issuer and claims.get("iss") != self.issuer) \
                or (self.audience and self.audience not in _audiences(claims.get("aud"))):
            return None, UNAUTHORIZED
        return {"jwt": {"claims": {k: v if isinstance(v, str) else json.dumps(v) for k, v in claims.items()},
                        "scopes": None}}, None


def _jwt_claims(value: str) -> dict[str, Any] | None:
    """The claims of ``Bearer <header>.<claims>.<signature>``, or None if it is not one."""
    scheme, _, token = value.partition(" ")
    parts = token.strip().split(".")
    if scheme.lower() != "bearer" or len(parts) != 3:
        return None
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (binascii.Error, ValueError):
        return None
    return claims if isinstance(claims, dict) else None


def _audiences(aud: object) -> list[str]:
    return [aud] if isinstance(aud, str) else [str(a) for a in aud] if isinstance(aud, list) else []
