/*-------------------------------------------------------------------------
 *
 * template_helpers.c
 *	  JavaScript values as templates see them, and the helpers that compute
 *	  values.
 *
 * While rendering, a value is a JsonbValue *: a scalar, or jbvBinary
 * pointing into a container (never copied); NULL is JavaScript's
 * undefined (absent).  This file gives them JavaScript's meaning:
 * truthiness (Handlebars' #if also treats [] as false), the text a value
 * renders as, ToNumber, strict equality and the relational comparisons,
 * and Handlebars' property lookup.
 *
 * Helpers that compute a value: Handlebars' "lookup", and Allma's "json",
 * "slice" and "base64" (eq, neq, gt, lt and default are one comparison or
 * choice each, made by the renderer with the functions here).  Block
 * helpers (if, unless, each, with, with_json_path) render, so they are
 * the renderer's (template.c).  The table of helper names is here.
 *
 * IDENTIFICATION
 *	  src/template_helpers.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "common/base64.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/float.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"

#include "compat.h"
#include "large_value.h"
#include "template_tree.h"

static const struct
{
	const char *name;
	THelper		helper;
}			helper_names[] =
{
	{"if", H_IF},
	{"unless", H_UNLESS},
	{"each", H_EACH},
	{"with", H_WITH},
	{"lookup", H_LOOKUP},
	{"log", H_LOG},
	{"json", H_JSON},
	{"slice", H_SLICE},
	{"eq", H_EQ},
	{"neq", H_NEQ},
	{"gt", H_GT},
	{"lt", H_LT},
	{"default", H_DEFAULT},
	{"base64", H_BASE64},
	{"with_json_path", H_WITH_JSON_PATH}
};

THelper
allma_tmpl_helper_by_name(const char *name)
{
	int			i;

	for (i = 0; i < lengthof(helper_names); i++)
	{
		if (strcmp(helper_names[i].name, name) == 0)
			return helper_names[i].helper;
	}
	return H_NONE;
}

JsonbValue *
allma_tmpl_string(const char *s, int len)
{
	JsonbValue *v = palloc(sizeof(JsonbValue));

	v->type = jbvString;
	v->val.string.val = (char *) s;
	v->val.string.len = len;
	return v;
}

JsonbValue *
allma_tmpl_int(int64 i)
{
	JsonbValue *v = palloc(sizeof(JsonbValue));

	v->type = jbvNumeric;
	v->val.numeric = int64_to_numeric(i);
	return v;
}

JsonbValue *
allma_tmpl_bool(bool b)
{
	JsonbValue *v = palloc(sizeof(JsonbValue));

	v->type = jbvBool;
	v->val.boolean = b;
	return v;
}

/* the value of a whole jsonb document (NULL for NULL) */
JsonbValue *
allma_tmpl_jsonb(Jsonb *jb)
{
	JsonbValue *v;

	if (jb == NULL)
		return NULL;
	v = palloc(sizeof(JsonbValue));
	if (JB_ROOT_IS_SCALAR(jb))
		JsonbExtractScalar(&jb->root, v);
	else
	{
		v->type = jbvBinary;
		v->val.binary.data = &jb->root;
		v->val.binary.len = VARSIZE(jb) - VARHDRSZ;
	}
	return v;
}

bool
allma_tmpl_is_array(JsonbValue *v)
{
	return v != NULL && v->type == jbvBinary &&
		JsonContainerIsArray(v->val.binary.data) &&
		!JsonContainerIsScalar(v->val.binary.data);
}

bool
allma_tmpl_is_object(JsonbValue *v)
{
	return v != NULL && v->type == jbvBinary &&
		JsonContainerIsObject(v->val.binary.data);
}

static bool
numeric_is_zero(Numeric n)
{
	return !numeric_is_nan(n) &&
		DatumGetInt32(DirectFunctionCall2(numeric_cmp, NumericGetDatum(n),
										  NumericGetDatum(int64_to_numeric(0)))) == 0;
}

/*
 * JavaScript's "!v": undefined, null, false, 0, "" are falsy.  Handlebars'
 * #if also treats [] as false (Utils.isEmpty); {} is true.
 */
bool
allma_tmpl_truthy(JsonbValue *v, bool include_zero)
{
	if (v == NULL)
		return false;
	switch (v->type)
	{
		case jbvNull:
			return false;
		case jbvBool:
			return v->val.boolean;
		case jbvString:
			return v->val.string.len > 0;
		case jbvNumeric:
			return include_zero || !numeric_is_zero(v->val.numeric);
		case jbvBinary:
			return !allma_tmpl_is_array(v) || JsonContainerSize(v->val.binary.data) > 0;
		default:
			return true;
	}
}

