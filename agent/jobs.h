/*
 * jobs — what an agent runs on its store for the API: the disk diffs and
 * the compositions (new versions made of a base version and chosen items
 * of another) queued for its datacenter.
 */
#pragma once

struct control;

/*
 * Claims the disk diffs, then the compositions, due at `datacenter`
 * (control: its API handle, borrowed) one after the other: a disk diff is
 * computed on `store` (diff_store_versions) and its extents posted; a
 * composition is written there (diff_store_compose), its version
 * registered and the composition reported succeeded, or failed with why
 * (leaving no files of it). Returns when none is left or the API cannot be
 * reached.
 */
void jobs_run_pending(const char *datacenter, const char *store, struct control *c);
