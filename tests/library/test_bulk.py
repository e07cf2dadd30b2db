"""Bulk cutouts as a library: catalogs row by row, placement, caps, tiles, one read per span,
TPFs equal to single-target cutouts, resumable runs."""
from __future__ import annotations

import csv
import io
import json
import shutil
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.table import Table

import cubecut
import cubecut.bulk
from cubecut.bulk import Limits, plan_job, read_targets, run_job, run_tiles
from cubecut.bulk.plan import Tile, cube_entries
from cubecut.bulk.stars import parse_targets
from cubecut.cutout import clear_cache, cutout_box, ffi_wcs, load_index, tpf_filename
from cubecut.cutout.reader import merged_spans, span_bytes
from cubecut.errors import BulkCapError, CatalogError, InputError, ObjectNotFoundError
from cubecut.ingest.run import ingest
from cubecut.storage import ReadStats, put_bytes
from cubecut.synth import make_sector

SHAPE = (60, 90)  # rows, cols
FRAMES = 6


def _cube(folder: Path, sector: int) -> str:
    ffis = make_sector(folder / f"ffis{sector}", sector=sector, camera=1, ccd=1, frames=FRAMES, shape=SHAPE, seed=3)
    return ingest([str(p) for p in ffis], str(folder / "cubes") + "/", workers=1).cube


@pytest.fixture(scope="module")
def cube(tmp_path_factory) -> str:
    return _cube(tmp_path_factory.mktemp("bulk"), 5)


def sky(cube: str, x: float, y: float) -> tuple[float, float]:
    """RA/Dec (deg) of 0-based pixel (x, y) of ``cube``."""
    ra, dec = ffi_wcs(load_index(cube)).all_pix2world([[x, y]], 0)[0]
    return float(ra), float(dec)


def catalog_text(cube: str) -> str:
    """On-, edge- and off-footprint targets and one row of each kind of mistake."""
    rows = ["id,ra,dec,size"]
    rng = np.random.default_rng(0)
    for i, (x, y) in enumerate(rng.uniform([50, 5], [85, 55], (12, 2))):
        rows.append("t%d,%r,%r," % (i, *sky(cube, x, y)))
    rows.append("edge,%r,%r,7x5" % sky(cube, 88.6, 0.2))      # box partly off the image
    rows.append("off,%r,%r," % sky(cube, 130.0, 30.0))         # beyond the image, same sky area
    rows.append("far,10.0,10.0,")                              # nowhere near the cube
    rows.append("nan-ra,nan,1,")
    rows.append("text,abc,1,")
    rows.append("pole,1,91,")
    rows.append("size0,1,1,0")
    rows.append("short,1")
    rows.append(",%r,%r,9" % sky(cube, 60, 30))                # no id: row<N>
    return "\n".join(rows) + "\n"


def test_catalog_rows_are_parsed_or_rejected_with_their_reason(cube):
    catalog = parse_targets(catalog_text(cube), (11, 11))
    assert catalog.nrows == 21 and len(catalog.targets) == 16
    reasons = {p.id: p.reason for p in catalog.problems}
    assert reasons == {"nan-ra": "ra 'nan' is not finite", "text": "ra 'abc' is not a number",
                       "pole": "dec 91.0 is outside [-90, 90] degrees",
                       "size0": "size '0': cutout size must be positive and finite, got 0",
                       "short": "has 2 fields, the header has 4"}
    by_id = {t.id: t for t in catalog.targets}
    assert by_id["edge"].size == (7, 5) and by_id["t0"].size == (11, 11) and by_id["row21"].size == (9, 9)


