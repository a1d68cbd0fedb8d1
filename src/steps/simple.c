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

#include "steps.h"

/* allma_step_pass_input: the output is the step input */
Jsonb *
allma_step_pass_input(StepRun *run)
{
	return run->input;
}
