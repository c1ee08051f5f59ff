/*
 * Configuration diffs (diff/diff.h): JSON Pointers as RFC 6901 spells
 * them, the changed, added and removed items of two documents with their
 * patch, and a document made of one with items of another.
 */
#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "diff/diff.h"
#include "tap.h"

static json_t *doc(const char *text) {
        json_t *j = json_loads(text, 0, NULL);
        if (!j)
                abort();
        return j;
}

/* The changes (or patch) as compact sorted JSON text, for whole comparisons. */
static char *dump(const json_t *j) {
        return json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
}

TEST(pointers_parse_and_format_as_rfc_6901_spells_them) {
        static const char *const good[] = { "",     "/foo",  "/foo/0", "/",     "/a~1b",
                                            "/c%d", "/e^f",  "/g|h",   "/i\\j", "/k\"l",
                                            "/ ",   "/m~0n", "//",     "/~01",  "/é/ü" };
        static const char *const bad[] = { "foo", "#/foo", "/~", "/~2", "/a~", "/a~/b", "/\xff" };
        struct diff_pointer p;

        for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
                char *text;
                CHECK(diff_pointer_parse(good[i], &p) == 0);
                text = diff_pointer_format(&p);
                CHECK_STR(text, good[i]);
                free(text);
                diff_pointer_fini(&p);
        }
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                CHECK(diff_pointer_parse(bad[i], &p) == -EINVAL);
                CHECK(p.n == 0 && p.tokens == NULL);
        }
        CHECK(diff_pointer_parse("/a~1b/m~0n/~01", &p) == 0);
        CHECK(p.n == 3);
        CHECK_STR(p.tokens[0], "a/b");
        CHECK_STR(p.tokens[1], "m~n");
        CHECK_STR(p.tokens[2], "~1");
        diff_pointer_fini(&p);
}

TEST(a_pointer_names_what_rfc_6901_says) {
        json_t *d = doc("{\"foo\": [\"bar\", \"baz\"], \"\": 0, \"a/b\": 1, \"m~n\": 8, "
                        "\" \": 7}");

        CHECK(diff_pointer_get(d, "") == d);
        CHECK_STR(json_string_value(diff_pointer_get(d, "/foo/0")), "bar");
        CHECK_STR(json_string_value(diff_pointer_get(d, "/foo/1")), "baz");
        CHECK(json_integer_value(diff_pointer_get(d, "/")) == 0);
        CHECK(json_integer_value(diff_pointer_get(d, "/a~1b")) == 1);
        CHECK(json_integer_value(diff_pointer_get(d, "/m~0n")) == 8);
        CHECK(json_integer_value(diff_pointer_get(d, "/ ")) == 7);
        /* Indexes: no leading zero, no sign, not "-", inside the array. */
        CHECK(diff_pointer_get(d, "/foo/01") == NULL);
        CHECK(diff_pointer_get(d, "/foo/+1") == NULL);
        CHECK(diff_pointer_get(d, "/foo/-") == NULL);
        CHECK(diff_pointer_get(d, "/foo/2") == NULL);
        CHECK(diff_pointer_get(d, "/foo/0/x") == NULL);
        CHECK(diff_pointer_get(d, "/nothing") == NULL);
        CHECK(diff_pointer_get(d, "foo") == NULL);
        json_decref(d);
}

TEST(the_diff_lists_exactly_the_changed_added_and_removed_keys) {
        json_t *a = doc("{\"vcpus\": 2, \"memory_mib\": 4096, \"name\": \"vm\", "
                        "\"nics\": [{\"mac\": \"52:54:00:00:00:01\", \"net\": \"lan\"}], "
                        "\"meta\": {\"owner\": \"ann\", \"a/b\": 1, \"m~n\": true}}");
        json_t *b = doc("{\"vcpus\": 4, \"memory_mib\": 4096, \"name\": \"vm\", "
                        "\"nics\": [{\"mac\": \"52:54:00:00:00:01\", \"net\": \"wan\"}], "
                        "\"meta\": {\"owner\": \"ann\", \"a/b\": 2, \"tag\": \"x\"}}");
        json_t *changes = NULL, *patch = NULL;
        char *c, *p;

        CHECK(diff_config(a, b, &changes, &patch) == 0);
        c = dump(changes);
        p = dump(patch);
        CHECK_STR(c, "[{\"change\":\"changed\",\"new\":2,\"old\":1,\"path\":\"/meta/a~1b\"},"
                     "{\"change\":\"removed\",\"old\":true,\"path\":\"/meta/m~0n\"},"
                     "{\"change\":\"added\",\"new\":\"x\",\"path\":\"/meta/tag\"},"
                     "{\"change\":\"changed\",\"new\":\"wan\",\"old\":\"lan\","
                     "\"path\":\"/nics/0/net\"},"
                     "{\"change\":\"changed\",\"new\":4,\"old\":2,\"path\":\"/vcpus\"}]");
        CHECK_STR(p, "[{\"op\":\"replace\",\"path\":\"/meta/a~1b\",\"value\":2},"
                     "{\"op\":\"remove\",\"path\":\"/meta/m~0n\"},"
                     "{\"op\":\"add\",\"path\":\"/meta/tag\",\"value\":\"x\"},"
                     "{\"op\":\"replace\",\"path\":\"/nics/0/net\",\"value\":\"wan\"},"
                     "{\"op\":\"replace\",\"path\":\"/vcpus\",\"value\":4}]");
        free(c);
        free(p);
        json_decref(changes);
        json_decref(patch);

        /* The same document: nothing. */
        CHECK(diff_config(a, a, &changes, NULL) == 0);
        CHECK(json_array_size(changes) == 0);
        json_decref(changes);
        json_decref(a);
        json_decref(b);
}

