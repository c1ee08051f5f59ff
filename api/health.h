/*
 * health — probes, metrics, numbers for the dashboard, who a token is, the
 * OpenAPI document.
 */
#pragma once

#include <microhttpd.h>

struct request;

enum MHD_Result api_healthz(struct request *req);
enum MHD_Result api_readyz(struct request *req);
enum MHD_Result api_metrics(struct request *req);
enum MHD_Result api_stats(struct request *req);
enum MHD_Result api_openapi(struct request *req);
enum MHD_Result api_me(struct request *req);

/* The OpenAPI document, generated at build time from openapi.py (openapi.c). */
extern const char api_openapi_json[];
