/*-------------------------------------------------------------------------
 *
 * bundle_import.c
 *	  allma_import(bundle jsonb, overwrite boolean, parameters jsonb): stores
 *	  an Allma export bundle -- its flows with their versions and published
 *	  flags, prompt templates, agents and reusable step definitions -- and
 *	  reports what will not run as it is.
 *
 * Flows and prompts go through allma_create_flow / allma_publish_flow and
 * allma_create_prompt / allma_publish_prompt themselves, so validation,
 * ownership and privileges are exactly theirs: a new id becomes the
 * importer's, a new version of an existing one needs the owner's
 * privileges (overwrite), and nothing is replaced without overwrite.
 * Agents and step definitions (bundle_defs.c) follow the same rules.  The
 * function does everything in the caller's transaction: an error anywhere
 * leaves nothing stored.  Every id of the bundle is claimed (or found
 * existing, and checked) before anything is stored, so that two imports of
 * the same new bundle at once cannot both store it (isolation import_race).
 *
 * Deploy placeholders.  A string's "{{name}}" (a bare name: no dot, no
 * helper, no argument) is a deploy placeholder when "name" is one of the
 * parameters: it is replaced by the parameter's value, wherever it is
 * (flow variables, ARNs, table names, URLs, templates, prompt text).
 * Runtime template variables ({{steps_output.x}}, {{flow_variables.y}},
 * {{#each}}, {{this}}) are never touched.  Left unreplaced and reported
 * are: every bare "{{name}}" inside flowVariables (flow and agent
 * variables are not rendered at run time: Allma's CDK importer renders
 * them at deploy time), and anywhere else {{stage}}, {{region}} and
 * {{accountId}}, the names Allma's deployment fills.
 *
 * The report (docs/from-allma.md) lists the flows and prompts stored, the
 * steps whose module or Lambda ARN has no built-in and no binding the
 * importer may use, steps of types this version does not run, unresolved
 * placeholders and step definitions, and mappings that can never select
 * anything, with the reason.
 *
 * IDENTIFICATION
 *	  src/bundle_import.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/detoast.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"

#include "acl.h"
#include "bundle.h"
#include "jsonb_util.h"
#include "owner.h"
#include "path.h"
#include "step.h"
#include "template.h"

PG_FUNCTION_INFO_V1(allma_import);

/* the SQL API functions imports go through (api.c, prompt.c) */
extern PGDLLEXPORT Datum allma_create_flow(PG_FUNCTION_ARGS);
extern PGDLLEXPORT Datum allma_publish_flow(PG_FUNCTION_ARGS);
extern PGDLLEXPORT Datum allma_create_prompt(PG_FUNCTION_ARGS);
extern PGDLLEXPORT Datum allma_publish_prompt(PG_FUNCTION_ARGS);

/* the deploy placeholders Allma's deployment fills */
static const char *const well_known_placeholders[] = {"stage", "region", "accountId", NULL};

/* one object of the bundle: a flow version, a prompt version, ... */
typedef struct BundleItem
{
	char	   *id;
	int32		version;		/* 0 when the bundle gives none */
	int			position;		/* index in its array */
	Jsonb	   *obj;
} BundleItem;

typedef struct ImportState
{
	Oid			caller;
	bool		overwrite;
	Jsonb	   *params;			/* name -> string */
	int			replaced;		/* placeholders replaced */
	List	   *seen;			/* findings already reported */
	/* the report's arrays */
	Jsonb	   *flows;
	Jsonb	   *prompts;
	Jsonb	   *agents;
	Jsonb	   *stepdefs;
	Jsonb	   *unbound;
	Jsonb	   *unsupported;
	Jsonb	   *placeholders;
	Jsonb	   *dead;
	Jsonb	   *unresolved_defs;
} ImportState;

/* where a string is, for the walker */
typedef struct Frame
{
	bool		is_array;
	int			index;
	char	   *key;
} Frame;

typedef struct SubstCtx
{
	ImportState *is;
	const char *kind;			/* the report's key: "flowId", "promptId", ... */
	const char *id;
	const char *deploy_root;	/* top-level member holding deploy-time
								 * strings ("flowVariables"), or NULL */
} SubstCtx;

/* ----------------------------------------------------------------
 * Small helpers
 * ----------------------------------------------------------------
 */

/* an object of n (key, value) pairs; NULL values are left out */
static Jsonb *
make_obj(int n,...)
{
	va_list		ap;
	Jsonb	   *obj = allma_jsonb_empty_object();

	va_start(ap, n);
	for (int i = 0; i < n; i++)
	{
		const char *key = va_arg(ap, const char *);
		Jsonb	   *value = va_arg(ap, Jsonb *);

		if (value != NULL)
			obj = allma_jsonb_set_key(obj, key, value);
	}
	va_end(ap);
	return obj;
}

static bool
is_identifier(const char *s, int len)
{
	if (len <= 0 || !(isalpha((unsigned char) s[0]) || s[0] == '_'))
		return false;
	for (int i = 1; i < len; i++)
		if (!(isalnum((unsigned char) s[i]) || s[i] == '_'))
			return false;
	return true;
}

static bool
in_list(const char *s, const char *const *list)
{
	for (int i = 0; list[i]; i++)
		if (strcmp(s, list[i]) == 0)
			return true;
	return false;
}

static void
bad_bundle(const char *msg, const char *detail)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid Allma bundle: %s", msg),
			 detail ? errdetail("%s", detail) : 0,
			 errhint("allma_import takes Allma's export format {formatVersion, flows, promptTemplates, "
					 "agents, stepDefinitions} or a single flow definition.")));
}

/* calls an fmgr function of the SQL API with up to 4 arguments */
static Datum
call_api(PGFunction fn, int nargs, Datum *args, bool *nulls)
{
	LOCAL_FCINFO(fcinfo, 4);
	Datum		result;

	Assert(nargs <= 4);
	InitFunctionCallInfoData(*fcinfo, NULL, nargs, InvalidOid, NULL, NULL);
	for (int i = 0; i < nargs; i++)
	{
		fcinfo->args[i].value = args[i];
		fcinfo->args[i].isnull = nulls ? nulls[i] : false;
	}
	result = (*fn) (fcinfo);
	return result;
}

