/*-------------------------------------------------------------------------
 *
 * priority.h
 *	  Execution priorities: their bounds and the claim order (priority.c).
 *
 * IDENTIFICATION
 *	  src/priority.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ALLMA_PRIORITY_H
#define ALLMA_PRIORITY_H

#include "allma.h"

/*
 * options.priority of allma_start_flow, in seconds of head start in the
 * claim order; the column allma.execution_paths.priority has the same
 * CHECK.  Bounded so that no path waits more than an hour behind work
 * that became due after it (the aging rule).
 */
#define ALLMA_PRIORITY_MIN		(-3600)
#define ALLMA_PRIORITY_MAX		3600

/* allma.claim_order(due_at, priority): the claim key (SQL-callable) */
extern Datum allma_claim_order(PG_FUNCTION_ARGS);

#endif							/* ALLMA_PRIORITY_H */
