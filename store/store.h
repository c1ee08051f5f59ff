/*
 * store — homing's PostgreSQL access layer: one connection, parameterised
 * statements, transactions, and the migrations. libpq's types stay behind
 * this header; results are read as text, by row and column.
 * PostgreSQL's array text is written and read here and nowhere else.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/must-check.h"

struct store;
struct store_result;

/* Seconds a connect may take (libpq's connect_timeout) unless the DSN says. */
#define STORE_CONNECT_TIMEOUT_S "5"

/* Connects with a libpq conninfo. Returns 0 or -ECONNREFUSED (logged). */
int store_connect(const char *dsn, struct store **out) MUST_CHECK;
/*
 * The same, every statement limited to `statement_timeout_ms` (PostgreSQL's
 * statement_timeout; 0: none), on this connection and the ones re-opened
 * for it, unless the DSN sets its own options. A statement over the limit
 * fails with -EAGAIN.
 */
int store_connect_with_timeout(const char *dsn, long statement_timeout_ms,
                               struct store **out) MUST_CHECK;

struct store *store_free(struct store *s);

/*
 * Runs one statement with text parameters (NULL entries are SQL NULL).
 * Returns 0 and, when `out` is not NULL, the rows (free them with
 * store_result_free); on failure *out is untouched and the return says
 * whether trying again may help:
 *   -EAGAIN       a serialization failure, deadlock, lock or statement timeout;
 *   -ECONNRESET   the connection is lost or the server cannot serve now;
 *   -ECONNREFUSED no connection could be opened;
 *   -EIO          the data was refused (a constraint, a data exception, a
 *                 trigger's RAISE): the same input fails again;
 *   -EPROTO       the statement does not fit the database (a missing table
 *                 or column, a permission): every input fails until repaired.
 *   -ESTALE       a conditional write lost to another writer
 *                 (STORE_SQLSTATE_STALE).
 * Failures are logged with the statement's first words. A broken connection
 * is re-opened on the next call outside a transaction.
 */
int store_exec(struct store *s, const char *sql, int n_params, const char *const *params,
               struct store_result **out) MUST_CHECK;

/*
 * Pipelining: between store_pipeline_begin and store_pipeline_end every
 * store_exec (store_run, store_begin, store_commit, store_exec_columns) is
 * sent without waiting for its answer, and returns 0 at once; `out`, when
 * not NULL, must point to NULL and is filled only by store_pipeline_end.
 * store_pipeline_end sends them all at once (libpq's pipeline mode: one
 * round trip), reads every answer and returns 0, or the first failure as
 * store_exec says it; the statements after a failed one do not run, every
 * `out` is left NULL, and a transaction begun in it is left aborted (call
 * store_rollback). Statements whose answers are large do not belong here:
 * nothing is read until the end. A pipeline's statements are prepared on
 * the connection the first time their text is sent (up to 64 texts), and
 * run by name after that: parsed and planned once per connection.
 */
int store_pipeline_begin(struct store *s) MUST_CHECK;
/* Sends the pipeline's end now, so that PostgreSQL runs it while the caller
 * does other work; store_pipeline_end then only reads the answers. Nothing
 * else may use the connection in between. 0, or -EINVAL outside a pipeline. */
int store_pipeline_send(struct store *s);
int store_pipeline_end(struct store *s) MUST_CHECK;

/*
 * The SQLSTATE homing's SQL functions raise when a conditional write finds
 * its row moved on by another writer; store_exec says -ESTALE for it.
 */
#define STORE_SQLSTATE_STALE "HM409"

/* Statements without rows or parameters: "BEGIN", "COMMIT", ... */
int store_run(struct store *s, const char *sql) MUST_CHECK;

int store_begin(struct store *s) MUST_CHECK;
int store_commit(struct store *s) MUST_CHECK;
/* Rolls back if a transaction is open; never fails. */
void store_rollback(struct store *s);

/* The last failure as "SQLSTATE message", borrowed; "" before any. */
const char *store_error(const struct store *s);