TEST(arrays_are_compared_by_index_and_shrink_from_the_end) {
        json_t *a = doc("{\"disks\": [\"a\", \"b\", \"c\", \"d\"]}");
        json_t *b = doc("{\"disks\": [\"x\", \"b\"]}");
        json_t *longer = doc("{\"disks\": [\"a\", \"b\", \"c\", \"d\", \"e\", \"f\"]}");
        json_t *patch = NULL, *changes = NULL;
        char *p;

        CHECK(diff_config(a, b, NULL, &patch) == 0);
        p = dump(patch);
        CHECK_STR(p, "[{\"op\":\"replace\",\"path\":\"/disks/0\",\"value\":\"x\"},"
                     "{\"op\":\"remove\",\"path\":\"/disks/3\"},"
                     "{\"op\":\"remove\",\"path\":\"/disks/2\"}]");
        free(p);
        json_decref(patch);

        CHECK(diff_config(a, longer, &changes, &patch) == 0);
        p = dump(patch);
        CHECK_STR(p, "[{\"op\":\"add\",\"path\":\"/disks/4\",\"value\":\"e\"},"
                     "{\"op\":\"add\",\"path\":\"/disks/5\",\"value\":\"f\"}]");
        free(p);
        CHECK(json_array_size(changes) == 2);
        json_decref(changes);
        json_decref(patch);
        json_decref(a);
        json_decref(b);
        json_decref(longer);
}

TEST(a_value_of_another_type_is_one_change_at_its_path) {
        json_t *a = doc("{\"x\": {\"y\": 1}, \"n\": 1, \"l\": [1]}");
        json_t *b = doc("{\"x\": [1], \"n\": 1.0, \"l\": {\"0\": 1}}");
        json_t *root_a = doc("[1]"), *root_b = doc("{}");
        json_t *changes = NULL;
        char *c;

        CHECK(diff_config(a, b, &changes, NULL) == 0);
        c = dump(changes);
        CHECK_STR(c, "[{\"change\":\"changed\",\"new\":{\"0\":1},\"old\":[1],\"path\":\"/l\"},"
                     "{\"change\":\"changed\",\"new\":1.0,\"old\":1,\"path\":\"/n\"},"
                     "{\"change\":\"changed\",\"new\":[1],\"old\":{\"y\":1},\"path\":\"/x\"}]");
        free(c);
        json_decref(changes);
        CHECK(diff_config(root_a, root_b, &changes, NULL) == 0);
        CHECK(json_array_size(changes) == 1);
        CHECK_STR(json_string_value(json_object_get(json_array_get(changes, 0), "path")), "");
        json_decref(changes);
        json_decref(a);
        json_decref(b);
        json_decref(root_a);
        json_decref(root_b);
}

/* Taking every changed path of the diff, in its order, turns a into b. */
static void check_take_all_gives_b(int *tap_failed_, const char *ta, const char *tb) {
        json_t *a = doc(ta), *b = doc(tb), *changes = NULL, *out = NULL;
        const char **paths;
        size_t n, bad = 99;

        CHECK(diff_config(a, b, &changes, NULL) == 0);
        n = json_array_size(changes);
        paths = calloc(n + 1, sizeof(*paths));
        for (size_t i = 0; i < n; i++)
                paths[i] = json_string_value(json_object_get(json_array_get(changes, i), "path"));
        CHECK(diff_config_take(a, b, paths, n, &out, &bad) == 0);
        CHECK(out && json_equal(out, b));
        free(paths);
        json_decref(out);
        json_decref(changes);
        json_decref(a);
        json_decref(b);
}

