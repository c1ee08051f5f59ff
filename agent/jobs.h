/*
 * jobs — what an agent runs on its store for the API: the disk diffs, the
 * compositions (new versions made of a base version and chosen items of
 * another) and the guest-file diffs queued for its datacenter.
 */
#pragma once

struct control;

/*
 * Claims the disk diffs, then the compositions, then the file diffs due
 * at `datacenter` (control: its API handle, borrowed) one after the
 * other: a disk diff is computed on `store` (diff_store_versions) and its
 * extents posted; a composition is written there (diff_store_compose),
 * its version registered and the composition reported succeeded, or
 * failed with why (leaving no files of it); a file diff's guest files are
 * compared (diff_store_files, its progress posted as it goes) and posted.
 * Returns when none is left or the API cannot be reached.
 */
void jobs_run_pending(const char *datacenter, const char *store, struct control *c);
