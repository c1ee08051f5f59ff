#!/usr/bin/env python3
"""Writes homing's OpenAPI 3.1 document, and the same text as a C string
for the binary to serve at /v1/openapi.json. Run by the build:

    openapi.py OUT.json OUT.c

The operations below mirror api/router.c route by route; each carries
x-homing-access (public, device, viewer, operator, admin, agent), and
tests/integration/test_rest_openapi.py checks both lists are the same."""
import json
import sys

VERSION = "0.1.0"

# ---- reusable pieces --------------------------------------------------------

def ref(name):
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(schema):
    return {"oneOf": [schema, {"type": "null"}]}


ID = {"type": "string", "pattern": "^[A-Za-z0-9_.:@-]{1,64}$"}
TIME = {"type": "string", "format": "date-time"}
COUNT = {"type": "integer", "minimum": 0}
KM = {"type": "number", "minimum": 0, "maximum": 40075}
STATUS = {"type": "string", "enum": ["active", "draining", "down"]}
STATE = {"type": "string", "enum": ["queued", "running", "succeeded", "failed", "cancelled"]}
PRIORITY = {"type": "integer", "minimum": 1, "maximum": 5, "default": 3,
            "description": "1 (most urgent) to 5"}
FAILURE_DOMAIN = nullable({"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$",
                           "description": "datacenters that fail together share one; a "
                                          "snapshot's replica lives outside its active site's"})
SHA256 = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
EPOCH = {"type": "integer", "minimum": 0}
POWER = {"type": "string", "enum": ["on", "off"], "default": "off",
         "description": "whether the VM should run (at the active placement's datacenter)"}
POWER_STATE = {"type": "string", "enum": ["powered_on", "powered_off", "failed"]}
OWNER = {"type": "string", "minLength": 1, "maxLength": 256,
         "description": "the agent instance holding the lease"}


def obj(props, required=(), extra=False):
    o = {"type": "object", "properties": props, "additionalProperties": extra}
    if required:
        o["required"] = list(required)
    return o


def page_of(name):
    return obj({"items": {"type": "array", "items": ref(name)},
                "next_cursor": nullable({"type": "string"})}, ["items", "next_cursor"])


COMPOSE_EXTENTS = {"type": "array", "items": obj({
    "offset": COUNT, "length": {"type": "integer", "minimum": 4096, "multipleOf": 4096}},
    ["offset", "length"])}

