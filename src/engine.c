/*-------------------------------------------------------------------------
 *
 * engine.c
 *	  The flow state machine: runs the steps of one execution path.
 *
 * A worker (worker.c) claims paths and hands each to allma_engine_advance,
 * which runs the path's current step and, while the next one is due at
 * once and needs no network I/O, the following ones: all inside the
 * worker's transaction, so that every step's effects, its history row and
 * the path's new position commit together.
 *
 * One step, in order (allma-semantics.md section 4.4):
 *	1. input: inputMappings evaluated over the context (falling back to the
 *	   runtime state), then rendered literals set by dot path;
 *	2. the handler, chosen by stepType (and moduleIdentifier);
 *	3. outputValidation.requiredFields;
 *	4. outputMappings into the context (default $.steps_output.<step>);
 *	5. transitions: first true condition, else defaultNextStepInstanceId,
 *	   else the path ends; each edge counted against its loop guard.
 * Steps 1-5 run in a subtransaction: any error rolls back the step's own
 * effects (a SQL step's writes, a bound function's) and becomes an Allma
 * error object (errors.c).  Then, in order: a retry (retry.c) re-schedules
 * the same step with a durable due time; a matching onError.catch rule
 * routes to its handler step with the error placed in the context; with
 * continueOnFailure the error object becomes the step's output and the
 * transitions run; onError.fallbackStepInstanceId continues there; else
 * the path fails.
 *
 * User code (SQL steps, bound functions) runs as the role that started the
 * execution, in a security-restricted operation, and GUC changes it makes
 * are undone afterwards.
 *
 * Memory: each step works in a child context that is reset after the step;
 * only the new context, counters and the history record are copied out.
 *
 * IDENTIFICATION
 *	  src/engine.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "common/base64.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/resowner.h"

#include "acl.h"
#include "condition.h"
#include "engine.h"
#include "errors.h"
#include "http.h"
#include "jsonb_util.h"
#include "llm.h"
#include "prompt.h"
#include "secret.h"
#include "secret_use.h"
#include "path.h"
#include "retry.h"
#include "sqlstep.h"
#include "store.h"
#include "template.h"
#include "transform.h"

/* what one attempt of one step produced */
typedef struct StepRun
{
	AllmaPathState *ps;
	AllmaStep  *step;
	Jsonb	   *runtime;		/* built on first use */
	const char *default_error_name;
	MemoryContext pathcxt;		/* outlives the step: fork specs go here */
	bool		forked;			/* the step started a fork */
	bool		io;				/* the step's request is to be sent */
	int64		repoll_ms;		/* POLL_EXTERNAL_API: poll again after this */
	Jsonb	   *details;		/* extra history details of a completed step */

	/* results */
	Jsonb	   *input;
	Jsonb	   *output;
	Jsonb	   *context;
	Jsonb	   *counts;
	char	   *next_step;
	bool		end_flow;
	Jsonb	   *error;
} StepRun;

typedef void (*guarded_fn) (StepRun *run);

/*
 * run_guarded runs fn in a subtransaction.  Returns NULL on success, or the
 * error (copied into the caller's memory context) after rolling back.
 */
static ErrorData *
run_guarded(guarded_fn fn, StepRun *run)
{
	MemoryContext oldcxt = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;
	ErrorData  *edata = NULL;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(oldcxt);

	PG_TRY();
	{
		fn(run);
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcxt);
		CurrentResourceOwner = oldowner;
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(oldcxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcxt);
		CurrentResourceOwner = oldowner;
	}
	PG_END_TRY();

	return edata;
}

static char *
timestamptz_iso(TimestampTz ts)
{
	struct pg_tm tm;
	fsec_t		fsec;


	if (timestamp2tm(ts, NULL, &tm, &fsec, NULL, NULL) != 0)
		return pstrdup("");
	return psprintf("%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
					tm.tm_year, tm.tm_mon, tm.tm_mday,
					tm.tm_hour, tm.tm_min, tm.tm_sec, (int) (fsec / 1000));
}

Jsonb *
allma_runtime_state(AllmaPathState *ps)
{
	Jsonb	   *rs = allma_jsonb_empty_object();

	rs = allma_jsonb_set_key(rs, "flowExecutionId",
							 allma_jsonb_string(DatumGetCString(DirectFunctionCall1(uuid_out,
																					 UUIDPGetDatum(&ps->execution_id)))));
	rs = allma_jsonb_set_key(rs, "flowDefinitionId", allma_jsonb_string(ps->flow->flow_id));
	rs = allma_jsonb_set_key(rs, "flowDefinitionVersion", allma_jsonb_int(ps->flow->version));
	if (ps->step_id)
		rs = allma_jsonb_set_key(rs, "currentStepInstanceId", allma_jsonb_string(ps->step_id));
	if (ps->branch_id)
		rs = allma_jsonb_set_key(rs, "branchId", allma_jsonb_string(ps->branch_id));
	rs = allma_jsonb_set_key(rs, "startTime",
							 allma_jsonb_string(timestamptz_iso(ps->execution_started_at)));
	rs = allma_jsonb_set_key(rs, "status", allma_jsonb_string("RUNNING"));
	return rs;
}

static Jsonb *
runtime_of(StepRun *run)
{
	if (run->runtime == NULL)
		run->runtime = allma_runtime_state(run->ps);
	return run->runtime;
}

/* value at an input-mapping path: the context first, then the runtime state */
static Jsonb *
lookup_context(StepRun *run, const char *path)
{
	Jsonb	   *v = allma_path_get(run->ps->context, path);

	if (v == NULL)
		v = allma_path_get(runtime_of(run), path);
	return v;
}

/* the document templates see: {...context, ...runtimeState, ...stepInput} */
static Jsonb *
template_context(StepRun *run)
{
	return allma_jsonb_concat(allma_jsonb_concat(run->ps->context, runtime_of(run)),
							  run->input);
}

static void
build_input(StepRun *run)
{
	AllmaStep  *step = run->step;
	Jsonb	   *input = allma_jsonb_empty_object();
	ListCell   *lc;

	if (step->input_mappings != NULL)
	{
		List	   *keys = allma_jsonb_object_keys(step->input_mappings);

		foreach(lc, keys)
		{
			char	   *key = lfirst(lc);
			char	   *path = allma_jsonb_get_cstring(step->input_mappings, key);
			char	   *why;
			Jsonb	   *v;

			/*
			 * Like Allma, a source that is not a usable JSONPath (validation
			 * warned about it) yields nothing instead of failing the step.
			 */
			if (path == NULL || !allma_path_check(path, &why))
				continue;
			v = lookup_context(run, path);
			if (v != NULL)
				input = allma_dotpath_set(input, key, v);
		}
	}
	run->input = input;

	if (step->literals != NULL)
	{
		Jsonb	   *rendered = allma_template_render_value(step->literals,
														   template_context(run));
		List	   *keys = allma_jsonb_object_keys(rendered);

		foreach(lc, keys)
		{
			char	   *key = lfirst(lc);

			input = allma_dotpath_set(input, key, allma_jsonb_get(rendered, key));
		}
		run->input = input;
	}
}

/* module input: rendered customConfig with the step input merged over it */
static Jsonb *
module_input(StepRun *run)
{
	Jsonb	   *cfg = run->step->custom_config;

	if (cfg == NULL)
		return run->input;
	cfg = allma_template_render_value(cfg, template_context(run));
	if (!allma_jsonb_is_object(cfg))
		cfg = allma_jsonb_empty_object();
	return allma_jsonb_concat(cfg, run->input);
}

/*
 * enter_user_code switches to the execution's starter role for user code
 * and arms the step's SQL timeout (sqlstep.c); leave_user_code disarms it,
 * switches back and undoes GUC changes.  On error the subtransaction abort
 * restores all three.
 */
typedef struct UserCodeState
{
	Oid			save_userid;
	int			save_sec;
	int			save_nestlevel;
} UserCodeState;

static void
enter_user_code(StepRun *run, UserCodeState *st)
{
	allma_user_code_guard(run->ps->run_as, run->step->id);
	GetUserIdAndSecContext(&st->save_userid, &st->save_sec);
	SetUserIdAndSecContext(run->ps->run_as,
						   st->save_sec | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	st->save_nestlevel = NewGUCNestLevel();
	allma_sql_timeout_begin(run->step->id, run->step->custom_config);
}

static void
leave_user_code(UserCodeState *st)
{
	allma_sql_timeout_end();
	AtEOXact_GUC(false, st->save_nestlevel);
	SetUserIdAndSecContext(st->save_userid, st->save_sec);
}

static void send_to_http_binding(StepRun *run, const char *url, Jsonb *headers, Jsonb *payload);

static Jsonb *
invoke_binding(StepRun *run, const char *key, Jsonb *payload,
			   const char *error_name)
{
	char	   *url = NULL;
	Jsonb	   *headers = NULL;
	char	   *pattern = NULL;
	Oid			handler = allma_binding_lookup(key, &url, &headers, &pattern);
	UserCodeState st;
	Jsonb	   *result;

	if (pattern != NULL)
		allma_acl_use_check(ALLMA_OBJ_MODULE_BINDING, pattern, run->ps->run_as, true, run->step->id);
	if (url != NULL)
	{
		send_to_http_binding(run, url, headers, payload);
		return NULL;
	}
	if (!OidIsValid(handler))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("no handler is bound to module \"%s\"", key),
				 errdetail("Step \"%s\" (%s) dispatches to a module that allma does not provide.",
						   run->step->id, run->step->type_name),
				 errhint("Bind a SQL function with allma_bind_module('%s', 'my_handler(jsonb)'::regprocedure).",
						 key)));
	run->default_error_name = error_name;
	enter_user_code(run, &st);
	result = allma_binding_invoke(handler, payload);
	leave_user_code(&st);
	run->default_error_name = ALLMA_ERR_PERMANENT;
	return result;
}

static Jsonb *
run_sql_step(StepRun *run, bool returns_rows)
{
	UserCodeState st;
	Jsonb	   *result;
	Jsonb	   *config = module_input(run);

	enter_user_code(run, &st);
	result = allma_sqlstep_run(config, run->ps->context, returns_rows);
	leave_user_code(&st);
	return result;
}

static Jsonb *
lambda_payload(StepRun *run, const char *key)
{
	Jsonb	   *tmpl = allma_jsonb_get(run->step->def, "payloadTemplate");
	Jsonb	   *correlation = allma_jsonb_get(runtime_of(run), "flowExecutionId");
	Jsonb	   *payload = allma_jsonb_empty_object();

	if (allma_jsonb_is_object(tmpl))
	{
		List	   *keys = allma_jsonb_object_keys(tmpl);
		ListCell   *lc;

		payload = allma_jsonb_set_key(payload, "correlationId", correlation);
		foreach(lc, keys)
		{
			char	   *k = lfirst(lc);
			char	   *path = allma_jsonb_get_cstring(tmpl, k);
			Jsonb	   *v = path ? allma_path_get(run->ps->context, path) : allma_jsonb_get(tmpl, k);

			if (v != NULL)
				payload = allma_jsonb_set_key(payload, k, v);
		}
		return payload;
	}
	payload = allma_jsonb_set_key(payload, "moduleIdentifier", allma_jsonb_string(key));
	payload = allma_jsonb_set_key(payload, "stepInput", module_input(run));
	payload = allma_jsonb_set_key(payload, "correlationId", correlation);
	return payload;
}


/* ----------------------------------------------------------------
 * PARALLEL_FORK_MANAGER
 *
 * Starting: every item at itemsPath times every branch template whose
 * condition holds becomes an AllmaBranchSpec; store.c inserts them as
 * paths of this execution and the parent path waits.  Joining: when the
 * last branch finishes, the parent is claimed again with joining set and
 * aggregate() builds the step's output from the branch rows with SQL, so
 * the worker never holds every branch result at once.
 * ----------------------------------------------------------------
 */

static Jsonb *
aggregation_config(AllmaStep *step)
{
	Jsonb	   *agg = allma_jsonb_get(step->def, "aggregationConfig");

	return allma_jsonb_is_object(agg) ? agg : allma_jsonb_empty_object();
}

static const char *
aggregation_strategy(Jsonb *agg)
{
	char	   *strategy = allma_jsonb_get_cstring(agg, "strategy");

	return strategy ? strategy : "COLLECT_ARRAY";
}

static Jsonb *
aggregated_output(Jsonb *data)
{
	return allma_jsonb_set_key(NULL, "aggregatedData", data);
}

static Jsonb *
empty_aggregate(Jsonb *agg)
{
	const char *strategy = aggregation_strategy(agg);

	if (strcmp(strategy, "MERGE_OBJECTS") == 0)
		return aggregated_output(allma_jsonb_empty_object());
	if (strcmp(strategy, "SUM") == 0)
		return aggregated_output(allma_jsonb_int(0));
	if (strcmp(strategy, "NONE") == 0)
	{
		Jsonb	   *out = aggregated_output(allma_jsonb_null());

		out = allma_jsonb_set_key(out, "aggregationSkipped", allma_jsonb_bool(true));
		out = allma_jsonb_set_key(out, "branchCount", allma_jsonb_int(0));
		return allma_jsonb_set_key(out, "failedBranchCount", allma_jsonb_int(0));
	}
	return aggregated_output(allma_jsonb_empty_array());
}

/* the branch's overlay: {currentItem} plus its inputMappings and literals */
static Jsonb *
branch_overlay(StepRun *run, Jsonb *branch, Jsonb *item, Jsonb *item_ctx)
{
	Jsonb	   *overlay = allma_jsonb_set_key(NULL, "currentItem", item);
	Jsonb	   *mappings = allma_jsonb_get(branch, "inputMappings");
	Jsonb	   *literals = allma_jsonb_get(branch, "literals");
	ListCell   *lc;

	if (allma_jsonb_is_object(mappings))
	{
		List	   *keys = allma_jsonb_object_keys(mappings);

		foreach(lc, keys)
		{
			char	   *key = lfirst(lc);
			char	   *path = allma_jsonb_get_cstring(mappings, key);
			Jsonb	   *v = path ? allma_path_get(item_ctx, path) : NULL;

			if (v != NULL)
				overlay = allma_dotpath_set(overlay, key, v);
		}
	}
	if (allma_jsonb_is_object(literals))
	{
		Jsonb	   *rendered = allma_template_render_value(literals, item_ctx);
		List	   *keys = allma_jsonb_object_keys(rendered);

		foreach(lc, keys)
		{
			char	   *key = lfirst(lc);

			overlay = allma_dotpath_set(overlay, key, allma_jsonb_get(rendered, key));
		}
	}
	return overlay;
}

/* branches are inserted in chunks of this many, so memory stays bounded */
#define FORK_CHUNK 5000

static void
add_branch(AllmaPathState *ps, AllmaForkSpec *spec, const char *branch_id, int ordinal,
		   int item_index, const char *step_id, Jsonb *overlay, int64 delay_ms)
{
	AllmaBranchSpec *b;
	MemoryContext oldcxt;

	if (spec->nbranches == spec->capacity)
	{
		allma_store_insert_branches(&ps->execution_id, ps->path_id, spec);
		MemoryContextReset(spec->chunkcxt);
		spec->nbranches = 0;
	}
	oldcxt = MemoryContextSwitchTo(spec->chunkcxt);
	b = &spec->branches[spec->nbranches++];
	spec->ntotal++;
	b->branch_id = pstrdup(branch_id);
	b->ordinal = ordinal;
	b->item_index = item_index;
	b->step_id = pstrdup(step_id);
	b->overlay = (Jsonb *) palloc(VARSIZE(overlay));
	memcpy(b->overlay, overlay, VARSIZE(overlay));
	b->delay_ms = delay_ms;
	MemoryContextSwitchTo(oldcxt);
}

