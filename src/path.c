/*-------------------------------------------------------------------------
 *
 * path.c
 *	  Allma JSONPaths (jsonpath-plus syntax) and dot paths: the cache of
 *	  parsed paths, their evaluation and assignment, and the SQL functions
 *	  allma_path_query and allma_jsonpath.
 *
 * Allma flows address data with jsonpath-plus paths ("$.a.b[0]", "$['k']",
 * "$..x", "$.a[*]", "$.a[?(@.x > 1)]", "$.a[-1:]") and name places inside
 * a step input with dot paths ("a.b[0].c", "a['x y']").  path_parse.c
 * parses both and translates JSONPaths into PostgreSQL's jsonpath
 * language; this file uses what it produces.
 *
 * Design notes:
 *
 * - Each path is parsed once and kept in a bounded cache (parsecache.h;
 *   one for JSONPaths, one for dot paths).  Nothing outside this file holds
 *   a pointer into the caches, and no function here keeps one across a
 *   call that could empty them.
 *
 * - A "simple" path is made only of keys, indexes and dynamic segments
 *   ("[$.inner.path]", resolved against the document at run time and
 *   substituted as a key or an index, as Allma does).  Simple paths are
 *   the common case in hot loops, so they are walked directly over the
 *   jsonb containers, with JavaScript's property rules: a numeric key
 *   indexes an array, an index names a key of an object, a negative
 *   index counts from the end of an array, and "length" of an array or a
 *   string is its length.  Other paths are evaluated by PostgreSQL's
 *   jsonpath engine, in their translation.
 *
 * - Results follow jsonpath-plus' wrap:false: no match is NULL (absent),
 *   one match is that value, several matches are an array of them.
 *
 * - Assignment creates missing intermediates as JavaScript code would: an
 *   object, or an array when the segment is an index (padded with nulls).
 *
 * Copyright (c) 2026, the allma authors
 *
 * IDENTIFICATION
 *	  src/path.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/jsonb.h"
#include "utils/jsonpath.h"
#include "utils/memutils.h"
#include "utils/numeric.h"

#include "jsonb_util.h"
#include "large_value.h"
#include "parsecache.h"
#include "path.h"
#include "path_parse.h"

PG_FUNCTION_INFO_V1(allma_path_query);
PG_FUNCTION_INFO_V1(allma_jsonpath);

/* parsed paths (and bytes of their text) kept before a cache is emptied */
#define PATH_CACHE_SIZE 256
#define PATH_CACHE_MAX_BYTES (1024 * 1024)

/* parsed paths, by text (see parsecache.h) */
static AllmaParseCache path_cache =
	ALLMA_PARSECACHE_INIT("allma path cache", PATH_CACHE_SIZE, PATH_CACHE_MAX_BYTES);
static AllmaParseCache dotpath_cache =
	ALLMA_PARSECACHE_INIT("allma dot path cache", PATH_CACHE_SIZE, PATH_CACHE_MAX_BYTES);


/* ---------------------------------------------------------------------
 * Cache
 * ---------------------------------------------------------------------
 */

/* parse functions for the caches: JSONPaths and dot paths */
static void *
parse_jsonpath_text(const char *text, void *arg, char **errmsg)
{
	return allma_path_parse(text, false, errmsg);
}

static void *
parse_dotpath_text(const char *text, void *arg, char **errmsg)
{
	return allma_path_parse(text, true, errmsg);
}

/*
 * get_parsed returns the parsed form of text from its cache (JSONPaths and
 * dot paths have one each), parsing and caching it on a miss.  NULL +
 * *errmsg when the text does not parse.  The result lives in the cache:
 * callers must not keep it across another get_parsed call.
 */
static ParsedPath *
get_parsed(const char *text, bool is_dot, char **errmsg)
{
	if (is_dot)
		return allma_parsecache_get(&dotpath_cache, text, parse_dotpath_text,
									NULL, errmsg);
	return allma_parsecache_get(&path_cache, text, parse_jsonpath_text,
								NULL, errmsg);
}

/* get_parsed, throwing ERRCODE_ALLMA_INVALID_PATH when text is invalid */
static ParsedPath *
get_parsed_or_throw(const char *text, bool is_dot)
{
	char	   *err = NULL;
	ParsedPath *pp = get_parsed(text, is_dot, &err);

	if (pp == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_ALLMA_INVALID_PATH),
				 is_dot ?
				 errmsg("invalid dot path \"%s\"", text) :
				 errmsg("invalid JSONPath \"%s\"", text),
				 errdetail("%s", err)));
	return pp;
}


