/*-------------------------------------------------------------------------
 *
 * simple.c
 *	  Steps that pass their input on: NO_OP, END_FLOW, and the trigger
 *	  markers EMAIL_START_POINT and SCHEDULE_START_POINT.
 *
 * Their output is their input (inputMappings and literals applied).
 * END_FLOW's row in step.c ends the path after it.  The start points mark
 * where a trigger enters a flow; run, they do nothing.
 *
 * IDENTIFICATION
 *	  src/steps/simple.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "defcheck.h"
#include "email_ingest.h"
#include "steps.h"

/* allma_step_pass_input: the output is the step input */
Jsonb *
allma_step_pass_input(StepRun *run)
{
	return run->input;
}

/* ----------------------------------------------------------------
 * The definition check
 * ----------------------------------------------------------------
 */

/*
 * The start points are trigger markers that do nothing when run, so unlike
 * Allma we do not require their trigger fields.
 */
void
allma_check_email_start_point(AllmaChecker *ck, JsonbContainer *step)
{
	char	   *pattern;
	char	   *why;

	allma_def_get_template_string(ck, step, NULL, "emailAddress", false);
	allma_def_get_string(ck, step, NULL, "keyword", false);
	pattern = allma_def_get_string(ck, step, NULL, "triggerMessagePattern", false);
	/* allma_deliver_email applies it (email_ingest.c) */
	if (pattern != NULL && !allma_email_pattern_check(pattern, &why))
		ereport(ERROR,
				(errcode(ERRCODE_ALLMA_INVALID_DEFINITION),
				 errmsg("step \"%s\": triggerMessagePattern is not a valid regular expression: %s",
						ck->step, why),
				 errhint("allma_deliver_email applies it as a PostgreSQL regular expression; group 1 becomes triggeringEmail.triggerPattern.")));
}

void
allma_check_schedule_start_point(AllmaChecker *ck, JsonbContainer *step)
{
	allma_def_get_template_string(ck, step, NULL, "scheduleExpression", false);
	allma_def_get_string(ck, step, NULL, "timezone", false);
	allma_def_get_bool(ck, step, NULL, "enabled", NULL);
	if (allma_def_get_object(ck, step, NULL, "payloadTemplate", false) != NULL)
		allma_def_check_templates_field(ck, step, NULL, "payloadTemplate");
}
