/*-------------------------------------------------------------------------
 *
 * subflow.c
 *	  Sub-flows: START_FLOW_EXECUTION (module system/start-flow-execution)
 *	  and START_SUB_FLOW start another flow's execution as a child of the
 *	  running one.
 *
 * The child is started like allma_start_flow starts an execution (api.c,
 * allma_start_execution), in the step's transaction, as the role that
 * started the parent, which needs START on the child's flow.  It records
 * its parent, the root of the tree (so all rows of a tree can be kept by
 * root) and its depth; allma.max_subflow_depth bounds the depth.
 *
 * Async (START_FLOW_EXECUTION's default, Allma's fire-and-forget): the
 * step completes at once with {startedFlowExecutionId, ...}.  Sync
 * (customConfig.sync = true, executionMode "SYNC", START_SUB_FLOW's
 * default): the step parks its path WAITING, with no process and no lock,
 * keeping the child's id in the path's request record; the child names the
 * waiting path (executions.parent_path_id), and the transaction that ends
 * the child makes that path runnable again (a trigger on allma.executions,
 * see allma--1.0--1.1.sql), to complete the step: a completed child's
 * final context is the step's output (mapped by outputMappings), any other
 * end is a SubFlowExecutionError of the parent step, handled by its
 * retries, catch rules, continueOnFailure and fallback.
 *
 * IDENTIFICATION
 *	  src/steps/subflow.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/uuid.h"

#include "defcheck.h"
#include "jsonb_util.h"
#include "owner.h"
#include "path.h"
#include "start.h"
#include "steps.h"
#include "template.h"

/* Allma's error name of a sub-flow that did not complete */
#define ALLMA_ERR_SUBFLOW			"SubFlowExecutionError"
/* ... and of one that cannot be started: no such flow or version */
#define ALLMA_ERR_UNKNOWN_SUBFLOW	"UnknownSubflowError"

/* GUC allma.max_subflow_depth */
int			allma_max_subflow_depth = 10;

void
allma_subflow_define_gucs(void)
{
	/* read by the workers: the administrator's, like their other bounds */
	DefineCustomIntVariable("allma.max_subflow_depth",
							"Sets the deepest nesting of sub-flows.",
							"A START_FLOW_EXECUTION or START_SUB_FLOW step whose child would be "
							"deeper fails with a PermanentStepError naming the step.",
							&allma_max_subflow_depth,
							10, 1, 1000,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);
}

/* what a sub-flow step starts */
typedef struct SubflowSpec
{
	char	   *flow_id;
	int32		version;		/* 0: the published one */
	Jsonb	   *initial_context;
	bool		sync;
	int			enable_logs;	/* -1: the child flow's own setting */
} SubflowSpec;

static void
bad_field(StepRun *run, const char *field, const char *why)
{
	ereport(ERROR,
			(errcode(ERRCODE_ALLMA_PERMANENT_STEP_ERROR),
			 errmsg("step \"%s\": invalid %s", run->step->id, field),
			 errdetail("%s", why)));
}

/* a field of the module input, else the step's own field rendered */
static Jsonb *
spec_field(StepRun *run, Jsonb *in, const char *key)
{
	Jsonb	   *v = allma_jsonb_get(in, key);

	if (v == NULL)
		v = allma_jsonb_get(run->step->def, key);
	if (v != NULL)
		v = allma_template_render_value(v, allma_step_template_context(run));
	return v;
}

/* flowVersion / subFlowVersion: LATEST_PUBLISHED (or absent), or a positive number */
static int32
spec_version(StepRun *run, Jsonb *v, const char *field)
{
	JsonbValue	jv;
	double		d;

	if (v == NULL || !allma_jsonb_scalar(v, &jv) || jv.type == jbvNull)
		return 0;
	if (jv.type == jbvString)
	{
		char	   *s = pnstrdup(jv.val.string.val, jv.val.string.len);
		char	   *end;

		if (*s == '\0' || strcmp(s, "LATEST_PUBLISHED") == 0 || strcmp(s, "LATEST") == 0)
			return 0;
		d = strtod(s, &end);
		if (*end != '\0')
			bad_field(run, field, "The version must be a positive integer or \"LATEST_PUBLISHED\".");
	}
	else if (jv.type == jbvNumeric)
		d = DatumGetFloat8(DirectFunctionCall1(numeric_float8, NumericGetDatum(jv.val.numeric)));
	else
		bad_field(run, field, "The version must be a positive integer or \"LATEST_PUBLISHED\".");
	if (d < 1 || d > PG_INT32_MAX || d != floor(d))
		bad_field(run, field, "The version must be a positive integer or \"LATEST_PUBLISHED\".");
	return (int32) d;
}

