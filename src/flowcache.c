/*-------------------------------------------------------------------------
 *
 * flowcache.c
 *	  Parsed flow definitions, cached per process.
 *
 * Flow versions are immutable once stored, so a worker (or backend) parses
 * each (flow_id, version) once into an AllmaFlow, whose steps have their
 * frequently used fields already extracted, and keeps it for the life of
 * the process.  The cache lives in its own memory context and is dropped
 * whole when it holds ALLMA_FLOWCACHE_MAX flows, or when the extension is
 * re-created (allma_flowcache_reset), so it cannot grow without bound.
 *
 * The definitions were validated when stored (validate.c); parsing here is
 * forgiving and never throws for a well-typed definition.
 *
 * IDENTIFICATION
 *	  src/flowcache.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "common/pg_prng.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"

#include "flowcache.h"
#include "jsonb_util.h"
#include "step.h"
#include "steps/completion.h"

#define ALLMA_FLOWCACHE_MAX 1000
#define ALLMA_FLOW_ID_MAX 256

typedef struct FlowKey
{
	char		flow_id[ALLMA_FLOW_ID_MAX];
	int32		version;
} FlowKey;

typedef struct FlowEntry
{
	FlowKey		key;
	AllmaFlow  *flow;
} FlowEntry;

static MemoryContext flowcache_cxt = NULL;
static HTAB *flowcache = NULL;
static SPIPlanPtr load_plan = NULL;

void
allma_flowcache_reset(void)
{
	if (flowcache_cxt != NULL)
		MemoryContextDelete(flowcache_cxt);
	flowcache_cxt = NULL;
	flowcache = NULL;
	if (load_plan != NULL)
		SPI_freeplan(load_plan);
	load_plan = NULL;
}

static void
ensure_cache(void)
{
	HASHCTL		ctl;

	if (flowcache != NULL)
		return;
	flowcache_cxt = AllocSetContextCreate(TopMemoryContext, "allma flow cache",
										  ALLOCSET_DEFAULT_SIZES);
	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(FlowKey);
	ctl.entrysize = sizeof(FlowEntry);
	ctl.hcxt = flowcache_cxt;
	flowcache = hash_create("allma flows", 64, &ctl,
							HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
}

static int
get_int(Jsonb *obj, const char *key, int dflt)
{
	double		d;

	if (allma_jsonb_get_number(obj, key, &d))
		return (int) d;
	return dflt;
}

static Jsonb *
get_object(Jsonb *obj, const char *key)
{
	Jsonb	   *v = allma_jsonb_get(obj, key);

	return allma_jsonb_is_object(v) ? v : NULL;
}

static void
parse_delay(AllmaStep *step)
{
	Jsonb	   *delay = get_object(step->def, "delay");
	double		ms,
				from,
				to;
	char	   *position;

	if (delay == NULL)
		return;
	if (allma_jsonb_get_number(delay, "milliseconds", &ms))
		step->delay_from_ms = step->delay_to_ms = (int64) ms;
	else if (allma_jsonb_get_number(delay, "delayFrom", &from) &&
			 allma_jsonb_get_number(delay, "delayTo", &to))
	{
		step->delay_from_ms = (int64) from;
		step->delay_to_ms = (int64) Max(from, to);
	}
	else
		return;
	position = allma_jsonb_get_cstring(delay, "position");
	step->delay_before = position != NULL && strcmp(position, "before") == 0;
	step->has_delay = step->delay_to_ms > 0;
}

static void
parse_step(AllmaStep *step, const char *id, Jsonb *def)
{
	Jsonb	   *transitions;
	Jsonb	   *validation;

	step->id = pstrdup(id);
	step->def = def;
	step->type_name = allma_jsonb_get_cstring(def, "stepType");
	if (step->type_name == NULL)
		step->type_name = pstrdup("UNKNOWN");
	step->type = allma_step_type_find(step->type_name);
	if (step->type == NULL)
		step->type = &allma_step_type_unknown;
	step->module = allma_jsonb_get_cstring(def, "moduleIdentifier");
	step->builtin = allma_module_for_step(step->type, step->module);
	step->input_mappings = get_object(def, "inputMappings");
	step->output_mappings = get_object(def, "outputMappings");
	step->literals = get_object(def, "literals");
	step->custom_config = get_object(def, "customConfig");
	step->on_error = get_object(def, "onError");
	validation = get_object(def, "outputValidation");
	step->required_fields = validation ? allma_jsonb_get(validation, "requiredFields") : NULL;
	if (!allma_jsonb_is_array(step->required_fields))
		step->required_fields = NULL;

	transitions = allma_jsonb_get(def, "transitions");
	step->ntransitions = 0;
	if (allma_jsonb_is_array(transitions))
	{
		List	   *elems = allma_jsonb_array_elements(transitions);
		ListCell   *lc;

		step->transitions = palloc0(sizeof(AllmaTransition) * Max(list_length(elems), 1));
		foreach(lc, elems)
		{
			Jsonb	   *t = lfirst(lc);
			AllmaTransition *tr = &step->transitions[step->ntransitions];

			tr->condition = allma_jsonb_get_cstring(t, "condition");
			tr->next_step = allma_jsonb_get_cstring(t, "nextStepInstanceId");
			tr->max_transitions = get_int(t, "maxTransitions", 5);
			if (tr->condition != NULL && tr->next_step != NULL)
				step->ntransitions++;
		}
	}
	step->default_next = allma_jsonb_get_cstring(def, "defaultNextStepInstanceId");
	step->default_max_transitions = get_int(def, "defaultNextMaxTransitions", 5);
	parse_delay(step);
}

typedef struct StepCollector
{
	AllmaFlow  *flow;
	int			capacity;
} StepCollector;

static void
collect_step(const char *key, Jsonb *value, void *arg)
{
	StepCollector *c = arg;

	if (!allma_jsonb_is_object(value))
		return;
	if (c->flow->nsteps == c->capacity)
	{
		c->capacity *= 2;
		c->flow->steps = repalloc(c->flow->steps, sizeof(AllmaStep) * c->capacity);
	}
	memset(&c->flow->steps[c->flow->nsteps], 0, sizeof(AllmaStep));
	parse_step(&c->flow->steps[c->flow->nsteps], key, value);
	c->flow->nsteps++;
}

/* parse_flow builds an AllmaFlow in CurrentMemoryContext */
static AllmaFlow *
parse_flow(const char *flow_id, int32 version, Jsonb *def)
{
	AllmaFlow  *flow = palloc0(sizeof(AllmaFlow));
	StepCollector c;
	bool		logs;

	flow->flow_id = pstrdup(flow_id);
	flow->version = version;
	flow->definition = def;
	flow->start_step = allma_jsonb_get_cstring(def, "startStepInstanceId");
	flow->flow_variables = get_object(def, "flowVariables");
	if (flow->flow_variables == NULL)
		flow->flow_variables = allma_jsonb_empty_object();
	flow->enable_logs = allma_jsonb_get_bool(def, "enableExecutionLogs", &logs) ? (logs ? 1 : 0) : -1;

	c.flow = flow;
	c.capacity = 16;
	flow->steps = palloc(sizeof(AllmaStep) * c.capacity);
	allma_jsonb_foreach_key(allma_jsonb_get(def, "steps"), collect_step, &c);

	/* onCompletionActions: each webhook is a step of its own path */
	flow->completion_actions = allma_jsonb_get(def, "onCompletionActions");
	if (!allma_jsonb_is_array(flow->completion_actions) ||
		allma_jsonb_array_length(flow->completion_actions) == 0)
		flow->completion_actions = NULL;
	else
	{
		List	   *actions = allma_jsonb_array_elements(flow->completion_actions);
		ListCell   *lc;

		foreach(lc, actions)
		{
			if (!allma_completion_is_webhook(lfirst(lc)))
				continue;
			if (flow->nsteps == c.capacity)
			{
				c.capacity *= 2;
				flow->steps = repalloc(flow->steps, sizeof(AllmaStep) * c.capacity);
			}
			allma_completion_parse_step(&flow->steps[flow->nsteps++],
										foreach_current_index(lc), lfirst(lc));
		}
	}
	return flow;
}

