"""Turning what a user typed (paths, globs, folders, s3:// prefixes, manifests) into FFI URLs."""
from __future__ import annotations

import glob
import json
from pathlib import Path

from ..errors import NoInputError
from ..storage import Location, get_bytes, list_objects

FITS_SUFFIXES = (".fits", ".fits.gz", ".fit")


def _is_fits(name: str) -> bool:
    return name.lower().endswith(FITS_SUFFIXES)


def resolve_inputs(items: list[str]) -> list[str]:
    """Expand FFI arguments into a sorted, de-duplicated list of URLs.

    Accepts local files, globs and folders (their FITS files), ``s3://bucket/key`` objects,
    ``s3://bucket/prefix/`` prefixes (their FITS objects), other fsspec URLs (``https://``
    ... a FITS object, or a folder fsspec can list), and manifests (``*.json``: a list of
    URLs or ``{"ffis": [...]}``; ``*.txt``: one URL per line).
    """
    urls: list[str] = []
    for item in items:
        if item.endswith((".json", ".txt")):
            urls += read_manifest(item)
        elif not Location.parse(item).is_local:
            if _is_fits(item):
                urls.append(item)
            else:
                urls += [loc.url for loc, _ in list_objects(item) if _is_fits(loc.key)]
        elif Path(item).is_dir():
            urls += [str(p.resolve()) for p in Path(item).iterdir() if _is_fits(p.name)]
        else:
            matches = glob.glob(item)
            urls += [str(Path(m).resolve()) for m in matches] if matches else [item]
    urls = sorted(set(urls))
    if not urls:
        raise NoInputError(f"no FFIs found in {items!r}")
    return urls


def read_manifest(url: str) -> list[str]:
    """The FFI URLs listed in a manifest object (JSON list/object or text lines)."""
    data = get_bytes(url)[0].decode()
    location = Location.parse(url)
    if location.key.endswith(".json"):
        parsed = json.loads(data)
        entries = parsed["ffis"] if isinstance(parsed, dict) else parsed
    else:
        entries = [line.strip() for line in data.splitlines() if line.strip() and not line.startswith("#")]
    return [_relative_to(location, str(e)) for e in entries]


def _relative_to(manifest: Location, entry: str) -> str:
    """Entries without a scheme are relative to the manifest's folder/prefix."""
    if entry.startswith("/") or not Location.parse(entry).is_local:
        return entry
    return manifest.sibling(entry).url