/* SYNC / ASYNC, or a boolean "sync" */
static bool
spec_mode(StepRun *run, Jsonb *mode, Jsonb *sync, const char *field, bool dflt)
{
	JsonbValue	v;

	if (sync != NULL && allma_jsonb_scalar(sync, &v))
	{
		if (v.type == jbvBool)
			return v.val.boolean;
		if (v.type == jbvString && v.val.string.len == 4 &&
			strncmp(v.val.string.val, "true", 4) == 0)
			return true;
		if (v.type == jbvString && v.val.string.len == 5 &&
			strncmp(v.val.string.val, "false", 5) == 0)
			return false;
		bad_field(run, "sync", "sync must be true or false.");
	}
	if (mode != NULL && allma_jsonb_scalar(mode, &v) && v.type == jbvString)
	{
		char	   *s = pnstrdup(v.val.string.val, v.val.string.len);

		if (pg_strcasecmp(s, "SYNC") == 0)
			return true;
		if (pg_strcasecmp(s, "ASYNC") == 0)
			return false;
	}
	if (mode != NULL)
		bad_field(run, field, "The execution mode must be \"SYNC\" or \"ASYNC\".");
	return dflt;
}

static char *
spec_flow_id(StepRun *run, Jsonb *v, const char *field)
{
	char	   *s = v ? allma_jsonb_to_display_text(v) : NULL;

	if (v == NULL || !allma_jsonb_scalar(v, &(JsonbValue) {0}) || s == NULL || *s == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_ALLMA_PERMANENT_STEP_ERROR),
				 errmsg("step \"%s\" names no flow to start", run->step->id),
				 errdetail("%s is missing or empty after rendering.", field),
				 errhint("Set %s on the step, in its literals or in customConfig.", field)));
	return s;
}

/*
 * START_FLOW_EXECUTION: Allma's StartFlowExecutionInput fields, read from
 * the module input (rendered customConfig with the step input over it:
 * literals and inputMappings such as "initialContextData": "$.x"), else
 * from the step's own fields.
 */
static void
start_flow_execution_spec(StepRun *run, SubflowSpec *spec)
{
	Jsonb	   *in = allma_step_module_input(run);
	Jsonb	   *ctx = spec_field(run, in, "initialContextData");
	Jsonb	   *logs = spec_field(run, in, "enableExecutionLogs");
	JsonbValue	v;

	spec->flow_id = spec_flow_id(run, spec_field(run, in, "flowDefinitionId"), "flowDefinitionId");
	spec->version = spec_version(run, spec_field(run, in, "flowVersion"), "flowVersion");
	spec->sync = spec_mode(run, spec_field(run, in, "executionMode"),
						   spec_field(run, in, "sync"), "executionMode", false);
	if (ctx != NULL && !allma_jsonb_is_object(ctx) &&
		!(allma_jsonb_scalar(ctx, &v) && v.type == jbvNull))
		bad_field(run, "initialContextData", "initialContextData must be a JSON object.");
	spec->initial_context = allma_jsonb_is_object(ctx) ? ctx : allma_jsonb_empty_object();
	spec->enable_logs = -1;
	if (logs != NULL && allma_jsonb_scalar(logs, &v) && v.type == jbvBool)
		spec->enable_logs = v.val.boolean ? 1 : 0;
}

/*
 * START_SUB_FLOW: subFlowDefinitionId, subFlowVersion, subFlowExecutionMode
 * (default SYNC), and the child's initial context from
 * inputMappingsToSubFlow ({"child.key": "$.parent.path"}), else the step
 * input.
 */
static void
start_sub_flow_spec(StepRun *run, SubflowSpec *spec)
{
	Jsonb	   *def = run->step->def;
	Jsonb	   *tctx = allma_step_template_context(run);
	Jsonb	   *mappings = allma_jsonb_get(def, "inputMappingsToSubFlow");
	Jsonb	   *v;

	v = allma_jsonb_get(def, "subFlowDefinitionId");
	spec->flow_id = spec_flow_id(run, v ? allma_template_render_value(v, tctx) : NULL,
								 "subFlowDefinitionId");
	v = allma_jsonb_get(def, "subFlowVersion");
	spec->version = spec_version(run, v ? allma_template_render_value(v, tctx) : NULL,
								 "subFlowVersion");
	spec->sync = spec_mode(run, allma_jsonb_get(def, "subFlowExecutionMode"), NULL,
						   "subFlowExecutionMode", true);
	spec->enable_logs = -1;
	if (allma_jsonb_is_object(mappings))
	{
		Jsonb	   *ctx = allma_jsonb_empty_object();
		ListCell   *lc;

		foreach(lc, allma_jsonb_object_keys(mappings))
		{
			char	   *key = lfirst(lc);
			char	   *path = allma_jsonb_get_cstring(mappings, key);
			Jsonb	   *val = path ? allma_step_lookup(run, path) : NULL;

			if (val != NULL)
				ctx = allma_dotpath_set(ctx, key, val);
		}
		spec->initial_context = ctx;
	}
	else
		spec->initial_context = run->input;
}

