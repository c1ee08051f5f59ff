/*
 * The HTTP router (api/router.c): api_route over the real route table, for
 * any method and path.
 *
 * The target holds an independent reference: split template and path at
 * '/', a {name} segment matches one non-empty segment of at most
 * API_PARAM_MAX bytes, literals match exactly; of the matching templates the
 * most literal win. Properties: api_route picks the route the reference
 * picks (the first in the table with the method among the winners), its
 * parameters are the path's segments (filling them into the template gives
 * the path back), a path that matches only with other methods gets 405 with
 * those methods in Allow, and no path matches two routes of one method
 * equally well (the table is unambiguous).
 */
#include <jansson.h>
#include <stdbool.h>

#include "api/input.h"
#include "api/request.h"
#include "api/router.h"
#include "fuzz.h"

#define PATH_MAX_FUZZ 512
#define SEGS 16

/* Splits "/a/b" into its segments; false when it does not start with '/' or has too many. */
static bool split(const char *s, const char *seg[SEGS], size_t len[SEGS], size_t *n) {
        *n = 0;
        if (*s != '/')
                return false;
        while (*s == '/') {
                const char *start = ++s;
                while (*s && *s != '/')
                        s++;
                if (*n == SEGS)
                        return false;
                seg[*n] = start;
                len[(*n)++] = (size_t)(s - start);
        }
        return *s == '\0';
}

static bool is_param(const char *seg, size_t len) {
        return len > 1 && seg[0] == '{' && seg[len - 1] == '}';
}

/* -1, or the number of literal segments. */
static int reference_match(const char *pattern, const char *path) {
        const char *ps[SEGS], *ts[SEGS];
        size_t pl[SEGS], tl[SEGS], np, nt;
        int literal = 0, params = 0;

        if (!split(pattern, ps, pl, &np) || !split(path, ts, tl, &nt) || np != nt)
                return -1;
        for (size_t i = 0; i < np; i++) {
                if (is_param(ps[i], pl[i])) {
                        if (tl[i] == 0 || tl[i] > API_PARAM_MAX || ++params > API_MAX_PARAMS)
                                return -1;
                } else if (pl[i] != tl[i] || memcmp(ps[i], ts[i], pl[i])) {
                        return -1;
                } else {
                        literal++;
                }
        }
        return literal;
}

/* The template with its {name}s replaced by the request's parameters. */
static void fill(const struct api_route *route, const struct request *req, char *out, size_t size) {
        const char *p = route->pattern;
        size_t o = 0, k = 0;

        while (*p && o + 1 < size) {
                if (*p == '{') {
                        const char *v = api_param(req, k++);
                        while (*v && o + 1 < size)
                                out[o++] = *v++;
                        p = strchr(p, '}') + 1;
                } else {
                        out[o++] = *p++;
                }
        }
        out[o] = '\0';
}

/* Whether `s` is UTF-8 text, by Jansson's check (the router's own). */
static bool is_utf8(const char *s) {
        json_t *j = json_string(s);
        json_decref(j);
        return j != NULL;
}

static const char *const methods[] = { "GET",    "POST", "PUT",     "PATCH",
                                       "DELETE", "HEAD", "OPTIONS", "get" };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        static struct request req;
        const char *method;
        char *path, rebuilt[PATH_MAX_FUZZ * 2];
        int best = -1;
        const struct api_route *want = NULL;
        bool other_methods = false;

        if (size < 1 || size > PATH_MAX_FUZZ)
                return 0;
        method = methods[data[0] % (sizeof(methods) / sizeof(methods[0]))];
        path = fuzz_strndup(data + 1, size - 1);

        for (size_t i = 0; i < api_n_routes; i++) {
                int m = reference_match(api_routes[i].pattern, path);
                best = m > best ? m : best;
        }
        for (size_t i = 0; best >= 0 && i < api_n_routes; i++) {
                if (reference_match(api_routes[i].pattern, path) != best)
                        continue;
                if (strcmp(api_routes[i].method, method) != 0) {
                        other_methods = true;
                        continue;
                }
                if (want) {
                        fprintf(stderr, "%s %s matches %s and %s equally\n", method, path,
                                want->pattern, api_routes[i].pattern);
                        FUZZ_CHECK(!"the route table is unambiguous");
                }
                want = &api_routes[i];
        }

        memset(&req, 0, sizeof(req));
        api_route(&req, method, path);
        FUZZ_CHECK(req.handle != NULL);
        if (want && !is_utf8(path)) {
                /* Literal segments are ASCII, so a parameter is not text: the
                 * router answers 400 rather than name the route. */
                FUZZ_CHECK(req.route == NULL);
                free(path);
                return 0;
        }
        if (req.route != want)
                fprintf(stderr, "%s '%s': router %s, reference %s\n", method, path,
                        req.route ? req.route->pattern : "none", want ? want->pattern : "none");
        FUZZ_CHECK(req.route == want);
        if (want) {
                FUZZ_CHECK(req.handle == want->handle);
                FUZZ_CHECK(req.n_params <= API_MAX_PARAMS);
                for (size_t i = 0; i < req.n_params; i++)
                        FUZZ_CHECK(req.params[i][0] && strlen(req.params[i]) <= API_PARAM_MAX &&
                                   !strchr(req.params[i], '/'));
                fill(want, &req, rebuilt, sizeof(rebuilt));
                FUZZ_CHECK(!strcmp(rebuilt, path));
        } else if (other_methods) {
                FUZZ_CHECK(req.allow[0] != '\0');
        } else {
                FUZZ_CHECK(req.allow[0] == '\0');
        }
        /* Allow names only methods the path takes. */
        for (char *a = req.allow; *a;) {
                size_t n = strcspn(a, ",");
                bool known = false;
                for (size_t i = 0; i < api_n_routes && !known; i++)
                        known = strlen(api_routes[i].method) == n &&
                                !memcmp(api_routes[i].method, a, n) &&
                                reference_match(api_routes[i].pattern, path) == best;
                FUZZ_CHECK(known);
                a += n;
                a += strspn(a, ", ");
        }
        free(path);
        return 0;
}