/* ---------------------------------------------------------------------
 * Checks and translation
 * ---------------------------------------------------------------------
 */

bool
allma_path_check(const char *path, char **errmsg)
{
	return get_parsed(path, false, errmsg) != NULL;
}

bool
allma_path_check_settable(const char *path, char **errmsg)
{
	ParsedPath *pp = get_parsed(path, false, errmsg);

	if (pp == NULL)
		return false;
	if (!pp->settable)
	{
		if (errmsg)
			*errmsg = psprintf("The JSONPath \"%s\" cannot be assigned to: a target path may use only keys and non-negative indexes.",
							   path);
		return false;
	}
	return true;
}

char *
allma_path_to_pg(const char *path, char **errmsg)
{
	ParsedPath *pp = get_parsed(path, false, errmsg);

	if (pp == NULL)
		return NULL;
	if (pp->pgtext == NULL)
	{
		if (errmsg)
			*errmsg = pstrdup("A JSONPath with dynamic segments \"[$...]\" is resolved at run time and has no fixed jsonpath translation.");
		return NULL;
	}
	return pstrdup(pp->pgtext);
}

bool
allma_dotpath_check(const char *dotpath, char **errmsg)
{
	return get_parsed(dotpath, true, errmsg) != NULL;
}


/* ---------------------------------------------------------------------
 * Evaluation
 * ---------------------------------------------------------------------
 */

/*
 * resolve_segments returns a private copy of pp's segments in which every
 * dynamic segment is replaced by the key or index its inner path yields
 * over doc.  Returns NULL when an inner path is absent or yields neither
 * a string nor an integer (with *why set).  Copies first, because
 * evaluating the inner paths may empty the cache that pp lives in.
 */
static PathSeg *
resolve_segments(ParsedPath *pp, Jsonb *doc, const char **why)
{
	int			n = pp->nsegs;
	PathSeg    *segs = palloc(n * sizeof(PathSeg));
	int			i;

	for (i = 0; i < n; i++)
	{
		segs[i] = pp->segs[i];
		if (segs[i].text)
			segs[i].text = pnstrdup(segs[i].text, segs[i].len);
	}
	/* pp must not be used from here on */
	for (i = 0; i < n; i++)
	{
		Jsonb	   *v;
		JsonbValue	sv;

		if (segs[i].kind != SEG_DYNAMIC)
			continue;
		v = allma_path_get(doc, segs[i].text);
		if (v == NULL || !allma_jsonb_scalar(v, &sv))
		{
			*why = psprintf("The dynamic segment \"[%s]\" has no string or number value.",
							segs[i].text);
			return NULL;
		}
		if (sv.type == jbvString)
		{
			segs[i].kind = SEG_KEY;
			segs[i].text = pnstrdup(sv.val.string.val, sv.val.string.len);
			segs[i].len = sv.val.string.len;
		}
		else if (sv.type == jbvNumeric)
		{
			double		d = DatumGetFloat8(DirectFunctionCall1(numeric_float8_no_overflow,
															   NumericGetDatum(sv.val.numeric)));

			if (d != floor(d) || fabs(d) > PATH_MAX_INDEX)
			{
				*why = psprintf("The dynamic segment \"[%s]\" is not an integer.", segs[i].text);
				return NULL;
			}
			segs[i].kind = SEG_INDEX;
			segs[i].index = (int) d;
		}
		else
		{
			*why = psprintf("The dynamic segment \"[%s]\" has no string or number value.",
							segs[i].text);
			return NULL;
		}
	}
	return segs;
}

/* JavaScript's String.prototype.length: UTF-16 code units of UTF-8 text */
static int
js_string_length(const char *s, int len)
{
	int			n = 0;
	int			i;

	for (i = 0; i < len; i++)
	{
		unsigned char c = (unsigned char) s[i];

		if ((c & 0xC0) != 0x80)
			n += (c >= 0xF0) ? 2 : 1;
	}
	return n;
}

/*
 * walk_simple follows keys and indexes from the root of doc; NULL when a
 * step is missing.  As in JavaScript, "length" of an array or a string is
 * its length.
 */
