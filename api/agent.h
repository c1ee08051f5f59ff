/*
 * agent — /v1/agent/, what the transfer agents call.
 */
#pragma once

#include <microhttpd.h>
#include <stdbool.h>

#include "api/input.h"
#include <stdbool.h>

struct request;

/* What the agent routes declare (router.c): their bodies, the digest's form, the transfer locked. */
extern const struct api_resource api_agent_transfer_resource;
extern const struct api_resource api_agent_snapshot_resource;
extern const struct api_field api_agent_endpoint_fields[];
extern const struct api_field api_agent_claim_fields[];
extern const struct api_field api_agent_progress_fields[];
extern const struct api_field api_agent_succeeded_fields[];
extern const struct api_field api_agent_pause_fields[];
extern const struct api_field api_agent_failed_fields[];
extern const struct api_field api_agent_evictions_fields[];
extern const struct api_field api_agent_pull_verify_fields[];
extern const struct api_field api_agent_version_register_fields[];
bool api_agent_digest_valid(struct request *req, enum MHD_Result *reply);

enum MHD_Result api_agent_endpoint(struct request *req);
enum MHD_Result api_agent_claim(struct request *req);
enum MHD_Result api_agent_progress(struct request *req);
enum MHD_Result api_agent_succeeded(struct request *req);
enum MHD_Result api_agent_failed(struct request *req);
enum MHD_Result api_agent_pause(struct request *req);
enum MHD_Result api_agent_evictions(struct request *req);
enum MHD_Result api_agent_pull_verify(struct request *req);
enum MHD_Result api_agent_version_register(struct request *req);
