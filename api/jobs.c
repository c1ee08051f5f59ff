/* Agent jobs (jobs.h): the claim and the running check their routes share. */
#include "api/jobs.h"

#include <stdio.h>
#include <string.h>

#include "api/pool.h"
#include "api/reply.h"
#include "api/request.h"
#include "store/store.h"

enum MHD_Result api_job_claim(struct request *req, const char *sql) {
        const char *params[1] = { req->who.datacenter_id };
        struct store_result *res = NULL;
        enum MHD_Result ret;

        if (api_exec(req, sql, 1, params, &res) < 0)
                ret = api_reply_db_error(req);
        else if (store_rows(res) == 0)
                ret = api_reply_empty(req, 204);
        else
                ret = api_reply_raw(req, 200, store_text(res, 0, 0), NULL);
        store_result_free(res);
        return ret;
}

bool api_job_running(struct request *req, const char *slug, const char *what,
                     enum MHD_Result *ret) {
        char type[64], detail[128];

        if (!strcmp(store_text(req->locked, 0, 0), "running"))
                return true;
        snprintf(type, sizeof(type), "%s-not-running", slug);
        snprintf(detail, sizeof(detail),
                 "the %s is not running: it was not claimed, or it has ended", what);
        *ret = api_reply_conflict(req, type, detail);
        return false;
}
