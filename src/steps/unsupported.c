/*-------------------------------------------------------------------------
 *
 * unsupported.c
 *	  Step types of Allma's format that this version validates and stores
 *	  but does not run.
 *
 * START_FLOW_EXECUTION, START_SUB_FLOW, SQS_SEND and SNS_PUBLISH: a step of these types fails when it runs, with
 * PermanentStepError "step type ... is not supported".
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

static const char *const sub_flow_modes[] = {"SYNC", "ASYNC", NULL};

/* flowVersion / subFlowVersion: "LATEST_PUBLISHED", a template or a number */
static void
check_flow_version(AllmaChecker *ck, JsonbContainer *step, const char *key)
{
	JsonbValue	v;

	if (!allma_def_lookup(step, key, &v))
		return;
	if (v.type == jbvString)
		allma_def_check_template(ck, key, allma_def_string_value(&v));
	else if (v.type == jbvNumeric)
		allma_def_check_number_field(ck, step, NULL, key, true, 0, true, INFINITY,
									 ERRCODE_ALLMA_INVALID_DEFINITION);
	else
		allma_def_error_type(ck, key, "a string or a number", &v);
}

void
allma_check_start_flow_execution(AllmaChecker *ck, JsonbContainer *step)
{
	allma_def_get_template_string(ck, step, NULL, "flowDefinitionId", false);
	check_flow_version(ck, step, "flowVersion");
}

void
allma_check_start_sub_flow(AllmaChecker *ck, JsonbContainer *step)
{
	allma_def_get_nonempty_string(ck, step, NULL, "subFlowDefinitionId", !ck->inherits);
	check_flow_version(ck, step, "subFlowVersion");
	allma_def_check_enum_field(ck, step, NULL, "subFlowExecutionMode", false,
							   sub_flow_modes);
	allma_def_check_input_mappings(ck, step, NULL, "inputMappingsToSubFlow");
}

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
