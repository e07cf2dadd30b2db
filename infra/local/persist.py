"""The local stack's bucket kept in a folder across restarts (``cubecut local up --data-dir``).

moto's S3 server keeps every object in memory, so a stopped stack forgets its cubes. With a
data folder the stack *restores* the folder into the bucket when it starts (one object per
file, the key being the file's path under the folder, ``/``-separated) and *saves* the
bucket into the folder when it stops (Ctrl-C or SIGTERM): changed objects are written
(atomically: a hidden temporary file renamed over the old one), files of deleted objects
removed. Cubes already on disk are served by putting them in the folder at their key
(``cubes/tess-s0001-1-1-cube.fits``) before the stack starts; they are copied into the
server's memory, not served in place. A stack killed with SIGKILL saves nothing.

A restored object gets a new ETag (S3 computes it from how the object was uploaded), so a
cube's ``.index.json`` sidecar, bound to its cube's ETag at save time, is re-bound to the
restored cube's ETag when the saved one matches (the bytes are the same); the ETags at save
time are kept in :data:`ETAGS` in the folder.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

#: The file in the data folder that records each saved object's ETag (not restored).
ETAGS = ".cubecut-etags.json"
_SIDECAR = ".index.json"


def restore(client: Any, bucket: str, folder: str | os.PathLike[str]) -> int:
    """Upload every file under ``folder`` (hidden files and folders left out) into
    ``bucket`` at its relative path; returns how many. Sidecars are re-bound to their
    restored cubes (see the module docstring)."""
    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    saved = _saved_etags(root)
    files = sorted(p for p in root.rglob("*") if p.is_file() and not _hidden(p.relative_to(root)))
    keys = {path.relative_to(root).as_posix(): path for path in files}
    etags: dict[str, str] = {}
    for key, path in keys.items():
        if not key.endswith(_SIDECAR):
            client.upload_file(str(path), bucket, key)
            etags[key] = client.head_object(Bucket=bucket, Key=key)["ETag"]
    for key, path in keys.items():
        if key.endswith(_SIDECAR):
            client.put_object(Bucket=bucket, Key=key, Body=_rebound(path.read_bytes(), saved.get(key[:-len(_SIDECAR)]),
                                                                   etags.get(key[:-len(_SIDECAR)])),
                              ContentType="application/json")
    return len(keys)


def save(client: Any, bucket: str, folder: str | os.PathLike[str]) -> int:
    """Write every object of ``bucket`` into ``folder`` (those whose ETag changed since the
    last save), remove the files of objects that are gone; returns how many were written."""
    root = Path(folder)
    saved = _saved_etags(root)
    current: dict[str, str] = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for item in page.get("Contents", []):
            current[item["Key"]] = item["ETag"]
    written = 0
    for key, etag in current.items():
        target = _inside(root, key)
        if target is None or (saved.get(key) == etag and target.exists()):
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        client.download_file(bucket, key, str(partial))
        os.replace(partial, target)
        written += 1
    for key in set(saved) - set(current):
        target = _inside(root, key)
        if target is not None:
            target.unlink(missing_ok=True)
    partial = root / f".{ETAGS}.{os.getpid()}.tmp"
    partial.write_text(json.dumps(current))
    os.replace(partial, root / ETAGS)
    return written


def _saved_etags(root: Path) -> dict[str, str]:
    try:
        data = json.loads((root / ETAGS).read_text())
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def _hidden(relative: Path) -> bool:
    return any(part.startswith(".") for part in relative.parts)


def _inside(root: Path, key: str) -> Path | None:
    """The file of ``key`` under ``root``; None for a key that would leave it or be hidden."""
    relative = Path(key)
    if relative.is_absolute() or ".." in relative.parts or _hidden(relative) or key.endswith("/"):
        return None
    return root / relative


def _rebound(sidecar: bytes, saved_etag: str | None, restored_etag: str | None) -> bytes:
    """The sidecar bound to the restored cube's ETag if it was bound to the saved one."""
    if saved_etag is None or restored_etag is None:
        return sidecar
    try:
        data = json.loads(sidecar)
    except ValueError:
        return sidecar
    if not isinstance(data, dict) or str(data.get("cube_etag", "")).strip('"') != saved_etag.strip('"'):
        return sidecar
    data["cube_etag"] = restored_etag.strip('"')
    return json.dumps(data).encode()