/* ----------------------------------------------------------------
 * Input: the bundle's parts and the parameters
 * ----------------------------------------------------------------
 */

static int
item_cmp(const ListCell *a, const ListCell *b)
{
	BundleItem *x = lfirst(a);
	BundleItem *y = lfirst(b);
	int			c = strcmp(x->id, y->id);

	if (c != 0)
		return c;
	if (x->version != y->version)
		return x->version < y->version ? -1 : 1;
	return x->position - y->position;
}

/*
 * bundle_part: the objects of array "field" (absent or null: none), each
 * with a string id, sorted by id and version
 */
static List *
bundle_part(Jsonb *bundle, const char *field)
{
	Jsonb	   *arr = allma_jsonb_get(bundle, field);
	List	   *items = NIL;
	List	   *elems;
	ListCell   *lc;
	int			i = 0;
	JsonbValue	sv;


	if (arr == NULL || (allma_jsonb_scalar(arr, &sv) && sv.type == jbvNull))
		return NIL;
	if (!allma_jsonb_is_array(arr) || allma_jsonb_is_scalar(arr))
		bad_bundle(psprintf("\"%s\" must be an array", field), NULL);
	elems = allma_jsonb_array_elements(arr);
	if (list_length(elems) > ALLMA_BUNDLE_MAX_OBJECTS)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("invalid Allma bundle: \"%s\" has %d entries", field, list_length(elems)),
				 errdetail("allma_import takes at most %d of each kind.", ALLMA_BUNDLE_MAX_OBJECTS),
				 errhint("Import the bundle in parts.")));
	foreach(lc, elems)
	{
		Jsonb	   *obj = lfirst(lc);
		BundleItem *item = palloc0(sizeof(BundleItem));
		double		v;

		if (!allma_jsonb_is_object(obj))
			bad_bundle(psprintf("%s[%d] must be an object", field, i), NULL);
		item->id = allma_jsonb_get_cstring(obj, "id");
		if (item->id == NULL || item->id[0] == '\0')
			bad_bundle(psprintf("%s[%d] has no \"id\"", field, i),
					   "Every flow, prompt template, agent and step definition needs a non-empty string id.");
		if (strlen(item->id) > ALLMA_BUNDLE_MAX_ID_LEN)
			bad_bundle(psprintf("%s[%d] has an id longer than %d bytes", field, i,
								ALLMA_BUNDLE_MAX_ID_LEN), NULL);
		if (allma_jsonb_get_number(obj, "version", &v))
		{
			if (v < 1 || v > PG_INT32_MAX || v != (int32) v)
				bad_bundle(psprintf("%s[%d] (\"%s\") has an invalid version", field, i, item->id),
						   "A version is a positive integer.");
			item->version = (int32) v;
		}
		item->position = i++;
		item->obj = obj;
		items = lappend(items, item);
	}
	list_sort(items, item_cmp);
	return items;
}

/* the parameters as {name: string}, checked */
static Jsonb *
check_parameters(Jsonb *params)
{
	Jsonb	   *out = allma_jsonb_empty_object();
	List	   *keys;
	ListCell   *lc;

	if (params == NULL)
		return out;
	if (!allma_jsonb_is_object(params))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("import parameters must be a JSON object"),
				 errhint("Pass {\"stage\": \"prod\", \"region\": \"eu-west-1\", ...}.")));
	keys = allma_jsonb_object_keys(params);
	if (list_length(keys) > ALLMA_BUNDLE_MAX_PARAMS)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("too many import parameters (%d)", list_length(keys)),
				 errdetail("allma_import takes at most %d.", ALLMA_BUNDLE_MAX_PARAMS)));
	foreach(lc, keys)
	{
		const char *name = lfirst(lc);
		Jsonb	   *v = allma_jsonb_get(params, name);
		JsonbValue	sv;
		char	   *text;

		if (!is_identifier(name, strlen(name)) || strlen(name) > 63)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid import parameter name \"%s\"", name),
					 errdetail("A parameter fills the placeholder {{name}}: its name is a letter or "
							   "\"_\" followed by letters, digits and \"_\", at most 63 bytes.")));
		if (!allma_jsonb_scalar(v, &sv) ||
			!(sv.type == jbvString || sv.type == jbvNumeric || sv.type == jbvBool))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("import parameter \"%s\" must be a string, a number or a boolean", name)));
		text = sv.type == jbvString ? pnstrdup(sv.val.string.val, sv.val.string.len)
			: allma_jsonb_to_cstring(v);
		if (strlen(text) > ALLMA_BUNDLE_MAX_PARAM_LEN)
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("import parameter \"%s\" is longer than %d bytes", name,
							ALLMA_BUNDLE_MAX_PARAM_LEN)));
		if (strstr(text, "{{") != NULL || strstr(text, "}}") != NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("import parameter \"%s\" contains \"{{\" or \"}}\"", name),
					 errdetail("A parameter's value is inserted as it is; it cannot bring templates into the flows.")));
		out = allma_jsonb_set_key(out, name, allma_jsonb_string(text));
	}
	return out;
}

/* ----------------------------------------------------------------
 * Deploy placeholders
 * ----------------------------------------------------------------
 */

static char *
frames_path(Frame *stack, int depth)
{
	StringInfoData buf;

	initStringInfo(&buf);
	for (int i = 0; i < depth; i++)
	{
		if (stack[i].is_array)
			appendStringInfo(&buf, "[%d]", stack[i].index);
		else
			appendStringInfo(&buf, "%s%s", i > 0 ? "." : "", stack[i].key ? stack[i].key : "");
	}
	return buf.data;
}

/* adds a finding once per (object, field, name) */
static void
report_placeholder(SubstCtx *cx, const char *field, const char *name)
{
	ImportState *is = cx->is;
	char	   *key = psprintf("%s\x01%s\x01%s\x01%s", cx->kind, cx->id, field, name);
	ListCell   *lc;

	foreach(lc, is->seen)
		if (strcmp(lfirst(lc), key) == 0)
			return;
	is->seen = lappend(is->seen, key);
	is->placeholders = allma_jsonb_array_append(is->placeholders,
												make_obj(3, cx->kind, allma_jsonb_string(cx->id),
														 "field", allma_jsonb_string(field),
														 "placeholder", allma_jsonb_string(name)));
}

