"""GeoLists against a hostile user (issue 11, item 2).

The attack: log in with locations of one's choosing (a fresh account each
time, so no per-account limit helps) and read /api/geolists, bisecting the
edge of the 100-mile list east-west and then north-south. Before the fix it
found a user to within centimetres in under 100 requests. Now positions are
snapped to cells at least a mile across, so two users anywhere in one cell
give the attacker exactly the same answers.
"""

from __future__ import annotations

import itertools
import json
import time

from argon2 import PasswordHasher

from bitmail.geo import CELL_MILES, MOVE_INTERVAL, cell_bounds, haversine_miles, snap

from conftest import Service

PASSWORD = "correct horse battery"
# Two users 1.1 miles apart, in one arc-minute row of latitude (40°42' to 40°43')
# and on one meridian: a single GeoLists cell.
T1 = (40.7003, -74.0060)
T2 = (40.7163, -74.0060)
NEAR = (40.75, -73.95)  # where the attacker starts: somewhere within 100 miles
STEPS = 22  # bisection steps per edge: 3° / 2**22 is about 6 cm


class Attacker:
    """Reads GeoLists from positions of its choosing, one new account per probe."""

    def __init__(self, service: Service, target: str):
        self.service = service
        self.target = target
        self.probes = 0
        self._names = (f"probe{n}" for n in itertools.count())

    async def sees(self, point: tuple[float, float]) -> bool:
        """Whether the target is in the 100-mile list seen from `point`."""
        self.probes += 1
        await self.service.login(next(self._names), PASSWORD,
                                 location={"lat": point[0], "lon": point[1]})
        resp = await self.service.client.get("/api/geolists")
        lists = (await resp.json())["lists"]
        return self.target in lists[2]["addresses"]

    async def edge(self, inside: tuple[float, float], outside: tuple[float, float]
                   ) -> tuple[float, float]:
        for _ in range(STEPS):
            mid = ((inside[0] + outside[0]) / 2, (inside[1] + outside[1]) / 2)
            if await self.sees(mid):
                inside = mid
            else:
                outside = mid
        return inside

    async def locate(self) -> tuple[float, float]:
        """The target's position as the attack estimates it. Along a parallel
        the distance is symmetric in longitude, along a meridian (once on the
        target's) in latitude: each pair of edges' midpoint is exact."""
        lat, lon = NEAR
        assert await self.sees(NEAR)
        west = await self.edge(NEAR, (lat, lon - 3))
        east = await self.edge(NEAR, (lat, lon + 3))
        lon = (west[1] + east[1]) / 2
        south = await self.edge((lat, lon), (lat - 2, lon))
        north = await self.edge((lat, lon), (lat + 2, lon))
        return (south[0] + north[0]) / 2, lon


def cheap_passwords(service: Service) -> None:
    # The attack makes ~90 accounts; the real hasher would only make it slow.
    service.runtime.accounts.hasher = PasswordHasher(time_cost=1, memory_cost=1024,
                                                     parallelism=1)


async def test_bisecting_the_100_mile_edge_cannot_tell_apart_two_users_in_one_cell(service):
    cheap_passwords(service)
    assert snap(T1) == snap(T2) and haversine_miles(T1, T2) > 1.0
    await service.login("tara", PASSWORD, location={"lat": T1[0], "lon": T1[1]})
    await service.login("tom", PASSWORD, location={"lat": T2[0], "lon": T2[1]})

    tara = Attacker(service, "tara@localhost")
    found_tara = await tara.locate()
    tom = Attacker(service, "tom@localhost")
    found_tom = await tom.locate()

    # After ~90 chosen logins each, the attacker got exactly the same answers
    # for both: it cannot place either more precisely than their common cell.
    assert tara.probes <= 100
    assert found_tara == found_tom
    errors = [haversine_miles(found_tara, T1), haversine_miles(found_tom, T2)]
    assert max(errors) > 0.5, errors


