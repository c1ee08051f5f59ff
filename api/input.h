/*
 * input — what a request carries: path parameters, query arguments, and a
 * JSON body checked against a list of fields.
 */
#pragma once

#include <microhttpd.h>
#include <stdbool.h>
#include <stddef.h>

struct json_t;
struct request;

/* A path parameter by position ("" past the last). */
const char *api_param(const struct request *req, size_t i);
/* A query argument, or NULL. */
const char *api_query(const struct request *req, const char *name);
/* A query argument that is a finite number: true and *out, false when absent or not one. */
bool api_query_number(const struct request *req, const char *name, double *out);

/*
 * Reads the body as one JSON object. Returns it (the caller owns it), or
 * NULL after answering 400/413/415/422.
 */
struct json_t *api_body_object(struct request *req, enum MHD_Result *reply);

enum api_field_type {
        FIELD_STRING,   /* non-empty text up to 256 */
        FIELD_ID,       /* the id alphabet, 1 to 64 */
        FIELD_NUMBER,   /* finite */
        FIELD_COUNT,    /* whole number >= 0 */
        FIELD_INTEGER,  /* whole number */
        FIELD_ID_ARRAY, /* array of ids */
        FIELD_OBJECT,
        FIELD_BOOLEAN,
        FIELD_ARRAY, /* any array; at most `max` items when min < max */
};

struct api_field {
        const char *name;
        enum api_field_type type;
        bool required;
        bool nullable;
        double min, max; /* numbers, when min < max */
};

/*
 * Checks an object against a list of fields (ended by a NULL name): unknown
 * members, missing required ones, types and bounds. Returns true, or false
 * after answering 422 with the member's pointer.
 */
bool api_check_fields(struct request *req, const struct json_t *obj, const struct api_field *fields,
                      enum MHD_Result *reply);
