/*-------------------------------------------------------------------------
 *
 * redrive.c
 *	  allma_redrive_execution: a new execution that runs an earlier one
 *	  again, from its input or from one of its steps (Allma's "redrive" and
 *	  "stateful redrive").
 *
 * Without a step, the new execution starts from the original input; with
 * one, it starts at that step with the context the step started from in
 * the original execution (recorded in step_executions.context when
 * execution logs were on) or the context the caller supplies.  Either way
 * it runs the original's flow version (versions are immutable and an
 * execution pins its version), as the caller, who must have started the
 * original (or have its privileges) or be allma_admin, and who needs START
 * on the flow like any starter.  Transition counters start empty, as in
 * Allma.  The new execution names the original in executions.redrive_of.
 *
 * IDENTIFICATION
 *	  src/redrive.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/uuid.h"

#include "acl.h"
#include "jsonb_util.h"
#include "large_value.h"
#include "owner.h"
#include "start.h"

PG_FUNCTION_INFO_V1(allma_redrive_execution);

/* what a redrive needs of the original execution */
typedef struct Original
{
	char	   *flow_id;
	int32		version;
	Jsonb	   *input;
	bool		logs;
	Oid			starter;
} Original;

static void
unknown_execution(const char *id)
{
	ereport(ERROR,
			(errcode(ERRCODE_UNDEFINED_OBJECT),
			 errmsg("execution %s does not exist", id)));
}

/*
 * read_original reads the execution as allma's owner; one the caller may
 * not redrive answers like an unknown one, so that ids of other roles'
 * executions cannot be probed.
 */
static void
read_original(pg_uuid_t *id, const char *id_text, Oid caller, Original *o)
{
	AllmaAsOwner st;
	Oid			types[1] = {UUIDOID};
	Datum		values[1] = {UUIDPGetDatum(id)};
	MemoryContext cxt = CurrentMemoryContext;
	bool		found;

	allma_owner_begin(&st);
	allma_owner_exec("SELECT flow_id, flow_version, input, enable_execution_logs, started_by "
					 "FROM allma.executions WHERE execution_id = $1",
					 1, types, values, NULL, SPI_OK_SELECT);
	found = SPI_processed == 1;
	if (found)
	{
		HeapTuple	tup = SPI_tuptable->vals[0];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		MemoryContext oldcxt = MemoryContextSwitchTo(cxt);

		o->flow_id = SPI_getvalue(tup, desc, 1);
		o->version = DatumGetInt32(SPI_getbinval(tup, desc, 2, &isnull));
		o->input = DatumGetJsonbPCopy(SPI_getbinval(tup, desc, 3, &isnull));
		o->logs = DatumGetBool(SPI_getbinval(tup, desc, 4, &isnull));
		o->starter = DatumGetObjectId(SPI_getbinval(tup, desc, 5, &isnull));
		MemoryContextSwitchTo(oldcxt);
	}
	allma_owner_end(&st);
	if (!found || !(allma_acl_is_admin(caller) || has_privs_of_role(caller, o->starter)))
		unknown_execution(id_text);
}

/*
 * recorded_context: the context the last attempt of step on the main path
 * started from; errors when the step never ran there or was not recorded.
 */
static Jsonb *
recorded_context(pg_uuid_t *id, const char *id_text, const char *step)
{
	AllmaAsOwner st;
	Oid			types[2] = {UUIDOID, TEXTOID};
	Datum		values[2] = {UUIDPGetDatum(id), CStringGetTextDatum(step)};
	MemoryContext cxt = CurrentMemoryContext;
	Jsonb	   *context = NULL;
	bool		ran;
	bool		in_branch = false;

	allma_owner_begin(&st);
	allma_owner_exec("SELECT context FROM allma.step_executions "
					 "WHERE execution_id = $1 AND path_id = 0 AND step_instance_id = $2 "
					 "ORDER BY seq DESC LIMIT 1", 2, types, values, NULL, SPI_OK_SELECT);
	ran = SPI_processed == 1;
	if (ran)
	{
		bool		isnull;
		Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);

		if (!isnull)
		{
			MemoryContext oldcxt = MemoryContextSwitchTo(cxt);

			context = DatumGetJsonbPCopy(d);
			MemoryContextSwitchTo(oldcxt);
		}
	}
	else
	{
		allma_owner_exec("SELECT 1 FROM allma.step_executions "
						 "WHERE execution_id = $1 AND path_id <> 0 AND step_instance_id = $2 LIMIT 1",
						 2, types, values, NULL, SPI_OK_SELECT);
		in_branch = SPI_processed == 1;
	}
	allma_owner_end(&st);

	if (!ran)
		ereport(ERROR,
				(errcode(ERRCODE_ALLMA_REDRIVE_NO_STEP),
				 errmsg("step \"%s\" did not run in execution %s", step, id_text),
				 in_branch ?
				 errdetail("It ran only in parallel branches, which start from their fork.") :
				 errdetail("A redrive starts again from a step the execution ran."),
				 in_branch ?
				 errhint("Redrive from the PARALLEL_FORK_MANAGER step, or pass the context to start from.") :
				 errhint("Pass the context to start from as the third argument.")));
	if (context == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_ALLMA_REDRIVE_NO_CONTEXT),
				 errmsg("the context step \"%s\" started from in execution %s was not recorded", step, id_text),
				 errdetail("Contexts are recorded only with execution logs on."),
				 errhint("Pass the context to start from as the third argument.")));
	return context;
}

/*
 * allma_redrive_execution(execution_id uuid, from_step text DEFAULT NULL,
 *						   context jsonb DEFAULT NULL) returns uuid
 */
Datum
allma_redrive_execution(PG_FUNCTION_ARGS)
{
	pg_uuid_t  *id;
	char	   *id_text;
	char	   *from_step = PG_ARGISNULL(1) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(1));
	Jsonb	   *context = PG_ARGISNULL(2) ? NULL : PG_GETARG_JSONB_P(2);
	Oid			caller = GetUserId();
	Original	o;
	AllmaStartRequest req;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("execution id must not be null")));
	id = PG_GETARG_UUID_P(0);
	id_text = DatumGetCString(DirectFunctionCall1(uuid_out, UUIDPGetDatum(id)));
	if (context != NULL && from_step == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a redrive with a context needs the step to start from"),
				 errhint("Pass from_step; without it the execution starts again from its input.")));
	if (context != NULL && !allma_jsonb_is_object(context))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the context to redrive from must be a JSON object")));

	memset(&o, 0, sizeof(o));
	read_original(id, id_text, caller, &o);

	memset(&req, 0, sizeof(req));
	req.flow_id = o.flow_id;
	req.version = o.version;
	req.input = o.input;
	req.options = allma_jsonb_empty_object();
	if (from_step != NULL)
		req.options = allma_jsonb_set_key(req.options, "startStepInstanceId",
										  allma_jsonb_string(from_step));
	req.enable_logs = o.logs ? 1 : 0;
	req.start_step = from_step;
	req.trigger_source = psprintf("RedriveOf:%s", id_text);
	req.starter = caller;
	req.parent_path_id = -1;
	req.redrive_of = id;
	if (from_step != NULL)
		/* its out-of-line values belong to the original: copied in full */
		req.context = allma_large_hydrate_in(id, context != NULL ? context :
											 recorded_context(id, id_text, from_step));

	PG_RETURN_UUID_P(allma_start_execution(&req));
}
