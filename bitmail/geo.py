"""GeoLists: the other users within one mile, ten miles and a hundred miles.

Only addresses ever leave this module; coordinates stay on the server. Even
so, which lists a user appears in, asked from positions of the asker's
choosing, is a distance oracle: bisecting the edge of a list in a few
directions would find anyone to the centimetre. So no precise position is
kept or compared at all:

- a position is snapped to the centre of its cell on a fixed grid whose
  cells are at least CELL_MILES across in both directions, before it is
  stored; every answer is a function of the two cells alone, so whatever
  positions an attacker claims, and with however many accounts, they learn
  at most which cell someone is in;
- a user's position changes at most once per MOVE_INTERVAL, which slows even
  that search down for a single account;
- lists are in address order, never nearest first;
- only users who chose to share a location take part (the page asks first),
  and `forget` takes them out again.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from typing import Any, TypeGuard

from . import live
from .errors import ValidationError
from .store import Kind, Store

EARTH_RADIUS_MILES = 3958.7613
Point = tuple[float, float]

# (name shown on the page, radius in miles), smallest first.
RADII: tuple[tuple[str, float], ...] = (
    ("One Mile", 1),
    ("Ten Miles", 10),
    ("100 Miles", 100),
)

# Rows one arc-minute of latitude high (a nautical mile, 1.15 statute miles),
# so no cell is smaller than the smallest list's radius. Each row is split
# into as many equal columns as keep a column at least as wide as a row is
# high at the row's edge nearest the pole.
CELL_DEGREES = 1 / 60
CELL_MILES = 2 * math.pi * EARTH_RADIUS_MILES * CELL_DEGREES / 360  # ≈ 1.151
MOVE_INTERVAL = 3600.0  # seconds between two accepted changes of a user's position
MOVED_AT = "location_moved_at"  # kept when a user leaves: when their position last changed


def haversine_miles(a: Point, b: Point) -> float:
    """Great-circle distance in miles between two (latitude, longitude) points in degrees."""
    lat1, lon1 = map(math.radians, a)
    lat2, lon2 = map(math.radians, b)
    h = (math.sin((lat2 - lat1) / 2) ** 2
         + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2)
    # min() guards asin against rounding just above 1 for antipodal points.
    return 2 * EARTH_RADIUS_MILES * math.asin(min(1.0, math.sqrt(h)))


def _columns(row: int) -> int:
    """How many columns row `row` has (at least one)."""
    south = row * CELL_DEGREES
    poleward = max(abs(south), abs(south + CELL_DEGREES))
    width = 360 * math.cos(math.radians(min(poleward, 90.0)))
    return max(1, math.floor(width / CELL_DEGREES))


def cell(point: Point) -> tuple[int, int]:
    """The (row, column) of the grid cell holding a (latitude, longitude) point."""
    lat, lon = point
    row = min(math.floor(lat / CELL_DEGREES), round(90 / CELL_DEGREES) - 1)
    columns = _columns(row)
    column = min(math.floor((lon + 180) / 360 * columns), columns - 1)
    return row, column


def cell_bounds(point: Point) -> tuple[Point, Point]:
    """The (south-west, north-east) corners of the point's cell, in degrees."""
    row, column = cell(point)
    width = 360 / _columns(row)
    south, west = row * CELL_DEGREES, -180 + column * width
    return (south, west), (south + CELL_DEGREES, west + width)


def snap(point: Point) -> Point:
    """The centre of the point's cell: all that is ever kept of a position."""
    (south, west), (north, east) = cell_bounds(point)
    return ((south + north) / 2, (west + east) / 2)


def _number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_location(location: object) -> Point:
    """`{"lat", "lon"}` in degrees as a point; ValidationError naming `location`."""
    if not isinstance(location, dict):
        raise ValidationError("must be {lat, lon}", field="location")
    lat, lon = location.get("lat"), location.get("lon")
    if not (_number(lat) and _number(lon)):
        raise ValidationError("lat and lon must be numbers", field="location")
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise ValidationError("lat/lon out of range", field="location")
    return float(lat), float(lon)


def geolists(me: Point | None, others: Iterable[tuple[str, Point | None]],
             radii: tuple[tuple[str, float], ...] = RADII) -> list[dict[str, Any]]:
    """One list per radius: {"name", "miles", "count", "addresses"}, addresses
    in alphabetical order (never by distance).

    Distances are measured between cell centres, so the answer depends only
    on the cells. `me` None (the user shared no location) gives no lists at
    all. An address given more than once counts once, at its nearest
    position. Lists nest: the ten-mile list holds the one-mile people too.
    """
    if me is None:
        return []
    here = snap(me)
    nearest: dict[str, float] = {}
    for address, where in others:
        if where is None:
            continue
        d = haversine_miles(here, snap(where))
        if address not in nearest or d < nearest[address]:
            nearest[address] = d
    out = []
    for name, miles in radii:
        addresses = sorted(address for address, d in nearest.items() if d <= miles)
        out.append({"name": name, "miles": miles, "count": len(addresses),
                    "addresses": addresses})
    return out


class Places:
    """Users' shared positions in the store (on their "user" documents)."""

    def __init__(self, store: Store, *, move_interval: float = MOVE_INTERVAL):
        self.store = store
        self.move_interval = move_interval

    async def share(self, username: str, location: object, *,
                    now: float | None = None) -> None:
        """Record the user's position (its cell's centre). A user whose
        position changed less than `move_interval` seconds ago keeps it.
        ValidationError (field `location`) for a bad one."""
        lat, lon = snap(check_location(location))
        at = time.time() if now is None else now

        moved = False

        def move(doc: dict[str, Any]) -> dict[str, Any] | None:
            nonlocal moved
            old = doc.get("location")
            if old and (old["lat"], old["lon"]) == (lat, lon):
                return None  # the same cell
            # Leaving and sharing again does not reset the clock.
            last = old.get("at", 0) if old else doc.get(MOVED_AT, 0)
            if at - last < self.move_interval:
                return None  # moved too recently
            moved = True
            return {**doc, "location": {"lat": lat, "lon": lon, "at": at}}

        await self.store.update(Kind.USER, username, move)
        if moved:  # open pages fetch their lists again (GeoLists are live)
            await self.store.publish(live.geolists_changed())

    async def forget(self, username: str) -> None:
        """Take the user out of GeoLists: their position is deleted."""
        dropped = False

        def drop(doc: dict[str, Any]) -> dict[str, Any] | None:
            nonlocal dropped
            if "location" not in doc:
                return None
            dropped = True
            kept = {k: v for k, v in doc.items() if k != "location"}
            kept[MOVED_AT] = doc["location"].get("at", 0)  # when, never where
            return kept

        await self.store.update(Kind.USER, username, drop)
        if dropped:
            await self.store.publish(live.geolists_changed())

    async def everyone(self) -> dict[str, Point]:
        """username → position (a cell centre) of every user who shares one."""
        out = {}
        for doc in await self.store.get(Kind.USER):
            if loc := doc.get("location"):
                out[doc["id"]] = snap((loc["lat"], loc["lon"]))
        return out