SCHEMAS = {
    "Problem": obj({
        "type": {"type": "string"}, "title": {"type": "string"},
        "status": {"type": "integer"}, "detail": {"type": "string"},
        "errors": {"type": "array", "items": obj({"pointer": {"type": "string"},
                                                   "detail": {"type": "string"}})},
    }, ["type", "title", "status", "detail"], extra=True),
    "Datacenter": obj({
        "id": ID, "name": {"type": "string"}, "provider": nullable({"type": "string"}),
        "city": nullable({"type": "string"}), "country_code": nullable({"type": "string"}),
        "lat": {"type": "number", "minimum": -90, "maximum": 90},
        "lon": {"type": "number", "minimum": -180, "maximum": 180},
        "status": STATUS, "capacity_bytes": COUNT, "used_bytes": COUNT,
        "reserved_bytes": {**COUNT, "description": "promised to transfers in flight here"},
        "cached_bytes": {**COUNT, "description": "held by cached copies (older versions kept to "
                                                 "make later transfers small; evicted for age "
                                                 "or room)"},
        "agent_url": nullable({"type": "string",
                               "description": "where the datacenter's agent answers its peers"}),
        "failure_domain": FAILURE_DOMAIN,
        "snapshots": {"type": "integer", "description": "active placements held here"},
        "distance_m": {"type": "number", "description": "only in /v1/datacenters/nearest"},
        "created_at": TIME, "updated_at": TIME,
    }, ["id", "name", "lat", "lon", "status", "capacity_bytes", "used_bytes", "snapshots"]),
    "DatacenterInput": obj({
        "id": ID, "name": {"type": "string"}, "provider": nullable({"type": "string"}),
        "city": nullable({"type": "string"}),
        "country_code": nullable({"type": "string", "pattern": "^[A-Z]{2}$"}),
        "lat": {"type": "number", "minimum": -90, "maximum": 90},
        "lon": {"type": "number", "minimum": -180, "maximum": 180},
        "status": STATUS, "capacity_bytes": COUNT, "used_bytes": COUNT,
        "failure_domain": FAILURE_DOMAIN,
    }, ["id", "name", "lat", "lon"]),
    "DatacenterPatch": obj({
        "name": {"type": "string"}, "provider": nullable({"type": "string"}),
        "city": nullable({"type": "string"}),
        "country_code": nullable({"type": "string", "pattern": "^[A-Z]{2}$"}),
        "lat": {"type": "number", "minimum": -90, "maximum": 90},
        "lon": {"type": "number", "minimum": -180, "maximum": 180},
        "capacity_bytes": COUNT, "used_bytes": COUNT, "failure_domain": FAILURE_DOMAIN,
    }),
    "StatusChange": obj({"status": STATUS}, ["status"]),
    "Template": obj({
        "id": ID, "name": {"type": "string"}, "size_bytes": COUNT,
        "replicas": {"type": "array", "items": ID}, "created_at": TIME, "updated_at": TIME,
    }, ["id", "name", "size_bytes", "replicas"]),
    "TemplateInput": obj({"id": ID, "name": {"type": "string"}, "size_bytes": COUNT},
                         ["id", "name", "size_bytes"]),
    "TemplatePatch": obj({"name": {"type": "string"}, "size_bytes": COUNT}),
    "TemplateReplica": obj({"template_id": ID, "datacenter_id": ID, "created_at": TIME}),
    "ActivePlacement": obj({"datacenter_id": ID, "version": {"type": "integer"},
                            "epoch": EPOCH, "since": TIME}),
    "Snapshot": obj({
        "id": ID, "user_id": ID, "template_id": ID, "size_bytes": COUNT,
        "priority": PRIORITY, "version": {"type": "integer"},
        "allowed_zones": {"type": "array", "items": ID},
        "power": POWER,
        "epoch": {**EPOCH, "description": "advanced by every switch of the active placement"},
        "placement": nullable(ref("ActivePlacement")),
        "replicas": {"type": "array", "items": ref("Replica"),
                     "description": "its warm replicas and their lag (protection policies)"},
        "powered_on_at": {"type": "array", "items": ID,
                          "description": "the datacenters whose latest power record says the "
                                         "VM runs there"},
        "created_at": TIME, "updated_at": TIME,
    }, ["id", "user_id", "template_id", "size_bytes", "priority", "allowed_zones", "power",
        "epoch", "placement", "powered_on_at"]),
    "SnapshotInput": obj({
        "id": ID, "user_id": ID, "template_id": ID, "size_bytes": COUNT,
        "priority": PRIORITY, "allowed_zones": {"type": "array", "items": ID},
        "datacenter_id": {**ID, "description": "where the snapshot is now (its first placement)"},
    }, ["id", "user_id", "template_id", "size_bytes", "datacenter_id"]),
    "SnapshotPatch": obj({"size_bytes": COUNT, "priority": PRIORITY,
                          "allowed_zones": {"type": "array", "items": ID}, "power": POWER}),
    "Placement": obj({
        "id": {"type": "integer"}, "snapshot_id": ID, "datacenter_id": ID,
        "version": {"type": "integer"}, "active": {"type": "boolean"},
        "replica": {"type": "boolean", "description": "the copy of a designated replica"},
        "epoch": {**EPOCH, "description": "the epoch it was made active under (0: before "
                                          "fencing)"},
        "created_at": TIME, "deactivated_at": nullable(TIME),
    }),
    "Decision": obj({
        "id": {"type": "integer"}, "snapshot_id": ID, "user_id": ID, "device_id": ID,
        "outcome": {"type": "string"}, "reason": {"type": "string"},
        "from_dc": nullable(ID), "to_dc": nullable(ID),
        "from_distance_m": nullable({"type": "number"}),
        "to_distance_m": nullable({"type": "number"}),
        "report_lat": {"type": "number"}, "report_lon": {"type": "number"},
        "report_ts": TIME, "transfer_id": nullable({"type": "integer"}),
        "details": {"type": "object", "description": "the numbers behind the decision"},
        "created_at": TIME,
    }),
    "WhatIfDecision": obj({
        "outcome": {"type": "string", "enum": ["move", "stay"]},
        "reason": {"type": "string", "description": "the rule that decided; see scheduler/README.md"},
        "target_dc": nullable(ID), "nearest_dc": nullable(ID),
        "current_distance_m": nullable({"type": "number"}),
        "target_distance_m": nullable({"type": "number"}),
        "bytes": {**COUNT, "description": "what the move brings to the target: the snapshot"
                  " and, where missing, the template"},
        "bytes_to_send": {**COUNT, "description": "what it sends: bytes less what a copy of the"
                          " snapshot at the target already holds; what km-per-gib weighs"},
        "template_present": {"type": "boolean"},
        "copy_present": {"type": "boolean", "description": "the target holds a verified copy of"
                         " the snapshot (pre-staged, a replica or a cached version)"},
        "supersedes_transfer_to": nullable(ID),
        "dwell_ms": {"type": "integer"}, "dwell_reports": {"type": "integer"},
    }),
    "WhatIf": obj({
        "user_id": ID, "lat": {"type": "number"}, "lon": {"type": "number"},
        "snapshots": {"type": "array", "items": obj({
            "snapshot_id": ID, "current_dc": nullable(ID),
            "transfer_in_flight_to": nullable(ID),
            "now": ref("WhatIfDecision"),
            "once_settled": {**ref("WhatIfDecision"),
                             "description": "as if the user had dwelt there long enough"},
        })},
        "policy": {"type": "object", "description": "the policy in force"},
    }),
    "Transfer": obj({
        "id": {"type": "integer"}, "snapshot_id": ID, "from_dc": nullable(ID), "to_dc": ID,
        "template_id": ID, "template_present": {"type": "boolean"},
        "kind": {"type": "string", "enum": ["move", "replicate", "evacuate"],
                 "description": "move: the active placement follows it; replicate: makes or "
                                "refreshes a warm replica at the target; evacuate: an "
                                "evacuation's bulk copy while the VM still runs at the source"},
        "priority": PRIORITY, "version": nullable({"type": "integer", "minimum": 1,
                                                   "description": "the snapshot version it moves"}),
        "reason": {"type": "string"}, "state": STATE,
        "attempts": {"type": "integer"}, "max_attempts": {"type": "integer", "minimum": 1},
        "bytes_total": COUNT, "bytes_done": COUNT,
        "bytes_sent": {**COUNT, "description": "bytes that went over the wire"},
        "error": nullable({"type": "string"}), "retry_of": nullable({"type": "integer"}),
        "idempotency_key": {"type": "string"},
        "lease_owner": nullable({"type": "string", "description": "the agent that claimed it last"}),
        "lease_expires_at": nullable(TIME),
        "not_before": nullable({**TIME, "description": "requeued: claimable from then on"}),
        "started_at": nullable(TIME), "finished_at": nullable(TIME),
        "created_at": TIME, "updated_at": TIME,
    }, ["id", "snapshot_id", "to_dc", "state"]),
    "Replica": obj({
        "datacenter_id": ID,
        "version": nullable({"type": "integer", "minimum": 1,
                             "description": "the version its copy holds; null until made"}),
        "newest_version": {"type": "integer", "minimum": 1},
        "lag_s": {"type": "number", "minimum": 0,
                  "description": "seconds since the first version it lacks was registered "
                                 "(or since it was designated); 0 when current"},
        "bytes_behind": {**COUNT, "description": "what it lacks: the newer versions' changed "
                                                 "bytes, at most the newest version's size"},
        "rpo_s": nullable({"type": "integer", "description": "null for a pre-staged copy"}),
        "rpo_breached": {"type": "boolean"},
        "rpo_breached_at": nullable(TIME), "copied_at": nullable(TIME),
        "reason": {"type": "string", "enum": ["protection", "prestage"],
                   "description": "a warm replica of the level's protection policy, or a copy "
                                  "pre-staged for an announced trip (README, Pre-staging)"},
        "trip_id": nullable({"type": "integer", "description": "the trip a pre-staged copy "
                                                               "serves; null once withdrawn"}),
        "ends_at": nullable({**TIME, "description": "when a pre-staged copy is released"}),
    }, ["datacenter_id", "version", "newest_version", "lag_s", "bytes_behind", "rpo_s",
        "rpo_breached"]),
    "FailoverLevel": obj({
        "level": {"type": "integer", "minimum": 1, "maximum": 5},
        "snapshots": COUNT, "failed_over": COUNT,
        "to_power_on": {**COUNT, "description": "failed over with their desired power on: "
                                                "what powered_on reaches when done"},
        "powered_on": {**COUNT, "description": "failed over and powered on by the replica "
                                               "site's agent under the new epoch"},
        "unrecoverable": COUNT,
        "recovered": {**COUNT, "description": "unrecoverable ones whose site returned"},
        "versions_lost": COUNT,
        "data_loss_s_max": {"type": "number", "minimum": 0},
        "data_loss_bytes": COUNT,
        "failback_queued": {**COUNT, "description": "moves back to the returned site queued"},
        "failed_back": {**COUNT, "description": "moves back that succeeded"},
        "last_powered_on_at": nullable(TIME),
        "last_powered_on_after_s": nullable({"type": "number",
                                             "description": "since the site was declared down"}),
    }, ["level", "snapshots", "failed_over", "to_power_on", "powered_on", "unrecoverable",
        "recovered",
        "versions_lost", "data_loss_s_max", "data_loss_bytes", "failback_queued",
        "failed_back", "last_powered_on_at", "last_powered_on_after_s"]),
    "Failover": obj({
        "id": {"type": "integer"}, "datacenter_id": ID,
        "state": {"type": "string", "enum": ["open", "ended"],
                  "description": "open while the site is down"},
        "created_at": TIME, "ended_at": nullable(TIME),
        "levels": {"type": "array", "items": ref("FailoverLevel"), "minItems": 5,
                   "maxItems": 5},
    }, ["id", "datacenter_id", "state", "created_at", "ended_at", "levels"]),
    "FailoverPage": page_of("Failover"),
    "FailoverSnapshot": obj({
        "failover_id": {"type": "integer"}, "snapshot_id": ID, "priority": PRIORITY,
        "outcome": {"type": "string", "enum": ["failed_over", "unrecoverable"]},
        "from_dc": ID, "to_dc": nullable(ID), "epoch": nullable(EPOCH),
        "version": nullable({"type": "integer", "description": "the replica's version, now "
                                                               "active"}),
        "newest_version": {"type": "integer"},
        "versions_lost": COUNT,
        "lost": {"type": "array", "items": {"type": "object"},
                 "description": "the versions only the dead site held (version, "
                                "content_sha256, size_bytes, datacenter_id, created_at)"},
        "data_loss_s": {"type": "number", "minimum": 0,
                        "description": "the replica's lag at failover"},
        "data_loss_bytes": {**COUNT, "description": "the replica's bytes behind at failover"},
        "powered_on_at": nullable(TIME), "recovered_at": nullable(TIME),
        "failback_transfer_id": nullable({"type": "integer",
                                          "description": "the move back, once asked for"}),
        "created_at": TIME,
    }, ["failover_id", "snapshot_id", "priority", "outcome", "from_dc", "to_dc", "epoch",
        "version", "newest_version", "versions_lost", "lost", "data_loss_s",
        "data_loss_bytes", "powered_on_at", "recovered_at", "failback_transfer_id",
        "created_at"]),
    "FailoverSnapshotPage": page_of("FailoverSnapshot"),
    "Restore": obj({
        "snapshot_id": ID,
        "state": {"type": "string", "enum": ["active", "failed_over", "unrecoverable",
                                             "nowhere"]},
        "datacenter_id": ID, "epoch": EPOCH, "version": {"type": "integer"},
        "failover_id": {"type": "integer"}, "from_dc": ID, "versions_lost": COUNT,
        "lost_versions": {"type": "array", "items": {"type": "integer"}},
        "data_loss_s": {"type": "number"}, "data_loss_bytes": COUNT,
        "detail": {"type": "string", "description": "the same, said for the user"},
    }, ["snapshot_id", "state", "epoch", "detail"]),
    "FailoverTestVm": obj({
        "id": {"type": "integer"}, "name": {"type": "string", "description": "fotest-<id>: "
                                                                           "the VM's own name"},
        "snapshot_id": ID, "datacenter_id": ID, "priority": PRIORITY,
        "version": {"type": "integer", "description": "the replica's version it runs"},
        "state": {"type": "string", "enum": ["pending", "powered_on", "failed", "powered_off"]},
        "reason": nullable({"type": "string"}), "updated_at": TIME,
    }, ["id", "name", "snapshot_id", "datacenter_id", "priority", "version", "state", "reason",
        "updated_at"]),
    "FailoverTest": obj({
        "id": {"type": "integer"}, "datacenter_id": ID,
        "state": {"type": "string", "enum": ["running", "cleaning", "cleaned"]},
        "created_at": TIME, "cleanup_at": nullable(TIME), "cleaned_at": nullable(TIME),
        "counts": obj({"vms": COUNT, "pending": COUNT, "powered_on": COUNT, "failed": COUNT,
                       "powered_off": COUNT},
                      ["vms", "pending", "powered_on", "failed", "powered_off"]),
        "vms": {"type": "array", "items": ref("FailoverTestVm")},
    }, ["id", "datacenter_id", "state", "created_at", "cleanup_at", "cleaned_at", "counts",
        "vms"]),
    "FailoverTestPage": page_of("FailoverTest"),
    "FailoverTestInput": obj({"datacenter_id": ID}, ["datacenter_id"]),
    "FailbackInput": obj({"when_full": {
        "type": "string", "enum": ["refuse", "queue_what_fits", "queue_all"],
        "description": "when the site lacks room for every move: refuse (the default: 409 "
                       "site-full naming the snapshots that do not fit), queue the most urgent "
                       "ones that fit, or queue all of them beyond the capacity"}}, []),
    "FailoverTestReport": obj({
        "state": POWER_STATE, "reason": {"type": "string", "maxLength": 1024}}, ["state"]),
    "ProtectionPolicy": obj({
        "level": {"type": "integer", "minimum": 1, "maximum": 5},
        "replicas": {"type": "integer", "minimum": 0, "maximum": 3,
                     "description": "warm replicas each snapshot of the level keeps"},
        "rpo_s": nullable({"type": "integer", "minimum": 10, "maximum": 2592000,
                           "description": "how many seconds a replica may lag behind the "
                                          "newest version; null without replicas"}),
        "updated_at": TIME,
    }, ["level", "replicas", "rpo_s", "updated_at"]),
    "ProtectionPolicyInput": obj({
        "replicas": {"type": "integer", "minimum": 0, "maximum": 3},
        "rpo_s": nullable({"type": "integer", "minimum": 10, "maximum": 2592000}),
    }, ["replicas"]),
    "EvacuationLevel": obj({
        "level": {"type": "integer", "minimum": 1, "maximum": 5},
        "state": {"type": "string", "enum": ["waiting", "running", "done"]},
        "snapshots": COUNT, "done": COUNT, "blocked": COUNT, "failed": COUNT, "skipped": COUNT,
        "cancelled": COUNT, "open": COUNT,
        "bytes_planned": COUNT, "bytes_sent": {**COUNT, "description": "on the wire, bulk "
                                                                       "copies and final deltas"},
        "bytes_sent_at_switchover": {**COUNT, "description": "the final deltas' bytes, sent "
                                                             "while the VMs were off"},
        "errors": {"type": "array", "items": obj({"snapshot_id": ID,
                                                  "error": {"type": "string"}})},
    }),
    "EvacuationItem": obj({
        "snapshot_id": ID, "priority": PRIORITY, "target_dc": nullable(ID),
        "target_kind": nullable({"type": "string", "enum": ["replica", "nearest"],
                                 "description": "its replica's site, or the nearest eligible "
                                                "datacenter to its user"}),
        "blocked_reason": nullable({"type": "string",
                                    "enum": ["capacity", "zones", "no-eligible-site"],
                                    "description": "why it cannot move"}),
        "version": {"type": "integer"}, "bytes_planned": COUNT,
        "delta": {"type": "boolean", "description": "the bytes are the delta from a copy the "
                                                    "target holds"},
        "distance_m": nullable({"type": "number"}),
        "state": {"type": "string", "enum": ["pending", "copying", "stopping", "switching",
                                             "powering", "done", "blocked", "failed",
                                             "skipped", "cancelled"]},
        "bulk_transfer_id": nullable({"type": "integer"}),
        "final_transfer_id": nullable({"type": "integer"}),
        "error": nullable({"type": "string"}), "switched_at": nullable(TIME),
        "finished_at": nullable(TIME),
    }),
    "Evacuation": obj({
        "id": {"type": "integer"}, "datacenter_id": ID,
        "state": {"type": "string", "enum": ["planned", "running", "done", "cancelled"]},
        "gate": {"type": "string", "enum": ["done", "running"]},
        "dry_run": {"type": "boolean"}, "created_by": nullable({"type": "string"}),
        "created_at": TIME, "started_at": nullable(TIME), "finished_at": nullable(TIME),
        "snapshots": COUNT,
        "levels": {"type": "array", "items": ref("EvacuationLevel")},
        "items": nullable({"type": "array", "items": ref("EvacuationItem"),
                           "description": "the plan (null in lists)"}),
    }, ["id", "datacenter_id", "state", "gate", "dry_run", "levels"]),
    "EvacuationInput": obj({
        "dry_run": {"type": "boolean", "default": False,
                    "description": "store and answer the plan; change nothing else"},
        "gate": {"type": "string", "enum": ["done", "running"], "default": "done",
                 "description": "a priority level starts once the previous one is done, or "
                                "once its transfers are all under way"},
    }),
    "TripInput": obj({
        "lat": {"type": "number", "minimum": -90, "maximum": 90},
        "lon": {"type": "number", "minimum": -180, "maximum": 180},
        "arrive_at": {**TIME, "description": "when the user lands: from a day ago to a year "
                                             "ahead"},
        "return_at": nullable({**TIME, "description": "when the user leaves again: after "
                                                      "arrive_at, within 90 days"}),
    }, ["lat", "lon", "arrive_at"]),
    "Trip": obj({
        "id": {"type": "integer"}, "user_id": ID, "device_id": ID,
        "lat": {"type": "number"}, "lon": {"type": "number"},
        "arrive_at": TIME, "return_at": nullable(TIME), "created_at": TIME,
    }, ["id", "user_id", "device_id", "lat", "lon", "arrive_at", "return_at", "created_at"]),
    "Zone": obj({"id": ID, "name": {"type": "string"}, "geojson": ref("GeoJSONGeometry"),
                 "created_at": TIME, "updated_at": TIME}),
    "ReplayPolicy": obj({
        "name": {"type": "string", "minLength": 1, "maxLength": 192},
        "kind": {"type": "string", "enum": ["engine", "oracle", "home"]},
        "pareto": {"type": "boolean",
                   "description": "on the Pareto front of mean distance against bytes"},
        "restores": obj({"n": COUNT, "mean_km": KM, "p50_km": KM, "p95_km": KM, "p99_km": KM},
                        ["n", "mean_km", "p50_km", "p95_km", "p99_km"], extra=True),
        "transfers": COUNT, "bytes": COUNT, "flaps": COUNT,
        "goals": {"type": "object", "additionalProperties": {"type": "number", "minimum": 0},
                  "description": "an engine policy's ratio for each of the issue's goals"},
        "restore_cdf": {"type": "array", "maxItems": 1001,
                        "description": "[km, share] points, both rising, share 0 to 1",
                        "items": {"type": "array", "minItems": 2, "maxItems": 2,
                                  "items": {"type": "number", "minimum": 0}}},
        "per_day": {"type": "array", "maxItems": 3660, "items": obj({
            "day": {"type": "string", "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}$"},
            "transfers": COUNT, "bytes": COUNT}, ["day", "transfers", "bytes"])},
    }, ["name", "kind", "restores", "transfers", "bytes"], extra=True),
    "ReplayReport": obj({
        "users": COUNT, "user_days": {"type": "number", "minimum": 0},
        "reports": COUNT, "restores": COUNT,
        "measured_at": {"type": "string", "enum": ["restores", "reports"]},
        "policies": {"type": "array", "minItems": 1, "maxItems": 64,
                     "items": ref("ReplayPolicy")},
    }, ["policies"], extra=True),
    "PlacementReport": obj({
        "id": {"type": "integer"}, "name": {"type": "string", "minLength": 1, "maxLength": 128},
        "created_at": TIME, "created_by": {"type": "string",
                                           "description": "the operator token's name"},
        "summary": obj({
            "users": COUNT, "user_days": {"type": "number"}, "reports": COUNT,
            "restores": COUNT, "measured_at": {"type": "string"},
            "policies": {"type": "array", "items": obj({
                "name": {"type": "string"}, "kind": {"type": "string"},
                "mean_km": KM, "transfers": COUNT})}}),
        "report": ref("ReplayReport"),
    }, ["id", "name", "created_at", "created_by", "summary"]),
    "ZoneInput": obj({"name": {"type": "string"}, "geojson": ref("GeoJSONGeometry")},
                     ["name", "geojson"]),
    "GeoJSONGeometry": {
        "type": "object", "required": ["type"],
        "description": "RFC 7946: a Polygon or MultiPolygon (or a Feature, FeatureCollection "
                       "or GeometryCollection of them), longitude before latitude",
        "properties": {"type": {"type": "string", "enum": [
            "Polygon", "MultiPolygon", "GeometryCollection", "Feature", "FeatureCollection"]}},
    },
    "OperatorToken": obj({
        "id": {"type": "integer"}, "name": {"type": "string"},
        "role": {"type": "string", "enum": ["viewer", "operator", "admin"]},
        "created_by": nullable({"type": "string"}), "created_at": TIME,
        "revoked_at": nullable(TIME),
        "token": {"type": "string", "description": "only in the answer that made it"},
    }),
    "OperatorTokenInput": obj({"name": {"type": "string"},
                               "role": {"type": "string",
                                        "enum": ["viewer", "operator", "admin"]}},
                              ["name", "role"]),
    "DeviceTokenInput": obj({"device_id": ID, "user_id": ID,
                             "ttl_s": {"type": "integer", "minimum": 60,
                                       "maximum": 366 * 86400, "default": 30 * 86400}},
                            ["device_id", "user_id"]),
    "DeviceToken": obj({"token": {"type": "string"}, "device_id": ID, "user_id": ID,
                        "kid": {"type": "string"}, "expires_at": TIME}),
    "Actor": obj({"kind": {"type": "string", "enum": ["operator", "device", "agent", "anonymous"]},
                  "token_id": {"type": "integer"}, "name": {"type": "string"},
                  "role": {"type": "string"}, "device_id": ID, "user_id": ID,
                  "datacenter_id": ID}),
    "AgentEndpoint": obj({"url": {"type": "string", "pattern": "^https?://[^\\s]+$",
                                  "maxLength": 256}}, ["url"]),
    "AgentEndpointSet": obj({"datacenter_id": ID, "url": {"type": "string"}},
                            ["datacenter_id", "url"]),
    "ClaimInput": obj({"owner": OWNER,
                       "lease_s": {"type": "integer", "minimum": 5, "maximum": 3600,
                                   "default": 30}}, ["owner"]),
    "Job": obj({
        "transfer_id": {"type": "integer"}, "snapshot_id": ID,
        "version": {"type": "integer", "description": "the snapshot version to copy"},
        "content_sha256": nullable({**SHA256, "description":
                                    "the registered digest of that version; null when none was"}),
        "template_id": ID,
        "template_present": {"type": "boolean", "description": "the target holds the template"},
        "from_dc": nullable(ID),
        "source_url": nullable({"type": "string", "description": "the source agent"}),
        "template_source_url": nullable({"type": "string", "description":
                                         "the agent of the nearest datacenter holding the "
                                         "template, when the target lacks it"}),
        "priority": PRIORITY, "bytes_total": COUNT, "lease_s": {"type": "integer"},
        "lease_expires_at": TIME, "attempt": {"type": "integer", "minimum": 1},
        "max_attempts": {"type": "integer", "minimum": 1},
        "ticket": {"type": "string", "description":
                   "the pull ticket for the peers (only its SHA-256 is kept)"},
        "have_versions": {"type": "array", "items": {"type": "integer"}, "description":
                          "versions the target holds as cached copies"},
    }, ["transfer_id", "snapshot_id", "version", "content_sha256", "template_id",
        "template_present", "from_dc", "source_url", "template_source_url", "priority",
        "bytes_total", "lease_s", "attempt", "ticket", "have_versions"]),
    "ProgressInput": obj({"owner": OWNER, "bytes_done": COUNT, "bytes_sent": COUNT,
                          "bytes_total": {**COUNT, "description": "accepted, not stored"}},
                         ["owner", "bytes_done", "bytes_sent"]),
    "Progress": obj({"state": {"const": "running"}, "lease_expires_at": TIME,
                     "more_urgent_waiting": {"type": "boolean"}}, ["state"]),
    "PauseInput": obj({"owner": OWNER}, ["owner"]),
    "EvictionsInput": obj({}, []),
    "Evictions": obj({"evicted": {"type": "array", "items": obj({
        "placement_id": {"type": "integer"}, "snapshot_id": ID, "version": {"type": "integer"},
        "size_bytes": COUNT}, ["placement_id", "snapshot_id", "version", "size_bytes"])}},
        ["evicted"]),
    "SucceededInput": obj({"owner": OWNER, "content_sha256": SHA256, "bytes_sent": COUNT},
                          ["owner", "content_sha256", "bytes_sent"]),
    "FailedInput": obj({"owner": OWNER, "error": {"type": "string", "minLength": 1,
                                                 "maxLength": 256},
                        "retry": {"type": "boolean"}}, ["owner", "error", "retry"]),
    "PullVerifyInput": obj({"transfer_id": {"type": "integer", "minimum": 0},
                            "ticket": {"type": "string"}}, ["transfer_id", "ticket"]),
    "PullVerified": obj({
        "transfer_id": {"type": "integer"}, "snapshot_id": ID, "version": {"type": "integer"},
        "template_id": ID, "to_dc": ID,
        "serves": {"type": "string", "enum": ["snapshot", "template"], "description":
                   "snapshot: the caller is the transfer's source (it serves the version and "
                   "the template); template: it is a source of the template only"},
        "lease_expires_at": TIME,
    }, ["transfer_id", "snapshot_id", "version", "template_id", "to_dc"]),
    "VersionInput": obj({
        "version": {"type": "integer", "minimum": 1}, "content_sha256": SHA256,
        "size_bytes": COUNT, "virtual_size": COUNT,
        "config": {"type": "object", "description": "the VM's configuration", "default": {}},
        "changed_bytes": {**COUNT, "description": "bytes of the blocks that differ from the "
                                                  "previous version, when the agent knows"},
    }, ["version", "content_sha256", "size_bytes", "virtual_size"]),
    "SnapshotVersion": obj({
        "snapshot_id": ID, "version": {"type": "integer"}, "content_sha256": SHA256,
        "size_bytes": COUNT, "virtual_size": COUNT, "config": {"type": "object"},
        "changed_bytes": nullable(COUNT), "datacenter_id": nullable(ID), "created_at": TIME,
    }),
    "AgentVms": obj({
        "datacenter_id": ID,
        "vms": {"type": "array", "items": obj({
            "snapshot_id": ID, "version": {"type": "integer"}, "epoch": EPOCH,
            "template_id": ID,
            "blocked_by": nullable({**ID, "description": "another datacenter (not down) whose "
                                    "latest record says the VM runs there: wait"}),
        }, ["snapshot_id", "version", "epoch", "template_id", "blocked_by"])},
        "powered_on": {"type": "array", "items": obj({"snapshot_id": ID, "epoch": EPOCH},
                                                     ["snapshot_id", "epoch"])},
        "tests": {"type": "array", "description": "a failover test's throwaway VMs to run here "
                                                  "(most urgent first): no epoch, no fence",
                  "items": obj({"id": {"type": "integer"}, "name": {"type": "string"},
                                "snapshot_id": ID, "version": {"type": "integer"}},
                               ["id", "name", "snapshot_id", "version"])},
    }, ["datacenter_id", "vms", "powered_on", "tests"]),
    "PowerInput": obj({
        "epoch": {**EPOCH, "minimum": 1}, "state": POWER_STATE,
        "reason": {"type": "string", "minLength": 1, "maxLength": 256},
    }, ["epoch", "state"]),
    "PowerRecord": obj({
        "id": {"type": "integer"}, "snapshot_id": ID, "datacenter_id": ID, "epoch": EPOCH,
        "state": POWER_STATE, "reason": nullable({"type": "string"}), "created_at": TIME,
    }, ["id", "snapshot_id", "datacenter_id", "epoch", "state", "reason", "created_at"]),
    "Stats": {"type": "object", "properties": {
        "transfers": obj({"queued": COUNT, "running": COUNT, "failed_last_hour": COUNT}),
        "decisions_last_minute": COUNT,
        "datacenters": obj({"active": COUNT, "draining": COUNT, "down": COUNT}),
        "ingest": obj({"reports_accepted_total": COUNT, "requests_accepted_total": COUNT}),
        "time": TIME}},
    "LocationReport": obj({
        "device_id": ID, "user_id": ID,
        "lat": {"type": "number", "minimum": -90, "maximum": 90},
        "lon": {"type": "number", "minimum": -180, "maximum": 180},
        "accuracy_m": {"type": "number", "minimum": 0}, "ts": TIME,
    }, ["device_id", "user_id", "lat", "lon", "accuracy_m", "ts"]),
    "Composition": obj({
        "id": {"type": "integer"}, "snapshot_id": ID,
        "datacenter_id": {**ID, "description": "where its agent writes it (the active one)"},
        "base": {"type": "integer", "minimum": 1}, "from": {"type": "integer", "minimum": 1},
        "config": {"type": "array", "items": {"type": "string"}},
        "disk_extents": COMPOSE_EXTENTS, "whole_disk": {"type": "boolean"},
        "files": {"type": "array", "items": {"type": "string"},
                  "description": "guest files taken from from"},
        "state": {"type": "string", "enum": ["queued", "running", "succeeded", "failed"]},
        "version": nullable({"type": "integer", "minimum": 1,
                             "description": "the version written, once succeeded"}),
        "error": nullable({"type": "string"}), "requested_by": nullable({"type": "string"}),
        "created_at": TIME, "updated_at": TIME,
    }),
    "CompositionInput": obj({
        "base": {"type": "integer", "minimum": 1, "description": "the version it starts from"},
        "from": {"type": "integer", "minimum": 1, "description": "the version items come from"},
        "config": {"type": "array", "maxItems": 1000, "items": {"type": "string"},
                   "description": "JSON Pointers (RFC 6901) of configuration items to take"},
        "disk_extents": {**COMPOSE_EXTENTS, "maxItems": 100000,
                         "description": "disk regions to take (bytes, whole 4 KiB blocks)"},
        "whole_disk": {"type": "boolean", "description": "take all of from's disk"},
        "files": {"type": "array", "maxItems": 1000, "items": {"type": "string"},
                  "description": ("guest files to take whole from from (libguestfs at the "
                                  "agent): /absolute/path, or /dev/sdaN:/path on another file "
                                  "system; removed where from lacks them")},
    }, ["base", "from"]),
    "CompositionClaimInput": obj({}, []),
    "CompositionJob": obj({
        "composition_id": {"type": "integer"}, "snapshot_id": ID,
        "base": {"type": "integer"}, "from": {"type": "integer"},
        "config": {"type": "array", "items": {"type": "string"}},
        "disk_extents": COMPOSE_EXTENTS, "whole_disk": {"type": "boolean"},
        "files": {"type": "array", "items": {"type": "string"}},
        "version": {"type": "integer", "description": "the version to write: the next one"},
    }),
    "CompositionSucceededInput": obj({"version": {"type": "integer", "minimum": 1}},
                                     ["version"]),
    "CompositionFailedInput": obj({"error": {"type": "string", "minLength": 1,
                                             "maxLength": 256}}, ["error"]),
    "DiskDiff": obj({
        "id": {"type": "integer"}, "datacenter_id": ID,
        "state": {"type": "string", "enum": ["queued", "running", "succeeded", "failed"]},
        "error": nullable({"type": "string"}),
        "virtual_size": COUNT, "changed_bytes": COUNT,
        "template_blocks_read": {**COUNT, "description": "blocks one version alone holds "
                                 "whose template data had to be read"},
        "extents": {"type": "array", "description": "increasing, coalesced", "items": obj({
            "offset": COUNT, "length": COUNT}, ["offset", "length"])},
    }, ["id", "datacenter_id", "state"]),
    "DiskDiffClaimInput": obj({}, []),
    "DiskDiffJob": obj({"disk_diff_id": {"type": "integer"}, "snapshot_id": ID,
                        "from": {"type": "integer"}, "to": {"type": "integer"}}),
    "DiskDiffSucceededInput": obj({"disk": {"type": "object", "description": (
        "virtual_size, changed_bytes, template_blocks_read and extents, as homing diff "
        "prints them")}}, ["disk"]),
    "DiskDiffEnded": obj({"id": {"type": "string"},
                          "state": {"type": "string", "enum": ["succeeded", "failed"]}}),
    "FileDiffSummary": obj({
        "id": {"type": "integer"}, "datacenter_id": ID,
        "state": {"type": "string", "enum": ["queued", "running", "succeeded", "failed"]},
        "phase": nullable({"type": "string", "description": (
            "claimed, launching, listing, comparing, done")}),
        "progress": {"type": "integer", "minimum": 0, "maximum": 100},
        "unavailable": {"type": "boolean", "description": "libguestfs cannot run at the agent"},
        "error": nullable({"type": "string"}),
        "href": {"type": "string", "description": "GET it for the files"},
    }, ["id", "datacenter_id", "state", "progress", "href"]),
    "FileDiffFiles": obj({
        "filesystems": {"type": "array", "items": {"type": "string"}, "description": (
            "the file systems compared, named as on the first disk (/dev/sda1)")},
        "added": COUNT, "removed": COUNT, "changed": COUNT,
        "truncated": {"type": "boolean", "description": "the list stops at 500 files"},
        "files": {"type": "array", "items": obj({
            "filesystem": {"type": "string"}, "path": {"type": "string"},
            "change": {"type": "string", "enum": ["added", "removed", "changed"]},
            "type": {"type": "string", "enum": ["file", "directory", "symlink", "other"]},
            "old_size": COUNT, "new_size": COUNT, "content_changed": {"type": "boolean"},
            "old_mode": {"type": "string"}, "new_mode": {"type": "string"},
            "old_owner": {"type": "string"}, "new_owner": {"type": "string"},
            "diff": {"type": "string", "description": "diff -u, text files up to 64 KiB"},
            "diff_skipped": {"type": "string", "description": "why there is no diff"},
        }, ["filesystem", "path", "change", "type"])},
    }, ["filesystems", "added", "removed", "changed", "truncated", "files"]),
    "FileDiff": obj({
        "id": {"type": "integer"}, "snapshot_id": ID, "from": {"type": "integer"},
        "to": {"type": "integer"}, "datacenter_id": ID,
        "state": {"type": "string", "enum": ["queued", "running", "succeeded", "failed"]},
        "phase": nullable({"type": "string"}),
        "progress": {"type": "integer", "minimum": 0, "maximum": 100},
        "unavailable": {"type": "boolean"}, "error": nullable({"type": "string"}),
        "result": nullable(ref("FileDiffFiles")), "created_at": TIME, "updated_at": TIME,
    }, ["id", "snapshot_id", "from", "to", "datacenter_id", "state", "progress"]),
    "FileDiffJob": obj({"file_diff_id": {"type": "integer"}, "snapshot_id": ID,
                        "from": {"type": "integer"}, "to": {"type": "integer"}}),
    "FileDiffProgressInput": obj({"phase": {"type": "string", "minLength": 1,
                                            "maxLength": 256},
                                  "percent": {"type": "integer", "minimum": 0, "maximum": 100}},
                                 ["phase", "percent"]),
    "FileDiffSucceededInput": obj({"files": ref("FileDiffFiles")}, ["files"]),
    "FileDiffFailedInput": obj({"error": {"type": "string", "minLength": 1, "maxLength": 256},
                                "unavailable": {"type": "boolean", "description": (
                                    "libguestfs cannot run at this agent")}}, ["error"]),
    "FileDiffRunning": obj({"id": {"type": "string"},
                            "state": {"type": "string",
                                      "enum": ["running", "succeeded", "failed"]}}),
    "SnapshotDiff": obj({
        "snapshot_id": ID, "from": {"type": "integer", "minimum": 1},
        "to": {"type": "integer", "minimum": 1},
        "versions": {"type": "array", "items": ref("SnapshotVersion"), "minItems": 2,
                     "maxItems": 2, "description": "from, then to"},
        "config": obj({
            "changes": {"type": "array", "items": obj({
                "path": {"type": "string", "description": "a JSON Pointer (RFC 6901)"},
                "change": {"type": "string", "enum": ["changed", "added", "removed"]},
                "old": {"description": "the value in from (not for added)"},
                "new": {"description": "the value in to (not for removed)"},
            }, ["path", "change"])},
            "patch": {"type": "array", "description": "an RFC 6902 JSON Patch from from to to",
                      "items": obj({
                          "op": {"type": "string", "enum": ["replace", "add", "remove"]},
                          "path": {"type": "string"}, "value": {},
                      }, ["op", "path"])},
        }, ["changes", "patch"]),
        "disk": nullable({**ref("DiskDiff"), "description": (
            "the changed disk extents, computed by the agent of the snapshot's active "
            "datacenter on its store: the first GET of a pair queues it (state queued); ask "
            "again for running, succeeded (with the extents) or failed (with why); null when "
            "the snapshot is active nowhere")}),
        "files": nullable({**ref("FileDiffSummary"), "description": (
            "with files=true only: the guest-file diff, a job of the agent of the snapshot's "
            "active datacenter (libguestfs, tens of seconds); its href answers the files; "
            "null when the snapshot is active nowhere")}),
    }, ["snapshot_id", "from", "to", "versions", "config", "disk"]),
}
for name in ("Datacenter", "Template", "TemplateReplica", "Snapshot", "Placement", "Decision",
             "Transfer", "Zone", "OperatorToken", "SnapshotVersion", "Evacuation",
             "PlacementReport"):
    SCHEMAS[name + "Page"] = page_of(name)