/*
 * subst_string: s with the parameters' placeholders replaced (NULL when
 * nothing changed), reporting unresolved deploy placeholders
 */
static char *
subst_string(SubstCtx *cx, const char *s, int len, Frame *stack, int depth)
{
	StringInfoData out;
	const char *p = s;
	const char *end = s + len;
	bool		changed = false;
	bool		deploy = cx->deploy_root != NULL && depth > 0 && !stack[0].is_array &&
		stack[0].key != NULL && strcmp(stack[0].key, cx->deploy_root) == 0;

	if (len < 4 || memchr(s, '{', len) == NULL)
		return NULL;
	initStringInfo(&out);
	while (p < end)
	{
		const char *open = NULL;
		const char *start;
		const char *close;
		const char *name;
		int			namelen;
		bool		triple;
		char	   *value;

		for (const char *q = p; q + 1 < end; q++)
			if (q[0] == '{' && q[1] == '{')
			{
				open = q;
				break;
			}
		if (open == NULL)
			break;
		triple = open + 2 < end && open[2] == '{';
		start = open + (triple ? 3 : 2);
		close = NULL;
		for (const char *q = start; q + 1 < end; q++)
			if (q[0] == '}' && q[1] == '}' && (!triple || (q + 2 < end && q[2] == '}')))
			{
				close = q;
				break;
			}
		if (close == NULL)
			break;
		appendBinaryStringInfo(&out, p, open - p);
		name = start;
		while (name < close && isspace((unsigned char) *name))
			name++;
		namelen = close - name;
		while (namelen > 0 && isspace((unsigned char) name[namelen - 1]))
			namelen--;
		p = close + (triple ? 3 : 2);
		if (is_identifier(name, namelen))
		{
			char	   *n = pnstrdup(name, namelen);

			value = allma_jsonb_get_cstring(cx->is->params, n);
			if (value != NULL)
			{
				appendStringInfoString(&out, value);
				cx->is->replaced++;
				changed = true;
				continue;
			}
			if (deploy ? (strcmp(n, "this") != 0 && strcmp(n, "else") != 0)
				: in_list(n, well_known_placeholders))
				report_placeholder(cx, frames_path(stack, depth), n);
		}
		appendBinaryStringInfo(&out, open, p - open);
	}
	if (!changed)
		return NULL;
	appendBinaryStringInfo(&out, p, end - p);
	return out.data;
}

/*
 * subst_doc: the document with the parameters' placeholders replaced in
 * every string (not in keys), unresolved deploy placeholders reported
 */
static Jsonb *
subst_doc(SubstCtx *cx, Jsonb *doc)
{
	JsonbIterator *it = JsonbIteratorInit(&doc->root);
	JsonbParseState *ps = NULL;
	JsonbValue	v;
	JsonbValue *res = NULL;
	JsonbIteratorToken tok;
	int			cap = 16;
	int			depth = 0;
	Frame	   *stack = palloc(sizeof(Frame) * cap);

	while ((tok = JsonbIteratorNext(&it, &v, false)) != WJB_DONE)
	{
		switch (tok)
		{
			case WJB_BEGIN_OBJECT:
			case WJB_BEGIN_ARRAY:
				if (depth > 0 && stack[depth - 1].is_array)
					stack[depth - 1].index++;
				if (depth == cap)
				{
					cap *= 2;
					stack = repalloc(stack, sizeof(Frame) * cap);
				}
				stack[depth].is_array = (tok == WJB_BEGIN_ARRAY);
				stack[depth].index = -1;
				stack[depth].key = NULL;
				depth++;
				res = pushJsonbValue(&ps, tok, tok == WJB_BEGIN_ARRAY ? &v : NULL);
				break;
			case WJB_END_OBJECT:
			case WJB_END_ARRAY:
				depth--;
				res = pushJsonbValue(&ps, tok, NULL);
				break;
			case WJB_KEY:
				stack[depth - 1].key = pnstrdup(v.val.string.val, v.val.string.len);
				res = pushJsonbValue(&ps, tok, &v);
				break;
			case WJB_ELEM:
			case WJB_VALUE:
				if (tok == WJB_ELEM)
					stack[depth - 1].index++;
				if (v.type == jbvString)
				{
					char	   *s = subst_string(cx, v.val.string.val, v.val.string.len,
												 stack, depth);

					if (s != NULL)
					{
						v.val.string.val = s;
						v.val.string.len = strlen(s);
					}
				}
				res = pushJsonbValue(&ps, tok, &v);
				break;
			default:
				break;
		}
	}
	return JsonbValueToJsonb(res);
}

/* ----------------------------------------------------------------
 * Existing objects: conflicts and ownership
 * ----------------------------------------------------------------
 */

/* the owner of a row of allma.<table> (InvalidOid: no such row) */
static Oid
row_owner(const char *table, const char *key_column, const char *id)
{
	AllmaAsOwner st;
	Oid			types[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(id)};
	Oid			owner = InvalidOid;

	allma_owner_begin(&st);
	allma_owner_exec(psprintf("SELECT owner::oid FROM allma.%s WHERE %s = $1 FOR UPDATE",
							  table, key_column),
					 1, types, values, NULL, SPI_OK_SELECT);
	if (SPI_processed == 1)
	{
		bool		isnull;

		owner = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
											   1, &isnull));
	}
	allma_owner_end(&st);
	return owner;
}

/*
 * claim: claims id in allma.<table> for the caller with a placeholder row
 * (column = value), which the import then fills; InvalidOid when it did,
 * else the owner of the existing row (locked).  A concurrent import of the
 * same new id waits here for the other transaction, then sees its row: an
 * id is never taken over without overwrite.
 */
