/*
 * JSON log lines, built with Jansson so that every value is escaped right,
 * and written with one fwrite so lines from several threads never interleave.
 */
#include "base/log.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/clock.h"

static enum log_level min_level = LOG_INFO;
static const char *const level_names[] = { "debug", "info", "warn", "error" };

int log_set_level(const char *name) {
        for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
                if (!strcmp(name, level_names[i])) {
                        min_level = (enum log_level)i;
                        return 0;
                }
        }
        return -EINVAL;
}

void log_line(enum log_level level, const char *component, const char *const *ids, const char *fmt,
              ...) {
        char when[64], message[1024];
        int64_t now_ms;
        time_t now_s;
        struct tm tm;
        va_list ap;
        json_t *line;
        char *text;

        if (level < min_level)
                return;

        now_ms = clock_wall_ms();
        now_s = (time_t)(now_ms / 1000);
        gmtime_r(&now_s, &tm);
        snprintf(when, sizeof(when), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(now_ms % 1000));
        va_start(ap, fmt);
        vsnprintf(message, sizeof(message), fmt, ap);
        va_end(ap);

        line = json_pack("{s:s, s:s, s:s, s:s}", "time", when, "level", level_names[level],
                         "component", component, "msg", message);
        if (!line)
                return;
        for (; ids && ids[0] && ids[1]; ids += 2)
                json_object_set_new(line, ids[0], json_string(ids[1]));
        text = json_dumps(line, JSON_COMPACT | JSON_PRESERVE_ORDER);
        json_decref(line);
        if (text) {
                size_t n = strlen(text);
                text[n] = '\n';
                fwrite(text, 1, n + 1, stderr);
                free(text);
        }
}
