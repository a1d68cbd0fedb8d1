/*-------------------------------------------------------------------------
 *
 * bundle_export.c
 *	  allma_export(flow_ids text[]): an Allma export bundle
 *	  {formatVersion, exportedAt, flows, promptTemplates, agents,
 *	  stepDefinitions} of the named flows (NULL: every flow the caller may
 *	  see), with what they depend on, that Allma and allma_import read.
 *
 * Everything is read as the caller, through row-level security: a role
 * exports only the flows, prompts, agents and step definitions it may
 * see.  A named flow it may not see is reported as not existing (as the
 * other API functions do); a prompt or step definition a flow uses but the
 * caller may not see is left out with a WARNING.
 *
 * What goes in: every stored version of each flow, with isPublished set on
 * the published one; the flows that START_SUB_FLOW / START_FLOW_EXECUTION
 * steps name with a fixed id or a flow variable (followed recursively, as
 * Allma's export does); every version of the prompt templates that LLM_INVOCATION steps
 * name; the step definitions steps name; the agents that list an exported
 * flow.  Flow definitions are exported as stored (placeholders filled by
 * the import stay filled; steps keep their stepDefinitionId with the
 * definition's fields merged in, which Allma's import merges again to the
 * same result).
 *
 * IDENTIFICATION
 *	  src/bundle_export.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "utils/array.h"
#include "utils/builtins.h"

#include "acl.h"
#include "bundle.h"
#include "jsonb_util.h"

PG_FUNCTION_INFO_V1(allma_export);

typedef struct ExportState
{
	MemoryContext cxt;			/* where results are kept (outside SPI) */
	List	   *flow_ids;		/* to export, in order; grows while following */
	List	   *prompt_ids;
	List	   *stepdef_ids;
	Jsonb	   *flows;
	Jsonb	   *prompts;
	Jsonb	   *stepdefs;
	Jsonb	   *agents;
} ExportState;

static bool
list_has(List *l, const char *s)
{
	ListCell   *lc;

	foreach(lc, l)
		if (strcmp(lfirst(lc), s) == 0)
			return true;
	return false;
}

static List *
add_unique(List *l, const char *s, MemoryContext cxt)
{
	if (s == NULL || s[0] == '\0' || list_has(l, s) || strstr(s, "{{") != NULL)
		return l;
	return lappend(l, MemoryContextStrdup(cxt, s));
}

/* runs a read-only query as the caller (SPI connected) */
static void
read_as_caller(const char *sql, int nargs, Oid *types, Datum *values)
{
	int			rc = SPI_execute_with_args(sql, nargs, types, values, NULL, true, 0);

	if (rc != SPI_OK_SELECT)
		elog(ERROR, "allma_export: query failed: %s", SPI_result_code_string(rc));
}

static Jsonb *
copy_jsonb_col(int row, int col, bool *isnull, MemoryContext cxt)
{
	Datum		d = SPI_getbinval(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, col, isnull);
	MemoryContext old;
	Jsonb	   *j;

	if (*isnull)
		return NULL;
	old = MemoryContextSwitchTo(cxt);
	j = DatumGetJsonbPCopy(d);
	MemoryContextSwitchTo(old);
	return j;
}

/*
 * static_flow_id: a started flow's id, fixed or "{{flow_variables.X}}"
 * naming a variable of the flow (NULL: computed at run time)
 */
static char *
static_flow_id(char *id, Jsonb *flow_vars)
{
	char	   *name;
	char	   *end;

	if (id == NULL || strncmp(id, "{{", 2) != 0)
		return id;
	name = id + 2;
	while (*name == ' ')
		name++;
	if (strncmp(name, "flow_variables.", 15) != 0)
		return NULL;
	name = pstrdup(name + 15);
	end = strstr(name, "}}");
	if (end == NULL || end[2] != '\0')
		return NULL;
	while (end > name && end[-1] == ' ')
		end--;
	*end = '\0';
	return allma_jsonb_get_cstring(flow_vars, name);
}

/* what one step of an exported flow depends on */
static void
note_dependencies(ExportState *es, Jsonb *step, Jsonb *flow_vars)
{
	char	   *type = allma_jsonb_get_cstring(step, "stepType");
	Jsonb	   *cfg = allma_jsonb_get(step, "customConfig");

	es->stepdef_ids = add_unique(es->stepdef_ids, allma_jsonb_get_cstring(step, "stepDefinitionId"),
								 es->cxt);
	if (type == NULL)
		return;
	if (strcmp(type, "LLM_INVOCATION") == 0)
		es->prompt_ids = add_unique(es->prompt_ids, allma_jsonb_get_cstring(step, "promptTemplateId"),
									es->cxt);
	else if (strcmp(type, "START_SUB_FLOW") == 0)
		es->flow_ids = add_unique(es->flow_ids,
								  static_flow_id(allma_jsonb_get_cstring(step, "subFlowDefinitionId"),
												 flow_vars), es->cxt);
	else if (strcmp(type, "START_FLOW_EXECUTION") == 0)
	{
		char	   *id = allma_jsonb_get_cstring(step, "flowDefinitionId");

		if (id == NULL)
			id = allma_jsonb_get_cstring(cfg, "flowDefinitionId");
		es->flow_ids = add_unique(es->flow_ids, static_flow_id(id, flow_vars), es->cxt);
	}
}