PROBLEM = {"application/problem+json": {"schema": ref("Problem")}}
RESPONSES = {
    "BadRequest": "the query or cursor is not valid, or the body is not JSON",
    "Unauthorized": "no token, or one that is unknown, revoked or expired",
    "Forbidden": "the token's role, device or kind does not allow this (agent routes take "
                 "agent tokens only, and agent tokens nothing else)",
    "NotFound": "no such resource",
    "Conflict": "the current state forbids it (the problem's type says why)",
    "PreconditionFailed": "If-Match does not match the current ETag",
    "PreconditionRequired": "If-Match is required here",
    "UnsupportedMediaType": "the body is not application/json",
    "TooLarge": "the body exceeds --max-body-bytes (or the operation's own bound)",
    "Invalid": "a member is missing, unknown, of the wrong type or out of range; "
               "errors[0].pointer names it",
    "Unavailable": "PostgreSQL (or Kafka, for ingest) could not do it now; nothing changed",
    "TooManyRequests": "the device posted more than its token bucket holds; Retry-After says "
                       "when to send again; nothing was accepted",
}
STATUS_OF = {"BadRequest": "400", "Unauthorized": "401", "Forbidden": "403",
             "NotFound": "404", "Conflict": "409", "PreconditionFailed": "412",
             "PreconditionRequired": "428", "UnsupportedMediaType": "415", "TooLarge": "413",
             "Invalid": "422", "TooManyRequests": "429", "Unavailable": "503"}

