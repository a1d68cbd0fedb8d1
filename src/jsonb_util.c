/*-------------------------------------------------------------------------
 *
 * jsonb_util.c
 *	  Small helpers over PostgreSQL's jsonb API used throughout allma.
 *
 * allma keeps every piece of flow data (contexts, step inputs and outputs,
 * errors) as jsonb.  This file owns the few conversions the rest of the
 * code needs so that each caller does not re-learn the JsonbValue,
 * container and iterator details.  It knows nothing of flows.
 *
 * IDENTIFICATION
 *	  src/jsonb_util.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/numeric.h"

#include "jsonb_util.h"

Jsonb *
allma_jsonb_parse(const char *json)
{
	return DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(json)));
}

Jsonb *
allma_jsonb_from_value(JsonbValue *v)
{
	return JsonbValueToJsonb(v);
}

Jsonb *
allma_jsonb_empty_object(void)
{
	JsonbParseState *state = NULL;
	JsonbValue *res;

	pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
	res = pushJsonbValue(&state, WJB_END_OBJECT, NULL);
	return JsonbValueToJsonb(res);
}

Jsonb *
allma_jsonb_empty_array(void)
{
	JsonbParseState *state = NULL;
	JsonbValue *res;

	pushJsonbValue(&state, WJB_BEGIN_ARRAY, NULL);
	res = pushJsonbValue(&state, WJB_END_ARRAY, NULL);
	return JsonbValueToJsonb(res);
}

Jsonb *
allma_jsonb_string_len(const char *s, int len)
{
	JsonbValue	v;

	v.type = jbvString;
	v.val.string.val = (char *) s;
	v.val.string.len = len;
	return JsonbValueToJsonb(&v);
}

Jsonb *
allma_jsonb_string(const char *s)
{
	return allma_jsonb_string_len(s, strlen(s));
}

Jsonb *
allma_jsonb_number(double d)
{
	JsonbValue	v;

	if (isnan(d) || isinf(d))
		return allma_jsonb_null();
	/* integral values print without a fraction */
	if (d == floor(d) && fabs(d) < 1e15)
		return allma_jsonb_int((int64) d);
	v.type = jbvNumeric;
	v.val.numeric = DatumGetNumeric(DirectFunctionCall1(float8_numeric,
														Float8GetDatum(d)));
	return JsonbValueToJsonb(&v);
}

Jsonb *
allma_jsonb_int(int64 i)
{
	JsonbValue	v;

	v.type = jbvNumeric;
	v.val.numeric = int64_to_numeric(i);
	return JsonbValueToJsonb(&v);
}

Jsonb *
allma_jsonb_bool(bool b)
{
	JsonbValue	v;

	v.type = jbvBool;
	v.val.boolean = b;
	return JsonbValueToJsonb(&v);
}

Jsonb *
allma_jsonb_null(void)
{
	JsonbValue	v;

	v.type = jbvNull;
	return JsonbValueToJsonb(&v);
}

char *
allma_jsonb_to_cstring(Jsonb *jb)
{
	if (jb == NULL)
		return pstrdup("null");
	return JsonbToCString(NULL, &jb->root, VARSIZE(jb));
}

bool
allma_jsonb_is_object(Jsonb *jb)
{
	return jb != NULL && JB_ROOT_IS_OBJECT(jb);
}

bool
allma_jsonb_is_array(Jsonb *jb)
{
	return jb != NULL && JB_ROOT_IS_ARRAY(jb) && !JB_ROOT_IS_SCALAR(jb);
}

bool
allma_jsonb_is_scalar(Jsonb *jb)
{
	return jb != NULL && JB_ROOT_IS_SCALAR(jb);
}

/*
 * allma_jsonb_scalar extracts the scalar of a raw-scalar jsonb; false for
 * objects, arrays and NULL.
 */
bool
allma_jsonb_scalar(Jsonb *jb, JsonbValue *out)
{
	if (jb == NULL || !JB_ROOT_IS_SCALAR(jb))
		return false;
	return JsonbExtractScalar(&jb->root, out);
}

/*
 * allma_jsonb_truthy implements Allma's truthiness: absent, null, false, 0,
 * "" and the empty array are false; everything else (including {}) is true.
 */
