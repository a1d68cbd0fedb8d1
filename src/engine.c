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
 * One step, in order:
 *	1. input: inputMappings evaluated over the context (falling back to the
 *	   runtime state), then rendered literals set by dot path;
 *	2. the handler: the step's row in the step-type table (step.c, resolved
 *	   when the flow was cached) gives the function that starts the step,
 *	   or, when the step has a response or joins its fork, the one that
 *	   completes it.  A step that leaves a request for the worker, starts a
 *	   fork or polls again stops here until its next pass;
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
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/resowner.h"

#include "condition.h"
#include "engine.h"
#include "faultpoint.h"
#include "errors.h"
#include "jsonb_util.h"
#include "large_value.h"
#include "lifecycle.h"
#include "path.h"
#include "ratelimit.h"
#include "retry.h"
#include "secret.h"
#include "step.h"
#include "steps/steps.h"
#include "template.h"

typedef void (*guarded_fn) (StepRun *run);

/*
 * allma_engine_guarded runs fn(arg) in a subtransaction.  Returns NULL on
 * success, or the error (copied into the caller's memory context) after
 * rolling back.
 */
ErrorData *
allma_engine_guarded(void (*fn) (void *arg), void *arg)
{
	MemoryContext oldcxt = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;
	ErrorData  *edata = NULL;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(oldcxt);

	PG_TRY();
	{
		fn(arg);
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

static ErrorData *
run_guarded(guarded_fn fn, StepRun *run)
{
	return allma_engine_guarded((void (*) (void *)) fn, run);
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
			v = allma_step_lookup(run, path);
			if (v != NULL)
				input = allma_dotpath_set(input, key, v);
		}
	}
	run->input = input;

	if (step->literals != NULL)
	{
		/* the template context is built only for literals that have templates */
		Jsonb	   *rendered = allma_template_value_needs_render(step->literals) ?
			allma_template_render_value(step->literals, allma_step_template_context(run)) :
			step->literals;
		List	   *keys = allma_jsonb_object_keys(rendered);

		foreach(lc, keys)
		{
			char	   *key = lfirst(lc);

			input = allma_dotpath_set(input, key, allma_jsonb_get(rendered, key));
		}
		run->input = input;
	}
}

/*
 * dispatch runs the step's type: its row's "complete" when the step has a
 * response or joins its fork, else its "start".  The output of a step that
 * completes from a response (HTTP, LLM, MCP, mail) has secret values
 * redacted: a server may echo the credentials it was sent, and the output
 * goes into the context and the history.
 */
static Jsonb *
dispatch(StepRun *run)
{
	const AllmaStepType *type = run->step->type;
	Jsonb	   *output;

	if (type->complete != NULL && (run->ps->response != NULL || run->ps->joining))
		output = type->complete(run);
	else
		output = type->start(run);
	Assert(!run->io || (type->starts & ALLMA_STEP_SENDS));
	Assert(!run->forked || (type->starts & ALLMA_STEP_FORKS));
	Assert(!run->parked || (type->starts & ALLMA_STEP_PARKS));

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
			v = allma_path_get_keep_refs(run->output, source);
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
	if (step->type->flags & ALLMA_STEP_ENDS_FLOW)
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
	if (!(run->step->type->flags & ALLMA_STEP_ENDS_FLOW))
		apply_output_mappings(run);
	if (run->context_writes != NULL)
	{
		ListCell   *lc;

		foreach(lc, allma_jsonb_array_elements(run->context_writes))
			run->context = allma_path_set(run->context,
										  allma_jsonb_to_display_text(allma_jsonb_array_element(lfirst(lc), 0)),
										  allma_jsonb_array_element(lfirst(lc), 1));
	}
	resolve_transition(run);
	run->context = allma_large_offload_context(run->context);
	check_context_size(run);
}

static void
attempt_step(StepRun *run)
{
	build_input(run);
	run->output = dispatch(run);
	/* a big output is stored once; context and history hold its pointer */
	if (run->output != NULL && !run->forked && !run->parked && !run->io)
		run->output = allma_large_offload(run->output);
	if (run->io)
		allma_step_check_io_request(run);
	/* rate limits: the request goes now, or the path parks (ratelimit.c) */
	if (run->io)
		allma_ratelimit_gate(run);
	if (run->forked || run->parked || run->io || run->repoll_ms > 0 ||
		((run->step->type->flags & ALLMA_STEP_POLLS) && run->output == NULL))
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
	run->context_writes = NULL;
	finish_step(run);
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
 * step_start_time: when the current attempt of the path's step began.  A
 * step that resumes in a later pass (its response arrived, its fork
 * joined, the child it waits for ended, its wait for an event was resumed
 * or timed out) began when it first ran: that time
 * is kept in the path's request record as "stepStartedAt" (see
 * keep_step_start).
 */