/*
 * export_flow: every version of flow id the caller may see; false when it
 * sees none
 */
static bool
export_flow(ExportState *es, const char *id)
{
	Oid			types[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(id)};
	uint64		n;

	read_as_caller("SELECT v.definition, v.version = f.published_version "
				   "FROM allma.flows f JOIN allma.flow_versions v USING (flow_id) "
				   "WHERE f.flow_id = $1 ORDER BY v.version",
				   1, types, values);
	n = SPI_processed;
	if (n == 0)
		return false;
	{
		SPITupleTable *tuples = SPI_tuptable;

		for (uint64 i = 0; i < n; i++)
		{
			bool		isnull;
			Jsonb	   *def;
			bool		published;
			Jsonb	   *steps;
			List	   *keys;
			ListCell   *lc;
			MemoryContext old;

			def = copy_jsonb_col(i, 1, &isnull, es->cxt);
			published = DatumGetBool(SPI_getbinval(tuples->vals[i], tuples->tupdesc, 2, &isnull));
			if (isnull)
				published = false;
			old = MemoryContextSwitchTo(es->cxt);
			def = allma_jsonb_set_key(def, "isPublished", allma_jsonb_bool(published));
			es->flows = allma_jsonb_array_append(es->flows, def);
			steps = allma_jsonb_get(def, "steps");
			keys = allma_jsonb_object_keys(steps);
			foreach(lc, keys)
				note_dependencies(es, allma_jsonb_get(steps, lfirst(lc)),
								  allma_jsonb_get(def, "flowVariables"));
			MemoryContextSwitchTo(old);
		}
	}
	return true;
}

static void
export_prompt(ExportState *es, const char *id)
{
	Oid			types[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(id)};

	read_as_caller("SELECT t.version, t.content, t.description, t.version = p.published_version, "
				   "to_char(t.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), "
				   "t.bundle_attributes "
				   "FROM allma.prompts p JOIN allma.prompt_templates t USING (prompt_id) "
				   "WHERE p.prompt_id = $1 ORDER BY t.version",
				   1, types, values);
	if (SPI_processed == 0)
	{
		ereport(WARNING,
				(errmsg("prompt template \"%s\" is not exported", id),
				 errdetail("A flow of the bundle uses it, but it does not exist or you may not read it.")));
		return;
	}
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		char	   *description = SPI_getvalue(tup, desc, 3);
		bool		published = DatumGetBool(SPI_getbinval(tup, desc, 4, &isnull)) && !isnull;
		char	   *content = SPI_getvalue(tup, desc, 2);
		char	   *created = SPI_getvalue(tup, desc, 5);
		int32		version = DatumGetInt32(SPI_getbinval(tup, desc, 1, &isnull));
		Jsonb	   *attributes = copy_jsonb_col(i, 6, &isnull, es->cxt);
		MemoryContext old = MemoryContextSwitchTo(es->cxt);
		/* the bundle's other fields (name, tags, timestamps), then the columns */
		Jsonb	   *p = attributes ? attributes : allma_jsonb_empty_object();

		p = allma_jsonb_set_key(p, "id", allma_jsonb_string(id));
		if (!allma_jsonb_has_key(p, "name"))
			p = allma_jsonb_set_key(p, "name", allma_jsonb_string(id));
		if (description != NULL)
			p = allma_jsonb_set_key(p, "description", allma_jsonb_string(description));
		p = allma_jsonb_set_key(p, "content", allma_jsonb_string(content));
		p = allma_jsonb_set_key(p, "version", allma_jsonb_int(version));
		p = allma_jsonb_set_key(p, "isPublished", allma_jsonb_bool(published));
		if (!allma_jsonb_has_key(p, "createdAt"))
			p = allma_jsonb_set_key(p, "createdAt", allma_jsonb_string(created));
		es->prompts = allma_jsonb_array_append(es->prompts, p);
		MemoryContextSwitchTo(old);
	}
}

static void
export_step_definition(ExportState *es, const char *id)
{
	Oid			types[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(id)};
	bool		isnull;
	Jsonb	   *def;
	MemoryContext old;

	read_as_caller("SELECT definition FROM allma.step_definitions WHERE step_definition_id = $1",
				   1, types, values);
	if (SPI_processed == 0)
	{
		/* Allma's built-ins ("system-...") are no stored definitions */
		if (strncmp(id, "system-", 7) != 0)
			ereport(WARNING,
					(errmsg("step definition \"%s\" is not exported", id),
					 errdetail("A step uses it, but it does not exist or you may not read it.")));
		return;
	}
	def = copy_jsonb_col(0, 1, &isnull, es->cxt);
	old = MemoryContextSwitchTo(es->cxt);
	es->stepdefs = allma_jsonb_array_append(es->stepdefs, def);
	MemoryContextSwitchTo(old);
}

