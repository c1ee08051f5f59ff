/*
 * log — one JSON object per line on stderr: time, level, component, message,
 * and the ids a line concerns. Callers log once, where a decision is made.
 */
#pragma once

#include <stdarg.h>

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };

/* Lines below this level are dropped. Returns -EINVAL for an unknown name. */
int log_set_level(const char *name);

/*
 * Writes one line. `ids` is NULL or a NULL-terminated list of key, value
 * pairs ("user_id", "u-42", NULL); values are escaped, never secrets.
 */
void log_line(enum log_level level, const char *component, const char *const *ids, const char *fmt,
              ...) __attribute__((format(printf, 4, 5)));

#define log_debug(comp, ...) log_line(LOG_DEBUG, comp, NULL, __VA_ARGS__)
#define log_info(comp, ...) log_line(LOG_INFO, comp, NULL, __VA_ARGS__)
#define log_warn(comp, ...) log_line(LOG_WARN, comp, NULL, __VA_ARGS__)
#define log_error(comp, ...) log_line(LOG_ERROR, comp, NULL, __VA_ARGS__)