/* True when the server answers. */
bool store_ping(struct store *s);

size_t store_rows(const struct store_result *r);
/* Rows changed by an INSERT/UPDATE/DELETE. */
long store_changed(const struct store_result *r);
/* A field as text, or NULL when it is SQL NULL. Borrowed from `r`. */
const char *store_text(const struct store_result *r, size_t row, int col);
int64_t store_int(const struct store_result *r, size_t row, int col);
double store_double(const struct store_result *r, size_t row, int col);
bool store_bool(const struct store_result *r, size_t row, int col);
struct store_result *store_result_free(struct store_result *r);

/*
 * Applies the migrations in `dir` (files NNN_name.sql) that are not yet
 * recorded, in order, each in its own transaction; concurrent callers
 * serialise on an advisory lock. Returns the number applied, or <0.
 */
int store_migrate(struct store *s, const char *dir) MUST_CHECK;

/*
 * Compares the migrations in `dir` with those recorded, changing nothing:
 * each one not applied, and each applied one this `dir` lacks, is logged.
 * Returns how many differ (0: as expected), or <0.
 */
int store_migrations_check(struct store *s, const char *dir) MUST_CHECK;

/* The highest migration recorded, into *applied (for /readyz). Returns 0 or <0. */
int store_schema_version(struct store *s, int *applied) MUST_CHECK;

/*
 * A PostgreSQL array literal built in caller storage, for passing many rows
 * in one parameter ("SELECT ... FROM unnest($1::text[], ...)"). Adding never
 * fails on its own: after a failed allocation the array is marked failed and
 * store_array_text() returns NULL, so the caller checks once at the end.
 */
struct store_array {
        char *buf;
        size_t len, cap;
        size_t n;
        bool failed;
};

void store_array_init(struct store_array *a);
void store_array_fini(struct store_array *a);
void store_array_add_text(struct store_array *a, const char *value); /* NULL adds NULL */
void store_array_add_int(struct store_array *a, int64_t value);
void store_array_add_double(struct store_array *a, double value); /* not finite adds NULL */
/* The value as the decimal text it came as (len bytes, which must read
 * back as value), when that is a plain number of a normal value: nothing
 * printed. Otherwise as store_array_add_double. */
void store_array_add_double_text(struct store_array *a, double value, const char *text, size_t len);
/* The literal ("{...}"), borrowed from `a`; NULL if anything failed. */
const char *store_array_text(struct store_array *a);

/*
 * Parses a one-dimensional array as PostgreSQL writes it in text
 * ("{a,\"b c\",NULL}": quotes, backslash escapes, unquoted NULL) into
 * *items, a malloc'd vector of malloc'd strings (NULL for an SQL NULL), and
 * *n. Returns 0; -EINVAL for anything else (nested, with bounds, unclosed),
 * with nothing allocated; or -ENOMEM.
 */
int store_array_parse(const char *text, char ***items, size_t *n);

/* Frees what store_array_parse gave; returns NULL. */
char **store_array_items_free(char **items, size_t n);

/*
 * Columns of many rows, one array literal each, passed as $1..$n of one
 * statement ("... FROM unnest($1::text[], $2::int8[], ...)"). Fill
 * `col[i]` with the store_array_add_* calls, then run it: one call checks
 * every column, runs the statement and frees the columns.
 */
#define STORE_COLUMNS_MAX 16

struct store_columns {
        size_t n;
        struct store_array col[STORE_COLUMNS_MAX];
};

/* Starts n empty columns (n <= STORE_COLUMNS_MAX). */
void store_columns_init(struct store_columns *c, size_t n);
void store_columns_fini(struct store_columns *c);

/*
 * Runs `sql` with the columns as $1..$n and then the `n_extra` parameters
 * of `extra` as $n+1..., and finishes the columns whatever happens. Returns
 * what store_exec returns, or -ENOMEM when a column failed to grow.
 */
int store_exec_columns(struct store *s, const char *sql, struct store_columns *c, int n_extra,
                       const char *const *extra, struct store_result **out);