/*
 * start_fork plans the branches of a fork.  Returns the step's output when
 * there is nothing to run (no item or no matching branch), else NULL with
 * run->forked set and the spec in run->ps->fork.
 */
/*
 * fork_items: the items at itemsPath as a list of Jsonb; NIL for none.  A
 * non-array value is one item (Allma).
 */
static int
fork_item_count(Jsonb *items)
{
	JsonbValue	v;

	if (items == NULL || (allma_jsonb_scalar(items, &v) && v.type == jbvNull))
		return 0;
	if (allma_jsonb_is_array(items))
		return JB_ROOT_COUNT(items);
	return 1;
}

/*
 * start_fork plans and inserts the branches of a fork, a chunk at a time,
 * walking the item array without copying it.  Returns the step's output
 * when there is nothing to run (no item or no matching branch), else NULL
 * with run->forked set and the fork in run->ps->fork (store.c inserts its
 * row when the pass ends).
 */
static Jsonb *
start_fork(StepRun *run)
{
	AllmaStep  *step = run->step;
	Jsonb	   *agg = aggregation_config(step);
	char	   *items_path = allma_jsonb_get_cstring(step->def, "itemsPath");
	Jsonb	   *items = items_path ? allma_path_get(run->ps->context, items_path) : NULL;
	int			nitems = fork_item_count(items);
	List	   *templates = allma_jsonb_array_elements(allma_jsonb_get(step->def, "parallelBranches"));
	Jsonb	   *base = run->ps->context;
	double		max_concurrency = 0;
	AllmaForkSpec *spec;
	MemoryContext oldcxt;
	MemoryContext itemcxt;
	JsonbIterator *it = NULL;
	JsonbValue	v;
	JsonbIteratorToken tok;

	if ((int64) nitems * list_length(templates) > allma_max_fork_branches)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("fork step \"%s\" would start up to %lld branches, more than allma.max_fork_branches (%d)",
						step->id, (long long) nitems * list_length(templates),
						allma_max_fork_branches),
				 errhint("Split the work, or raise allma.max_fork_branches.")));

	/* the item list is not copied into the branches' shared context */
	if (items_path != NULL && strncmp(items_path, "$.", 2) == 0 &&
		strpbrk(items_path + 2, ".[*?'\" ") == NULL)
		base = allma_jsonb_delete_key(base, items_path + 2);

	(void) allma_jsonb_get_number(agg, "maxConcurrency", &max_concurrency);

	oldcxt = MemoryContextSwitchTo(run->pathcxt);
	spec = palloc0(sizeof(AllmaForkSpec));
	spec->step_id = pstrdup(step->id);
	spec->base = (Jsonb *) palloc(VARSIZE(base));
	memcpy(spec->base, base, VARSIZE(base));
	spec->max_concurrency = (int32) Max(max_concurrency, 0);
	spec->capacity = FORK_CHUNK;
	spec->branches = palloc(sizeof(AllmaBranchSpec) * spec->capacity);
	spec->chunkcxt = AllocSetContextCreate(run->pathcxt, "allma fork chunk",
										   ALLOCSET_DEFAULT_SIZES);
	MemoryContextSwitchTo(oldcxt);

	itemcxt = AllocSetContextCreate(CurrentMemoryContext, "allma fork item",
									ALLOCSET_DEFAULT_SIZES);
	if (nitems > 0 && allma_jsonb_is_array(items))
		it = JsonbIteratorInit(&items->root);

	for (int item_index = 0; item_index < nitems; item_index++)
	{
		Jsonb	   *item;
		Jsonb	   *item_ctx;
		ListCell   *lc2;
		int			ordinal = 0;

		oldcxt = MemoryContextSwitchTo(itemcxt);
		if (it == NULL)
			item = items;
		else
		{
			/* next element of the array (containers come back whole) */
			while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_ELEM)
				Assert(tok != WJB_DONE);
			item = JsonbValueToJsonb(&v);
		}
		item_ctx = allma_jsonb_set_key(base, "currentItem", item);
		foreach(lc2, templates)
		{
			Jsonb	   *branch = lfirst(lc2);
			char	   *cond = allma_jsonb_get_cstring(branch, "condition");
			char	   *branch_id = allma_jsonb_get_cstring(branch, "branchId");
			char	   *first = allma_jsonb_get_cstring(branch, "stepInstanceId");

			if (first != NULL && (cond == NULL || allma_condition_eval(cond, item_ctx)))
				add_branch(run->ps, spec, branch_id ? branch_id : first, ordinal, item_index,
						   first, branch_overlay(run, branch, item, item_ctx),
						   allma_step_delay_ms(allma_flow_step(run->ps->flow, first), true));
			ordinal++;
		}
		MemoryContextSwitchTo(oldcxt);
		/* the iterator's state lives in the caller's context, not itemcxt */
		MemoryContextReset(itemcxt);
	}
	MemoryContextDelete(itemcxt);

	if (spec->ntotal == 0)
		return empty_aggregate(agg);

	/* the last chunk */
	if (spec->nbranches > 0)
		allma_store_insert_branches(&run->ps->execution_id, run->ps->path_id, spec);
	MemoryContextDelete(spec->chunkcxt);
	spec->chunkcxt = NULL;
	spec->nbranches = 0;
	spec->branches = NULL;

	run->forked = true;
	run->ps->fork = spec;
	return NULL;
}

static Jsonb *
spi_jsonb(const char *sql, AllmaPathState *ps, Jsonb *arg3)
{
	Oid			types[3] = {UUIDOID, INT8OID, JSONBOID};
	Datum		values[3];
	bool		isnull;
	Datum		d;
	Jsonb	   *result = NULL;
	MemoryContext outer = CurrentMemoryContext;

	values[0] = UUIDPGetDatum(&ps->execution_id);
	values[1] = Int64GetDatum(ps->path_id);
	values[2] = arg3 ? JsonbPGetDatum(arg3) : (Datum) 0;
	/*
	 * Not read-only: that takes a fresh snapshot.  The parent path may have
	 * been claimed through FOR UPDATE after its wake-up committed later than
	 * this pass's first snapshot, which would not show the last branches.
	 */
	SPI_connect();
	if (SPI_execute_with_args(sql, arg3 ? 3 : 2, types, values, NULL, false, 1) != SPI_OK_SELECT ||
		SPI_processed != 1)
		elog(ERROR, "allma: fork aggregation query failed");
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	if (!isnull)
	{
		MemoryContext spicxt = MemoryContextSwitchTo(outer);

		result = DatumGetJsonbPCopy(d);
		MemoryContextSwitchTo(spicxt);
	}
	SPI_finish();
	return result;
}

#define BRANCHES_OF_FORK \
	" FROM allma.execution_paths WHERE execution_id = $1 AND parent_path_id = $2"

/*
 * aggregate joins a finished fork: counts, failure policy, then the
 * strategy's aggregate, all computed by SQL over the branch rows.
 */
static Jsonb *
aggregate(StepRun *run)
{
	AllmaPathState *ps = run->ps;
	Jsonb	   *agg = aggregation_config(run->step);
	const char *strategy = aggregation_strategy(agg);
	Jsonb	   *counts;
	double		total = 0,
				failed = 0,
				pct = -1,
				tolerated_count = -1;
	bool		fail_on_error = true;
	bool		tolerated;
	Jsonb	   *data;

	ps->joined = true;
	counts = spi_jsonb("SELECT jsonb_build_object('total', count(*), "
					   "'failed', count(*) FILTER (WHERE status = 'FAILED'))"
					   BRANCHES_OF_FORK, ps, NULL);
	(void) allma_jsonb_get_number(counts, "total", &total);
	(void) allma_jsonb_get_number(counts, "failed", &failed);
	(void) allma_jsonb_get_bool(agg, "failOnBranchError", &fail_on_error);
	(void) allma_jsonb_get_number(agg, "toleratedFailurePercentage", &pct);
	(void) allma_jsonb_get_number(agg, "toleratedFailureCount", &tolerated_count);

	tolerated = failed == 0 || !fail_on_error ||
		(pct >= 0 && failed * 100.0 <= pct * total) ||
		(tolerated_count >= 0 && failed <= tolerated_count);

	if (!tolerated)
	{
		Jsonb	   *errors = spi_jsonb("SELECT jsonb_agg(jsonb_build_object('branchId', branch_id, "
									   "'itemIndex', item_index, 'error', error) ORDER BY item_index, branch_ordinal) "
									   "FROM (SELECT * " BRANCHES_OF_FORK " AND status = 'FAILED' "
									   "ORDER BY item_index, branch_ordinal LIMIT 100) f", ps, NULL);
		Jsonb	   *first = allma_jsonb_get(allma_jsonb_array_element(errors, 0), "error");
		Jsonb	   *details = allma_jsonb_set_key(NULL, "branchErrors", errors);
		Jsonb	   *detail;

		details = allma_jsonb_set_key(details, "branchCount", allma_jsonb_int((int64) total));
		details = allma_jsonb_set_key(details, "failedBranchCount", allma_jsonb_int((int64) failed));
		detail = allma_jsonb_set_key(NULL, "errorName", allma_jsonb_string(ALLMA_ERR_PARALLEL));
		detail = allma_jsonb_set_key(detail, "errorDetails", details);
		ereport(ERROR,
				(errcode(ERRCODE_ALLMA_PERMANENT_STEP_ERROR),
				 errmsg("One or more parallel branches failed. First error: %s",
						first ? allma_jsonb_to_display_text(allma_jsonb_get(first, "errorMessage")) : "unknown"),
				 errdetail_internal("%s", allma_jsonb_to_cstring(detail))));
	}

	if (strcmp(strategy, "NONE") == 0)
	{
		Jsonb	   *out = aggregated_output(allma_jsonb_null());

		out = allma_jsonb_set_key(out, "aggregationSkipped", allma_jsonb_bool(true));
		out = allma_jsonb_set_key(out, "branchCount", allma_jsonb_int((int64) total));
		return allma_jsonb_set_key(out, "failedBranchCount", allma_jsonb_int((int64) failed));
	}
	if (strcmp(strategy, "SUM") == 0)
		data = spi_jsonb("SELECT to_jsonb(coalesce(sum((result #>> '{}')::numeric) "
						 "FILTER (WHERE jsonb_typeof(result) = 'number'), 0))"
						 BRANCHES_OF_FORK " AND status = 'DONE'", ps, NULL);
	else if (strcmp(strategy, "MERGE_OBJECTS") == 0)
	{
		data = spi_jsonb("SELECT coalesce(jsonb_object_agg(e.key, e.value ORDER BY p.item_index, p.branch_ordinal), '{}') "
						 "FROM allma.execution_paths p, jsonb_each(p.result) e "
						 "WHERE p.execution_id = $1 AND p.parent_path_id = $2 AND p.status = 'DONE' "
						 "AND jsonb_typeof(p.result) = 'object'", ps, NULL);
		if (failed > 0)
			data = allma_jsonb_set_key(data, "_branchErrors",
									   spi_jsonb("SELECT jsonb_agg(jsonb_build_object('branchId', branch_id, "
												 "'error', error) ORDER BY item_index, branch_ordinal)"
												 BRANCHES_OF_FORK " AND status = 'FAILED'", ps, NULL));
	}
	else
		/* COLLECT_ARRAY (and CUSTOM_MODULE, which Allma never implemented) */
		data = spi_jsonb("SELECT coalesce(jsonb_agg(CASE WHEN status = 'DONE' THEN result "
						 "ELSE jsonb_build_object('branchId', branch_id, 'error', error) END "
						 "ORDER BY item_index, branch_ordinal), '[]')"
						 BRANCHES_OF_FORK, ps, NULL);
	return aggregated_output(data ? data : allma_jsonb_null());
}

/*
 * branch_result: what a finished branch contributes: its context's
 * "output" key (Allma), or else its last step's output, reduced by the
 * fork's aggregationConfig.dataPath.
 */
static Jsonb *
branch_result(AllmaPathState *ps)
{
	Jsonb	   *result = allma_jsonb_get(ps->context, "output");
	AllmaStep  *fork = allma_flow_step(ps->flow, ps->fork_step_id);
	char	   *data_path;

	if (result == NULL)
		result = ps->last_output ? ps->last_output : allma_jsonb_null();
	if (fork == NULL)
		return result;
	data_path = allma_jsonb_get_cstring(aggregation_config(fork), "dataPath");
	if (data_path != NULL && strcmp(data_path, "$") != 0 && strcmp(data_path, "$.") != 0 &&
		strcmp(data_path, "$.output") != 0)
	{
		Jsonb	   *v = allma_path_get(result, data_path);

		if (v == NULL && strncmp(data_path, "$.output", 8) == 0)
			v = allma_path_get(allma_jsonb_set_key(NULL, "output", result), data_path);
		result = v ? v : allma_jsonb_null();
	}
	return result;
}


/* ----------------------------------------------------------------
 * API_CALL
 *
 * A step that talks HTTP runs in two passes.  The first builds the request
 * (templates, mappings) and leaves the path INFLIGHT with the request
 * stored in its row; the worker sends it once that pass has committed, with
 * no transaction open.  When the response arrives the worker claims the
 * path again with ps->response set, and the step completes from it.
 * ----------------------------------------------------------------
 */

/*
 * mapping_values: Allma's TemplateContextMappingItem objects
 * ({sourceJsonPath, formatAs RAW|JSON}) evaluated over ctx, as an object
 */
static Jsonb *
mapping_values(Jsonb *mappings, Jsonb *ctx)
{
	Jsonb	   *values = allma_jsonb_empty_object();
	List	   *keys = allma_jsonb_object_keys(mappings);
	ListCell   *lc;

	foreach(lc, keys)
	{
		char	   *key = lfirst(lc);
		Jsonb	   *item = allma_jsonb_get(mappings, key);
		char	   *path = allma_jsonb_is_object(item) ?
			allma_jsonb_get_cstring(item, "sourceJsonPath") :
			allma_jsonb_get_cstring(mappings, key);
		char	   *format = allma_jsonb_is_object(item) ? allma_jsonb_get_cstring(item, "formatAs") : NULL;
		Jsonb	   *v = path ? allma_path_get(ctx, path) : NULL;

		if (v == NULL)
			continue;
		if (format != NULL && strcmp(format, "JSON") == 0)
			v = allma_jsonb_string(allma_jsonb_to_cstring(v));
		values = allma_jsonb_set_key(values, key, v);
	}
	return values;
}

static char *
idempotency_key(AllmaPathState *ps, AllmaStep *step)
{
	char	   *exec = DatumGetCString(DirectFunctionCall1(uuid_out,
														   UUIDPGetDatum(&ps->execution_id)));

	if (ps->is_branch)
		return psprintf("%s/%lld:%s/%d", exec, (long long) ps->path_id, step->id, ps->attempt);
	return psprintf("%s/%s/%d", exec, step->id, ps->attempt);
}


/*
 * Secrets in headers: "{{secrets.NAME}}" in header values of a stored
 * definition becomes a mark before templates are rendered, and each mark
 * becomes the secret's value only in the headers that are sent, once the
 * use is allowed; the stored request says "[redacted]" (secret_use.c).
 */

static void set_io_request(StepRun *run, Jsonb *req, Jsonb *headers);

/*
 * leave_api_request leaves the request an API_CALL-shaped definition asks
 * for (the step's, POLL_EXTERNAL_API's apiCallDefinition, or the one made
 * for an HTTP binding, which sends body_override and is marked "binding")
 * for the worker to send.
 */