static Oid
claim(ImportState *is, const char *table, const char *key_column, const char *column,
	  const char *value, const char *id)
{
	AllmaAsOwner st;
	Oid			types[2] = {TEXTOID, OIDOID};
	Datum		values[2] = {CStringGetTextDatum(id), ObjectIdGetDatum(is->caller)};
	bool		claimed;

	allma_owner_begin(&st);
	allma_owner_exec(psprintf("INSERT INTO allma.%s (%s, %s, owner) VALUES ($1, %s, $2::regrole) "
							  "ON CONFLICT (%s) DO NOTHING RETURNING 1",
							  table, key_column, column, value, key_column),
					 2, types, values, NULL, SPI_OK_INSERT_RETURNING);
	claimed = SPI_processed == 1;
	allma_owner_end(&st);
	return claimed ? InvalidOid : row_owner(table, key_column, id);
}

/*
 * check_existing: claims each distinct id of items (claim); an id that
 * exists is collected as "<noun> \"id\"" into *conflicts (no overwrite),
 * or the caller must be allowed to replace it (the owner's privileges or
 * allma_admin's)
 */
static void
check_existing(ImportState *is, List *items, const char *noun, const char *table,
			   const char *key_column, const char *claim_column, const char *claim_value,
			   AllmaObjectKind kind, bool has_acl_kind, List **conflicts)
{
	ListCell   *lc;
	const char *prev = NULL;

	foreach(lc, items)
	{
		BundleItem *item = lfirst(lc);
		Oid			owner;

		if (prev != NULL && strcmp(prev, item->id) == 0)
			continue;
		prev = item->id;
		owner = claim(is, table, key_column, claim_column, claim_value, item->id);
		if (!OidIsValid(owner))
			continue;
		if (!is->overwrite)
			*conflicts = lappend(*conflicts, psprintf("%s \"%s\"", noun, item->id));
		else if (has_acl_kind)
			allma_acl_check(kind, item->id, is->caller, ALLMA_PRIV_MANAGE, true);
		else if (!allma_acl_is_admin(is->caller) && !has_privs_of_role(is->caller, owner))
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("permission denied to replace %s \"%s\"", noun, item->id),
					 errdetail("It belongs to role %s; only its owner (or allma_admin) may replace it.",
							   allma_acl_role_name(owner))));
	}
}

/* ----------------------------------------------------------------
 * Storing
 * ----------------------------------------------------------------
 */

/* agents and step definitions: one row each, replaced by overwrite */
static void
store_step_definitions(ImportState *is, List *items)
{
	ListCell   *lc;

	foreach(lc, items)
	{
		BundleItem *item = lfirst(lc);
		SubstCtx	cx = {is, "stepDefinitionId", item->id, NULL};
		Jsonb	   *def = subst_doc(&cx, item->obj);
		AllmaAsOwner st;
		Oid			types[3] = {TEXTOID, JSONBOID, OIDOID};
		Datum		values[3] = {CStringGetTextDatum(item->id), JsonbPGetDatum(def),
		ObjectIdGetDatum(is->caller)};

		allma_owner_begin(&st);
		allma_owner_exec("INSERT INTO allma.step_definitions (step_definition_id, definition, owner) "
						 "VALUES ($1, $2, $3::regrole) ON CONFLICT (step_definition_id) DO UPDATE "
						 "SET definition = excluded.definition, updated_at = now()",
						 3, types, values, NULL, SPI_OK_INSERT);
		allma_owner_end(&st);
		is->stepdefs = allma_jsonb_array_append(is->stepdefs, allma_jsonb_string(item->id));
	}
}

static void
store_agents(ImportState *is, List *items, List *flows)
{
	ListCell   *lc;

	foreach(lc, items)
	{
		BundleItem *item = lfirst(lc);
		SubstCtx	cx = {is, "agentId", item->id, "flowVariables"};
		Jsonb	   *def = subst_doc(&cx, item->obj);
		Jsonb	   *flow_ids = allma_jsonb_get(def, "flowIds");
		Jsonb	   *vars = allma_jsonb_get(def, "flowVariables");
		bool		enabled = true;
		List	   *ids = NIL;
		AllmaAsOwner st;
		Oid			types[6] = {TEXTOID, JSONBOID, TEXTARRAYOID, JSONBOID, BOOLOID, OIDOID};
		Datum		values[6];
		Datum	   *elems;
		int			n = 0;
		ListCell   *lc2;

		if (flow_ids != NULL && !allma_jsonb_is_array(flow_ids))
			bad_bundle(psprintf("agent \"%s\" field \"flowIds\" must be an array of flow ids", item->id), NULL);
		if (vars != NULL && !allma_jsonb_is_object(vars))
			bad_bundle(psprintf("agent \"%s\" field \"flowVariables\" must be an object", item->id), NULL);
		(void) allma_jsonb_get_bool(def, "enabled", &enabled);
		if (flow_ids != NULL)
			ids = allma_jsonb_array_elements(flow_ids);
		elems = palloc0(sizeof(Datum) * (list_length(ids) + 1));
		foreach(lc2, ids)
		{
			JsonbValue	sv;
			char	   *fid;
			bool		in_bundle = false;
			ListCell   *lc3;

			if (!allma_jsonb_scalar(lfirst(lc2), &sv) || sv.type != jbvString)
				bad_bundle(psprintf("agent \"%s\" field \"flowIds\" must be an array of flow ids", item->id), NULL);
			fid = pnstrdup(sv.val.string.val, sv.val.string.len);
			foreach(lc3, flows)
				if (strcmp(((BundleItem *) lfirst(lc3))->id, fid) == 0)
					in_bundle = true;
			/* an agent's variables reach a flow only with EDIT on it */
			if (!in_bundle && OidIsValid(row_owner("flows", "flow_id", fid)))
				allma_acl_check(ALLMA_OBJ_FLOW, fid, is->caller, ALLMA_PRIV_EDIT, false);
			elems[n++] = CStringGetTextDatum(fid);
		}
		values[0] = CStringGetTextDatum(item->id);
		values[1] = JsonbPGetDatum(def);
		values[2] = PointerGetDatum(construct_array(elems, n, TEXTOID, -1, false, TYPALIGN_INT));
		values[3] = JsonbPGetDatum(vars ? vars : allma_jsonb_empty_object());
		values[4] = BoolGetDatum(enabled);
		values[5] = ObjectIdGetDatum(is->caller);
		allma_owner_begin(&st);
		allma_owner_exec("INSERT INTO allma.agents (agent_id, definition, flow_ids, flow_variables, "
						 "enabled, owner) VALUES ($1, $2, $3, $4, $5, $6::regrole) "
						 "ON CONFLICT (agent_id) DO UPDATE SET definition = excluded.definition, "
						 "flow_ids = excluded.flow_ids, flow_variables = excluded.flow_variables, "
						 "enabled = excluded.enabled, updated_at = now()",
						 6, types, values, NULL, SPI_OK_INSERT);
		allma_owner_end(&st);
		is->agents = allma_jsonb_array_append(is->agents, allma_jsonb_string(item->id));
	}
}

