"""Tar shards: one uncompressed tar of a tile's TPFs instead of one object per TPF.

A job with ``shards`` writes each tile's TPFs as the members of one tar,
``{out}/shards/{cube stem}/{tile}-{digest}.tar``, and after it the shard's index
``{shard}.json`` (``{"shard": url, "members": [name, ...]}``): an index exists only beside a
complete shard, so a re-run skips exactly the targets whose shard is complete. Member names
are ``{cube stem}/{astrocut file name}``, the path the TPF has under ``tpfs/`` without
shards; ``digest`` is a hash of the tile's member names, so that shard names are
deterministic, and a re-run that cuts different targets writes new shards instead of
overwriting the shards of earlier runs.

The tar is POSIX (pax) with fixed metadata (mode 0644, mtime 0, no owner), read by
``tarfile``, GNU/BSD tar and astropy (``fits.open(tar.extractfile(member))``).
"""
from __future__ import annotations

import hashlib
import json
import tarfile
from typing import Sequence

from ..storage import Location, get_bytes, list_objects, put_bytes
from ..storage import put_bytes_fast as put_output

#: Tar blocks are 512 bytes; an archive ends with two zero blocks.
BLOCK = 512
INDEX_SUFFIX = ".json"


def shard_url(out: str, stem: str, tile: str, members: Sequence[str]) -> str:
    """The deterministic URL of the shard holding ``members`` (names in tile order)."""
    digest = hashlib.sha256("\n".join(members).encode()).hexdigest()[:12]
    return f"{out.rstrip('/')}/shards/{stem}/{tile}-{digest}.tar"


class TarShard:
    """A tar archive built in memory, one member at a time (the TPFs of one tile)."""

    def __init__(self) -> None:
        self._data = bytearray()
        self.members: list[str] = []

    def add(self, name: str, data: bytes | bytearray) -> None:
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.mtime, info.type = len(data), 0o644, 0, tarfile.REGTYPE
        self._data += info.tobuf(format=tarfile.PAX_FORMAT, encoding="utf-8", errors="strict")
        self._data += data
        self._data += bytes(-len(data) % BLOCK)
        self.members.append(name)

    @property
    def size(self) -> int:
        """Bytes of the archive so far (members and their headers)."""
        return len(self._data)

    def finish(self) -> bytearray:
        """The archive's bytes (the end-of-archive blocks appended); the shard is then done."""
        self._data += bytes(2 * BLOCK)
        return self._data


def write_shard(url: str, shard: TarShard) -> None:
    """Upload the shard (locally with ``O_DIRECT``, :mod:`.direct`), then its index (which
    marks it complete)."""
    put_output(url, shard.finish(), "application/x-tar")
    put_bytes(url + INDEX_SUFFIX, json.dumps({"shard": url, "members": shard.members}).encode(),
              "application/json")


def shard_members(out: str) -> dict[str, str]:
    """Member name -> shard URL, for every complete shard under ``out``."""
    prefix = Location.parse(out.rstrip("/") + "/shards/")
    done: dict[str, str] = {}
    for location, _ in list_objects(prefix):
        if location.key.endswith(".tar" + INDEX_SUFFIX):
            index = json.loads(get_bytes(location)[0])
            done.update(dict.fromkeys(index["members"], index["shard"]))
    return done
