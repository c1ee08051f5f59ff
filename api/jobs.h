/*
 * Agent jobs: disk diffs, compositions and file diffs, queued for the agent
 * of one datacenter. What their routes share: the claim (the oldest queued
 * job, or one claimed more than ten minutes ago by an agent that died since,
 * locked so that two agents never take the same) and the check that a job
 * still runs before its agent ends it.
 */
#pragma once

#include <microhttpd.h>
#include <stdbool.h>

struct request;

/* The claim's WHERE for `table` aliased `alias`; $1 is the agent's datacenter. */
#define API_JOB_CLAIMABLE(table, alias)                                            \
        " WHERE " alias ".id = (SELECT id FROM " table " WHERE datacenter_id = $1" \
        "   AND (state = 'queued' OR (state = 'running'"                           \
        "        AND claimed_at < now() - interval '10 minutes'))"                 \
        "   ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED)"

/* Runs the claim `sql` (an UPDATE ... API_JOB_CLAIMABLE ... RETURNING the job
 * as JSON text) and answers 200 with the job, or 204 when none waits. */
enum MHD_Result api_job_claim(struct request *req, const char *sql);

/* True when the job locked for this request (its state in column 0) runs;
 * else false after answering 409 `<slug>-not-running`, naming it `what`. */
bool api_job_running(struct request *req, const char *slug, const char *what, enum MHD_Result *ret);
