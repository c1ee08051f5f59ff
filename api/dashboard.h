/*
 * dashboard — the dashboard's files.
 */
#pragma once

#include <microhttpd.h>

struct request;

enum MHD_Result api_dashboard_index(struct request *req);
enum MHD_Result api_dashboard_file(struct request *req);
