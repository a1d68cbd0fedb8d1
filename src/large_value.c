/*-------------------------------------------------------------------------
 *
 * large_value.c
 *	  Values out of line: storing big values once in allma.large_values,
 *	  the pointers that stand for them, and reading them back.
 *
 * A value above allma.out_of_line_threshold bytes (a step output, a value
 * of the context, a fork's COLLECT_ARRAY, see fork.c) is inserted as a row
 * of allma.large_values and replaced by {"$allma_ref": "<value_id>",
 * "bytes": n}.  The context and the history then carry the pointer, so the
 * context stays small and a history row references the value instead of
 * copying it.  An array may be stored in parts of at most
 * ALLMA_LARGE_PART_ELEMENTS elements (first_element says where a part
 * starts), so that one element can be read without the rest.
 *
 * Lookups in a worker are scoped to the root execution of the path it runs
 * (allma_large_scope_set): a pointer names a value only within its own
 * execution tree, whatever the value id says, so a pointer copied into
 * another execution's input (or forged) finds nothing and the step fails.
 * Outside a worker's scope, allma_value() and allma_hydrate() read as the
 * calling role, through row-level security.  Paths (path.c) walk through a
 * pointer only in a scope; the authoring helpers (allma_path_query, ...)
 * see pointers as the plain objects they are.
 *
 * IDENTIFICATION
 *	  src/large_value.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"

#include "jsonb_util.h"
#include "large_value.h"
#include "owner.h"

int			allma_out_of_line_threshold = 1024 * 1024;

/* pointers inside stored values are followed at most this deep */
#define MAX_REF_DEPTH 16

static bool scope_on = false;
static pg_uuid_t scope_root;
static pg_uuid_t scope_execution;

void
allma_large_scope_set(const pg_uuid_t *root, const pg_uuid_t *execution)
{
	scope_root = *root;
	scope_execution = *execution;
	scope_on = true;
}

void
allma_large_scope_clear(void)
{
	scope_on = false;
}

bool
allma_large_scope_active(void)
{
	return scope_on;
}

/* value of a hex digit, or -1 */
static int
hexdigit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* parses the 36-character text form of a uuid; false when malformed */
static bool
parse_uuid(const char *s, int len, pg_uuid_t *out)
{
	int			j = 0;

	if (len != 36)
		return false;
	for (int i = 0; i < 36; i++)
	{
		int			hi,
					lo;

		if (i == 8 || i == 13 || i == 18 || i == 23)
		{
			if (s[i] != '-')
				return false;
			continue;
		}
		hi = hexdigit(s[i]);
		lo = (i + 1 < 36) ? hexdigit(s[i + 1]) : -1;
		if (hi < 0 || lo < 0)
			return false;
		out->data[j++] = (unsigned char) (hi << 4 | lo);
		i++;
	}
	return j == UUID_LEN;
}

typedef void (*lookup_fn) (void *arg);
static void run_lookup(const char *where_tail, const char *select_list, const char *order,
					   const pg_uuid_t *id, int64 extra, lookup_fn fn, void *arg);
static Jsonb *hydrate_depth(Jsonb *doc, int depth);

bool
allma_large_is_ref(JsonbContainer *c, pg_uuid_t *id)
{
	JsonbValue *v;
	pg_uuid_t	tmp;

	if (c == NULL || !JsonContainerIsObject(c) || JsonContainerSize(c) > 3 ||
		JsonContainerSize(c) < 1)
		return false;
	v = getKeyJsonValueFromContainer(c, ALLMA_REF_KEY, strlen(ALLMA_REF_KEY), NULL);
	if (v == NULL || v->type != jbvString)
		return false;
	return parse_uuid(v->val.string.val, v->val.string.len, id ? id : &tmp);
}

