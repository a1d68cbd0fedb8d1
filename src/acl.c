/*-------------------------------------------------------------------------
 *
 * acl.c
 *	  Ownership and grants of allma's objects (see acl.h): the checks of the
 *	  SQL API and of the steps, the grant and revoke functions, and the
 *	  guard that keeps SQL steps of superuser-started executions from
 *	  running unless allma.allow_superuser_sql_steps says so.
 *
 * SQL functions: allma_grant_flow / allma_revoke_flow (START, EDIT),
 * allma_grant_prompt, allma_grant_secret, allma_grant_module_binding,
 * allma_grant_mcp_connection and their allma_revoke_* (USAGE).  Granting
 * and revoking need the owner's privileges or allma_admin's (secrets: the
 * function is granted to allma_admin only).  The caller is identified
 * before any user switch; the writes then run as the bootstrap superuser.
 *
 * Table, column and key names in the SQL built here come from the static
 * table below, never from arguments; every value is a parameter.
 *
 * IDENTIFICATION
 *	  src/acl.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"

#include "acl.h"
#include "owner.h"
#include "prompt.h"
#include "secret.h"
#include "xactmemo.h"

PG_FUNCTION_INFO_V1(allma_grant_flow);
PG_FUNCTION_INFO_V1(allma_revoke_flow);
PG_FUNCTION_INFO_V1(allma_grant_prompt);
PG_FUNCTION_INFO_V1(allma_revoke_prompt);
PG_FUNCTION_INFO_V1(allma_grant_secret);
PG_FUNCTION_INFO_V1(allma_revoke_secret);
PG_FUNCTION_INFO_V1(allma_grant_module_binding);
PG_FUNCTION_INFO_V1(allma_revoke_module_binding);
PG_FUNCTION_INFO_V1(allma_grant_mcp_connection);
PG_FUNCTION_INFO_V1(allma_revoke_mcp_connection);

typedef struct ObjectKindInfo
{
	const char *noun;			/* in messages */
	const char *table;
	const char *key;			/* primary key column */
	bool		has_owner;		/* an "owner" column */
	int			unknown_errcode;
	const char *unknown_hint;
	const char *grant_function;
} ObjectKindInfo;

static const ObjectKindInfo kinds[] = {
	[ALLMA_OBJ_FLOW] = {"flow", "allma.flows", "flow_id", true,
		ERRCODE_ALLMA_UNKNOWN_FLOW, "Create it with allma_create_flow().", "allma_grant_flow"},
	[ALLMA_OBJ_PROMPT] = {"prompt", "allma.prompts", "prompt_id", true,
		ERRCODE_ALLMA_UNKNOWN_PROMPT, "Create it with allma_create_prompt(prompt_id, content).",
	"allma_grant_prompt"},
	[ALLMA_OBJ_SECRET] = {"secret", "allma.secrets", "name", false,
		ERRCODE_ALLMA_UNKNOWN_SECRET, "Store it with allma_set_secret(name, value).",
	"allma_grant_secret"},
	[ALLMA_OBJ_MODULE_BINDING] = {"module binding", "allma.module_bindings", "pattern", true,
		ERRCODE_UNDEFINED_OBJECT, "Bind it with allma_bind_module or allma_bind_module_http.",
	"allma_grant_module_binding"},
	[ALLMA_OBJ_MCP_CONNECTION] = {"MCP connection", "allma.mcp_connections", "id", true,
		ERRCODE_UNDEFINED_OBJECT, "Create it with allma_create_mcp_connection.",
	"allma_grant_mcp_connection"},
};

/* the grantee column of a privilege on a kind; NULL: only owners hold it */
static const char *
grantee_column(AllmaObjectKind kind, AllmaPrivilege privilege)
{
	switch (privilege)
	{
		case ALLMA_PRIV_START:
			return kind == ALLMA_OBJ_FLOW ? "start_grantees" : NULL;
		case ALLMA_PRIV_EDIT:
			return kind == ALLMA_OBJ_FLOW ? "edit_grantees" : NULL;
		case ALLMA_PRIV_USAGE:
			return kind == ALLMA_OBJ_FLOW ? NULL : "usage_grantees";
		case ALLMA_PRIV_MANAGE:
			break;
	}
	return NULL;
}

bool
allma_acl_enforced(void)
{
	Oid			nsp = get_namespace_oid(ALLMA_SCHEMA, true);
	Oid			flows = OidIsValid(nsp) ? get_relname_relid("flows", nsp) : InvalidOid;

	return OidIsValid(flows) && get_attnum(flows, "owner") != InvalidAttrNumber;
}

