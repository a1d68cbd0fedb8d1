/*-------------------------------------------------------------------------
 *
 * priority.c
 *	  The claim order of runnable paths: due time moved by priority.
 *
 * A path of priority p is claimed as if it had become due p seconds
 * earlier (p < 0: later).  The shift is bounded (priority.h), which is
 * also the aging rule: a path never waits behind work that became due
 * more than (the difference of the two priorities) seconds after it, so
 * low-priority work is delayed, never starved.
 *
 * allma_claim_order(due_at, priority) computes that key.  The shift is a
 * whole number of microseconds, with no calendar, time zone or setting
 * involved, so the function is truly immutable and the claim index
 * allma.execution_paths_claim_idx is built on it: the worker's claim reads
 * the index in key order and stops after its batch.
 *
 * IDENTIFICATION
 *	  src/priority.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "datatype/timestamp.h"
#include "utils/timestamp.h"

#include "priority.h"

PG_FUNCTION_INFO_V1(allma_claim_order);

/*
 * allma_claim_order(due_at timestamptz, priority integer) returns
 * timestamptz: due_at minus priority seconds.  A priority outside the
 * bounds counts as the nearest bound (the column's CHECK keeps them out);
 * infinite due times and a result out of range leave due_at as it is.
 */
Datum
allma_claim_order(PG_FUNCTION_ARGS)
{
	TimestampTz due = PG_GETARG_TIMESTAMPTZ(0);
	int32		priority = PG_GETARG_INT32(1);
	TimestampTz key;

	if (TIMESTAMP_NOT_FINITE(due))
		PG_RETURN_TIMESTAMPTZ(due);
	priority = Max(ALLMA_PRIORITY_MIN, Min(ALLMA_PRIORITY_MAX, priority));
	key = due - (int64) priority * USECS_PER_SEC;
	if (!IS_VALID_TIMESTAMP(key))
		PG_RETURN_TIMESTAMPTZ(due);
	PG_RETURN_TIMESTAMPTZ(key);
}
