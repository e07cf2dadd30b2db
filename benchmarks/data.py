"""Benchmark data: synthetic FFIs and cubes, cached under benchmarks/work/ (git-ignored).

Cubes keep the real FFI row stride (all 2136 columns) and a realistic time depth, but
only the first ``rows`` rows of the CCD, to fit the disk and time of one machine:

* ``s0001``: sector 1 (30-min cadence), 1,000 frames x 256 rows x 2136 cols (4.4 GB cube)
* ``s0030``: sector 30 (10-min cadence), 3,500 frames x 128 rows x 2136 cols (7.7 GB cube)
* ``full``: 200 full-size 2078 x 2136 FFIs of sector 1 (7.1 GB) for the ingest race.
* ``s0056``: sector 56 (200-s cadence), 11,700 frames x 40 rows x 300 cols (1.1 GB cube):
  the time depth of today's sectors, small in space; its FFIs are ``cubecut.synth.sparse``'s
  (real headers, pixels from a formula: no scene is rendered), for the index sidecar
  (sidecar.py) and bulk cutouts (bulk.py ``--cadence 200-s``) at 11,700 frames.

``--quick`` uses much smaller sets (names suffixed ``-q``).
"""
from __future__ import annotations

import json
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
WORK = HERE / "work"
COLS = 2136


@dataclass(frozen=True)
class CubeSpec:
    name: str
    sector: int
    frames: int
    rows: int
    seed: int = 7
    cols: int = COLS
    sparse: bool = False  # pixels from cubecut.synth.sparse's formula instead of a rendered sky

    @property
    def cube_name(self) -> str:
        return f"tess-s{self.sector:04d}-1-1-cube.fits"

    @property
    def ffi_dir(self) -> Path:
        return WORK / "ffis" / self.name

    @property
    def cube_path(self) -> Path:
        return WORK / "cubes" / self.name / self.cube_name

    @property
    def nbytes(self) -> int:
        return self.frames * self.rows * self.cols * 8


FULL = {
    "s0001": CubeSpec("s0001", 1, 1000, 256),
    "s0030": CubeSpec("s0030", 30, 3500, 128),
}
QUICK = {
    "s0001": CubeSpec("s0001-q", 1, 120, 64),
    "s0030": CubeSpec("s0030-q", 30, 300, 32),
}
#: A 200-s cadence sector's time depth (11,700 frames), 40 rows x 300 columns.
CADENCE_200S = CubeSpec("s0056", 56, 11_700, 40, cols=300, sparse=True)
INGEST_FULL = CubeSpec("full200", 1, 200, 2078)
INGEST_QUICK = CubeSpec("full20", 1, 20, 2078)


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def ffis(spec: CubeSpec) -> list[Path]:
    """The spec's FFIs (generated once; a marker file records completion)."""
    marker = spec.ffi_dir / ".done.json"
    if marker.exists():
        return [spec.ffi_dir / n for n in json.loads(marker.read_text())["files"]]
    from cubecut.synth import make_sector
    from cubecut.synth.sparse import sparse_sector, write_sparse_sector

    shape = None if spec.rows >= 2078 else (spec.rows, spec.cols)
    log(f"generating {spec.frames} FFIs {spec.name} ({spec.rows} x {spec.cols}) ...")
    t0 = time.perf_counter()
    paths: list[Path] = []
    chunk = 250
    for first in range(0, spec.frames, chunk):  # resumable in chunks
        n = min(chunk, spec.frames - first)
        part = spec.ffi_dir / f".chunk{first:05d}.json"
        if part.exists():
            paths += [spec.ffi_dir / p for p in json.loads(part.read_text())]
            continue
        if spec.sparse:
            made = sparse_sector(sector=spec.sector, camera=1, ccd=1, frames=n, first_frame=first, shape=shape)
            got = write_sparse_sector(spec.ffi_dir, made, filled=(0, spec.rows), first_frame=first)
        else:
            got = make_sector(spec.ffi_dir, sector=spec.sector, camera=1, ccd=1, frames=n, shape=shape,
                              seed=spec.seed, first_frame=first)
        part.write_text(json.dumps([p.name for p in got]))
        paths += got
    marker.write_text(json.dumps({"files": [p.name for p in paths], "seconds": time.perf_counter() - t0}))
    log(f"  {spec.name}: {len(paths)} FFIs in {time.perf_counter() - t0:.0f} s")
    return paths


def cube(spec: CubeSpec) -> Path:
    """The spec's cube (built once with cubecut ingest, local disk, 2 workers)."""
    path = spec.cube_path
    marker = path.with_name(path.name + ".done")
    if marker.exists():
        return path
    files = ffis(spec)
    from cubecut.ingest.run import ingest

    path.parent.mkdir(parents=True, exist_ok=True)
    log(f"ingesting cube {spec.name} ({spec.nbytes / 1e9:.1f} GB) ...")
    t0 = time.perf_counter()
    ingest([str(p) for p in files], str(path), workers=2)
    marker.write_text(f"{time.perf_counter() - t0:.1f}\n")
    log(f"  cube {path.name}: {time.perf_counter() - t0:.0f} s")
    return path


def drop_ffis(spec: CubeSpec) -> None:
    """Free the disk of FFIs whose cube exists (they are re-made on demand)."""
    if spec.ffi_dir.exists():
        shutil.rmtree(spec.ffi_dir)


def prepare(quick: bool) -> dict[str, Path]:
    specs = QUICK if quick else FULL
    out = {}
    for key, spec in specs.items():
        out[key] = cube(spec)
        drop_ffis(spec)
    return out


if __name__ == "__main__":
    quick = "--quick" in sys.argv
    prepare(quick)
    ffis(INGEST_QUICK if quick else INGEST_FULL)
