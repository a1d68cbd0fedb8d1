/*-------------------------------------------------------------------------
 *
 * pathstate.h
 *	  The records the engine and the store share: an execution path as a
 *	  worker claimed it (and what happened to it), the history rows of its
 *	  steps, and the branches of a fork to insert.
 *
 * store.c fills an AllmaPathState from a claimed row, the engine advances
 * it, and store.c writes it back; neither needs the other's header.
 *
 * IDENTIFICATION
 *	  src/pathstate.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ALLMA_PATHSTATE_H
#define ALLMA_PATHSTATE_H

#include "allma.h"

#include "nodes/pg_list.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "flowcache.h"
#include "http.h"

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
	Jsonb	   *context;		/* the context the step started from (main
								 * path, execution logs on: for redrives) */
	char	   *next_step;
	TimestampTz started_at;
	TimestampTz ended_at;
} AllmaStepRecord;

/* a branch to create: one item x one matching branch template */
typedef struct AllmaBranchSpec
{
	char	   *branch_id;
	int32		ordinal;		/* index in parallelBranches */
	int32		item_index;
	char	   *step_id;		/* the branch's first step */
	Jsonb	   *overlay;		/* {currentItem, mapped inputs} over the base */
	int64		delay_ms;		/* the first step's "before" delay */
} AllmaBranchSpec;

/* a fork started by a path's PARALLEL_FORK_MANAGER step */
typedef struct AllmaForkSpec
{
	char	   *step_id;
	Jsonb	   *base;			/* context shared by every branch */
	int32		max_concurrency;	/* 0 = unlimited */
	int64		ntotal;			/* branches created so far */
	/* the chunk of branches not inserted yet (store.c flushes it) */
	int			nbranches;
	int			capacity;
	AllmaBranchSpec *branches;
	MemoryContext chunkcxt;
} AllmaForkSpec;

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

	/* the execution's place in its tree and its step counter, from the claim */
	int32		step_count;		/* recorded step attempts (engine.c adds this
								 * pass's; store.c writes them) */
	int32		depth;			/* 0 for a top-level execution */
	pg_uuid_t	root_execution_id;
	bool		has_parent;		/* a sub-flow: parent_execution_id is set */
	pg_uuid_t	parent_execution_id;
	bool		sync_child;		/* a parent path waits for this execution */
	int32		priority;		/* claim priority, inherited by sub-flows */
	TimestampTz step_started_at;	/* when the current step began (engine.c) */

	/* cursor, advanced by the engine */
	char	   *step_id;		/* NULL once the path has ended */
	int32		attempt;
	int32		seq;
	TimestampTz due_at;
	Jsonb	   *context;
	Jsonb	   *transition_counts;

	/* parallel branches */
	bool		is_branch;		/* a parallel branch (else the main path) */
	int64		parent_path_id; /* the forking path, for branches */
	int32		item_index;
	int32		branch_ordinal;
	char	   *fork_step_id;	/* the parent's fork step (branches only) */
	Jsonb	   *base_context;	/* the fork's shared context (branches only) */
	bool		joining;		/* claimed to join its finished fork */
	Jsonb	   *last_output;	/* output of the last completed step */

	/* HTTP steps */
	AllmaHttpCompletion *response;	/* set by the worker to resume the step */
	Jsonb	   *io_request;		/* the request to send, when inflight (as stored:
								 * credentials redacted) */
	Jsonb	   *io_send_headers;	/* the headers to send, credentials included
									 * (never stored) */
	char	   *io_send_url;	/* the URL to send to, when it differs */
	char	   *io_send_password;	/* EMAIL: the SMTP login's password (never
									 * stored) */
	char	   *io_send_body;	/* EMAIL: a message too large to store */
	Jsonb	   *prev_request;	/* the request a response answers */
	bool		inflight;		/* the step waits for its HTTP response */

	/* outcome */
	bool		waiting;		/* started a fork or parked: waits for its
								 * branches, a child execution, ... */
	Jsonb	   *wait_record;	/* what a WAITING path keeps in its request
								 * column: {stepStartedAt, ...} (engine.c) */
	AllmaForkSpec *fork;		/* the fork to create, when waiting */
	bool		joined;			/* joined a fork: its rows are to be deleted */
	Jsonb	   *result;			/* a finished branch's result */
	bool		ended;
	bool		failed;
	Jsonb	   *error;			/* Allma error object when failed */
	List	   *records;		/* AllmaStepRecord * */
	int			steps_run;
} AllmaPathState;

#endif							/* ALLMA_PATHSTATE_H */
