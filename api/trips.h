/*
 * trips — /v1/trips: a device announces its user's booked trips ahead of
 * time (where to, when it lands, when it comes back), so the scheduler can
 * pre-stage a warm copy at the destination; operators read and remove them
 * under /v1/users/{id}/trips.
 */
#pragma once

#include <microhttpd.h>
#include <stdbool.h>

#include "api/input.h"

struct request;

/* What the routes declare (router.c): the body and its check. */
extern const struct api_field api_trip_fields[];
bool api_trip_valid(struct request *req, enum MHD_Result *reply);

enum MHD_Result api_trips_create(struct request *req);
enum MHD_Result api_trips_list(struct request *req);
enum MHD_Result api_trips_delete(struct request *req);
enum MHD_Result api_user_trips_list(struct request *req);
enum MHD_Result api_user_trips_delete(struct request *req);
