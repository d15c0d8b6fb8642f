"""Line-of-sight geometry shared by the generators and the loaders.

Conventions (the same as :mod:`wfm.data.csi_generator`): the base station (BS) sits at
the origin of a local east/north/up frame in metres, or at ``bs`` when given; azimuth is
measured from the BS boresight (the +x axis unless ``boresight_deg`` says otherwise),
counter-clockwise, in degrees; elevation is the angle of the user above the BS's
horizontal plane (negative for a user below a mast).
"""

from __future__ import annotations

import numpy as np

EARTH_RADIUS_M = 6_371_008.8  # mean Earth radius (IUGG), enough for metre-scale GPS tracks


def los_distance_aoa(position: np.ndarray, bs: np.ndarray | None = None,
                     boresight_deg: float = 0.0, unwrap: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """3D distance (m) and LoS ``[azimuth, elevation]`` (deg) of positions ``[..., L, 3]``.

    With ``unwrap`` the azimuth is made continuous along the last time axis (it may
    leave (-180, 180]): a forecaster should not see a 360-degree jump when a user walks
    behind the mast.
    """
    rel = np.asarray(position, dtype=np.float64) - (0.0 if bs is None else np.asarray(bs, np.float64))
    dist = np.linalg.norm(rel, axis=-1)
    az = np.arctan2(rel[..., 1], rel[..., 0]) - np.deg2rad(boresight_deg)
    az = np.remainder(az + np.pi, 2 * np.pi) - np.pi
    if unwrap:
        az = np.unwrap(az, axis=-1)
    el = np.arctan2(rel[..., 2], np.linalg.norm(rel[..., :2], axis=-1))
    return dist, np.rad2deg(np.stack([az, el], axis=-1))


def gps_to_local(latlon: np.ndarray, origin: np.ndarray) -> np.ndarray:
    """Local east/north offsets (m) of ``[..., 2]`` lat/lon (deg) around ``origin``.

    Equirectangular projection: exact to millimetres over the few hundred metres of a
    DeepSense scene, and far simpler than a full geodesic.
    """
    latlon = np.asarray(latlon, dtype=np.float64)
    o = np.deg2rad(np.asarray(origin, dtype=np.float64))
    lat0, lon0 = o[..., 0], o[..., 1]
    lat, lon = np.deg2rad(latlon[..., 0]), np.deg2rad(latlon[..., 1])
    east = (lon - lon0) * np.cos(lat0) * EARTH_RADIUS_M
    north = (lat - lat0) * EARTH_RADIUS_M
    return np.stack([east, north], axis=-1)


def local_to_gps(east_north: np.ndarray, origin: tuple[float, float]) -> np.ndarray:
    """Lat/lon (deg) of local east/north offsets ``[..., 2]`` (m) around ``origin``: the inverse of
    :func:`gps_to_local` (the same equirectangular projection)."""
    lat0 = np.deg2rad(origin[0])
    lat = origin[0] + np.rad2deg(east_north[..., 1] / EARTH_RADIUS_M)
    lon = origin[1] + np.rad2deg(east_north[..., 0] / (EARTH_RADIUS_M * np.cos(lat0)))
    return np.stack([lat, lon], axis=-1)


def gps_bearing(bs_latlon: np.ndarray, ue_latlon: np.ndarray) -> np.ndarray:
    """Compass bearing (deg clockwise from north, in [0, 360)) from the BS to the user."""
    en = gps_to_local(ue_latlon, bs_latlon)
    return np.remainder(np.rad2deg(np.arctan2(en[..., 0], en[..., 1])), 360.0)