PARAMETERS = {
    "limit": {"name": "limit", "in": "query", "description": "items per page (1 to 500)",
              "schema": {"type": "integer", "minimum": 1, "maximum": 500, "default": 100}},
    "cursor": {"name": "cursor", "in": "query",
               "description": "next_cursor of the previous page (opaque)",
               "schema": {"type": "string"}},
    "IfMatch": {"name": "If-Match", "in": "header",
                "description": "the ETag you read; 412 when the resource changed since",
                "schema": {"type": "string"}},
}


def path_param(name, description=None, integer=False):
    return {"name": name, "in": "path", "required": True,
            "description": description or name,
            "schema": {"type": "integer"} if integer else ID}


def query(name, schema, description):
    return {"name": name, "in": "query", "description": description, "schema": schema}


def body(schema_name):
    return {"required": True,
            "content": {"application/json": {"schema": ref(schema_name)}}}


def ok(schema_name=None, status="200", description="OK", etag=False, location=False,
       content_type="application/json", schema=None):
    r = {"description": description}
    if schema_name or schema:
        r["content"] = {content_type: {"schema": schema or ref(schema_name)}}
    headers = {}
    if etag:
        headers["ETag"] = {"description": "the version to send back in If-Match",
                           "schema": {"type": "string"}}
    if location:
        headers["Location"] = {"description": "the new resource",
                               "schema": {"type": "string"}}
    if headers:
        r["headers"] = headers
    return {status: r}


