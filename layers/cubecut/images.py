"""Pictures: stretched PNG/JPG cutouts (astrocut's ``img_cut``, ``normalize_img``), colour
from three images, and the quick-look of a TPF (a frame plus its light curve).

Rendering uses Pillow only (no matplotlib): it adds ~20 MB to the Lambda layer instead
of ~100 MB and imports in a fraction of the time, and the API renders previews in Lambda.

Conventions: images are numpy arrays ``(rows, cols)``; row 0 is the bottom of the picture
(FITS convention), so arrays are flipped vertically when written, as astrocut does.
Pixel values that are NaN (off the image) are drawn as the lowest level (black, or white
when inverted).
"""
from __future__ import annotations

import io
import json
import math
import os
import pathlib
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO, Literal, Sequence

import numpy as np

from .errors import InputError
from .storage import Location, ReadStats, put_bytes

if TYPE_CHECKING:  # Pillow, astropy.visualization, fficut and the cutout geometry load on first use
    from astropy.io import fits
    from PIL import Image, ImageDraw

    from .cutout.geometry import CoordInput
    from .cutout.size import SizeInput
    from .fficut import Extension

#: Stretch names and their astropy.visualization classes.
STRETCHES = {"asinh": "AsinhStretch", "sinh": "SinhStretch", "sqrt": "SqrtStretch", "log": "LogStretch",
             "linear": "LinearStretch"}
#: img_cut's default clipping percentiles (astrocut's).
DEFAULT_PERCENT = (0.5, 99.5)
FORMATS = {"png": "PNG", "jpg": "JPEG", "jpeg": "JPEG"}

Stretch = Literal["asinh", "sinh", "sqrt", "log", "linear"]


class ImageError(InputError):
    """An image cannot be made: unknown stretch or format, empty input, wrong channel count."""


def normalize(image: np.ndarray, stretch: Stretch = "asinh", minmax_percent: Sequence[float] | None = None,
              minmax_value: Sequence[float] | None = None, invert: bool = False) -> np.ndarray:
    """Scale an image to 0-255 (uint8) as astrocut's ``normalize_img`` does.

    The interval is ``minmax_percent`` (lower and upper percentiles), else
    ``minmax_value`` (min and max values), else the image's min and max; values are mapped
    to [0, 1] over it and clipped, the stretch (asinh, sinh, sqrt, log, linear; astropy's
    defaults) is applied, and the result is scaled by 255 and truncated. The limits come
    from the finite pixels only; NaN pixels become 0 (255 when inverted). For finite
    images the values equal astrocut 1.3's.
    """
    data = np.asarray(image, dtype=np.float64)
    if data.size == 0:
        raise ImageError("the image is empty")
    if stretch not in STRETCHES:
        raise ImageError(f"unknown stretch {stretch!r}; expected one of {', '.join(STRETCHES)}")
    finite = data[np.isfinite(data)]
    out = np.zeros(data.shape, dtype=np.uint8)
    if finite.size:
        from astropy import visualization  # imports matplotlib when installed: only when drawing

        if minmax_percent is not None:
            vmin, vmax = visualization.AsymmetricPercentileInterval(*minmax_percent).get_limits(finite)
        elif minmax_value is not None:
            vmin, vmax = minmax_value
        else:
            vmin, vmax = visualization.MinMaxInterval().get_limits(finite)
        with np.errstate(invalid="ignore", divide="ignore"):
            scaled = getattr(visualization, STRETCHES[stretch])()(visualization.ManualInterval(vmin, vmax)(data))
        good = np.isfinite(scaled)
        out[good] = (255 * scaled[good]).astype(np.uint8)
    return 255 - out if invert else out


def colour_image(red: np.ndarray, green: np.ndarray, blue: np.ndarray, **normalize_args) -> np.ndarray:
    """An RGB image ``(rows, cols, 3)`` uint8 from three images of one shape, each
    normalised alone with ``normalize_args`` (see :func:`normalize`)."""
    channels = [np.asarray(c) for c in (red, green, blue)]
    if len({c.shape for c in channels}) != 1:
        raise ImageError(f"colour channels differ in shape: {[c.shape for c in channels]}")
    return np.dstack([normalize(c, **normalize_args) for c in channels])