/* a JsonbValue standing for the whole of doc */
static JsonbValue *
value_of(Jsonb *doc)
{
	JsonbValue *v = palloc(sizeof(JsonbValue));

	if (JB_ROOT_IS_SCALAR(doc))
		JsonbExtractScalar(&doc->root, v);
	else
	{
		v->type = jbvBinary;
		v->val.binary.data = &doc->root;
		v->val.binary.len = VARSIZE(doc) - VARHDRSZ;
	}
	return v;
}

/*
 * walk_ref applies one segment to the out-of-line value "id" points to:
 * an index reads only the part of an array that holds the element, and
 * "length" of an array reads no element; anything else reads the whole
 * value.  Returns false with *next the whole value when the segment must
 * be applied to it instead (the caller retries); true with *next the
 * segment's value (NULL: missing).
 */
static bool
walk_ref(pg_uuid_t *id, PathSeg *seg, JsonbValue **next)
{
	int			idx;
	int64		length;
	Jsonb	   *el;

	if (seg->kind == SEG_INDEX ||
		(seg->kind == SEG_KEY && allma_path_canonical_index(seg->text, seg->len, &idx)))
	{
		if (seg->kind == SEG_INDEX)
			idx = seg->index;
		el = allma_large_element(id, idx, &length);
		if (length >= 0)
		{
			*next = el ? value_of(el) : NULL;
			return true;
		}
	}
	else if (seg->kind == SEG_KEY && strcmp(seg->text, "length") == 0)
	{
		(void) allma_large_element(id, 0, &length);
		if (length >= 0)
		{
			*next = palloc(sizeof(JsonbValue));
			(*next)->type = jbvNumeric;
			(*next)->val.numeric = int64_to_numeric(length);
			return true;
		}
	}
	*next = value_of(allma_large_fetch(id));
	return false;
}

static Jsonb *
walk_simple(Jsonb *doc, PathSeg *segs, int nsegs, bool keep_refs)
{
	JsonbValue *cur = NULL;		/* NULL: the root of doc */
	JsonbValue	scalar;
	int			i;
	bool		refs = allma_large_scope_active();
	pg_uuid_t	id;

	for (i = 0; i < nsegs; i++)
	{
		PathSeg    *seg = &segs[i];
		JsonbContainer *jc = NULL;
		JsonbValue *str = NULL;
		int			idx;

		if (cur == NULL)
		{
			if (!JB_ROOT_IS_SCALAR(doc))
				jc = &doc->root;
			else if (JsonbExtractScalar(&doc->root, &scalar))
				str = &scalar;
		}
		else if (cur->type == jbvBinary)
			jc = cur->val.binary.data;
		else
			str = cur;

		/* through a pointer to an out-of-line value */
		if (refs && jc != NULL && allma_large_is_ref(jc, &id))
		{
			if (walk_ref(&id, seg, &cur))
			{
				if (cur == NULL)
					return NULL;
				continue;
			}
			i--;
			continue;
		}

		if (jc == NULL)
		{
			/* a scalar: only a string's length is there */
			if (str == NULL || str->type != jbvString ||
				seg->kind != SEG_KEY || strcmp(seg->text, "length") != 0)
				return NULL;
			cur = palloc(sizeof(JsonbValue));
			cur->type = jbvNumeric;
			cur->val.numeric = int64_to_numeric(js_string_length(str->val.string.val,
																 str->val.string.len));
			continue;
		}

		if (JsonContainerIsArray(jc))
		{
			int			size = JsonContainerSize(jc);

			if (seg->kind == SEG_INDEX)
				idx = seg->index;
			else if (strcmp(seg->text, "length") == 0)
			{
				cur = palloc(sizeof(JsonbValue));
				cur->type = jbvNumeric;
				cur->val.numeric = int64_to_numeric(size);
				continue;
			}
			else if (!allma_path_canonical_index(seg->text, seg->len, &idx))
				return NULL;
			if (idx < 0)
				idx += size;
			if (idx < 0 || idx >= size)
				return NULL;
			cur = getIthJsonbValueFromContainer(jc, idx);
		}
		else
		{
			if (seg->kind == SEG_INDEX)
			{
				char		buf[16];

				snprintf(buf, sizeof(buf), "%d", seg->index);
				cur = getKeyJsonValueFromContainer(jc, buf, strlen(buf), NULL);
			}
			else
				cur = getKeyJsonValueFromContainer(jc, seg->text, seg->len, NULL);
		}
		if (cur == NULL)
			return NULL;
	}
	if (cur == NULL)
		return (refs && !keep_refs) ? allma_large_hydrate(doc) : doc;
	if (refs && !keep_refs)
		return allma_large_hydrate(JsonbValueToJsonb(cur));
	return JsonbValueToJsonb(cur);
}