TEST(taking_every_changed_item_gives_the_other_document) {
        check_take_all_gives_b(tap_failed_, "{\"a\": [1, 2, 3, 4], \"b\": {\"c\": 1}, \"d\": 0}",
                               "{\"a\": [9, 2], \"b\": {\"e\": 2}, \"f\": [1]}");
        check_take_all_gives_b(tap_failed_, "{\"a\": [1]}", "{\"a\": [1, 2, [3], {\"x\": 4}]}");
        check_take_all_gives_b(tap_failed_, "{\"~/\": {\"/\": 1}}",
                               "{\"~/\": {\"/\": 2, \"~\": 3}}");
        check_take_all_gives_b(tap_failed_, "[1, 2]", "{\"x\": 1}");
}

TEST(take_copies_chosen_items_and_leaves_the_rest_of_the_base) {
        json_t *base = doc("{\"vcpus\": 2, \"memory_mib\": 4096, "
                           "\"nics\": [{\"net\": \"lan\"}], \"meta\": {\"owner\": \"ann\"}}");
        json_t *from = doc("{\"vcpus\": 8, \"memory_mib\": 8192, "
                           "\"nics\": [{\"net\": \"wan\"}, {\"net\": \"dmz\"}], \"meta\": {}, "
                           "\"boot\": \"uefi\"}");
        json_t *before = json_deep_copy(base), *out = NULL;
        const char *pick[] = { "/vcpus", "/nics/0/net", "/nics/1", "/meta/owner", "/boot" };
        json_t *want = doc("{\"vcpus\": 8, \"memory_mib\": 4096, "
                           "\"nics\": [{\"net\": \"wan\"}, {\"net\": \"dmz\"}], \"meta\": {}, "
                           "\"boot\": \"uefi\"}");
        size_t bad = 99;

        CHECK(diff_config_take(base, from, pick, 5, &out, &bad) == 0);
        CHECK(out && json_equal(out, want));
        CHECK(json_equal(base, before)); /* never edited in place */
        json_decref(out);
        json_decref(want);

        /* The whole document. */
        pick[0] = "";
        CHECK(diff_config_take(base, from, pick, 1, &out, &bad) == 0);
        CHECK(out && json_equal(out, from));
        json_decref(out);
        json_decref(base);
        json_decref(from);
        json_decref(before);
}

TEST(take_refuses_what_is_not_an_item_of_either_document) {
        json_t *base = doc("{\"a\": 1, \"l\": [1]}"), *from = doc("{\"a\": 2, \"x\": {\"y\": 1}, "
                                                                  "\"l\": [1, 2, 3]}");
        json_t *out = (json_t *)0x1;
        const char *not_pointer[] = { "/a", "a" };
        const char *neither[] = { "/a", "/nope" };
        const char *no_parent[] = { "/x/y" };
        const char *hole[] = { "/l/2" };
        const char *bad_escape[] = { "/a~2" };
        size_t bad = 99;

        CHECK(diff_config_take(base, from, not_pointer, 2, &out, &bad) == -EINVAL);
        CHECK(bad == 1);
        CHECK(diff_config_take(base, from, bad_escape, 1, &out, &bad) == -EINVAL);
        CHECK(bad == 0);
        CHECK(diff_config_take(base, from, neither, 2, &out, &bad) == -ENOENT);
        CHECK(bad == 1);
        CHECK(diff_config_take(base, from, no_parent, 1, &out, &bad) == -ENOTDIR);
        CHECK(diff_config_take(base, from, hole, 1, &out, &bad) == -ENOTDIR);
        CHECK(out == (json_t *)0x1); /* nothing made */
        json_decref(base);
        json_decref(from);
}

TAP_MAIN(TAP_TEST(pointers_parse_and_format_as_rfc_6901_spells_them),
         TAP_TEST(a_pointer_names_what_rfc_6901_says),
         TAP_TEST(the_diff_lists_exactly_the_changed_added_and_removed_keys),
         TAP_TEST(arrays_are_compared_by_index_and_shrink_from_the_end),
         TAP_TEST(a_value_of_another_type_is_one_change_at_its_path),
         TAP_TEST(taking_every_changed_item_gives_the_other_document),
         TAP_TEST(take_copies_chosen_items_and_leaves_the_rest_of_the_base),
         TAP_TEST(take_refuses_what_is_not_an_item_of_either_document))