def encode_image(pixels: np.ndarray, fmt: str = "png", *, flip: bool = True,
                 metadata: dict[str, object] | None = None) -> bytes:
    """PNG or JPEG bytes of a uint8 grey ``(rows, cols)`` or RGB ``(rows, cols, 3)`` image.

    ``flip`` puts row 0 at the bottom (FITS orientation). ``metadata`` goes into PNG text
    chunks, or as JSON into the JPEG EXIF ImageDescription (as astrocut does).
    """
    kind = FORMATS.get(fmt.lower().lstrip("."))
    if kind is None:
        raise ImageError(f"unknown image format {fmt!r}; expected png or jpg")
    from PIL import Image

    picture = Image.fromarray(np.flipud(pixels) if flip else np.asarray(pixels))
    options: dict[str, object] = {}
    if metadata and kind == "PNG":
        from PIL.PngImagePlugin import PngInfo

        info = PngInfo()
        for key, value in metadata.items():
            info.add_text(key, str(value))
        options["pnginfo"] = info
    elif metadata:
        exif = picture.getexif()
        exif[270] = json.dumps(metadata)
        options["exif"] = exif.tobytes()
    buffer = io.BytesIO()
    picture.save(buffer, format=kind, **options)
    return buffer.getvalue()


def img_cut(files: Sequence[str], coordinates: CoordInput, size: SizeInput, *, stretch: Stretch = "asinh",
            minmax_percent: Sequence[float] | None = None, minmax_value: Sequence[float] | None = None,
            invert: bool = False, colorize: bool = False, img_format: str = "jpg",
            output_dir: str | os.PathLike[str] = ".", cutout_prefix: str | None = None, extension: Extension = None,
            threads: int | Literal["auto"] = "auto", stats: ReadStats | None = None) -> list[str]:
    """astrocut's ``img_cut`` over byte ranges: PNG/JPG cutouts of FITS images (e.g. FFIs).

    The cutouts are those of :func:`cubecut.fficut.cutout_images` (same box, rows read by
    byte range); each is normalised with ``stretch``/``minmax_percent``/``minmax_value``/
    ``invert`` (default percentiles 0.5-99.5, as astrocut). With ``colorize`` the first
    three cutouts become the red, green and blue channels of one image.

    Files are written to ``output_dir`` (a folder or ``s3://`` prefix), named
    ``{file stem}_{ra}_{dec}_{nx}-x-{ny}_astrocut.{fmt}`` as astrocut names them, or
    ``{cutout_prefix}_{file stem}_...`` when ``cutout_prefix`` is given (so runs with
    different prefixes do not overwrite each other); a colour image is
    ``{cutout_prefix or "cutout"}_{ra}_...``. Their paths/URLs are returned.
    """
    fmt = img_format.lower().lstrip(".")
    if fmt not in FORMATS:
        raise ImageError(f"unknown image format {img_format!r}; expected png or jpg")
    from .cutout.geometry import parse_coordinates
    from .cutout.size import parse_size, size_label
    from .cutout.tpf import tpf_filename
    from .fficut import cutout_images

    coord = parse_coordinates(coordinates)[0]
    cutouts = [c for per_file in cutout_images(files, coord, size, extension=extension, threads=threads,
                                               stats=stats) for c in per_file]
    if minmax_percent is None and minmax_value is None:
        minmax_percent = DEFAULT_PERCENT
    options = {"stretch": stretch, "minmax_percent": minmax_percent, "minmax_value": minmax_value,
               "invert": invert}
    labels = size_label(parse_size(size))
    meta = {"center_ra_deg": coord.ra.deg, "center_dec_deg": coord.dec.deg, "origin": "cubecut"}

    def put(pixels: np.ndarray, prefix: str, **inputs: str) -> str:
        name = tpf_filename(prefix, coord.ra.deg, coord.dec.deg, *labels).removesuffix("fits") + fmt
        target = Location.parse(output_dir).child(name)
        data = encode_image(pixels, fmt, metadata={**meta, **inputs})
        put_bytes(target, data, content_type=f"image/{FORMATS[fmt].lower()}")
        return target.url

    if colorize:
        if len(cutouts) < 3:
            raise ImageError(f"a colour image needs 3 images, got {len(cutouts)}")
        rgb = colour_image(*(c.data for c in cutouts[:3]), **options)
        return [put(rgb, cutout_prefix or "cutout", input_files=", ".join(c.file for c in cutouts[:3]))]
    written = []
    for c in cutouts:
        stem = Location.parse(c.file).name
        written.append(put(normalize(c.data, **options), f"{cutout_prefix}_{stem}" if cutout_prefix else stem,
                           input_file=c.file))
    return written