def test_ecsv_and_s3_catalogs(cube, bucket):
    table = Table({"ID": ["a", "b"], "RA": [10.5, 11.0], "Dec": [-5.0, -6.0], "size": ["5", "3x4"]})
    buffer = io.StringIO()
    table.write(buffer, format="ascii.ecsv")
    text = buffer.getvalue()
    put_bytes(f"s3://{bucket}/catalogs/t.ecsv", text.encode())
    catalog = read_targets(f"s3://{bucket}/catalogs/t.ecsv", (11, 11))
    assert [(t.id, t.ra, t.dec, t.size) for t in catalog.targets] == [("a", 10.5, -5.0, (5, 5)),
                                                                        ("b", 11.0, -6.0, (3, 4))]
    with pytest.raises(CatalogError, match="no ra column"):
        parse_targets("x,dec\n1,2\n", (11, 11))
    with pytest.raises(CatalogError, match="not found"):
        read_targets(f"s3://{bucket}/catalogs/missing.csv", (11, 11))


def test_caps_refuse_a_job_up_front_with_the_numbers(cube, tmp_path):
    catalog = parse_targets(catalog_text(cube), (11, 11))
    entries = cube_entries([cube], None)
    with pytest.raises(BulkCapError, match=r"has 16 targets, above the cap of 15 targets"):
        plan_job(catalog, entries, str(tmp_path), limits=Limits(max_targets=15))
    with pytest.raises(BulkCapError, match=r"14 cutouts of 16 targets come to 9,408 pixel-frames, above the cap "
                                           r"of 9,000"):
        plan_job(catalog, entries, str(tmp_path), limits=Limits(max_pixel_frames=9_000))
    assert not list(tmp_path.iterdir()), "nothing written"


def test_limits_come_from_settings_given_as_arguments():
    """The library reads no environment: the handlers and the CLI pass their settings."""
    assert Limits.from_settings({}) == Limits()
    limits = Limits.from_settings({"CUBECUT_BULK_MAX_TARGETS": "1_000", "CUBECUT_BULK_TILE_TARGETS": "7",
                                   "CUBECUT_BULK_MAX_PIXEL_FRAMES": " ", "OTHER": "x"})
    assert (limits.max_targets, limits.tile_targets, limits.max_pixel_frames) == (1000, 7, Limits().max_pixel_frames)
    with pytest.raises(InputError, match="CUBECUT_BULK_TILE_TARGETS='many' is not a whole number"):
        Limits.from_settings({"CUBECUT_BULK_TILE_TARGETS": "many"})
    with pytest.raises(InputError, match="tile_pixel_frames must be a positive integer, got 0"):
        Limits(tile_pixel_frames=0)
    source = "".join(path.read_text() for path in Path(cubecut.bulk.__file__).parent.glob("*.py"))
    assert "os.environ" not in source and "getenv" not in source


def test_plan_places_sorts_by_row_and_records_off_footprint(cube, tmp_path):
    catalog = parse_targets(catalog_text(cube), (11, 11))
    plan = plan_job(catalog, cube_entries([cube], None), str(tmp_path), limits=Limits(tile_targets=4))
    off = {r["id"]: r["error"] for r in plan.rows if r["status"] == "off_footprint"}
    assert set(off) == {"off", "far"}
    assert "falls at pixel x=130.0, y=30.0 (0-based) of tess-s0005-1-1, off its 90x60 image" in off["off"]
    assert "not within 15 deg" in off["far"]
    assert plan.todo == 14 and [len(t["targets"]) for t in plan.tiles] == [4, 4, 4, 2]
    tiles = [Tile.from_json(tile) for tile in plan.tiles]
    assert [tile.to_json() for tile in tiles] == plan.tiles, "work items go through JSON unchanged"
    wcs = ffi_wcs(load_index(cube))
    rows = [wcs.all_world2pix([[p.target.ra, p.target.dec]], 0)[0][1] for tile in tiles for p in tile.placements]
    assert rows == sorted(rows), "tiles run through the cube by row"


