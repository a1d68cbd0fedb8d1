/*-------------------------------------------------------------------------
 *
 * unsupported.c
 *	  Step types of Allma's format that this version validates and stores
 *	  but does not run.
 *
 * WAIT_FOR_EXTERNAL_EVENT, START_FLOW_EXECUTION, START_SUB_FLOW, SQS_SEND
 * and SNS_PUBLISH: a step of these types fails when it runs, with
 * PermanentStepError "step type ... is not supported".
 *
 * IDENTIFICATION
 *	  src/steps/unsupported.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "steps.h"

/* allma_step_unsupported fails the step */
Jsonb *
allma_step_unsupported(StepRun *run)
{
	AllmaStep  *step = run->step;

	ereport(ERROR,
			(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
			 errmsg("step type \"%s\" is not supported by allma %s",
					step->type_name, ALLMA_VERSION),
			 errdetail("Step \"%s\" cannot run.", step->id),
			 errhint("See the README for the step types this version runs.")));
	return NULL;				/* keep compiler quiet */
}
