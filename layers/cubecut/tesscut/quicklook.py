"""Quick-look pictures of cutout requests: per TPF, one frame with the aperture and the
aperture light curve (:func:`cubecut.images.quicklook_png`), stacked top to bottom in
sector order into one PNG.

The picture is drawn from the request's zip, the very result ``astrocut`` delivers (from
the result cache, or cut and stored there), so a preview followed by its download costs
one cutout. The PNG is cached beside the zip, under the zip's key plus the picture's
options (``results/tesscut/<key>.<frame>-<stretch>.png``): a repeated preview is one GET
and reads no cube.
"""
from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass, field


from ..errors import ObjectNotFoundError
from ..storage import get_bytes, put_bytes
from ..cube.catalog import CubeEntry
from .service import CutoutService, no_data_message
from .protocol import CutoutRequest

#: Which frame is drawn: the per-pixel median of all frames (default) or the first with data.
FRAMES = ("median", "first")


@dataclass(frozen=True)
class QuicklookOptions:
    """How the picture is drawn: ``frame`` (see FRAMES) and ``stretch`` (images.STRETCHES)."""

    frame: str = "median"
    stretch: str = "asinh"

    @property
    def suffix(self) -> str:
        """The cached PNG's suffix after the zip's key."""
        return f"{self.frame}-{self.stretch}.png"


@dataclass
class Quicklook:
    """A picture (``png``), or the no-data ``message`` when no cube holds the position."""

    png: bytes | None = None
    cached: bool = False
    message: str | None = None
    members: list[str] = field(default_factory=list)


def stack_pngs(pngs: list[bytes]) -> bytes:
    """PNGs one above the other on white (one PNG is returned as it is)."""
    if len(pngs) == 1:
        return pngs[0]
    from PIL import Image

    pictures = [Image.open(io.BytesIO(data)).convert("RGB") for data in pngs]
    canvas = Image.new("RGB", (max(p.width for p in pictures), sum(p.height for p in pictures)), "white")
    top = 0
    for picture in pictures:
        canvas.paste(picture, (0, top))
        top += picture.height
    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG")
    return buffer.getvalue()


def _render(zipped: bytes, options: QuicklookOptions) -> tuple[bytes, list[str]]:
    from astropy.io import fits

    from ..images import quicklook_png

    with zipfile.ZipFile(io.BytesIO(zipped)) as archive:
        names = sorted(archive.namelist())
        pngs = []
        for name in names:
            with fits.open(io.BytesIO(archive.read(name))) as tpf:
                pngs.append(quicklook_png(tpf, frame=options.frame, stretch=options.stretch))
    return stack_pngs(pngs), names


def quicklook(service: CutoutService, request: CutoutRequest, options: QuicklookOptions,
              entries: list[CubeEntry] | None = None) -> Quicklook:
    """The quick-look PNG of ``request`` over ``entries`` (default: every cube holding the
    position, as ``astrocut``). Raises what ``astrocut`` raises (size budget, busy)."""
    entries = service.matching(request) if entries is None else entries
    if not entries:
        return Quicklook(message=no_data_message(request))
    png_url = service.result_url(request, entries, options.suffix)
    try:
        return Quicklook(png=get_bytes(png_url)[0], cached=True)
    except ObjectNotFoundError:
        pass
    delivery = service.static_zip(request, entries, in_memory=True)  # the picture is drawn from whole TPFs
    if delivery.message:
        return Quicklook(message=delivery.message)
    png, members = _render(service.zip_bytes(delivery), options)
    put_bytes(png_url, png, "image/png")
    return Quicklook(png=png, members=members)