static void
leave_api_request(StepRun *run, Jsonb *def, Jsonb *body_override, bool binding)
{
	AllmaStep  *step = run->step;
	Jsonb	   *tctx = template_context(run);
	Jsonb	   *url_def = allma_jsonb_get(def, "apiUrlTemplate");
	char	   *url;
	char	   *method = allma_jsonb_get_cstring(def, "apiHttpMethod");
	Jsonb	   *headers = allma_jsonb_empty_object();
	Jsonb	   *static_headers = allma_jsonb_get(def, "apiStaticHeaders");
	Jsonb	   *header_paths = allma_jsonb_get(def, "apiHeadersTemplate");
	Jsonb	   *body_def = allma_jsonb_get(def, "requestBodyTemplate");
	Jsonb	   *cfg = step->custom_config ? allma_template_render_value(step->custom_config, tctx) : NULL;
	char	   *body_path = cfg ? allma_jsonb_get_cstring(cfg, "requestBodyPath") : NULL;
	Jsonb	   *body = NULL;
	double		timeout_ms = allma_http_timeout_ms;
	Jsonb	   *req = allma_jsonb_empty_object();
	char	   *error;

	/* the URL: a template string, or {template, contextMappings} */
	if (allma_jsonb_is_object(url_def))
	{
		char	   *tmpl = allma_jsonb_get_cstring(url_def, "template");
		Jsonb	   *mappings = allma_jsonb_get(url_def, "contextMappings");

		if (allma_jsonb_is_object(mappings))
			tctx = allma_jsonb_concat(tctx, mapping_values(mappings, tctx));
		url = tmpl ? allma_template_render(tmpl, tctx) : pstrdup("");
	}
	else
	{
		char	   *tmpl = allma_jsonb_get_cstring(def, "apiUrlTemplate");

		url = tmpl ? allma_template_render(tmpl, tctx) : pstrdup("");
	}
	if (!allma_http_check_url(url, &error))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("step \"%s\" has an invalid URL \"%s\": %s", step->id, url,
						error ? error : "not an http or https URL")));

	if (allma_jsonb_is_object(static_headers))
		headers = allma_jsonb_concat(headers,
									 allma_secret_render_headers(static_headers, tctx));
	if (allma_jsonb_is_object(header_paths))
	{
		List	   *keys = allma_jsonb_object_keys(header_paths);
		ListCell   *lc;

		foreach(lc, keys)
		{
			char	   *name = lfirst(lc);
			char	   *path = allma_jsonb_get_cstring(header_paths, name);
			Jsonb	   *v = path ? (path[0] == '$' ? allma_path_get(run->ps->context, path) :
									allma_jsonb_string(allma_template_render(path, tctx))) : NULL;

			if (v != NULL)
				headers = allma_jsonb_set_key(headers, name,
											  allma_jsonb_string(allma_jsonb_to_display_text(v)));
		}
	}

	if (body_override != NULL)
		body = body_override;
	else if (allma_jsonb_is_object(body_def))
		body = mapping_values(body_def, tctx);
	else if (body_path != NULL)
		body = allma_path_get(run->ps->context, body_path);
	else if (method != NULL && (pg_strcasecmp(method, "POST") == 0 ||
								pg_strcasecmp(method, "PUT") == 0 ||
								pg_strcasecmp(method, "PATCH") == 0))
		body = run->input;

	if (cfg != NULL)
		(void) allma_jsonb_get_number(cfg, "timeoutMs", &timeout_ms);

	req = allma_jsonb_set_key(req, "method", allma_jsonb_string(method ? method : "GET"));
	req = allma_jsonb_set_key(req, "url", allma_jsonb_string(url));
	if (body != NULL)
	{
		if (!allma_jsonb_has_key(headers, "Content-Type") && !allma_jsonb_has_key(headers, "content-type"))
			headers = allma_jsonb_set_key(headers, "Content-Type", allma_jsonb_string("application/json"));
		req = allma_jsonb_set_key(req, "body", allma_jsonb_string(allma_jsonb_to_cstring(body)));
	}
	req = allma_jsonb_set_key(req, "timeoutMs", allma_jsonb_int((int64) timeout_ms));
	req = allma_jsonb_set_key(req, "idempotencyKey",
							  allma_jsonb_string(idempotency_key(run->ps, step)));
	if (binding)
		req = allma_jsonb_set_key(req, "binding", allma_jsonb_bool(true));
	set_io_request(run, req, headers);
}

/* raise_http_error: an Allma error with details, through the DETAIL JSON convention */
static void
raise_http_error(const char *name, const char *message, Jsonb *details)
{
	Jsonb	   *detail = allma_jsonb_set_key(NULL, "errorName", allma_jsonb_string(name));

	/* a server may echo what it was sent, credentials included */
	message = allma_secret_redact(message);
	detail = allma_jsonb_set_key(detail, "errorDetails", allma_secret_redact_jsonb(details));
	ereport(ERROR,
			(errcode(ERRCODE_ALLMA_PERMANENT_STEP_ERROR),
			 errmsg_internal("%s", message),
			 errdetail_internal("%s", allma_jsonb_to_cstring(detail))));
}

/*
 * raise_for_transfer throws the Allma error of a failed transfer or an
 * unacceptable status: refused destinations and oversize bodies are
 * permanent, other transfer failures (timeouts, connection errors) and
 * 429/5xx transient, other statuses from "bad_status" on permanent.
 * Returns the details object (status, url) when the response is usable.
 * "what" prefixes the messages ("MCP call"); "" for API_CALL's own.
 */
static Jsonb *
raise_for_transfer(AllmaHttpCompletion *c, int bad_status, const char *what)
{
	Jsonb	   *details = allma_jsonb_empty_object();

	details = allma_jsonb_set_key(details, "status", allma_jsonb_int(c->status));
	details = allma_jsonb_set_key(details, "url", allma_jsonb_string(c->effective_url ? c->effective_url : ""));
	if (c->retry_after_ms >= 0)
		details = allma_jsonb_set_key(details, "retryAfterMs", allma_jsonb_int(c->retry_after_ms));
	if (c->error != NULL)
	{
		details = allma_jsonb_set_key(details, "curlCode", allma_jsonb_int(c->curl_code));
		details = allma_jsonb_set_key(details, "timedOut", allma_jsonb_bool(c->timed_out));
		if (c->refused_destination)
			raise_http_error(ALLMA_ERR_PERMANENT,
							 psprintf("%s%srequest refused: %s", what, *what ? " " : "", c->error),
							 details);
		if (c->too_large)
			raise_http_error(ALLMA_ERR_PERMANENT,
							 psprintf("%s%sresponse too large: %s", what, *what ? " " : "", c->error),
							 details);
		raise_http_error(ALLMA_ERR_TRANSIENT,
						 *what ? psprintf("%s request failed: %s", what, c->error) : c->error,
						 details);
	}
	if (c->status >= bad_status || c->status < 200)
	{
		/* an excerpt of a text body helps; binary bodies are left out */
		if (c->body_len > 0 && memchr(c->body, '\0', c->body_len) == NULL &&
			pg_verifymbstr(c->body, c->body_len, true))
			details = allma_jsonb_set_key(details, "body",
										  allma_jsonb_string_len(c->body,
																 pg_mbcliplen(c->body, c->body_len, 1000)));
		raise_http_error(c->status == 429 || c->status >= 500 ? ALLMA_ERR_TRANSIENT : ALLMA_ERR_PERMANENT,
						 psprintf("%s%sHTTP %d from %s", what, *what ? " failed: " : "", c->status,
								  c->effective_url ? c->effective_url : "server"),
						 details);
	}
	return details;
}

/* parse_json_or_null: s parsed as JSON, or NULL when it is not JSON */
static Jsonb *
parse_json_or_null(const char *s)
{
	MemoryContext cxt = CurrentMemoryContext;
	Jsonb	   *volatile result = NULL;

	PG_TRY();
	{
		result = allma_jsonb_parse(s);
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cxt);
		FlushErrorState();
		result = NULL;
	}
	PG_END_TRY();
	return result;
}

/* api_output: the step output for a response, or the Allma error it means */
static Jsonb *
api_output(StepRun *run)
{
	AllmaHttpCompletion *c = run->ps->response;
	Jsonb	   *data;
	Jsonb	   *out;

	(void) raise_for_transfer(c, 400, "");

	/* JSON bodies are parsed, anything else is text */
	data = c->body_len > 0 ? parse_json_or_null(c->body) : NULL;
	if (data == NULL)
		data = allma_jsonb_string_len(c->body, c->body_len);
	out = allma_jsonb_set_key(NULL, "status", allma_jsonb_int(c->status));
	out = allma_jsonb_set_key(out, "headers", c->headers ? c->headers : allma_jsonb_empty_object());
	return allma_jsonb_set_key(out, "data", data);
}

/*
 * send_to_http_binding: a module or Lambda ARN bound to an HTTP endpoint
 * (allma_bind_module_http) is called like an API_CALL that POSTs the module
 * input as JSON, with the binding's headers ({{secrets.NAME}} allowed).
 * The step's output is the response's JSON body (or its text); errors are
 * classified like API_CALL's.  See http_binding_output.
 */
static void
send_to_http_binding(StepRun *run, const char *url, Jsonb *headers, Jsonb *payload)
{
	Jsonb	   *def = allma_jsonb_empty_object();

	def = allma_jsonb_set_key(def, "apiUrlTemplate", allma_jsonb_string(url));
	def = allma_jsonb_set_key(def, "apiHttpMethod", allma_jsonb_string("POST"));
	if (headers != NULL)
		def = allma_jsonb_set_key(def, "apiStaticHeaders", headers);
	leave_api_request(run, def, payload, true);
}

/* http_binding_output: the output of a step whose binding is an HTTP endpoint */
static Jsonb *
http_binding_output(StepRun *run)
{
	AllmaHttpCompletion *c = run->ps->response;
	Jsonb	   *data;

	(void) raise_for_transfer(c, 400, "");
	data = c->body_len > 0 ? parse_json_or_null(c->body) : NULL;
	return data ? data : allma_jsonb_string_len(c->body, c->body_len);
}

/* ----------------------------------------------------------------
 * MCP_CALL and FILE_DOWNLOAD
 *
 * Both run like API_CALL: the request is built in one pass and stored in
 * the path, sent by the worker after commit, and the step completes from
 * the response in a later pass.
 *
 * MCP_CALL posts a JSON-RPC 2.0 "tools/call" message (the tool's arguments
 * are the step input) to the server of a connection stored in
 * allma.mcp_connections, over MCP's streamable-HTTP transport used
 * statelessly: no "initialize" handshake, and an Mcp-Session-Id the server
 * returns is not used.  The reply may be application/json or a
 * text/event-stream whose events carry JSON-RPC messages.
 *
 * FILE_DOWNLOAD fetches a URL and stores the body, bytes as they came, in
 * allma.files (keyed by execution); the output points there.
 * ----------------------------------------------------------------
 */

static void raise_config_error(const char *message);
static Jsonb *copy_jsonb(Jsonb *jb);


/*
 * mcp_connection reads connection "id": its URL and the headers to send,
 * with a bearer secret turned into an Authorization header that refers to
 * the secret by name.  false when there is no such connection.
 */