PAGED = [{"$ref": "#/components/parameters/limit"}, {"$ref": "#/components/parameters/cursor"}]
IF_MATCH = [{"$ref": "#/components/parameters/IfMatch"}]

# ---- the operations, in the order of api/router.c -----------------------------

OPS = []


def op(method, path, access, operation_id, summary, responses, params=(), request=None,
       errors=(), description=None, tag=None):
    OPS.append(dict(method=method, path=path, access=access, operation_id=operation_id,
                    summary=summary, responses=responses, params=list(params),
                    request=request, errors=list(errors), description=description, tag=tag))


ID_PARAM = [path_param("id")]
READ_ERRORS = ["NotFound"]
WRITE_ERRORS = ["UnsupportedMediaType", "TooLarge", "BadRequest", "Invalid", "Unavailable"]

op("get", "/", "public", "dashboard", "the operator dashboard",
   ok(content_type="text/html", schema={"type": "string"}, description="the page"),
   tag="dashboard")
op("get", "/dashboard/{file}", "public", "dashboardFile",
   "the dashboard's scripts, style and map data",
   ok(content_type="application/octet-stream", schema={"type": "string"}),
   [{"name": "file", "in": "path", "required": True, "description": "a file of the dashboard",
     "schema": {"type": "string", "enum": [
         "app.js", "quality.js", "app.css", "d3-array.min.js", "d3-geo.min.js", "topojson-client.min.js",
         "countries-110m.json"]}}], errors=["NotFound"], tag="dashboard")
op("get", "/healthz", "public", "healthz", "alive",
   ok(schema={"type": "object"}), tag="health")
op("get", "/readyz", "public", "readyz", "PostgreSQL, migrations and Kafka ready",
   ok(schema={"type": "object"}), errors=["Unavailable"], tag="health")
op("get", "/v1/openapi.json", "public", "openapi", "this API's OpenAPI 3.1 document",
   ok(schema={"type": "object"}), tag="health")
op("post", "/v1/locations", "device", "postLocations", "post location reports",
   {"202": {"description": "Kafka stored every report (acks=all)",
            "content": {"application/json": {"schema": obj({"accepted": COUNT})}}}},
   request={"required": True, "content": {"application/json": {"schema": {"oneOf": [
       ref("LocationReport"),
       {"type": "array", "items": ref("LocationReport"), "minItems": 1}]}}}},
   errors=["UnsupportedMediaType", "TooLarge", "BadRequest", "Invalid", "TooManyRequests",
           "Unavailable"],
   description="Every report must be for the device and user of the device token (403 "
               "otherwise). 202 comes only once Kafka has stored all of them; 503 with "
               "Retry-After when it could not in time: nothing was accepted.",
   tag="ingest")
op("post", "/v1/trips", "device", "postTrip",
   "announce the user's booked trip: destination, arrival, return",
   ok("Trip", status="201", description="stored", location=True), request=body("TripInput"),
   errors=["UnsupportedMediaType", "TooLarge", "BadRequest", "Invalid", "Conflict",
           "TooManyRequests", "Unavailable"],
   description="The trip is the device token's user's. The scheduler keeps a warm copy of "
               "the user's snapshots at the datacenter nearest the destination from before "
               "the arrival until the return (README, Pre-staging). Each takes a token from "
               "the device's ingest bucket (429 beyond); a user holds at most 50 trips not "
               "yet over (409 too-many-trips).",
   tag="trips")
op("get", "/v1/trips", "device", "listTrips", "the user's trips not yet over",
   ok(schema=obj({"items": {"type": "array", "items": ref("Trip")}}, ["items"])),
   errors=["Unavailable"], tag="trips")
op("delete", "/v1/trips/{id}", "device", "deleteTrip", "withdraw one of the user's trips",
   {"204": {"description": "withdrawn"}}, [path_param("id", integer=True)],
   errors=["NotFound", "Unavailable"], tag="trips")
op("get", "/metrics", "viewer", "metrics", "Prometheus metrics",
   ok(content_type="text/plain", schema={"type": "string"}), tag="health")
op("get", "/v1/me", "viewer", "me", "who the token belongs to", ok("Actor"), tag="tokens")
op("get", "/v1/stats", "viewer", "stats", "queue depth, decisions, ingest", ok("Stats"),
   tag="health")
op("get", "/v1/datacenters", "viewer", "listDatacenters", "list datacenters",
   ok("DatacenterPage"), [query("status", STATUS, "only datacenters in this status")] + PAGED,
   errors=["BadRequest"], tag="datacenters")
op("get", "/v1/datacenters/nearest", "viewer", "nearestDatacenters",
   "the k nearest active datacenters, with geodesic distances (WGS84) in metres",
   ok(schema=obj({"items": {"type": "array", "items": ref("Datacenter")}})),
   [{**query("lat", {"type": "number", "minimum": -90, "maximum": 90}, "latitude"),
     "required": True},
    {**query("lon", {"type": "number", "minimum": -180, "maximum": 180}, "longitude"),
     "required": True},
    query("k", {"type": "integer", "minimum": 1, "maximum": 1000, "default": 1},
          "how many")], errors=["BadRequest"], tag="datacenters")
op("get", "/v1/datacenters/{id}", "viewer", "getDatacenter", "one datacenter",
   ok("Datacenter", etag=True), ID_PARAM, errors=READ_ERRORS, tag="datacenters")
op("get", "/v1/templates", "viewer", "listTemplates", "list templates", ok("TemplatePage"),
   PAGED, errors=["BadRequest"], tag="templates")
op("get", "/v1/templates/{id}", "viewer", "getTemplate", "one template",
   ok("Template", etag=True), ID_PARAM, errors=READ_ERRORS, tag="templates")
op("get", "/v1/templates/{id}/replicas", "viewer", "listReplicas",
   "where a template is replicated", ok("TemplateReplicaPage"), ID_PARAM + PAGED,
   errors=READ_ERRORS + ["BadRequest"], tag="templates")
op("get", "/v1/snapshots", "viewer", "listSnapshots", "list snapshots", ok("SnapshotPage"),
   [query("user_id", ID, "only this user's"), query("template_id", ID, "only of this template"),
    query("datacenter_id", ID, "only those active at this datacenter")] + PAGED,
   errors=["BadRequest"], tag="snapshots")
op("get", "/v1/snapshots/{id}", "viewer", "getSnapshot", "one snapshot",
   ok("Snapshot", etag=True), ID_PARAM, errors=READ_ERRORS, tag="snapshots")
op("get", "/v1/snapshots/{id}/placement", "viewer", "getActivePlacement",
   "a snapshot's active placement", ok("Placement"), ID_PARAM, errors=READ_ERRORS,
   tag="snapshots")
op("get", "/v1/snapshots/{id}/placements", "viewer", "listPlacements",
   "a snapshot's placement history, newest first", ok("PlacementPage"), ID_PARAM + PAGED,
   errors=READ_ERRORS + ["BadRequest"], tag="snapshots")
op("get", "/v1/snapshots/{id}/versions", "viewer", "listSnapshotVersions",
   "a snapshot's registered versions, oldest first", ok("SnapshotVersionPage"),
   ID_PARAM + PAGED, errors=READ_ERRORS + ["BadRequest"], tag="snapshots")
op("get", "/v1/snapshots/{id}/diff", "viewer", "diffSnapshotVersions",
   "what differs between two registered versions of a snapshot", ok("SnapshotDiff"),
   ID_PARAM + [{**query("from", {"type": "integer", "minimum": 1}, "the version diffed from"),
                "required": True},
               {**query("to", {"type": "integer", "minimum": 1}, "the version diffed to"),
                "required": True},
               query("files", {"type": "boolean", "default": False},
                     "also the guest files: queues (once per pair) a file diff at the agent")],
   errors=READ_ERRORS + ["BadRequest"], tag="snapshots",
   description="Needs an operator token with the viewer role or a higher one. The "
   "configuration items (JSON Pointer paths, arrays by index) that were changed, added or "
   "removed, with their old and new values, and the same as an RFC 6902 JSON Patch; the "
   "changed disk extents once the agent has computed them (see disk). 400 "
   "when from or to is not a version number, 404 when the snapshot or either version is "
   "not registered.")
op("get", "/v1/file-diffs/{id}", "viewer", "getFileDiff",
   "a file diff: queued, running (phase, percent), succeeded (the files) or failed",
   {**ok("FileDiff"), "501": {"description": (
       "guest-files-unavailable: libguestfs cannot run at the agent (the problem's missing "
       "member names it, file_diff the job); the configuration and disk diffs still work"),
       "content": PROBLEM}},
   [path_param("id", "the file diff", integer=True)], errors=READ_ERRORS, tag="snapshots")
op("get", "/v1/compositions/{id}", "viewer", "getComposition",
   "a composition: queued, running, succeeded (with its version) or failed (with why)",
   ok("Composition", etag=True), [path_param("id", integer=True)], errors=READ_ERRORS,
   tag="snapshots")
op("get", "/v1/snapshots/{id}/decisions", "viewer", "listDecisions",
   "a snapshot's recent decisions (moves and stays, and why), newest first",
   ok("DecisionPage"), ID_PARAM + PAGED, errors=READ_ERRORS + ["BadRequest"], tag="snapshots")
op("get", "/v1/snapshots/{id}/replicas", "viewer", "listSnapshotReplicas",
   "a snapshot's warm replicas and how far each lags behind its newest version",
   ok(schema=obj({"items": {"type": "array", "items": ref("Replica")}}, ["items"])), ID_PARAM,
   errors=READ_ERRORS, tag="snapshots")