/*
 * path_get_parsed evaluates a parsed JSONPath (see allma_path_get).  pp
 * may be dropped from the cache during the call.
 */
static Jsonb *
path_get_parsed(Jsonb *doc, ParsedPath *pp, bool keep_refs)
{
	Jsonb	   *res;
	int			count;

	if (pp->simple)
	{
		PathSeg    *segs = pp->segs;
		int			nsegs = pp->nsegs;

		if (pp->dynamic)
		{
			const char *why;

			segs = resolve_segments(pp, doc, &why);
			if (segs == NULL)
				return NULL;
		}
		return walk_simple(doc, segs, nsegs, keep_refs);
	}

	/* a filter or wildcard sees the values, not their pointers */
	if (allma_large_scope_active())
		doc = allma_large_hydrate(doc);
	res = DatumGetJsonbP(DirectFunctionCall4(jsonb_path_query_array,
											 JsonbPGetDatum(doc),
											 PointerGetDatum(pp->jsp),
											 JsonbPGetDatum(allma_jsonb_empty_object()),
											 BoolGetDatum(true)));
	count = JB_ROOT_COUNT(res);
	if (count == 0)
		return NULL;
	if (count == 1)
		return JsonbValueToJsonb(getIthJsonbValueFromContainer(&res->root, 0));
	return res;
}

/*
 * allma_path_get: see path.h.  Throws ERRCODE_ALLMA_INVALID_PATH for an
 * invalid path.  A NULL doc is absent: the result is NULL.
 */
Jsonb *
allma_path_get(Jsonb *doc, const char *path)
{
	ParsedPath *pp = get_parsed_or_throw(path, false);

	if (doc == NULL)
		return NULL;
	return path_get_parsed(doc, pp, false);
}

/* allma_path_get_keep_refs: see path.h */
Jsonb *
allma_path_get_keep_refs(Jsonb *doc, const char *path)
{
	ParsedPath *pp = get_parsed_or_throw(path, false);

	if (doc == NULL)
		return NULL;
	return path_get_parsed(doc, pp, true);
}


/* ---------------------------------------------------------------------
 * Assignment
 * ---------------------------------------------------------------------
 */

/*
 * The most elements an assignment may pad an array to: pushJsonbValue
 * doubles its array of JsonbValues, which must stay within MaxAllocSize (a
 * larger index failed with "invalid memory alloc request size", an internal
 * error; found by t/068_sanitized_fuzz.pl).
 */
#define PATH_MAX_PADDED_ELEMENTS ((int) (MaxAllocSize / sizeof(JsonbValue) / 2))

/*
 * jsonb_array_put returns arr (an array, or NULL for a new one) with element
 * idx replaced by value, padding with nulls when idx is past the end, as
 * a JavaScript assignment does.
 */
static Jsonb *
jsonb_array_put(Jsonb *arr, int idx, Jsonb *value)
{
	JsonbParseState *state = NULL;
	JsonbValue	v;
	JsonbValue *res;
	int			i = 0;

	if (idx >= PATH_MAX_PADDED_ELEMENTS)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("cannot set array index %d: an array of more than %d elements cannot be built",
						idx, PATH_MAX_PADDED_ELEMENTS),
				 errhint("Assigning past the end of an array pads it with nulls up to the index.")));
	pushJsonbValue(&state, WJB_BEGIN_ARRAY, NULL);
	if (arr != NULL)
	{
		JsonbIterator *it = JsonbIteratorInit(&arr->root);
		JsonbIteratorToken tok;

		while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
		{
			if (tok != WJB_ELEM)
				continue;
			if (i == idx)
				allma_jsonb_push(&state, WJB_ELEM, value);
			else
				pushJsonbValue(&state, WJB_ELEM, &v);
			i++;
		}
	}
	if (idx >= i)
	{
		v.type = jbvNull;
		for (; i < idx; i++)
			pushJsonbValue(&state, WJB_ELEM, &v);
		allma_jsonb_push(&state, WJB_ELEM, value);
	}
	res = pushJsonbValue(&state, WJB_END_ARRAY, NULL);
	return JsonbValueToJsonb(res);
}

