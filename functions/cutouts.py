"""Bulk-cutout Lambda handlers for the cutouts state machine: one TPF per target, then one zip.

``cutout_handler`` input ``{cube, ra, dec, size: [nx, ny], job, index}`` → ``{key, name}``,
where ``job`` is the job's S3 prefix and ``cube`` a cube URL the API took from its catalog.
``zip_handler`` input ``{job, results}`` → ``{zip, members, failed}``; targets that could
not be cut carry ``error`` and are listed in ``errors.json`` inside the zip, which is
streamed to S3 one TPF at a time (:func:`cubecut.tesscut.service.store_zip`).

Cold start: importing this module loads neither astropy nor the cutout engine (the first
``cutout_handler`` invocation does) nor the X-Ray SDK (:func:`cubecut_app.tracing.traced`
builds the Tracer at the first invocation); benchmarks/imports.py measures it and
tests/test_packaging.py checks it.
"""
from __future__ import annotations

import json
from typing import Iterator

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from cubecut.storage import Location, get_bytes, put_bytes
from cubecut.tesscut.protocol import member_name
from cubecut.tesscut.service import Member, store_zip
from cubecut_app.tracing import traced

logger = Logger()
#: A zip with no members (just its end record), for a job without results.
EMPTY_ZIP = b"PK\x05\x06" + bytes(18)


@logger.inject_lambda_context(log_event=False)
@traced
def cutout_handler(event: dict, context: LambdaContext) -> dict:
    from astropy.coordinates import SkyCoord

    from cubecut.cutout.engine import cutout_files  # the engine (astropy WCS) loads with the first cutout

    coord = SkyCoord(float(event["ra"]), float(event["dec"]), unit="deg")
    (tpf,) = cutout_files(event["cube"], coord, tuple(int(v) for v in event["size"]))
    stem = Location.parse(event["cube"]).name.removesuffix("-cube.fits")
    name = member_name(stem, coord.ra.deg, coord.dec.deg, tpf.nx, tpf.ny)
    key = f"{event['job'].rstrip('/')}/tpfs/{int(event['index']):05d}-{name}"
    put_bytes(key, tpf.data, "application/fits")
    return {"key": key, "name": name}


def _zip_members(results: list[dict], failed: list[dict]) -> Iterator[Member]:
    """Each cut TPF read back from S3 (one at a time), then ``errors.json`` if any failed."""
    for result in results:
        if "key" in result:
            yield result["name"], get_bytes(result["key"])[0]
    if failed:
        yield "errors.json", json.dumps(failed, indent=1).encode()


@logger.inject_lambda_context(log_event=False)
@traced
def zip_handler(event: dict, context: LambdaContext) -> dict:
    results = event["results"]
    failed = [r for r in results if "error" in r]
    url = f"{event['job'].rstrip('/')}/cutouts.zip"
    if not store_zip(url, _zip_members(results, failed)).members:
        put_bytes(url, EMPTY_ZIP, "application/zip")
    logger.info("bulk cutouts zipped", extra={"members": len(results) - len(failed), "failed": len(failed)})
    return {"zip": url, "members": len(results) - len(failed), "failed": len(failed)}