op("get", "/v1/snapshots/{id}/restore", "viewer", "getSnapshotRestore",
   "where the snapshot's next restore comes from: active at a datacenter under an epoch, "
   "failed over from a down site (with the versions and data lost), or unrecoverable until "
   "its site returns", ok("Restore"), ID_PARAM, errors=READ_ERRORS, tag="failovers")
op("get", "/v1/failovers", "viewer", "listFailovers",
   "failovers of sites declared down, newest first", ok("FailoverPage"),
   [query("datacenter_id", ID, "only this site's")] + PAGED, errors=["BadRequest"],
   tag="failovers")
op("get", "/v1/failovers/{id}", "viewer", "getFailover",
   "one failover: its progress per priority level", ok("Failover"),
   [path_param("id", integer=True)], errors=READ_ERRORS, tag="failovers",
   description="A failover starts when an operator sets a datacenter down (PUT "
               "/v1/datacenters/{id}/status): every snapshot active there with a warm "
               "replica at a site that is not down is activated there, level 1 first; the "
               "others are unrecoverable until the site returns, which ends the failover.")
op("get", "/v1/failovers/{id}/snapshots", "viewer", "listFailoverSnapshots",
   "a failover's snapshots by id: failed over (what was lost) or unrecoverable",
   ok("FailoverSnapshotPage"),
   [path_param("id", integer=True),
    query("outcome", {"type": "string", "enum": ["failed_over", "unrecoverable"]},
          "only these")] + PAGED,
   errors=READ_ERRORS + ["BadRequest"], tag="failovers")
op("get", "/v1/failover-tests", "viewer", "listFailoverTests",
   "failover tests (rehearsals), newest first", ok("FailoverTestPage"),
   [query("datacenter_id", ID, "only this site's")] + PAGED,
   errors=["BadRequest"], tag="failovers")
op("get", "/v1/failover-tests/{id}", "viewer", "getFailoverTest",
   "one failover test: its throwaway VMs and what their agents reported", ok("FailoverTest"),
   [path_param("id", integer=True)], errors=READ_ERRORS, tag="failovers")
op("get", "/v1/users/{id}/what-if", "viewer", "whatIf",
   "what homing would decide for each of the user's snapshots if the user reported from "
   "there, and why; nothing changes", ok("WhatIf"),
   ID_PARAM + [query("lat", {"type": "number", "minimum": -90, "maximum": 90}, "latitude"),
               query("lon", {"type": "number", "minimum": -180, "maximum": 180}, "longitude"),
               query("ts", TIME, "when (default: now)")],
   errors=READ_ERRORS + ["BadRequest"], tag="snapshots")
op("get", "/v1/transfers", "viewer", "listTransfers", "list transfers, newest first",
   ok("TransferPage"),
   [query("state", {"type": "string"}, "comma-separated states (queued,running,...)"),
    query("datacenter_id", ID, "only transfers from or to this datacenter"),
    query("snapshot_id", ID, "only this snapshot's"),
    query("kind", {"type": "string", "enum": ["move", "replicate", "evacuate"]}, "only moves, "
          "only the transfers that keep replicas current, or only evacuations' bulk copies"),
    query("since", TIME, "created at or after"), query("until", TIME, "created before")]
   + PAGED, errors=["BadRequest"], tag="transfers")
op("get", "/v1/transfers/{id}", "viewer", "getTransfer", "one transfer", ok("Transfer"),
   [path_param("id", integer=True)], errors=READ_ERRORS, tag="transfers")
LEVEL_PARAM = [{"name": "level", "in": "path", "required": True,
                "description": "the priority level, 1 (most urgent) to 5",
                "schema": {"type": "integer", "minimum": 1, "maximum": 5}}]
op("get", "/v1/protection-policies", "viewer", "listProtectionPolicies",
   "what each priority level protects: replicas and RPO",
   ok(schema=obj({"items": {"type": "array", "items": ref("ProtectionPolicy")}}, ["items"])),
   tag="protection")
op("get", "/v1/protection-policies/{level}", "viewer", "getProtectionPolicy",
   "one priority level's protection policy", ok("ProtectionPolicy", etag=True), LEVEL_PARAM,
   errors=READ_ERRORS, tag="protection")
op("get", "/v1/users/{id}/trips", "viewer", "listUserTrips",
   "a user's announced trips not yet over",
   ok(schema=obj({"items": {"type": "array", "items": ref("Trip")}}, ["items"])), ID_PARAM,
   errors=READ_ERRORS, tag="trips")
op("delete", "/v1/users/{id}/trips/{trip_id}", "operator", "deleteUserTrip",
   "remove a user's announced trip (audited: io.homing.trip.deleted)",
   {"204": {"description": "removed"}},
   ID_PARAM + [path_param("trip_id", integer=True)], errors=READ_ERRORS + ["Unavailable"],
   tag="trips")
op("get", "/v1/zones", "viewer", "listZones", "list zones", ok("ZonePage"), PAGED,
   errors=["BadRequest"], tag="zones")
op("get", "/v1/evacuations", "viewer", "listEvacuations", "list evacuations, newest first",
   ok("EvacuationPage"),
   [query("datacenter_id", ID, "only this datacenter's"),
    query("state", {"type": "string", "enum": ["planned", "running", "done", "cancelled"]},
          "only evacuations in this state")] + PAGED, errors=["BadRequest"], tag="evacuations")
op("get", "/v1/evacuations/{id}", "viewer", "getEvacuation",
   "one evacuation: its plan and its progress per priority level", ok("Evacuation"),
   [path_param("id", integer=True)], errors=READ_ERRORS, tag="evacuations")
op("get", "/v1/zones/{id}", "viewer", "getZone", "one zone", ok("Zone", etag=True), ID_PARAM,
   errors=READ_ERRORS, tag="zones")
op("get", "/v1/placement-reports", "viewer", "listPlacementReports",
   "stored replay reports (placement quality), newest first, without their figures",
   ok("PlacementReportPage"), PAGED, errors=["BadRequest"], tag="placement")
op("get", "/v1/placement-reports/{id}", "viewer", "getPlacementReport",
   "one stored replay report, with its figures (report: as homing replay --json wrote it)",
   ok("PlacementReport"), [path_param("id", integer=True)], errors=READ_ERRORS,
   tag="placement")
op("put", "/v1/datacenters/{id}/status", "operator", "setDatacenterStatus",
   "set a datacenter's status: draining stops new placements there; down fails its "
   "snapshots over to their warm replicas (GET /v1/failovers)",
   ok("Datacenter", etag=True), ID_PARAM + IF_MATCH, body("StatusChange"),
   errors=READ_ERRORS + WRITE_ERRORS + ["PreconditionFailed"], tag="datacenters")
op("put", "/v1/protection-policies/{level}", "operator", "putProtectionPolicy",
   "set a priority level's replicas and RPO", ok("ProtectionPolicy", etag=True),
   LEVEL_PARAM + IF_MATCH, body("ProtectionPolicyInput"),
   errors=READ_ERRORS + WRITE_ERRORS + ["PreconditionFailed"],
   description="rpo_s is required with replicas and null without. The scheduler follows the "
               "new policy at its next replica pass: replicas are designated, refreshed or "
               "released.", tag="protection")

op("post", "/v1/failover-tests", "operator", "startFailoverTest",
   "rehearse a site's failover: throwaway copies of its snapshots at their replica sites",
   ok("FailoverTest", status="201", description="started; poll it", location=True),
   request=body("FailoverTestInput"), errors=["Conflict"] + WRITE_ERRORS, tag="failovers",
   description="Each snapshot active at the site with a warm replica at a site that is not "
               "down gets a throwaway VM there, named fotest-<id>, on an overlay of the "
               "replica's copy: the real placements, epochs and power records do not change. "
               "422 when the datacenter does not exist, 409 site-down when it is down (its "
               "failover is real).")
op("post", "/v1/failover-tests/{id}/cleanup", "operator", "cleanUpFailoverTest",
   "clean a failover test up: its throwaway VMs are powered off and their overlays deleted",
   ok("FailoverTest", status="202", description="cleaning (or cleaned: none ran)"),
   [path_param("id", integer=True)], errors=READ_ERRORS + ["Unavailable"], tag="failovers")
op("post", "/v1/failovers/{id}/failback", "operator", "failback",
   "move a returned site's failed-over snapshots back: only what its cached copy lacks travels",
   ok("Failover", status="202", description="the moves are queued (see the levels' "
      "failback_queued and failed_back)"),
   [path_param("id", integer=True)],
   request={"required": False, "content": {"application/json": {"schema": ref("FailbackInput")}}},
   errors=READ_ERRORS + ["Conflict"] + WRITE_ERRORS, tag="failovers",
   description="Every snapshot of the failover that still runs from the copy the failover "
               "activated (active nowhere else since) gets a move back to the site, level 1 first (reason "
               "failback). The site keeps its copy from before the failover as a cached one, "
               "which the target builds from. 409 site-not-active while the site is not "
               "active. Like any move it needs room there (capacity less used and reserved "
               "bytes): when the site lacks room for them all, 409 site-full with free_bytes, "
               "bytes_needed and the snapshots that do not fit (the least urgent beyond the "
               "room), unless the body's when_full chooses queue_what_fits or queue_all; no "
               "body is refuse. A second call queues only what is not queued yet.")
op("post", "/v1/placement-reports", "operator", "createPlacementReport",
   "store a replay's figures under a name",
   ok("PlacementReport", status="201", description="stored (the answer leaves out the figures)",
      location=True),
   [{**query("name", {"type": "string", "minLength": 1, "maxLength": 128},
             "the report's name"), "required": True}],
   body("ReplayReport"), errors=WRITE_ERRORS, tag="placement",
   description="The body is the JSON `homing replay --json` writes (`homing replay --publish "
               "NAME` posts it). The members the dashboard draws are checked before anything "
               "is stored (422 names the first that is missing or wrong); the others are kept "
               "as they come. The body may be up to 4 MiB (not --max-body-bytes). Event: "
               "io.homing.placement_report.created.")
op("delete", "/v1/placement-reports/{id}", "operator", "deletePlacementReport",
   "remove a stored replay report", {"204": {"description": "removed"}},
   [path_param("id", integer=True)], errors=READ_ERRORS + ["Unavailable"], tag="placement",
   description="Event: io.homing.placement_report.deleted.")
op("post", "/v1/snapshots/{id}/versions", "operator", "composeVersion",
   "compose a new version: a base version with chosen items of another (its agent writes it)",
   ok("Composition", status="202", description="queued for the agent of the snapshot's "
      "active datacenter", etag=True),
   ID_PARAM, body("CompositionInput"), errors=READ_ERRORS + ["Conflict"] + WRITE_ERRORS,
   tag="snapshots",
   description="Needs an operator token with the operator role or a higher one. Checked "
   "against the registered versions before anything is written: 422 (errors[0].pointer "
   "names the member) for a base or from this snapshot has not registered (another "
   "snapshot's included), versions of other disk sizes, a configuration path that is not a "
   "JSON Pointer, names an item of neither version or one whose parent the base lacks, an "
   "extent that is not whole 4 KiB blocks or lies outside the disk, or nothing chosen; 409 "
   "no-active-placement. The agent of the active datacenter then writes the version in its "
   "store (the base's disk outside the extents, from's inside; the base's configuration "
   "with the chosen items of from), registers it as the next version (it becomes the "
   "active one) and reports the composition: poll GET /v1/compositions/{id}. Events: "
   "io.homing.snapshot.composition_requested, then version_composed or composition_failed.")
