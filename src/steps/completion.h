/*-------------------------------------------------------------------------
 *
 * completion.h
 *	  onCompletionActions (steps/completion.c): planned when an execution
 *	  ends (store.c), webhooks run as steps of an internal type.
 *
 * IDENTIFICATION
 *	  src/steps/completion.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ALLMA_COMPLETION_H
#define ALLMA_COMPLETION_H

#include "step.h"

/* the internal step type of a webhook's path */
extern const AllmaStepType allma_step_type_completion;

/* does the action send a request (API_CALL)?  flowcache.c makes a step of those */
extern bool allma_completion_is_webhook(Jsonb *action);

/* fills *step for the webhook action at index of onCompletionActions */
extern void allma_completion_parse_step(AllmaStep *step, int index, Jsonb *action);

/*
 * allma_completion_plan runs the completion actions of the executions that
 * ended in this batch: paths are the batch's paths, finished the ids (text)
 * of the executions the batch made terminal.  SPI connected.
 */
extern void allma_completion_plan(List *paths, List *finished);

/*
 * allma_completion_plan_ended runs the completion actions of the n
 * executions (ids) that a cancel or an execution timeout has just ended
 * with "status" (CANCELLED, TIMED_OUT), before their paths are dropped.
 * SPI connected, as a role that may write allma's tables.
 */
extern void allma_completion_plan_ended(int n, pg_uuid_t *ids, const char *status);

/* forgets the saved plans (the extension was re-created) */
extern void allma_completion_reset(void);

#endif							/* ALLMA_COMPLETION_H */
