/*
 * The difference of two configuration documents as JSON Pointer paths
 * (RFC 6901) and an RFC 6902 patch, and a document made of one with chosen
 * items of another. Objects are compared member by member, arrays element
 * by element by index, everything else whole (json_equal: 1 and 1.0
 * differ, as Jansson keeps integers and reals apart).
 */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "diff/diff.h"

/* ---- pointers ----------------------------------------------------------------- */

void diff_pointer_fini(struct diff_pointer *p) {
        for (size_t i = 0; i < p->n; i++)
                free(p->tokens[i]);
        free(p->tokens);
        p->tokens = NULL;
        p->n = 0;
}

/* Jansson refuses a string that is not UTF-8: its check is the one used here. */
static bool utf8_valid(const char *text, size_t len) {
        json_t *s = json_stringn(text, len);
        json_decref(s);
        return s != NULL;
}

int diff_pointer_parse(const char *text, struct diff_pointer *p) {
        size_t len, n = 0;
        const char *at;

        p->tokens = NULL;
        p->n = 0;
        if (!text)
                return -EINVAL;
        len = strlen(text);
        if (len == 0)
                return 0;
        if (text[0] != '/' || !utf8_valid(text, len))
                return -EINVAL;
        for (const char *c = text; *c; c++)
                n += *c == '/';
        p->tokens = calloc(n, sizeof(*p->tokens));
        if (!p->tokens)
                return -ENOMEM;
        at = text + 1;
        for (size_t i = 0; i < n; i++) {
                size_t seg = strcspn(at, "/"), k = 0;
                char *t = malloc(seg + 1);

                if (!t) {
                        diff_pointer_fini(p);
                        return -ENOMEM;
                }
                p->tokens[p->n++] = t;
                for (size_t j = 0; j < seg; j++) {
                        if (at[j] != '~') {
                                t[k++] = at[j];
                                continue;
                        }
                        if (j + 1 >= seg || (at[j + 1] != '0' && at[j + 1] != '1')) {
                                diff_pointer_fini(p);
                                return -EINVAL;
                        }
                        t[k++] = at[++j] == '0' ? '~' : '/';
                }
                t[k] = '\0';
                at += seg + 1;
        }
        return 0;
}

/* `token` escaped and appended to `prefix` (a pointer's text); malloc'd or NULL. */
static char *pointer_join(const char *prefix, const char *token) {
        size_t plen = strlen(prefix), len = plen + 1;
        char *s, *o;

        for (const char *c = token; *c; c++)
                len += (*c == '~' || *c == '/') ? 2 : 1;
        s = malloc(len + 1);
        if (!s)
                return NULL;
        memcpy(s, prefix, plen);
        o = s + plen;
        *o++ = '/';
        for (const char *c = token; *c; c++) {
                if (*c == '~' || *c == '/') {
                        *o++ = '~';
                        *o++ = *c == '~' ? '0' : '1';
                } else {
                        *o++ = *c;
                }
        }
        *o = '\0';
        return s;
}

char *diff_pointer_format(const struct diff_pointer *p) {
        char *s = strdup("");

        for (size_t i = 0; s && i < p->n; i++) {
                char *next = pointer_join(s, p->tokens[i]);
                free(s);
                s = next;
        }
        return s;
}

/* An array index as RFC 6901 spells it: "0", or digits without a leading zero. */
static bool index_parse(const char *token, size_t *out) {
        size_t v = 0;

        if (!token[0] || (token[0] == '0' && token[1]) || strlen(token) > 18)
                return false;
        for (const char *c = token; *c; c++) {
                if (*c < '0' || *c > '9')
                        return false;
                v = v * 10 + (size_t)(*c - '0');
        }
        *out = v;
        return true;
}

/* The value the first `n` tokens name, or NULL. */
static json_t *lookup(const json_t *doc, char *const *tokens, size_t n) {
        json_t *cur = (json_t *)doc;

        for (size_t i = 0; cur && i < n; i++) {
                size_t idx;

                if (json_is_object(cur))
                        cur = json_object_get(cur, tokens[i]);
                else if (json_is_array(cur) && index_parse(tokens[i], &idx))
                        cur = json_array_get(cur, idx);
                else
                        cur = NULL;
        }
        return cur;
}

json_t *diff_pointer_get(const json_t *doc, const char *text) {
        struct diff_pointer p;
        json_t *v;

        if (diff_pointer_parse(text, &p) < 0)
                return NULL;
        v = lookup(doc, p.tokens, p.n);
        diff_pointer_fini(&p);
        return v;
}

/* ---- diff ------------------------------------------------------------------------ */

struct walk {
        json_t *changes, *patch;
        int r;
};

static void emit(struct walk *w, const char *path, const char *change, const json_t *old,
                 const json_t *now) {
        static const char *const ops[] = { "replace", "add", "remove" };
        const char *op = ops[change[0] == 'c' ? 0 : change[0] == 'a' ? 1 : 2];
        json_t *c, *p;

        if (w->r)
                return;
        if (w->changes) {
                c = json_pack("{s:s, s:s}", "path", path, "change", change);
                if (!c || (old && json_object_set_new(c, "old", json_deep_copy(old))) ||
                    (now && json_object_set_new(c, "new", json_deep_copy(now))) ||
                    json_array_append_new(w->changes, c)) {
                        w->r = -ENOMEM;
                        return;
                }
        }
        if (w->patch) {
                p = json_pack("{s:s, s:s}", "op", op, "path", path);
                if (!p || (now && json_object_set_new(p, "value", json_deep_copy(now))) ||
                    json_array_append_new(w->patch, p))
                        w->r = -ENOMEM;
        }
}

