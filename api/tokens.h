/*
 * tokens — /v1/tokens and /v1/device-tokens, for admins.
 */
#pragma once

#include <microhttpd.h>

struct request;

enum MHD_Result api_tokens_list(struct request *req);
enum MHD_Result api_tokens_create(struct request *req);
enum MHD_Result api_tokens_revoke(struct request *req);
enum MHD_Result api_device_tokens_create(struct request *req);