/*
 * allma_flow_get returns the parsed flow version, loading it with SPI on a
 * cache miss (the caller must be inside a transaction; SPI need not be
 * connected).  NULL when no such version is stored.
 */
AllmaFlow *
allma_flow_get(const char *flow_id, int32 version)
{
	FlowKey		key;
	FlowEntry  *entry;
	bool		found;
	Datum		args[2];
	AllmaFlow  *flow = NULL;
	MemoryContext oldcxt;

	if (strlen(flow_id) >= ALLMA_FLOW_ID_MAX)
		return NULL;

	ensure_cache();
	memset(&key, 0, sizeof(key));
	strlcpy(key.flow_id, flow_id, ALLMA_FLOW_ID_MAX);
	key.version = version;
	entry = hash_search(flowcache, &key, HASH_FIND, NULL);
	if (entry != NULL)
		return entry->flow;

	if (hash_get_num_entries(flowcache) >= ALLMA_FLOWCACHE_MAX)
	{
		allma_flowcache_reset();
		ensure_cache();
	}

	SPI_connect();
	if (load_plan == NULL)
	{
		Oid			types[2] = {TEXTOID, INT4OID};

		load_plan = SPI_prepare("SELECT definition FROM allma.flow_versions "
								"WHERE flow_id = $1 AND version = $2", 2, types);
		if (load_plan == NULL)
			elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
		SPI_keepplan(load_plan);
	}
	args[0] = CStringGetTextDatum(flow_id);
	args[1] = Int32GetDatum(version);
	if (SPI_execute_plan(load_plan, args, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not load flow \"%s\" version %d", flow_id, version);
	if (SPI_processed == 1)
	{
		bool		isnull;
		Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);

		oldcxt = MemoryContextSwitchTo(flowcache_cxt);
		flow = parse_flow(flow_id, version, DatumGetJsonbPCopy(d));
		MemoryContextSwitchTo(oldcxt);

		entry = hash_search(flowcache, &key, HASH_ENTER, &found);
		entry->flow = flow;
	}
	SPI_finish();
	return flow;
}

AllmaStep *
allma_flow_step(AllmaFlow *flow, const char *step_id)
{
	if (step_id == NULL)
		return NULL;
	for (int i = 0; i < flow->nsteps; i++)
	{
		if (strcmp(flow->steps[i].id, step_id) == 0)
			return &flow->steps[i];
	}
	return NULL;
}

/*
 * allma_step_delay_ms: the step's delay in the given position, in ms, scaled
 * by allma.timer_scale (0 when it has none there).
 */
int64
allma_step_delay_ms(AllmaStep *step, bool before)
{
	int64		ms;

	if (step == NULL || !step->has_delay || step->delay_before != before)
		return 0;
	ms = step->delay_from_ms;
	if (step->delay_to_ms > step->delay_from_ms)
		ms += (int64) (pg_prng_double(&pg_global_prng_state) *
					   (step->delay_to_ms - step->delay_from_ms));
	return (int64) (ms * allma_timer_scale);
}
