/*-------------------------------------------------------------------------
 *
 * wait.c
 *	  WAIT_FOR_EXTERNAL_EVENT: the path parks until allma_resume_flow
 *	  resumes it with a payload, or its deadline passes.
 *
 * First attempt: correlationKeyTemplate is rendered (an empty key, one that
 * ends with ':' or one over 1024 bytes fails the step, as in Allma), the
 * wait is recorded in allma.waits (its key unique among open waits) and
 * the path parks: WAITING, its request the wait ({"wait": {...}}, the
 * path's wait_record), due at
 * the deadline (now + maxWaitTimeSeconds, default 7 days, times
 * allma.timer_scale).  Nothing of the wait lives in a process.
 *
 * The path runs again when allma_resume_flow (lifecycle.c) made it READY
 * with "resumed" in its wait, or when a worker found its deadline passed
 * (store.c marks the wait TIMED_OUT).  The same step then completes with
 * the payload as its output (its outputMappings and transitions apply), or
 * fails with StepTimeoutError, which onError (retries, catch, fallback)
 * handles like any other error.
 *
 * IDENTIFICATION
 *	  src/steps/wait.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "defcheck.h"
#include "jsonb_util.h"
#include "lifecycle.h"
#include "spicache.h"
#include "steps.h"
#include "template.h"

/* Allma's default maxWaitTimeSeconds: 7 days */
#define DEFAULT_MAX_WAIT_SECONDS	604800.0
/* the longest maxWaitTimeSeconds: a year */
#define MAX_WAIT_SECONDS			31536000.0

/* the statements of a wait, planned once per worker */
static SPIPlanPtr insert_wait_plan = NULL;
static SPIPlanPtr read_payload_plan = NULL;

/* run_kept runs sql as a plan kept in *slot (prepared on first use) */
static int
run_kept(SPIPlanPtr *slot, const char *sql, int nargs, Oid *types, Datum *values, long count)
{
	if (*slot == NULL)
	{
		SPIPlanPtr	plan = SPI_prepare(sql, nargs, types);

		if (plan == NULL)
			elog(ERROR, "allma: could not prepare a statement of WAIT_FOR_EXTERNAL_EVENT: %s",
				 SPI_result_code_string(SPI_result));
		SPI_keepplan(plan);
		*slot = plan;
	}
	/* key lookups, whatever the statistics said when it was planned */
	return allma_spi_execute_keyed(*slot, values, NULL, false, count);
}

/*
 * parked_wait: the wait this attempt returns from (the path's stored wait,
 * for this step and this attempt), or NULL when the step starts waiting.
 */
static Jsonb *
parked_wait(StepRun *run)
{
	Jsonb	   *w = run->ps->prev_request ? allma_jsonb_get(run->ps->prev_request, "wait") : NULL;
	char	   *step;
	double		seq;

	if (w == NULL || !allma_jsonb_is_object(w))
		return NULL;
	step = allma_jsonb_get_cstring(w, "stepInstanceId");
	if (step == NULL || strcmp(step, run->step->id) != 0 ||
		!allma_jsonb_get_number(w, "seq", &seq) || (int32) seq != run->ps->seq)
		return NULL;
	return w;
}

static char *
uuid_text(pg_uuid_t *id)
{
	return DatumGetCString(DirectFunctionCall1(uuid_out, UUIDPGetDatum(id)));
}

/* park records the wait and parks the path */
static Jsonb *
park(StepRun *run)
{
	AllmaStep  *step = run->step;
	char	   *tmpl = allma_jsonb_get_cstring(step->def, "correlationKeyTemplate");
	char	   *key;
	double		max_wait = DEFAULT_MAX_WAIT_SECONDS;
	TimestampTz deadline;
	Jsonb	   *wait;
	Oid			types[6] = {UUIDOID, INT8OID, INT4OID, TEXTOID, TEXTOID, TIMESTAMPTZOID};
	Datum		values[6];
	char	   *root;
	MemoryContext cxt = CurrentMemoryContext;

	if (tmpl == NULL)
		allma_step_raise_config_error(psprintf("step \"%s\" has no correlationKeyTemplate", step->id));
	key = allma_template_render(tmpl, allma_step_template_context(run));
	if (key[0] == '\0' || key[strlen(key) - 1] == ':')
		allma_step_raise_error(ALLMA_ERR_PERMANENT,
							   psprintf("step \"%s\" rendered the correlation key \"%s\", which is empty or incomplete",
										step->id, key),
							   allma_jsonb_set_key(NULL, "correlationKey", allma_jsonb_string(key)));
	if (strlen(key) > 1024)
		allma_step_raise_error(ALLMA_ERR_PERMANENT,
							   psprintf("step \"%s\" rendered a correlation key of %zu bytes (at most 1024)",
										step->id, strlen(key)),
							   allma_jsonb_empty_object());
	(void) allma_jsonb_get_number(step->def, "maxWaitTimeSeconds", &max_wait);
	if (max_wait < 0 || max_wait > MAX_WAIT_SECONDS)
		max_wait = DEFAULT_MAX_WAIT_SECONDS;
	deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
										   (int64) (max_wait * 1000.0 * allma_timer_scale));

	values[0] = UUIDPGetDatum(&run->ps->execution_id);
	values[1] = Int64GetDatum(run->ps->path_id);
	values[2] = Int32GetDatum(run->ps->seq);
	values[3] = CStringGetTextDatum(step->id);
	values[4] = CStringGetTextDatum(key);
	values[5] = TimestampTzGetDatum(deadline);
	if (run_kept(&insert_wait_plan,
				 "INSERT INTO allma.waits (root_execution_id, execution_id, path_id, seq, "
				 "  step_instance_id, correlation_key, deadline) "
				 "SELECT coalesce(x.root_execution_id, x.execution_id), x.execution_id, "
				 "       $2, $3, $4, $5, $6 "
				 "  FROM allma.executions x WHERE x.execution_id = $1 "
				 "ON CONFLICT (correlation_key) WHERE status = 'OPEN' DO NOTHING "
				 "RETURNING root_execution_id::text",
				 6, types, values, 0) != SPI_OK_INSERT_RETURNING)
		elog(ERROR, "allma: could not record the wait of step \"%s\"", step->id);
	if (SPI_processed != 1)
		allma_step_raise_error(ALLMA_ERR_PERMANENT,
							   psprintf("step \"%s\" cannot wait on correlation key \"%s\": another wait is open on it",
										step->id, key),
							   allma_jsonb_set_key(NULL, "correlationKey", allma_jsonb_string(key)));
	MemoryContextSwitchTo(cxt);	/* (SPI leaves its own context current) */
	root = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);

	/* what the path stores while it waits (and resume and timeout find) */
	wait = allma_jsonb_set_key(NULL, "stepInstanceId", allma_jsonb_string(step->id));
	wait = allma_jsonb_set_key(wait, "seq", allma_jsonb_int(run->ps->seq));
	wait = allma_jsonb_set_key(wait, "rootExecutionId", allma_jsonb_string(root));
	wait = allma_jsonb_set_key(wait, "correlationKey", allma_jsonb_string(key));
	wait = allma_jsonb_set_key(wait, "deadline",
							   allma_jsonb_string(DatumGetCString(DirectFunctionCall1(timestamptz_out,
																					  TimestampTzGetDatum(deadline)))));
	{
		MemoryContext old = MemoryContextSwitchTo(run->pathcxt);

		run->ps->wait_record = allma_jsonb_set_key(NULL, "wait", wait);
		MemoryContextSwitchTo(old);
	}
	run->park_until = deadline;
	run->parked = true;
	return NULL;
}

