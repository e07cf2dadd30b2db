"""Bulk-cutout Lambda handlers for the cutouts state machine: one TPF per target, then one zip.

``cutout_handler`` input ``{cube, ra, dec, size: [nx, ny], job, index}`` → ``{key, name}``,
where ``job`` is the job's S3 prefix and ``cube`` a cube URL the API took from its catalog.
``zip_handler`` input ``{job, results}`` → ``{zip, members, failed}``; targets that could
not be cut carry ``error`` and are listed in ``errors.json`` inside the zip.
"""
from __future__ import annotations

import io
import json
import zipfile

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext
from astropy.coordinates import SkyCoord

from cubecut import cutout
from cubecut.tesscut.service import hdul_bytes
from cubecut.tesscut.protocol import member_name
from cubecut.storage import Location, get_bytes, put_bytes

logger = Logger()
tracer = Tracer()


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler
def cutout_handler(event: dict, context: LambdaContext) -> dict:
    coord = SkyCoord(float(event["ra"]), float(event["dec"]), unit="deg")
    (hdul,) = cutout(event["cube"], coord, tuple(int(v) for v in event["size"]))
    ny, nx = hdul["APERTURE"].data.shape
    stem = Location.parse(event["cube"]).name.removesuffix("-cube.fits")
    name = member_name(stem, coord.ra.deg, coord.dec.deg, nx, ny)
    key = f"{event['job'].rstrip('/')}/tpfs/{int(event['index']):05d}-{name}"
    put_bytes(key, hdul_bytes(hdul), "application/fits")
    return {"key": key, "name": name}


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler
def zip_handler(event: dict, context: LambdaContext) -> dict:
    results = event["results"]
    failed = [r for r in results if "error" in r]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        for result in results:
            if "key" in result:
                archive.writestr(result["name"], get_bytes(result["key"])[0])
        if failed:
            archive.writestr("errors.json", json.dumps(failed, indent=1))
    url = f"{event['job'].rstrip('/')}/cutouts.zip"
    put_bytes(url, buf.getvalue(), "application/zip")
    logger.info("bulk cutouts zipped", extra={"members": len(results) - len(failed), "failed": len(failed)})
    return {"zip": url, "members": len(results) - len(failed), "failed": len(failed)}
