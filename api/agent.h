/*
 * agent — /v1/agent/, what the transfer agents call.
 */
#pragma once

#include <microhttpd.h>

struct request;

enum MHD_Result api_agent_endpoint(struct request *req);
enum MHD_Result api_agent_claim(struct request *req);
enum MHD_Result api_agent_progress(struct request *req);
enum MHD_Result api_agent_succeeded(struct request *req);
enum MHD_Result api_agent_failed(struct request *req);
enum MHD_Result api_agent_pause(struct request *req);
enum MHD_Result api_agent_evictions(struct request *req);
enum MHD_Result api_agent_pull_verify(struct request *req);
enum MHD_Result api_agent_version_register(struct request *req);