bool
allma_acl_is_admin(Oid role)
{
	Oid			admin;

	if (superuser_arg(role))
		return true;
	admin = get_role_oid(ALLMA_ADMIN_ROLE, true);
	return OidIsValid(admin) && has_privs_of_role(role, admin);
}

bool
allma_acl_role_in(Oid role, Datum grantees, bool isnull)
{
	Datum	   *elems;
	bool	   *nulls;
	int			n;

	if (isnull)
		return false;
	deconstruct_array(DatumGetArrayTypeP(grantees), REGROLEOID, sizeof(Oid), true,
					  TYPALIGN_INT, &elems, &nulls, &n);
	for (int i = 0; i < n; i++)
	{
		if (!nulls[i] && has_privs_of_role(role, DatumGetObjectId(elems[i])))
			return true;
	}
	return false;
}

/*
 * holds_privilege reads the object's row (SPI connected, as the owner)
 * and says whether role holds privilege; *found: whether there is a row.
 */
static bool
holds_privilege(AllmaObjectKind kind, const char *id, Oid role, AllmaPrivilege privilege,
				bool lock, bool *found)
{
	const ObjectKindInfo *k = &kinds[kind];
	bool		enforced = allma_acl_enforced();
	const char *column = enforced ? grantee_column(kind, privilege) : NULL;
	Oid			types[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(id)};
	bool		isnull;
	Datum		d;

	allma_owner_exec(psprintf("SELECT %s, %s FROM %s WHERE %s = $1%s",
							  k->has_owner && enforced ? "owner" : "NULL::pg_catalog.regrole",
							  column ? column : "NULL::pg_catalog.regrole[]",
							  k->table, k->key, lock ? " FOR UPDATE" : ""),
					 1, types, values, NULL, SPI_OK_SELECT);
	*found = SPI_processed == 1;
	if (!*found)
		return false;
	if (!enforced || allma_acl_is_admin(role))
		return true;
	if (kind == ALLMA_OBJ_SECRET && privilege == ALLMA_PRIV_MANAGE)
		return true;
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	if (!isnull && has_privs_of_role(role, DatumGetObjectId(d)))
		return true;
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull);
	return allma_acl_role_in(role, d, isnull);
}

char *
allma_acl_role_name(Oid role)
{
	char	   *name = GetUserNameFromId(role, true);

	return name ? name : psprintf("with OID %u", role);
}

void
allma_acl_unknown(AllmaObjectKind kind, const char *id)
{
	const ObjectKindInfo *k = &kinds[kind];

	ereport(ERROR,
			(errcode(k->unknown_errcode),
			 errmsg("%s \"%s\" does not exist", k->noun, id),
			 errhint("%s", k->unknown_hint)));
}

static void
permission_denied(AllmaObjectKind kind, const char *id, AllmaPrivilege privilege)
{
	const ObjectKindInfo *k = &kinds[kind];
	static const char *const verbs[] = {
		[ALLMA_PRIV_MANAGE] = "manage",
		[ALLMA_PRIV_EDIT] = "change",
		[ALLMA_PRIV_START] = "start",
		[ALLMA_PRIV_USAGE] = "use",
	};
	const char *column = grantee_column(kind, privilege);
	const char *detail;

	if (privilege == ALLMA_PRIV_MANAGE)
		detail = "Deleting it and granting privileges on it need the privileges of the role that "
			"owns it or of allma_admin.";
	else if (column == NULL)
		detail = "This needs the privileges of the role that owns it or of allma_admin.";
	else
		detail = psprintf("This needs the privileges of the role that owns it, of allma_admin, or "
						  "the %s privilege (%s).",
						  privilege == ALLMA_PRIV_START ? "START" :
						  privilege == ALLMA_PRIV_EDIT ? "EDIT" : "USAGE", k->grant_function);
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("permission denied to %s %s \"%s\"", verbs[privilege], k->noun, id),
			 errdetail("%s", detail)));
}

void
allma_acl_check(AllmaObjectKind kind, const char *id, Oid role, AllmaPrivilege privilege,
				bool lock)
{
	AllmaAsOwner st;
	bool		found;
	bool		allowed;

	allma_owner_begin(&st);
	allowed = holds_privilege(kind, id, role, privilege, lock, &found);
	if (!found)
		allma_acl_unknown(kind, id);
	if (!allowed)
		permission_denied(kind, id, privilege);
	allma_owner_end(&st);
}

