"""Bulk outputs to local disk: O_DIRECT writes, their buffered fallback, atomic names that a
resumed run never counts as done, writes overlapped with cutting (bounded bytes in flight),
and TPF buffers reused once written."""
from __future__ import annotations

import errno
import os
import threading
import uuid
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

import cubecut.storage.files as direct
import cubecut.bulk.worker as worker
from cubecut.bulk import Limits, plan_job, run_job, run_tiles
from cubecut.bulk.plan import cube_entries
from cubecut.bulk.stars import parse_targets
from cubecut.errors import StorageError

from test_bulk import _same_tpf, catalog_text, cube, sky  # noqa: F401 - cube is a fixture used by name

SIZES = [0, 1, 4095, 4096, 4097, 2_531_520, direct.PIECE, direct.PIECE + 123, 2 * direct.PIECE + 4096]


def _data(n: int) -> bytes:
    return np.random.default_rng(n).integers(0, 256, n, dtype=np.uint8).tobytes()


def _tmpfs() -> Path:
    folder = Path("/dev/shm")
    if not folder.is_dir():
        pytest.skip("no /dev/shm tmpfs here")
    return folder / f"cubecut-direct-{uuid.uuid4().hex}"


def test_direct_writes_hold_exactly_the_data(tmp_path):
    assert hasattr(os, "O_DIRECT"), "the benchmark machine is Linux"
    for n in SIZES:
        path = tmp_path / "sub" / f"f{n}.fits"
        data = _data(n)
        assert direct.write_file(path, data) is True, f"{tmp_path} (ext4) takes O_DIRECT"
        assert path.read_bytes() == data
    direct.write_file(tmp_path / "sub" / f"f{SIZES[-1]}.fits", b"shorter")  # replaces a longer file
    assert (tmp_path / "sub" / f"f{SIZES[-1]}.fits").read_bytes() == b"shorter"
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == sorted(f"f{n}.fits" for n in SIZES), \
        "no temporary files left"


def test_on_tmpfs_either_path_writes_the_data():
    folder = _tmpfs()
    try:
        for n in (0, 5000, direct.PIECE + 1):
            data = _data(n)
            direct.write_file(folder / f"f{n}", data)
            assert (folder / f"f{n}").read_bytes() == data
        assert sorted(p.name for p in folder.iterdir()) == ["f0", "f4194305", "f5000"]
    finally:
        for path in folder.glob("*"):
            path.unlink()
        folder.rmdir()


@pytest.mark.parametrize("refuse", ["open", "write"])
def test_refused_o_direct_falls_back_to_buffered_writes_once_a_folder(tmp_path, monkeypatch, refuse):
    calls = []
    real_open, real_write = os.open, os.write

    def fake_open(path, flags, *args):
        if flags & os.O_DIRECT:
            calls.append(path)
            if refuse == "open":
                raise OSError(errno.EINVAL, "Invalid argument")
        return real_open(path, flags, *args)

    def fake_write(fd, data):
        if refuse == "write" and calls:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_write(fd, data)

    monkeypatch.setattr(direct.os, "open", fake_open)
    monkeypatch.setattr(direct.os, "write", fake_write)
    for n in (10_000, 20_000):
        data = _data(n)
        assert direct.write_file(tmp_path / f"f{n}", data) is False
        assert (tmp_path / f"f{n}").read_bytes() == data
    assert len(calls) == 1, "a folder that refused O_DIRECT is not tried again"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f10000", "f20000"], "the refused temp file is gone"


def test_without_o_direct_on_this_os_files_are_written_buffered(tmp_path, monkeypatch):
    monkeypatch.delattr(os, "O_DIRECT")
    assert direct.write_file(tmp_path / "f", b"abc") is False
    assert (tmp_path / "f").read_bytes() == b"abc"