def _same_tpf(path: str, cube: str, ra: float, dec: float, size: tuple[int, int], folder: Path) -> None:
    """The bulk TPF at ``path`` is the file ``cutout(output_dir=...)`` writes (but for the
    time stamp in the checksum cards' comments, and the catalog's OBJECT: the id)."""
    (single,) = cubecut.cutout(cube, SkyCoord(ra, dec, unit="deg"), size, output_dir=folder)
    assert Path(single).name == Path(path).name
    with fits.open(path) as ours, fits.open(single) as expected:
        diff = fits.FITSDiff(ours, expected, ignore_keywords=["CHECKSUM", "DATASUM", "OBJECT"])
        assert diff.identical, diff.report()
        assert ours[1].header["DATASUM"] and ours[0].header["CHECKSUM"]


def test_run_accounts_for_every_row_and_equals_single_cutouts(cube, tmp_path):
    (tmp_path / "cat.csv").write_text(catalog_text(cube))
    seen = []
    summary = run_job(str(tmp_path / "cat.csv"), str(tmp_path / "out"), cubes=[cube], workers=2,
                      on_target=seen.append, limits=Limits(tile_targets=4))  # 4 tiles: 2 per worker process
    assert summary.counts == {"written": 14, "off_footprint": 2, "malformed": 5}
    assert len(seen) == 14, "the progress callback sees every cut target, from both worker processes"
    with open(summary.results) as handle:
        rows = list(csv.DictReader(handle))
    assert sorted(int(r["row"]) for r in rows) == list(range(1, 22)), "every catalog row, once"
    for row in rows:
        if row["status"] == "written":
            size = (7, 5) if row["id"] == "edge" else (9, 9) if row["id"] == "row21" else (11, 11)
            _same_tpf(row["key"], cube, float(row["ra"]), float(row["dec"]), size, tmp_path / "single")
    edge = next(r for r in rows if r["id"] == "edge")
    with fits.open(edge["key"]) as tpf:
        assert np.isnan(tpf[1].data["FLUX"]).any() and tpf[2].data.min() == 0, "NaN-padded off the image"
    summary_file = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary_file["counts"] == summary.counts and summary_file["catalog_rows"] == 21


def test_rerun_skips_what_is_done_and_redoes_what_is_missing(cube, tmp_path):
    (tmp_path / "cat.csv").write_text(catalog_text(cube))
    out = tmp_path / "out"
    first = run_job(str(tmp_path / "cat.csv"), str(out), cubes=[cube])
    with open(first.results) as handle:
        written = [r["key"] for r in csv.DictReader(handle) if r["status"] == "written"]
    Path(written[3]).unlink()
    again = run_job(str(tmp_path / "cat.csv"), str(out), cubes=[cube])
    assert again.counts == {"skipped": 13, "written": 1, "off_footprint": 2, "malformed": 5}
    with open(again.results) as handle:
        redone = [r["key"] for r in csv.DictReader(handle) if r["status"] == "written"]
    assert redone == [written[3]] and Path(written[3]).exists()


def test_a_failed_worker_process_fails_the_job_instead_of_hanging(cube, tmp_path):
    copy = tmp_path / "cubes" / Path(cube).name
    copy.parent.mkdir()
    for suffix in ("", ".index.json"):
        shutil.copyfile(cube + suffix, f"{copy}{suffix}")
    (tmp_path / "cat.csv").write_text(catalog_text(str(copy)))

    def lose_the_cube(plan) -> None:  # planned; then the workers find no cube to read
        for suffix in ("", ".index.json"):
            Path(f"{copy}{suffix}").unlink()

    outcome: list = []

    def job() -> None:
        try:
            run_job(str(tmp_path / "cat.csv"), str(tmp_path / "out"), cubes=[str(copy)], workers=2,
                    on_plan=lose_the_cube, limits=Limits(tile_targets=4))
        except Exception as exc:  # noqa: BLE001 - what the job raised is the result checked
            outcome.append(exc)

    thread = threading.Thread(target=job, daemon=True)
    thread.start()
    thread.join(120)
    assert not thread.is_alive(), "the job waits for rows its failed workers will never send"
    assert len(outcome) == 1 and isinstance(outcome[0], ObjectNotFoundError), outcome