@dataclass(frozen=True)
class LightCurve:
    """A TPF's light curve summed over an aperture.

    ``time`` days on ``scale`` (the TPF's TIME column), ``flux`` e-/s (NaN where any aperture
    pixel is NaN), ``quality`` the QUALITY flags, ``aperture`` the boolean ``(ny, nx)`` mask
    used. ``scale`` is ``"BTJD"`` for barycentre-corrected times (TIMEREF = SOLARSYSTEM, as
    SPOC writes) and ``"TJD"`` otherwise (TICA's spacecraft times: TIMEREF undefined).
    """

    time: np.ndarray
    flux: np.ndarray
    quality: np.ndarray
    aperture: np.ndarray
    scale: str = "BTJD"


def central_aperture(ny: int, nx: int, radius: float | None = None) -> np.ndarray:
    """Pixels whose centres lie within ``radius`` pixels of the cutout's centre
    ``((nx - 1) / 2, (ny - 1) / 2)`` (0-based); default radius ``max(1, min(nx, ny) / 6)``."""
    radius = max(1.0, min(nx, ny) / 6) if radius is None else float(radius)
    gy, gx = np.mgrid[0:ny, 0:nx]
    return np.hypot(gx - (nx - 1) / 2, gy - (ny - 1) / 2) <= radius


def aperture_light_curve(tpf: fits.HDUList, radius: float | None = None) -> LightCurve:
    """The light curve of a (static or moving) TPF summed over :func:`central_aperture`."""
    pixels = tpf["PIXELS"]
    table = pixels.data
    flux = np.asarray(table["FLUX"], dtype=np.float64)
    aperture = central_aperture(flux.shape[1], flux.shape[2], radius)
    timeref = tpf[0].header.get("TIMEREF", pixels.header.get("TIMEREF"))
    scale = "BTJD" if timeref == "SOLARSYSTEM" else "TJD"
    return LightCurve(np.asarray(table["TIME"], dtype=np.float64), flux[:, aperture].sum(axis=1),
                      np.asarray(table["QUALITY"]), aperture, scale)


def _tpf_flux(hdulist: fits.HDUList) -> np.ndarray:
    """The ``(frames, rows, cols)`` FLUX of a TPF's PIXELS table, or ImageError."""
    name = getattr(hdulist, "filename", lambda: None)() or "the file"
    names = [hdu.name for hdu in hdulist]
    if "PIXELS" not in names:
        raise ImageError(f"{name} is not a target pixel file (its HDUs are {', '.join(names)}; a TPF has a PIXELS "
                         "table): quicklook draws TPFs; for an FFI or other image use `cubecut image`")
    data = hdulist["PIXELS"].data
    if data is None or "FLUX" not in data.columns.names or np.ndim(data["FLUX"]) != 3:
        raise ImageError(f"{name} is not a target pixel file: its PIXELS table has no 3-D FLUX column")
    return np.asarray(data["FLUX"], dtype=np.float64)


