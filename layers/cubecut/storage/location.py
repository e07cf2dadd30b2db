"""Where an object is: a parsed URL (``s3://bucket/key``, a local path, any fsspec URL)."""
from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

#: A URL scheme (RFC 3986) followed by ``://``: what tells a URL from a local path.
SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


@dataclass(frozen=True)
class Location:
    """A parsed object location.

    ``scheme`` is ``"s3"``, ``"file"`` (a local path, absolute, in ``key``) or another fsspec
    protocol (``"https"``, ``"memory"`` ...); ``bucket`` is the S3 bucket or the URL's host.
    ``anon`` says how S3 requests are made: True = unsigned, False = signed, None = unsigned
    only when no credentials are configured (and ``CUBECUT_ANON`` is not set); it does not
    take part in comparisons.
    """

    scheme: str
    bucket: str
    key: str
    anon: bool | None = field(default=None, compare=False)

    @classmethod
    def parse(cls, url: str | os.PathLike[str], *, anon: bool | None = None) -> "Location":
        text = os.fspath(url)
        scheme = SCHEME.match(text)
        if scheme is None or scheme.group(1).lower() == "file":
            if text.startswith("file://"):
                text = urlparse(text).path
            return cls("file", "", str(Path(text).expanduser().resolve()), anon)
        name = scheme.group(1).lower()
        host, _, key = text[scheme.end():].partition("/")
        if name == "s3":
            if not host:
                raise ValueError(f"S3 URL without a bucket: {text!r}")
            key = urlparse(text).path.lstrip("/")
        return cls(name, host, key, anon)

    @classmethod
    def of(cls, url: "str | os.PathLike[str] | Location") -> "Location":
        """``url`` itself if it is a Location, else :meth:`parse` of it."""
        return url if isinstance(url, Location) else cls.parse(url)

    @property
    def is_s3(self) -> bool:
        return self.scheme == "s3"

    @property
    def is_local(self) -> bool:
        """A path on this machine's file system."""
        return self.scheme == "file"

    @property
    def url(self) -> str:
        return self.key if self.is_local else f"{self.scheme}://{self.bucket}/{self.key}"

    @property
    def name(self) -> str:
        """The last path component (the file name)."""
        return self.key.rstrip("/").rsplit("/", 1)[-1]

    def with_suffix(self, suffix: str) -> "Location":
        """The location with ``suffix`` appended to the key (e.g. ``.index.json``)."""
        return dataclasses.replace(self, key=self.key + suffix)

    def child(self, name: str) -> "Location":
        """The object ``name`` in this folder/prefix (a trailing ``/`` or none)."""
        folder = self.key.rstrip("/")
        return dataclasses.replace(self, key=f"{folder}/{name}" if folder or self.is_local else name)

    def sibling(self, name: str) -> "Location":
        """A location in the same folder/prefix with another name."""
        head = self.key.rsplit("/", 1)[0] + "/" if "/" in self.key else ""
        return dataclasses.replace(self, key=head + name)

    def __str__(self) -> str:
        return self.url
