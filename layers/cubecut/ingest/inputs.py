"""Turning what a user typed (paths, globs, folders, s3:// prefixes, manifests) into FFI URLs."""
from __future__ import annotations

import glob
import json
from pathlib import Path

from ..errors import ForbiddenInputError, ManifestError, NoInputError
from ..storage import Location, get_bytes, list_objects, put_bytes
from .policy import LOCAL, InputPolicy, quote

FITS_SUFFIXES = (".fits", ".fits.gz", ".fit")


def _is_fits(name: str) -> bool:
    return name.lower().endswith(FITS_SUFFIXES)


def resolve_inputs(items: list[str], policy: InputPolicy = LOCAL) -> list[str]:
    """Expand FFI arguments into a sorted, de-duplicated list of URLs.

    Accepts local files, globs and folders (their FITS files), ``s3://bucket/key`` objects,
    ``s3://bucket/prefix/`` prefixes (their FITS objects), other fsspec URLs (``https://``
    ... a FITS object, or a folder fsspec can list), and manifests (``*.json``: a list of
    URLs or ``{"ffis": [...]}``; ``*.txt``: one URL per line). Every item and every URL
    found must be allowed by ``policy`` (:data:`~cubecut.ingest.policy.LOCAL`: anything).
    """
    urls: list[str] = []
    for item in [policy.check_ffi(item) for item in items]:  # all checked before anything is read
        if item.endswith((".json", ".txt")):
            urls += read_manifest(item, policy)
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
    urls = sorted(set(map(policy.check_ffi, urls)))
    if not urls:
        raise NoInputError(f"no FFIs found in {items!r}")
    return urls


#: Keys a JSON manifest may hold besides ``ffis``.
MANIFEST_OPTIONS = ("cube", "product", "sector", "update")


def parse_manifest(data: bytes, url: str, policy: InputPolicy = LOCAL) -> dict:
    """A manifest's content as ``{"ffis": [urls...], options...}``.

    JSON (``.json``): ``{"ffis": [...], "cube"?, "product"?, "sector"?, "update"?}`` or a
    plain list of FFIs; anything else: one FFI per line (``#`` starts a comment). FFI names
    without a scheme are relative to the manifest's folder. FFIs, ``cube`` and ``update``
    must be allowed by ``policy`` (the CLI's :data:`~cubecut.ingest.policy.LOCAL` allows
    anything readable). Raises ManifestError (ForbiddenInputError for a refused place).
    """
    location = Location.parse(url)
    try:
        text = data.decode()
    except UnicodeDecodeError:
        raise ManifestError(f"{url}: a manifest is UTF-8 text (JSON or one FFI per line)") from None
    if location.key.endswith(".json"):
        try:
            parsed = json.loads(text)
        except ValueError as exc:
            raise ManifestError(f"{url}: not valid JSON: {exc}") from None
        content = dict(parsed) if isinstance(parsed, dict) else {"ffis": parsed}
        entries = content.get("ffis")
        if not isinstance(entries, list) or not entries or not all(isinstance(e, str) and e for e in entries):
            raise ManifestError(f'{url}: needs "ffis": a non-empty list of FFI names or URLs')
        unknown = sorted(set(content) - {"ffis", *MANIFEST_OPTIONS})
        if unknown:
            raise ManifestError(f"{url}: unknown key(s) {unknown}; allowed: ffis, {', '.join(MANIFEST_OPTIONS)}")
    else:
        entries = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
        if not entries:
            raise ManifestError(f"{url}: lists no FFIs")
        content = {}
    content["ffis"] = [_relative_to(location, str(e), policy) for e in entries]
    for option in ("cube", "update"):
        if option in content:
            if not isinstance(content[option], str) or not content[option]:
                raise ManifestError(f'{url}: "{option}" is a cube URL')
            policy.check_cube(content[option])
    return content


def read_manifest(url: str, policy: InputPolicy = LOCAL) -> list[str]:
    """The FFI URLs listed in a manifest object (see :func:`parse_manifest`)."""
    return parse_manifest(get_bytes(url)[0], url, policy)["ffis"]


def error_report_url(manifest_url: str) -> str:
    """Where the failure of a manifest's ingest is reported: ``manifest.json`` ->
    ``manifest.error.json`` (which the S3 event filter, suffix ``manifest.json``, ignores)."""
    return manifest_url.removesuffix(".json") + ".error.json"


def report_manifest_failure(manifest_url: str, error: str, cause: str, **details: object) -> str:
    """Write ``{"manifest", "error", "cause", ...details}`` beside the manifest; its URL."""
    url = error_report_url(manifest_url)
    body = {"manifest": manifest_url, "error": error, "cause": cause, **details}
    put_bytes(url, json.dumps(body, indent=1, default=str).encode(), "application/json")
    return url


def _relative_to(manifest: Location, entry: str, policy: InputPolicy) -> str:
    """Entries without a scheme are relative to the manifest's folder/prefix; with a strict
    ``policy`` absolute paths, ``file:`` and every scheme but ``s3://`` are refused."""
    if not policy.allow_local:
        if entry.startswith("s3://"):
            return policy.check_ffi(entry)
        if entry.startswith(("/", "~", "\\")) or "://" in entry or entry.lower().startswith("file:"):
            raise ForbiddenInputError(f"FFI {quote(entry)}: a manifest names FFIs by key (relative to the "
                                      "manifest) or s3:// URL; local paths and other schemes are refused")
        return policy.check_ffi(manifest.sibling(entry).url)
    if entry.startswith("/") or not Location.parse(entry).is_local:
        return entry
    return manifest.sibling(entry).url
