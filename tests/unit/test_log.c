/*
 * log: every line on stderr is one JSON object with time, level, component,
 * msg and the ids it concerns; lines below the level are dropped; lines
 * from several threads never interleave. stderr is captured into a temporary
 * file with dup2 and read back with Jansson.
 */
#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/log.h"
#include "tap.h"

struct capture {
        FILE *file;
        int saved;
};

static int capture_start(struct capture *c) {
        fflush(stderr);
        c->file = tmpfile();
        c->saved = dup(STDERR_FILENO);
        if (!c->file || c->saved < 0 || dup2(fileno(c->file), STDERR_FILENO) < 0)
                return -errno;
        return 0;
}

/* Restores stderr; returns what was written (malloc'd) and its line count. */
static char *capture_stop(struct capture *c, size_t *lines) {
        char *text;
        long size;

        fflush(stderr);
        dup2(c->saved, STDERR_FILENO);
        close(c->saved);
        size = ftell(c->file);
        text = calloc(1, (size_t)(size > 0 ? size : 0) + 1);
        rewind(c->file);
        if (text && size > 0 && fread(text, 1, (size_t)size, c->file) != (size_t)size)
                text[0] = '\0';
        fclose(c->file);
        *lines = 0;
        for (char *p = text; p && *p; p++)
                *lines += *p == '\n';
        return text;
}

/* The n-th line (0-based) as JSON, or NULL when it is not one object. */
static json_t *line_json(const char *text, size_t n) {
        const char *p = text, *end;
        json_error_t err;
        json_t *doc;

        while (n-- > 0 && p && (p = strchr(p, '\n')))
                p++;
        if (!p || !*p || !(end = strchr(p, '\n')))
                return NULL;
        doc = json_loadb(p, (size_t)(end - p), JSON_REJECT_DUPLICATES, &err);
        if (doc && !json_is_object(doc)) {
                json_decref(doc);
                return NULL;
        }
        return doc;
}

static const char *field(json_t *doc, const char *name) {
        return json_string_value(json_object_get(doc, name));
}

/* YYYY-MM-DDTHH:MM:SS.mmmZ */
static int is_rfc3339_ms(const char *s) {
        static const char shape[] = "dddd-dd-ddTdd:dd:dd.dddZ";
        if (!s || strlen(s) != strlen(shape))
                return 0;
        for (size_t i = 0; shape[i]; i++)
                if (shape[i] == 'd' ? (s[i] < '0' || s[i] > '9') : s[i] != shape[i])
                        return 0;
        return 1;
}

TEST(a_line_is_one_json_object_with_the_ids) {
        struct capture c;
        size_t lines = 0;
        char *text;
        json_t *doc;
        const char *ids[] = { "user_id", "u-42", "snapshot_id", "snap-\"7\"", NULL };

        CHECK(log_set_level("info") == 0);
        CHECK(capture_start(&c) == 0);
        log_line(LOG_WARN, "scheduler", ids, "move %s -> %s: %d m", "t-paris", "t-tokyo", 9700);
        text = capture_stop(&c, &lines);
        CHECK(lines == 1);
        doc = line_json(text, 0);
        CHECK(doc != NULL);
        if (doc) {
                CHECK(is_rfc3339_ms(field(doc, "time")));
                CHECK_STR(field(doc, "level"), "warn");
                CHECK_STR(field(doc, "component"), "scheduler");
                CHECK_STR(field(doc, "msg"), "move t-paris -> t-tokyo: 9700 m");
                CHECK_STR(field(doc, "user_id"), "u-42");
                CHECK_STR(field(doc, "snapshot_id"), "snap-\"7\"");
                CHECK(json_object_size(doc) == 6);
        }
        json_decref(doc);
        free(text);
}

TEST(levels_below_the_configured_one_are_dropped) {
        struct capture c;
        size_t lines = 0;
        char *text;
        json_t *doc;

        CHECK(log_set_level("warn") == 0);
        CHECK(capture_start(&c) == 0);
        log_debug("api", "debug: dropped");
        log_info("api", "info: dropped");
        log_warn("api", "warn: kept");
        log_error("api", "error: kept");
        text = capture_stop(&c, &lines);
        CHECK(lines == 2);
        doc = line_json(text, 0);
        CHECK(doc && !strcmp(field(doc, "level"), "warn") &&
              !strcmp(field(doc, "msg"), "warn: kept"));
        json_decref(doc);
        doc = line_json(text, 1);
        CHECK(doc && !strcmp(field(doc, "level"), "error"));
        json_decref(doc);
        free(text);

        CHECK(log_set_level("debug") == 0);
        CHECK(capture_start(&c) == 0);
        log_debug("api", "now kept");
        text = capture_stop(&c, &lines);
        CHECK(lines == 1);
        doc = line_json(text, 0);
        CHECK(doc && !strcmp(field(doc, "level"), "debug"));
        json_decref(doc);
        free(text);

        CHECK(log_set_level("verbose") == -EINVAL);
        CHECK(log_set_level("") == -EINVAL);
        CHECK(log_set_level("info") == 0);
}

TEST(messages_are_escaped_and_stay_on_one_line) {
        char big[4000];
        struct capture c;
        size_t lines = 0;
        char *text;
        json_t *doc;

        memset(big, 'x', sizeof(big) - 1);
        big[sizeof(big) - 1] = '\0';
        CHECK(log_set_level("info") == 0);
        CHECK(capture_start(&c) == 0);
        log_info("api", "quote \" backslash \\ newline \n tab \t end");
        log_info("api", "%s", big); /* longer than a line holds: cut, still JSON */
        text = capture_stop(&c, &lines);
        CHECK(lines == 2);
        doc = line_json(text, 0);
        CHECK(doc != NULL);
        CHECK_STR(doc ? field(doc, "msg") : NULL, "quote \" backslash \\ newline \n tab \t end");
        json_decref(doc);
        doc = line_json(text, 1);
        CHECK(doc != NULL);
        CHECK(doc && strlen(field(doc, "msg")) > 500 && field(doc, "msg")[0] == 'x');
        json_decref(doc);
        free(text);
}

static void *log_many(void *arg) {
        const char *ids[] = { "thread", arg, NULL };
        for (int i = 0; i < 500; i++)
                log_line(LOG_INFO, "test", ids,
                         "line %d of a thread with a longer message "
                         "so that writes are not trivially small",
                         i);
        return NULL;
}

TEST(lines_from_threads_do_not_interleave) {
        static const char *names[] = { "a", "b", "c", "d" };
        pthread_t threads[4];
        struct capture c;
        size_t lines = 0, valid = 0;
        char *text;

        CHECK(log_set_level("info") == 0);
        CHECK(capture_start(&c) == 0);
        for (int i = 0; i < 4; i++)
                pthread_create(&threads[i], NULL, log_many, (void *)names[i]);
        for (int i = 0; i < 4; i++)
                pthread_join(threads[i], NULL);
        text = capture_stop(&c, &lines);
        CHECK(lines == 2000);
        for (size_t i = 0; i < lines; i++) {
                json_t *doc = line_json(text, i);
                valid += doc && field(doc, "thread") && field(doc, "msg");
                json_decref(doc);
        }
        CHECK(valid == lines);
        free(text);
}

TAP_MAIN(TAP_TEST(a_line_is_one_json_object_with_the_ids),
         TAP_TEST(levels_below_the_configured_one_are_dropped),
         TAP_TEST(messages_are_escaped_and_stay_on_one_line),
         TAP_TEST(lines_from_threads_do_not_interleave))
