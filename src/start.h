/*-------------------------------------------------------------------------
 *
 * start.h
 *	  Starting an execution: what allma_start_flow, a sub-flow step and
 *	  allma_redrive_execution share (defined in api.c).
 *
 * IDENTIFICATION
 *	  src/start.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ALLMA_START_H
#define ALLMA_START_H

#include "allma.h"

#include "utils/jsonb.h"
#include "utils/uuid.h"

typedef struct AllmaStartRequest
{
	const char *flow_id;
	int32		version;		/* 0: the published one */
	Jsonb	   *input;			/* a JSON object: the context's root */
	Jsonb	   *options;		/* recorded as executions.options, or NULL */
	pg_uuid_t  *execution_id;	/* NULL: a new id */
	int			enable_logs;	/* -1: the flow's enableExecutionLogs */
	const char *start_step;		/* NULL: the flow's start step */
	const char *trigger_source;
	int32		priority;		/* options.priority (priority.c); sub-flows
								 * inherit their parent path's */
	Oid			starter;		/* runs as this role; START is checked for it */

	/* a sub-flow: its parent, its tree (NULL: a top-level execution) */
	pg_uuid_t  *parent_execution_id;
	pg_uuid_t  *root_execution_id;
	int32		depth;
	int64		parent_path_id; /* the parent path that waits for it, or -1 */
	const char *parent_step_id;

	/* a redrive: the execution it redrives, the context to start from */
	pg_uuid_t  *redrive_of;
	Jsonb	   *context;		/* NULL: built from input and flowVariables */
} AllmaStartRequest;

/* allma_redrive_execution's errors: the step did not run, its context was not recorded */
#define ERRCODE_ALLMA_REDRIVE_NO_STEP		MAKE_SQLSTATE('L','M','3','3','0')
#define ERRCODE_ALLMA_REDRIVE_NO_CONTEXT	MAKE_SQLSTATE('L','M','3','3','1')

/* starts it; returns its id (an existing one for an idempotent start) */
extern pg_uuid_t *allma_start_execution(const AllmaStartRequest *req);

#endif							/* ALLMA_START_H */
