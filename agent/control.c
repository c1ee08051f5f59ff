/*
 * The control-plane client. Calls are short and few (a claim every few
 * seconds, progress every second per transfer), so each thread keeps one
 * curl handle and its connection alive; a failed call is the caller's to
 * retry.
 */
#include "agent/control.h"

#include <curl/curl.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REPLY_MAX (4u << 20)

struct control {
        CURL *curl;
        char *api_url;
        char *auth; /* "Authorization: Bearer ..." */
        char *ca;   /* NULL: the system's */
};

struct buffer {
        char *data;
        size_t len;
        bool too_big;
};

static size_t on_body(char *ptr, size_t size, size_t n, void *userdata) {
        struct buffer *b = userdata;
        size_t len = size * n;
        char *grown;

        if (b->len + len > REPLY_MAX) {
                b->too_big = true;
                return 0;
        }
        grown = realloc(b->data, b->len + len + 1);
        if (!grown)
                return 0;
        memcpy(grown + b->len, ptr, len);
        b->data = grown;
        b->len += len;
        b->data[b->len] = '\0';
        return len;
}

int control_new(const char *api_url, const char *token, const char *ca, struct control **out) {
        struct control *c = calloc(1, sizeof(*c));

        if (!c)
                return -ENOMEM;
        if (ca && *ca && !(c->ca = strdup(ca))) {
                free(c);
                return -ENOMEM;
        }
        c->curl = curl_easy_init();
        c->api_url = strdup(api_url);
        if (c->curl && c->api_url && asprintf(&c->auth, "Authorization: Bearer %s", token) >= 0) {
                *out = c;
                return 0;
        }
        control_free(c);
        return -ENOMEM;
}

struct control *control_free(struct control *c) {
        if (!c)
                return NULL;
        if (c->curl)
                curl_easy_cleanup(c->curl);
        free(c->api_url);
        free(c->auth);
        free(c->ca);
        free(c);
        return NULL;
}

int control_call(struct control *c, const char *method, const char *path, json_t *body,
                 long *status, json_t **reply, char *err, size_t err_size) {
        struct curl_slist *headers = NULL;
        struct buffer answer = { 0 };
        char *url = NULL, *text = NULL;
        CURLcode rc;
        int r = 0;

        *reply = NULL;
        if (asprintf(&url, "%s%s", c->api_url, path) < 0)
                return -ENOMEM;
        if (body && !(text = json_dumps(body, JSON_COMPACT))) {
                free(url);
                return -ENOMEM;
        }
        headers = curl_slist_append(headers, c->auth);
        headers = curl_slist_append(headers, "Content-Type: application/json");
        headers = curl_slist_append(headers, "Accept: application/json, application/problem+json");
        curl_easy_reset(c->curl);
        curl_easy_setopt(c->curl, CURLOPT_URL, url);
        curl_easy_setopt(c->curl, CURLOPT_CUSTOMREQUEST, method);
        curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, headers);
        curl_easy_setopt(c->curl, CURLOPT_POSTFIELDS, text ? text : "");
        if (!strcmp(method, "GET"))
                curl_easy_setopt(c->curl, CURLOPT_HTTPGET, 1L);
        curl_easy_setopt(c->curl, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(c->curl, CURLOPT_WRITEDATA, &answer);
        curl_easy_setopt(c->curl, CURLOPT_CONNECTTIMEOUT_MS, 3000L);
        curl_easy_setopt(c->curl, CURLOPT_TIMEOUT_MS, 15000L);
        curl_easy_setopt(c->curl, CURLOPT_NOSIGNAL, 1L);
        if (c->ca)
                curl_easy_setopt(c->curl, CURLOPT_CAINFO, c->ca);
        rc = curl_easy_perform(c->curl);
        if (rc != CURLE_OK) {
                snprintf(err, err_size, "%s %s: %s", method, path, curl_easy_strerror(rc));
                r = -EIO;
        } else {
                curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, status);
                if (answer.len)
                        *reply = json_loadb(answer.data, answer.len, 0, NULL);
        }
        curl_slist_free_all(headers);
        free(answer.data);
        free(text);
        free(url);
        return r;
}