static bool
mcp_connection(const char *id, char **url, Jsonb **headers, char **session)
{
	Oid			types[1] = {TEXTOID};
	Datum		values[1];
	MemoryContext outer = CurrentMemoryContext;
	bool		found = false;

	values[0] = CStringGetTextDatum(id);
	SPI_connect();
	if (SPI_execute_with_args("SELECT url, headers, bearer_secret, session_id FROM allma.mcp_connections WHERE id = $1",
							  1, types, values, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "allma: could not read allma.mcp_connections");
	if (SPI_processed == 1)
	{
		HeapTuple	tup = SPI_tuptable->vals[0];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		MemoryContext spicxt = MemoryContextSwitchTo(outer);
		bool		isnull;
		Datum		d = SPI_getbinval(tup, desc, 2, &isnull);
		char	   *bearer = SPI_getvalue(tup, desc, 3);

		*url = SPI_getvalue(tup, desc, 1);
		*session = SPI_getvalue(tup, desc, 4);
		*headers = isnull ? allma_jsonb_empty_object() : DatumGetJsonbPCopy(d);
		if (bearer != NULL)
			*headers = allma_jsonb_set_key(*headers, "Authorization",
										   allma_jsonb_string(psprintf("Bearer " ALLMA_SECRET_REF_PREFIX "%s" ALLMA_SECRET_REF_SUFFIX, bearer)));
		MemoryContextSwitchTo(spicxt);
		found = true;
	}
	SPI_finish();
	return found;
}

/* step_secret_use: who uses a secret in this step, sent to url */
static AllmaSecretUse
step_secret_use(StepRun *run, const char *url)
{
	AllmaSecretUse use = {run->ps->run_as, run->ps->flow->flow_id, run->ps->flow->version, url};

	return use;
}

/*
 * set_io_request stores req as the path's request to send, and the headers
 * with secrets resolved, when there are any, as the ones really sent.
 * headers may contain secret marks (allma_secret_mark_refs); req gets them
 * redacted, the headers sent get the values if the step may use them.
 */
static void
set_io_request(StepRun *run, Jsonb *req, Jsonb *headers)
{
	bool		any = false;
	Jsonb	   *sent = NULL;
	MemoryContext oldcxt;
	AllmaSecretUse use = step_secret_use(run, allma_jsonb_get_cstring(req, "url"));

	req = allma_jsonb_set_key(req, "headers", allma_secret_resolve_headers(headers, NULL, &any));
	if (any)
		sent = allma_secret_resolve_headers(headers, &use, &any);
	oldcxt = MemoryContextSwitchTo(run->pathcxt);
	run->ps->io_request = copy_jsonb(req);
	run->ps->io_send_headers = copy_jsonb(sent);
	MemoryContextSwitchTo(oldcxt);
	run->io = true;
}

/* step_timeout_ms: customConfig.timeoutMs (rendered), else allma.http_timeout */
static int64
step_timeout_ms(StepRun *run)
{
	double		timeout_ms = allma_http_timeout_ms;

	if (run->step->custom_config != NULL)
		(void) allma_jsonb_get_number(allma_template_render_value(run->step->custom_config,
																  template_context(run)),
									  "timeoutMs", &timeout_ms);
	return (int64) timeout_ms;
}

/* the MCP protocol revision allma speaks (streamable HTTP) */
#define MCP_PROTOCOL_VERSION "2025-03-26"

/*
 * build_mcp_request leaves the step's next MCP request: the tools/call
 * (phase NULL), or, while it opens a session, "initialize" or the
 * "initialized" notification.  session: the Mcp-Session-Id to send (NULL:
 * the one stored with the connection, if any); after_init marks a call
 * made after opening a session, which does not open another.  An unknown
 * connection is a PermanentStepError naming the step.
 */
static void
build_mcp_request(StepRun *run, const char *phase, const char *session, bool after_init)
{
	AllmaStep  *step = run->step;
	char	   *conn_id = allma_jsonb_get_cstring(step->def, "mcpConnectionId");
	char	   *tool = allma_jsonb_get_cstring(step->def, "toolName");
	char	   *key = idempotency_key(run->ps, step);
	char	   *url;
	char	   *error;
	char	   *stored_session = NULL;
	Jsonb	   *conn_headers;
	Jsonb	   *headers = allma_jsonb_empty_object();
	Jsonb	   *params;
	Jsonb	   *msg = allma_jsonb_empty_object();
	Jsonb	   *req = allma_jsonb_empty_object();
	ListCell   *lc;

	if (conn_id == NULL || tool == NULL)
		raise_config_error(psprintf("MCP_CALL step \"%s\" needs mcpConnectionId and toolName", step->id));
	if (!mcp_connection(conn_id, &url, &conn_headers, &stored_session))
		ereport(ERROR,
				(errcode(ERRCODE_ALLMA_PERMANENT_STEP_ERROR),
				 errmsg("MCP_CALL step \"%s\" uses MCP connection \"%s\", which does not exist",
						step->id, conn_id),
				 errhint("Create it with allma_create_mcp_connection.")));
	allma_acl_use_check(ALLMA_OBJ_MCP_CONNECTION, conn_id, run->ps->run_as, true, step->id);
	if (!allma_http_check_url(url, &error))
		raise_config_error(psprintf("MCP connection \"%s\" has an invalid URL: %s", conn_id,
									error ? error : "not an http or https URL"));

	/* the connection's headers; the transport's own two are ours */
	foreach(lc, allma_jsonb_object_keys(conn_headers))
	{
		char	   *name = lfirst(lc);
		char	   *value;

		if (pg_strcasecmp(name, "Content-Type") == 0 || pg_strcasecmp(name, "Accept") == 0)
			continue;
		value = allma_jsonb_to_display_text(allma_jsonb_get(conn_headers, name));
		headers = allma_jsonb_set_key(headers, name, allma_jsonb_string(allma_secret_mark_refs(value)));
	}
	headers = allma_jsonb_set_key(headers, "Content-Type", allma_jsonb_string("application/json"));
	headers = allma_jsonb_set_key(headers, "Accept",
								  allma_jsonb_string("application/json, text/event-stream"));

	/* a session the server gave (the initialize phase starts a new one) */
	if (session == NULL && phase == NULL)
		session = stored_session;
	if (session != NULL && (phase == NULL || strcmp(phase, "initialize") != 0))
	{
		headers = allma_jsonb_set_key(headers, "Mcp-Session-Id", allma_jsonb_string(session));
		headers = allma_jsonb_set_key(headers, "MCP-Protocol-Version",
									  allma_jsonb_string(MCP_PROTOCOL_VERSION));
	}

	msg = allma_jsonb_set_key(msg, "jsonrpc", allma_jsonb_string("2.0"));
	if (phase == NULL)
	{
		params = allma_jsonb_set_key(NULL, "name", allma_jsonb_string(tool));
		params = allma_jsonb_set_key(params, "arguments", run->input);
		msg = allma_jsonb_set_key(msg, "id", allma_jsonb_string(key));
		msg = allma_jsonb_set_key(msg, "method", allma_jsonb_string("tools/call"));
		msg = allma_jsonb_set_key(msg, "params", params);
	}
	else if (strcmp(phase, "initialize") == 0)
	{
		Jsonb	   *client = allma_jsonb_set_key(NULL, "name", allma_jsonb_string("allma"));

		client = allma_jsonb_set_key(client, "version", allma_jsonb_string(ALLMA_VERSION));
		params = allma_jsonb_set_key(NULL, "protocolVersion", allma_jsonb_string(MCP_PROTOCOL_VERSION));
		params = allma_jsonb_set_key(params, "capabilities", allma_jsonb_empty_object());
		params = allma_jsonb_set_key(params, "clientInfo", client);
		msg = allma_jsonb_set_key(msg, "id", allma_jsonb_string(psprintf("%s/initialize", key)));
		msg = allma_jsonb_set_key(msg, "method", allma_jsonb_string("initialize"));
		msg = allma_jsonb_set_key(msg, "params", params);
	}
	else
		msg = allma_jsonb_set_key(msg, "method", allma_jsonb_string("notifications/initialized"));

	req = allma_jsonb_set_key(req, "method", allma_jsonb_string("POST"));
	req = allma_jsonb_set_key(req, "url", allma_jsonb_string(url));
	req = allma_jsonb_set_key(req, "body", allma_jsonb_string(allma_jsonb_to_cstring(msg)));
	req = allma_jsonb_set_key(req, "timeoutMs", allma_jsonb_int(step_timeout_ms(run)));
	req = allma_jsonb_set_key(req, "idempotencyKey", allma_jsonb_string(key));
	req = allma_jsonb_set_key(req, "mcpConnectionId", allma_jsonb_string(conn_id));
	if (phase != NULL)
		req = allma_jsonb_set_key(req, "mcpPhase", allma_jsonb_string(phase));
	if (after_init)
		req = allma_jsonb_set_key(req, "mcpInitialized", allma_jsonb_bool(true));
	set_io_request(run, req, headers);
}

/* store_mcp_session remembers (or, with NULL, forgets) a connection's session */
static void
store_mcp_session(const char *conn_id, const char *session)
{
	Oid			types[2] = {TEXTOID, TEXTOID};
	Datum		values[2];
	char		nulls[2] = {' ', session ? ' ' : 'n'};

	values[0] = CStringGetTextDatum(conn_id);
	values[1] = session ? CStringGetTextDatum(session) : (Datum) 0;
	SPI_connect();
	if (SPI_execute_with_args("UPDATE allma.mcp_connections SET session_id = $2 WHERE id = $1",
							  2, types, values, nulls, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "allma: could not update allma.mcp_connections");
	SPI_finish();
}

/*
 * mcp_session_step: MCP servers that keep sessions answer a call without
 * one with 400 (and one whose session ended with 404); then the step opens
 * a session first -- initialize, then the notifications/initialized
 * notification -- and calls the tool again, once per attempt.  Returns true
 * when it left a next request for the worker.
 */
static bool
mcp_session_step(StepRun *run)
{
	AllmaHttpCompletion *c = run->ps->response;
	Jsonb	   *prev = run->ps->prev_request;
	char	   *phase = allma_jsonb_get_cstring(prev, "mcpPhase");
	char	   *conn_id = allma_jsonb_get_cstring(prev, "mcpConnectionId");
	char	   *sent_session = allma_jsonb_get_cstring(allma_jsonb_get(prev, "headers"), "Mcp-Session-Id");

	if (phase != NULL && strcmp(phase, "initialize") == 0)
	{
		char	   *session;

		(void) raise_for_transfer(c, 300, "MCP initialize");
		session = allma_jsonb_get_cstring(c->headers, "mcp-session-id");
		store_mcp_session(conn_id, session);
		if (session != NULL)
			build_mcp_request(run, "initialized", session, true);
		else
			build_mcp_request(run, NULL, NULL, true);	/* a stateless server */
		return true;
	}
	if (phase != NULL)
	{
		/* the initialized notification was accepted: now the call */
		(void) raise_for_transfer(c, 300, "MCP initialized notification");
		build_mcp_request(run, NULL, sent_session, true);
		return true;
	}
	if (c->error == NULL && !allma_jsonb_has_key(prev, "mcpInitialized") &&
		((c->status == 400 && sent_session == NULL) || (c->status == 404 && sent_session != NULL)))
	{
		if (sent_session != NULL)
			store_mcp_session(conn_id, NULL);
		build_mcp_request(run, "initialize", NULL, false);
		return true;
	}
	return false;
}

/*
 * sse_data: the data of each event of a text/event-stream body (data lines
 * joined by newlines, per the SSE rules), as a list of C strings.
 */
static List *
sse_data(const char *body, size_t len)
{
	List	   *events = NIL;
	StringInfoData data;
	const char *p = body;
	const char *end = body + len;

	initStringInfo(&data);
	while (p <= end)
	{
		const char *eol = p;
		const char *colon;
		size_t		linelen;

		while (eol < end && *eol != '\n' && *eol != '\r')
			eol++;
		linelen = eol - p;
		if (linelen == 0)
		{
			/* a blank line (or the end) dispatches the event */
			if (data.len > 0)
			{
				data.data[--data.len] = '\0';	/* the last newline */
				events = lappend(events, pstrdup(data.data));
				resetStringInfo(&data);
			}
		}
		else if (*p != ':')
		{
			colon = memchr(p, ':', linelen);
			if (colon != NULL && colon - p == 4 && strncmp(p, "data", 4) == 0)
			{
				const char *v = colon + 1;

				if (v < eol && *v == ' ')
					v++;
				appendBinaryStringInfo(&data, v, eol - v);
				appendStringInfoChar(&data, '\n');
			}
			else if (colon == NULL && linelen == 4 && strncmp(p, "data", 4) == 0)
				appendStringInfoChar(&data, '\n');
		}
		if (eol >= end)
		{
			/* be lenient with a stream that ends without a blank line */
			if (data.len > 0)
			{
				data.data[--data.len] = '\0';
				events = lappend(events, pstrdup(data.data));
			}
			break;
		}
		if (*eol == '\r' && eol + 1 < end && eol[1] == '\n')
			eol++;
		p = eol + 1;
	}
	return events;
}

/*
 * mcp_pick_response: the JSON-RPC response to request "id" in doc (one
 * message or a batch), or NULL.  A response with a null id (the server
 * could not read the request) also answers it.
 */
static Jsonb *
mcp_pick_response(Jsonb *doc, const char *id)
{
	List	   *msgs = allma_jsonb_is_array(doc) ? allma_jsonb_array_elements(doc) : list_make1(doc);
	ListCell   *lc;

	foreach(lc, msgs)
	{
		Jsonb	   *msg = lfirst(lc);
		Jsonb	   *msg_id = allma_jsonb_get(msg, "id");
		char	   *s = msg_id ? allma_jsonb_get_cstring(msg, "id") : NULL;
		JsonbValue	v;

		if (!allma_jsonb_has_key(msg, "result") && !allma_jsonb_has_key(msg, "error"))
			continue;
		if (msg_id == NULL || (allma_jsonb_scalar(msg_id, &v) && v.type == jbvNull) ||
			(s != NULL && strcmp(s, id) == 0))
			return msg;
	}
	return NULL;
}

/* mcp_error_text: the text parts of a tool result's content, joined */
static char *
mcp_error_text(Jsonb *result)
{
	StringInfoData buf;
	ListCell   *lc;

	initStringInfo(&buf);
	foreach(lc, allma_jsonb_array_elements(allma_jsonb_get(result, "content")))
	{
		char	   *type = allma_jsonb_get_cstring(lfirst(lc), "type");
		char	   *text = allma_jsonb_get_cstring(lfirst(lc), "text");

		if (type != NULL && strcmp(type, "text") == 0 && text != NULL)
			appendStringInfo(&buf, "%s%s", buf.len > 0 ? "\n" : "", text);
	}
	if (buf.len == 0)
		return pstrdup("the tool reported an error");
	if (buf.len > 1000)
		buf.data[pg_mbcliplen(buf.data, buf.len, 1000)] = '\0';
	return buf.data;
}

/*
 * mcp_output: the step output {result} for the server's reply, or the
 * error it means: a JSON-RPC error or a result with isError is a
 * PermanentStepError, HTTP 5xx/429 and transfer failures transient.
 */
static Jsonb *
mcp_output(StepRun *run)
{
	AllmaHttpCompletion *c = run->ps->response;
	char	   *tool = allma_jsonb_get_cstring(run->step->def, "toolName");
	char	   *id = allma_jsonb_get_cstring(run->ps->prev_request, "idempotencyKey");
	Jsonb	   *details;
	Jsonb	   *msg = NULL;
	Jsonb	   *error;
	Jsonb	   *result;
	bool		is_error = false;

	if (mcp_session_step(run))
		return NULL;
	details = raise_for_transfer(c, 400, "MCP call");

	details = allma_jsonb_set_key(details, "mcpConnectionId",
								  allma_jsonb_get(run->ps->prev_request, "mcpConnectionId"));
	details = allma_jsonb_set_key(details, "toolName", allma_jsonb_string(tool ? tool : ""));
	if (c->body_len > 0 && memchr(c->body, '\0', c->body_len) == NULL &&
		pg_verifymbstr(c->body, c->body_len, true))
	{
		if (c->content_type != NULL &&
			pg_strncasecmp(c->content_type, "text/event-stream", 17) == 0)
		{
			ListCell   *lc;

			foreach(lc, sse_data(c->body, c->body_len))
			{
				Jsonb	   *doc = parse_json_or_null(lfirst(lc));

				if (doc != NULL && (msg = mcp_pick_response(doc, id ? id : "")) != NULL)
					break;
			}
		}
		else
		{
			Jsonb	   *doc = parse_json_or_null(c->body);

			if (doc != NULL)
				msg = mcp_pick_response(doc, id ? id : "");
		}
	}
	if (msg == NULL)
		raise_http_error(ALLMA_ERR_PERMANENT,
						 psprintf("MCP server sent no JSON-RPC response to tools/call of \"%s\"", tool),
						 details);

	error = allma_jsonb_get(msg, "error");
	if (error != NULL)
	{
		char	   *message = allma_jsonb_get_cstring(error, "message");
		Jsonb	   *code = allma_jsonb_get(error, "code");

		details = allma_jsonb_set_key(details, "rpcError", error);
		raise_http_error(ALLMA_ERR_PERMANENT,
						 allma_secret_redact(psprintf("MCP tool \"%s\" failed: JSON-RPC error %s: %s", tool,
													  code ? allma_jsonb_to_display_text(code) : "?",
													  message ? message : "no message")),
						 details);
	}
	result = allma_jsonb_get(msg, "result");
	if (result != NULL && allma_jsonb_get_bool(result, "isError", &is_error) && is_error)
		raise_http_error(ALLMA_ERR_PERMANENT,
						 allma_secret_redact(psprintf("MCP tool \"%s\" returned an error: %s", tool,
													  mcp_error_text(result))),
						 allma_jsonb_set_key(details, "isError", allma_jsonb_bool(true)));
	return allma_jsonb_set_key(NULL, "result", result ? result : allma_jsonb_null());
}

/*
 * build_file_request: the request of a FILE_DOWNLOAD step.  headersTemplate
 * maps header names to JSONPaths into the context (as in Allma).
 */
static void
build_file_request(StepRun *run)
{
	AllmaStep  *step = run->step;
	Jsonb	   *tctx = template_context(run);
	char	   *tmpl = allma_jsonb_get_cstring(step->def, "sourceUrlTemplate");
	char	   *method = allma_jsonb_get_cstring(step->def, "method");
	Jsonb	   *header_defs = allma_jsonb_get(step->def, "headersTemplate");
	Jsonb	   *headers = allma_jsonb_empty_object();
	Jsonb	   *req = allma_jsonb_empty_object();
	char	   *url;
	char	   *error;
	ListCell   *lc;

	if (tmpl == NULL)
		raise_config_error(psprintf("FILE_DOWNLOAD step \"%s\" has no sourceUrlTemplate", step->id));
	url = allma_template_render(tmpl, tctx);
	if (!allma_http_check_url(url, &error))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("step \"%s\" has an invalid URL \"%s\": %s", step->id, url,
						error ? error : "not an http or https URL")));

	foreach(lc, allma_jsonb_object_keys(allma_jsonb_is_object(header_defs) ? header_defs : NULL))
	{
		char	   *name = lfirst(lc);
		char	   *path = allma_jsonb_get_cstring(header_defs, name);
		Jsonb	   *v = path ? allma_path_get(run->ps->context, path) : NULL;

		if (v != NULL)
			headers = allma_jsonb_set_key(headers, name,
										  allma_jsonb_string(allma_jsonb_to_display_text(v)));
	}

	req = allma_jsonb_set_key(req, "method", allma_jsonb_string(method ? method : "GET"));
	req = allma_jsonb_set_key(req, "url", allma_jsonb_string(url));
	req = allma_jsonb_set_key(req, "timeoutMs", allma_jsonb_int(step_timeout_ms(run)));
	req = allma_jsonb_set_key(req, "maxResponseBytes", allma_jsonb_int(allma_file_download_max_bytes));
	req = allma_jsonb_set_key(req, "idempotencyKey",
							  allma_jsonb_string(idempotency_key(run->ps, step)));
	set_io_request(run, req, headers);
}