def test_shards_hold_single_cutouts_and_a_rerun_skips_complete_shards(cube, tmp_path):
    (tmp_path / "cat.csv").write_text(catalog_text(cube))
    out = tmp_path / "out"
    first = run_job(str(tmp_path / "cat.csv"), str(out), cubes=[cube], shards=True, limits=Limits(tile_targets=4))
    assert first.counts == {"written": 14, "off_footprint": 2, "malformed": 5}
    with open(first.results) as handle:
        rows = [r for r in csv.DictReader(handle) if r["status"] == "written"]
    shards = sorted({r["key"] for r in rows})
    assert len(shards) == 4 and all(k.endswith(".tar") and "/shards/tess-s0005-1-1/" in k for k in shards)
    assert not (out / "tpfs").exists(), "no loose TPFs"
    for shard in shards:
        with tarfile.open(shard) as tar:
            members = tar.getmembers()
            names = [m.name for m in members]
            assert sorted(names) == sorted(r["member"] for r in rows if r["key"] == shard)
            assert all(m.mtime == 0 and m.mode == 0o644 and m.uid == 0 and not m.uname for m in members)
            for member in members:
                row = next(r for r in rows if r["member"] == member.name)
                size = (7, 5) if row["id"] == "edge" else (9, 9) if row["id"] == "row21" else (11, 11)
                assert member.name == "tess-s0005-1-1/" + tpf_filename(cube, float(row["ra"]), float(row["dec"]),
                                                                         *size)
                extracted = tmp_path / "members" / Path(member.name).name
                extracted.parent.mkdir(exist_ok=True)
                extracted.write_bytes(tar.extractfile(member).read())
                _same_tpf(str(extracted), cube, float(row["ra"]), float(row["dec"]), size,
                          tmp_path / "single")
        assert json.loads(Path(shard + ".json").read_text()) == {"shard": shard, "members": names}
    again = run_job(str(tmp_path / "cat.csv"), str(out), cubes=[cube], shards=True, limits=Limits(tile_targets=4))
    assert again.counts == {"skipped": 14, "off_footprint": 2, "malformed": 5}
    with open(again.results) as handle:
        skipped = {(r["key"], r["member"]) for r in csv.DictReader(handle) if r["status"] == "skipped"}
    assert skipped == {(r["key"], r["member"]) for r in rows}, "skipped rows say where each TPF is"
    Path(shards[1] + ".json").unlink()  # an incomplete shard (its index is written last)
    third = run_job(str(tmp_path / "cat.csv"), str(out), cubes=[cube], shards=True, limits=Limits(tile_targets=4))
    lost = [r["member"] for r in rows if r["key"] == shards[1]]
    assert third.counts == {"skipped": 14 - len(lost), "written": len(lost), "off_footprint": 2, "malformed": 5}
    with open(third.results) as handle:
        redone = [r for r in csv.DictReader(handle) if r["status"] == "written"]
    assert sorted(r["member"] for r in redone) == sorted(lost) and len({r["key"] for r in redone}) == 1
    assert redone[0]["key"] not in shards, "a re-run's shard never overwrites an earlier run's"