/* the newest stored version of id equal to what would be stored, or 0 */
static int32
same_version(const char *sql, int nargs, Datum *values, Oid *types, char *nulls)
{
	AllmaAsOwner st;
	int32		version = 0;

	allma_owner_begin(&st);
	allma_owner_exec(sql, nargs, types, values, nulls, SPI_OK_SELECT);
	if (SPI_processed == 1)
	{
		bool		isnull;

		version = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1,
											  &isnull));
	}
	allma_owner_end(&st);
	return version;
}

/*
 * keep_version_number: makes the next version of id (a flow or prompt)
 * the bundle's number when that number is free (above the latest stored),
 * claiming a new id for the caller as allma_acl_next_version would.  The
 * caller may add versions (checked by check_existing).
 */
static void
keep_version_number(ImportState *is, const char *table, const char *key_column, const char *id,
					int32 bundle_version)
{
	AllmaAsOwner st;
	Oid			types[3] = {TEXTOID, INT4OID, OIDOID};
	Datum		values[3] = {CStringGetTextDatum(id), Int32GetDatum(bundle_version - 1),
	ObjectIdGetDatum(is->caller)};

	if (bundle_version <= 1)
		return;
	allma_owner_begin(&st);
	/* (an id claimed meanwhile by another role is left to allma_create_*'s check) */
	allma_owner_exec(psprintf("INSERT INTO allma.%s AS x (%s, latest_version, owner) "
							  "VALUES ($1, $2, $3::regrole) ON CONFLICT (%s) DO UPDATE "
							  "SET latest_version = greatest(x.latest_version, excluded.latest_version) "
							  "WHERE pg_has_role($3, x.owner::oid, 'USAGE') "
							  "OR pg_has_role($3, 'allma_admin', 'USAGE')",
							  table, key_column, key_column),
					 3, types, values, NULL, SPI_OK_INSERT);
	allma_owner_end(&st);
}

/*
 * store_version: one version of a flow or prompt, through the SQL API: an
 * equal stored version ("same", 0: none) is reused (published if the bundle
 * publishes it), else the version is created; reported in *report
 */
/* the fields of a prompt template of a bundle that are columns of allma.prompt_templates */
static const char *const prompt_columns[] = {"id", "content", "description", "version", "isPublished", NULL};

/* keeps a created prompt version's other fields (bundle_attributes) */
static void
store_prompt_attributes(const char *id, int32 version, Jsonb *obj)
{
	AllmaAsOwner st;
	Oid			types[3] = {TEXTOID, INT4OID, JSONBOID};
	Datum		values[3];

	for (int i = 0; prompt_columns[i]; i++)
		obj = allma_jsonb_delete_key(obj, prompt_columns[i]);
	values[0] = CStringGetTextDatum(id);
	values[1] = Int32GetDatum(version);
	values[2] = JsonbPGetDatum(obj);
	allma_owner_begin(&st);
	allma_owner_exec("UPDATE allma.prompt_templates SET bundle_attributes = $3 "
					 "WHERE prompt_id = $1 AND version = $2",
					 3, types, values, NULL, SPI_OK_UPDATE);
	allma_owner_end(&st);
}

static void
store_version(ImportState *is, BundleItem *item, bool is_flow, int32 same, bool publish,
			  Datum *create_args, bool *create_nulls, Jsonb **report)
{
	int32		version = same;
	bool		created = false;

	if (version > 0)
	{
		if (publish)
		{
			Datum		pargs[2] = {CStringGetTextDatum(item->id), Int32GetDatum(version)};

			call_api(is_flow ? allma_publish_flow : allma_publish_prompt, 2, pargs, NULL);
		}
	}
	else
	{
		keep_version_number(is, is_flow ? "flows" : "prompts", is_flow ? "flow_id" : "prompt_id",
							item->id, item->version);
		version = DatumGetInt32(call_api(is_flow ? allma_create_flow : allma_create_prompt,
										 is_flow ? 2 : 4, create_args, create_nulls));
		created = true;
		if (!is_flow)
			store_prompt_attributes(item->id, version, item->obj);
	}
	*report = allma_jsonb_array_append(*report,
									   make_obj(5, "id", allma_jsonb_string(item->id),
												"bundleVersion", item->version ? allma_jsonb_int(item->version) : NULL,
												"version", allma_jsonb_int(version),
												"published", allma_jsonb_bool(publish),
												"created", allma_jsonb_bool(created)));
}

static void
store_prompts(ImportState *is, List *items)
{
	ListCell   *lc;

	foreach(lc, items)
	{
		BundleItem *item = lfirst(lc);
		SubstCtx	cx = {is, "promptId", item->id, NULL};
		Jsonb	   *obj = subst_doc(&cx, item->obj);
		char	   *content = allma_jsonb_get_cstring(obj, "content");
		char	   *description = allma_jsonb_get_cstring(obj, "description");
		bool		publish = false;
		Datum		args[4];
		bool		nulls[4] = {false, false, false, description == NULL};
		Oid			types[3] = {TEXTOID, TEXTOID, TEXTOID};
		char		snulls[3] = {' ', ' ', description ? ' ' : 'n'};
		int32		version;

		if (content == NULL)
			bad_bundle(psprintf("prompt template \"%s\" has no string \"content\"", item->id), NULL);
		item->obj = obj;		/* its other fields are kept as filled */
		(void) allma_jsonb_get_bool(obj, "isPublished", &publish);
		args[0] = CStringGetTextDatum(item->id);
		args[1] = CStringGetTextDatum(content);
		args[2] = BoolGetDatum(publish);
		args[3] = description ? CStringGetTextDatum(description) : (Datum) 0;
		{
			Datum		qargs[3] = {args[0], args[1], args[3]};

			version = same_version("SELECT version FROM allma.prompt_templates WHERE prompt_id = $1 "
								   "AND content = $2 AND description IS NOT DISTINCT FROM $3 "
								   "ORDER BY version DESC LIMIT 1",
								   3, qargs, types, snulls);
		}
		store_version(is, item, false, version, publish, args, nulls, &is->prompts);
	}
}