/*
 * start_child starts the child and returns its id.  Errors of the start
 * become Allma errors of the step: a flow or version that does not exist
 * (or is not published) is an UnknownSubflowError; a missing START
 * privilege a PermanentStepError; both name the step.
 */
static pg_uuid_t *
start_child(StepRun *run, SubflowSpec *spec)
{
	AllmaPathState *ps = run->ps;
	AllmaStartRequest req;
	MemoryContext cxt = CurrentMemoryContext;
	pg_uuid_t  *child = NULL;

	if (ps->depth + 1 > allma_max_subflow_depth)
		ereport(ERROR,
				(errcode(ERRCODE_ALLMA_PERMANENT_STEP_ERROR),
				 errmsg("step \"%s\" cannot start flow \"%s\": sub-flows nest deeper than allma.max_subflow_depth (%d)",
						run->step->id, spec->flow_id, allma_max_subflow_depth),
				 errdetail("This execution is at depth %d of its tree.", ps->depth),
				 errhint("A flow that starts itself needs a condition that ends the recursion.")));

	memset(&req, 0, sizeof(req));
	req.flow_id = spec->flow_id;
	req.version = spec->version;
	req.input = spec->initial_context;
	req.options = allma_jsonb_set_key(NULL, "executionMode",
									  allma_jsonb_string(spec->sync ? "SYNC" : "ASYNC"));
	if (ps->priority != 0)
		req.options = allma_jsonb_set_key(req.options, "priority",
										  allma_jsonb_int(ps->priority));
	req.priority = ps->priority;
	req.enable_logs = spec->enable_logs;
	/* Allma's: ParentFlow:<parent execution>:<step> */
	req.trigger_source = psprintf("ParentFlow:%s:%s",
								  DatumGetCString(DirectFunctionCall1(uuid_out,
																	  UUIDPGetDatum(&ps->execution_id))),
								  run->step->id);
	req.starter = ps->run_as;
	req.parent_execution_id = &ps->execution_id;
	req.root_execution_id = &ps->root_execution_id;
	req.depth = ps->depth + 1;
	req.parent_path_id = spec->sync ? ps->path_id : -1;
	req.parent_step_id = run->step->id;

	PG_TRY();
	{
		child = allma_start_execution(&req);
	}
	PG_CATCH();
	{
		ErrorData  *edata;
		const char *name = NULL;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		if (edata->sqlerrcode == ERRCODE_ALLMA_UNKNOWN_FLOW ||
			edata->sqlerrcode == ERRCODE_ALLMA_NOT_PUBLISHED ||
			edata->sqlerrcode == ERRCODE_ALLMA_UNKNOWN_VERSION)
			name = ALLMA_ERR_UNKNOWN_SUBFLOW;
		else if (edata->sqlerrcode == ERRCODE_INSUFFICIENT_PRIVILEGE)
			name = ALLMA_ERR_PERMANENT;
		if (name == NULL)
			PG_RE_THROW();
		FlushErrorState();
		allma_step_raise_error(name,
							   psprintf("step \"%s\" cannot start flow \"%s\": %s",
										run->step->id, spec->flow_id, edata->message),
							   allma_jsonb_set_key(NULL, "flowDefinitionId",
												   allma_jsonb_string(spec->flow_id)));
	}
	PG_END_TRY();
	return child;
}

static char *
uuid_text(pg_uuid_t *id)
{
	return DatumGetCString(DirectFunctionCall1(uuid_out, UUIDPGetDatum(id)));
}

/* allma_subflow_start: the first call of a sub-flow step's attempt */
Jsonb *
allma_subflow_start(StepRun *run)
{
	SubflowSpec spec;
	pg_uuid_t  *child;
	char	   *child_text;

	memset(&spec, 0, sizeof(spec));
	if (strcmp(run->step->type->name, "START_SUB_FLOW") == 0)
		start_sub_flow_spec(run, &spec);
	else
		start_flow_execution_spec(run, &spec);

	child = start_child(run, &spec);
	child_text = uuid_text(child);

	if (spec.sync)
	{
		/* park: the child's end wakes the path (see the header comment) */
		MemoryContext oldcxt = MemoryContextSwitchTo(run->pathcxt);

		run->ps->wait_record = allma_jsonb_set_key(allma_jsonb_set_key(NULL, "childExecutionId",
																	   allma_jsonb_string(child_text)),
												   "childFlowId", allma_jsonb_string(spec.flow_id));
		MemoryContextSwitchTo(oldcxt);
		run->parked = true;
		return NULL;
	}

	/* Allma's output of an async start (without its SQS message id) */
	return allma_jsonb_set_key(allma_jsonb_set_key(NULL, "startedFlowExecutionId",
												   allma_jsonb_string(child_text)),
							   "flowDefinitionId", allma_jsonb_string(spec.flow_id));
}