op("post", "/v1/datacenters/{id}/evacuations", "operator", "createEvacuation",
   "plan a datacenter's evacuation (dry_run) or run one",
   ok("Evacuation", status="201", description="the evacuation with its plan", location=True),
   ID_PARAM, body("EvacuationInput"),
   errors=READ_ERRORS + WRITE_ERRORS + ["Conflict"], tag="evacuations",
   description="The plan names every snapshot active at the datacenter: its target (its "
   "replica's site when active, else the nearest active datacenter to its user inside its "
   "zones with room, counting what the plan already sends there), its priority level, the "
   "bytes to send (the delta from the newest copy the target holds, else the version and "
   "template), or why it cannot move (capacity, zones, no-eligible-site). A dry run stores "
   "it (state planned) and changes nothing else. Running (without dry_run, or execute) "
   "needs the datacenter draining (409 datacenter-not-draining; datacenter-down for a "
   "site that is down; evacuation-running when one runs). Events: "
   "io.homing.evacuation.created, .started; the scheduler's .level_done and .completed.")
op("post", "/v1/evacuations/{id}/execute", "operator", "executeEvacuation",
   "run a planned evacuation (a dry run's plan, as stored)", ok("Evacuation"),
   [path_param("id", integer=True)], errors=READ_ERRORS + ["Conflict", "Unavailable"],
   tag="evacuations")
op("post", "/v1/evacuations/{id}/cancel", "operator", "cancelEvacuation",
   "cancel an evacuation: what has not switched over stays (its transfers cancelled, its VM "
   "running at the source again); what has stays at its target", ok("Evacuation"),
   [path_param("id", integer=True)], errors=READ_ERRORS + ["Conflict", "Unavailable"],
   tag="evacuations")
op("post", "/v1/transfers/{id}/cancel", "operator", "cancelTransfer",
   "cancel a queued or running transfer", ok("Transfer"), [path_param("id", integer=True)],
   errors=READ_ERRORS + ["Conflict", "Unavailable"], tag="transfers")
op("post", "/v1/transfers/{id}/retry", "operator", "retryTransfer",
   "retry a failed or cancelled transfer: queues a new one (retry_of names the old)",
   ok("Transfer", status="201", description="the new transfer", location=True),
   [path_param("id", integer=True)], errors=READ_ERRORS + ["Conflict", "Unavailable"],
   tag="transfers")
op("post", "/v1/datacenters", "admin", "createDatacenter", "add a datacenter",
   ok("Datacenter", status="201", description="created", etag=True, location=True),
   request=body("DatacenterInput"), errors=WRITE_ERRORS + ["Conflict"], tag="datacenters")
op("patch", "/v1/datacenters/{id}", "admin", "updateDatacenter",
   "change a datacenter (If-Match required)", ok("Datacenter", etag=True),
   ID_PARAM + IF_MATCH, body("DatacenterPatch"),
   errors=READ_ERRORS + WRITE_ERRORS + ["PreconditionFailed", "PreconditionRequired"],
   tag="datacenters")
op("delete", "/v1/datacenters/{id}", "admin", "deleteDatacenter",
   "remove a datacenter: refused while it holds active placements or has history",
   {"204": {"description": "removed"}}, ID_PARAM + IF_MATCH,
   errors=READ_ERRORS + ["Conflict", "PreconditionFailed", "Unavailable"], tag="datacenters")
op("post", "/v1/templates", "admin", "createTemplate", "add a template",
   ok("Template", status="201", description="created", etag=True, location=True),
   request=body("TemplateInput"), errors=WRITE_ERRORS + ["Conflict"], tag="templates")
op("patch", "/v1/templates/{id}", "admin", "updateTemplate",
   "change a template (If-Match required)", ok("Template", etag=True), ID_PARAM + IF_MATCH,
   body("TemplatePatch"),
   errors=READ_ERRORS + WRITE_ERRORS + ["PreconditionFailed", "PreconditionRequired"],
   tag="templates")
op("delete", "/v1/templates/{id}", "admin", "deleteTemplate",
   "remove a template: refused while snapshots or transfers use it",
   {"204": {"description": "removed"}}, ID_PARAM + IF_MATCH,
   errors=READ_ERRORS + ["Conflict", "PreconditionFailed", "Unavailable"], tag="templates")
REPLICA_PARAMS = [path_param("id", "the template"),
                  path_param("datacenter_id", "the datacenter")]
op("put", "/v1/templates/{id}/replicas/{datacenter_id}", "admin", "putReplica",
   "record that a datacenter holds the template",
   {**ok("Template", status="201", description="recorded", etag=True),
    **ok("Template", description="already recorded", etag=True)},
   REPLICA_PARAMS + IF_MATCH,
   errors=READ_ERRORS + ["PreconditionFailed", "Unavailable"], tag="templates")
op("delete", "/v1/templates/{id}/replicas/{datacenter_id}", "admin", "deleteReplica",
   "forget a template's replica", {"204": {"description": "forgotten"}},
   REPLICA_PARAMS + IF_MATCH, errors=READ_ERRORS + ["PreconditionFailed", "Unavailable"],
   tag="templates")
op("post", "/v1/snapshots", "admin", "createSnapshot",
   "add a snapshot with its first (active) placement",
   ok("Snapshot", status="201", description="created", etag=True, location=True),
   request=body("SnapshotInput"), errors=WRITE_ERRORS + ["Conflict"], tag="snapshots")
op("patch", "/v1/snapshots/{id}", "admin", "updateSnapshot",
   "change a snapshot's size, priority or allowed zones (If-Match required)",
   ok("Snapshot", etag=True), ID_PARAM + IF_MATCH, body("SnapshotPatch"),
   errors=READ_ERRORS + WRITE_ERRORS + ["PreconditionFailed", "PreconditionRequired"],
   tag="snapshots")
op("delete", "/v1/snapshots/{id}", "admin", "deleteSnapshot",
   "remove a snapshot: refused while a transfer of it is queued or running",
   {"204": {"description": "removed"}}, ID_PARAM + IF_MATCH,
   errors=READ_ERRORS + ["Conflict", "PreconditionFailed", "Unavailable"], tag="snapshots")
op("put", "/v1/zones/{id}", "admin", "putZone", "create or replace a zone from GeoJSON",
   {**ok("Zone", status="201", description="created", etag=True, location=True),
    **ok("Zone", description="replaced", etag=True)},
   ID_PARAM + IF_MATCH, body("ZoneInput"), errors=WRITE_ERRORS + ["PreconditionFailed"],
   tag="zones")
op("delete", "/v1/zones/{id}", "admin", "deleteZone",
   "remove a zone: refused while snapshots are confined to it",
   {"204": {"description": "removed"}}, ID_PARAM + IF_MATCH,
   errors=READ_ERRORS + ["Conflict", "PreconditionFailed", "Unavailable"], tag="zones")
op("get", "/v1/tokens", "admin", "listTokens", "list operator tokens (never their secrets)",
   ok("OperatorTokenPage"), PAGED, errors=["BadRequest"], tag="tokens")
op("post", "/v1/tokens", "admin", "createToken",
   "make an operator token: its secret is in this answer only",
   ok("OperatorToken", status="201", description="created", location=True),
   request=body("OperatorTokenInput"), errors=WRITE_ERRORS, tag="tokens")
op("delete", "/v1/tokens/{id}", "admin", "revokeToken", "revoke an operator token",
   {"204": {"description": "revoked"}}, [path_param("id", integer=True)],
   errors=READ_ERRORS + ["Unavailable"], tag="tokens")
op("post", "/v1/device-tokens", "admin", "createDeviceToken",
   "mint a device token (signed, not stored)",
   ok("DeviceToken", status="201", description="minted"), request=body("DeviceTokenInput"),
   errors=WRITE_ERRORS, tag="tokens")

AGENT_ID_PARAM = [path_param("id", "the transfer", integer=True)]
AGENT_TRANSFER_ERRORS = ["NotFound", "Conflict"] + WRITE_ERRORS
op("put", "/v1/agent/endpoint", "agent", "setAgentEndpoint",
   "say where this datacenter's agent answers its peers", ok("AgentEndpointSet"),
   request=body("AgentEndpoint"), errors=WRITE_ERRORS, tag="agents",
   description="Sets the token's datacenter's agent_url: jobs name it as source_url and "
               "template_source_url.")
op("post", "/v1/agent/claim", "agent", "claimTransfer",
   "claim the next due transfer into this datacenter (by priority, then age)",
   {**ok("Job", description="the job: the transfer is running under the owner's lease"),
    "204": {"description": "nothing is due"}},
   request=body("ClaimInput"), errors=WRITE_ERRORS, tag="agents",
   description="Due: queued (and past its back-off), or running under an expired lease. "
               "Priority 1 first, then the oldest. The claim sets running, the owner, the "
               "lease, a new pull ticket and one more attempt.")
op("post", "/v1/agent/transfers/{id}/progress", "agent", "reportProgress",
   "report a claimed transfer's progress and renew its lease", ok("Progress"),
   AGENT_ID_PARAM, body("ProgressInput"), errors=AGENT_TRANSFER_ERRORS, tag="agents",
   description="409 transfer-not-running when the transfer was cancelled or its lease went "
               "to another owner: stop.")
op("post", "/v1/agent/transfers/{id}/succeeded", "agent", "transferSucceeded",
   "a claimed transfer's copy is verified: the placement moves to it", ok("Transfer"),
   AGENT_ID_PARAM, body("SucceededInput"), errors=AGENT_TRANSFER_ERRORS, tag="agents",
   description="409 when the transfer is not running under this owner; 422 digest-mismatch "
               "when content_sha256 is not the registered version's (nothing changes). The "
               "old placement stays as a cached copy.")
op("post", "/v1/agent/transfers/{id}/failed", "agent", "transferFailed",
   "a claimed transfer failed: retry it after a back-off, or end it", ok("Transfer"),
   AGENT_ID_PARAM, body("FailedInput"), errors=AGENT_TRANSFER_ERRORS, tag="agents",
   description="With retry and attempts left: queued again, claimable after 2^attempts "
               "seconds (at most 60). Otherwise failed with the error.")
op("post", "/v1/agent/evictions", "agent", "evictCachedCopies",
   "the cached copies to delete here now: marked evicted, listed", ok("Evictions"),
   request=body("EvictionsInput"), errors=WRITE_ERRORS, tag="agents",
   description="Cached copies (inactive placements still in the store) older than "
               "--cache-max-age-s, then the oldest while used, reserved and cached bytes exceed "
               "--cache-high-water of the capacity; never a copy a transfer into this "
               "datacenter may build from. The agent deletes their files.")