bool
allma_jsonb_truthy(Jsonb *jb)
{
	JsonbValue	v;

	if (jb == NULL)
		return false;
	if (allma_jsonb_is_array(jb))
		return JB_ROOT_COUNT(jb) > 0;
	if (allma_jsonb_is_object(jb))
		return true;
	if (!allma_jsonb_scalar(jb, &v))
		return false;
	switch (v.type)
	{
		case jbvNull:
			return false;
		case jbvBool:
			return v.val.boolean;
		case jbvString:
			return v.val.string.len > 0;
		case jbvNumeric:
			return !(numeric_is_nan(v.val.numeric) ||
					 DatumGetBool(DirectFunctionCall2(numeric_eq,
													  NumericGetDatum(v.val.numeric),
													  NumericGetDatum(int64_to_numeric(0)))));
		default:
			return true;
	}
}

int
allma_jsonb_array_length(Jsonb *jb)
{
	if (!allma_jsonb_is_array(jb))
		return -1;
	return JB_ROOT_COUNT(jb);
}

Jsonb *
allma_jsonb_array_element(Jsonb *jb, int index)
{
	JsonbValue *v;

	if (!allma_jsonb_is_array(jb) || index < 0)
		return NULL;
	v = getIthJsonbValueFromContainer(&jb->root, index);
	return v ? JsonbValueToJsonb(v) : NULL;
}

/*
 * allma_jsonb_to_display_text renders a value the way templates show it:
 * strings raw, numbers and booleans as JSON, null and absent as "", objects
 * and arrays as JSON text.
 */
char *
allma_jsonb_to_display_text(Jsonb *jb)
{
	JsonbValue	v;

	if (jb == NULL)
		return pstrdup("");
	if (allma_jsonb_scalar(jb, &v))
	{
		switch (v.type)
		{
			case jbvNull:
				return pstrdup("");
			case jbvString:
				return pnstrdup(v.val.string.val, v.val.string.len);
			case jbvBool:
				return pstrdup(v.val.boolean ? "true" : "false");
			case jbvNumeric:
				return DatumGetCString(DirectFunctionCall1(numeric_out,
														   NumericGetDatum(v.val.numeric)));
			default:
				break;
		}
	}
	return allma_jsonb_to_cstring(jb);
}

Jsonb *
allma_jsonb_get(Jsonb *obj, const char *key)
{
	JsonbValue *v;

	if (!allma_jsonb_is_object(obj))
		return NULL;
	v = getKeyJsonValueFromContainer(&obj->root, key, strlen(key), NULL);
	return v ? JsonbValueToJsonb(v) : NULL;
}

bool
allma_jsonb_has_key(Jsonb *obj, const char *key)
{
	if (!allma_jsonb_is_object(obj))
		return false;
	return getKeyJsonValueFromContainer(&obj->root, key, strlen(key), NULL) != NULL;
}

char *
allma_jsonb_get_cstring(Jsonb *obj, const char *key)
{
	JsonbValue *v;

	if (!allma_jsonb_is_object(obj))
		return NULL;
	v = getKeyJsonValueFromContainer(&obj->root, key, strlen(key), NULL);
	if (v == NULL || v->type != jbvString)
		return NULL;
	return pnstrdup(v->val.string.val, v->val.string.len);
}

bool
allma_jsonb_get_number(Jsonb *obj, const char *key, double *out)
{
	JsonbValue *v;

	if (!allma_jsonb_is_object(obj))
		return false;
	v = getKeyJsonValueFromContainer(&obj->root, key, strlen(key), NULL);
	if (v == NULL || v->type != jbvNumeric)
		return false;
	*out = DatumGetFloat8(DirectFunctionCall1(numeric_float8,
											  NumericGetDatum(v->val.numeric)));
	return true;
}

bool
allma_jsonb_get_bool(Jsonb *obj, const char *key, bool *out)
{
	JsonbValue *v;

	if (!allma_jsonb_is_object(obj))
		return false;
	v = getKeyJsonValueFromContainer(&obj->root, key, strlen(key), NULL);
	if (v == NULL || v->type != jbvBool)
		return false;
	*out = v->val.boolean;
	return true;
}

/*
 * allma_jsonb_push pushes a whole jsonb document (scalar, object or array)
 * as the current array element (WJB_ELEM) or object value (WJB_VALUE).
 */