int32
allma_acl_next_version(AllmaObjectKind kind, const char *id, Oid caller)
{
	const ObjectKindInfo *k = &kinds[kind];
	AllmaAsOwner st;
	Oid			types[2] = {TEXTOID, OIDOID};
	Datum		values[2] = {CStringGetTextDatum(id), ObjectIdGetDatum(caller)};
	bool		isnull;
	int32		version;

	Assert(kind == ALLMA_OBJ_FLOW || kind == ALLMA_OBJ_PROMPT);
	allma_owner_begin(&st);
	if (!allma_acl_enforced())
	{
		/* the schema of 1.0 (until ALTER EXTENSION UPDATE): ids have no owner */
		allma_owner_exec(psprintf("INSERT INTO %s AS x (%s, latest_version) VALUES ($1, 1) "
								  "ON CONFLICT (%s) DO UPDATE SET latest_version = x.latest_version + 1, "
								  "updated_at = now() RETURNING latest_version",
								  k->table, k->key, k->key),
						 1, types, values, NULL, SPI_OK_INSERT_RETURNING);
		version = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1,
											  &isnull));
		allma_owner_end(&st);
		return version;
	}
	/* waits for a concurrent claim of the same id, then does nothing */
	allma_owner_exec(psprintf("INSERT INTO %s (%s, latest_version, owner) "
							  "VALUES ($1, 1, $2::pg_catalog.regrole) "
							  "ON CONFLICT (%s) DO NOTHING RETURNING latest_version",
							  k->table, k->key, k->key),
					 2, types, values, NULL, SPI_OK_INSERT_RETURNING);
	if (SPI_processed == 0)
	{
		allma_acl_check(kind, id, caller, ALLMA_PRIV_EDIT, true);
		allma_owner_exec(psprintf("UPDATE %s SET latest_version = latest_version + 1, "
								  "updated_at = now() WHERE %s = $1 RETURNING latest_version",
								  k->table, k->key),
						 1, types, values, NULL, SPI_OK_UPDATE_RETURNING);
	}
	version = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1,
										  &isnull));
	allma_owner_end(&st);
	return version;
}

void
allma_acl_use_check(AllmaObjectKind kind, const char *id, Oid role, bool role_is_starter,
					const char *step_id)
{
	const ObjectKindInfo *k = &kinds[kind];
	AllmaAsOwner st;
	bool		found;
	bool		allowed;

	allma_owner_begin(&st);
	allowed = holds_privilege(kind, id, role, ALLMA_PRIV_USAGE, false, &found);
	allma_owner_end(&st);
	if (found && !allowed)
		ereport(ERROR,
				(errcode(ERRCODE_ALLMA_PERMANENT_STEP_ERROR),
				 errmsg("step \"%s\" may not use %s \"%s\"", step_id, k->noun, id),
				 errdetail("Role \"%s\", which %s, holds no USAGE privilege on it.",
						   allma_acl_role_name(role),
						   role_is_starter ? "started the execution" : "created the flow version"),
				 errhint("Its owner or a member of allma_admin can grant it with %s.",
						 k->grant_function)));
}

Oid
allma_flow_version_creator(const char *flow_id, int32 version)
{
	/* a version's creator never changes: read once per transaction */
	static AllmaXactMemo creator_memo = ALLMA_XACTMEMO_INIT("allma flow version creator memo");
	AllmaAsOwner st;
	Oid			types[2] = {TEXTOID, INT4OID};
	Datum		values[2];
	Oid			creator = InvalidOid;
	char	   *key = psprintf("%d/%s", version, flow_id);
	const Oid  *known = allma_xactmemo_get(&creator_memo, key);

	if (known != NULL)
	{
		pfree(key);
		return *known;
	}
	values[0] = CStringGetTextDatum(flow_id);
	values[1] = Int32GetDatum(version);
	allma_owner_begin(&st);
	allma_owner_exec("SELECT created_by FROM allma.flow_versions WHERE flow_id = $1 AND version = $2",
					 2, types, values, NULL, SPI_OK_SELECT);
	if (SPI_processed == 1)
	{
		bool		isnull;
		Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);

		if (!isnull)
			creator = DatumGetObjectId(d);
	}
	allma_owner_end(&st);
	if (OidIsValid(creator))
		(void) allma_xactmemo_put(&creator_memo, key, &creator, sizeof(creator));
	pfree(key);
	return creator;
}

void
allma_user_code_guard(Oid starter, const char *step_id)
{
	if (superuser_arg(starter) && !allma_allow_superuser_sql_steps)
		ereport(ERROR,
				(errcode(ERRCODE_ALLMA_PERMANENT_STEP_ERROR),
				 errmsg("step \"%s\" would run SQL as superuser \"%s\"", step_id, allma_acl_role_name(starter)),
				 errdetail("SQL steps and SQL functions bound to modules run as the role that started "
						   "the execution, and allma.allow_superuser_sql_steps is off."),
				 errhint("Start the flow as an ordinary role, or set allma.allow_superuser_sql_steps "
						 "= on in postgresql.conf.")));
}

