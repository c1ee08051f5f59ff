/*
 * protection — /v1/protection-policies, what each priority level protects.
 */
#pragma once

#include <microhttpd.h>
#include <stdbool.h>

#include "api/input.h"

struct request;

/* What the routes declare (router.c): the resource, the PUT body, its check. */
extern const struct api_resource api_protection_resource;
extern const struct api_field api_protection_fields[];
bool api_protection_valid(struct request *req, enum MHD_Result *reply);

enum MHD_Result api_protection_list(struct request *req);
enum MHD_Result api_protection_get(struct request *req);
enum MHD_Result api_protection_put(struct request *req);
