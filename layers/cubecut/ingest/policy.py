"""Where an ingest may read FFIs and write its cube: manifests name data, never places.

The CLI ingests what its user can read (local paths, globs, ``s3://``, other fsspec URLs):
:data:`LOCAL`. A deployment's handlers (an S3-event manifest, a Plan request) use
:meth:`InputPolicy.from_settings` (their environment), which allows only

* FFIs that are ``s3://`` objects under the deployment's ingest prefix
  (``s3://$CUBECUT_BUCKET/$CUBECUT_INGEST_PREFIX``) or under an operator-allowed prefix
  (``$CUBECUT_EXTERNAL_FFIS``: comma-separated S3 object ARNs or ``s3://`` prefixes, e.g.
  ``arn:aws:s3:::stpubdata/tess/public/ffi/*``; template.yaml feeds it the
  ``ExternalFfiObjects`` parameter that also grants the read);
* a cube under ``s3://$CUBECUT_BUCKET/$CUBECUT_CUBE_PREFIX``: the prefix itself (the cube
  gets TESScut's name from the FFIs' sector/camera/CCD) or a name directly under it, which
  must then be that name (checked after the plan by :meth:`InputPolicy.check_planned`,
  which undoes the plan if not).

Refused, with :class:`~cubecut.errors.ForbiddenInputError` and before anything is read:
absolute and relative local paths, ``file://``, ``http(s)://`` and every scheme but
``s3://``, keys with ``.``/``..``/empty segments, control characters, ``?`` or ``#``.
Messages quote the offending name (at most :data:`QUOTE_CHARS` characters), never content.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from ..errors import ForbiddenInputError

#: Longest part of a refused name quoted in an error message.
QUOTE_CHARS = 120
#: ``s3://bucket/key`` as the strict policy accepts it (S3 bucket naming rules; no query or fragment).
_S3_URL = re.compile(r"s3://([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])/([^?#\\\x00-\x1f\x7f]+)")
#: An S3 object ARN with an optional trailing ``*``: ``arn:aws:s3:::bucket/prefix*``.
_S3_ARN = re.compile(r"arn:[\w-]+:s3:::([^/]+)/?(.*?)\*?")


def quote(name: str) -> str:
    """``name`` for an error message: repr'd, cut to :data:`QUOTE_CHARS` characters."""
    return repr(name if len(name) <= QUOTE_CHARS else name[:QUOTE_CHARS] + "...")


def _prefix_url(entry: str) -> str:
    """An allow-list entry (S3 object ARN or ``s3://`` prefix) as an ``s3://bucket/prefix`` URL."""
    entry = entry.strip()
    arn = _S3_ARN.fullmatch(entry)
    if arn:
        return f"s3://{arn.group(1)}/{arn.group(2)}"
    return entry.rstrip("*")


@dataclass(frozen=True)
class InputPolicy:
    """What an ingest may name. ``allow_local``: anything readable (the CLI); otherwise FFIs
    must be ``s3://`` URLs under one of ``ffi_prefixes`` and the cube under ``cube_prefix``
    (``s3://bucket/prefix/`` URLs)."""

    allow_local: bool = True
    ffi_prefixes: tuple[str, ...] = ()
    cube_prefix: str = ""

    @classmethod
    def deployment(cls, bucket: str, ingest_prefix: str, cube_prefix: str,
                   external: tuple[str, ...] = ()) -> "InputPolicy":
        """The strict policy of the deployment whose data bucket is ``bucket``."""
        own = f"s3://{bucket}/{ingest_prefix}"
        return cls(False, (own, *(_prefix_url(e) for e in external if e.strip())), f"s3://{bucket}/{cube_prefix}")

    @classmethod
    def from_settings(cls, settings: Mapping[str, str]) -> "InputPolicy":
        """The strict policy from ``settings`` (the handlers' environment): ``CUBECUT_BUCKET``,
        ``CUBECUT_INGEST_PREFIX`` (``ingest/``), ``CUBECUT_CUBE_PREFIX`` (``cubes/``) and
        ``CUBECUT_EXTERNAL_FFIS`` (comma-separated)."""
        bucket = settings.get("CUBECUT_BUCKET", "")
        if not bucket:
            raise ForbiddenInputError("CUBECUT_BUCKET is not set: this deployment allows no ingest inputs")
        external = tuple(settings.get("CUBECUT_EXTERNAL_FFIS", "").split(","))
        return cls.deployment(bucket, settings.get("CUBECUT_INGEST_PREFIX", "ingest/"),
                              settings.get("CUBECUT_CUBE_PREFIX", "cubes/"), external)

    def check_ffi(self, url: str) -> str:
        """``url`` if this policy lets an ingest read it (an FFI or a prefix of FFIs)."""
        if self.allow_local:
            return url
        key = _strict_s3(url, "an FFI")
        if not any(key.startswith(prefix) for prefix in self.ffi_prefixes):
            raise ForbiddenInputError(f"FFI {quote(url)} is outside the allowed places: "
                                      f"{', '.join(self.ffi_prefixes)}")
        return url

    def check_cube(self, url: str) -> str:
        """``url`` if an ingest may write (or update) the cube there: the cube prefix, or a
        ``*-cube.fits`` name directly under it."""
        if self.allow_local:
            return url
        checked = _strict_s3(url, "the cube")
        name = checked[len(self.cube_prefix):]
        if not checked.startswith(self.cube_prefix) or "/" in name or (name and not name.endswith("-cube.fits")):
            raise ForbiddenInputError(f"cube {quote(url)} is not a cube name under {self.cube_prefix} "
                                      f"(the cube is named tess-sSSSS-C-C-cube.fits, or tica-..., from its FFIs)")
        return url

    def plan_target(self, requested: str) -> str:
        """Where to plan a new cube asked for at ``requested`` (checked by :meth:`check_cube`):
        as asked locally; the cube prefix under a strict policy, so the plan names the cube."""
        return requested if self.allow_local else self.cube_prefix

    def check_planned(self, requested: str, planned: str, name: str) -> None:
        """Raise unless the cube a plan chose (``planned``) is ``{cube prefix}{name}``, ``name``
        being TESScut's name from the FFIs' product/sector/camera/CCD, and is what was
        ``requested`` (that name, or the cube prefix)."""
        if self.allow_local:
            return
        if planned != self.cube_prefix + name or requested not in (self.cube_prefix, planned):
            raise ForbiddenInputError(f"cube {quote(requested)} does not match its FFIs: their cube is "
                                      f"{quote(self.cube_prefix + name)}")


def _strict_s3(url: str, what: str) -> str:
    """``url`` if it is a plain ``s3://bucket/key`` with no ``.``/``..``/empty key segments."""
    match = _S3_URL.fullmatch(url)
    if match is None:
        raise ForbiddenInputError(f"{what} {quote(url)} is not an s3:// object of an allowed bucket: "
                                  "local paths and other schemes are not read by this deployment")
    if any(part in ("", ".", "..") for part in match.group(2).split("/")[:-1]) or match.group(2) in (".", ".."):
        raise ForbiddenInputError(f"{what} {quote(url)} has '.', '..' or empty segments in its key")
    return url


#: The CLI's policy: whatever its user can read and write.
LOCAL = InputPolicy()