bool
allma_large_may_hold_ref(Jsonb *doc)
{
	const char *data;
	size_t		len;
	size_t		klen = strlen(ALLMA_REF_KEY);

	if (doc == NULL || JB_ROOT_IS_SCALAR(doc))
		return false;
	data = VARDATA_ANY(doc);
	len = VARSIZE_ANY_EXHDR(doc);
	for (const char *p = data; (size_t) (p - data) + klen <= len; p++)
	{
		p = memchr(p, '$', len - (p - data));
		if (p == NULL || (size_t) (p - data) + klen > len)
			return false;
		if (memcmp(p, ALLMA_REF_KEY, klen) == 0)
			return true;
	}
	return false;
}

Jsonb *
allma_large_make_ref(const pg_uuid_t *id, int64 bytes, int64 elements)
{
	Jsonb	   *ref;

	ref = allma_jsonb_set_key(NULL, ALLMA_REF_KEY,
							  allma_jsonb_string(DatumGetCString(DirectFunctionCall1(uuid_out,
																					 UUIDPGetDatum(id)))));
	ref = allma_jsonb_set_key(ref, "bytes", allma_jsonb_int(bytes));
	if (elements >= 0)
		ref = allma_jsonb_set_key(ref, "length", allma_jsonb_int(elements));
	return ref;
}

/* a new random (version 4) value id */
static void
new_value_id(pg_uuid_t *id)
{
	if (!pg_strong_random(id->data, UUID_LEN))
		elog(ERROR, "allma: could not generate a value id");
	id->data[6] = (id->data[6] & 0x0f) | 0x40;
	id->data[8] = (id->data[8] & 0x3f) | 0x80;
}

/* inserts one row (part) of value id */
static void
insert_part(const pg_uuid_t *id, int32 part, int64 first, Jsonb *value)
{
	Oid			types[7] = {UUIDOID, UUIDOID, UUIDOID, JSONBOID, INT8OID, INT4OID, INT8OID};
	Datum		args[7];
	char		nulls[7] = "       ";

	args[0] = UUIDPGetDatum(&scope_root);
	args[1] = UUIDPGetDatum(&scope_execution);
	args[2] = UUIDPGetDatum(id);
	args[3] = JsonbPGetDatum(value);
	args[4] = Int64GetDatum((int64) VARSIZE(value));
	args[5] = Int32GetDatum(part);
	args[6] = Int64GetDatum(first);
	if (first < 0)
		nulls[6] = 'n';
	allma_owner_exec("INSERT INTO allma.large_values (root_execution_id, value_id, execution_id, value, "
					 "bytes, part, first_element) VALUES ($1, $3, $2, $4, $5, $6, $7)",
					 7, types, args, nulls, SPI_OK_INSERT);
}

/*
 * allma_large_store: an array of more than ALLMA_LARGE_PART_ELEMENTS
 * elements is stored in parts, so that an element, or the items of a fork,
 * can be read a part at a time
 */
Jsonb *
allma_large_store(Jsonb *value)
{
	AllmaAsOwner st;
	pg_uuid_t	id;
	int64		elements = -1;

	if (!scope_on)
		elog(ERROR, "allma: a large value can only be stored while a path runs");
	new_value_id(&id);
	allma_owner_begin(&st);
	if (allma_jsonb_is_array(value) && JB_ROOT_COUNT(value) > ALLMA_LARGE_PART_ELEMENTS)
	{
		MemoryContext partcxt = AllocSetContextCreate(CurrentMemoryContext, "allma value part",
													  ALLOCSET_DEFAULT_SIZES);
		JsonbIterator *it = JsonbIteratorInit(&value->root);
		JsonbParseState *state = NULL;
		JsonbValue	v;
		JsonbIteratorToken tok;
		int64		n = 0;
		int32		part = 0;
		MemoryContext oldcxt;

		elements = JB_ROOT_COUNT(value);
		while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
		{
			if (tok != WJB_ELEM)
				continue;
			oldcxt = MemoryContextSwitchTo(partcxt);
			if (n % ALLMA_LARGE_PART_ELEMENTS == 0)
				pushJsonbValue(&state, WJB_BEGIN_ARRAY, NULL);
			pushJsonbValue(&state, WJB_ELEM, &v);
			n++;
			if (n % ALLMA_LARGE_PART_ELEMENTS == 0 || n == elements)
			{
				insert_part(&id, part, (int64) part * ALLMA_LARGE_PART_ELEMENTS,
							JsonbValueToJsonb(pushJsonbValue(&state, WJB_END_ARRAY, NULL)));
				part++;
				state = NULL;
				MemoryContextSwitchTo(oldcxt);
				MemoryContextReset(partcxt);
			}
			else
				MemoryContextSwitchTo(oldcxt);
		}
		MemoryContextDelete(partcxt);
	}
	else
	{
		if (allma_jsonb_is_array(value))
			elements = JB_ROOT_COUNT(value);
		insert_part(&id, 0, -1, value);
	}
	allma_owner_end(&st);
	return allma_large_make_ref(&id, VARSIZE(value), elements);
}