void
allma_jsonb_push(JsonbParseState **state, JsonbIteratorToken seq, Jsonb *value)
{
	JsonbValue	v;

	if (JB_ROOT_IS_SCALAR(value))
	{
		JsonbExtractScalar(&value->root, &v);
		pushJsonbValue(state, seq, &v);
	}
	else
	{
		v.type = jbvBinary;
		v.val.binary.data = &value->root;
		v.val.binary.len = VARSIZE(value) - VARHDRSZ;
		pushJsonbValue(state, seq, &v);
	}
}

static Jsonb *
single_key_object(const char *key, Jsonb *value)
{
	JsonbParseState *state = NULL;
	JsonbValue	k;
	JsonbValue *res;

	pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
	k.type = jbvString;
	k.val.string.val = (char *) key;
	k.val.string.len = strlen(key);
	pushJsonbValue(&state, WJB_KEY, &k);
	allma_jsonb_push(&state, WJB_VALUE, value);
	res = pushJsonbValue(&state, WJB_END_OBJECT, NULL);
	return JsonbValueToJsonb(res);
}

/*
 * Building a jsonb value expands every nested container of its inputs into
 * an in-memory JsonbValue tree, several times larger than the binary form.
 * For large inputs, set_key and concat therefore work in a scratch context
 * and copy only the result out, so the trees of one operation are freed
 * before the next one builds its own.
 */
#define SCRATCH_THRESHOLD (64 * 1024)

static Jsonb *
copy_out(Jsonb *jb, MemoryContext target)
{
	Jsonb	   *copy = MemoryContextAlloc(target, VARSIZE(jb));

	memcpy(copy, jb, VARSIZE(jb));
	return copy;
}


/*
 * Setting one top-level key of an object without building JsonbValue
 * trees: the new object's container is written directly from the bytes of
 * the old one (every unchanged key and value is copied as is, re-aligned)
 * plus the new value's bytes.  This keeps the cost of changing one key of a
 * large context proportional to its size in bytes, with no expansion.
 * The layout is PostgreSQL's (utils/jsonb.h): header, 2n JEntries (keys
 * then values, every JB_OFFSET_STRIDE'th holding an end offset, the others
 * a length), then the data; numerics and containers are int-aligned relative
 * to the start of the data, the padding counting as part of their length.
 */
typedef struct SpliceEntry
{
	uint32		type;			/* JENTRY_IS* bits */
	const char *data;
	uint32		len;			/* without padding */
} SpliceEntry;

static bool
entry_needs_align(uint32 type)
{
	return type == JENTRY_ISNUMERIC || type == JENTRY_ISCONTAINER;
}

/* the entry at index i of container jc, without its alignment padding */
static SpliceEntry
container_entry(const JsonbContainer *jc, int nentries, int i)
{
	SpliceEntry e;
	const char *base = (const char *) &jc->children[nentries];
	uint32		off = getJsonbOffset(jc, i);
	uint32		len = getJsonbLength(jc, i);

	e.type = jc->children[i] & JENTRY_TYPEMASK;
	if (entry_needs_align(e.type))
	{
		uint32		aligned = INTALIGN(off);

		e.data = base + aligned;
		e.len = len - (aligned - off);
	}
	else
	{
		e.data = base + off;
		e.len = len;
	}
	return e;
}

static int
compare_keys(const char *a, int alen, const char *b, int blen)
{
	if (alen != blen)
		return alen < blen ? -1 : 1;
	return memcmp(a, b, alen);
}

