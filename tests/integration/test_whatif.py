"""The what-if: what homing would decide for a user at a place, and why,
with the scheduler's own engine, changing nothing."""
import json

import pytest

from conftest import homing_with_catalog, seed_snapshot


@pytest.fixture(scope="module")
def homing(database, db, topics, tmp_path_factory):
    # The production policy: a 30-minute dwell, three reports.
    yield from homing_with_catalog(db, database, topics, "whatif", "standalone",
                                   tmp_path_factory.mktemp("whatif"))


def counts(db):
    return db.execute("SELECT (SELECT count(*) FROM transfers), (SELECT count(*) FROM decisions),"
                      " (SELECT count(*) FROM snapshot_policy_state)").fetchone()


def test_a_user_far_from_the_snapshot_would_dwell_then_move(homing, db):
    seed_snapshot(db, "u-what", "t-tokyo")
    before = counts(db)
    status, _, raw = homing.get("/v1/users/u-what/what-if?lat=48.85&lon=2.29")
    assert status == 200, raw
    answer = json.loads(raw)
    [snap] = answer["snapshots"]
    assert snap["snapshot_id"] == "snap-u-what" and snap["current_dc"] == "t-tokyo"
    assert snap["now"]["outcome"] == "stay" and snap["now"]["reason"] == "dwell"
    assert snap["now"]["target_dc"] == "t-paris" and snap["now"]["dwell_reports"] == 1
    assert snap["once_settled"]["outcome"] == "move"
    assert snap["once_settled"]["reason"] == "closer"
    assert snap["once_settled"]["target_dc"] == "t-paris"
    assert snap["once_settled"]["template_present"] is True
    assert snap["once_settled"]["current_distance_m"] > 9_000_000
    assert answer["policy"]["dwell_ms"] == 1_800_000
    assert counts(db) == before, "the what-if wrote something"


def test_a_user_near_the_snapshot_would_stay_where_it_is(homing, db):
    seed_snapshot(db, "u-home", "t-sydney")
    answer, _ = homing.json("GET", "/v1/users/u-home/what-if?lat=-33.9&lon=151.2")
    assert answer["snapshots"][0]["now"]["reason"] == "already_nearest"
    assert answer["snapshots"][0]["once_settled"]["reason"] == "already_nearest"


def test_bad_questions_get_problems(homing):
    assert homing.get("/v1/users/u-nobody/what-if?lat=1&lon=1")[0] == 404
    assert homing.get("/v1/users/u-what/what-if?lat=91&lon=1")[0] == 400
    assert homing.get("/v1/users/u-what/what-if?lat=1")[0] == 400
    assert homing.get("/v1/users/u-what/what-if?lat=1&lon=1&ts=soon")[0] == 400
    assert homing.get("/v1/users/u-what/what-if?lat=1&lon=1", token=None)[0] == 401