Jsonb *
allma_large_offload_context_in(const pg_uuid_t *root, const pg_uuid_t *execution, Jsonb *ctx)
{
	bool		had_scope = scope_on;
	pg_uuid_t	saved_root = scope_root;
	pg_uuid_t	saved_execution = scope_execution;

	if (ctx == NULL || allma_out_of_line_threshold <= 0 ||
		VARSIZE(ctx) <= (Size) allma_out_of_line_threshold)
		return ctx;
	allma_large_scope_set(root, execution);
	PG_TRY();
	{
		ctx = allma_large_offload_context(ctx);
	}
	PG_FINALLY();
	{
		scope_on = had_scope;
		scope_root = saved_root;
		scope_execution = saved_execution;
	}
	PG_END_TRY();
	return ctx;
}

typedef struct PartState
{
	MemoryContext outer;
	Jsonb	   *result;
	int64		first;
} PartState;

static void
part_row(void *arg)
{
	PartState  *ps = arg;
	bool		isnull;
	Datum		d;
	MemoryContext spicxt;

	if (SPI_processed == 0)
		return;
	spicxt = MemoryContextSwitchTo(ps->outer);
	ps->result = DatumGetJsonbPCopy(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull);
	ps->first = isnull ? -1 : DatumGetInt64(d);
	MemoryContextSwitchTo(spicxt);
}

Jsonb *
allma_large_part(const pg_uuid_t *id, int32 part, int64 *first)
{
	PartState	ps;

	ps.outer = CurrentMemoryContext;
	ps.result = NULL;
	ps.first = -1;
	run_lookup("AND part = $3", "value, first_element", "", id, part, part_row, &ps);
	if (first)
		*first = ps.first;
	return ps.result ? hydrate_depth(ps.result, 1) : NULL;
}

/*
 * run_lookup runs a query over allma.large_values: as the bootstrap
 * superuser scoped to the root execution ($1 is the root, $2 the value id,
 * $3 extra) in a worker's scope, else as the caller through row security
 * (the query's "root_execution_id = $1 AND" is dropped).  Calls fn on the
 * result while SPI is connected.
 */
static void
run_lookup(const char *where_tail, const char *select_list, const char *order,
		   const pg_uuid_t *id, int64 extra, lookup_fn fn, void *arg)
{
	Oid			types[3] = {UUIDOID, UUIDOID, INT8OID};
	Datum		args[3];
	char	   *sql;

	if (scope_on)
	{
		AllmaAsOwner st;

		sql = psprintf("SELECT %s FROM allma.large_values WHERE root_execution_id = $1 AND value_id = $2 %s %s",
					   select_list, where_tail, order);
		args[0] = UUIDPGetDatum(&scope_root);
		args[1] = UUIDPGetDatum(id);
		args[2] = Int64GetDatum(extra);
		allma_owner_begin(&st);
		allma_owner_exec(sql, 3, types, args, NULL, SPI_OK_SELECT);
		fn(arg);
		allma_owner_end(&st);
	}
	else
	{
		/* the same parameter numbers: $1 is unused but typed */
		sql = psprintf("SELECT %s FROM allma.large_values WHERE $1 IS NOT NULL AND value_id = $2 %s %s",
					   select_list, where_tail, order);
		args[0] = UUIDPGetDatum(id);
		args[1] = UUIDPGetDatum(id);
		args[2] = Int64GetDatum(extra);
		SPI_connect();
		if (SPI_execute_with_args(sql, 3, types, args, NULL, true, 0) != SPI_OK_SELECT)
			elog(ERROR, "allma: large value lookup failed");
		fn(arg);
		SPI_finish();
	}
}