def test_every_cell_is_at_least_a_mile_across():
    for lat in (0.0, 23.4, 40.7, 51.5, 66.5, 78.2, 89.99, -33.9, -89.99):
        for lon in (-179.99, -74.0, 0.0, 139.7, 179.99):
            (south, west), (north, east) = cell_bounds((lat, lon))
            assert south <= lat < north and west <= lon < east
            high = haversine_miles((south, west), (north, west))
            # Width measured along the cell's edge nearest the pole, where it is least.
            edge = north if abs(north) > abs(south) else south
            wide = haversine_miles((edge, west), (edge, east))
            assert high >= 1.0 and (wide >= 1.0 or east - west >= 359), (lat, lon, high, wide)
    assert CELL_MILES >= 1.0


async def test_only_the_cell_centre_is_stored(service):
    await service.login("una", PASSWORD, location={"lat": T1[0], "lon": T1[1]})
    doc = await service.runtime.store.get_one("user", {"id": "una"})
    assert (doc["location"]["lat"], doc["location"]["lon"]) == snap(T1)
    assert T1[0] != doc["location"]["lat"]


async def test_a_position_changes_at_most_once_an_hour(service):
    far = (41.5, -74.0)
    await service.login("vera", PASSWORD, location={"lat": T1[0], "lon": T1[1]})
    await service.login("vera", PASSWORD, location={"lat": far[0], "lon": far[1]})
    doc = await service.runtime.store.get_one("user", {"id": "vera"})
    assert (doc["location"]["lat"], doc["location"]["lon"]) == snap(T1)
    # An hour later the move is taken.
    await service.runtime.store.update("user", "vera", lambda d: {
        **d, "location": {**d["location"], "at": time.time() - MOVE_INTERVAL - 1}})
    await service.login("vera", PASSWORD, location={"lat": far[0], "lon": far[1]})
    doc = await service.runtime.store.get_one("user", {"id": "vera"})
    assert (doc["location"]["lat"], doc["location"]["lon"]) == snap(far)


async def test_geolists_are_opt_in_and_leaving_deletes_the_position(service):
    await service.login("walt", PASSWORD)  # shares nothing
    await service.login("xena", PASSWORD, location={"lat": T1[0], "lon": T1[1]})
    await service.login("yuri", PASSWORD, location={"lat": T2[0], "lon": T2[1]})
    lists = (await (await service.client.get("/api/geolists")).json())["lists"]
    assert lists[0]["addresses"] == ["xena@localhost"]

    me = await service.login("xena", PASSWORD)
    resp = await service.client.delete("/api/geolists",
                                       headers={"X-CSRF-Token": me["csrf_token"]})
    assert resp.status == 204
    doc = await service.runtime.store.get_one("user", {"id": "xena"})
    assert "location" not in doc
    answer = await (await service.client.get("/api/geolists")).json()
    assert answer == {"lists": [], "located": False}
    await service.login("yuri", PASSWORD)
    lists = (await (await service.client.get("/api/geolists")).json())["lists"]
    assert [g["count"] for g in lists] == [0, 0, 0]
    await service.login("walt", PASSWORD)
    assert (await (await service.client.get("/api/geolists")).json())["located"] is False


async def test_leaving_and_sharing_again_does_not_reset_the_hourly_limit(service):
    far = (41.5, -74.0)
    me = await service.login("zoe", PASSWORD, location={"lat": T1[0], "lon": T1[1]})
    leave = await service.client.delete("/api/geolists",
                                        headers={"X-CSRF-Token": me["csrf_token"]})
    assert leave.status == 204
    await service.login("zoe", PASSWORD, location={"lat": far[0], "lon": far[1]})
    doc = await service.runtime.store.get_one("user", {"id": "zoe"})
    assert "location" not in doc  # still within the hour: no new position yet
    assert str(snap(T1)[0]) not in json.dumps(doc)  # and nothing of the old one
