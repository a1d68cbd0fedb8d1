/*-------------------------------------------------------------------------
 *
 * ratelimit.h
 *	  Rate limits of outgoing requests (allma.rate_limits): the gate in the
 *	  step dispatch, the settlement of a response, the release of parked
 *	  steps, and their shared-memory state.  See ratelimit.c.
 *
 * IDENTIFICATION
 *	  src/ratelimit.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ALLMA_RATELIMIT_H
#define ALLMA_RATELIMIT_H

#include "allma.h"

#include "http.h"

struct StepRun;
struct AllmaChecker;

/* the longest key a limit or a step may have (bytes) */
#define ALLMA_RATE_LIMIT_KEY_MAX 200

/* shared memory (called from shmem.c) */
extern Size allma_ratelimit_shmem_size(void);
extern void allma_ratelimit_shmem_init(void *area, bool found);

/*
 * allma_ratelimit_gate: called when a step's start left a request to send.
 * Returns with run->io still set when the request may go now (its record
 * then carries the key, for the settlement), or parks the path
 * (run->io cleared, run->parked set, the path's wait record says which
 * limit it waits on).  Throws a ConfigurationError when the step's
 * rateLimitKey renders to an unusable key.
 */
extern void allma_ratelimit_gate(struct StepRun *run);

/*
 * allma_ratelimit_settle: a response to a request that went through the
 * gate arrived (request: the stored request, with its "rateLimit" record):
 * reconcile the token estimate with the usage reported (details of the
 * step, or NULL), apply the x-ratelimit-* headers and a 429's Retry-After.
 */
extern void allma_ratelimit_settle(Jsonb *request, AllmaHttpCompletion *c, Jsonb *details);

/*
 * allma_ratelimit_pass: once per claim pass of a worker (SPI connected, in
 * the pass's transaction): reload the limits (at most once a second) and
 * release the parked steps whose budget has come.
 */
extern void allma_ratelimit_pass(void);

/* how long a sleeping worker may wait before it should release parked steps (ms; -1: any) */
extern long allma_ratelimit_wake_ms(void);

/* forget saved plans (the extension changed) */
extern void allma_ratelimit_reset(void);

/* a step's "rateLimitKey" field (validate.c) */
extern void allma_ratelimit_check_step(struct AllmaChecker *ck, JsonbContainer *step);

#endif							/* ALLMA_RATELIMIT_H */