/* finish_wait: the path returns from its wait, resumed or timed out */
static Jsonb *
finish_wait(StepRun *run, Jsonb *wait)
{
	bool		resumed = false;
	char	   *root = allma_jsonb_get_cstring(wait, "rootExecutionId");
	char	   *key = allma_jsonb_get_cstring(wait, "correlationKey");
	Oid			types[4] = {UUIDOID, UUIDOID, INT8OID, INT4OID};
	Datum		values[4];
	bool		isnull;
	Datum		payload;
	MemoryContext cxt = CurrentMemoryContext;

	(void) allma_jsonb_get_bool(wait, "resumed", &resumed);
	if (!resumed)
	{
		Jsonb	   *details = allma_jsonb_set_key(NULL, "correlationKey",
												  allma_jsonb_string(key ? key : ""));

		details = allma_jsonb_set_key(details, "deadline", allma_jsonb_get(wait, "deadline"));
		allma_step_raise_error(ALLMA_ERR_STEP_TIMEOUT,
							   psprintf("step \"%s\" waited for correlation key \"%s\" until its deadline (maxWaitTimeSeconds) without being resumed",
										run->step->id, key ? key : ""),
							   details);
	}

	/*
	 * The payload allma_resume_flow stored with the wait, read with a new
	 * snapshot (not read-only: the pass's first snapshot may predate the
	 * resume's commit, which the claim's lock has waited for).
	 */
	values[0] = DirectFunctionCall1(uuid_in, CStringGetDatum(root));
	values[1] = UUIDPGetDatum(&run->ps->execution_id);
	values[2] = Int64GetDatum(run->ps->path_id);
	values[3] = Int32GetDatum(run->ps->seq);
	if (run_kept(&read_payload_plan,
				 "SELECT payload FROM allma.waits WHERE root_execution_id = $1 "
				 "AND execution_id = $2 AND path_id = $3 AND seq = $4",
				 4, types, values, 1) != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "allma: the wait of step \"%s\" of execution %s is gone",
			 run->step->id, uuid_text(&run->ps->execution_id));
	MemoryContextSwitchTo(cxt);	/* (SPI leaves its own context current) */
	payload = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	if (isnull)
		return allma_jsonb_empty_object();
	return allma_step_copy_jsonb(DatumGetJsonbP(payload));
}

Jsonb *
allma_wait_step_start(StepRun *run)
{
	Jsonb	   *wait = parked_wait(run);

	if (wait == NULL)
		return park(run);
	/* consumed: a later wait in the same pass starts afresh */
	run->ps->prev_request = NULL;
	return finish_wait(run, wait);
}

/* ----------------------------------------------------------------
 * The definition check
 * ----------------------------------------------------------------
 */

void
allma_check_wait(AllmaChecker *ck, JsonbContainer *step)
{
	JsonbValue	v;

	allma_def_get_template_string(ck, step, NULL, "correlationKeyTemplate", !ck->inherits);
	allma_def_check_number_field(ck, step, NULL, "maxWaitTimeSeconds", false,
								 0, true, MAX_WAIT_SECONDS, ERRCODE_ALLMA_INVALID_DEFINITION);
	if (allma_def_lookup(step, "promptUserMessageTemplate", &v))
	{
		if (v.type != jbvString && !allma_def_is_object(&v))
			allma_def_error_type(ck, "promptUserMessageTemplate", "a string or an object", &v);
		allma_def_check_templates_in(ck, "promptUserMessageTemplate", &v);
	}
	allma_def_get_string(ck, step, NULL, "messageSenderModuleIdentifier", false);
}
