/*
 * A site set down outside the API: the scheduler notices it at its catalog
 * reload and fails it over the way the API's status change does (and ends
 * the failover of a site set back). homing_failover_follow (migration 026)
 * does the work in one transaction; it locks each datacenter's row and
 * looks again before acting, as the API's status change holds that row, so
 * a site fails over exactly once however many schedulers look.
 */
#include <stdlib.h>

#include "base/config.h"
#include "base/log.h"
#include "scheduler/internal.h"
#include "store/store.h"

void scheduler_follow_failovers(struct upkeep *u) {
        struct store_result *done = NULL;
        const char *params[1] = { u->cfg->topic_audit };
        int r = store_begin(u->db);

        if (r >= 0) {
                /* A large site's failover is one long statement, and it must finish. */
                r = store_exec(u->db, "SET LOCAL statement_timeout = 0", 0, NULL, NULL);
        }
        if (r >= 0)
                r = store_exec(u->db,
                               "SELECT datacenter_id, failover_id, started"
                               " FROM homing_failover_follow($1)",
                               1, params, &done);
        if (r >= 0)
                r = store_commit(u->db);
        if (r < 0) {
                log_error("scheduler",
                          "following the sites set down failed (%s); the next"
                          " catalog reload tries again",
                          store_error(u->db));
                store_rollback(u->db);
        } else {
                for (size_t i = 0; i < store_rows(done); i++)
                        log_info("scheduler",
                                 store_bool(done, i, 2)
                                         ? "%s was set down outside the API: failover %lld"
                                         : "%s is back outside the API: failover %lld ended",
                                 store_text(done, i, 0), (long long)store_int(done, i, 1));
        }
        store_result_free(done);
}