def quicklook_png(tpf_hdulist: fits.HDUList, path: str | os.PathLike[str] | BinaryIO | None = None, *,
                  frame: Literal["first", "median"] = "first", radius: float | None = None,
                  stretch: Stretch = "asinh") -> bytes:
    """A quick-look PNG of a TPF: one frame with the aperture drawn, and the light curve.

    Args:
        tpf_hdulist: a TPF (static or moving) with a ``PIXELS`` table.
        path: where to write the PNG (a local path or an open binary file); the bytes are
            returned either way.
        frame: ``"first"`` (the first frame with data) or ``"median"`` (per-pixel median).
        radius: aperture radius in pixels (see :func:`central_aperture`).
        stretch: image stretch (0.5-99.5 percentile interval).

    Frames with a non-zero QUALITY flag are plotted in orange. Raises ImageError for a
    file that is not a TPF (e.g. an FFI: draw that with :func:`img_cut`).
    """
    flux = _tpf_flux(tpf_hdulist)
    if frame == "median":
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="All-NaN slice encountered")
            image, label = np.nanmedian(flux, axis=0), "median frame"
    elif frame == "first":
        has_data = np.isfinite(flux).any(axis=(1, 2))
        first = int(np.argmax(has_data)) if has_data.any() else 0
        image, label = flux[first], f"frame {first + 1} of {len(flux)}"
    else:
        raise ImageError(f"frame must be 'first' or 'median', got {frame!r}")
    curve = aperture_light_curve(tpf_hdulist, radius)
    picture = _Quicklook(_title(tpf_hdulist), label).render(normalize(image, stretch, DEFAULT_PERCENT), curve)
    data = encode_image(picture, "png", flip=False)
    if isinstance(path, (str, os.PathLike)):
        pathlib.Path(path).write_bytes(data)
    elif path is not None:
        path.write(data)
    return data


def _title(tpf: fits.HDUList) -> str:
    header = tpf[0].header
    name = str(header.get("OBJECT") or "").strip() or (
        f"RA {header['RA_OBJ']:.5f}  Dec {header['DEC_OBJ']:.5f}" if "RA_OBJ" in header else "cutout")
    where = f"sector {header['SECTOR']}" if "SECTOR" in header else ""
    if "CAMERA" in header and "CCD" in header:
        where += f"  camera {header['CAMERA']}  CCD {header['CCD']}"
    return f"{name}   {where}".strip()


