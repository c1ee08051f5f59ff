/* The router: path templates, parameters, the most literal match, 405 vs 404. */
#include <string.h>

#include "api/datacenters.h"
#include "api/input.h"
#include "api/request.h"
#include "api/router.h"
#include "api/templates.h"
#include "tap.h"

static const struct api_route *route(const char *method, const char *path, struct request *req) {
        memset(req, 0, sizeof(*req));
        api_route(req, method, path);
        return req->route;
}

TEST(a_literal_path_routes_to_its_handler) {
        struct request req;
        CHECK(route("GET", "/v1/datacenters", &req) != NULL);
        CHECK(req.handle == api_datacenters_list);
        CHECK(req.n_params == 0);
        CHECK(route("POST", "/v1/locations", &req) && req.route->access == ACCESS_DEVICE);
}

TEST(path_parameters_are_captured) {
        struct request req;
        CHECK(route("DELETE", "/v1/templates/tpl-1/replicas/aws-eu-west-3", &req) != NULL);
        CHECK(req.handle == api_replicas_delete);
        CHECK(req.n_params == 2);
        CHECK_STR(api_param(&req, 0), "tpl-1");
        CHECK_STR(api_param(&req, 1), "aws-eu-west-3");
        CHECK_STR(api_param(&req, 2), "");
}

TEST(the_more_literal_template_wins) {
        struct request req;
        CHECK(route("GET", "/v1/datacenters/nearest", &req) != NULL);
        CHECK(req.handle == api_datacenters_nearest);
        CHECK(route("GET", "/v1/datacenters/nearby", &req) != NULL);
        CHECK(req.handle == api_datacenters_get);
        CHECK_STR(api_param(&req, 0), "nearby");
}

TEST(a_known_path_with_another_method_is_405_with_allow) {
        struct request req;
        CHECK(route("POST", "/v1/datacenters/x", &req) == NULL);
        CHECK(req.handle != NULL);
        CHECK(strstr(req.allow, "GET") && strstr(req.allow, "PATCH") &&
              strstr(req.allow, "DELETE"));
}

TEST(unknown_paths_empty_segments_and_trailing_slashes_are_404) {
        struct request req;
        const char *paths[] = { "/v1/nowhere",
                                "/v1/datacenters/",
                                "/v1//datacenters",
                                "/v1/datacenters/x/y/z",
                                "",
                                "v1/datacenters" };
        for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
                CHECK(route("GET", paths[i], &req) == NULL);
                CHECK(req.allow[0] == '\0');
        }
}

TEST(an_overlong_segment_matches_no_parameter) {
        struct request req;
        char path[512] = "/v1/zones/";
        memset(path + strlen(path), 'z', 200);
        path[10 + 200] = '\0';
        CHECK(route("GET", path, &req) == NULL);
}

TEST(the_dashboard_and_health_are_public_and_the_rest_is_not) {
        for (size_t i = 0; i < api_n_routes; i++) {
                const char *p = api_routes[i].pattern;
                bool public = !strcmp(p, "/") || !strncmp(p, "/dashboard/", 11) ||
                              !strcmp(p, "/healthz") || !strcmp(p, "/readyz") ||
                              !strcmp(p, "/v1/openapi.json");
                if (public != (api_routes[i].access == ACCESS_PUBLIC)) {
                        printf("#   %s %s\n", api_routes[i].method, p);
                        CHECK(0);
                }
        }
}

TAP_MAIN(TAP_TEST(a_literal_path_routes_to_its_handler), TAP_TEST(path_parameters_are_captured),
         TAP_TEST(the_more_literal_template_wins),
         TAP_TEST(a_known_path_with_another_method_is_405_with_allow),
         TAP_TEST(unknown_paths_empty_segments_and_trailing_slashes_are_404),
         TAP_TEST(an_overlong_segment_matches_no_parameter),
         TAP_TEST(the_dashboard_and_health_are_public_and_the_rest_is_not))
