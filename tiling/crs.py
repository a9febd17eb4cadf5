"""Mars coordinate reference systems and the one conversion to lon/lat on Mars.

- :data:`MARS_EQC`: equirectangular on the Mars 2015 sphere (radius 3,396,190 m, true scale
  at the equator), the grid of synthetic scenes: ``IAU_2015:49910``.
- :data:`MARS_LONLAT`: planetocentric longitude/latitude in degrees on the same sphere,
  longitudes east-positive in -180..180: ``IAU_2015:49900``, the CRS of the detection
  catalog and of STAC bounding boxes.

Both are built from their IAU authority code, so GDAL, QGIS and PROJ name them ("Mars (2015)
- Sphere / Ocentric / Equirectangular, clon = 0") and a GeoTIFF written with them reads back
as the same code. A PROJ database without the IAU codes (PROJ older than 8.2) gets the same
CRS from its WKT2, which carries the identifier.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from rasterio.crs import CRS
from rasterio.errors import CRSError

from impacts.errors import SceneError

log = logging.getLogger(__name__)

MARS_RADIUS_M = 3_396_190.0

MARS_EQC_CODE = "IAU_2015:49910"
MARS_LONLAT_CODE = "IAU_2015:49900"

_MARS_DATUM = (
    'DATUM["Mars (2015) - Sphere",ELLIPSOID["Mars (2015) - Sphere",3396190,0,LENGTHUNIT["metre",1]],'
    'ANCHOR["Viking 1 lander: 47.95137 W"]],'
    'PRIMEM["Reference Meridian",0,ANGLEUNIT["degree",0.0174532925199433]]'
)
_WKT2 = {
    MARS_LONLAT_CODE: (
        f'GEOGCRS["Mars (2015) - Sphere / Ocentric",{_MARS_DATUM},CS[ellipsoidal,2],'
        'AXIS["geodetic latitude (Lat)",north,ORDER[1],ANGLEUNIT["degree",0.0174532925199433]],'
        'AXIS["geodetic longitude (Lon)",east,ORDER[2],ANGLEUNIT["degree",0.0174532925199433]],'
        'ID["IAU",49900,2015]]'
    ),
    MARS_EQC_CODE: (
        'PROJCRS["Mars (2015) - Sphere / Ocentric / Equirectangular, clon = 0",'
        f'BASEGEOGCRS["Mars (2015) - Sphere / Ocentric",{_MARS_DATUM},ID["IAU",49900,2015]],'
        'CONVERSION["Equirectangular, clon = 0",METHOD["Equidistant Cylindrical",ID["EPSG",1028]],'
        'PARAMETER["Latitude of 1st standard parallel",0,ANGLEUNIT["degree",0.0174532925199433],ID["EPSG",8823]],'
        'PARAMETER["Longitude of natural origin",0,ANGLEUNIT["degree",0.0174532925199433],ID["EPSG",8802]],'
        'PARAMETER["False easting",0,LENGTHUNIT["metre",1],ID["EPSG",8806]],'
        'PARAMETER["False northing",0,LENGTHUNIT["metre",1],ID["EPSG",8807]]],'
        'CS[Cartesian,2],AXIS["(E)",east,ORDER[1],LENGTHUNIT["metre",1]],'
        'AXIS["(N)",north,ORDER[2],LENGTHUNIT["metre",1]],ID["IAU",49910,2015]]'
    ),
}


def mars_crs(code: str) -> CRS:
    """A Mars CRS from its IAU code, or from its WKT2 where PROJ lacks the code.

    Args:
        code: :data:`MARS_EQC_CODE` or :data:`MARS_LONLAT_CODE`.

    Returns:
        The CRS.
    """
    try:
        return CRS.from_string(code)
    except CRSError:
        log.debug("PROJ has no %s; using its WKT2", code)
        return CRS.from_wkt(_WKT2[code])


MARS_EQC = mars_crs(MARS_EQC_CODE)
MARS_LONLAT = mars_crs(MARS_LONLAT_CODE)


def crs_code(crs: Any) -> str | None:
    """The ``AUTHORITY:CODE`` of a CRS (``IAU_2015:49910``, ``EPSG:4326``), or None.

    Args:
        crs: A rasterio CRS, or None.

    Returns:
        The code when PROJ identifies the CRS with one, else None.
    """
    if crs is None:
        return None
    authority = crs.to_authority()
    return f"{authority[0]}:{authority[1]}" if authority else None


def to_lonlat(crs: Any, xs: Sequence[float], ys: Sequence[float]) -> tuple[list[float], list[float]]:
    """Map coordinates of a scene's CRS -> planetocentric lon/lat degrees on the Mars sphere.

    Args:
        crs: The scene's CRS (a rasterio CRS, WKT or ``AUTHORITY:CODE``).
        xs: Eastings (or longitudes) in that CRS.
        ys: Northings (or latitudes).

    Returns:
        ``(longitudes, latitudes)``: east-positive, -180..180 (:data:`MARS_LONLAT`).

    Raises:
        SceneError: The CRS is missing, unreadable, or not of Mars (PROJ cannot transform
            between bodies).
    """
    from rasterio._err import CPLE_BaseError
    from rasterio.warp import transform

    if crs is None or crs == "":
        raise SceneError("no CRS: lon/lat need a georeferenced scene; assign its CRS, e.g. gdal_edit -a_srs")
    if not xs:
        return [], []
    try:
        source = crs if isinstance(crs, CRS) else CRS.from_user_input(crs)
        lons, lats = transform(source, MARS_LONLAT, list(xs), list(ys))
    except (CRSError, CPLE_BaseError, ValueError) as exc:
        raise SceneError(
            f"cannot convert {str(crs)[:60]!r} to Mars lon/lat ({exc}); scenes must be in a Mars CRS, e.g. {MARS_EQC_CODE}"
        ) from exc
    return [(lon + 180.0) % 360.0 - 180.0 for lon in lons], list(lats)