class _Quicklook:
    """The quick-look layout: title on top, the frame on the left, the light curve right.

    The title band (``TOP`` pixels) is clear of the plots and their labels, so a title as
    wide as the picture never runs into the light curve's axis label.
    """

    WIDTH, HEIGHT, MARGIN, IMAGE, TOP = 980, 420, 16, 340, 56
    INK, GRID, POINT, FLAGGED, APERTURE = (20, 20, 20), (210, 210, 210), (31, 119, 180), (255, 127, 14), (220, 40, 40)

    def __init__(self, title: str, label: str) -> None:
        from PIL import ImageFont

        self.title, self.label = title, label
        self.font = ImageFont.load_default(size=13)
        self.big = ImageFont.load_default(size=16)

    def render(self, pixels: np.ndarray, curve: LightCurve) -> np.ndarray:
        """The picture, ``(HEIGHT, WIDTH, 3)`` uint8 RGB, row 0 at the top."""
        from PIL import Image, ImageDraw

        canvas = Image.new("RGB", (self.WIDTH, self.HEIGHT), "white")
        draw = ImageDraw.Draw(canvas)
        draw.text((self.MARGIN, 10), self.title, fill=self.INK, font=self.big)
        self._frame(canvas, draw, pixels, curve.aperture)
        self._curve(draw, curve)
        return np.asarray(canvas)

    def _frame(self, canvas: Image.Image, draw: ImageDraw.ImageDraw, pixels: np.ndarray,
               aperture: np.ndarray) -> None:
        ny, nx = pixels.shape
        scale = self.IMAGE / max(nx, ny)
        width, height = max(1, round(nx * scale)), max(1, round(ny * scale))
        left, top = self.MARGIN, self.TOP + (self.IMAGE - height) // 2
        from PIL import Image

        frame = Image.fromarray(np.flipud(pixels)).resize((width, height), Image.Resampling.NEAREST)
        canvas.paste(frame.convert("RGB"), (left, top))
        # Outline the aperture: edges between an aperture pixel and a non-aperture one.
        mask = np.pad(np.flipud(aperture), 1)
        for (dy, dx) in ((0, 1), (0, -1), (1, 0), (-1, 0)):
            edge = mask[1:-1, 1:-1] & ~mask[1 + dy:ny + 1 + dy, 1 + dx:nx + 1 + dx]
            for row, col in zip(*np.nonzero(edge)):
                x0, y0 = left + col * scale, top + row * scale
                if dx:
                    x = x0 + (scale if dx > 0 else 0)
                    draw.line([(x, y0), (x, y0 + scale)], fill=self.APERTURE, width=2)
                else:
                    y = y0 + (scale if dy > 0 else 0)
                    draw.line([(x0, y), (x0 + scale, y)], fill=self.APERTURE, width=2)
        draw.rectangle([left - 1, top - 1, left + width, top + height], outline=self.INK)
        draw.text((left, top + height + 6), f"{self.label}, {nx} x {ny} px", fill=self.INK, font=self.font)

    def _curve(self, draw: ImageDraw.ImageDraw, curve: LightCurve) -> None:
        left, right = self.MARGIN + self.IMAGE + 90, self.WIDTH - self.MARGIN
        top, bottom = self.TOP, self.TOP + self.IMAGE - 30
        draw.rectangle([left, top, right, bottom], outline=self.INK)
        good = np.isfinite(curve.flux) & np.isfinite(curve.time)
        draw.text((left + (right - left) // 2 - 40, bottom + 22), f"TIME [{curve.scale}]", fill=self.INK, font=self.font)
        draw.text((left - 84, top - 18), "aperture flux [e-/s]", fill=self.INK, font=self.font)
        if not good.any():
            draw.text((left + 20, top + 20), "no data", fill=self.INK, font=self.font)
            return
        t, f, q = curve.time[good], curve.flux[good], curve.quality[good]
        tmin, tmax = _padded_range(t)
        fmin, fmax = _padded_range(f)

        def px(value: np.ndarray, lo: float, hi: float, a: float, b: float) -> np.ndarray:
            return a + (value - lo) / (hi - lo) * (b - a)

        for tick in _ticks(fmin, fmax):
            y = float(px(tick, fmin, fmax, bottom, top))
            draw.line([(left, y), (right, y)], fill=self.GRID)
            text = _tick_label(tick, fmax - fmin)
            draw.text((left - 6 - self.font.getlength(text), y - 7), text, fill=self.INK, font=self.font)
        for tick in _ticks(tmin, tmax):
            x = float(px(tick, tmin, tmax, left, right))
            draw.line([(x, bottom), (x, bottom + 4)], fill=self.INK)
            text = _tick_label(tick, tmax - tmin)
            draw.text((x - self.font.getlength(text) / 2, bottom + 6), text, fill=self.INK, font=self.font)
        xs, ys = px(t, tmin, tmax, left, right), px(f, fmin, fmax, bottom, top)
        radius = 2 if len(t) < 2000 else 1
        for x, y, flag in zip(xs, ys, q):
            draw.ellipse([x - radius, y - radius, x + radius, y + radius],
                         fill=self.FLAGGED if flag else self.POINT)


def _padded_range(values: np.ndarray) -> tuple[float, float]:
    lo, hi = float(np.min(values)), float(np.max(values))
    pad = (hi - lo) * 0.05 or max(abs(lo) * 0.01, 1.0)
    return lo - pad, hi + pad


def _ticks(lo: float, hi: float, count: int = 6) -> np.ndarray:
    """About ``count`` round-numbered values between ``lo`` and ``hi``."""
    step = 10 ** math.floor(math.log10((hi - lo) / count))
    for multiple in (1, 2, 5, 10):
        if (hi - lo) / (step * multiple) <= count:
            step *= multiple
            break
    return np.arange(math.ceil(lo / step) * step, hi, step)


def _tick_label(value: float, span: float) -> str:
    decimals = max(0, -math.floor(math.log10(span / 5)))
    return f"{value:.{decimals}f}"