/* the agents (visible to the caller) that list an exported flow */
static void
export_agents(ExportState *es)
{
	Datum	   *elems;
	int			n = list_length(es->flow_ids);
	int			i = 0;
	ListCell   *lc;
	Oid			types[1] = {TEXTARRAYOID};
	Datum		values[1];

	elems = palloc(sizeof(Datum) * (n + 1));
	foreach(lc, es->flow_ids)
		elems[i++] = CStringGetTextDatum(lfirst(lc));
	values[0] = PointerGetDatum(construct_array(elems, n, TEXTOID, -1, false, TYPALIGN_INT));
	read_as_caller("SELECT definition FROM allma.agents WHERE flow_ids && $1 ORDER BY agent_id",
				   1, types, values);
	for (uint64 r = 0; r < SPI_processed; r++)
	{
		bool		isnull;
		Jsonb	   *def = copy_jsonb_col(r, 1, &isnull, es->cxt);
		MemoryContext old = MemoryContextSwitchTo(es->cxt);

		es->agents = allma_jsonb_array_append(es->agents, def);
		MemoryContextSwitchTo(old);
	}
}

Datum
allma_export(PG_FUNCTION_ARGS)
{
	ExportState es;
	List	   *requested = NIL;
	ListCell   *lc;
	Jsonb	   *bundle;
	char	   *now;

	if (!allma_bundle_tables_exist() || !allma_acl_enforced())
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("allma_export needs the schema of allma 1.1"),
				 errhint("Run ALTER EXTENSION allma UPDATE.")));
	memset(&es, 0, sizeof(es));
	es.cxt = CurrentMemoryContext;
	es.flows = es.prompts = es.stepdefs = es.agents = allma_jsonb_empty_array();

	if (!PG_ARGISNULL(0))
	{
		ArrayType  *arr = PG_GETARG_ARRAYTYPE_P(0);
		Datum	   *elems;
		bool	   *nulls;
		int			n;

		if (ARR_NDIM(arr) > 1)
			ereport(ERROR,
					(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
					 errmsg("flow_ids must be a one-dimensional array")));
		deconstruct_array(arr, TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, &n);
		if (n > ALLMA_BUNDLE_MAX_OBJECTS)
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("allma_export takes at most %d flow ids", ALLMA_BUNDLE_MAX_OBJECTS)));
		for (int i = 0; i < n; i++)
		{
			if (nulls[i])
				ereport(ERROR,
						(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
						 errmsg("flow_ids must not contain nulls")));
			requested = add_unique(requested, TextDatumGetCString(elems[i]), es.cxt);
		}
	}

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	/* results are built in the function's context, not SPI's */
	MemoryContextSwitchTo(es.cxt);
	read_as_caller("SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')",
				   0, NULL, NULL);
	now = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	if (PG_ARGISNULL(0))
	{
		/* every flow the caller may see */
		read_as_caller("SELECT flow_id FROM allma.flows f WHERE EXISTS "
					   "(SELECT FROM allma.flow_versions v WHERE v.flow_id = f.flow_id) "
					   "ORDER BY flow_id", 0, NULL, NULL);
		for (uint64 i = 0; i < SPI_processed; i++)
			requested = add_unique(requested,
								   SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1),
								   es.cxt);
	}
	es.flow_ids = list_copy(requested);

	/* the flows, then those their steps start (the list grows meanwhile) */
	for (int i = 0; i < list_length(es.flow_ids); i++)
	{
		const char *id = list_nth(es.flow_ids, i);

		if (!export_flow(&es, id))
		{
			if (list_has(requested, id))
				allma_acl_unknown(ALLMA_OBJ_FLOW, id);
			ereport(WARNING,
					(errmsg("flow \"%s\" is not exported", id),
					 errdetail("A step of an exported flow starts it, but it does not exist or you may not read it.")));
			es.flow_ids = list_delete_nth_cell(es.flow_ids, i--);
		}
	}
	foreach(lc, es.prompt_ids)
		export_prompt(&es, lfirst(lc));
	foreach(lc, es.stepdef_ids)
		export_step_definition(&es, lfirst(lc));
	if (es.flow_ids != NIL)
		export_agents(&es);
	SPI_finish();

	bundle = allma_jsonb_empty_object();
	bundle = allma_jsonb_set_key(bundle, "formatVersion", allma_jsonb_string("1.0"));
	bundle = allma_jsonb_set_key(bundle, "exportedAt", allma_jsonb_string(now));
	bundle = allma_jsonb_set_key(bundle, "flows", es.flows);
	bundle = allma_jsonb_set_key(bundle, "promptTemplates", es.prompts);
	bundle = allma_jsonb_set_key(bundle, "agents", es.agents);
	bundle = allma_jsonb_set_key(bundle, "stepDefinitions", es.stepdefs);
	PG_RETURN_JSONB_P(bundle);
}