static Jsonb *
splice_set_key(Jsonb *obj, const char *key, Jsonb *value)
{
	const JsonbContainer *jc = &obj->root;
	int			n = (int) (jc->header & JB_CMASK);
	int			klen = strlen(key);
	SpliceEntry *keys = palloc(sizeof(SpliceEntry) * (n + 1));
	SpliceEntry *vals = palloc(sizeof(SpliceEntry) * (n + 1));
	SpliceEntry newval;
	int			m = 0;
	bool		placed = false;
	Size		size;
	Jsonb	   *result;
	JEntry	   *jentries;
	char	   *data;
	uint32		cur;

	/* the new value: a container as is, or the scalar inside a raw scalar */
	if (JB_ROOT_IS_SCALAR(value))
		newval = container_entry(&value->root, 1, 0);
	else
	{
		newval.type = JENTRY_ISCONTAINER;
		newval.data = (const char *) &value->root;
		newval.len = VARSIZE(value) - VARHDRSZ;
	}

	for (int i = 0; i <= n; i++)
	{
		SpliceEntry k;
		int			cmp;

		if (i < n)
		{
			k = container_entry(jc, 2 * n, i);
			cmp = compare_keys(k.data, k.len, key, klen);
		}
		else
			cmp = 1;			/* past the end: the new key goes here */

		if (!placed && cmp >= 0)
		{
			keys[m].type = JENTRY_ISSTRING;
			keys[m].data = key;
			keys[m].len = klen;
			vals[m++] = newval;
			placed = true;
			if (cmp == 0)
				continue;		/* replaces the old pair */
		}
		if (i < n)
		{
			keys[m] = k;
			vals[m++] = container_entry(jc, 2 * n, n + i);
		}
	}

	/* size: varlena header, container header, JEntries, data with padding */
	size = VARHDRSZ + sizeof(uint32) + sizeof(JEntry) * 2 * m;
	for (int i = 0; i < m; i++)
		size += keys[i].len + vals[i].len + 3;	/* 3: worst-case padding */

	result = palloc0(size);
	result->root.header = (uint32) m | JB_FOBJECT;
	jentries = result->root.children;
	data = (char *) &jentries[2 * m];
	cur = 0;
	for (int i = 0; i < 2 * m; i++)
	{
		SpliceEntry *e = i < m ? &keys[i] : &vals[i - m];
		uint32		start = cur;
		JEntry		meta;

		if (entry_needs_align(e->type))
			cur = INTALIGN(cur);	/* palloc0 left the padding zeroed */
		memcpy(data + cur, e->data, e->len);
		cur += e->len;
		if (cur > JENTRY_OFFLENMASK)
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("total size of jsonb object elements exceeds the maximum of %u bytes",
							JENTRY_OFFLENMASK)));
		if (i % JB_OFFSET_STRIDE == 0)
			meta = e->type | cur | JENTRY_HAS_OFF;
		else
			meta = e->type | (cur - start);
		jentries[i] = meta;
	}
	SET_VARSIZE(result, (char *) data + cur - (char *) result);
	return result;
}

static Jsonb *
set_key_direct(Jsonb *obj, const char *key, Jsonb *value)
{
	if (!allma_jsonb_is_object(obj))
		return single_key_object(key, value);
#ifdef ALLMA_CHECK_SPLICE
	{
		Jsonb	   *a = splice_set_key(obj, key, value);
		Jsonb	   *b = DatumGetJsonbP(DirectFunctionCall2(jsonb_concat,
														   JsonbPGetDatum(obj),
														   JsonbPGetDatum(single_key_object(key, value))));

		if (VARSIZE(a) != VARSIZE(b) || memcmp(a, b, VARSIZE(a)) != 0)
			elog(ERROR, "allma splice mismatch for key \"%s\": %s vs %s", key,
				 allma_jsonb_to_cstring(a), allma_jsonb_to_cstring(b));
		return a;
	}
#endif
	return splice_set_key(obj, key, value);
}

/*
 * allma_jsonb_set_key returns obj with key set to value.  A NULL or
 * non-object obj is treated as {}.  A NULL value removes the key.
 */
Jsonb *
allma_jsonb_set_key(Jsonb *obj, const char *key, Jsonb *value)
{
	MemoryContext caller = CurrentMemoryContext;
	MemoryContext scratch;
	Jsonb	   *result;

	if (value == NULL)
		return allma_jsonb_delete_key(obj, key);
	if (VARSIZE(value) + (obj ? VARSIZE(obj) : 0) < SCRATCH_THRESHOLD)
		return set_key_direct(obj, key, value);

	scratch = AllocSetContextCreate(caller, "allma jsonb scratch", ALLOCSET_DEFAULT_SIZES);
	MemoryContextSwitchTo(scratch);
	result = copy_out(set_key_direct(obj, key, value), caller);
	MemoryContextSwitchTo(caller);
	MemoryContextDelete(scratch);
	return result;
}

Jsonb *
allma_jsonb_delete_key(Jsonb *obj, const char *key)
{
	if (!allma_jsonb_is_object(obj))
		return obj ? obj : allma_jsonb_empty_object();
	return DatumGetJsonbP(DirectFunctionCall2(jsonb_delete,
											  JsonbPGetDatum(obj),
											  CStringGetTextDatum(key)));
}