/* Handlebars' Utils.isEmpty: falsy but not 0, or an empty array */
bool
allma_tmpl_is_empty(JsonbValue *v)
{
	if (v != NULL && v->type == jbvNumeric)
		return false;
	return !allma_tmpl_truthy(v, false);
}

/* append the display text of v (allma_jsonb_to_display_text's rules) */
void
allma_tmpl_append_display(StringInfo out, JsonbValue *v)
{
	if (v == NULL)
		return;
	switch (v->type)
	{
		case jbvNull:
			break;
		case jbvString:
			appendBinaryStringInfo(out, v->val.string.val, v->val.string.len);
			break;
		case jbvBool:
			appendStringInfoString(out, v->val.boolean ? "true" : "false");
			break;
		case jbvNumeric:
			appendStringInfoString(out,
								   DatumGetCString(DirectFunctionCall1(numeric_out,
																	   NumericGetDatum(v->val.numeric))));
			break;
		case jbvBinary:
			(void) JsonbToCString(out, v->val.binary.data, v->val.binary.len);
			break;
		default:
			elog(ERROR, "unexpected jsonb value type %d", (int) v->type);
	}
}

char *
allma_tmpl_display_text(JsonbValue *v, int *len)
{
	StringInfoData buf;

	if (v != NULL && v->type == jbvString)
	{
		*len = v->val.string.len;
		return v->val.string.val;
	}
	initStringInfo(&buf);
	allma_tmpl_append_display(&buf, v);
	*len = buf.len;
	return buf.data;
}

static void
append_json_string(StringInfo out, const char *s, int len)
{
	char	   *copy = pnstrdup(s, len);

	escape_json(out, copy);
	pfree(copy);
}

static void
append_compact_scalar(StringInfo out, JsonbValue *v)
{
	switch (v->type)
	{
		case jbvString:
			append_json_string(out, v->val.string.val, v->val.string.len);
			break;
		case jbvNull:
			appendStringInfoString(out, "null");
			break;
		default:
			allma_tmpl_append_display(out, v);
			break;
	}
}

/* compact JSON text of v, as JavaScript's JSON.stringify writes it */
static void
append_compact_json(StringInfo out, JsonbValue *v)
{
	JsonbIterator *it;
	JsonbIteratorToken tok;
	JsonbValue	elem;
	bool		first = true;

	if (v->type != jbvBinary)
	{
		append_compact_scalar(out, v);
		return;
	}
	it = JsonbIteratorInit(v->val.binary.data);
	while ((tok = JsonbIteratorNext(&it, &elem, false)) != WJB_DONE)
	{
		switch (tok)
		{
			case WJB_BEGIN_ARRAY:
			case WJB_BEGIN_OBJECT:
				if (!first)
					appendStringInfoChar(out, ',');
				appendStringInfoChar(out, tok == WJB_BEGIN_ARRAY ? '[' : '{');
				first = true;
				break;
			case WJB_END_ARRAY:
			case WJB_END_OBJECT:
				appendStringInfoChar(out, tok == WJB_END_ARRAY ? ']' : '}');
				first = false;
				break;
			case WJB_KEY:
				if (!first)
					appendStringInfoChar(out, ',');
				append_json_string(out, elem.val.string.val, elem.val.string.len);
				appendStringInfoChar(out, ':');
				first = true;
				break;
			case WJB_VALUE:
			case WJB_ELEM:
				if (!first)
					appendStringInfoChar(out, ',');
				append_compact_scalar(out, &elem);
				first = false;
				break;
			default:
				break;
		}
	}
}

