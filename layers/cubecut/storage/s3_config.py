"""What both S3 clients (botocore, obstore) take from the standard AWS environment: the
endpoint, the region, and whether requests are signed."""
from __future__ import annotations

import functools
import os

#: Connections kept per client; threaded readers and block workers share one client.
MAX_POOL_CONNECTIONS = 128

#: Environment variables that can change where botocore finds credentials.
_CREDENTIAL_ENVIRONMENT = (
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_DEFAULT_PROFILE",
    "AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_EC2_METADATA_DISABLED", "HOME",
)


def endpoint() -> str | None:
    """The S3 endpoint URL (``AWS_ENDPOINT_URL_S3``, else ``AWS_ENDPOINT_URL``); None: AWS."""
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None


def region() -> str | None:
    """``AWS_REGION``, else ``AWS_DEFAULT_REGION``; None: the profile's, else us-east-1."""
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")


@functools.lru_cache(maxsize=8)
def _credentials_configured(_environment: tuple[str | None, ...]) -> bool:
    """Whether botocore's credential chain finds any credentials (cached per environment)."""
    import boto3.session

    return boto3.session.Session().get_credentials() is not None


def anonymous(anon: bool | None = None) -> bool:
    """Whether S3 requests are unsigned: ``anon`` if given, else True when ``CUBECUT_ANON``
    is set (to anything but ``0``/``false``/``no``/empty) or no AWS credentials are configured."""
    if anon is not None:
        return anon
    if os.environ.get("CUBECUT_ANON", "").strip().lower() not in {"", "0", "false", "no"}:
        return True
    return not _credentials_configured(tuple(os.environ.get(k) for k in _CREDENTIAL_ENVIRONMENT))