typedef struct FetchState
{
	MemoryContext outer;
	Jsonb	   *result;
	bool		found;
} FetchState;

/* the whole value: one row, or the concatenation of an array's parts */
static void
fetch_rows(void *arg)
{
	FetchState *fs = arg;
	MemoryContext spicxt;
	JsonbParseState *state = NULL;
	bool		isnull;

	if (SPI_processed == 0)
		return;
	fs->found = true;
	spicxt = MemoryContextSwitchTo(fs->outer);
	if (SPI_processed == 1 &&
		(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull), isnull))
		fs->result = DatumGetJsonbPCopy(SPI_getbinval(SPI_tuptable->vals[0],
													  SPI_tuptable->tupdesc, 1, &isnull));
	else
	{
		pushJsonbValue(&state, WJB_BEGIN_ARRAY, NULL);
		for (uint64 r = 0; r < SPI_processed; r++)
		{
			Jsonb	   *part = DatumGetJsonbP(SPI_getbinval(SPI_tuptable->vals[r],
															SPI_tuptable->tupdesc, 1, &isnull));
			JsonbIterator *it = JsonbIteratorInit(&part->root);
			JsonbValue	v;
			JsonbIteratorToken tok;

			while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
				if (tok == WJB_ELEM)
					pushJsonbValue(&state, WJB_ELEM, &v);
		}
		fs->result = JsonbValueToJsonb(pushJsonbValue(&state, WJB_END_ARRAY, NULL));
	}
	MemoryContextSwitchTo(spicxt);
}

static void
not_found(const pg_uuid_t *id)
{
	ereport(ERROR,
			(errcode(ERRCODE_UNDEFINED_OBJECT),
			 errmsg("out-of-line value %s does not exist",
					DatumGetCString(DirectFunctionCall1(uuid_out, UUIDPGetDatum(id)))),
			 errdetail("A pointer {\"%s\": ...} names a value of allma.large_values of the same execution tree that the reader may see.",
					   ALLMA_REF_KEY),
			 errhint("The execution may have been purged, or the pointer was copied from another execution.")));
}

static Jsonb *
fetch_depth(const pg_uuid_t *id, int depth)
{
	FetchState	fs;

	if (depth > MAX_REF_DEPTH)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("out-of-line values nest more than %d deep", MAX_REF_DEPTH)));
	fs.outer = CurrentMemoryContext;
	fs.result = NULL;
	fs.found = false;
	run_lookup("", "value, first_element", "ORDER BY part", id, 0, fetch_rows, &fs);
	if (!fs.found)
		not_found(id);
	return hydrate_depth(fs.result, depth + 1);
}

Jsonb *
allma_large_fetch(const pg_uuid_t *id)
{
	return fetch_depth(id, 0);
}

typedef struct ElementState
{
	MemoryContext outer;
	int64		idx;
	Jsonb	   *result;
	int64		length;
	bool		found;
} ElementState;

/* the part holding element idx: (value, first_element, length) */
static void
element_row(void *arg)
{
	ElementState *es = arg;
	bool		isnull;
	Jsonb	   *part;
	Datum		d;
	int64		first = 0;
	MemoryContext spicxt;

	if (SPI_processed == 0)
		return;
	es->found = true;
	part = DatumGetJsonbP(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull);
	if (!isnull)
		first = DatumGetInt64(d);
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3, &isnull);
	es->length = isnull ? -1 : DatumGetInt64(d);
	if (!JB_ROOT_IS_ARRAY(part) || JB_ROOT_IS_SCALAR(part) || es->idx < 0)
		return;
	if (es->idx - first < 0 || es->idx - first >= JB_ROOT_COUNT(part))
		return;
	spicxt = MemoryContextSwitchTo(es->outer);
	es->result = allma_jsonb_from_value(getIthJsonbValueFromContainer(&part->root,
																	  (uint32) (es->idx - first)));
	MemoryContextSwitchTo(spicxt);
}