/* store_file inserts a downloaded body into allma.files; returns its file_id */
static char *
store_file(StepRun *run, const char *url, AllmaHttpCompletion *c)
{
	Oid			types[6] = {UUIDOID, TEXTOID, TEXTOID, TEXTOID, BYTEAOID, INT8OID};
	Datum		values[6];
	char		nulls[6] = {' ', ' ', ' ', ' ', ' ', ' '};
	bytea	   *content = palloc(VARHDRSZ + c->body_len);
	MemoryContext outer = CurrentMemoryContext;
	char	   *file_id;

	SET_VARSIZE(content, VARHDRSZ + c->body_len);
	memcpy(VARDATA(content), c->body, c->body_len);
	values[0] = UUIDPGetDatum(&run->ps->execution_id);
	values[1] = CStringGetTextDatum(run->step->id);
	values[2] = CStringGetTextDatum(url);
	values[3] = c->content_type ? CStringGetTextDatum(c->content_type) : (Datum) 0;
	if (c->content_type == NULL)
		nulls[3] = 'n';
	values[4] = PointerGetDatum(content);
	values[5] = Int64GetDatum((int64) c->body_len);

	SPI_connect();
	if (SPI_execute_with_args("INSERT INTO allma.files (execution_id, step_id, url, content_type, "
							  "content, content_length) VALUES ($1, $2, $3, $4, $5, $6) "
							  "RETURNING file_id::text",
							  6, types, values, nulls, false, 1) != SPI_OK_INSERT_RETURNING ||
		SPI_processed != 1)
		elog(ERROR, "allma: could not store a downloaded file");
	{
		MemoryContext spicxt = MemoryContextSwitchTo(outer);

		file_id = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
		MemoryContextSwitchTo(spicxt);
	}
	SPI_finish();
	pfree(content);
	return file_id;
}

/*
 * file_output stores the downloaded body and returns
 * {filePointer: {fileId}, contentType, contentLength}.  Any status but 2xx
 * fails the step (429 and 5xx transient), and so does a body over
 * allma.file_download_max_bytes.
 */
static Jsonb *
file_output(StepRun *run)
{
	AllmaHttpCompletion *c = run->ps->response;
	char	   *url = allma_jsonb_get_cstring(run->ps->prev_request, "url");
	double		max_bytes = allma_file_download_max_bytes;
	Jsonb	   *details;
	char	   *file_id;
	Jsonb	   *out;

	(void) allma_jsonb_get_number(run->ps->prev_request, "maxResponseBytes", &max_bytes);
	details = allma_jsonb_set_key(NULL, "url", allma_jsonb_string(url ? url : ""));
	details = allma_jsonb_set_key(details, "maxBytes", allma_jsonb_int((int64) max_bytes));
	details = allma_jsonb_set_key(details, "tooLarge", allma_jsonb_bool(true));
	if (c->error != NULL && c->too_large)
		raise_http_error(ALLMA_ERR_PERMANENT,
						 psprintf("file download of step \"%s\" failed: %s", run->step->id, c->error),
						 details);
	if (c->error == NULL && (double) c->body_len > max_bytes)
		raise_http_error(ALLMA_ERR_PERMANENT,
						 psprintf("file download of step \"%s\" failed: the body of %zu bytes exceeds allma.file_download_max_bytes (%lld bytes)",
								  run->step->id, c->body_len, (long long) max_bytes),
						 details);
	(void) raise_for_transfer(c, 300, "file download");

	file_id = store_file(run, url ? url : (c->effective_url ? c->effective_url : ""), c);
	out = allma_jsonb_set_key(NULL, "filePointer",
							  allma_jsonb_set_key(NULL, "fileId", allma_jsonb_string(file_id)));
	out = allma_jsonb_set_key(out, "contentType",
							  c->content_type ? allma_jsonb_string(c->content_type) : allma_jsonb_null());
	return allma_jsonb_set_key(out, "contentLength", allma_jsonb_int((int64) c->body_len));
}

/* ----------------------------------------------------------------
 * LLM_INVOCATION
 *
 * Runs like API_CALL (request built in one pass, sent after commit,
 * answered in another), once per model of the chain: the primary
 * (llmProvider, modelId, ...) then fallbacks[] in order.  Any failure of a
 * model (HTTP error, unusable reply, invalid JSON in jsonOutputMode) moves
 * to the next one; when the last fails, its error is the step's.  The API
 * key comes from a secret (customConfig.apiKeySecret, default
 * <PROVIDER>_API_KEY) and is never stored: the stored request has it
 * redacted, the real headers only live in the worker's memory.
 * ----------------------------------------------------------------
 */

static List *
llm_candidates(StepRun *run, Jsonb *tctx)
{
	Jsonb	   *def = run->step->def;
	Jsonb	   *primary = allma_jsonb_empty_object();
	const char *fields[] = {"llmProvider", "modelId", "inferenceParameters", "customConfig",
	"tools", "toolChoice"};
	List	   *list;
	ListCell   *lc;

	for (int i = 0; i < lengthof(fields); i++)
	{
		Jsonb	   *v = allma_jsonb_get(def, fields[i]);

		if (v != NULL)
			primary = allma_jsonb_set_key(primary, fields[i], v);
	}
	list = list_make1(primary);
	foreach(lc, allma_jsonb_array_elements(allma_jsonb_get(def, "fallbacks")))
	{
		Jsonb	   *fb = lfirst(lc);

		/* a fallback inherits what it does not say from the primary */
		list = lappend(list, allma_jsonb_concat(primary, fb));
	}
	foreach(lc, list)
		lfirst(lc) = allma_template_render_value(lfirst(lc), tctx);
	return list;
}

static const char *
llm_base_url(const char *provider, Jsonb *candidate)
{
	Jsonb	   *cfg = allma_jsonb_get(candidate, "customConfig");
	char	   *url = cfg ? allma_jsonb_get_cstring(cfg, "baseUrl") : NULL;
	const char *guc = NULL;

	if (url != NULL && url[0] != '\0')
		return url;
	if (strcmp(provider, "OPENAI") == 0)
		guc = allma_openai_base_url;
	else if (strcmp(provider, "ANTHROPIC") == 0)
		guc = allma_anthropic_base_url;
	else if (strcmp(provider, "GEMINI") == 0)
		guc = allma_gemini_base_url;
	if (guc != NULL && guc[0] != '\0')
		return guc;
	return allma_llm_default_base_url(provider);
}

/* the rendered prompt: promptTemplateId (published version), or customConfig.prompt */
static char *
llm_prompt(StepRun *run, Jsonb *tctx)
{
	char	   *template_id = allma_jsonb_get_cstring(run->step->def, "promptTemplateId");
	Jsonb	   *mappings = allma_jsonb_get(run->step->def, "templateContextMappings");
	char	   *content = NULL;

	if (allma_jsonb_is_object(mappings))
		tctx = allma_jsonb_concat(tctx, mapping_values(mappings, run->ps->context));
	if (template_id != NULL)
	{
		allma_acl_use_check(ALLMA_OBJ_PROMPT, template_id,
							allma_flow_version_creator(run->ps->flow->flow_id, run->ps->flow->version),
							false, run->step->id);
		(void) allma_prompt_get(template_id, 0, &content);
	}
	else if (run->step->custom_config != NULL)
		content = allma_jsonb_get_cstring(run->step->custom_config, "prompt");
	if (content == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_ALLMA_INVALID_DEFINITION),
				 errmsg("LLM step \"%s\" has no prompt", run->step->id),
				 errhint("Set promptTemplateId (see allma_create_prompt) or customConfig.prompt.")));
	return allma_template_render(content, tctx);
}

static void
raise_config_error(const char *message)
{
	raise_http_error(ALLMA_ERR_CONFIG, message, allma_jsonb_empty_object());
}

/* build_llm_request: the request for model "index" of the chain */
static void
build_llm_request(StepRun *run, int index)
{
	Jsonb	   *tctx = template_context(run);
	List	   *candidates = llm_candidates(run, tctx);
	Jsonb	   *cand = list_nth(candidates, index);
	char	   *provider = allma_jsonb_get_cstring(cand, "llmProvider");
	Jsonb	   *cfg = allma_jsonb_get(cand, "customConfig");
	char	   *secret_name = cfg ? allma_jsonb_get_cstring(cfg, "apiKeySecret") : NULL;
	Jsonb	   *call = allma_jsonb_empty_object();
	char	   *url,
			   *body,
			   *errmsg = NULL;
	List	   *headers;
	ListCell   *lc;
	Jsonb	   *send_headers = allma_jsonb_empty_object();
	Jsonb	   *stored_headers = allma_jsonb_empty_object();
	char	   *api_key;
	Jsonb	   *req = allma_jsonb_empty_object();
	double		timeout_ms = allma_http_timeout_ms;
	bool		json_mode = false;
	MemoryContext oldcxt;

	if (provider == NULL)
		raise_config_error(psprintf("LLM step \"%s\" has no llmProvider", run->step->id));
	for (char *c = provider; *c; c++)
		*c = pg_toupper((unsigned char) *c);
	if (secret_name == NULL)
		secret_name = psprintf("%s_API_KEY", provider);
	{
		AllmaSecretUse use = step_secret_use(run, llm_base_url(provider, cand));

		api_key = allma_secret_get_for(secret_name, &use);
	}

	call = allma_jsonb_set_key(call, "baseUrl", allma_jsonb_string(llm_base_url(provider, cand)));
	call = allma_jsonb_set_key(call, "modelId", allma_jsonb_get(cand, "modelId"));
	call = allma_jsonb_set_key(call, "apiKey", allma_jsonb_string(api_key));
	call = allma_jsonb_set_key(call, "prompt", allma_jsonb_string(llm_prompt(run, tctx)));
	call = allma_jsonb_set_key(call, "inferenceParameters", allma_jsonb_get(cand, "inferenceParameters"));
	call = allma_jsonb_set_key(call, "tools", allma_jsonb_get(cand, "tools"));
	call = allma_jsonb_set_key(call, "toolChoice", allma_jsonb_get(cand, "toolChoice"));
	call = allma_jsonb_set_key(call, "customConfig", cfg);
	if (cfg != NULL)
	{
		(void) allma_jsonb_get_bool(cfg, "jsonOutputMode", &json_mode);
		(void) allma_jsonb_get_number(cfg, "timeoutMs", &timeout_ms);
	}
	call = allma_jsonb_set_key(call, "jsonOutputMode", allma_jsonb_bool(json_mode));

	if (!allma_llm_build_request(provider, call, &url, &headers, &body, &errmsg))
		raise_config_error(psprintf("LLM step \"%s\": %s", run->step->id,
									errmsg ? errmsg : "invalid call"));
	foreach(lc, headers)
	{
		AllmaHttpHeader *h = lfirst(lc);

		send_headers = allma_jsonb_set_key(send_headers, h->name, allma_jsonb_string(h->value));
		stored_headers = allma_jsonb_set_key(stored_headers, h->name,
											 allma_jsonb_string(allma_secret_redact(h->value)));
	}
	req = allma_jsonb_set_key(req, "method", allma_jsonb_string("POST"));
	req = allma_jsonb_set_key(req, "url", allma_jsonb_string(allma_secret_redact(url)));
	req = allma_jsonb_set_key(req, "headers", stored_headers);
	req = allma_jsonb_set_key(req, "body", allma_jsonb_string(body));
	req = allma_jsonb_set_key(req, "timeoutMs", allma_jsonb_int((int64) timeout_ms));
	req = allma_jsonb_set_key(req, "idempotencyKey",
							  allma_jsonb_string(idempotency_key(run->ps, run->step)));
	req = allma_jsonb_set_key(req, "candidate", allma_jsonb_int(index));
	req = allma_jsonb_set_key(req, "provider", allma_jsonb_string(provider));
	req = allma_jsonb_set_key(req, "modelId", allma_jsonb_get(cand, "modelId"));
	req = allma_jsonb_set_key(req, "jsonOutputMode", allma_jsonb_bool(json_mode));

	oldcxt = MemoryContextSwitchTo(run->pathcxt);
	run->ps->io_request = (Jsonb *) palloc(VARSIZE(req));
	memcpy(run->ps->io_request, req, VARSIZE(req));
	run->ps->io_send_headers = (Jsonb *) palloc(VARSIZE(send_headers));
	memcpy(run->ps->io_send_headers, send_headers, VARSIZE(send_headers));
	/* the URL may carry the key: the real one is only kept in memory */
	run->ps->io_send_url = pstrdup(url);
	MemoryContextSwitchTo(oldcxt);
	run->io = true;
}

/*
 * llm_output: the step output for a model's reply; NULL after moving on to
 * the next model of the chain (run->io set); throws when the last failed.
 */
static Jsonb *
llm_output(StepRun *run)
{
	AllmaHttpCompletion *c = run->ps->response;
	Jsonb	   *prev = run->ps->prev_request;
	double		index = 0;
	char	   *provider = allma_jsonb_get_cstring(prev, "provider");
	bool		json_mode = false;
	Jsonb	   *result = NULL;
	char	   *error_name = NULL;
	char	   *errmsg = NULL;
	Jsonb	   *out = NULL;
	int			ncandidates = 1 + Max(allma_jsonb_array_length(allma_jsonb_get(run->step->def, "fallbacks")), 0);

	(void) allma_jsonb_get_number(prev, "candidate", &index);
	(void) allma_jsonb_get_bool(prev, "jsonOutputMode", &json_mode);

	if (c->error != NULL && (c->refused_destination || c->too_large))
	{
		error_name = pstrdup(ALLMA_ERR_PERMANENT);
		errmsg = psprintf("LLM request failed: %s", c->error);
	}
	else if (!allma_llm_parse_response(provider ? provider : "", c->error ? 0 : c->status,
									   c->body, &result, &error_name, &errmsg))
		;
	else
	{
		char	   *text = allma_jsonb_get_cstring(result, "text");
		Jsonb	   *tool_calls = allma_jsonb_get(result, "tool_calls");

		if (json_mode)
		{
			if (!allma_llm_json_output(text ? text : "", &out, &errmsg))
			{
				error_name = pstrdup(ALLMA_ERR_CONTENT);
				out = NULL;
			}
		}
		else
			out = allma_jsonb_set_key(NULL, "llm_response", allma_jsonb_string(text ? text : ""));
		if (out != NULL && allma_jsonb_array_length(tool_calls) > 0)
			out = allma_jsonb_set_key(out, "tool_calls", tool_calls);
		if (out != NULL)
		{
			Jsonb	   *details = allma_jsonb_empty_object();

			details = allma_jsonb_set_key(details, "provider", allma_jsonb_string(provider));
			details = allma_jsonb_set_key(details, "modelId", allma_jsonb_get(prev, "modelId"));
			details = allma_jsonb_set_key(details, "model", allma_jsonb_get(result, "model"));
			details = allma_jsonb_set_key(details, "fallbackIndex", allma_jsonb_int((int64) index));
			details = allma_jsonb_set_key(details, "tokenUsage", allma_jsonb_get(result, "usage"));
			if (run->ps->logs)
			{
				details = allma_jsonb_set_key(details, "llmPrompt", allma_jsonb_get(prev, "body"));
				details = allma_jsonb_set_key(details, "llmRawResponse",
											  allma_jsonb_string_len(c->body, c->body_len));
			}
			run->details = allma_secret_redact_jsonb(details);
			return out;
		}
	}

	/* this model failed: the next one, or the step fails */
	if (index + 1 < ncandidates)
	{
		build_llm_request(run, (int) index + 1);
		return NULL;
	}
	raise_http_error(error_name ? error_name : ALLMA_ERR_PERMANENT,
					 allma_secret_redact(errmsg ? errmsg : "LLM invocation failed"),
					 allma_jsonb_set_key(allma_jsonb_set_key(NULL, "status", allma_jsonb_int(c->status)),
										 "modelId", allma_jsonb_get(prev, "modelId")));
	return NULL;
}

