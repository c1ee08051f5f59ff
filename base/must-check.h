/*
 * MUST_CHECK marks a function whose failure the caller has to handle: the
 * compiler warns (an error with -Dwerror=true) when its result is dropped.
 * GCC warns even through a (void) cast, so a result that truly does not
 * matter is said so with an `if` and a comment, never silenced.
 */
#pragma once

#define MUST_CHECK __attribute__((warn_unused_result))