/*
 * set_rec returns cur (NULL when absent) with the place named by
 * segs[i..n) set to value.  Missing or non-container intermediates are
 * replaced by a new object, or an array when the segment is an index.
 */
static Jsonb *
set_rec(Jsonb *cur, PathSeg *segs, int i, int n, Jsonb *value)
{
	PathSeg    *seg;
	int			idx;

	if (i == n)
		return value;
	seg = &segs[i];

	if (allma_jsonb_is_array(cur) &&
		(seg->kind == SEG_INDEX ||
		 allma_path_canonical_index(seg->text, seg->len, NULL)))
	{
		if (seg->kind == SEG_INDEX)
			idx = seg->index;
		else
			allma_path_canonical_index(seg->text, seg->len, &idx);
		return jsonb_array_put(cur, idx,
						 set_rec(allma_jsonb_array_element(cur, idx),
								 segs, i + 1, n, value));
	}
	if (seg->kind == SEG_INDEX && !allma_jsonb_is_object(cur))
		return jsonb_array_put(NULL, seg->index,
						 set_rec(NULL, segs, i + 1, n, value));
	else
	{
		char	   *key;
		Jsonb	   *child;

		if (seg->kind == SEG_INDEX)
			key = psprintf("%d", seg->index);
		else
			key = seg->text;
		child = allma_jsonb_is_object(cur) ? allma_jsonb_get(cur, key) : NULL;
		return allma_jsonb_set_key(allma_jsonb_is_object(cur) ? cur : NULL, key,
								   set_rec(child, segs, i + 1, n, value));
	}
}

/*
 * set_parsed assigns value at a parsed settable path (see allma_path_set).
 */
static Jsonb *
set_parsed(Jsonb *doc, ParsedPath *pp, const char *text, Jsonb *value)
{
	PathSeg    *segs = pp->segs;
	int			nsegs = pp->nsegs;
	int			i;

	if (value == NULL)
		value = allma_jsonb_null();
	if (pp->dynamic)
	{
		const char *why = NULL;

		segs = resolve_segments(pp, doc, &why);
		if (segs == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_ALLMA_INVALID_PATH),
					 errmsg("cannot assign to JSONPath \"%s\"", text),
					 errdetail("%s", why)));
		for (i = 0; i < nsegs; i++)
			if (segs[i].kind == SEG_INDEX && segs[i].index < 0)
				ereport(ERROR,
						(errcode(ERRCODE_ALLMA_INVALID_PATH),
						 errmsg("cannot assign to JSONPath \"%s\"", text),
						 errdetail("A dynamic segment yields the negative index %d.",
								   segs[i].index)));
	}
	if (nsegs == 0)
		return value;
	return set_rec(doc, segs, 0, nsegs, value);
}

/*
 * allma_path_set: see path.h.  Throws ERRCODE_ALLMA_INVALID_PATH when the
 * path is invalid or not settable.  A NULL value is stored as JSON null.
 */
Jsonb *
allma_path_set(Jsonb *doc, const char *path, Jsonb *value)
{
	ParsedPath *pp = get_parsed_or_throw(path, false);

	if (!pp->settable)
		ereport(ERROR,
				(errcode(ERRCODE_ALLMA_INVALID_PATH),
				 errmsg("cannot assign to JSONPath \"%s\"", path),
				 errdetail("A target path may use only keys and non-negative indexes."),
				 errhint("Write the target as \"$.a.b[0]\" or \"$['a b']\".")));
	return set_parsed(doc, pp, path, value);
}

/*
 * allma_dotpath_set sets value at a dot path ("a.b[0].c") of doc (NULL:
 * a new document), creating intermediates like allma_path_set.  Throws
 * ERRCODE_ALLMA_INVALID_PATH for an invalid dot path.
 */
Jsonb *
allma_dotpath_set(Jsonb *doc, const char *dotpath, Jsonb *value)
{
	ParsedPath *pp = get_parsed_or_throw(dotpath, true);

	return set_parsed(doc, pp, dotpath, value);
}