/* ----------------------------------------------------------------
 * POLL_EXTERNAL_API
 *
 * Each poll is the request of apiCallDefinition, sent like an API_CALL.
 * On a response, exitConditions.successCondition (true: the step completes
 * with the response data) and failureCondition (true: PollingFailed) are
 * evaluated over the response data; otherwise the step polls again after
 * pollingConfig.intervalSeconds — a durable due time, not a sleeping
 * process — until pollingConfig.maxAttempts polls have been made (which
 * Allma never enforced), then fails with PollingMaxAttemptsExceeded.  The
 * poll count is kept with the path's transition counters.
 * ----------------------------------------------------------------
 */

static void
send_poll(StepRun *run)
{
	Jsonb	   *def = allma_jsonb_get(run->step->def, "apiCallDefinition");

	leave_api_request(run, allma_jsonb_is_object(def) ? def : run->step->def, NULL, false);
}

static Jsonb *
poll_output(StepRun *run)
{
	Jsonb	   *response = api_output(run);	/* HTTP errors throw here */
	Jsonb	   *data = allma_jsonb_get(response, "data");
	Jsonb	   *exits = allma_jsonb_get(run->step->def, "exitConditions");
	Jsonb	   *polling = allma_jsonb_get(run->step->def, "pollingConfig");
	char	   *success = exits ? allma_jsonb_get_cstring(exits, "successCondition") : NULL;
	char	   *failure = exits ? allma_jsonb_get_cstring(exits, "failureCondition") : NULL;
	char	   *counter = psprintf("%s_poll", run->step->id);
	double		polls = 0,
				max_attempts = 100,
				interval = 5;

	(void) allma_jsonb_get_number(run->ps->transition_counts, counter, &polls);
	(void) allma_jsonb_get_number(polling, "maxAttempts", &max_attempts);
	(void) allma_jsonb_get_number(polling, "intervalSeconds", &interval);
	polls += 1;

	if (failure != NULL && allma_condition_eval(failure, data))
		raise_http_error("PollingFailed",
						 psprintf("polling step \"%s\" met its failure condition", run->step->id),
						 allma_jsonb_set_key(NULL, "polls", allma_jsonb_int((int64) polls)));
	if (success != NULL && allma_condition_eval(success, data))
	{
		run->details = allma_jsonb_set_key(NULL, "polls", allma_jsonb_int((int64) polls));
		/* the counter starts again if the flow comes back to this step */
		run->ps->transition_counts = allma_jsonb_delete_key(run->ps->transition_counts, counter);
		return data;
	}
	if (polls >= max_attempts)
		raise_http_error("PollingMaxAttemptsExceeded",
						 psprintf("polling step \"%s\" made %d polls without meeting a condition",
								  run->step->id, (int) polls),
						 allma_jsonb_set_key(NULL, "polls", allma_jsonb_int((int64) polls)));
	run->ps->transition_counts = allma_jsonb_set_key(run->ps->transition_counts, counter,
													 allma_jsonb_int((int64) polls));
	run->repoll_ms = (int64) (interval * 1000.0 * allma_timer_scale);
	run->details = allma_jsonb_set_key(NULL, "polls", allma_jsonb_int((int64) polls));
	return NULL;
}

/* ----------------------------------------------------------------
 * EMAIL
 *
 * The step's fields are rendered (from, fromName, to, cc, bcc, replyTo,
 * subject, body); the message is built here and sent by the worker through
 * libcurl's SMTP support after the pass committed (allma.smtp_url), like an
 * HTTP request: no transaction is open while the server is talked to.
 * Addresses may be a string (comma-separated) or an array.
 * ----------------------------------------------------------------
 */

static List *
email_addresses(Jsonb *v)
{
	List	   *out = NIL;

	if (allma_jsonb_is_array(v))
	{
		ListCell   *lc;

		foreach(lc, allma_jsonb_array_elements(v))
			out = list_concat(out, email_addresses(lfirst(lc)));
	}
	else if (v != NULL)
	{
		char	   *s = allma_jsonb_to_display_text(v);
		char	   *tok;
		char	   *save;

		for (tok = strtok_r(s, ",;", &save); tok; tok = strtok_r(NULL, ",;", &save))
		{
			while (*tok == ' ')
				tok++;
			if (*tok)
			{
				char	   *end = tok + strlen(tok) - 1;

				while (end > tok && *end == ' ')
					*end-- = '\0';
				if (strchr(tok, '\r') || strchr(tok, '\n'))
					ereport(ERROR,
							(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
							 errmsg("email address \"%s\" contains a line break", tok)));
				out = lappend(out, pstrdup(tok));
			}
		}
	}
	return out;
}

static char *
join_addresses(List *list)
{
	StringInfoData buf;
	ListCell   *lc;

	initStringInfo(&buf);
	foreach(lc, list)
		appendStringInfo(&buf, "%s%s", buf.len ? ", " : "", (char *) lfirst(lc));
	return buf.data;
}

/* the address part of "Name <addr>" or "addr" */
static char *
bare_address(const char *a)
{
	const char *lt = strchr(a, '<');
	const char *gt = lt ? strchr(lt, '>') : NULL;

	if (lt && gt)
		return pnstrdup(lt + 1, gt - lt - 1);
	return pstrdup(a);
}

/* header text: RFC 2047 encoded when not plain ASCII */
static char *
header_text(const char *s)
{
	bool		ascii = true;

	for (const char *p = s; *p; p++)
	{
		if ((unsigned char) *p >= 0x80)
			ascii = false;
		if (*p == '\r' || *p == '\n')
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("email header text contains a line break")));
	}
	if (ascii)
		return pstrdup(s);
	{
		int			len = strlen(s);
		char	   *enc = palloc(pg_b64_enc_len(len) + 1);
		int			n = pg_b64_encode(s, len, enc, pg_b64_enc_len(len));

		enc[Max(n, 0)] = '\0';
		return psprintf("=?UTF-8?B?%s?=", enc);
	}
}