/* JavaScript's ToNumber, for the comparisons and slice's indexes */
static double
js_to_number(JsonbValue *v)
{
	char	   *s;
	char	   *end;
	double		d;
	int			len;

	if (v == NULL)
		return get_float8_nan();
	switch (v->type)
	{
		case jbvNull:
			return 0;
		case jbvBool:
			return v->val.boolean ? 1 : 0;
		case jbvNumeric:
			return DatumGetFloat8(DirectFunctionCall1(numeric_float8_no_overflow,
													  NumericGetDatum(v->val.numeric)));
		case jbvString:
			s = v->val.string.val;
			len = v->val.string.len;
			while (len > 0 && template_is_space(*s))
			{
				s++;
				len--;
			}
			while (len > 0 && template_is_space(s[len - 1]))
				len--;
			if (len == 0)
				return 0;
			s = pnstrdup(s, len);
			if (strcmp(s, "Infinity") == 0 || strcmp(s, "+Infinity") == 0)
				return get_float8_infinity();
			if (strcmp(s, "-Infinity") == 0)
				return -get_float8_infinity();
			if (len > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X'))
			{
				if (strspn(s + 2, "0123456789abcdefABCDEF") != len - 2)
					return get_float8_nan();
				return (double) strtoull(s + 2, NULL, 16);
			}
			if (strspn(s, "0123456789+-.eE") != len)
				return get_float8_nan();
			d = strtod(s, &end);
			if (*end != '\0')
				return get_float8_nan();
			return d;
		default:
			/* objects and arrays: approximated as NaN */
			return get_float8_nan();
	}
}

/* JavaScript's ToIntegerOrInfinity, clamped to int */
static int
js_to_int(JsonbValue *v)
{
	double		d = js_to_number(v);

	if (isnan(d))
		return 0;
	d = trunc(d);
	if (d > PG_INT32_MAX)
		return PG_INT32_MAX;
	if (d < PG_INT32_MIN)
		return PG_INT32_MIN;
	return (int) d;
}

/* JavaScript's "===", except that objects and arrays compare by value */
bool
allma_tmpl_strict_equals(JsonbValue *a, JsonbValue *b)
{
	if (a == NULL || b == NULL)
		return a == b;
	if (a->type != b->type)
		return false;
	switch (a->type)
	{
		case jbvNull:
			return true;
		case jbvBool:
			return a->val.boolean == b->val.boolean;
		case jbvString:
			return a->val.string.len == b->val.string.len &&
				memcmp(a->val.string.val, b->val.string.val, a->val.string.len) == 0;
		case jbvNumeric:
			return DatumGetInt32(DirectFunctionCall2(numeric_cmp,
													 NumericGetDatum(a->val.numeric),
													 NumericGetDatum(b->val.numeric))) == 0;
		case jbvBinary:
			return allma_tmpl_is_array(a) == allma_tmpl_is_array(b) &&
				compareJsonbContainers(a->val.binary.data, b->val.binary.data) == 0;
		default:
			return false;
	}
}

/* JavaScript's "a > b" (greater) or "a < b" */
bool
allma_tmpl_js_compare(JsonbValue *a, JsonbValue *b, bool greater)
{
	int			cmp;
	double		x;
	double		y;

	if (a && b && a->type == jbvString && b->type == jbvString)
	{
		int			n = Min(a->val.string.len, b->val.string.len);

		cmp = memcmp(a->val.string.val, b->val.string.val, n);
		if (cmp == 0)
			cmp = (a->val.string.len > b->val.string.len) -
				(a->val.string.len < b->val.string.len);
		return greater ? cmp > 0 : cmp < 0;
	}
	if (a && b && a->type == jbvNumeric && b->type == jbvNumeric)
	{
		cmp = DatumGetInt32(DirectFunctionCall2(numeric_cmp,
												NumericGetDatum(a->val.numeric),
												NumericGetDatum(b->val.numeric)));
		return greater ? cmp > 0 : cmp < 0;
	}
	x = js_to_number(a);
	y = js_to_number(b);
	if (isnan(x) || isnan(y))
		return false;
	return greater ? x > y : x < y;
}

/*
 * property_of is Handlebars' lookupProperty: an object's key, an array's
 * index or "length", a string's "length".  NULL when there is none.
 */
/* a JsonbValue standing for the whole of doc */
static JsonbValue *
whole_value(Jsonb *doc)
{
	JsonbValue *v = palloc(sizeof(JsonbValue));

	if (doc == NULL)
		return NULL;
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
 * allma_tmpl_resolve_ref: v, or while a path runs, the full value when v
 * is a pointer to an out-of-line value (large_value.h)
 */
JsonbValue *
allma_tmpl_resolve_ref(JsonbValue *v)
{
	pg_uuid_t	id;

	if (v == NULL || v->type != jbvBinary || !allma_large_scope_active() ||
		!allma_large_is_ref(v->val.binary.data, &id))
		return v;
	return whole_value(allma_large_fetch(&id));
}

JsonbValue *
allma_tmpl_property(JsonbValue *v, const char *name)
{
	JsonbContainer *jc;
	pg_uuid_t	id;

	if (v == NULL)
		return NULL;
	/* through a pointer: an index or "length" reads one part of an array */
	if (v->type == jbvBinary && allma_large_scope_active() &&
		allma_large_is_ref(v->val.binary.data, &id))
	{
		int64		length = -1;
		Jsonb	   *el = NULL;
		bool		is_index = name[0] != '\0' && strlen(name) <= 9 &&
			strspn(name, "0123456789") == strlen(name) &&
			!(name[0] == '0' && name[1] != '\0');

		if (is_index)
			el = allma_large_element(&id, atol(name), &length);
		else if (strcmp(name, "length") == 0)
			(void) allma_large_element(&id, 0, &length);
		if (length >= 0)
			return is_index ? whole_value(el) : allma_tmpl_int(length);
		v = whole_value(allma_large_fetch(&id));
	}
	if (v->type == jbvString)
	{
		if (strcmp(name, "length") == 0)
			return allma_tmpl_int(pg_mbstrlen_with_len(v->val.string.val,
												  v->val.string.len));
		return NULL;
	}
	if (v->type != jbvBinary)
		return NULL;
	jc = v->val.binary.data;
	if (JsonContainerIsObject(jc))
		return getKeyJsonValueFromContainer(jc, name, strlen(name), NULL);
	if (allma_tmpl_is_array(v))
	{
		const char *c;
		long		index;

		if (strcmp(name, "length") == 0)
			return allma_tmpl_int(JsonContainerSize(jc));
		/* a canonical array index: "0", "1", ... but not "01" */
		if (name[0] == '\0' || (name[0] == '0' && name[1] != '\0') ||
			strlen(name) > 9)
			return NULL;
		for (c = name; *c; c++)
			if (!isdigit((unsigned char) *c))
				return NULL;
		index = atol(name);
		if (index >= JsonContainerSize(jc))
			return NULL;
		return getIthJsonbValueFromContainer(jc, (uint32) index);
	}
	return NULL;
}

/* ----------------------------------------------------------------
 * Value helpers
 * ----------------------------------------------------------------
 */

/* Allma's "slice": Array.prototype.slice, and String.prototype.slice */
JsonbValue *
allma_tmpl_slice(JsonbValue *v, JsonbValue *startv, JsonbValue *endv)
{
	int			len;
	int			start;
	int			end;

	if (v != NULL && v->type == jbvString)
		len = pg_mbstrlen_with_len(v->val.string.val, v->val.string.len);
	else if (allma_tmpl_is_array(v))
		len = JsonContainerSize(v->val.binary.data);
	else
		len = 0;

	start = js_to_int(startv);
	end = endv ? js_to_int(endv) : len;
	start = start < 0 ? Max(len + start, 0) : Min(start, len);
	end = end < 0 ? Max(len + end, 0) : Min(end, len);
	if (end < start)
		end = start;

	if (v != NULL && v->type == jbvString)
	{
		const char *s = v->val.string.val;
		const char *from;
		int			i;

		for (i = 0; i < start; i++)
			s += pg_mblen(s);
		from = s;
		for (; i < end; i++)
			s += pg_mblen(s);
		return allma_tmpl_string(from, s - from);
	}
	else
	{
		JsonbParseState *state = NULL;
		JsonbValue *res;

		pushJsonbValue(&state, WJB_BEGIN_ARRAY, NULL);
		if (allma_tmpl_is_array(v) && start < end)
		{
			JsonbIterator *it = JsonbIteratorInit(v->val.binary.data);
			JsonbIteratorToken tok;
			JsonbValue	elem;
			int			i = 0;

			while ((tok = JsonbIteratorNext(&it, &elem, true)) != WJB_DONE)
			{
				if (tok != WJB_ELEM)
					continue;
				if (i >= start && i < end)
					pushJsonbValue(&state, WJB_ELEM, &elem);
				i++;
			}
		}
		res = pushJsonbValue(&state, WJB_END_ARRAY, NULL);
		return allma_tmpl_jsonb(JsonbValueToJsonb(res));
	}
}

/* Allma's "base64": Buffer.from(str || '').toString('base64') */
JsonbValue *
allma_tmpl_base64(JsonbValue *v)
{
	char	   *text;
	int			len;
	char	   *encoded;
	int			enclen;

	if (!allma_tmpl_truthy(v, false) && !allma_tmpl_is_array(v))
		return allma_tmpl_string("", 0);
	text = allma_tmpl_display_text(v, &len);
	enclen = pg_b64_enc_len(len);
	encoded = palloc(enclen + 1);
	enclen = allma_b64_encode(text, len, encoded, enclen);
	if (enclen < 0)
		elog(ERROR, "could not encode a template value in base64");
	encoded[enclen] = '\0';
	return allma_tmpl_string(encoded, enclen);
}

/* Allma's "json": "null" for null/absent, strings as they are, else JSON */
JsonbValue *
allma_tmpl_json(JsonbValue *v)
{
	StringInfoData buf;

	if (v == NULL || v->type == jbvNull)
		return allma_tmpl_string("null", 4);
	if (v->type == jbvString)
		return v;
	initStringInfo(&buf);
	append_compact_json(&buf, v);
	return allma_tmpl_string(buf.data, buf.len);
}

/* Handlebars' "lookup obj field" */
JsonbValue *
allma_tmpl_lookup(JsonbValue *obj, JsonbValue *field)
{
	char	   *name;
	int			len;

	if (!allma_tmpl_truthy(obj, false) && !allma_tmpl_is_array(obj))
		return obj;
	if (field == NULL)
		name = "undefined";
	else if (field->type == jbvNull)
		name = "null";
	else
	{
		name = allma_tmpl_display_text(field, &len);
		name = pnstrdup(name, len);
	}
	return allma_tmpl_property(obj, name);
}
