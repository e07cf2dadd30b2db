"""Realistic synthetic TESS FFIs (SPOC and TICA) with the real per-sector WCS from tesswcs.

``make_sector`` writes a run of FFIs of one sector/camera/CCD (optionally a crop) plus the
catalog of injected stars; ``star_catalog`` returns that catalog without writing anything.
Pixel coordinates are 0-based (numpy / ``world_to_pixel``); FITS keywords are 1-based.
"""
from .ffi import make_sector
from .stars import star_catalog

__all__ = ["make_sector", "star_catalog"]