/* RFC 5322 date of now, in UTC */
static char *
mail_date(void)
{
	static const char *const days[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
	static const char *const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
	"Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
	time_t		now = timestamptz_to_time_t(GetCurrentTimestamp());
	struct tm	tm;

	gmtime_r(&now, &tm);
	return psprintf("%s, %02d %s %04d %02d:%02d:%02d +0000",
					days[tm.tm_wday], tm.tm_mday, months[tm.tm_mon], tm.tm_year + 1900,
					tm.tm_hour, tm.tm_min, tm.tm_sec);
}

/* does the body look like HTML (a tag such as <p> or </div>)? */
static bool
looks_like_html(const char *body)
{
	for (const char *p = strchr(body, '<'); p; p = strchr(p + 1, '<'))
	{
		if ((isalpha((unsigned char) p[1]) || (p[1] == '/' && isalpha((unsigned char) p[2]))) &&
			strchr(p, '>') != NULL)
			return true;
	}
	return false;
}

/* append_base64: a transfer-encoding header, a blank line, data in base64 lines */
static void
append_base64(StringInfo msg, const char *data, int len)
{
	char	   *enc = palloc(pg_b64_enc_len(len) + 1);
	int			n = pg_b64_encode(data, len, enc, pg_b64_enc_len(len));

	appendStringInfoString(msg, "Content-Transfer-Encoding: base64\r\n\r\n");
	for (int i = 0; i < n; i += 76)
	{
		appendBinaryStringInfo(msg, enc + i, Min(76, n - i));
		appendStringInfoString(msg, "\r\n");
	}
}

/*
 * append_mail_body adds the body with CRLF line ends: as 8bit text, or in
 * base64 when a line is too long for SMTP (998 bytes).
 */
static void
append_mail_body(StringInfo msg, const char *body)
{
	int			line = 0;
	bool		long_line = false;

	for (const char *p = body; *p; p++)
	{
		line = (*p == '\n') ? 0 : line + 1;
		if (line > 990)
			long_line = true;
	}
	if (!long_line)
	{
		appendStringInfoString(msg, "Content-Transfer-Encoding: 8bit\r\n\r\n");
		for (const char *p = body; *p; p++)
		{
			if (*p == '\n' && (p == body || p[-1] != '\r'))
				appendStringInfoChar(msg, '\r');
			appendStringInfoChar(msg, *p);
		}
		appendStringInfoString(msg, "\r\n");
	}
	else
		append_base64(msg, body, strlen(body));
}

/*
 * append_custom_headers adds the step's customHeaders: an object of
 * name: value, or an array of {"name": ..., "value": ...}.
 */
static void
append_custom_headers(StepRun *run, StringInfo msg, Jsonb *headers)
{
	List	   *pairs = NIL;
	ListCell   *lc;

	JsonbValue	scalar;

	if (headers == NULL ||
		(allma_jsonb_scalar(headers, &scalar) && scalar.type == jbvNull))
		return;
	if (allma_jsonb_is_array(headers))
	{
		foreach(lc, allma_jsonb_array_elements(headers))
		{
			char	   *name = allma_jsonb_get_cstring(lfirst(lc), "name");
			char	   *value = allma_jsonb_get_cstring(lfirst(lc), "value");

			if (name == NULL || value == NULL)
				raise_config_error(psprintf("EMAIL step \"%s\": each entry of customHeaders needs \"name\" and \"value\"",
											run->step->id));
			pairs = lappend(pairs, list_make2(name, value));
		}
	}
	else if (allma_jsonb_is_object(headers))
	{
		foreach(lc, allma_jsonb_object_keys(headers))
			pairs = lappend(pairs, list_make2(lfirst(lc),
											  allma_jsonb_to_display_text(allma_jsonb_get(headers, lfirst(lc)))));
	}
	else
		raise_config_error(psprintf("EMAIL step \"%s\": customHeaders must be an object or an array",
									run->step->id));

	foreach(lc, pairs)
	{
		char	   *name = linitial(lfirst(lc));
		char	   *value = lsecond(lfirst(lc));

		for (const char *p = name; *p; p++)
			if (!(isalnum((unsigned char) *p) || *p == '-'))
				raise_config_error(psprintf("EMAIL step \"%s\": invalid header name \"%s\" in customHeaders",
											run->step->id, name));
		appendStringInfo(msg, "%s: %s\r\n", name, header_text(value));
	}
}

/* an attachment of an EMAIL step, read from allma.files */
typedef struct MailAttachment
{
	char	   *filename;
	char	   *content_type;
	char	   *data;
	int			len;
} MailAttachment;

/* larger messages are not copied into the path's stored request */
#define MAIL_STORED_MESSAGE_MAX		(64 * 1024)

/* Allma's limit for the attachments of one message (SES raw) */
#define MAIL_ATTACHMENTS_MAX_BYTES	(7 * 1024 * 1024)

/*
 * email_attachments reads the rendered step's attachments (or the array at
 * attachmentsPath in the context): each {filename, filePointer: {fileId}}
 * names a file this execution stored with FILE_DOWNLOAD.  Allma's
 * s3Pointer has no S3 here and fails the step with a clear error.
 */
static List *
email_attachments(StepRun *run, Jsonb *def)
{
	Jsonb	   *list = allma_jsonb_get(def, "attachments");
	char	   *path = allma_jsonb_get_cstring(def, "attachmentsPath");
	List	   *out = NIL;
	int64		total = 0;
	ListCell   *lc;
	MemoryContext outer = CurrentMemoryContext;

	if (path != NULL)
		list = allma_path_get(run->ps->context, path);
	if (list == NULL || !allma_jsonb_is_array(list))
	{
		if (path != NULL && list != NULL)
			raise_config_error(psprintf("EMAIL step \"%s\": attachmentsPath %s is not an array",
										run->step->id, path));
		return NIL;
	}
	SPI_connect();
	foreach(lc, allma_jsonb_array_elements(list))
	{
		Jsonb	   *att = lfirst(lc);
		char	   *filename = allma_jsonb_get_cstring(att, "filename");
		Jsonb	   *ptr = allma_jsonb_get(att, "filePointer");
		char	   *file_id = allma_jsonb_is_object(ptr) ? allma_jsonb_get_cstring(ptr, "fileId") :
			(ptr ? allma_jsonb_to_display_text(ptr) : NULL);
		MailAttachment *a;
		Datum		args[2];
		Oid			types[2] = {UUIDOID, UUIDOID};
		bool		isnull;
		bytea	   *content;

		if (filename == NULL || filename[0] == '\0' || strpbrk(filename, "\"\\\r\n") != NULL)
			raise_config_error(psprintf("EMAIL step \"%s\": an attachment needs a filename without quotes, backslashes or line breaks",
										run->step->id));
		if (file_id == NULL)
			raise_config_error(psprintf(allma_jsonb_get(att, "s3Pointer") ?
										"EMAIL step \"%s\": attachment \"%s\" points into S3, which allma does not have; store the file with FILE_DOWNLOAD and give its filePointer" :
										"EMAIL step \"%s\": attachment \"%s\" has no filePointer",
										run->step->id, filename));
		args[0] = DirectFunctionCall1(uuid_in, CStringGetDatum(file_id));
		args[1] = UUIDPGetDatum(&run->ps->execution_id);
		/* not read-only: a file stored earlier in this pass must be seen */
		if (SPI_execute_with_args("SELECT content, coalesce(content_type, 'application/octet-stream') "
								  "FROM allma.files WHERE file_id = $1 AND execution_id = $2",
								  2, types, args, NULL, false, 1) != SPI_OK_SELECT)
			elog(ERROR, "allma: could not read allma.files");
		if (SPI_processed == 0)
			raise_config_error(psprintf("EMAIL step \"%s\": attachment \"%s\": file %s is not a file of this execution",
										run->step->id, filename, file_id));
		content = DatumGetByteaPP(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
		{
			char	   *ctype = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);
			MemoryContext spicxt = MemoryContextSwitchTo(outer);

			a = palloc(sizeof(MailAttachment));
			a->filename = header_text(filename);
			a->content_type = strpbrk(ctype, "\r\n\"") ? "application/octet-stream" : pstrdup(ctype);
			a->len = VARSIZE_ANY_EXHDR(content);
			a->data = palloc(a->len + 1);
			memcpy(a->data, VARDATA_ANY(content), a->len);
			MemoryContextSwitchTo(spicxt);
		}
		total += a->len;
		if (total > MAIL_ATTACHMENTS_MAX_BYTES)
			raise_http_error(ALLMA_ERR_PERMANENT,
							 psprintf("EMAIL step \"%s\": attachments exceed %d bytes",
									  run->step->id, MAIL_ATTACHMENTS_MAX_BYTES),
							 allma_jsonb_empty_object());
		MemoryContextSwitchTo(outer);
		out = lappend(out, a);
	}
	SPI_finish();
	return out;
}

/*
 * build_email renders the step (the whole definition is a template, like
 * Allma's), builds the message and leaves it as the step's request; the
 * worker sends it after the pass commits.
 */
static void
build_email(StepRun *run)
{
	Jsonb	   *tctx = template_context(run);
	Jsonb	   *def = allma_template_render_value(run->step->def, tctx);
	char	   *from = allma_jsonb_get_cstring(def, "from");
	char	   *from_name = allma_jsonb_get_cstring(def, "fromName");
	List	   *to = email_addresses(allma_jsonb_get(def, "to"));
	List	   *cc = email_addresses(allma_jsonb_get(def, "cc"));
	List	   *bcc = email_addresses(allma_jsonb_get(def, "bcc"));
	List	   *reply_to = email_addresses(allma_jsonb_get(def, "replyTo"));
	char	   *subject = allma_jsonb_get_cstring(def, "subject");
	char	   *body = allma_jsonb_get_cstring(def, "body");
	char	   *message_id;
	char	   *password = NULL;
	char	   *error = NULL;
	StringInfoData msg;
	Jsonb	   *rcpt = allma_jsonb_empty_array();
	Jsonb	   *req = allma_jsonb_empty_object();
	Jsonb	   *rendered = allma_jsonb_empty_object();
	ListCell   *lc;
	List	   *attachments;
	MemoryContext oldcxt;

	if (allma_smtp_url == NULL || allma_smtp_url[0] == '\0')
		raise_config_error(psprintf("EMAIL step \"%s\" cannot send: allma.smtp_url is not set",
									run->step->id));
	if (!allma_http_check_mail_url(allma_smtp_url, &error))
		raise_config_error(psprintf("EMAIL step \"%s\" cannot send: allma.smtp_url: %s",
									run->step->id, error));
	if (from == NULL || to == NIL)
		raise_config_error(psprintf("EMAIL step \"%s\" needs \"from\" and \"to\"", run->step->id));
	attachments = email_attachments(run, def);
	if (allma_smtp_username != NULL && allma_smtp_username[0] != '\0')
	{
		AllmaSecretUse use = step_secret_use(run, allma_smtp_url);

		password = allma_secret_get_for(allma_smtp_password_secret, &use);
	}

	message_id = psprintf("<%s@allma>", idempotency_key(run->ps, run->step));
	for (char *p = message_id; *p; p++)
		if (*p == '/' || *p == ':')
			*p = '.';
	if (body == NULL)
		body = "";

	initStringInfo(&msg);
	if (from_name != NULL)
		appendStringInfo(&msg, "From: %s <%s>\r\n", header_text(from_name), bare_address(from));
	else
		appendStringInfo(&msg, "From: %s\r\n", header_text(from));
	appendStringInfo(&msg, "To: %s\r\n", header_text(join_addresses(to)));
	if (cc != NIL)
		appendStringInfo(&msg, "Cc: %s\r\n", header_text(join_addresses(cc)));
	if (reply_to != NIL)
		appendStringInfo(&msg, "Reply-To: %s\r\n", header_text(join_addresses(reply_to)));
	appendStringInfo(&msg, "Subject: %s\r\n", header_text(subject ? subject : ""));
	appendStringInfo(&msg, "Date: %s\r\n", mail_date());
	appendStringInfo(&msg, "Message-ID: %s\r\n", message_id);
	append_custom_headers(run, &msg, allma_jsonb_get(def, "customHeaders"));
	appendStringInfoString(&msg, "MIME-Version: 1.0\r\n");
	if (attachments == NIL)
	{
		appendStringInfo(&msg, "Content-Type: %s; charset=UTF-8\r\n",
						 looks_like_html(body) ? "text/html" : "text/plain");
		append_mail_body(&msg, body);
	}
	else
	{
		/* the boundary cannot occur in base64 or in the body (checked) */
		char	   *boundary = psprintf("=_allma_%s", idempotency_key(run->ps, run->step));

		for (char *p = boundary; *p; p++)
			if (*p == '/' || *p == ':')
				*p = '.';
		if (strstr(body, boundary) != NULL)
			raise_config_error(psprintf("EMAIL step \"%s\": the body contains the MIME boundary",
										run->step->id));
		appendStringInfo(&msg, "Content-Type: multipart/mixed; boundary=\"%s\"\r\n\r\n", boundary);
		appendStringInfo(&msg, "--%s\r\n", boundary);
		appendStringInfo(&msg, "Content-Type: %s; charset=UTF-8\r\n",
						 looks_like_html(body) ? "text/html" : "text/plain");
		append_mail_body(&msg, body);
		foreach(lc, attachments)
		{
			MailAttachment *a = lfirst(lc);

			appendStringInfo(&msg, "--%s\r\n", boundary);
			appendStringInfo(&msg, "Content-Type: %s; name=\"%s\"\r\n", a->content_type, a->filename);
			appendStringInfo(&msg, "Content-Disposition: attachment; filename=\"%s\"\r\n", a->filename);
			append_base64(&msg, a->data, a->len);
		}
		appendStringInfo(&msg, "--%s--\r\n", boundary);
	}

	foreach(lc, list_concat(list_concat(list_copy(to), cc), bcc))
		rcpt = allma_jsonb_array_append(rcpt, allma_jsonb_string(bare_address(lfirst(lc))));

	req = allma_jsonb_set_key(req, "url", allma_jsonb_string(allma_smtp_url));
	req = allma_jsonb_set_key(req, "mailFrom", allma_jsonb_string(bare_address(from)));
	req = allma_jsonb_set_key(req, "rcpt", rcpt);
	/* a large message (attachments) is kept in memory only, like credentials */
	if (msg.len <= MAIL_STORED_MESSAGE_MAX)
		req = allma_jsonb_set_key(req, "message", allma_jsonb_string(msg.data));
	else
		req = allma_jsonb_set_key(req, "messageBytes", allma_jsonb_int(msg.len));
	req = allma_jsonb_set_key(req, "messageId", allma_jsonb_string(message_id));
	req = allma_jsonb_set_key(req, "idempotencyKey",
							  allma_jsonb_string(idempotency_key(run->ps, run->step)));

	rendered = allma_jsonb_set_key(rendered, "from", allma_jsonb_string(from));
	if (from_name)
		rendered = allma_jsonb_set_key(rendered, "fromName", allma_jsonb_string(from_name));
	rendered = allma_jsonb_set_key(rendered, "to", allma_jsonb_string(join_addresses(to)));
	if (cc != NIL)
		rendered = allma_jsonb_set_key(rendered, "cc", allma_jsonb_string(join_addresses(cc)));
	if (bcc != NIL)
		rendered = allma_jsonb_set_key(rendered, "bcc", allma_jsonb_string(join_addresses(bcc)));
	if (reply_to != NIL)
		rendered = allma_jsonb_set_key(rendered, "replyTo", allma_jsonb_string(join_addresses(reply_to)));
	rendered = allma_jsonb_set_key(rendered, "subject", allma_jsonb_string(subject ? subject : ""));
	rendered = allma_jsonb_set_key(rendered, "body", allma_jsonb_string(body));
	req = allma_jsonb_set_key(req, "rendered", rendered);

	oldcxt = MemoryContextSwitchTo(run->pathcxt);
	run->ps->io_request = (Jsonb *) palloc(VARSIZE(req));
	memcpy(run->ps->io_request, req, VARSIZE(req));
	run->ps->io_send_password = password ? pstrdup(password) : NULL;
	run->ps->io_send_body = msg.len <= MAIL_STORED_MESSAGE_MAX ? NULL : pstrdup(msg.data);
	MemoryContextSwitchTo(oldcxt);
	run->io = true;
}

static Jsonb *
email_output(StepRun *run)
{
	AllmaHttpCompletion *c = run->ps->response;
	Jsonb	   *prev = run->ps->prev_request;
	Jsonb	   *out;

	/*
	 * A 5xx reply (recipient or sender refused, message rejected) and a
	 * failed login are permanent; 4xx replies ask to try later, and
	 * connection failures and timeouts are transient too.
	 */
	if (c->error != NULL)
	{
		Jsonb	   *details = allma_jsonb_set_key(NULL, "curlCode", allma_jsonb_int(c->curl_code));
		bool		permanent = (c->status >= 500 && c->status < 600) ||
			c->curl_code == 67 /* CURLE_LOGIN_DENIED */ ;

		if (c->status > 0)
			details = allma_jsonb_set_key(details, "smtpReplyCode", allma_jsonb_int(c->status));
		raise_http_error(permanent ? ALLMA_ERR_PERMANENT : ALLMA_ERR_TRANSIENT,
						 psprintf("sending email failed: %s", c->error), details);
	}
	out = allma_jsonb_set_key(NULL, "messageId", allma_jsonb_get(prev, "messageId"));
	/* Allma's name for it (SES), so flows reading it keep working */
	out = allma_jsonb_set_key(out, "sesMessageId", allma_jsonb_get(prev, "messageId"));
	return allma_jsonb_set_key(out, "renderedEmail", allma_jsonb_get(prev, "rendered"));
}

static Jsonb *
dispatch_step(StepRun *run)
{
	AllmaStep  *step = run->step;
	const char *module = step->module;

	/* the response to a module bound to an HTTP endpoint */
	if (run->ps->response != NULL && run->ps->prev_request != NULL &&
		allma_jsonb_has_key(run->ps->prev_request, "binding"))
		return http_binding_output(run);

	switch (step->type)
	{
		case ALLMA_STEP_NO_OP:
		case ALLMA_STEP_EMAIL_START_POINT:
		case ALLMA_STEP_SCHEDULE_START_POINT:
		case ALLMA_STEP_END_FLOW:
			return run->input;

		case ALLMA_STEP_DATA_TRANSFORMATION:
			if (module != NULL && allma_transform_exists(module))
				return allma_transform_run(module, module_input(run));
			return invoke_binding(run, module ? module : "", module_input(run),
								  ALLMA_ERR_PERMANENT);

		case ALLMA_STEP_DATA_LOAD:
		case ALLMA_STEP_DATA_SAVE:
			if (module != NULL && strcmp(module, ALLMA_MODULE_SQL_QUERY) == 0)
				return run_sql_step(run, true);
			if (module != NULL && strcmp(module, ALLMA_MODULE_SQL_EXECUTE) == 0)
				return run_sql_step(run, false);
			return invoke_binding(run, module ? module : "", module_input(run),
								  ALLMA_ERR_PERMANENT);

		case ALLMA_STEP_CUSTOM_LOGIC:
			return invoke_binding(run, module ? module : "", module_input(run),
								  ALLMA_ERR_PERMANENT);

		case ALLMA_STEP_CUSTOM_LAMBDA_INVOKE:
			{
				char	   *arn = allma_jsonb_get_cstring(step->def, "lambdaFunctionArnTemplate");
				char	   *key;

				if (arn != NULL)
					key = allma_template_render(arn, template_context(run));
				else
					key = module ? pstrdup(module) : pstrdup("");
				/* Allma: a Lambda function error is a TransientStepError */
				return invoke_binding(run, key, lambda_payload(run, key),
									  ALLMA_ERR_TRANSIENT);
			}

		case ALLMA_STEP_API_CALL:
			if (run->ps->response != NULL)
				return api_output(run);
			leave_api_request(run, run->step->def, NULL, false);
			return NULL;

		case ALLMA_STEP_MCP_CALL:
			if (run->ps->response != NULL)
				return mcp_output(run);
			build_mcp_request(run, NULL, NULL, false);
			return NULL;

		case ALLMA_STEP_FILE_DOWNLOAD:
			if (run->ps->response != NULL)
				return file_output(run);
			build_file_request(run);
			return NULL;

		case ALLMA_STEP_POLL_EXTERNAL_API:
			if (run->ps->response != NULL)
			{
				Jsonb	   *out = poll_output(run);

				if (out == NULL)
					run->io = false;	/* poll again later: see run_step */
				return out;
			}
			send_poll(run);
			return NULL;

		case ALLMA_STEP_EMAIL:
			if (run->ps->response != NULL)
				return email_output(run);
			build_email(run);
			return NULL;

		case ALLMA_STEP_LLM_INVOCATION:
			if (run->ps->response != NULL)
				return llm_output(run);
			build_llm_request(run, 0);
			return NULL;

		case ALLMA_STEP_PARALLEL_FORK_MANAGER:
			if (run->ps->joining)
				return aggregate(run);
			return start_fork(run);

		case ALLMA_STEP_OTHER:
			break;
	}
	ereport(ERROR,
			(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
			 errmsg("step type \"%s\" is not supported by allma %s",
					step->type_name, ALLMA_VERSION),
			 errdetail("Step \"%s\" cannot run.", step->id),
			 errhint("See the README for the step types this version runs.")));
	return NULL;				/* keep compiler quiet */
}

/*
 * dispatch runs the step's type.  The output of a step that completes from
 * a response (HTTP, LLM, MCP, mail) has secret values redacted: a server
 * may echo the credentials it was sent, and the output goes into the
 * context and the history.
 */
static Jsonb *
dispatch(StepRun *run)
{
	Jsonb	   *output = dispatch_step(run);

	if (run->ps->response != NULL && output != NULL)
		output = allma_secret_redact_jsonb(output);
	return output;
}

static void
validate_output(StepRun *run)
{
	List	   *fields = allma_jsonb_array_elements(run->step->required_fields);
	ListCell   *lc;

	foreach(lc, fields)
	{
		JsonbValue	v;
		Jsonb	   *found;
		char	   *path;

		if (!allma_jsonb_scalar(lfirst(lc), &v) || v.type != jbvString)
			continue;
		path = pnstrdup(v.val.string.val, v.val.string.len);
		found = allma_path_get(run->output, path);
		if (found == NULL || (allma_jsonb_scalar(found, &v) && v.type == jbvNull))
			ereport(ERROR,
					(errcode(ERRCODE_ALLMA_CONTENT_ERROR),
					 errmsg("output of step \"%s\" lacks required field \"%s\"",
							run->step->id, path)));
	}
}

/* apply_output_mappings writes run->output into run->context */
static void
apply_output_mappings(StepRun *run)
{
	AllmaStep  *step = run->step;
	List	   *keys;
	ListCell   *lc;

	if (step->output_mappings == NULL)
	{
		Jsonb	   *sink = allma_jsonb_get(run->context, "steps_output");

		sink = allma_jsonb_set_key(allma_jsonb_is_object(sink) ? sink : NULL,
								   step->id, run->output);
		run->context = allma_jsonb_set_key(run->context, "steps_output", sink);
		return;
	}

	keys = allma_jsonb_object_keys(step->output_mappings);
	foreach(lc, keys)
	{
		char	   *target = lfirst(lc);
		char	   *source = allma_jsonb_get_cstring(step->output_mappings, target);
		Jsonb	   *v;

		if (source == NULL)
			continue;
		if (strcmp(source, "$") == 0 || strcmp(source, "$.") == 0)
			v = run->output;
		else
		{
			v = allma_path_get(run->output, source);
			/* Allma's "smart fallback": a path missing from the output is read from the input */
			if (v == NULL && run->input != NULL)
				v = allma_path_get(run->input, source);
		}
		if (v != NULL)
			run->context = allma_path_set(run->context, target, v);
	}
}

/* take_edge counts a traversal of an edge against its loop guard */
static void
take_edge(StepRun *run, const char *edge, int max_transitions)
{
	double		count = 0;

	(void) allma_jsonb_get_number(run->counts, edge, &count);
	if (max_transitions > 0 && count >= max_transitions)
		ereport(ERROR,
				(errcode(ERRCODE_ALLMA_PERMANENT_STEP_ERROR),
				 errmsg("Infinite loop prevented: edge \"%s\" of step \"%s\" was already taken %d times",
						edge, run->step->id, (int) count),
				 errhint("Raise maxTransitions or defaultNextMaxTransitions on step \"%s\" (0 means unlimited).",
						 run->step->id)));
	run->counts = allma_jsonb_set_key(run->counts, edge, allma_jsonb_int((int64) count + 1));
}

static void
resolve_transition(StepRun *run)
{
	AllmaStep  *step = run->step;

	run->next_step = NULL;
	if (step->type == ALLMA_STEP_END_FLOW)
	{
		run->end_flow = true;
		return;
	}
	for (int i = 0; i < step->ntransitions; i++)
	{
		AllmaTransition *t = &step->transitions[i];

		if (allma_condition_eval(t->condition, run->context))
		{
			take_edge(run, psprintf("%s_transition_%d", step->id, i), t->max_transitions);
			run->next_step = t->next_step;
			return;
		}
	}
	if (step->default_next != NULL)
	{
		take_edge(run, psprintf("%s_default", step->id), step->default_max_transitions);
		run->next_step = step->default_next;
	}
}

static void
check_context_size(StepRun *run)
{
	if (VARSIZE(run->context) > allma_max_context_bytes)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("execution context of %zu bytes exceeds allma.max_context_size (%d bytes)",
						(size_t) VARSIZE(run->context), allma_max_context_bytes),
				 errdetail("Step \"%s\" produced the oversized context.", run->step->id),
				 errhint("Map only the fields you need with outputMappings.")));
}

