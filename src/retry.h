/*-------------------------------------------------------------------------
 *
 * retry.h
 *	  Retry decisions: a step's own onError rules, then allma.retry_policies.
 *
 * IDENTIFICATION
 *	  src/retry.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ALLMA_RETRY_H
#define ALLMA_RETRY_H

#include "allma.h"
#include "flowcache.h"

/*
 * allma_retry_delay_ms decides whether the failed attempt number "attempt"
 * (1-based) of "step", which failed with "error_name", is retried.  Returns
 * the delay before the next attempt in ms (already scaled by
 * allma.timer_scale), or -1 for no retry.  A retry waits at least the
 * error's errorDetails.retryAfterMs (an HTTP Retry-After), also scaled.  "policy" receives a short name of
 * the rule that decided, for the step history.  Must run inside a
 * transaction (it may read allma.retry_policies with SPI).
 */
extern int64 allma_retry_delay_ms(AllmaStep *step, const char *error_name,
								  int attempt, Jsonb *error, const char **policy);

extern void allma_retry_reset(void);

#endif							/* ALLMA_RETRY_H */
