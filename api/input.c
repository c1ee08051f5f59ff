/*
 * What a request carries: its path parameters, its query, and its body as
 * one JSON object checked against the route's fields (unknown members,
 * missing required ones, types and bounds). A body that does not fit is
 * answered here, with the member's JSON pointer.
 */
#include "api/input.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/parse.h"
#include "api/reply.h"
#include "api/request.h"
#include "auth/auth.h"

const char *api_param(const struct request *req, size_t i) {
        return i < req->n_params ? req->params[i] : "";
}

const char *api_query(const struct request *req, const char *name) {
        return MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, name);
}

bool api_query_number(const struct request *req, const char *name, double *out) {
        const char *v = api_query(req, name);
        return v && api_number_parse(v, out) == 0;
}

json_t *api_body_object(struct request *req, enum MHD_Result *reply) {
        json_error_t jerr;
        json_t *doc;

        if (!api_content_type_is_json(MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND,
                                                                  "Content-Type"))) {
                *reply = api_reply_problem(req, 415, "unsupported-media-type",
                                           "Unsupported media type",
                                           "the body is sent as application/json", NULL);
                return NULL;
        }
        if (req->body_too_large) {
                char detail[96];
                snprintf(detail, sizeof(detail), "the body exceeds %ld bytes", req->body_max);
                *reply = api_reply_problem(req, 413, "body-too-large", "Request body too large",
                                           detail, NULL);
                return NULL;
        }
        doc = json_loadb(req->body ? req->body : "", req->body_len, JSON_REJECT_DUPLICATES, &jerr);
        if (!doc) {
                char detail[256];
                snprintf(detail, sizeof(detail), "line %d, column %d: %s", jerr.line, jerr.column,
                         jerr.text);
                *reply = api_reply_problem(req, 400, "malformed-json", "The body is not valid JSON",
                                           detail, NULL);
                return NULL;
        }
        if (!json_is_object(doc)) {
                json_decref(doc);
                *reply = api_reply_invalid(req, "", "the body is a JSON object");
                return NULL;
        }
        return doc;
}

static bool field_known(const struct api_field *fields, const char *name) {
        for (size_t i = 0; fields[i].name; i++)
                if (!strcmp(fields[i].name, name))
                        return true;
        return false;
}

/* NULL when the value fits the field, or why not. */
static const char *field_problem(const struct api_field *f, const json_t *v, char *buf,
                                 size_t size) {
        if (json_is_null(v))
                return f->nullable ? NULL : "must not be null";
        switch (f->type) {
        case FIELD_STRING: {
                const char *s = json_string_value(v);
                if (!s)
                        return "must be a string";
                if (!*s || strlen(s) > 256)
                        return "must be 1 to 256 characters";
                return NULL;
        }
        case FIELD_ID:
                if (!json_is_string(v))
                        return "must be a string";
                return auth_id_valid(json_string_value(v))
                               ? NULL
                               : "must be 1 to 64 letters, digits or -_.:@";
        case FIELD_NUMBER:
        case FIELD_COUNT:
        case FIELD_INTEGER: {
                double d;
                if (!json_is_number(v))
                        return "must be a number";
                d = json_number_value(v);
                if (f->type != FIELD_NUMBER && (!json_is_integer(v) || d != floor(d)))
                        return "must be a whole number";
                if (f->type == FIELD_COUNT && d < 0)
                        return "must not be negative";
                if (f->min < f->max && (d < f->min || d > f->max)) {
                        snprintf(buf, size, "must be within [%g, %g]", f->min, f->max);
                        return buf;
                }
                return NULL;
        }
        case FIELD_ID_ARRAY: {
                size_t i;
                json_t *item;
                if (!json_is_array(v))
                        return "must be an array of ids";
                json_array_foreach(v, i, item) if (
                        !json_is_string(item) ||
                        !auth_id_valid(json_string_value(
                                item))) return "must be an array of ids (1 to 64 letters, digits or -_.:@)";
                return json_array_size(v) <= 64 ? NULL : "holds at most 64 ids";
        }
        case FIELD_OBJECT:
                return json_is_object(v) ? NULL : "must be an object";
        case FIELD_BOOLEAN:
                return json_is_boolean(v) ? NULL : "must be true or false";
        case FIELD_ARRAY:
                if (!json_is_array(v))
                        return "must be an array";
                if (f->min < f->max && (double)json_array_size(v) > f->max) {
                        snprintf(buf, size, "holds at most %g items", f->max);
                        return buf;
                }
                return NULL;
        }
        return "is not valid";
}

bool api_check_fields(struct request *req, const json_t *obj, const struct api_field *fields,
                      enum MHD_Result *reply) {
        char pointer[160], buf[96];
        const char *name, *why;
        json_t *v;

        json_object_foreach((json_t *)obj, name, v) {
                if (!field_known(fields, name)) {
                        snprintf(pointer, sizeof(pointer), "/%.128s", name);
                        *reply =
                                api_reply_invalid(req, pointer, "is not a member of this resource");
                        return false;
                }
        }
        for (size_t i = 0; fields[i].name; i++) {
                v = json_object_get(obj, fields[i].name);
                snprintf(pointer, sizeof(pointer), "/%s", fields[i].name);
                if (!v) {
                        if (fields[i].required) {
                                *reply = api_reply_invalid(req, pointer, "is required");
                                return false;
                        }
                        continue;
                }
                if ((why = field_problem(&fields[i], v, buf, sizeof(buf)))) {
                        *reply = api_reply_invalid(req, pointer, why);
                        return false;
                }
        }
        return true;
}