Jsonb *
allma_large_element(const pg_uuid_t *id, int64 idx, int64 *length)
{
	ElementState es;
	const char *cols = "value, first_element, "
	"(SELECT CASE WHEN jsonb_typeof(l.value) = 'array' "
	"  THEN coalesce(l.first_element, 0) + jsonb_array_length(l.value) END "
	"   FROM allma.large_values l WHERE l.root_execution_id = large_values.root_execution_id "
	"    AND l.value_id = large_values.value_id ORDER BY l.part DESC LIMIT 1)";

	es.outer = CurrentMemoryContext;
	es.result = NULL;
	es.length = -1;
	es.found = false;
	es.idx = -1;
	if (idx < 0)
	{
		/* from the end: the length first */
		run_lookup("", cols, "ORDER BY part LIMIT 1", id, 0, element_row, &es);
		if (!es.found)
			not_found(id);
		if (length)
			*length = es.length;
		if (es.length < 0 || idx + es.length < 0)
			return NULL;
		idx += es.length;
		es.found = false;
	}
	es.idx = idx;
	run_lookup("AND (first_element IS NULL OR first_element <= $3)", cols,
			   "ORDER BY part DESC LIMIT 1", id, idx, element_row, &es);
	if (!es.found)
		not_found(id);
	if (length)
		*length = es.length;
	return es.result ? hydrate_depth(es.result, 1) : NULL;
}

/* pushes v (a value of a document being hydrated) with its pointers replaced */
static void
push_hydrated(JsonbParseState **state, JsonbIteratorToken tok, JsonbValue *v, int depth)
{
	pg_uuid_t	id;
	JsonbIterator *it;
	JsonbValue	child;
	JsonbIteratorToken t;

	if (v->type != jbvBinary)
	{
		pushJsonbValue(state, tok, v);
		return;
	}
	if (allma_large_is_ref(v->val.binary.data, &id))
	{
		allma_jsonb_push(state, tok, fetch_depth(&id, depth + 1));
		return;
	}
	it = JsonbIteratorInit(v->val.binary.data);
	while ((t = JsonbIteratorNext(&it, &child, true)) != WJB_DONE)
	{
		if (t == WJB_ELEM || t == WJB_VALUE)
			push_hydrated(state, t, &child, depth);
		else if (t == WJB_KEY)
			pushJsonbValue(state, t, &child);
		else
			pushJsonbValue(state, t, NULL);
	}
}

