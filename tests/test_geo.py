"""GeoLists: distances, radii, ordering, and no coordinates in the answer."""

from __future__ import annotations

import json

import pytest

from bitmail.geo import cell_bounds, geolists, haversine_miles, snap

HOME = snap((40.0, -75.0))  # a cell's centre, so north(0.2) is in the same cell
# One degree of latitude is about 69.09 miles anywhere on Earth.
MILES_PER_DEG_LAT = 69.09


def north(miles: float) -> tuple[float, float]:
    return (HOME[0] + miles / MILES_PER_DEG_LAT, HOME[1])


def test_distance_to_itself_is_zero():
    assert haversine_miles(HOME, HOME) == 0


def test_london_to_paris_is_about_214_miles():
    assert haversine_miles((51.5074, -0.1278), (48.8566, 2.3522)) == pytest.approx(213.5, abs=1.5)


def test_distance_is_symmetric_and_handles_the_date_line():
    a, b = (10.0, 179.5), (10.0, -179.5)
    assert haversine_miles(a, b) == pytest.approx(haversine_miles(b, a))
    assert haversine_miles(a, b) < 70


def test_antipodes_are_half_the_circumference():
    assert haversine_miles((0.0, 0.0), (0.0, 180.0)) == pytest.approx(12437.2, rel=1e-3)


def test_one_degree_of_latitude():
    assert haversine_miles(HOME, north(MILES_PER_DEG_LAT)) == pytest.approx(69.09, rel=1e-3)


def test_lists_for_one_ten_and_a_hundred_miles_nest_and_count_in_address_order():
    others = [
        ("far@x", north(150)),
        ("fifty@x", north(50)),
        ("half@x", north(0.2)),
        ("five@x", north(5)),
        ("near@x", north(0.1)),
    ]
    lists = geolists(HOME, others)
    assert [(g["name"], g["miles"], g["count"]) for g in lists] == [
        ("One Mile", 1, 2), ("Ten Miles", 10, 3), ("100 Miles", 100, 4)]
    # Alphabetical, never nearest first: the order tells nothing of distance.
    assert lists[0]["addresses"] == ["half@x", "near@x"]
    assert lists[1]["addresses"] == ["five@x", "half@x", "near@x"]
    assert lists[2]["addresses"] == ["fifty@x", "five@x", "half@x", "near@x"]


def test_the_one_mile_list_is_the_same_cell():
    (south, _), (north_edge, _) = cell_bounds(HOME)
    inside = (north_edge - 1e-9, HOME[1])
    next_cell = (north_edge + 1e-9, HOME[1])
    lists = geolists((south + 1e-9, HOME[1]), [("in@x", inside), ("out@x", next_cell)])
    assert lists[0]["addresses"] == ["in@x"]
    assert lists[1]["addresses"] == ["in@x", "out@x"]


def test_no_location_no_lists():
    assert geolists(None, [("a@x", HOME)]) == []


def test_nobody_else_gives_empty_lists():
    assert [g["count"] for g in geolists(HOME, [])] == [0, 0, 0]


def test_a_user_listed_twice_counts_once_at_the_nearer_place():
    lists = geolists(HOME, [("a@x", north(50)), ("a@x", north(0.1))])
    assert lists[0]["addresses"] == ["a@x"]
    assert lists[2]["count"] == 1


def test_answer_carries_no_coordinates():
    lists = geolists(HOME, [("a@x", north(0.3))])
    text = json.dumps(lists)
    assert str(HOME[0]) not in text and "lat" not in text and "lon" not in text
    assert set(lists[0]) == {"name", "miles", "count", "addresses"}
