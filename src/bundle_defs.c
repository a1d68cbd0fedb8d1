/*-------------------------------------------------------------------------
 *
 * bundle_defs.c
 *	  Agents and reusable step definitions, the two kinds of Allma objects
 *	  that only bundles bring (allma_import), as the engine uses them:
 *	  the flowVariables of a flow's agents when an execution starts, and
 *	  the step definitions merged under the steps that name them when a
 *	  flow version is stored.
 *
 * Both tables (allma.agents, allma.step_definitions) are read as the
 * bootstrap superuser; what may be used is decided here from the rows'
 * owners: an agent's variables reach a flow only when the agent's owner
 * holds EDIT on that flow, and a step definition resolves only for a role
 * with its owner's privileges.
 *
 * IDENTIFICATION
 *	  src/bundle_defs.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"

#include "acl.h"
#include "bundle.h"
#include "jsonb_util.h"
#include "owner.h"
#include "step.h"

/* the fields of a stored step definition that are not step fields */
static const char *const step_definition_meta[] = {
	"id", "name", "description", "version", "createdAt", "updatedAt", NULL
};

bool
allma_bundle_tables_exist(void)
{
	Oid			nsp = get_namespace_oid(ALLMA_SCHEMA, true);

	return OidIsValid(nsp) && OidIsValid(get_relname_relid("agents", nsp)) &&
		OidIsValid(get_relname_relid("step_definitions", nsp));
}

Jsonb *
allma_agent_flow_variables(const char *flow_id, bool refuse_inactive)
{
	MemoryContext caller = CurrentMemoryContext;
	AllmaAsOwner st;
	Oid			types[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(flow_id)};
	Jsonb	   *vars = allma_jsonb_empty_object();
	bool		any_enabled = false;
	uint64		n;

	if (!allma_bundle_tables_exist())
		return vars;
	allma_owner_begin(&st);
	allma_owner_exec("SELECT a.flow_variables, a.enabled FROM allma.agents a "
					 "JOIN allma.flows f ON f.flow_id = $1 "
					 "WHERE a.flow_ids @> ARRAY[$1] "
					 "AND (pg_has_role(a.owner::oid, f.owner::oid, 'USAGE') "
					 "OR pg_has_role(a.owner::oid, 'allma_admin', 'USAGE') "
					 "OR EXISTS (SELECT FROM unnest(f.edit_grantees) g "
					 "WHERE pg_has_role(a.owner::oid, g::oid, 'USAGE'))) "
					 "ORDER BY a.agent_id",
					 1, types, values, NULL, SPI_OK_SELECT);
	n = SPI_processed;
	for (uint64 i = 0; i < n; i++)
	{
		bool		isnull;
		Datum		d = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull);
		MemoryContext spi = MemoryContextSwitchTo(caller);

		if (!isnull)
			vars = allma_jsonb_concat(vars, DatumGetJsonbPCopy(d));
		MemoryContextSwitchTo(spi);
		if (DatumGetBool(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2, &isnull)))
			any_enabled = true;
	}
	allma_owner_end(&st);
	if (refuse_inactive && n > 0 && !any_enabled)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("flow \"%s\" is inactive", flow_id),
				 errdetail("Every agent it belongs to is disabled; as in Allma, its executions are not started."),
				 errhint("Enable one of its agents (import the agent again with \"enabled\": true and overwrite => true).")));
	return vars;
}

Jsonb *
allma_jsonb_deep_merge(Jsonb *under, Jsonb *over)
{
	Jsonb	   *result;
	List	   *keys;
	ListCell   *lc;

	if (!allma_jsonb_is_object(under) || !allma_jsonb_is_object(over))
		return over;
	result = under;
	keys = allma_jsonb_object_keys(over);
	foreach(lc, keys)
	{
		const char *key = lfirst(lc);
		Jsonb	   *o = allma_jsonb_get(over, key);
		Jsonb	   *u = allma_jsonb_get(result, key);

		result = allma_jsonb_set_key(result, key, allma_jsonb_deep_merge(u, o));
	}
	return result;
}

/*
 * lookup_step_definition: the fields step definition "id" gives the steps
 * that name it (NULL: none that caller may use).
 */
static Jsonb *
lookup_step_definition(const char *id, Oid caller)
{
	MemoryContext cxt = CurrentMemoryContext;
	AllmaAsOwner st;
	Oid			types[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(id)};
	Jsonb	   *def = NULL;

	allma_owner_begin(&st);
	allma_owner_exec("SELECT definition, owner::oid FROM allma.step_definitions "
					 "WHERE step_definition_id = $1",
					 1, types, values, NULL, SPI_OK_SELECT);
	if (SPI_processed == 1)
	{
		bool		isnull;
		Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
		Oid			owner = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0],
														   SPI_tuptable->tupdesc, 2, &isnull));

		if (allma_acl_is_admin(caller) || has_privs_of_role(caller, owner))
		{
			MemoryContext spi = MemoryContextSwitchTo(cxt);

			def = DatumGetJsonbPCopy(d);
			MemoryContextSwitchTo(spi);
		}
	}
	allma_owner_end(&st);

	if (def != NULL)
	{
		for (int i = 0; step_definition_meta[i]; i++)
			def = allma_jsonb_delete_key(def, step_definition_meta[i]);
		return def;
	}
	/* Allma's built-in step definitions: "system-<module>" */
	if (strncmp(id, "system-", 7) == 0 &&
		allma_module_find(psprintf("system/%s", id + 7)) != NULL)
		return allma_jsonb_set_key(NULL, "moduleIdentifier",
								   allma_jsonb_string(psprintf("system/%s", id + 7)));
	return NULL;
}

Jsonb *
allma_step_definitions_resolve(Jsonb *def, Oid caller, List **unresolved)
{
	Jsonb	   *steps = allma_jsonb_get(def, "steps");
	bool		changed = false;
	List	   *keys;
	ListCell   *lc;

	if (!allma_jsonb_is_object(steps) || !allma_bundle_tables_exist())
		return def;
	keys = allma_jsonb_object_keys(steps);
	foreach(lc, keys)
	{
		const char *key = lfirst(lc);
		Jsonb	   *step = allma_jsonb_get(steps, key);
		char	   *id = allma_jsonb_get_cstring(step, "stepDefinitionId");
		Jsonb	   *base;

		if (id == NULL || id[0] == '\0' || strlen(id) > ALLMA_BUNDLE_MAX_ID_LEN)
			continue;
		base = lookup_step_definition(id, caller);
		if (base == NULL)
		{
			if (unresolved != NULL)
				*unresolved = lappend(*unresolved, pstrdup(key));
			continue;
		}
		steps = allma_jsonb_set_key(steps, key, allma_jsonb_deep_merge(base, step));
		changed = true;
	}
	return changed ? allma_jsonb_set_key(def, "steps", steps) : def;
}
