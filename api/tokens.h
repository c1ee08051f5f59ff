/*
 * tokens — /v1/tokens and /v1/device-tokens, for admins.
 */
#pragma once

#include <microhttpd.h>
#include <stdbool.h>

#include "api/input.h"

struct request;

/* What the routes' bodies hold (router.c). */
extern const struct api_field api_tokens_create_fields[];
extern const struct api_field api_device_tokens_create_fields[];

enum MHD_Result api_tokens_list(struct request *req);
enum MHD_Result api_tokens_create(struct request *req);
enum MHD_Result api_tokens_revoke(struct request *req);
enum MHD_Result api_device_tokens_create(struct request *req);
