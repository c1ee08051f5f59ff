/*
 * transfers — /v1/transfers, and what every write of a transfer shares (the
 * operator's cancel and retry, the agents' reports).
 */
#pragma once

#include <microhttpd.h>
#include <stdbool.h>

struct json_t;
struct request;

/* What the operator's writes of a transfer lock (router.c): the row, its state and snapshot. */
extern const struct api_resource api_transfer_resource;

enum MHD_Result api_transfers_list(struct request *req);
enum MHD_Result api_transfers_get(struct request *req);
enum MHD_Result api_transfers_cancel(struct request *req);
enum MHD_Result api_transfers_retry(struct request *req);

/*
 * A transfer as the API shows it (GET /v1/transfers/{id}, audit events), as
 * a SQL expression over the alias t.
 */
#define API_TRANSFER_JSON                                                                      \
        "json_build_object('id', t.id, 'snapshot_id', t.snapshot_id, 'from_dc', t.from_dc,"    \
        " 'to_dc', t.to_dc, 'template_id', t.template_id,"                                     \
        " 'kind', t.kind, 'template_present', t.template_present, 'priority', t.priority,"     \
        " 'version', t.version, 'reason', t.reason, 'state', t.state,"                         \
        " 'attempts', t.attempts, 'max_attempts', t.max_attempts,"                             \
        " 'bytes_total', t.bytes_total, 'bytes_done', t.bytes_done,"                           \
        " 'bytes_sent', t.bytes_sent, 'error', t.error, 'retry_of', t.retry_of,"               \
        " 'idempotency_key', t.idempotency_key, 'lease_owner', t.lease_owner,"                 \
        " 'lease_expires_at', homing_time(t.lease_expires_at),"                                \
        " 'not_before', homing_time(t.not_before),"                                            \
        " 'started_at', homing_time(t.started_at), 'finished_at', homing_time(t.finished_at)," \
        " 'created_at', homing_time(t.created_at), 'updated_at', homing_time(t.updated_at))"

/* The transfer `$1` as the API shows it: its id and its JSON. */
#define API_SELECT_TRANSFER \
        "SELECT t.id, " API_TRANSFER_JSON "::text FROM transfers t WHERE t.id = $1::bigint"

/*
 * Reads transfer `id` back, puts it in the audit event's data (taken) as
 * "transfer", writes the event, commits, and answers `status` with the
 * transfer (201 with its Location).
 */
enum MHD_Result api_transfer_commit_and_reply(struct request *req, const char *id, unsigned status,
                                              const char *audit_type, const char *subject,
                                              struct json_t *audit_data);