static void
store_flows(ImportState *is, List *items)
{
	ListCell   *lc;

	foreach(lc, items)
	{
		BundleItem *item = lfirst(lc);
		SubstCtx	cx = {is, "flowId", item->id, "flowVariables"};
		Jsonb	   *def = subst_doc(&cx, item->obj);
		bool		publish = false;
		Datum		args[2];
		Oid			types[2] = {TEXTOID, JSONBOID};
		int32		version;
		List	   *unresolved = NIL;
		ListCell   *lc2;

		(void) allma_jsonb_get_bool(def, "isPublished", &publish);
		def = allma_jsonb_delete_key(def, "isPublished");
		def = allma_step_definitions_resolve(def, is->caller, &unresolved);
		foreach(lc2, unresolved)
		{
			Jsonb	   *step = allma_jsonb_get(allma_jsonb_get(def, "steps"), lfirst(lc2));

			is->unresolved_defs =
				allma_jsonb_array_append(is->unresolved_defs,
										 make_obj(3, "flowId", allma_jsonb_string(item->id),
												  "stepId", allma_jsonb_string(lfirst(lc2)),
												  "stepDefinitionId",
												  allma_jsonb_get(step, "stepDefinitionId")));
		}
		args[0] = CStringGetTextDatum(item->id);
		args[1] = JsonbPGetDatum(def);
		version = same_version("SELECT version FROM allma.flow_versions WHERE flow_id = $1 "
							   "AND definition - 'version' = $2 - 'version' "
							   "ORDER BY version DESC LIMIT 1",
							   2, args, types, NULL);
		args[1] = BoolGetDatum(publish);	/* allma_create_flow(definition, publish) */
		args[0] = JsonbPGetDatum(def);
		store_version(is, item, true, version, publish, args, NULL, &is->flows);
	}
}

/* ----------------------------------------------------------------
 * The report on what was stored
 * ----------------------------------------------------------------
 */

/*
 * binding_of: the pattern of the binding key dispatches to (NULL: none),
 * and whether the importer may use it
 */
static char *
binding_of(const char *key, Oid caller, bool *usable)
{
	MemoryContext cxt = CurrentMemoryContext;
	AllmaAsOwner st;
	Oid			types[2] = {TEXTOID, OIDOID};
	Datum		values[2] = {CStringGetTextDatum(key), ObjectIdGetDatum(caller)};
	char	   *pattern = NULL;

	*usable = false;
	allma_owner_begin(&st);
	allma_owner_exec("SELECT pattern, pg_has_role($2, owner::oid, 'USAGE') "
					 "OR pg_has_role($2, 'allma_admin', 'USAGE') "
					 "OR EXISTS (SELECT FROM unnest(usage_grantees) g "
					 "WHERE pg_has_role($2, g::oid, 'USAGE')) "
					 "FROM allma.module_bindings WHERE pattern = $1 OR $1 LIKE pattern "
					 "ORDER BY pattern = $1 DESC, length(pattern) DESC, pattern LIMIT 1",
					 2, types, values, NULL, SPI_OK_SELECT);
	if (SPI_processed == 1)
	{
		bool		isnull;

		pattern = MemoryContextStrdup(cxt, SPI_getvalue(SPI_tuptable->vals[0],
														SPI_tuptable->tupdesc, 1));
		*usable = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2,
											 &isnull));
	}
	allma_owner_end(&st);
	return pattern;
}

/*
 * static_arn: a Lambda ARN template rendered with the flow variables, when
 * it references nothing else (NULL: computed at run time)
 */
static char *
static_arn(const char *tmpl, Jsonb *flow_vars)
{
	const char *p = tmpl;
	char	   *out;

	while ((p = strstr(p, "{{")) != NULL)
	{
		p += 2;
		while (*p == '{' || isspace((unsigned char) *p))
			p++;
		if (strncmp(p, "flow_variables.", 15) != 0)
			return NULL;
	}
	out = allma_template_render(tmpl, allma_jsonb_set_key(NULL, "flow_variables", flow_vars));
	return out[0] != '\0' ? out : NULL;
}

static void
check_module(ImportState *is, const char *flow_id, const char *step_id, Jsonb *step,
			 const AllmaStepType *info, Jsonb *flow_vars)
{
	const char *type = info->name;
	char	   *module = allma_jsonb_get_cstring(step, "moduleIdentifier");
	char	   *arn = NULL;
	char	   *key;
	char	   *pattern;
	bool		usable;
	const char *reason;

	if (strcmp(type, "CUSTOM_LOGIC") != 0 && strcmp(type, "CUSTOM_LAMBDA_INVOKE") != 0 &&
		strcmp(type, "DATA_LOAD") != 0 && strcmp(type, "DATA_SAVE") != 0 &&
		strcmp(type, "DATA_TRANSFORMATION") != 0)
		return;
	if (strcmp(type, "CUSTOM_LAMBDA_INVOKE") == 0)
		arn = allma_jsonb_get_cstring(step, "lambdaFunctionArnTemplate");
	if (arn != NULL)
	{
		key = static_arn(arn, flow_vars);
		if (key == NULL)
		{
			is->unbound = allma_jsonb_array_append(is->unbound,
												   make_obj(5, "flowId", allma_jsonb_string(flow_id),
															"stepId", allma_jsonb_string(step_id),
															"stepType", allma_jsonb_string(type),
															"module", allma_jsonb_string(arn),
															"reason", allma_jsonb_string("the Lambda ARN is computed at run time; bind every ARN it can take")));
			return;
		}
	}
	else
	{
		if (module == NULL)
			return;
		if (allma_module_for_step(info, module) != NULL)
			return;				/* built in */
		key = module;
	}
	pattern = binding_of(key, is->caller, &usable);
	if (pattern != NULL && usable)
		return;
	if (pattern == NULL)
		reason = strncmp(key, "system/", 7) == 0 && arn == NULL ?
			psprintf("allma has no built-in %s module \"%s\" and nothing is bound to it", type, key) :
			"nothing is bound to it (allma_bind_module or allma_bind_module_http)";
	else
		reason = psprintf("binding \"%s\" matches, but you have no USAGE on it", pattern);
	is->unbound = allma_jsonb_array_append(is->unbound,
										   make_obj(5, "flowId", allma_jsonb_string(flow_id),
													"stepId", allma_jsonb_string(step_id),
													"stepType", allma_jsonb_string(type),
													"module", allma_jsonb_string(key),
													"reason", allma_jsonb_string(reason)));
}