/*
 * allma_jsonb_merge3 is (a || b) || c for three objects (NULL: none) built
 * in one pass: the later one's value wins for a key that repeats, as with
 * jsonb ||.  Not objects: the two concatenations.
 */
Jsonb *
allma_jsonb_merge3(Jsonb *a, Jsonb *b, Jsonb *c)
{
	Jsonb	   *parts[3] = {a, b, c};
	JsonbParseState *state = NULL;
	JsonbValue *res;

	for (int i = 0; i < 3; i++)
	{
		if (parts[i] != NULL && !allma_jsonb_is_object(parts[i]))
			return allma_jsonb_concat(allma_jsonb_concat(a, b), c);
	}
	pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
	for (int i = 0; i < 3; i++)
	{
		JsonbIterator *it;
		JsonbIteratorToken tok;
		JsonbValue	v;

		if (parts[i] == NULL)
			continue;
		it = JsonbIteratorInit(&parts[i]->root);
		while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
		{
			if (tok == WJB_KEY || tok == WJB_VALUE)
				pushJsonbValue(&state, tok, &v);
		}
	}
	res = pushJsonbValue(&state, WJB_END_OBJECT, NULL);
	return JsonbValueToJsonb(res);
}

/* jsonb's || operator: objects merge shallowly (b wins), arrays concatenate */
Jsonb *
allma_jsonb_concat(Jsonb *a, Jsonb *b)
{
	MemoryContext caller = CurrentMemoryContext;
	MemoryContext scratch;
	Jsonb	   *result;

	if (a == NULL)
		return b;
	if (b == NULL)
		return a;
	if (VARSIZE(a) + VARSIZE(b) < SCRATCH_THRESHOLD)
		return DatumGetJsonbP(DirectFunctionCall2(jsonb_concat,
												  JsonbPGetDatum(a),
												  JsonbPGetDatum(b)));

	scratch = AllocSetContextCreate(caller, "allma jsonb scratch", ALLOCSET_DEFAULT_SIZES);
	MemoryContextSwitchTo(scratch);
	result = DatumGetJsonbP(DirectFunctionCall2(jsonb_concat,
												JsonbPGetDatum(a),
												JsonbPGetDatum(b)));
	result = copy_out(result, caller);
	MemoryContextSwitchTo(caller);
	MemoryContextDelete(scratch);
	return result;
}

Jsonb *
allma_jsonb_array_append(Jsonb *arr, Jsonb *value)
{
	JsonbParseState *state = NULL;
	JsonbValue *res;
	Jsonb	   *wrapped;

	pushJsonbValue(&state, WJB_BEGIN_ARRAY, NULL);
	allma_jsonb_push(&state, WJB_ELEM, value ? value : allma_jsonb_null());
	res = pushJsonbValue(&state, WJB_END_ARRAY, NULL);
	wrapped = JsonbValueToJsonb(res);
	if (!allma_jsonb_is_array(arr))
		return wrapped;
	return allma_jsonb_concat(arr, wrapped);
}

void
allma_jsonb_foreach_key(Jsonb *obj, allma_jsonb_object_cb cb, void *arg)
{
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	char	   *key = NULL;

	if (!allma_jsonb_is_object(obj))
		return;
	it = JsonbIteratorInit(&obj->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (tok == WJB_KEY)
			key = pnstrdup(v.val.string.val, v.val.string.len);
		else if (tok == WJB_VALUE)
			cb(key, JsonbValueToJsonb(&v), arg);
	}
}

List *
allma_jsonb_object_keys(Jsonb *obj)
{
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	List	   *keys = NIL;

	if (!allma_jsonb_is_object(obj))
		return NIL;
	it = JsonbIteratorInit(&obj->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (tok == WJB_KEY)
			keys = lappend(keys, pnstrdup(v.val.string.val, v.val.string.len));
	}
	return keys;
}

List *
allma_jsonb_array_elements(Jsonb *arr)
{
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	List	   *elems = NIL;

	if (!allma_jsonb_is_array(arr))
		return NIL;
	it = JsonbIteratorInit(&arr->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (tok == WJB_ELEM)
			elems = lappend(elems, JsonbValueToJsonb(&v));
	}
	return elems;
}
