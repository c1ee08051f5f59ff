/*
 * failovers — /v1/failovers, what became of a down site's snapshots, and
 * their failback; /v1/snapshots/{id}/restore, where a user's next restore
 * comes from; /v1/failover-tests, the rehearsal.
 */
#pragma once

#include <microhttpd.h>

#include "api/input.h"
#include "api/resource.h"

struct request;

/* What the routes lock and take (router.c). */
extern const struct api_resource api_failover_resource;
extern const struct api_resource api_failover_test_resource;
extern const struct api_field api_failover_test_fields[];

enum MHD_Result api_failovers_list(struct request *req);
enum MHD_Result api_failovers_get(struct request *req);
enum MHD_Result api_failovers_snapshots(struct request *req);
enum MHD_Result api_failovers_failback(struct request *req);
enum MHD_Result api_snapshots_restore(struct request *req);

/* /v1/failover-tests: rehearsals, isolated throwaway copies at the replica sites. */
enum MHD_Result api_failover_tests_create(struct request *req);
enum MHD_Result api_failover_tests_list(struct request *req);
enum MHD_Result api_failover_tests_get(struct request *req);
enum MHD_Result api_failover_tests_cleanup(struct request *req);
