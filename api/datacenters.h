/*
 * datacenters — /v1/datacenters, the catalog of sites.
 */
#pragma once

#include <microhttpd.h>

struct request;

enum MHD_Result api_datacenters_list(struct request *req);
enum MHD_Result api_datacenters_nearest(struct request *req);
enum MHD_Result api_datacenters_get(struct request *req);
enum MHD_Result api_datacenters_create(struct request *req);
enum MHD_Result api_datacenters_update(struct request *req);
enum MHD_Result api_datacenters_delete(struct request *req);
enum MHD_Result api_datacenters_set_status(struct request *req);