/* ----------------------------------------------------------------
 * allma_grant_* and allma_revoke_*
 * ----------------------------------------------------------------
 */

static AllmaPrivilege
flow_privilege(text *name)
{
	char	   *s = text_to_cstring(name);

	if (pg_strcasecmp(s, "START") == 0)
		return ALLMA_PRIV_START;
	if (pg_strcasecmp(s, "EDIT") == 0)
		return ALLMA_PRIV_EDIT;
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("unknown flow privilege \"%s\"", s),
			 errhint("Flow privileges are START and EDIT.")));
	pg_unreachable();
}

/*
 * grant_or_revoke adds grantee to (or removes it from) the grantees of
 * privilege on an object, after checking that the caller may manage it.
 * Returns whether anything changed.
 */
static bool
grant_or_revoke(AllmaObjectKind kind, text *id_text, Oid grantee, AllmaPrivilege privilege,
				bool grant)
{
	const ObjectKindInfo *k = &kinds[kind];
	const char *column = grantee_column(kind, privilege);
	char	   *id = text_to_cstring(id_text);
	Oid			caller = GetUserId();
	AllmaAsOwner st;
	Oid			types[2] = {TEXTOID, OIDOID};
	Datum		values[2] = {PointerGetDatum(id_text), ObjectIdGetDatum(grantee)};
	bool		changed;

	if (!OidIsValid(grantee))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("privileges are granted to roles"),
				 errhint("Grant to allma_user for every role that uses allma.")));
	Assert(column != NULL);
	allma_acl_check(kind, id, caller, ALLMA_PRIV_MANAGE, true);

	allma_owner_begin(&st);
	if (grant)
		allma_owner_exec(psprintf("UPDATE %s SET %s = %s || $2::pg_catalog.regrole WHERE %s = $1 "
								  "AND NOT $2::pg_catalog.regrole = ANY (%s)",
								  k->table, column, column, k->key, column),
						 2, types, values, NULL, SPI_OK_UPDATE);
	else
		allma_owner_exec(psprintf("UPDATE %s SET %s = pg_catalog.array_remove(%s, $2::pg_catalog.regrole) "
								  "WHERE %s = $1 AND $2::pg_catalog.regrole = ANY (%s)",
								  k->table, column, column, k->key, column),
						 2, types, values, NULL, SPI_OK_UPDATE);
	changed = SPI_processed > 0;
	allma_owner_end(&st);
	return changed;
}

/* allma_grant_flow(flow_id text, role regrole, privilege text) */
Datum
allma_grant_flow(PG_FUNCTION_ARGS)
{
	(void) grant_or_revoke(ALLMA_OBJ_FLOW, PG_GETARG_TEXT_PP(0), PG_GETARG_OID(1),
						   flow_privilege(PG_GETARG_TEXT_PP(2)), true);
	PG_RETURN_VOID();
}

/* allma_revoke_flow(flow_id text, role regrole, privilege text) returns boolean */
Datum
allma_revoke_flow(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(grant_or_revoke(ALLMA_OBJ_FLOW, PG_GETARG_TEXT_PP(0), PG_GETARG_OID(1),
								   flow_privilege(PG_GETARG_TEXT_PP(2)), false));
}

/* USAGE grants: allma_grant_<kind>(id text, role regrole) and allma_revoke_<kind> */
#define USAGE_GRANT_FUNCTIONS(suffix, kind) \
Datum \
allma_grant_##suffix(PG_FUNCTION_ARGS) \
{ \
	(void) grant_or_revoke(kind, PG_GETARG_TEXT_PP(0), PG_GETARG_OID(1), ALLMA_PRIV_USAGE, true); \
	PG_RETURN_VOID(); \
} \
Datum \
allma_revoke_##suffix(PG_FUNCTION_ARGS) \
{ \
	PG_RETURN_BOOL(grant_or_revoke(kind, PG_GETARG_TEXT_PP(0), PG_GETARG_OID(1), \
								   ALLMA_PRIV_USAGE, false)); \
}

USAGE_GRANT_FUNCTIONS(prompt, ALLMA_OBJ_PROMPT)
USAGE_GRANT_FUNCTIONS(secret, ALLMA_OBJ_SECRET)
USAGE_GRANT_FUNCTIONS(module_binding, ALLMA_OBJ_MODULE_BINDING)
USAGE_GRANT_FUNCTIONS(mcp_connection, ALLMA_OBJ_MCP_CONNECTION)