static Jsonb *
hydrate_depth(Jsonb *doc, int depth)
{
	JsonbParseState *state = NULL;
	JsonbValue	v;
	JsonbValue *res = NULL;
	JsonbIterator *it;
	JsonbIteratorToken t;
	pg_uuid_t	id;

	if (doc == NULL || !allma_large_may_hold_ref(doc))
		return doc;
	if (allma_large_is_ref(&doc->root, &id))
		return fetch_depth(&id, depth);
	it = JsonbIteratorInit(&doc->root);
	while ((t = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (t == WJB_ELEM || t == WJB_VALUE)
			push_hydrated(&state, t, &v, depth);
		else if (t == WJB_KEY)
			res = pushJsonbValue(&state, t, &v);
		else
			res = pushJsonbValue(&state, t, NULL);
	}
	return JsonbValueToJsonb(res);
}

Jsonb *
allma_large_hydrate(Jsonb *doc)
{
	return hydrate_depth(doc, 0);
}

Jsonb *
allma_large_hydrate_in(const pg_uuid_t *execution_id, Jsonb *doc)
{
	Oid			types[1] = {UUIDOID};
	Datum		args[1];
	AllmaAsOwner st;
	bool		isnull;
	Datum		d;
	pg_uuid_t	root;
	bool		had_scope = scope_on;
	pg_uuid_t	saved_root = scope_root;
	pg_uuid_t	saved_execution = scope_execution;

	if (doc == NULL || !allma_large_may_hold_ref(doc))
		return doc;
	args[0] = UUIDPGetDatum(execution_id);
	allma_owner_begin(&st);
	allma_owner_exec("SELECT coalesce(root_execution_id, execution_id) FROM allma.executions "
					 "WHERE execution_id = $1", 1, types, args, NULL, SPI_OK_SELECT);
	if (SPI_processed != 1)
		elog(ERROR, "allma: execution to hydrate a value of is gone");
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	memcpy(&root, DatumGetUUIDP(d), sizeof(root));
	allma_owner_end(&st);

	allma_large_scope_set(&root, execution_id);
	PG_TRY();
	{
		doc = allma_large_hydrate(doc);
	}
	PG_FINALLY();
	{
		scope_on = had_scope;
		scope_root = saved_root;
		scope_execution = saved_execution;
	}
	PG_END_TRY();
	return doc;
}

Jsonb *
allma_large_offload(Jsonb *value)
{
	if (value == NULL || !scope_on || allma_out_of_line_threshold <= 0 ||
		VARSIZE(value) <= (Size) allma_out_of_line_threshold ||
		allma_large_is_ref(&value->root, NULL))
		return value;
	return allma_large_store(value);
}

typedef struct OffloadState
{
	Jsonb	   *obj;
	bool		changed;
	bool		nested;			/* also offload steps_output's values */
} OffloadState;

static void
offload_key(const char *key, Jsonb *value, void *arg)
{
	OffloadState *os = arg;
	Jsonb	   *stored;

	if (os->nested && strcmp(key, "steps_output") == 0 && allma_jsonb_is_object(value) &&
		VARSIZE(value) > (Size) allma_out_of_line_threshold)
	{
		OffloadState inner = {value, false, false};

		allma_jsonb_foreach_key(value, offload_key, &inner);
		if (inner.changed)
		{
			os->obj = allma_jsonb_set_key(os->obj, key, inner.obj);
			os->changed = true;
		}
		if (VARSIZE(inner.obj) <= (Size) allma_out_of_line_threshold)
			return;
		value = inner.obj;
	}
	stored = allma_large_offload(value);
	if (stored != value)
	{
		os->obj = allma_jsonb_set_key(os->obj, key, stored);
		os->changed = true;
	}
}

Jsonb *
allma_large_offload_context(Jsonb *ctx)
{
	OffloadState os;

	if (ctx == NULL || !scope_on || allma_out_of_line_threshold <= 0 ||
		VARSIZE(ctx) <= (Size) allma_out_of_line_threshold || !allma_jsonb_is_object(ctx))
		return ctx;
	os.obj = ctx;
	os.changed = false;
	os.nested = true;
	allma_jsonb_foreach_key(ctx, offload_key, &os);
	return os.obj;
}

/* ----------------------------------------------------------------
 * SQL functions (as the caller: row-level security applies)
 * ----------------------------------------------------------------
 */

PG_FUNCTION_INFO_V1(allma_value);
Datum
allma_value(PG_FUNCTION_ARGS)
{
	Jsonb	   *ref = PG_GETARG_JSONB_P(0);
	pg_uuid_t	id;

	if (JB_ROOT_IS_SCALAR(ref) || !allma_large_is_ref(&ref->root, &id))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("allma_value: the argument is not a pointer to an out-of-line value"),
				 errhint("Pass an object {\"%s\": \"<uuid>\", \"bytes\": n} as found in a context or a history row.",
						 ALLMA_REF_KEY)));
	PG_RETURN_JSONB_P(allma_large_fetch(&id));
}

PG_FUNCTION_INFO_V1(allma_hydrate);
Datum
allma_hydrate(PG_FUNCTION_ARGS)
{
	PG_RETURN_JSONB_P(allma_large_hydrate(PG_GETARG_JSONB_P(0)));
}
