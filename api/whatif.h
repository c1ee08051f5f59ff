/*
 * whatif — what homing would decide for a user somewhere else.
 */
#pragma once

#include <microhttpd.h>

struct request;

enum MHD_Result api_users_what_if(struct request *req);