static int key_cmp(const void *x, const void *y) {
        return strcmp(*(const char *const *)x, *(const char *const *)y);
}

static void walk(struct walk *w, const char *path, const json_t *a, const json_t *b);

static void walk_child(struct walk *w, const char *path, const char *token, const json_t *a,
                       const json_t *b) {
        char *child = pointer_join(path, token);

        if (!child) {
                w->r = -ENOMEM;
                return;
        }
        if (a && b)
                walk(w, child, a, b);
        else
                emit(w, child, a ? "removed" : "added", a, b);
        free(child);
}

/* Members of both objects in name order: removed, added or walked into. */
static void walk_objects(struct walk *w, const char *path, const json_t *a, const json_t *b) {
        size_t na = json_object_size(a), n = 0;
        const char **keys = malloc((na + json_object_size(b) + 1) * sizeof(*keys));
        const char *key;
        json_t *v;

        if (!keys) {
                w->r = -ENOMEM;
                return;
        }
        json_object_foreach((json_t *)a, key, v) {
                keys[n++] = key;
        }
        json_object_foreach((json_t *)b, key, v) {
                if (!json_object_get(a, key))
                        keys[n++] = key;
        }
        qsort(keys, n, sizeof(*keys), key_cmp);
        for (size_t i = 0; i < n && !w->r; i++)
                walk_child(w, path, keys[i], json_object_get(a, keys[i]),
                           json_object_get(b, keys[i]));
        free(keys);
}

/* Elements by index; surplus ones removed from the last down, so the patch applies in order. */
static void walk_arrays(struct walk *w, const char *path, const json_t *a, const json_t *b) {
        size_t na = json_array_size(a), nb = json_array_size(b);
        char token[24];

        for (size_t i = 0; i < na && i < nb && !w->r; i++) {
                snprintf(token, sizeof(token), "%zu", i);
                walk_child(w, path, token, json_array_get(a, i), json_array_get(b, i));
        }
        for (size_t i = na; i > nb && !w->r; i--) {
                snprintf(token, sizeof(token), "%zu", i - 1);
                walk_child(w, path, token, json_array_get(a, i - 1), NULL);
        }
        for (size_t i = na; i < nb && !w->r; i++) {
                snprintf(token, sizeof(token), "%zu", i);
                walk_child(w, path, token, NULL, json_array_get(b, i));
        }
}

static void walk(struct walk *w, const char *path, const json_t *a, const json_t *b) {
        if (json_is_object(a) && json_is_object(b))
                walk_objects(w, path, a, b);
        else if (json_is_array(a) && json_is_array(b))
                walk_arrays(w, path, a, b);
        else if (!json_equal(a, b))
                emit(w, path, "changed", a, b);
}

int diff_config(const json_t *a, const json_t *b, json_t **changes, json_t **patch) {
        struct walk w = { changes ? json_array() : NULL, patch ? json_array() : NULL, 0 };

        if ((changes && !w.changes) || (patch && !w.patch))
                w.r = -ENOMEM;
        else
                walk(&w, "", a, b);
        if (w.r < 0) {
                json_decref(w.changes);
                json_decref(w.patch);
                return w.r;
        }
        if (changes)
                *changes = w.changes;
        if (patch)
                *patch = w.patch;
        return 0;
}

/* ---- take ------------------------------------------------------------------------ */

/* One item of `from` into `doc` (or out of it, where `from` lacks it). */
static int take_one(json_t **doc, const json_t *from, const char *text) {
        struct diff_pointer p;
        json_t *src, *dst, *parent;
        const char *last;
        size_t idx, size;
        int r = diff_pointer_parse(text, &p);

        if (r < 0)
                return r;
        src = lookup(from, p.tokens, p.n);
        dst = lookup(*doc, p.tokens, p.n);
        if (!src && !dst) {
                r = -ENOENT;
                goto out;
        }
        if (p.n == 0) { /* the whole document */
                json_decref(*doc);
                *doc = json_deep_copy(src);
                r = *doc ? 0 : -ENOMEM;
                goto out;
        }
        parent = lookup(*doc, p.tokens, p.n - 1);
        last = p.tokens[p.n - 1];
        if (json_is_object(parent)) {
                if (src)
                        r = json_object_set_new(parent, last, json_deep_copy(src)) ? -ENOMEM : 0;
                else
                        r = json_object_del(parent, last) ? -ENOENT : 0;
        } else if (json_is_array(parent) && index_parse(last, &idx) &&
                   idx <= (size = json_array_size(parent))) {
                if (!src)
                        r = json_array_remove(parent, idx) ? -ENOENT : 0;
                else if (idx < size)
                        r = json_array_set_new(parent, idx, json_deep_copy(src)) ? -ENOMEM : 0;
                else
                        r = json_array_append_new(parent, json_deep_copy(src)) ? -ENOMEM : 0;
        } else {
                r = -ENOTDIR;
        }
out:
        diff_pointer_fini(&p);
        return r;
}

int diff_config_take(const json_t *base, const json_t *from, const char *const *pointers, size_t n,
                     json_t **out, size_t *bad) {
        json_t *doc = json_deep_copy(base);
        int r = doc ? 0 : -ENOMEM;

        for (size_t i = 0; r == 0 && i < n; i++) {
                r = take_one(&doc, from, pointers[i]);
                if (r < 0)
                        *bad = i;
        }
        if (r < 0) {
                json_decref(doc);
                return r;
        }
        *out = doc;
        return 0;
}