def test_a_failed_write_leaves_neither_the_file_nor_its_temp(tmp_path, monkeypatch):
    def broken(fd, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(direct.os, "write", broken)
    with pytest.raises(OSError, match="No space"):
        direct.write_file(tmp_path / "f.fits", _data(9000))
    assert list(tmp_path.iterdir()) == []


def test_a_killed_runs_temp_file_never_counts_as_done(cube, tmp_path):  # noqa: F811 - the fixture
    (tmp_path / "cat.csv").write_text(catalog_text(cube))
    out = tmp_path / "out"
    first = run_job(str(tmp_path / "cat.csv"), str(out), cubes=[cube])
    written = sorted((out / "tpfs").rglob("*.fits"))
    lost = written[2]
    good = tmp_path / "good.fits"
    lost.rename(good)  # as if killed while writing it: only a partial temp file remains
    partial = lost.with_name(f".{lost.name}.999999.1.tmp")
    partial.write_bytes(good.read_bytes()[:5000])
    again = run_job(str(tmp_path / "cat.csv"), str(out), cubes=[cube])
    assert again.counts == {**first.counts, "written": 1, "skipped": first.counts["written"] - 1}
    with fits.open(lost) as redone, fits.open(good) as before:
        diff = fits.FITSDiff(redone, before, ignore_keywords=["CHECKSUM", "DATASUM"])
        assert diff.identical, diff.report()
    assert lost.stat().st_size == good.stat().st_size


def test_writes_overlap_cutting_in_order_with_bounded_bytes(cube, tmp_path, monkeypatch):  # noqa: F811
    rng = np.random.default_rng(2)
    rows = ["ra,dec"] + ["%r,%r" % sky(cube, x, y) for x, y in rng.uniform([45, 0], [89, 59], (20, 2))]
    plan = plan_job(parse_targets("\n".join(rows), (11, 11)), cube_entries([cube], None), str(tmp_path / "out"),
                    limits=Limits(tile_targets=3))
    in_flight, peak = [0], [0]
    real = worker.put_output

    def counting(url, data, content_type):
        in_flight[0] += 1
        peak[0] = max(peak[0], in_flight[0])
        try:
            real(url, data, content_type)
        finally:
            in_flight[0] -= 1

    monkeypatch.setattr(worker, "put_output", counting)
    monkeypatch.setattr(worker, "BYTES_IN_FLIGHT", 1)  # one TPF at a time
    seen = []
    results = run_tiles(plan.tiles, on_target=seen.append)
    assert peak[0] == 1
    assert list(results) == [tile["tile"] for tile in plan.tiles], "tiles reported in order"
    assert seen == [row for rows in results.values() for row in rows]
    assert [row["row"] for row in seen] == [t[0] for tile in plan.tiles for t in tile["targets"]]
    assert all(Path(row["key"]).is_file() for row in seen)


def test_a_failed_write_fails_the_run(cube, tmp_path, monkeypatch):  # noqa: F811
    plan = plan_job(parse_targets("ra,dec\n%r,%r\n" % sky(cube, 60, 30), (11, 11)), cube_entries([cube], None),
                    str(tmp_path / "out"))

    def broken(url, data, content_type):
        raise StorageError("write refused")

    monkeypatch.setattr(worker, "put_output", broken)
    with pytest.raises(StorageError, match="write refused"):
        run_tiles(plan.tiles)


def test_local_tpfs_are_written_with_o_direct(cube, tmp_path, monkeypatch):  # noqa: F811
    direct_writes = []
    real = direct._write_direct

    def counting(path, data, flag):
        direct_writes.append(path)
        real(path, data, flag)

    monkeypatch.setattr(direct, "_write_direct", counting)
    (tmp_path / "cat.csv").write_text(catalog_text(cube))
    summary = run_job(str(tmp_path / "cat.csv"), str(tmp_path / "out"), cubes=[cube])
    assert len(direct_writes) == summary.counts["written"] == len(list((tmp_path / "out" / "tpfs").rglob("*.fits")))


def test_the_next_tiles_pixels_are_read_while_a_tile_is_written(cube, tmp_path, monkeypatch):  # noqa: F811
    rows = ["ra,dec"] + ["%r,%r" % sky(cube, 50 + 3 * i, 10 + 4 * i) for i in range(6)]
    plan = plan_job(parse_targets("\n".join(rows), (11, 11)), cube_entries([cube], None), str(tmp_path / "out"),
                    limits=Limits(tile_targets=3))
    assert len(plan.tiles) == 2
    events: list[str] = []
    real_start, real_put = worker.start_tpfs, worker.put_output

    def start(*args, **kwargs):
        events.append("read")
        return real_start(*args, **kwargs)

    def put(*args, **kwargs):
        events.append("write")
        return real_put(*args, **kwargs)

    monkeypatch.setattr(worker, "start_tpfs", start)
    monkeypatch.setattr(worker, "put_output", put)
    results = run_tiles(plan.tiles)
    assert [row["status"] for rows in results.values() for row in rows] == ["written"] * 6
    assert events[:2] == ["read", "read"], "tile 1's pixels are read before tile 0's TPFs are written"


def test_read_threads_only_read_and_the_worker_copies_the_rows(cube, tmp_path, monkeypatch):  # noqa: F811
    """bulk/worker.py: a batch's rows are read on the read threads, which copy nothing; the
    worker's own thread copies them into the files."""
    from cubecut.cutout.tpf import TPFDraft

    rows = ["ra,dec"] + ["%r,%r" % sky(cube, 50 + 3 * i, 10 + 4 * i) for i in range(6)]
    plan = plan_job(parse_targets("\n".join(rows), (11, 11)), cube_entries([cube], None), str(tmp_path / "out"),
                    limits=Limits(tile_targets=3))
    readers, copiers, laid_out = set(), set(), threading.Event()
    real_read, real_fill, real_start = worker.SpanCache.read, TPFDraft.fill_row, worker.start_tpfs

    def start_tpfs(*args, **kwargs):
        try:
            return real_start(*args, **kwargs)
        finally:
            laid_out.set()

    def read(self, start, stop):  # the rows come once the first batch's files are laid out
        readers.add(threading.get_ident())
        laid_out.wait(timeout=60)
        return real_read(self, start, stop)

    def fill_row(self, span, chunk):
        copiers.add(threading.get_ident())
        return real_fill(self, span, chunk)

    monkeypatch.setattr(worker, "start_tpfs", start_tpfs)
    monkeypatch.setattr(worker.SpanCache, "read", read)
    monkeypatch.setattr(TPFDraft, "fill_row", fill_row)
    results = run_tiles(plan.tiles)
    assert [row["status"] for rows in results.values() for row in rows] == ["written"] * 6
    assert copiers == {threading.get_ident()}, "the rows are copied on the worker's thread"
    assert readers - copiers, "and read on the read threads"


def test_buffers_are_zeroed_and_reused_only_once_given_back():
    buffers = worker.Buffers()
    first = buffers.take(10)
    assert first == bytearray(10)
    first[:] = b"x" * 10
    assert buffers.take(10) is not first, "a buffer in use is never handed out again"
    buffers.give(first)
    again = buffers.take(10)
    assert again is first and again == bytearray(10), "given back: reused, and zero again"
    assert buffers.take(12) is not first, "only for its size"


def test_tpfs_built_in_reused_buffers_equal_single_cutouts(cube, tmp_path, monkeypatch):  # noqa: F811
    rng = np.random.default_rng(4)
    targets = [sky(cube, x, y) for x, y in rng.uniform([45, 0], [89, 59], (12, 2))]
    plan = plan_job(parse_targets("ra,dec\n" + "".join("%r,%r\n" % t for t in targets), (11, 11)),
                    cube_entries([cube], None), str(tmp_path / "out"), limits=Limits(tile_targets=3))
    fresh, taken = [0], []
    real = worker.Buffers.take

    def take(self, size):
        buffer = real(self, size)
        fresh[0] += all(buffer is not old for old in taken)
        taken.append(buffer)
        return buffer

    monkeypatch.setattr(worker.Buffers, "take", take)
    monkeypatch.setattr(worker, "BYTES_IN_FLIGHT", 1)  # one TPF written at a time: its buffer comes back
    monkeypatch.setattr(worker, "BATCH_BYTES", 1)  # one TPF per pipeline call: three batches per tile
    rows = [row for rows in run_tiles(plan.tiles).values() for row in rows]
    assert len(taken) == len(rows) == 12 and fresh[0] < 12, "buffers of written TPFs are built in again"
    for row in rows:
        _same_tpf(row["key"], cube, row["ra"], row["dec"], (11, 11), tmp_path / "single")


def test_a_tile_is_cut_in_batches_of_at_most_batch_bytes_of_tpf_pixels(monkeypatch):
    """docs/bulk.md: a tile is cut in batches of at most BATCH_BYTES of TPF pixels (a larger
    single TPF is a batch of its own); every cuttable placement is in one batch, in order,
    and batches never mix tiles."""
    from cubecut.cutout.geometry import Box
    from cubecut.cutout.engine import TPF_BYTES_PER_PIXEL
    from cubecut.errors import OutsideCubeError

    nt, limit = 100, 3 * 11 * 11 * 100 * TPF_BYTES_PER_PIXEL  # three 11x11 TPFs of 100 frames
    monkeypatch.setattr(worker, "BATCH_BYTES", limit)
    sizes = [[11, 11, 11, 11, 11, 40, 11, None, 11], [11, 11]]  # None: off the cube
    cuts = [[worker._Cut(None, None, OutsideCubeError("off") if n is None else Box(0, 0, n, n))
             for n in tile] for tile in sizes]
    batches = worker._batches(cuts, nt)
    for batch in batches:
        cost = sum(box.nx * box.ny * nt * TPF_BYTES_PER_PIXEL for box in batch.boxes)
        assert cost <= limit or len(batch.members) == 1, batch
    assert [(b.tile, b.members) for b in batches] == [(0, [0, 1, 2]), (0, [3, 4]), (0, [5]), (0, [6, 8]), (1, [0, 1])]
