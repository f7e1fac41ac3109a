"""GeoLists: the other users within one mile, ten miles and a hundred miles.

Only addresses ever leave this module; coordinates stay on the server.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

EARTH_RADIUS_MILES = 3958.7613
Point = tuple[float, float]

# (name shown on the page, radius in miles), smallest first.
RADII: tuple[tuple[str, float], ...] = (
    ("One Mile", 1),
    ("Ten Miles", 10),
    ("100 Miles", 100),
)


def haversine_miles(a: Point, b: Point) -> float:
    """Great-circle distance in miles between two (latitude, longitude) points in degrees."""
    lat1, lon1 = map(math.radians, a)
    lat2, lon2 = map(math.radians, b)
    h = (math.sin((lat2 - lat1) / 2) ** 2
         + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2)
    # min() guards asin against rounding just above 1 for antipodal points.
    return 2 * EARTH_RADIUS_MILES * math.asin(min(1.0, math.sqrt(h)))


def geolists(me: Point | None, others: Iterable[tuple[str, Point]],
             radii: tuple[tuple[str, float], ...] = RADII) -> list[dict]:
    """One list per radius: {"name", "miles", "count", "addresses"}, nearest first.

    `me` None (the user shared no location) gives no lists at all. An address
    given more than once counts once, at its nearest position. Lists nest: the
    ten-mile list holds the one-mile people too.
    """
    if me is None:
        return []
    nearest: dict[str, float] = {}
    for address, where in others:
        if where is None:
            continue
        d = haversine_miles(me, where)
        if address not in nearest or d < nearest[address]:
            nearest[address] = d
    ranked = sorted(nearest.items(), key=lambda item: (item[1], item[0]))
    out = []
    for name, miles in radii:
        addresses = [address for address, d in ranked if d <= miles]
        out.append({"name": name, "miles": miles, "count": len(addresses),
                    "addresses": addresses})
    return out
