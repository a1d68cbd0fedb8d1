/*-------------------------------------------------------------------------
 *
 * picture.h
 *	  What the pictures of flows and executions (graph.c, timeline.c)
 *	  share: looking an execution up as the calling role, the positions of
 *	  its live paths, and small text helpers.
 *
 * Every lookup of an execution, its history and its flow definition runs
 * as the caller, so that the row-level security of allma.executions and
 * allma.step_executions decides what a role may see; an execution the
 * caller cannot see is reported exactly like one that does not exist.
 *
 * IDENTIFICATION
 *	  src/picture.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ALLMA_PICTURE_H
#define ALLMA_PICTURE_H

#include "allma.h"

#include "lib/stringinfo.h"
#include "nodes/pg_list.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

/* what the pictures need of one execution (see allma_picture_execution) */
typedef struct AllmaPictureExecution
{
	pg_uuid_t	id;
	char	   *flow_id;
	int			version;
	char	   *status;			/* RUNNING, COMPLETED, FAILED, ... */
	TimestampTz started_at;
	TimestampTz ended_at;		/* valid when has_ended */
	bool		has_ended;
	TimestampTz now;			/* clock_timestamp() of the lookup */
	char	   *start_step;		/* options.startStepInstanceId, or NULL */
	char	   *error_name;		/* error.errorName, or NULL */
	Jsonb	   *definition;		/* the version it runs, NULL if not visible */
} AllmaPictureExecution;

/* one row of allma.execution_paths: a path that is still going */
typedef struct AllmaLivePath
{
	int64		path_id;
	char	   *branch_id;		/* NULL on the main path */
	char	   *step_id;		/* current step, NULL if none */
	char	   *status;			/* READY, INFLIGHT, WAITING, ... */
	int			attempt;
	TimestampTz due_at;
} AllmaLivePath;

/* runs a read-only query as the caller (SPI connected); throws unless it ran */
extern void allma_picture_select(const char *sql, int nargs, Oid *types, Datum *values,
								 const char *nulls, long limit);

/*
 * allma_picture_execution looks the execution up as the calling role (SPI
 * must be connected) and fills *ex; raises "execution ... does not exist"
 * (42704) when the role cannot see it.
 */
extern void allma_picture_execution(pg_uuid_t *id, AllmaPictureExecution *ex);

/*
 * allma_picture_live_paths returns the live paths (AllmaLivePath *) of an
 * execution the caller has been shown to see, at most "limit" of them
 * (*truncated tells whether there were more).
 */
extern List *allma_picture_live_paths(AllmaPictureExecution *ex, int limit,
									  bool *truncated);

/* a live path is running (due now or in flight), not waiting */
extern bool allma_picture_path_running(AllmaLivePath *lp, TimestampTz now);

/* appends a duration (microseconds) as "12.3 ms", "1.52 s", "3 min 04 s" */
extern void allma_picture_append_duration(StringInfo buf, int64 usecs);

/* s cut to at most max_chars characters, "..." added when cut */
extern char *allma_picture_clip(const char *s, int max_chars);

/* the step type of a step definition, or a stand-in when it has none */
extern char *allma_picture_step_type(Jsonb *step);

#endif							/* ALLMA_PICTURE_H */
