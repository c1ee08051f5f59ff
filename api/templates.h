/*
 * templates — /v1/templates and their replicas.
 */
#pragma once

#include <microhttpd.h>

struct request;

enum MHD_Result api_templates_list(struct request *req);
enum MHD_Result api_templates_get(struct request *req);
enum MHD_Result api_templates_create(struct request *req);
enum MHD_Result api_templates_update(struct request *req);
enum MHD_Result api_templates_delete(struct request *req);
enum MHD_Result api_replicas_list(struct request *req);
enum MHD_Result api_replicas_put(struct request *req);
enum MHD_Result api_replicas_delete(struct request *req);
