/*
 * /v1/agent/vms: powering VMs on and off, fenced. An agent asks which VMs
 * should run at its datacenter (snapshots whose active placement is there
 * and whose desired power is on, most urgent level first, each with its
 * version and the snapshot's epoch) and which the records say run there;
 * it reports what it did (powered_on, powered_off, failed) under an epoch.
 * PostgreSQL holds the fence (migration 019): a powered_on report is refused unless its epoch
 * is the snapshot's current one, the active placement is here, and no
 * other datacenter that is not down says it still runs the VM. Every
 * record, and every refusal, is an audit event. A VM whose evacuation is
 * switching it over (migration 022) is left out at its source, which
 * powers it off before the final delta is sent.
 *
 * A failover test's throwaway VMs (api/failovers.c) are listed apart, as
 * `tests`, each with a name of its own: they are no placement's, carry no
 * epoch and pass no fence; their agent reports them to their own route.
 */
#include "api/power.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/audit.h"
#include "api/input.h"
#include "api/pool.h"
#include "api/reply.h"
#include "api/request.h"
#include "api/resource.h"
#include "store/store.h"

/* The snapshot reported on, locked (so no switch runs beside the record), and its epoch. */
const struct api_resource api_power_snapshot_resource = {
        "snapshot", "/v1/snapshots",
        NULL,       "SELECT epoch FROM snapshots WHERE id = $1 FOR UPDATE",
        false,      NULL,
        NULL,
};

const struct api_field api_power_fields[] = {
        { "epoch", FIELD_INTEGER, true, false, 1, 9.0e15 },
        { "state", FIELD_STRING, true, false, 0, 0 },
        { "reason", FIELD_STRING, false, false, 0, 0 },
        { NULL, 0, false, false, 0, 0 },
};

static const char *const states[] = { "powered_on", "powered_off", "failed", NULL };
/* The event of each state, in the order of `states`. */
static const char *const events[] = { "io.homing.vm.powered_on", "io.homing.vm.powered_off",
                                      "io.homing.vm.power_failed" };

static int state_index(const char *state) {
        for (int i = 0; state && states[i]; i++)
                if (!strcmp(states[i], state))
                        return i;
        return -1;
}

bool api_power_valid(struct request *req, enum MHD_Result *reply) {
        if (state_index(json_string_value(json_object_get(req->input, "state"))) >= 0)
                return true;
        *reply = api_reply_invalid(req, "/state", "is powered_on, powered_off or failed");
        return false;
}

/*
 * What should run here, and what the records say runs here. `blocked_by`
 * names another datacenter whose latest record still says powered_on (and
 * is not down): powering on now would be refused, so the agent waits.
 */
enum MHD_Result api_power_list(struct request *req) {
        const char *params[1] = { req->who.datacenter_id };
        struct store_result *res = NULL;
        enum MHD_Result ret;
        int r = api_fetch_one(
                req,
                "SELECT json_build_object('datacenter_id', $1::text,"
                " 'vms', coalesce((SELECT json_agg(json_build_object('snapshot_id', s.id,"
                "    'version', p.version, 'epoch', s.epoch, 'template_id', s.template_id,"
                "    'blocked_by', CASE WHEN x.why LIKE 'powered-on-elsewhere:%' THEN"
                "                  substr(x.why, 22) END) ORDER BY s.priority, s.id)"
                "   FROM placements p JOIN snapshots s ON s.id = p.snapshot_id"
                "   CROSS JOIN LATERAL (SELECT homing_power_on_refusal(s.id, $1, s.epoch) AS why) x"
                "   WHERE p.datacenter_id = $1 AND p.active AND s.power = 'on'"
                "     AND NOT EXISTS (SELECT 1 FROM evacuation_items i"
                "       JOIN evacuations e ON e.id = i.evacuation_id"
                "       WHERE i.snapshot_id = s.id AND e.datacenter_id = $1"
                "         AND e.state = 'running' AND i.state IN ('stopping', 'switching'))),"
                " '[]'::json),"
                " 'powered_on', coalesce((SELECT json_agg(json_build_object("
                "    'snapshot_id', l.snapshot_id, 'epoch', l.epoch) ORDER BY l.snapshot_id)"
                "   FROM (SELECT DISTINCT ON (r.snapshot_id) r.snapshot_id, r.epoch, r.state"
                "         FROM power_records r WHERE r.datacenter_id = $1"
                "         ORDER BY r.snapshot_id, r.id DESC) l"
                "   WHERE l.state = 'powered_on'), '[]'::json),"
                " 'tests', coalesce((SELECT json_agg(json_build_object('id', v.id,"
                "    'name', 'fotest-' || v.id, 'snapshot_id', v.snapshot_id, 'version', v.version)"
                "    ORDER BY v.priority, v.id)"
                "   FROM failover_test_vms v JOIN failover_tests t ON t.id = v.test_id"
                "   WHERE v.datacenter_id = $1 AND t.state = 'running'"
                "     AND v.state IN ('pending', 'powered_on')), '[]'::json))::text",
                1, params, &res);