def test_a_run_of_tiles_reads_each_needed_span_once(cube, tmp_path):
    """Dense, overlapping boxes in many small tiles: bytes read = bytes of the union of spans."""
    rng = np.random.default_rng(1)
    rows = ["ra,dec"] + ["%r,%r" % sky(cube, x, y) for x, y in rng.uniform([45, 0], [89, 59], (40, 2))]
    catalog = parse_targets("\n".join(rows), (11, 11))
    plan = plan_job(catalog, cube_entries([cube], None), str(tmp_path), limits=Limits(tile_targets=3))
    assert len(plan.tiles) == 14
    clear_cache()
    index = load_index(cube)
    stats = ReadStats()
    results = run_tiles(plan.tiles, stats=stats)
    assert sum(len(r) for r in results.values()) == 40
    wcs = ffi_wcs(index)
    boxes = [cutout_box(wcs, SkyCoord(t[2], t[3], unit="deg"), 11) for tile in plan.tiles for t in tile["targets"]]
    spans = merged_spans(index, boxes)
    union = sum(stop - start for start, stop in (span_bytes(index, s) for s in spans))
    assert stats.bytes == union and stats.requests == len(spans)


def test_every_cube_containing_each_target_via_the_catalog(cube, tmp_path):
    other = _cube(tmp_path, 6)  # another sector: a different pointing
    ra, dec = sky(cube, 60, 30)
    ra2, dec2 = sky(other, 60, 30)
    (tmp_path / "cat.csv").write_text(f"id,ra,dec\na,{ra!r},{dec!r}\nb,{ra2!r},{dec2!r}\n")
    folder = tmp_path / "catalog"
    folder.mkdir()
    for path in [*Path(cube).parent.glob("*5-1-1*"), *Path(other).parent.glob("*")]:
        (folder / path.name).write_bytes(path.read_bytes())
    summary = run_job(str(tmp_path / "cat.csv"), str(tmp_path / "out"), catalog_prefix=str(folder), size=(5, 5))
    with open(summary.results) as handle:
        placed = {(r["id"], Path(r["cube"]).name) for r in csv.DictReader(handle) if r["status"] == "written"}
    assert placed == {("a", "tess-s0005-1-1-cube.fits"), ("b", "tess-s0006-1-1-cube.fits")}


def test_the_synth_star_catalog_is_a_target_catalog(cube):
    stars_file = Path(cube).parents[1] / "ffis5" / "stars.ecsv"
    stars = Table.read(stars_file, format="ascii.ecsv")
    catalog = read_targets(str(stars_file), (11, 11))
    assert not catalog.problems and len(catalog.targets) == len(stars) > 0
    assert [t.ra for t in catalog.targets] == list(stars["ra"])


def test_results_csv_neutralises_spreadsheet_formulas(cube, tmp_path):
    """ids a spreadsheet would run (issue 25, finding 5) come back as text with a leading
    quote, through the CLI; numbers (a negative Dec) are left alone. The catalog starts
    with a UTF-8 BOM, which is accepted."""
    from cubecut_infra.cli import main

    ids = ['=HYPERLINK("http://example.org","x")', "@SUM(A1:A2)", "+cmd", "-2+3", "plain"]
    text = io.StringIO()
    csv.writer(text, lineterminator="\n").writerows([["id", "ra", "dec"]] + [[name, *sky(cube, 60 + i, 30)]
                                                                             for i, name in enumerate(ids)])
    (tmp_path / "cat.csv").write_text("\ufeff" + text.getvalue(), encoding="utf-8")
    assert main(["bulk", str(tmp_path / "cat.csv"), "--cubes", cube, "--out", str(tmp_path / "out"), "--quiet"]) == 0
    with open(tmp_path / "out" / "results.csv", newline="") as handle:
        written = list(csv.DictReader(handle))
    assert [r["id"] for r in written] == ["'" + name for name in ids[:4]] + ["plain"]
    assert all(r["status"] == "written" and float(r["dec"]) == pytest.approx(sky(cube, 60, 30)[1], abs=1)
               for r in written)


def test_a_deeply_nested_ecsv_header_is_a_catalog_error():
    from cubecut.bulk.stars import parse_targets
    from cubecut.errors import CatalogError

    with pytest.raises(CatalogError, match="unreadable ECSV header"):
        parse_targets("# %ECSV 1.0\n# " + "[" * 5000 + "\nra dec\n1 2\n", (11, 11))