/* ---------------------------------------------------------------------
 * SQL-callable functions
 * ---------------------------------------------------------------------
 */

/*
 * allma_path_query(context jsonb, path text) RETURNS jsonb: the value of
 * an Allma JSONPath with wrap:false semantics; SQL NULL when nothing
 * matches.
 */
Datum
allma_path_query(PG_FUNCTION_ARGS)
{
	Jsonb	   *doc = PG_GETARG_JSONB_P(0);
	char	   *path = text_to_cstring(PG_GETARG_TEXT_PP(1));
	Jsonb	   *res = allma_path_get(doc, path);

	if (res == NULL)
		PG_RETURN_NULL();
	PG_RETURN_JSONB_P(res);
}

/*
 * allma_jsonpath(path text) RETURNS jsonpath: the PostgreSQL jsonpath an
 * Allma JSONPath translates into.
 */
Datum
allma_jsonpath(PG_FUNCTION_ARGS)
{
	char	   *path = text_to_cstring(PG_GETARG_TEXT_PP(0));
	char	   *err = NULL;
	char	   *pgtext = allma_path_to_pg(path, &err);

	if (pgtext == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_ALLMA_INVALID_PATH),
				 errmsg("cannot translate JSONPath \"%s\"", path),
				 errdetail("%s", err)));
	PG_RETURN_DATUM(DirectFunctionCall1(jsonpath_in, CStringGetDatum(pgtext)));
}

/*
 * Test entry points.  They are not part of the extension's SQL script; the
 * regression tests create them with CREATE FUNCTION ... AS '$libdir/allma'
 * to reach the C interfaces that have no SQL function of their own.
 */
PG_FUNCTION_INFO_V1(allma_test_path_set);
PG_FUNCTION_INFO_V1(allma_test_dotpath_set);
PG_FUNCTION_INFO_V1(allma_test_path_check);

/*
 * allma_test_path_set(doc jsonb, path text, value jsonb) RETURNS jsonb:
 * allma_path_set; a NULL doc is absent, a NULL value is SQL NULL.
 */
Datum
allma_test_path_set(PG_FUNCTION_ARGS)
{
	Jsonb	   *doc = PG_ARGISNULL(0) ? NULL : PG_GETARG_JSONB_P(0);
	Jsonb	   *value = PG_ARGISNULL(2) ? NULL : PG_GETARG_JSONB_P(2);

	if (PG_ARGISNULL(1))
		PG_RETURN_NULL();
	PG_RETURN_JSONB_P(allma_path_set(doc, text_to_cstring(PG_GETARG_TEXT_PP(1)),
									 value));
}

/* allma_test_dotpath_set(doc jsonb, dotpath text, value jsonb) RETURNS jsonb */
Datum
allma_test_dotpath_set(PG_FUNCTION_ARGS)
{
	Jsonb	   *doc = PG_ARGISNULL(0) ? NULL : PG_GETARG_JSONB_P(0);
	Jsonb	   *value = PG_ARGISNULL(2) ? NULL : PG_GETARG_JSONB_P(2);

	if (PG_ARGISNULL(1))
		PG_RETURN_NULL();
	PG_RETURN_JSONB_P(allma_dotpath_set(doc, text_to_cstring(PG_GETARG_TEXT_PP(1)),
										value));
}

/*
 * allma_test_path_check(path text, kind text) RETURNS text: NULL when the
 * path is valid, else the message.  kind is 'path', 'settable' or 'dot'.
 */
Datum
allma_test_path_check(PG_FUNCTION_ARGS)
{
	char	   *path = text_to_cstring(PG_GETARG_TEXT_PP(0));
	char	   *kind = text_to_cstring(PG_GETARG_TEXT_PP(1));
	char	   *err = NULL;
	bool		ok;

	if (strcmp(kind, "path") == 0)
		ok = allma_path_check(path, &err);
	else if (strcmp(kind, "settable") == 0)
		ok = allma_path_check_settable(path, &err);
	else if (strcmp(kind, "dot") == 0)
		ok = allma_dotpath_check(path, &err);
	else
		elog(ERROR, "unknown path kind \"%s\"", kind);
	if (ok)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(err ? err : "(no message)"));
}
