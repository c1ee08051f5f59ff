"""Every way a transfer is queued puts the same job on the transfers topic:
the scheduler's move, an operator's retry, an evacuation's bulk copy, a
failback and a replica's refresh each publish one job with the same members
(schemas/transfer-job.json, README "Kafka"), the ones that do not apply
null. The jobs are read back from Kafka, where the relay put them."""
import json
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator
from referencing import Registry, Resource

from conftest import homing_with_catalog, read_topic, report, seed_snapshot, wait_for

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
JOB = "https://homing.io/schemas/v1/transfer-job.json"
MEMBERS = {"transfer_id", "kind", "snapshot_id", "version", "from_dc", "to_dc", "template_id",
           "template_present", "priority", "reason", "bytes_total", "idempotency_key",
           "retry_of"}


def job_validator():
    docs = [json.loads((SCHEMAS / name).read_text()) for name in ("defs.json", "transfer-job.json")]
    registry = Registry().with_resources((d["$id"], Resource.from_contents(d)) for d in docs)
    return Draft202012Validator(registry.contents(JOB), registry=registry)


@pytest.fixture(scope="module")
def homing(database, db, topics, tmp_path_factory):
    # No dwell: the first report near a better site moves the snapshot; no
    # replica pass: the refresh below is the only replicate.
    yield from homing_with_catalog(db, database, topics, "transfer-jobs", "standalone",
                                   tmp_path_factory.mktemp("transfer-jobs"),
                                   extra={"HOMING_DWELL_S": "0", "HOMING_DWELL_REPORTS": "1",
                                          "HOMING_REPLICA_PASS_S": "0",
                                          "HOMING_CATALOG_REFRESH_S": "1"})


def transfer_of(db, snapshot, **where):
    cond = "".join(f" AND {k} = %s" for k in where)
    row = db.execute(f"SELECT id FROM transfers WHERE snapshot_id = %s{cond} ORDER BY id DESC",
                     (snapshot, *where.values())).fetchone()
    return row[0] if row else None


def queue_a_move(homing, db):
    seed_snapshot(db, "u-jm-move", "t-tokyo", snapshot="jm-move")
    status, _, raw = homing.post("/v1/locations",
                                 report(user="u-jm-move", device="d-jm-move", lat=48.85,
                                        lon=2.29))
    assert status == 202, raw
    return wait_for(lambda: transfer_of(db, "jm-move"), what="the move")


def queue_a_retry(homing, db):
    seed_snapshot(db, "u-jm-retry", "t-tokyo", snapshot="jm-retry")
    failed = db.execute("INSERT INTO transfers (snapshot_id, from_dc, to_dc, template_id,"
                        " template_present, reason, idempotency_key, bytes_total)"
                        " VALUES ('jm-retry', 't-tokyo', 't-frankfurt', 'tpl-1', false,"
                        " 'closer', 'jm-retry-first', 1500) RETURNING id").fetchone()[0]
    db.execute("UPDATE transfers SET state = 'failed' WHERE id = %s", (failed,))
    new, _ = homing.json("POST", f"/v1/transfers/{failed}/retry", expect=201,
                         token=homing.token("operator"))
    return new["id"], failed


def queue_an_evacuation(homing, db):
    # Its user in Frankfurt: the evacuation of Ashburn copies it there.
    db.execute("INSERT INTO snapshots (id, user_id, template_id, size_bytes, priority)"
               " VALUES ('jm-evac', 'u-jm-evac', 'tpl-1', 500, 2)")
    db.execute("INSERT INTO placements (snapshot_id, datacenter_id, version, active,"
               " content_sha256) VALUES ('jm-evac', 't-virginia', 1, true, repeat('a', 64))")
    db.execute("INSERT INTO snapshot_versions (snapshot_id, version, content_sha256, size_bytes,"
               " virtual_size, datacenter_id) VALUES ('jm-evac', 1, repeat('a', 64), 500, 500,"
               " 't-virginia')")
    db.execute("INSERT INTO device_locations (device_id, user_id, lat, lon, accuracy_m,"
               " reported_at, received_at) VALUES ('d-jm-evac', 'u-jm-evac', 50.1, 8.7, 10,"
               " now(), now())")
    operator = homing.token("operator")
    homing.json("PUT", "/v1/datacenters/t-virginia/status", {"status": "draining"},
                token=operator)
    plan = homing.json("POST", "/v1/datacenters/t-virginia/evacuations", {"dry_run": True},
                       expect=201, token=operator)[0]
    homing.json("POST", f"/v1/evacuations/{plan['id']}/execute", token=operator)
    return wait_for(lambda: transfer_of(db, "jm-evac", kind="evacuate"), timeout=30,
                    what="the evacuation's bulk copy")