/*
 * dead_reason: why a mapping source can never select anything (NULL: it
 * can).  Allma evaluates sources with jsonpath-plus and renders no
 * templates in them.
 */
static char *
dead_reason(const char *path)
{
	char	   *msg = NULL;
	const char *bar;

	if (strcmp(path, "$.") == 0 || allma_path_check(path, &msg))
		return NULL;
	bar = strchr(path, '|');
	if (bar != NULL)
	{
		const char *f = bar + 1;
		int			n = 0;

		while (isspace((unsigned char) *f))
			f++;
		while (isalnum((unsigned char) f[n]) || f[n] == '_')
			n++;
		if (n > 0)
			return psprintf("it ends in a Liquid-style filter \"| %.*s%s\": a JSONPath has no filters, "
							"so Allma looks the whole text after the last \".\" up as one key, which no "
							"context has; the mapping never selects anything and its target is never "
							"written (give the default with a literal or a transition instead)",
							n, f, f[n] == ':' ? ":" : "");
	}
	if (strstr(path, "{{") != NULL)
		return "it holds a {{ }} template, but mappings are JSONPaths and are not rendered: "
			"the template's text is looked up as a key";
	return psprintf("it is not a JSONPath allma can evaluate%s%s", msg ? ": " : "", msg ? msg : "");
}

static void
check_sources(ImportState *is, const char *flow_id, const char *step_id, Jsonb *map,
			  const char *field, const char *member)
{
	List	   *keys;
	ListCell   *lc;

	if (!allma_jsonb_is_object(map))
		return;
	keys = allma_jsonb_object_keys(map);
	foreach(lc, keys)
	{
		const char *k = lfirst(lc);
		Jsonb	   *v = allma_jsonb_get(map, k);
		char	   *path = member ? allma_jsonb_get_cstring(v, member) : allma_jsonb_get_cstring(map, k);
		char	   *reason;

		if (path == NULL || path[0] != '$')
			continue;
		reason = dead_reason(path);
		if (reason == NULL)
			continue;
		is->dead = allma_jsonb_array_append(is->dead,
											make_obj(5, "flowId", allma_jsonb_string(flow_id),
													 "stepId", allma_jsonb_string(step_id),
													 "field", allma_jsonb_string(psprintf("%s.%s%s%s", field, k,
																						 member ? "." : "", member ? member : "")),
													 "path", allma_jsonb_string(path),
													 "reason", allma_jsonb_string(reason)));
	}
}

/* the report on one stored flow version */
static void
analyze_flow(ImportState *is, const char *flow_id, int32 version)
{
	MemoryContext cxt = CurrentMemoryContext;
	AllmaAsOwner st;
	Oid			types[2] = {TEXTOID, INT4OID};
	Datum		values[2] = {CStringGetTextDatum(flow_id), Int32GetDatum(version)};
	Jsonb	   *def;
	Jsonb	   *steps;
	Jsonb	   *flow_vars;
	List	   *keys;
	ListCell   *lc;
	bool		isnull;

	allma_owner_begin(&st);
	allma_owner_exec("SELECT definition FROM allma.flow_versions WHERE flow_id = $1 AND version = $2",
					 2, types, values, NULL, SPI_OK_SELECT);
	{
		MemoryContext spi = MemoryContextSwitchTo(cxt);

		def = DatumGetJsonbPCopy(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1,
											   &isnull));
		MemoryContextSwitchTo(spi);
	}
	allma_owner_end(&st);

	flow_vars = allma_jsonb_get(def, "flowVariables");
	flow_vars = allma_jsonb_concat(allma_agent_flow_variables(flow_id, false),
								   allma_jsonb_is_object(flow_vars) ? flow_vars : allma_jsonb_empty_object());
	steps = allma_jsonb_get(def, "steps");
	keys = allma_jsonb_object_keys(steps);
	foreach(lc, keys)
	{
		const char *step_id = lfirst(lc);
		Jsonb	   *step = allma_jsonb_get(steps, step_id);
		char	   *type = allma_jsonb_get_cstring(step, "stepType");
		const AllmaStepType *info = type ? allma_step_type_find(type) : NULL;
		Jsonb	   *tcm;

		if (info == NULL)
			continue;
		if (info->starts == 0)
			is->unsupported = allma_jsonb_array_append(is->unsupported,
													   make_obj(3, "flowId", allma_jsonb_string(flow_id),
																"stepId", allma_jsonb_string(step_id),
																"stepType", allma_jsonb_string(type)));
		check_module(is, flow_id, step_id, step, info, flow_vars);
		check_sources(is, flow_id, step_id, allma_jsonb_get(step, "inputMappings"), "inputMappings", NULL);
		check_sources(is, flow_id, step_id, allma_jsonb_get(step, "outputMappings"), "outputMappings", NULL);
		check_sources(is, flow_id, step_id, allma_jsonb_get(step, "payloadTemplate"), "payloadTemplate", NULL);
		tcm = allma_jsonb_get(step, "templateContextMappings");
		check_sources(is, flow_id, step_id, tcm, "templateContextMappings", "sourceJsonPath");
	}
}

/* ----------------------------------------------------------------
 * allma_import
 * ----------------------------------------------------------------
 */

