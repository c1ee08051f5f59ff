/*
 * compose — an agent writes the compositions queued for its datacenter
 * (new versions made of a base version and chosen items of another).
 */
#pragma once

struct control;

/*
 * Claims the compositions due at `datacenter` (control: its API handle,
 * borrowed) one after the other, writes each in `store` (diff/diff.h:
 * diff_store_compose), registers the version and reports the composition
 * succeeded, or failed with why (leaving no files of it). Returns when
 * none is left or the API cannot be reached.
 */
void compose_pending(const char *datacenter, const char *store, struct control *c);