/*
 * allma_subflow_complete: the waiting path was woken because its child
 * ended.  A completed child's final context is the output; any other end
 * fails the step.
 */
Jsonb *
allma_subflow_complete(StepRun *run)
{
	char	   *child = allma_jsonb_get_cstring(run->ps->prev_request, "childExecutionId");
	Oid			types[1] = {UUIDOID};
	Datum		values[1];
	AllmaAsOwner st;
	char	   *status = NULL;
	char	   *flow_id = NULL;
	Jsonb	   *output = NULL;
	Jsonb	   *error = NULL;
	MemoryContext cxt = CurrentMemoryContext;

	if (child == NULL)
		elog(ERROR, "step \"%s\" resumed without the sub-flow it waits for", run->step->id);
	values[0] = DirectFunctionCall1(uuid_in, CStringGetDatum(child));

	allma_owner_begin(&st);
	allma_owner_exec("SELECT status, flow_id, output, error FROM allma.executions "
					 "WHERE execution_id = $1", 1, types, values, NULL, SPI_OK_SELECT);
	if (SPI_processed == 1)
	{
		HeapTuple	tup = SPI_tuptable->vals[0];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		Datum		d;
		MemoryContext oldcxt = MemoryContextSwitchTo(cxt);

		status = SPI_getvalue(tup, desc, 1);
		flow_id = SPI_getvalue(tup, desc, 2);
		d = SPI_getbinval(tup, desc, 3, &isnull);
		output = isnull ? NULL : DatumGetJsonbPCopy(d);
		d = SPI_getbinval(tup, desc, 4, &isnull);
		error = isnull ? NULL : DatumGetJsonbPCopy(d);
		MemoryContextSwitchTo(oldcxt);
	}
	allma_owner_end(&st);

	if (status != NULL && (strcmp(status, "RUNNING") == 0 || strcmp(status, "QUEUED") == 0))
	{
		/* not ended after all (or still queued for its concurrency key): wait on */
		MemoryContext oldcxt = MemoryContextSwitchTo(run->pathcxt);

		run->ps->wait_record = allma_step_copy_jsonb(run->ps->prev_request);
		MemoryContextSwitchTo(oldcxt);
		run->parked = true;
		return NULL;
	}
	if (status != NULL && strcmp(status, "COMPLETED") == 0)
	{
		/* the history row names the child */
		run->details = allma_jsonb_set_key(allma_jsonb_set_key(NULL, "childExecutionId",
															   allma_jsonb_string(child)),
										   "childFlowId", allma_jsonb_string(flow_id));
		return output ? output : allma_jsonb_empty_object();
	}

	{
		Jsonb	   *details = allma_jsonb_empty_object();
		char	   *why = error ? allma_jsonb_get_cstring(error, "errorMessage") : NULL;

		details = allma_jsonb_set_key(details, "childExecutionId", allma_jsonb_string(child));
		if (flow_id)
			details = allma_jsonb_set_key(details, "childFlowId", allma_jsonb_string(flow_id));
		details = allma_jsonb_set_key(details, "childStatus",
									  allma_jsonb_string(status ? status : "DELETED"));
		if (error)
			details = allma_jsonb_set_key(details, "childError", error);
		allma_step_raise_error(ALLMA_ERR_SUBFLOW,
							   psprintf("sub-flow \"%s\" (execution %s) of step \"%s\" ended %s%s%s",
										flow_id ? flow_id : "?", child, run->step->id,
										status ? status : "(deleted)",
										why ? ": " : "", why ? why : ""),
							   details);
	}
	return NULL;				/* keep compiler quiet */
}

/* ----------------------------------------------------------------
 * Definition checks
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
	JsonbContainer *cfg;
	bool		b;

	allma_def_get_template_string(ck, step, NULL, "flowDefinitionId", false);
	check_flow_version(ck, step, "flowVersion");
	allma_def_check_enum_field(ck, step, NULL, "executionMode", false, sub_flow_modes);
	cfg = allma_def_get_object(ck, step, NULL, "customConfig", false);
	if (cfg != NULL)
	{
		JsonbValue	v;

		/* a template may make it at run time; a literal must be a boolean */
		if (allma_def_lookup(cfg, "sync", &v) && v.type != jbvString)
			(void) allma_def_get_bool(ck, cfg, "customConfig", "sync", &b);
		allma_def_check_enum_field(ck, cfg, "customConfig", "executionMode", false, sub_flow_modes);
	}
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
