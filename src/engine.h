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

#include "nodes/pg_list.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "flowcache.h"

/* one row of allma.step_executions, built by the engine */
typedef struct AllmaStepRecord
{
	int32		seq;
	char	   *step_id;
	char	   *step_type;
	int32		attempt;
	const char *status;			/* COMPLETED, FAILED, RETRYING */
	Jsonb	   *input;
	Jsonb	   *output;
	Jsonb	   *error;
	Jsonb	   *details;
	char	   *next_step;
	TimestampTz started_at;
	TimestampTz ended_at;
} AllmaStepRecord;

/* an execution path claimed by a worker, and what happened to it */
typedef struct AllmaPathState
{
	/* identity, from the claim */
	pg_uuid_t	execution_id;
	int64		path_id;
	char	   *branch_id;
	AllmaFlow  *flow;
	Oid			run_as;			/* role that started the execution */
	bool		logs;			/* record step input and output */
	TimestampTz execution_started_at;

	/* cursor, advanced by the engine */
	char	   *step_id;		/* NULL once the path has ended */
	int32		attempt;
	int32		seq;
	TimestampTz due_at;
	Jsonb	   *context;
	Jsonb	   *transition_counts;

	/* outcome */
	bool		ended;
	bool		failed;
	Jsonb	   *error;			/* Allma error object when failed */
	List	   *records;		/* AllmaStepRecord * */
	int			steps_run;
} AllmaPathState;

/*
 * allma_engine_advance runs steps of the path while they are due, need no
 * network I/O, and at most max_steps of them.  Everything it produces is
 * allocated in CurrentMemoryContext; per-step garbage goes to a child
 * context that is reset after every step.  Must run inside a transaction
 * with SPI connected.
 */
extern void allma_engine_advance(AllmaPathState *ps, int max_steps);

/* allma_runtime_state: the runtime fields Allma exposes to paths and templates */
extern Jsonb *allma_runtime_state(AllmaPathState *ps);

#endif							/* ALLMA_ENGINE_H */