Datum
allma_import(PG_FUNCTION_ARGS)
{
	ImportState is;
	Jsonb	   *bundle;
	List	   *flows;
	List	   *prompts;
	List	   *agents;
	List	   *stepdefs;
	List	   *conflicts = NIL;
	Jsonb	   *report;
	Jsonb	   *fv;
	ListCell   *lc;
	int			mcp = 0;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("bundle must not be null")));
	if (!allma_bundle_tables_exist() || !allma_acl_enforced())
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("allma_import needs the schema of allma 1.1"),
				 errhint("Run ALTER EXTENSION allma UPDATE.")));
	if (toast_raw_datum_size(PG_GETARG_DATUM(0)) > ALLMA_BUNDLE_MAX_BYTES)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("Allma bundle is too large (%zu bytes)",
						(size_t) toast_raw_datum_size(PG_GETARG_DATUM(0))),
				 errdetail("allma_import takes bundles of at most %d bytes.", ALLMA_BUNDLE_MAX_BYTES),
				 errhint("Import the bundle in parts.")));
	bundle = PG_GETARG_JSONB_P(0);

	memset(&is, 0, sizeof(is));
	is.caller = GetUserId();
	is.overwrite = PG_ARGISNULL(1) ? false : PG_GETARG_BOOL(1);
	is.params = check_parameters(PG_ARGISNULL(2) ? NULL : PG_GETARG_JSONB_P(2));
	is.flows = is.prompts = is.agents = is.stepdefs = allma_jsonb_empty_array();
	is.unbound = is.unsupported = is.placeholders = is.dead = allma_jsonb_empty_array();
	is.unresolved_defs = allma_jsonb_empty_array();

	if (!allma_jsonb_is_object(bundle))
		bad_bundle("it must be a JSON object", NULL);
	fv = allma_jsonb_get(bundle, "formatVersion");
	if (fv != NULL)
	{
		char	   *s = allma_jsonb_get_cstring(bundle, "formatVersion");

		if (s == NULL || !(strcmp(s, "1") == 0 || strncmp(s, "1.", 2) == 0))
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("unsupported Allma bundle formatVersion %s", allma_jsonb_to_cstring(fv)),
					 errdetail("allma_import reads formatVersion \"1.x\".")));
	}
	if (allma_jsonb_has_key(bundle, "steps") && !allma_jsonb_has_key(bundle, "flows"))
	{
		/* a single flow definition */
		flows = bundle_part(make_obj(1, "flows",
									 allma_jsonb_array_append(allma_jsonb_empty_array(), bundle)),
							"flows");
		prompts = agents = stepdefs = NIL;
	}
	else
	{
		if (!allma_jsonb_has_key(bundle, "flows") && !allma_jsonb_has_key(bundle, "promptTemplates") &&
			!allma_jsonb_has_key(bundle, "agents") && !allma_jsonb_has_key(bundle, "stepDefinitions"))
			bad_bundle("it has none of \"flows\", \"promptTemplates\", \"agents\", \"stepDefinitions\" and no \"steps\"",
					   NULL);
		flows = bundle_part(bundle, "flows");
		prompts = bundle_part(bundle, "promptTemplates");
		agents = bundle_part(bundle, "agents");
		stepdefs = bundle_part(bundle, "stepDefinitions");
		if (allma_jsonb_is_array(allma_jsonb_get(bundle, "mcpConnections")))
			mcp = allma_jsonb_array_length(allma_jsonb_get(bundle, "mcpConnections"));
	}

	/* nothing is replaced without overwrite, nor without the owner's privileges */
	/* (agents and step definitions have no ACL kind: their owner decides) */
	check_existing(&is, stepdefs, "step definition", "step_definitions", "step_definition_id",
				   "definition", "'{}'", ALLMA_OBJ_FLOW, false, &conflicts);
	check_existing(&is, agents, "agent", "agents", "agent_id", "definition", "'{}'",
				   ALLMA_OBJ_FLOW, false, &conflicts);
	check_existing(&is, prompts, "prompt", "prompts", "prompt_id", "latest_version", "0",
				   ALLMA_OBJ_PROMPT, true, &conflicts);
	check_existing(&is, flows, "flow", "flows", "flow_id", "latest_version", "0",
				   ALLMA_OBJ_FLOW, true, &conflicts);
	if (conflicts != NIL)
	{
		StringInfoData names;

		initStringInfo(&names);
		foreach(lc, conflicts)
			appendStringInfo(&names, "%s%s", names.len ? ", " : "", (char *) lfirst(lc));
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg_plural("the bundle would replace %d existing object: %s",
							   "the bundle would replace %d existing objects: %s",
							   list_length(conflicts), list_length(conflicts), names.data),
				 errdetail("Nothing was imported."),
				 errhint("Import with overwrite => true to add the bundle's versions to them "
						 "(you need to own them).")));
	}

	/* step definitions first: the flows' steps resolve against them */
	store_step_definitions(&is, stepdefs);
	store_prompts(&is, prompts);
	store_flows(&is, flows);
	store_agents(&is, agents, flows);

	/* the report on every stored flow version, agents' variables applied */
	{
		List	   *stored = allma_jsonb_array_elements(is.flows);

		foreach(lc, stored)
		{
			Jsonb	   *f = lfirst(lc);
			double		v;

			(void) allma_jsonb_get_number(f, "version", &v);
			analyze_flow(&is, allma_jsonb_get_cstring(f, "id"), (int32) v);
		}
	}

	report = make_obj(12,
					  "flows", is.flows,
					  "promptTemplates", is.prompts,
					  "agents", is.agents,
					  "stepDefinitions", is.stepdefs,
					  "unboundModules", is.unbound,
					  "unsupportedSteps", is.unsupported,
					  "unresolvedPlaceholders", is.placeholders,
					  "deadMappings", is.dead,
					  "unresolvedStepDefinitions", is.unresolved_defs,
					  "placeholdersReplaced", allma_jsonb_int(is.replaced),
					  "mcpConnectionsSkipped", mcp > 0 ? allma_jsonb_int(mcp) : NULL,
					  "overwrite", allma_jsonb_bool(is.overwrite));
	PG_RETURN_JSONB_P(report);
}
