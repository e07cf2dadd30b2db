"""The index sidecar ``{cube}.index.json``: read it, check it, publish it bound to one cube version.

A sidecar describes exactly one version of its cube: ``CubeIndex.cube_etag`` is that
version's ETag (S3) or :func:`~cubecut.storage.file_etag` (local). A sidecar whose
``cube_etag`` is not the cube's current one is *stale* (a writer died between completing
the cube and publishing its index, or lost a race): readers then rebuild the index from
the cube itself, and :func:`publish_index` (run by ingest, update and ``cubecut janitor``)
replaces it. Publishing is a conditional PUT (``If-Match`` the sidecar version read, or
``If-None-Match: *``) and never puts back the index of a cube version that is no longer
current, so racing writers cannot leave an old index beside a new cube.
"""
from __future__ import annotations

import dataclasses
import logging
from typing import Callable

from ..errors import ConcurrentWriteError, ObjectNotFoundError
from ..storage import Location, ReadStats, get_bytes, head, put_bytes
from .index import INDEX_SUFFIX, CubeIndex

log = logging.getLogger(__name__)

#: Rounds of read-check-write before publishing gives up against other writers.
PUBLISH_ATTEMPTS = 8


def sidecar_location(cube: Location) -> Location:
    """Where the sidecar of ``cube`` lives."""
    return cube.with_suffix(INDEX_SUFFIX)


def parse_sidecar(data: bytes, where: str) -> CubeIndex | None:
    """The index in a sidecar's bytes, or None (logged) if it is unusable or inconsistent."""
    try:
        index = CubeIndex.from_json(data)
    except (ValueError, TypeError) as exc:
        log.warning("ignoring unusable cube index %s: %s", where, exc)
        return None
    columns = (index.tstart, index.tstop, index.barycorr, index.quality, index.ffi_files)
    if (index.data_offset + index.nrows * index.row_stride > index.cube_size
            or any(len(column) != index.nt for column in columns)):
        log.warning("ignoring cube index %s: inconsistent with itself", where)
        return None
    return index


def read_sidecar(cube: Location, stats: ReadStats | None = None, *,
                 get: Callable[[Location, ReadStats | None], tuple[bytes, str | None]] = get_bytes,
                 ) -> tuple[CubeIndex | None, str | None]:
    """The sidecar's index (None if absent or unusable) and the sidecar's own ETag (None if
    absent). ``get`` reads it (:func:`~cubecut.storage.get_bytes`, or a client of the same
    contract)."""
    location = sidecar_location(cube)
    try:
        data, etag = get(location, stats)
    except ObjectNotFoundError:
        return None, None
    return parse_sidecar(data, location.url), etag


def describes(index: CubeIndex | None, cube_etag: str | None, cube_size: int | None = None) -> bool:
    """True if ``index`` is the index of the cube version ``cube_etag`` (of ``cube_size`` bytes)."""
    if index is None or index.cube_etag is None or cube_etag is None:
        return False
    return index.cube_etag.strip('"') == cube_etag.strip('"') and cube_size in (None, index.cube_size)


def publish_index(cube: Location, index: CubeIndex) -> bool:
    """Make ``index`` (bound to the version ``index.cube_etag``) the cube's sidecar, with the
    cube's TPF header template cached in it (:attr:`CubeIndex.tpf_template`) so that a cold
    cutout reads the sidecar and the rows, and builds nothing else.

    Returns True when the sidecar describes that version afterwards, False when the cube
    is no longer that version (a newer writer replaced it and publishes its own index;
    nothing is written then). Raises ConcurrentWriteError if other writers keep changing
    the sidecar for :data:`PUBLISH_ATTEMPTS` rounds.
    """
    if index.cube_etag is None:
        raise ValueError("an index is published only bound to a cube version (cube_etag)")
    if index.tpf_template is None:
        # Imported here: the cutout package reads sidecars through this module.
        from ..cutout.tpf_template import template_state

        index = dataclasses.replace(index, tpf_template=template_state(index))
    for _ in range(PUBLISH_ATTEMPTS):
        current, sidecar_etag = read_sidecar(cube)
        if describes(current, index.cube_etag):
            return True
        try:
            now = head(cube)
        except ObjectNotFoundError:
            return False
        if not describes(index, now.etag, now.size):
            log.info("not publishing the index of %s version %s: the cube is now %s", cube.url,
                     index.cube_etag, now.etag)
            return False
        try:
            put_bytes(sidecar_location(cube), index.to_json(), "application/json",
                      if_match=sidecar_etag, if_none_match=sidecar_etag is None)
            return True
        except ConcurrentWriteError:
            continue  # another writer changed the sidecar meanwhile: look again
    raise ConcurrentWriteError(f"{sidecar_location(cube).url}: changed by other writers {PUBLISH_ATTEMPTS} "
                               "times while this index was being published")
