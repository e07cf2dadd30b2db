"""``cubecut demo``: the whole system end to end on one machine.

1. start the local stack (S3, S3 events, Step Functions, API);
2. synthesize a sector of FFIs with the real TESS WCS;
3. upload them and their manifest: the S3 event starts the ingest state machine, whose
   Distributed Map fans out one Lambda invocation per row block;
4. ask the HTTP API for a cutout around a bright variable star, download the TPF through its
   presigned URL, and save a quick-look PNG (first frame + light curve) beside it.
"""
from __future__ import annotations

import json
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, Callable

import numpy as np
from astropy.io import fits
from tqdm import tqdm

from cubecut.synth import make_sector, star_catalog

from .stack import LocalStack

SECTOR, CAMERA, CCD = 1, 1, 1
#: Science pixels start at FFI column 44 (the first columns are collateral).
FIRST_SCIENCE_COLUMN = 44


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def pick_target(shape: tuple[int, int], size: int) -> Any:
    """The brightest injected variable star (else the brightest star) whose cutout lies
    wholly on science pixels: its light curve is worth looking at."""
    stars = star_catalog(sector=SECTOR, camera=CAMERA, ccd=CCD, shape=shape, seed=0)
    margin = size / 2 + 2
    inside = ((stars["col"] > FIRST_SCIENCE_COLUMN + margin) & (stars["col"] < shape[1] - margin)
              & (stars["row"] > margin) & (stars["row"] < shape[0] - margin))
    candidates = stars[inside]
    if len(candidates) == 0:
        raise SystemExit("no star far enough from the edges: use a larger --shape")
    variable = candidates[candidates["variable"]]
    pool = variable if len(variable) else candidates
    return pool[int(np.argmax(pool["flux"]))]


def _count_blocks(bar: tqdm) -> Callable[[str, Callable], Callable]:
    """A LocalStack ``wrap`` that advances ``bar`` as the state machine's steps finish."""
    def wrap(name: str, handler: Callable) -> Callable:
        def run(event: Any, context: Any) -> Any:
            result = handler(event, context)
            if name == "Plan":
                bar.reset(total=result["nblocks"])
            elif name == "Block":
                bar.update(1)
            return result

        return run

    return wrap


def _post_json(url: str, payload: dict) -> dict:
    request = urllib.request.Request(url, data=json.dumps(payload).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.loads(response.read())


def run_demo(*, workdir: str = "cubecut-demo", frames: int = 120, shape: tuple[int, int] = (256, 256),
             size: int = 15) -> int:
    started = time.monotonic()
    work = Path(workdir).resolve()
    bar = tqdm(total=1, desc="ingest blocks", unit="block", file=sys.stderr, leave=True, position=0,
               disable=None)
    with LocalStack(wrap=_count_blocks(bar)) as stack:
        _say(f"local stack up: API {stack.api_url}, S3 {stack.s3.endpoint}, bucket {stack.bucket}")
        _say(f"synthesizing {frames} FFIs of sector {SECTOR} camera {CAMERA} CCD {CCD} ({shape[0]}x{shape[1]} px)")
        ffis = make_sector(work / "ffis", sector=SECTOR, camera=CAMERA, ccd=CCD, frames=frames, shape=shape,
                           seed=0, progress=True)
        with tqdm(total=len(ffis), desc="upload FFIs", unit="ffi", file=sys.stderr) as upload:
            key = stack.submit_ingest(ffis, f"tess-s{SECTOR:04d}-{CAMERA}-{CCD}", on_file=lambda: upload.update(1))
        _say(f"uploaded s3://{stack.bucket}/{key}: the S3 event starts the ingest state machine")
        execution = stack.wait_for_execution(timeout=900)
        bar.close()
        if execution.status != "SUCCEEDED":
            _say(f"ingest failed: {execution.error}: {execution.cause}")
            return 1
        cube = execution.output
        _say(f"cube ready: {cube['cube']} ({cube['size'] / 1e6:.1f} MB, "
             f"{sum(n for arn, n in execution.invocations.items() if 'block' in arn)} block invocations, "
             f"max {max(execution.max_concurrency.values())} at once)")

        star = pick_target(shape, size)
        answer = _post_json(f"{stack.api_url}/v1/cutouts", {
            "sector": SECTOR, "camera": CAMERA, "ccd": CCD, "ra": float(star["ra"]), "dec": float(star["dec"]),
            "size": size})
        tpf_path = work / answer["name"]
        with urllib.request.urlopen(answer["url"], timeout=120) as response:
            tpf_path.write_bytes(response.read())
        png_path = tpf_path.with_suffix(".png")
        from cubecut.images import quicklook_png

        with fits.open(tpf_path) as hdul:
            quicklook_png(hdul, png_path)
        reads = answer["reads"]
        _say(f"cutout {size}x{size} around a star (ra {star['ra']:.5f}, dec {star['dec']:.5f}): "
             f"{reads['requests']} S3 requests, {reads['bytes'] / 1e3:.0f} kB read of a "
             f"{cube['size'] / 1e6:.0f} MB cube")
        _say(f"done in {time.monotonic() - started:.0f} s")
    print(f"TPF: {tpf_path}")
    print(f"PNG: {png_path}")
    return 0