static TimestampTz
step_start_time(AllmaPathState *ps)
{
	char	   *s;

	if (ps->prev_request != NULL &&
		(ps->response != NULL || ps->joining || allma_jsonb_has_key(ps->prev_request, "wait") ||
		 allma_jsonb_has_key(ps->prev_request, "rateLimit")) &&
		(s = allma_jsonb_get_cstring(ps->prev_request, "stepStartedAt")) != NULL)
		return DatumGetTimestampTz(DirectFunctionCall3(timestamptz_in, CStringGetDatum(s),
													   ObjectIdGetDatum(InvalidOid),
													   Int32GetDatum(-1)));
	return GetCurrentTimestamp();
}

/*
 * keep_step_start records when a step that goes on in a later pass began,
 * in what its path keeps in the request column: the request to send, or
 * the record of what a WAITING path waits for (made in the path's memory
 * context, like the request).
 */
static void
keep_step_start(StepRun *run, TimestampTz started_at)
{
	AllmaPathState *ps = run->ps;
	MemoryContext oldcxt = MemoryContextSwitchTo(run->pathcxt);
	Jsonb	   *when = allma_jsonb_string(allma_timestamp_iso(started_at, true));

	if (ps->inflight)
		ps->io_request = allma_jsonb_set_key(ps->io_request, "stepStartedAt", when);
	else
		ps->wait_record = allma_jsonb_set_key(ps->wait_record, "stepStartedAt", when);
	MemoryContextSwitchTo(oldcxt);
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

	ALLMA_FAULT_POINT_STEP(step->id);	/* test builds: a poison step */
	rec->seq = ++ps->seq;
	rec->step_id = step->id;
	rec->step_type = step->type_name;
	rec->attempt = ps->attempt;
	rec->started_at = step_start_time(ps);
	ps->step_started_at = rec->started_at;
	/* what allma_redrive_execution starts again from (branches: their fork step) */
	rec->context = ps->is_branch ? NULL : ps->context;

	edata = run_guarded(attempt_step, &run);
	now = GetCurrentTimestamp();
	/* a response to a rate-limited request: settle its budget */
	if (ps->response != NULL && ps->prev_request != NULL)
		allma_ratelimit_settle(ps->prev_request, ps->response, run.details);
	rec->ended_at = now;
	rec->input = run.input;

	/* a join attempt ends the fork whatever its outcome */
	if (ps->joining)
		ps->joining = false;

	if (edata == NULL && (step->type->flags & ALLMA_STEP_POLLS) &&
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
		keep_step_start(&run, rec->started_at);
		return NULL;
	}

	if (edata == NULL && (run.forked || run.parked))
	{
		/*
		 * the branches start when this pass commits, a parked path waits to
		 * be woken; the step is recorded when it completes
		 */
		ps->seq--;
		ps->waiting = true;
		keep_step_start(&run, rec->started_at);
		/* a wait for an event is due at its deadline (lifecycle.h) */
		if (run.parked && run.park_until != 0)
			ps->due_at = run.park_until;
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

/*
 * step_budget_exhausted: has the path run allma.max_steps_per_execution
 * step attempts?  Then it fails before it runs another one, and no catch
 * rule applies (a handler would only run more steps).  The budget holds
 * for the main path and for each parallel branch on its own (Allma runs a
 * branch as an execution of its own kind), so a wide fork is not a runaway
 * execution.  A path's attempts are its history rows: ps->seq, committed
 * with the path, never stale.
 */
static bool
step_budget_exhausted(AllmaPathState *ps)
{
	int			limit = allma_max_steps_per_execution;
	Jsonb	   *details;

	/* a step that has started (its response, its join) may finish */
	if (limit <= 0 || ps->seq < limit || ps->response != NULL || ps->joining)
		return false;
	details = allma_jsonb_set_key(NULL, "sqlstate", allma_jsonb_string("LM323"));
	details = allma_jsonb_set_key(details, "failedStepInstanceId", allma_jsonb_string(ps->step_id));
	details = allma_jsonb_set_key(details, "stepCount", allma_jsonb_int(ps->seq));
	details = allma_jsonb_set_key(details, "limit", allma_jsonb_int(limit));
	fail_path(ps, allma_error_make(ALLMA_ERR_STEP_BUDGET,
								   psprintf("%s ran %d steps, the most allma.max_steps_per_execution (%d) allows; step \"%s\" did not run",
											ps->is_branch ? "parallel branch" : "execution",
											ps->seq, limit, ps->step_id),
								   details));
	return true;
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
	rec->input = logs ? allma_step_copy_jsonb(src->input) : NULL;
	rec->output = logs ? allma_step_copy_jsonb(src->output) : NULL;
	rec->context = logs ? allma_step_copy_jsonb(src->context) : NULL;
	rec->error = allma_step_copy_jsonb(src->error);
	rec->details = allma_step_copy_jsonb(src->details);
	return rec;
}

void
allma_engine_advance(AllmaPathState *ps, int max_steps)
{
	MemoryContext pathcxt = CurrentMemoryContext;
	MemoryContext stepcxt = AllocSetContextCreate(pathcxt, "allma step",
												  ALLOCSET_DEFAULT_SIZES);

	/* pointers to out-of-line values resolve within this execution tree */
	allma_large_scope_set(&ps->root_execution_id, &ps->execution_id);
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

		if (step_budget_exhausted(ps))
			break;

		MemoryContextSwitchTo(stepcxt);
		rec = run_step(ps, step, pathcxt);
		MemoryContextSwitchTo(pathcxt);

		if (rec != NULL)
		{
			/* the one place a recorded step attempt is counted */
			ps->records = lappend(ps->records, copy_record(rec, ps->logs));
			ps->step_count++;
		}
		/* a response is consumed by the step it answers */
		ps->response = NULL;
		if (ps->last_output != output_before)
			ps->last_output = allma_step_copy_jsonb(ps->last_output);
		if (ps->context != context_before)
			ps->context = allma_step_copy_jsonb(ps->context);
		if (ps->transition_counts != counts_before)
			ps->transition_counts = allma_step_copy_jsonb(ps->transition_counts);
		ps->error = allma_step_copy_jsonb(ps->error);
		ps->step_id = copy_str(ps->step_id);
		ps->steps_run++;
		if (ps->ended && ps->is_branch && !ps->failed)
			ps->result = allma_fork_branch_result(ps);
		MemoryContextReset(stepcxt);

		/* chain only into steps that are due now */
		if (ps->due_at > GetCurrentTimestamp())
			break;
	}
	allma_large_scope_clear();
	MemoryContextDelete(stepcxt);
}

/*
 * allma_engine_advance_guarded runs allma_engine_advance in a
 * subtransaction, so that an error escaping the per-step guard (the work
 * after a step: a catch rule's resultPath, copying the results out, a
 * branch's result) fails this path alone instead of aborting the worker's
 * whole pass and being claimed again forever.  Everything the path did in
 * this pass is rolled back and forgotten; the path fails at the step it
 * was on with errorName "PathError".  Cancels and shutdowns are not the
 * path's fault: they are thrown on.  See docs/engine-faults.md
 * (t/035_poison_path.pl).
 */
static int	guarded_max_steps;

/* advance_run: allma_engine_advance as a guarded_fn (run->ps only) */
static void
advance_run(StepRun *run)
{
	allma_engine_advance(run->ps, guarded_max_steps);
}

void
allma_engine_advance_guarded(AllmaPathState *ps, int max_steps)
{
	AllmaPathState saved = *ps;
	int			nrecords = list_length(ps->records);
	StepRun		run;
	ErrorData  *edata;

	memset(&run, 0, sizeof(run));
	run.ps = ps;
	guarded_max_steps = max_steps;
	edata = run_guarded(advance_run, &run);
	if (edata == NULL)
		return;

	if (edata->sqlerrcode == ERRCODE_QUERY_CANCELED ||
		edata->sqlerrcode == ERRCODE_ADMIN_SHUTDOWN ||
		edata->sqlerrcode == ERRCODE_T_R_SERIALIZATION_FAILURE ||
		edata->sqlerrcode == ERRCODE_T_R_DEADLOCK_DETECTED)
		ReThrowError(edata);

	*ps = saved;
	if (ps->records != NIL)
		ps->records = list_truncate(ps->records, nrecords);
	ps->steps_run++;
	fail_path(ps, allma_error_make("PathError",
								   psprintf("the work after step \"%s\" failed: %s",
											saved.step_id ? saved.step_id : "(none)",
											edata->message ? edata->message : "unknown error"),
								   NULL));
	FreeErrorData(edata);
}