op("post", "/v1/agent/transfers/{id}/pause", "agent", "pauseTransfer",
   "step aside for a more urgent transfer: back to the queue, resumable", ok("Transfer"),
   AGENT_ID_PARAM, body("PauseInput"), errors=AGENT_TRANSFER_ERRORS, tag="agents",
   description="Queued again at once, the attempt given back; the target keeps what it "
               "wrote, so the next claim resumes it. Agents pause when progress answers "
               "more_urgent_waiting and they have no idle worker for the datacenter.")
op("post", "/v1/agent/pulls/verify", "agent", "verifyPull",
   "check a peer's pull ticket for a transfer from this datacenter", ok("PullVerified"),
   request=body("PullVerifyInput"), errors=WRITE_ERRORS, tag="agents",
   description="200 when the transfer is running, the ticket is its ticket, and the caller's "
               "datacenter is its source (or holds the template the target lacks); 403 "
               "otherwise.")
op("post", "/v1/agent/compositions/claim", "agent", "claimComposition",
   "the next composition to write here: running now, or 204",
   {**ok("CompositionJob", description="the composition, running now"),
    "204": {"description": "none is due"}},
   request=body("CompositionClaimInput"), errors=WRITE_ERRORS, tag="agents",
   description="Queued ones at the token's datacenter, oldest first, and running ones "
               "claimed more than 10 minutes ago (their agent died). version is the one to "
               "write: one past the snapshot's.")
op("post", "/v1/agent/compositions/{id}/succeeded", "agent", "compositionSucceeded",
   "a claimed composition ended with a registered version", ok("Composition"),
   [path_param("id", "the composition", integer=True)], body("CompositionSucceededInput"),
   errors=["NotFound", "Conflict"] + WRITE_ERRORS, tag="agents",
   description="409 composition-not-running; 422 when this datacenter did not register "
               "that version of the snapshot.")
op("post", "/v1/agent/compositions/{id}/failed", "agent", "compositionFailed",
   "a claimed composition could not be written", ok("Composition"),
   [path_param("id", "the composition", integer=True)], body("CompositionFailedInput"),
   errors=["NotFound", "Conflict"] + WRITE_ERRORS, tag="agents")
op("post", "/v1/agent/diffs/claim", "agent", "claimDiskDiff",
   "the next disk diff to compute here: running now, or 204",
   {**ok("DiskDiffJob", description="the disk diff, running now"),
    "204": {"description": "none is due"}},
   request=body("DiskDiffClaimInput"), errors=WRITE_ERRORS, tag="agents",
   description="Queued ones at the token's datacenter, oldest first, and running ones "
               "claimed more than 10 minutes ago.")
op("post", "/v1/agent/diffs/{id}/succeeded", "agent", "diskDiffSucceeded",
   "a claimed disk diff's extents", ok("DiskDiffEnded"),
   [path_param("id", "the disk diff", integer=True)], body("DiskDiffSucceededInput"),
   errors=["NotFound", "Conflict"] + WRITE_ERRORS, tag="agents",
   description="409 disk-diff-not-running; 422 when disk is not a disk diff.")
op("post", "/v1/agent/diffs/{id}/failed", "agent", "diskDiffFailed",
   "a claimed disk diff could not be computed", ok("DiskDiffEnded"),
   [path_param("id", "the disk diff", integer=True)], body("CompositionFailedInput"),
   errors=["NotFound", "Conflict"] + WRITE_ERRORS, tag="agents")
op("post", "/v1/agent/file-diffs/claim", "agent", "claimFileDiff",
   "the next file diff to compute here: running now, or 204",
   {**ok("FileDiffJob", description="the file diff, running now"),
    "204": {"description": "none is due"}},
   request=body("DiskDiffClaimInput"), errors=WRITE_ERRORS, tag="agents",
   description="Queued ones at the token's datacenter, oldest first, and running ones "
               "claimed more than 10 minutes ago.")
op("post", "/v1/agent/file-diffs/{id}/progress", "agent", "fileDiffProgress",
   "how far a claimed file diff is: its phase and percent", ok("FileDiffRunning"),
   [path_param("id", "the file diff", integer=True)], body("FileDiffProgressInput"),
   errors=["NotFound", "Conflict"] + WRITE_ERRORS, tag="agents",
   description="409 file-diff-not-running.")
op("post", "/v1/agent/file-diffs/{id}/succeeded", "agent", "fileDiffSucceeded",
   "a claimed file diff's files", ok("FileDiffRunning"),
   [path_param("id", "the file diff", integer=True)], body("FileDiffSucceededInput"),
   errors=["NotFound", "Conflict"] + WRITE_ERRORS, tag="agents",
   description="409 file-diff-not-running; 422 when files is not a file diff.")
op("post", "/v1/agent/file-diffs/{id}/failed", "agent", "fileDiffFailed",
   "a claimed file diff could not be computed (unavailable: libguestfs cannot run here)",
   ok("FileDiffRunning"), [path_param("id", "the file diff", integer=True)],
   body("FileDiffFailedInput"), errors=["NotFound", "Conflict"] + WRITE_ERRORS, tag="agents")
op("post", "/v1/agent/snapshots/{id}/versions", "agent", "registerVersion",
   "register a new version of a snapshot active at this datacenter",
   ok("SnapshotVersion", status="201", description="registered"),
   [path_param("id", "the snapshot")], body("VersionInput"),
   errors=["NotFound", "Conflict"] + WRITE_ERRORS, tag="agents",
   description="The version is the next one (or the current one, once, when its content "
               "was never registered). 409 not-active-here when the snapshot is not active "
               "at the caller's datacenter, not-next-version, snapshot-in-transfer while a "
               "transfer of it runs. The active placement moves to the new version.")
op("get", "/v1/agent/vms", "agent", "listAgentVms",
   "the VMs that should run at this datacenter, and those its records say run here",
   ok("AgentVms"), tag="agents",
   description="vms: snapshots active here whose desired power is on, with the version and "
               "the snapshot's current epoch (power on under it). powered_on: snapshots whose "
               "latest record here says powered_on. Power off what runs here and is not in "
               "vms first, then power on what is.")
op("post", "/v1/agent/failover-tests/vms/{id}", "agent", "reportFailoverTestVm",
   "report a failover test's throwaway VM powered on, powered off, or failed to start",
   ok(schema=obj({"id": {"type": "integer"}, "state": POWER_STATE,
                  "test_cleaned": {"type": "boolean"}}, ["id", "state", "test_cleaned"])),
   [path_param("id", "the test VM's id (its name is fotest-<id>)", integer=True)],
   body("FailoverTestReport"), errors=["NotFound"] + WRITE_ERRORS, tag="agents",
   description="Only for a VM of the agent's datacenter (404 otherwise). No epoch, no fence: "
               "the VM is no placement's.")
op("post", "/v1/agent/vms/{id}/power", "agent", "reportPower",
   "report a VM powered on (fenced by epoch), powered off, or failed to start",
   ok("PowerRecord", status="201", description="recorded"),
   [path_param("id", "the snapshot")], body("PowerInput"),
   errors=["NotFound", "Conflict"] + WRITE_ERRORS, tag="agents",
   description="powered_on is refused (409, nothing recorded, an io.homing.vm.power_refused "
               "event) with stale-epoch when the epoch is not the snapshot's current one, "
               "not-active-here when its active placement is elsewhere, powered-on-elsewhere "
               "when another datacenter that is not down still reports it powered on: power "
               "the VM off again. 422 when the epoch is ahead of the snapshot's.")

# ---- the document --------------------------------------------------------------

SECURITY = {"public": [], "device": [{"deviceToken": []}], "agent": [{"agentToken": []}]}
for role in ("viewer", "operator", "admin"):
    SECURITY[role] = [{"operatorToken": []}]


def document():
    paths = {}
    for o in OPS:
        responses = dict(o["responses"])
        errors = list(o["errors"])
        if o["access"] != "public":
            errors += ["Unauthorized", "Forbidden"]
        for e in errors:
            responses.setdefault(STATUS_OF[e], {"$ref": f"#/components/responses/{e}"})
        operation = {
            "operationId": o["operation_id"],
            "summary": o["summary"],
            "tags": [o["tag"]],
            "security": SECURITY[o["access"]],
            "x-homing-access": o["access"],
            "responses": responses,
        }
        if o["description"]:
            operation["description"] = o["description"]
        elif o["access"] not in ("public", "device", "agent"):
            operation["description"] = f"Needs an operator token with the {o['access']} role " \
                                       "or a higher one."
        if o["params"]:
            operation["parameters"] = o["params"]
        if o["request"]:
            operation["requestBody"] = o["request"]
        paths.setdefault(o["path"], {})[o["method"]] = operation
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "homing",
            "version": VERSION,
            "summary": "keeps each user's VM snapshot in the datacenter nearest to the user",
            "description": (
                "Devices post locations with a device token; operators read and act with "
                "bearer tokens that carry a role: viewer (read), operator (drain, cancel, "
                "retry), admin (catalog, zones, tokens). Transfer agents call /v1/agent/ with "
                "agent tokens, each scoped to one datacenter. Lists are paged with an opaque "
                "cursor (next_cursor). Single resources carry an ETag; PATCH needs If-Match, "
                "other writes honour it. Errors are RFC 9457 problem documents. Every write "
                "is one PostgreSQL transaction and every operator action an audit event "
                "(CloudEvents) on the audit topic."),
        },
        "servers": [{"url": "/"}],
        "tags": [{"name": t} for t in ("datacenters", "templates", "snapshots", "transfers",
                                       "zones", "protection", "evacuations", "failovers", "placement",
                                       "tokens", "agents", "ingest", "trips", "health",
                                       "dashboard")],
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "parameters": PARAMETERS,
            "responses": {name: {"description": text, "content": PROBLEM}
                          for name, text in RESPONSES.items()},
            "securitySchemes": {
                "operatorToken": {"type": "http", "scheme": "bearer",
                                  "description": "hop_... from `homing token operator` or "
                                                 "POST /v1/tokens; the role decides"},
                "agentToken": {"type": "http", "scheme": "bearer",
                               "description": "hag_... from `homing token agent --datacenter "
                                              "ID`: the agent of that datacenter"},
                "deviceToken": {"type": "http", "scheme": "bearer",
                                "description": "v1.<kid>.<payload>.<HMAC-SHA-256>, from "
                                               "`homing token device` or POST /v1/device-tokens"},
            },
        },
    }


def c_bytes(data):
    """A C initializer: string literals over 4095 characters are not ISO C."""
    hexes = [f"0x{b:02x}" for b in data] + ["0"]
    return ",\n".join("        " + ", ".join(hexes[i:i + 16]) for i in range(0, len(hexes), 16))


def main():
    doc = document()
    with open(sys.argv[1], "w") as f:
        f.write(json.dumps(doc, indent=1) + "\n")
    compact = json.dumps(doc, separators=(",", ":")).encode()
    with open(sys.argv[2], "w") as f:
        f.write("/* Generated by api/openapi.py from its tables: do not edit. */\n"
                "extern const char api_openapi_json[];\n"
                "const char api_openapi_json[] = {\n" + c_bytes(compact) + "\n};\n")


if __name__ == "__main__":
    main()