        if (r <= 0)
                return api_reply_db_error(req);
        ret = api_reply_raw(req, 200, store_text(res, 0, 0), NULL);
        store_result_free(res);
        return ret;
}

/* The refusal's problem: 409 with its type, and an event that says who was refused. */
static enum MHD_Result refuse(struct request *req, const char *snapshot, const char *epoch,
                              long long current, const char *why) {
        const char *elsewhere = !strncmp(why, "powered-on-elsewhere:", 21) ? why + 21 : NULL;
        char detail[384];
        json_t *data;

        if (elsewhere)
                snprintf(detail, sizeof(detail),
                         "%.64s still reports the VM powered on (and is not down): power it off "
                         "here",
                         elsewhere);
        else if (!strcmp(why, "stale-epoch"))
                snprintf(detail, sizeof(detail),
                         "epoch %s is not the snapshot's current epoch %lld: power it off here",
                         epoch, current);
        else
                snprintf(detail, sizeof(detail),
                         "the snapshot's active placement is not at %.64s: power it off here",
                         req->who.datacenter_id);
        data = json_pack("{s:s, s:s, s:I, s:I, s:s}", "snapshot_id", snapshot, "datacenter_id",
                         req->who.datacenter_id, "epoch", (json_int_t)strtoll(epoch, NULL, 10),
                         "current_epoch", (json_int_t)current, "refusal",
                         elsewhere ? "powered-on-elsewhere" : why);
        if (elsewhere)
                json_object_set_new(data, "elsewhere", json_string(elsewhere));
        /* Nothing is recorded but the refusal itself: it is worth an audit. */
        if (api_audit(req, "io.homing.vm.power_refused", snapshot, data) < 0 || api_commit(req) < 0)
                return api_reply_db_error(req);
        return api_reply_problem(req, 409, elsewhere ? "powered-on-elsewhere" : why,
                                 "Conflict with the current state", detail,
                                 json_pack("{s:I}", "current_epoch", (json_int_t)current));
}

enum MHD_Result api_power_report(struct request *req) {
        const char *snapshot = api_param(req, 0), *dc = req->who.datacenter_id;
        const char *state = json_string_value(json_object_get(req->input, "state"));
        const char *reason = json_string_value(json_object_get(req->input, "reason"));
        long long current = (long long)store_int(req->locked, 0, 0);
        struct store_result *res = NULL;
        enum MHD_Result ret;
        char epoch[24], detail[128];
        json_t *record, *data;
        int r;

        snprintf(epoch, sizeof(epoch), "%lld",
                 (long long)json_integer_value(json_object_get(req->input, "epoch")));
        if (strtoll(epoch, NULL, 10) > current) {
                snprintf(detail, sizeof(detail), "is ahead of the snapshot's epoch %lld", current);
                return api_reply_invalid(req, "/epoch", detail);
        }
        if (!strcmp(state, "powered_on")) {
                const char *params[3] = { snapshot, dc, epoch };
                r = api_fetch_one(req, "SELECT homing_power_on_refusal($1, $2, $3::bigint)", 3,
                                  params, &res);
                if (r <= 0) {
                        store_result_free(res);
                        return api_reply_db_error(req);
                }
                if (store_text(res, 0, 0)) {
                        ret = refuse(req, snapshot, epoch, current, store_text(res, 0, 0));
                        store_result_free(res);
                        return ret;
                }
                res = store_result_free(res);
        }
        {
                const char *params[5] = { snapshot, dc, epoch, state, reason };
                r = api_fetch_one(req,
                                  "INSERT INTO power_records (snapshot_id, datacenter_id, epoch,"
                                  " state, reason) VALUES ($1, $2, $3::bigint, $4, $5)"
                                  " RETURNING json_build_object('id', id, 'snapshot_id',"
                                  " snapshot_id, 'datacenter_id', datacenter_id, 'epoch', epoch,"
                                  " 'state', state, 'reason', reason,"
                                  " 'created_at', homing_time(created_at))::text",
                                  5, params, &res);
        }
        if (r <= 0) {
                store_result_free(res);
                return api_reply_db_error(req);
        }
        record = json_loads(store_text(res, 0, 0), 0, NULL);
        store_result_free(res);
        data = record ? json_deep_copy(record) : NULL;
        if (data) {
                json_object_set(data, "record_id", json_object_get(data, "id"));
                json_object_del(data, "id");
                json_object_del(data, "created_at");
                if (json_is_null(json_object_get(data, "reason")))
                        json_object_del(data, "reason");
        }
        if (!record || !data || api_audit(req, events[state_index(state)], snapshot, data) < 0 ||
            api_commit(req) < 0) {
                json_decref(record);
                return api_reply_db_error(req);
        }
        return api_reply_json(req, 201, record);
}

