/*
 * The dashboard's files, served by homing itself so the page works with no
 * network beyond this server: the page, its scripts and style from
 * --dashboard-dir, and what it takes from npm (country outlines from
 * world-atlas, topojson-client, d3-geo and d3-array), which `npm ci` put in
 * that folder's node_modules at build time. Only the files named below are
 * served; a path never reaches the file system.
 */
#include "api/dashboard.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/input.h"
#include "api/reply.h"
#include "api/request.h"
#include "api/state.h"
#include "base/config.h"

/*
 * Everything the dashboard loads is its own (no inline script or style
 * attribute, no CDN); the favicon is the empty data: URL of index.html;
 * nobody may frame it (clickjacking an operator's token).
 */
#define API_DASHBOARD_CSP                                                                \
        "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; " \
        "form-action 'self'; frame-ancestors 'none'"

struct asset {
        const char *name; /* /dashboard/<name> */
        const char *path; /* under --dashboard-dir */
        const char *type;
};

static const struct asset assets[] = {
        { "app.js", "app.js", "text/javascript; charset=utf-8" },
        { "quality.js", "quality.js", "text/javascript; charset=utf-8" },
        { "app.css", "app.css", "text/css; charset=utf-8" },
        { "d3-array.min.js", "node_modules/d3-array/dist/d3-array.min.js",
          "text/javascript; charset=utf-8" },
        { "d3-geo.min.js", "node_modules/d3-geo/dist/d3-geo.min.js",
          "text/javascript; charset=utf-8" },
        { "topojson-client.min.js", "node_modules/topojson-client/dist/topojson-client.min.js",
          "text/javascript; charset=utf-8" },
        { "countries-110m.json", "node_modules/world-atlas/countries-110m.json",
          "application/json" },
};

static enum MHD_Result send_file(struct request *req, const char *rel, const char *type) {
        char path[4096];
        FILE *f;
        char *data = NULL;
        long size = -1;
        size_t got = 0;
        struct MHD_Response *resp;
        enum MHD_Result ret;

        snprintf(path, sizeof(path), "%s/%s", req->api->cfg->dashboard_dir, rel);
        f = fopen(path, "rb");
        if (f && fseek(f, 0, SEEK_END) == 0 && (size = ftell(f)) >= 0 &&
            fseek(f, 0, SEEK_SET) == 0 && (data = malloc((size_t)size + 1)))
                got = fread(data, 1, (size_t)size, f);
        if (f)
                fclose(f);
        if (!data || got != (size_t)size) {
                free(data);
                return api_reply_problem(req, 404, "not-found", "Not found",
                                         "this dashboard file is missing: run npm ci in the "
                                         "dashboard folder (tests/run and deploy/quickstart do)",
                                         NULL);
        }
        resp = MHD_create_response_from_buffer((size_t)size, data, MHD_RESPMEM_MUST_FREE);
        MHD_add_response_header(resp, "Content-Type", type);
        MHD_add_response_header(resp, "Cache-Control", "no-cache");
        MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
        MHD_add_response_header(resp, "Content-Security-Policy", API_DASHBOARD_CSP);
        MHD_add_response_header(resp, "X-Frame-Options", "DENY");
        ret = MHD_queue_response(req->conn, 200, resp);
        MHD_destroy_response(resp);
        return ret;
}

enum MHD_Result api_dashboard_index(struct request *req) {
        return send_file(req, "index.html", "text/html; charset=utf-8");
}

enum MHD_Result api_dashboard_file(struct request *req) {
        const char *name = api_param(req, 0);

        for (size_t i = 0; i < sizeof(assets) / sizeof(assets[0]); i++)
                if (!strcmp(assets[i].name, name))
                        return send_file(req, assets[i].path, assets[i].type);
        return api_reply_problem(req, 404, "not-found", "Not found", "no such dashboard file",
                                 NULL);
}