def queue_a_failback(homing, db):
    # Active at Sydney, its warm replica at Tokyo: Sydney down fails it over
    # to Tokyo; back up, the failback moves it home.
    seed_snapshot(db, "u-jm-fb", "t-sydney", snapshot="jm-fb")
    copy = db.execute("INSERT INTO placements (snapshot_id, datacenter_id, version, active)"
                      " VALUES ('jm-fb', 't-tokyo', 1, false) RETURNING id").fetchone()[0]
    db.execute("INSERT INTO replicas (snapshot_id, datacenter_id, placement_id)"
               " VALUES ('jm-fb', 't-tokyo', %s)", (copy,))
    operator = homing.token("operator")
    homing.json("PUT", "/v1/datacenters/t-sydney/status", {"status": "down"}, token=operator)
    homing.json("PUT", "/v1/datacenters/t-sydney/status", {"status": "active"}, token=operator)
    fid = homing.json("GET", "/v1/failovers?datacenter_id=t-sydney")[0]["items"][0]["id"]
    homing.json("POST", f"/v1/failovers/{fid}/failback", token=operator, expect=202)
    return transfer_of(db, "jm-fb", reason="failback")


def queue_a_replica_refresh(homing, db, topic):
    # A designated copy at Frankfurt that is not there yet: the replica
    # pass's statement (here called alone) queues its refresh.
    seed_snapshot(db, "u-jm-replica", "t-paris", snapshot="jm-replica")
    db.execute("UPDATE snapshots SET version = 3 WHERE id = 'jm-replica'")
    db.execute("INSERT INTO replicas (snapshot_id, datacenter_id)"
               " VALUES ('jm-replica', 't-frankfurt')")
    (tid,) = db.execute("SELECT transfer_id FROM homing_queue_replica_refreshes("
                        "'protection', %s, ARRAY['jm-replica'])", (topic,)).fetchone()
    return tid


def test_every_way_of_queueing_a_transfer_publishes_the_same_job(homing, db, topics):
    move = queue_a_move(homing, db)
    retry, retried = queue_a_retry(homing, db)
    evacuation = queue_an_evacuation(homing, db)
    failback = queue_a_failback(homing, db)
    refresh = queue_a_replica_refresh(homing, db, topics["transfers"])
    ids = {"move": move, "retry": retry, "evacuation": evacuation, "failback": failback,
           "replica refresh": refresh}
    assert all(ids.values()), ids

    def published():
        got = {v["transfer_id"]: (k, v) for k, v in
               read_topic(topics["transfers"], expect=1000, timeout=10)}
        return got if set(ids.values()) <= set(got) else None
    got = wait_for(published, timeout=60, what="the five jobs on the transfers topic")
    jobs = {path: got[tid][1] for path, tid in ids.items()}

    # One set of members, whoever queued it: (missing, unexpected) by path.
    assert {path: (sorted(MEMBERS - job.keys()), sorted(job.keys() - MEMBERS))
            for path, job in jobs.items()} == {path: ([], []) for path in jobs}
    validator = job_validator()
    for path, tid in ids.items():
        key, job = got[tid]
        validator.validate(job)
        assert key == job["snapshot_id"], path

    # And each says what its transfer is.
    for path, job in jobs.items():
        row = db.execute("SELECT kind, snapshot_id, version, from_dc, to_dc, template_id,"
                         " template_present, priority, reason, bytes_total, idempotency_key,"
                         " retry_of FROM transfers WHERE id = %s", (job["transfer_id"],)
                         ).fetchone()
        assert tuple(job[k] for k in ("kind", "snapshot_id", "version", "from_dc", "to_dc",
                                      "template_id", "template_present", "priority", "reason",
                                      "bytes_total", "idempotency_key", "retry_of")) == row, path
    assert {path: (job["kind"], job["retry_of"]) for path, job in jobs.items()} == {
        "move": ("move", None), "retry": ("move", retried), "evacuation": ("evacuate", None),
        "failback": ("move", None), "replica refresh": ("replicate", None)}
    assert (jobs["move"]["version"], jobs["replica refresh"]["version"]) == (1, 3)
    assert (jobs["failback"]["from_dc"], jobs["failback"]["to_dc"]) == ("t-tokyo", "t-sydney")


def test_a_job_without_a_member_is_refused_by_the_schema():
    validator = job_validator()
    good = {"transfer_id": 7, "kind": "move", "snapshot_id": "s", "version": 1,
            "from_dc": None, "to_dc": "t-paris", "template_id": "tpl-1",
            "template_present": True, "priority": 3, "reason": "closer", "bytes_total": 500,
            "idempotency_key": "k", "retry_of": None}
    validator.validate(good)
    for member in MEMBERS:
        assert list(validator.iter_errors({k: v for k, v in good.items() if k != member})), member
    assert list(validator.iter_errors(good | {"kind": "teleport"}))