/* ---- a failover test's throwaway VMs ------------------------------------------------- */

/* The VM, at the agent's datacenter, with its test's state, both locked. */
const struct api_resource api_power_test_vm_resource = {
        "failover test VM",
        "/v1/failover-tests",
        NULL,
        "SELECT v.test_id, t.state, v.snapshot_id FROM failover_test_vms v"
        " JOIN failover_tests t ON t.id = v.test_id"
        " WHERE v.id = $1::bigint AND v.datacenter_id = $2 FOR UPDATE OF v, t",
        true,
        NULL,
        NULL,
};

const struct api_field api_power_test_fields[] = {
        { "state", FIELD_STRING, true, false, 0, 0 },
        { "reason", FIELD_STRING, false, false, 0, 0 },
        { NULL, 0, false, false, 0, 0 },
};

/*
 * What the agent did with a throwaway VM. A VM powered on while its test
 * is being cleaned up puts the test back to cleaning (the agent powers it
 * off at its next pass); the last one off makes the test `cleaned`.
 */
enum MHD_Result api_power_test_report(struct request *req) {
        const char *vm = api_param(req, 0), *dc = req->who.datacenter_id;
        const char *state = json_string_value(json_object_get(req->input, "state"));
        const char *reason = json_string_value(json_object_get(req->input, "reason"));
        const char *test = store_text(req->locked, 0, 0);
        struct store_result *res = NULL;
        bool cleaned = false;
        json_t *data;
        int r;

        if (strspn(vm, "0123456789") != strlen(vm))
                return api_reply_not_found(req, "failover test VM", vm);
        {
                const char *params[3] = { vm, state, reason };
                r = api_exec(req,
                             "UPDATE failover_test_vms SET state = $2, reason = $3,"
                             " updated_at = now() WHERE id = $1::bigint",
                             3, params, NULL);
        }
        if (r >= 0 && !strcmp(state, "powered_on") &&
            strcmp(store_text(req->locked, 0, 1), "running") != 0) {
                const char *params[1] = { test };
                r = api_exec(req,
                             "UPDATE failover_tests SET state = 'cleaning', cleaned_at = NULL"
                             " WHERE id = $1::bigint",
                             1, params, NULL);
        }
        if (r >= 0) {
                const char *params[1] = { test };
                r = api_exec(req, "SELECT homing_failover_test_settle($1::bigint)", 1, params,
                             &res);
                cleaned = r >= 0 && store_rows(res) == 1 && store_text(res, 0, 0) &&
                          store_bool(res, 0, 0);
                res = store_result_free(res);
        }
        if (r < 0)
                return api_reply_db_error(req);
        data = json_pack("{s:I, s:I, s:s, s:s, s:s}", "failover_test_id",
                         (json_int_t)strtoll(test, NULL, 10), "vm_id",
                         (json_int_t)strtoll(vm, NULL, 10), "snapshot_id",
                         store_text(req->locked, 0, 2), "datacenter_id", dc, "state", state);
        if (data && reason)
                json_object_set_new(data, "reason", json_string(reason));
        if (api_audit(req, "io.homing.failover_test.vm_reported", test, data) < 0 ||
            (cleaned && api_audit(req, "io.homing.failover_test.cleaned", test,
                                  json_pack("{s:I}", "failover_test_id",
                                            (json_int_t)strtoll(test, NULL, 10))) < 0) ||
            api_commit(req) < 0)
                return api_reply_db_error(req);
        return api_reply_json(req, 200,
                              json_pack("{s:I, s:s, s:b}", "id", (json_int_t)strtoll(vm, NULL, 10),
                                        "state", state, "test_cleaned", cleaned));
}
