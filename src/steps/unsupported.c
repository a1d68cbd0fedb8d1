/*-------------------------------------------------------------------------
 *
 * unsupported.c
 *	  Step types of Allma's format that this version validates and stores
 *	  but does not run.
 *
 * SQS_SEND and SNS_PUBLISH: a step of these types fails when it runs, with
 * PermanentStepError "step type ... is not supported".
 * (WAIT_FOR_EXTERNAL_EVENT: wait.c; START_FLOW_EXECUTION and START_SUB_FLOW:
 * subflow.c.)
 *
 * IDENTIFICATION
 *	  src/steps/unsupported.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "defcheck.h"
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

/* ----------------------------------------------------------------
 * The definition check
 * ----------------------------------------------------------------
 */

void
allma_check_sqs_send(AllmaChecker *ck, JsonbContainer *step)
{
	allma_def_get_template_string(ck, step, NULL, "queueUrl", false);
	if (allma_def_get_object(ck, step, NULL, "payload", false) != NULL)
		allma_def_check_templates_field(ck, step, NULL, "payload");
	allma_def_get_template_string(ck, step, NULL, "messageGroupId", false);
	allma_def_get_template_string(ck, step, NULL, "messageDeduplicationId", false);
}

void
allma_check_sns_publish(AllmaChecker *ck, JsonbContainer *step)
{
	allma_def_get_template_string(ck, step, NULL, "topicArn", false);
	if (allma_def_get_object(ck, step, NULL, "payload", false) != NULL)
		allma_def_check_templates_field(ck, step, NULL, "payload");
	if (allma_def_get_object(ck, step, NULL, "messageAttributes", false) != NULL)
		allma_def_check_templates_field(ck, step, NULL, "messageAttributes");
}