/* the part of a step that ends it: mappings, transitions, size check */
static void
finish_step(StepRun *run)
{
	run->context = run->ps->context;
	run->counts = run->ps->transition_counts;
	if (run->step->type != ALLMA_STEP_END_FLOW)
		apply_output_mappings(run);
	resolve_transition(run);
	check_context_size(run);
}

void
allma_engine_http_request(AllmaPathState *ps, AllmaHttpRequest *r)
{
	Jsonb	   *req = ps->io_request;
	double		timeout_ms = 0;
	double		max_bytes = 0;

	memset(r, 0, sizeof(*r));
	r->url = ps->io_send_url ? ps->io_send_url : allma_jsonb_get_cstring(req, "url");
	r->body = allma_jsonb_get_cstring(req, "body");
	if (allma_jsonb_get(req, "mailFrom") != NULL)
	{
		/* an EMAIL step's message, see build_email */
		List	   *rcpt = allma_jsonb_array_elements(allma_jsonb_get(req, "rcpt"));
		const char **addrs = palloc(sizeof(char *) * Max(list_length(rcpt), 1));
		ListCell   *lc;

		foreach(lc, rcpt)
			addrs[r->nmail_rcpt++] = allma_jsonb_to_display_text(lfirst(lc));
		r->mail_from = allma_jsonb_get_cstring(req, "mailFrom");
		r->mail_rcpt = addrs;
		r->body = ps->io_send_body ? ps->io_send_body : allma_jsonb_get_cstring(req, "message");
		if (ps->io_send_password != NULL)
		{
			r->username = allma_smtp_username;
			r->password = ps->io_send_password;
		}
	}
	else
	{
		Jsonb	   *hdrs = ps->io_send_headers ? ps->io_send_headers : allma_jsonb_get(req, "headers");
		List	   *names = allma_jsonb_object_keys(hdrs);
		AllmaHttpHeader *headers = palloc(sizeof(AllmaHttpHeader) * Max(list_length(names), 1));
		ListCell   *lc;

		foreach(lc, names)
		{
			headers[r->nheaders].name = lfirst(lc);
			headers[r->nheaders].value =
				allma_jsonb_to_display_text(allma_jsonb_get(hdrs, lfirst(lc)));
			r->nheaders++;
		}
		r->headers = headers;
		r->method = allma_jsonb_get_cstring(req, "method");
		r->idempotency_key = allma_jsonb_get_cstring(req, "idempotencyKey");
		(void) allma_jsonb_get_number(req, "timeoutMs", &timeout_ms);
		r->timeout_ms = (long) timeout_ms;
		if (allma_jsonb_get_number(req, "maxResponseBytes", &max_bytes) && max_bytes > 0)
			r->max_response_bytes = (size_t) max_bytes;
	}
	r->body_len = r->body ? strlen(r->body) : 0;
}

/*
 * check_io_request: the request a step is about to leave for the worker
 * must be one the HTTP client accepts (a header value rendered from the
 * context may hold a line break, say); if not, the step fails now, in its
 * transaction, instead of the worker failing to send it.
 */
static void
check_io_request(StepRun *run)
{
	AllmaHttpRequest r;
	char	   *error = NULL;
	char	   *detail = NULL;

	allma_engine_http_request(run->ps, &r);
	if (!allma_http_check_request(&r, &error, &detail))
		raise_http_error(ALLMA_ERR_PERMANENT,
						 psprintf("step \"%s\" cannot send its request: %s%s%s", run->step->id,
								  error, detail ? " " : "", detail ? detail : ""),
						 allma_jsonb_empty_object());
}

static void
attempt_step(StepRun *run)
{
	build_input(run);
	run->output = dispatch(run);
	if (run->io)
		check_io_request(run);
	if (run->forked || run->io || run->repoll_ms > 0 ||
		(run->step->type == ALLMA_STEP_POLL_EXTERNAL_API && run->output == NULL))
		return;
	if (run->output == NULL)
		run->output = allma_jsonb_null();
	if (run->step->required_fields != NULL)
		validate_output(run);
	finish_step(run);
}

static void
finish_with_error_output(StepRun *run)
{
	run->output = run->error;
	finish_step(run);
}

static Jsonb *
copy_jsonb(Jsonb *jb)
{
	Jsonb	   *copy;

	if (jb == NULL)
		return NULL;
	copy = palloc(VARSIZE(jb));
	memcpy(copy, jb, VARSIZE(jb));
	return copy;
}

static char *
copy_str(const char *s)
{
	return s ? pstrdup(s) : NULL;
}

static Jsonb *
find_catch(AllmaStep *step, const char *name, char **next, char **result_path)
{
	Jsonb	   *rules = step->on_error ? allma_jsonb_get(step->on_error, "catch") : NULL;
	ListCell   *lc;
	List	   *elems = allma_jsonb_array_elements(rules);

	foreach(lc, elems)
	{
		Jsonb	   *rule = lfirst(lc);
		List	   *names = allma_jsonb_array_elements(allma_jsonb_get(rule, "errorEquals"));
		ListCell   *lc2;
		bool		match = names == NIL;

		foreach(lc2, names)
		{
			JsonbValue	v;

			if (allma_jsonb_scalar(lfirst(lc2), &v) && v.type == jbvString)
			{
				char	   *n = pnstrdup(v.val.string.val, v.val.string.len);

				if (strcmp(n, name) == 0 || strcmp(n, "States.ALL") == 0)
					match = true;
			}
		}
		if (match)
		{
			*next = allma_jsonb_get_cstring(rule, "nextStepInstanceId");
			*result_path = allma_jsonb_get_cstring(rule, "resultPath");
			if (*result_path == NULL)
				*result_path = "$.errorInfo";
			return rule;
		}
	}
	return NULL;
}

/*
 * move_to sets the path's cursor to the first attempt of next_step (or ends
 * the path), due after the current step's "after" delay and the next
 * step's "before" delay.
 */
static void
move_to(AllmaPathState *ps, AllmaStep *from, const char *next_step, TimestampTz now)
{
	int64		delay_ms = allma_step_delay_ms(from, false);

	if (next_step == NULL)
	{
		ps->step_id = NULL;
		ps->ended = true;
		return;
	}
	delay_ms += allma_step_delay_ms(allma_flow_step(ps->flow, next_step), true);
	ps->step_id = pstrdup(next_step);
	ps->attempt = 1;
	ps->due_at = TimestampTzPlusMilliseconds(now, delay_ms);
}

static void
fail_path(AllmaPathState *ps, Jsonb *error)
{
	ps->step_id = NULL;
	ps->ended = true;
	ps->failed = true;
	ps->error = error;
}

/*
 * run_step runs one attempt of the path's current step and decides what
 * comes next.  Allocates in CurrentMemoryContext (the step context); the
 * caller copies out what must survive.
 */
static AllmaStepRecord *
run_step(AllmaPathState *ps, AllmaStep *step, MemoryContext pathcxt)
{
	StepRun		run;
	ErrorData  *edata;
	AllmaStepRecord *rec = palloc0(sizeof(AllmaStepRecord));
	TimestampTz now;

	memset(&run, 0, sizeof(run));
	run.ps = ps;
	run.step = step;
	run.default_error_name = ALLMA_ERR_PERMANENT;
	run.pathcxt = pathcxt;

	rec->seq = ++ps->seq;
	rec->step_id = step->id;
	rec->step_type = step->type_name;
	rec->attempt = ps->attempt;
	rec->started_at = GetCurrentTimestamp();

	edata = run_guarded(attempt_step, &run);
	now = GetCurrentTimestamp();
	rec->ended_at = now;
	rec->input = run.input;

	/* a join attempt ends the fork whatever its outcome */
	if (ps->joining)
		ps->joining = false;

	if (edata == NULL && run.step->type == ALLMA_STEP_POLL_EXTERNAL_API &&
		!run.io && run.output == NULL)
	{
		/* not done yet: the next poll is a durable timer */
		rec->status = "POLLING";
		rec->details = run.details;
		ps->due_at = TimestampTzPlusMilliseconds(now, run.repoll_ms);
		return rec;
	}

	if (edata == NULL && run.io)
	{
		/* sent after this pass commits; recorded when the response is in */
		ps->seq--;
		ps->inflight = true;
		return NULL;
	}

	if (edata == NULL && run.forked)
	{
		/* the branches start when this pass commits; the step is recorded at the join */
		ps->seq--;
		ps->waiting = true;
		return NULL;
	}

	if (edata == NULL)
	{
		rec->status = "COMPLETED";
		if (run.details != NULL)
			rec->details = run.details;
		ps->last_output = run.output;
		rec->output = run.output;
		rec->next_step = run.next_step;
		ps->context = run.context;
		ps->transition_counts = run.counts;
		move_to(ps, step, run.end_flow ? NULL : run.next_step, now);
		return rec;
	}

	/* the attempt failed */
	{
		Jsonb	   *error = allma_error_from_edata(edata, run.default_error_name, step->id);
		char	   *name = allma_error_name(error);
		const char *policy;
		int64		delay_ms;
		char	   *catch_next = NULL;
		char	   *result_path = NULL;
		bool		continue_on_failure = false;
		char	   *fallback;

		FreeErrorData(edata);
		rec->error = error;

		delay_ms = allma_retry_delay_ms(step, name, ps->attempt, error, &policy);
		if (delay_ms >= 0)
		{
			rec->status = "RETRYING";
			rec->details = allma_jsonb_set_key(allma_jsonb_set_key(NULL, "retryPolicy",
																   allma_jsonb_string(policy)),
											   "retryInMs", allma_jsonb_int(delay_ms));
			ps->attempt++;
			ps->due_at = TimestampTzPlusMilliseconds(now, delay_ms);
			return rec;
		}

		rec->status = "FAILED";
		if (find_catch(step, name, &catch_next, &result_path) != NULL && catch_next != NULL)
		{
			ps->context = allma_path_set(ps->context, result_path, error);
			rec->next_step = catch_next;
			rec->details = allma_jsonb_set_key(NULL, "caughtBy", allma_jsonb_string("onError.catch"));
			move_to(ps, step, catch_next, now);
			return rec;
		}

		if (step->on_error != NULL)
			(void) allma_jsonb_get_bool(step->on_error, "continueOnFailure", &continue_on_failure);
		if (continue_on_failure)
		{
			ErrorData  *edata2;

			run.error = error;
			edata2 = run_guarded(finish_with_error_output, &run);
			if (edata2 == NULL)
			{
				rec->status = "COMPLETED";
				rec->output = error;
				ps->last_output = error;
				rec->next_step = run.next_step;
				rec->details = allma_jsonb_set_key(NULL, "continuedOnFailure", allma_jsonb_bool(true));
				ps->context = run.context;
				ps->transition_counts = run.counts;
				move_to(ps, step, run.end_flow ? NULL : run.next_step, now);
				return rec;
			}
			/* the error output could not even be mapped: the path fails */
			error = allma_error_from_edata(edata2, ALLMA_ERR_PERMANENT, step->id);
			rec->error = error;
			fail_path(ps, error);
			return rec;
		}

		fallback = step->on_error ? allma_jsonb_get_cstring(step->on_error, "fallbackStepInstanceId") : NULL;
		if (fallback != NULL)
		{
			rec->next_step = fallback;
			rec->details = allma_jsonb_set_key(NULL, "caughtBy",
											   allma_jsonb_string("onError.fallbackStepInstanceId"));
			move_to(ps, step, fallback, now);
			return rec;
		}

		fail_path(ps, error);
		return rec;
	}
}

/* copy_record copies a record made in the step context into CurrentMemoryContext */
static AllmaStepRecord *
copy_record(AllmaStepRecord *src, bool logs)
{
	AllmaStepRecord *rec = palloc(sizeof(AllmaStepRecord));

	*rec = *src;
	rec->step_id = copy_str(src->step_id);
	rec->step_type = copy_str(src->step_type);
	rec->next_step = copy_str(src->next_step);
	rec->input = logs ? copy_jsonb(src->input) : NULL;
	rec->output = logs ? copy_jsonb(src->output) : NULL;
	rec->error = copy_jsonb(src->error);
	rec->details = copy_jsonb(src->details);
	return rec;
}

void
allma_engine_advance(AllmaPathState *ps, int max_steps)
{
	MemoryContext pathcxt = CurrentMemoryContext;
	MemoryContext stepcxt = AllocSetContextCreate(pathcxt, "allma step",
												  ALLOCSET_DEFAULT_SIZES);

	while (!ps->ended && !ps->waiting && !ps->inflight && ps->steps_run < max_steps)
	{
		AllmaStep  *step = allma_flow_step(ps->flow, ps->step_id);
		AllmaStepRecord *rec;
		Jsonb	   *context_before = ps->context;
		Jsonb	   *counts_before = ps->transition_counts;
		Jsonb	   *output_before = ps->last_output;

		CHECK_FOR_INTERRUPTS();

		if (step == NULL)
		{
			/* cannot happen for a validated definition, but never loop on it */
			fail_path(ps, allma_error_make(ALLMA_ERR_CONFIG,
										   psprintf("step \"%s\" does not exist in flow \"%s\" version %d",
													ps->step_id ? ps->step_id : "(null)",
													ps->flow->flow_id, ps->flow->version),
										   NULL));
			break;
		}

		MemoryContextSwitchTo(stepcxt);
		rec = run_step(ps, step, pathcxt);
		MemoryContextSwitchTo(pathcxt);

		if (rec != NULL)
			ps->records = lappend(ps->records, copy_record(rec, ps->logs));
		/* a response is consumed by the step it answers */
		ps->response = NULL;
		if (ps->last_output != output_before)
			ps->last_output = copy_jsonb(ps->last_output);
		if (ps->context != context_before)
			ps->context = copy_jsonb(ps->context);
		if (ps->transition_counts != counts_before)
			ps->transition_counts = copy_jsonb(ps->transition_counts);
		ps->error = copy_jsonb(ps->error);
		ps->step_id = copy_str(ps->step_id);
		ps->steps_run++;
		if (ps->ended && ps->is_branch && !ps->failed)
			ps->result = branch_result(ps);
		MemoryContextReset(stepcxt);

		/* chain only into steps that are due now */
		if (ps->due_at > GetCurrentTimestamp())
			break;
	}
	MemoryContextDelete(stepcxt);
}
