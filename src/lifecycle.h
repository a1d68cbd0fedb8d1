/*-------------------------------------------------------------------------
 *
 * lifecycle.h
 *	  The end of an execution from outside its steps: cancel, execution
 *	  timeouts and the step budget, and the waits of WAIT_FOR_EXTERNAL_EVENT
 *	  steps (allma_resume_flow).
 *
 * An execution ends from outside (cancelled by a caller, timed out) in one
 * statement that marks it and its running child executions terminal, with
 * their row locks taken in execution-id order; their paths, forks and open
 * waits are then deleted where no worker holds them.  A worker that holds
 * one (a pass in progress) drops it when it next claims it: a claimed path
 * whose execution is no longer RUNNING never runs a step.  In-flight
 * requests of such paths are aborted by the worker that sent them, which
 * is woken when the cancel commits; a response that arrives anyway finds
 * no INFLIGHT row and is discarded.
 *
 * IDENTIFICATION
 *	  src/lifecycle.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ALLMA_LIFECYCLE_H
#define ALLMA_LIFECYCLE_H

#include "allma.h"

#include "utils/uuid.h"

/*
 * SQLSTATEs of the execution lifecycle (LM32x): resuming a wait, and the
 * errors an execution fails with.
 */
#define ERRCODE_ALLMA_UNKNOWN_WAIT			MAKE_SQLSTATE('L','M','3','2','0')
#define ERRCODE_ALLMA_WAIT_ALREADY_RESUMED	MAKE_SQLSTATE('L','M','3','2','1')
#define ERRCODE_ALLMA_WAIT_TIMED_OUT		MAKE_SQLSTATE('L','M','3','2','2')
#define ERRCODE_ALLMA_STEP_BUDGET_EXCEEDED	MAKE_SQLSTATE('L','M','3','2','3')
#define ERRCODE_ALLMA_EXECUTION_TIMED_OUT	MAKE_SQLSTATE('L','M','3','2','4')
#define ERRCODE_ALLMA_WAIT_CANCELLED		MAKE_SQLSTATE('L','M','3','2','5')

/* Allma's error names of the lifecycle */
#define ALLMA_ERR_STEP_TIMEOUT		"StepTimeoutError"
#define ALLMA_ERR_CANCELLED			"ExecutionCancelled"
#define ALLMA_ERR_EXECUTION_TIMEOUT	"ExecutionTimeoutError"
#define ALLMA_ERR_STEP_BUDGET		"StepBudgetExceeded"

/* GUCs (lifecycle.c) */
extern int	allma_max_steps_per_execution;
extern int	allma_execution_timeout_s;

/* defines the GUCs above; called by allma.c's _PG_init */
extern void allma_lifecycle_define_gucs(void);

/*
 * allma_lifecycle_end_tree ends the execution "id" (which must be RUNNING
 * and locked by the caller, or be locked here) and its running
 * descendants with status (CANCELLED, TIMED_OUT) and error (child_error
 * for the descendants; NULL: the same); then removes
 * their paths, forks and open waits that nobody holds.  Returns how many
 * executions it ended (0: the execution was not running any more), and
 * sends their NOTIFYs and the commit-time wake-up.  SPI must be connected,
 * as a role that may write allma's tables.
 */
extern int	allma_lifecycle_end_tree(pg_uuid_t *id, const char *status, Jsonb *error,
									 Jsonb *child_error);

/*
 * allma_lifecycle_drop_paths deletes the paths, forks and open waits of
 * executions that are no longer RUNNING, where no other transaction holds
 * them (the caller's own locks count as its own).  SPI connected.
 */
extern void allma_lifecycle_drop_paths(int n, pg_uuid_t *executions);

/*
 * allma_lifecycle_drop_parked: executions (statuses[i]: CANCELLED or
 * TIMED_OUT) ended by another transaction while this one's pass held a
 * path of theirs, which it then parked.  What the ending could not see is
 * undone: the sub-flows the pass started are ended with the execution's
 * status, the paths dropped and their waits released.  SPI connected.
 */
extern void allma_lifecycle_drop_parked(int n, pg_uuid_t *executions, char **statuses);

/*
 * allma_lifecycle_notify_at_commit: when the current transaction commits,
 * wake the workers (so that they drop requests of ended executions) and
 * allma_wait callers.
 */
extern void allma_lifecycle_notify_at_commit(void);

/*
 * allma_lifecycle_time_out_executions ends up to "limit" running executions
 * past their deadline (flow timeoutSeconds, else allma.execution_timeout)
 * with status TIMED_OUT, like a cancel; returns how many executions ended.
 * SPI connected.
 */
extern int	allma_lifecycle_time_out_executions(int limit);

#endif							/* ALLMA_LIFECYCLE_H */
