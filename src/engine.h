/*-------------------------------------------------------------------------
 *
 * engine.h
 *	  The flow state machine: runs the steps of one execution path.
 *
 * IDENTIFICATION
 *	  src/engine.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ALLMA_ENGINE_H
#define ALLMA_ENGINE_H

#include "allma.h"

#include "http.h"
#include "pathstate.h"
#include "step.h"

/*
 * allma_engine_advance runs steps of the path while they are due, need no
 * network I/O, and at most max_steps of them.  Everything it produces is
 * allocated in CurrentMemoryContext; per-step garbage goes to a child
 * context that is reset after every step.  Must run inside a transaction
 * with SPI connected.
 */
extern void allma_engine_advance(AllmaPathState *ps, int max_steps);
/* the same in a subtransaction: an error fails the path alone (engine faults) */
extern void allma_engine_advance_guarded(AllmaPathState *ps, int max_steps);

/*
 * allma_engine_guarded runs fn(arg) in a subtransaction: NULL on success,
 * else the error, copied into the caller's memory context, after the
 * subtransaction was rolled back.
 */
extern ErrorData *allma_engine_guarded(void (*fn) (void *arg), void *arg);

/*
 * allma_engine_http_request fills *r (tag NULL) with the request of a path
 * that went INFLIGHT: the stored request plus what is never stored (the
 * headers and URL with credentials, the SMTP password).  Its strings are
 * allocated in CurrentMemoryContext or belong to ps.  The engine checks the
 * request (allma_http_check_request) before the path goes INFLIGHT, so the
 * worker's allma_http_submit does not throw for it.  (Defined in step.c,
 * with the other helpers of a step's request.)
 */
extern void allma_engine_http_request(AllmaPathState *ps, AllmaHttpRequest *r);

#endif							/* ALLMA_ENGINE_H */
