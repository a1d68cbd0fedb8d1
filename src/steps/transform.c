/*-------------------------------------------------------------------------
 *
 * transform.c
 *	  Allma's built-in DATA_TRANSFORMATION system modules.
 *
 * A DATA_TRANSFORMATION step names a module ("system/...") and hands it one
 * jsonb object: the step's rendered customConfig with the step input merged
 * over it.  The module returns the step output.  This file owns the
 * modules that Allma ships and that make sense inside a database:
 *
 *	system/compose-object-from-input	output = input
 *	system/array-aggregator				min / max / sum / avg of an array
 *	system/flatten-array				flatten one level, optionally after
 *										extracting a field of each element
 *	system/generate-array				[0 .. count-1]
 *	system/date-time-calculator			ISO timestamp plus or minus seconds
 *	system/generate-uuid				prefix + random UUID + suffix
 *	system/join-data					hash join of two JSON/CSV tables
 *										(join.c)
 *
 * Every module validates its input and throws ERRCODE_INVALID_PARAMETER_VALUE
 * with a message that starts with the module identifier and names the
 * offending field; the engine turns that into a PermanentStepError.  An
 * optional field given as JSON null counts as absent.
 *
 * Design notes:
 * - Modules are pure functions of their input (generate-uuid and the
 *	 "now" default of date-time-calculator aside); they touch no tables.
 * - Memory: everything is allocated in CurrentMemoryContext, the caller's
 *	 per-step context.  Loops whose per-element garbage would otherwise grow
 *	 with the input (the aggregator, which may evaluate a JSONPath per
 *	 element) use a temporary context reset per element.  Outputs are capped:
 *	 generate-array at ALLMA_GENERATE_ARRAY_MAX elements and join-data at
 *	 ALLMA_JOIN_MAX_ROWS rows (join.c).
 * - Numbers are PostgreSQL numerics, so sums are exact (Allma's JavaScript
 *	 uses doubles: 0.1 + 0.2 gives 0.3 here, not 0.30000000000000004).
 *
 * Copyright (c) 2026, the allma authors
 *
 * IDENTIFICATION
 *	  src/steps/transform.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "common/hashfn.h"
#include "datatype/timestamp.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/datum.h"
#include "utils/fmgrprotos.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/numeric.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "jsonb_util.h"
#include "path.h"
#include "step.h"
#include "transform.h"

/* largest "count" accepted by system/generate-array */
#define ALLMA_GENERATE_ARRAY_MAX	100000

static Jsonb *run_compose_object(const char *module, Jsonb *input);
static Jsonb *run_array_aggregator(const char *module, Jsonb *input);
static Jsonb *run_flatten_array(const char *module, Jsonb *input);
static Jsonb *run_generate_array(const char *module, Jsonb *input);
static Jsonb *run_date_time_calculator(const char *module, Jsonb *input);
static Jsonb *run_generate_uuid(const char *module, Jsonb *input);

static void rethrow_data_error(MemoryContext cxt,
							   const char *message) pg_attribute_noreturn();

/*
 * the built-in modules, in the order the unknown-module hint lists them
 * (registered in steps/module.c)
 */
const AllmaBuiltinModule allma_transform_modules[] = {
	{"system/array-aggregator", ALLMA_MODULES_TRANSFORM, true, run_array_aggregator},
	{"system/compose-object-from-input", ALLMA_MODULES_TRANSFORM, true, run_compose_object},
	{"system/date-time-calculator", ALLMA_MODULES_TRANSFORM, true, run_date_time_calculator},
	{"system/flatten-array", ALLMA_MODULES_TRANSFORM, true, run_flatten_array},
	{"system/generate-array", ALLMA_MODULES_TRANSFORM, true, run_generate_array},
	{"system/generate-uuid", ALLMA_MODULES_TRANSFORM, true, run_generate_uuid},
	{"system/join-data", ALLMA_MODULES_TRANSFORM, true, allma_transform_join_data},
	{NULL}
};

/* true for "system/compose-object-from-input" and the other built-ins */
bool
allma_transform_exists(const char *module_identifier)
{
	const AllmaBuiltinModule *mod = allma_module_find(module_identifier);

	return mod != NULL && mod->kind == ALLMA_MODULES_TRANSFORM;
}

/* allma_transform_run: see allma_module_run */
Jsonb *
allma_transform_run(const char *module_identifier, Jsonb *input)
{
	return allma_module_run(module_identifier, input);
}


/* ---------------------------------------------------------------------
 * Input helpers shared by the modules (declared in transform.h)
 * ---------------------------------------------------------------------
 */

/* throws the standard "field is required" error */
void
allma_transform_missing_field(const char *module, const char *field)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("%s: \"%s\" is required", module, field)));
}

/* throws the standard "field must be <what>" error */
void
allma_transform_bad_field(const char *module, const char *field, const char *what)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("%s: \"%s\" must be %s", module, field, what)));
}

/* true when jb is a JSON null */
static bool
jsonb_is_null(Jsonb *jb)
{
	JsonbValue	v;

	return allma_jsonb_scalar(jb, &v) && v.type == jbvNull;
}

/* the value of "field", or NULL when absent or JSON null */
Jsonb *
allma_transform_get_optional(Jsonb *input, const char *field)
{
	Jsonb	   *v = allma_jsonb_get(input, field);

	if (v == NULL || jsonb_is_null(v))
		return NULL;
	return v;
}

/* the array at "field"; throws when absent or not an array */
Jsonb *
allma_transform_get_array(const char *module, Jsonb *input, const char *field)
{
	Jsonb	   *v = allma_transform_get_optional(input, field);

	if (v == NULL)
		allma_transform_missing_field(module, field);
	if (!allma_jsonb_is_array(v))
		allma_transform_bad_field(module, field, "an array");
	return v;
}

/* the string at "field", or NULL when absent; throws when not a string */
static char *
get_optional_string(const char *module, Jsonb *input, const char *field)
{
	Jsonb	   *v = allma_transform_get_optional(input, field);
	JsonbValue	sv;

	if (v == NULL)
		return NULL;
	if (!allma_jsonb_scalar(v, &sv) || sv.type != jbvString)
		allma_transform_bad_field(module, field, "a string");
	return pnstrdup(sv.val.string.val, sv.val.string.len);
}

/* the number at "field" as a double, false when absent; throws on non-numbers */
static bool
get_optional_number(const char *module, Jsonb *input, const char *field,
					double *out)
{
	Jsonb	   *v = allma_transform_get_optional(input, field);

	if (v == NULL)
		return false;
	if (!allma_jsonb_get_number(input, field, out))
		allma_transform_bad_field(module, field, "a number");
	return true;
}

/*
 * allma_transform_get_choice returns the index in "choices" (NULL-terminated) of the string
 * at "field".  When the field is absent it returns "dflt", or throws if
 * dflt < 0 (the field is required).  Any other value throws, listing the
 * choices.
 */
int
allma_transform_get_choice(const char *module, Jsonb *input, const char *field,
						   const char *const *choices, int dflt)
{
	char	   *s = get_optional_string(module, input, field);
	StringInfoData list;
	int			i;

	if (s == NULL)
	{
		if (dflt < 0)
			allma_transform_missing_field(module, field);
		return dflt;
	}
	for (i = 0; choices[i] != NULL; i++)
	{
		if (strcmp(s, choices[i]) == 0)
			return i;
	}

	initStringInfo(&list);
	for (i = 0; choices[i] != NULL; i++)
		appendStringInfo(&list, "%s%s", i > 0 ? ", " : "", choices[i]);
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("%s: \"%s\" must be one of %s", module, field, list.data),
			 errdetail("The value given was \"%s\".", s)));
	pg_unreachable();
}

/*
 * get_path returns the optional "path" field, after checking it.  A path
 * that starts with "$" is an Allma JSONPath (evaluated by path.c); any
 * other string is the name of a key, which is what Allma's own modules
 * accept.
 */
static char *
get_path(const char *module, Jsonb *input)
{
	char	   *path = get_optional_string(module, input, "path");
	char	   *why = NULL;

	if (path == NULL)
		return NULL;
	if (path[0] == '\0')
		allma_transform_bad_field(module, "path", "a non-empty string");
	if (path[0] == '$' && !allma_path_check(path, &why))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s: \"path\" is not a valid JSONPath", module),
				 why ? errdetail("%s", why) : 0));
	return path;
}

/* sets *out to the value of a whole Jsonb (scalar, or a binary container) */
static void
jsonb_to_value(Jsonb *jb, JsonbValue *out)
{
	if (!allma_jsonb_scalar(jb, out))
	{
		out->type = jbvBinary;
		out->val.binary.data = &jb->root;
		out->val.binary.len = VARSIZE(jb) - VARHDRSZ;
	}
}

/* true when v is a JSON array (an array container, not a raw scalar) */
static bool
value_is_array(JsonbValue *v)
{
	return v->type == jbvBinary &&
		JsonContainerIsArray(v->val.binary.data) &&
		!JsonContainerIsScalar(v->val.binary.data);
}

/*
 * extract_value applies "path" to one array element "elem".  No path gives
 * the element itself.  A key path gives that key of an object element; a
 * "$" path is evaluated with allma_path_get (no match, one match or an
 * array of all matches).  Returns false when nothing was found; otherwise
 * fills *out, which may point into memory allocated here.
 */
static bool
extract_value(JsonbValue *elem, const char *path, JsonbValue *out)
{
	if (path == NULL)
	{
		*out = *elem;
		return true;
	}
	if (path[0] == '$')
	{
		Jsonb	   *found = allma_path_get(JsonbValueToJsonb(elem), path);

		if (found == NULL)
			return false;
		jsonb_to_value(found, out);
		return true;
	}
	else
	{
		JsonbValue *found;

		if (elem->type != jbvBinary || !JsonContainerIsObject(elem->val.binary.data))
			return false;
		found = getKeyJsonValueFromContainer(elem->val.binary.data,
											 path, strlen(path), NULL);
		if (found == NULL)
			return false;
		*out = *found;
		return true;
	}
}

/* the one-key object {key: value} */
Jsonb *
allma_transform_result_object(const char *key, Jsonb *value)
{
	return allma_jsonb_set_key(NULL, key, value);
}

/*
 * allma_transform_push_value pushes v as the current array element or object value.  A
 * binary container is pushed whole (pushJsonbValue unpacks it).
 */
void
allma_transform_push_value(JsonbParseState **state, JsonbIteratorToken seq, JsonbValue *v)
{
	if (v->type == jbvBinary && JsonContainerIsScalar(v->val.binary.data))
	{
		JsonbValue	scalar;
		Jsonb	   *jb = JsonbValueToJsonb(v);

		if (allma_jsonb_scalar(jb, &scalar))
		{
			pushJsonbValue(state, seq, &scalar);
			return;
		}
	}
	pushJsonbValue(state, seq, v);
}


/* ---------------------------------------------------------------------
 * system/compose-object-from-input
 * ---------------------------------------------------------------------
 */

/* output = input: a way to build an object from input mappings and literals */
static Jsonb *
run_compose_object(const char *module, Jsonb *input)
{
	return input;
}


/* ---------------------------------------------------------------------
 * system/array-aggregator
 * ---------------------------------------------------------------------
 */

static const char *const aggregator_ops[] = {"min", "max", "sum", "avg", NULL};

enum
{
	AGG_MIN,
	AGG_MAX,
	AGG_SUM,
	AGG_AVG
};

/*
 * run_array_aggregator: {array, path?, operation} -> {result}.
 *
 * Each element (or the value "path" extracts from it) that is a number
 * counts; booleans count as 1 and 0, as in Allma.  Everything else
 * (strings, even numeric-looking ones, nulls, objects, arrays, elements
 * where the path finds nothing) is skipped silently.  With no numbers the
 * result is 0 for sum and null otherwise.  Results are exact numerics with
 * trailing fractional zeros removed; avg divides with numeric's default
 * precision (at least 16 significant digits).
 */
static Jsonb *
run_array_aggregator(const char *module, Jsonb *input)
{
	Jsonb	   *array = allma_transform_get_array(module, input, "array");
	char	   *path = get_path(module, input);
	int			op = allma_transform_get_choice(module, input, "operation", aggregator_ops, -1);
	MemoryContext elemcxt;
	MemoryContext oldcxt;
	JsonbIterator *it;
	JsonbValue	elem;
	JsonbIteratorToken tok;
	Numeric		acc = NULL;
	int64		count = 0;

	elemcxt = AllocSetContextCreate(CurrentMemoryContext,
									"allma array-aggregator element",
									ALLOCSET_SMALL_SIZES);

	it = JsonbIteratorInit(&array->root);
	while ((tok = JsonbIteratorNext(&it, &elem, true)) != WJB_DONE)
	{
		JsonbValue	v;
		Numeric		num;
		Numeric		next;

		if (tok != WJB_ELEM)
			continue;

		oldcxt = MemoryContextSwitchTo(elemcxt);
		if (!extract_value(&elem, path, &v))
			num = NULL;
		else if (v.type == jbvNumeric)
			num = v.val.numeric;
		else if (v.type == jbvBool)
			num = int64_to_numeric(v.val.boolean ? 1 : 0);
		else
			num = NULL;			/* not a number: skipped */

		next = NULL;
		if (num != NULL && acc == NULL)
			next = num;
		else if (num != NULL)
		{
			switch (op)
			{
				case AGG_MIN:
					if (DatumGetInt32(DirectFunctionCall2(numeric_cmp,
														  NumericGetDatum(num),
														  NumericGetDatum(acc))) < 0)
						next = num;
					break;
				case AGG_MAX:
					if (DatumGetInt32(DirectFunctionCall2(numeric_cmp,
														  NumericGetDatum(num),
														  NumericGetDatum(acc))) > 0)
						next = num;
					break;
				case AGG_SUM:
				case AGG_AVG:
					next = DatumGetNumeric(DirectFunctionCall2(numeric_add,
															   NumericGetDatum(acc),
															   NumericGetDatum(num)));
					break;
			}
		}
		MemoryContextSwitchTo(oldcxt);

		if (num != NULL)
			count++;
		if (next != NULL)
			acc = DatumGetNumeric(datumCopy(NumericGetDatum(next), false, -1));
		MemoryContextReset(elemcxt);
	}
	MemoryContextDelete(elemcxt);

	if (count == 0)
		return allma_transform_result_object("result",
											 op == AGG_SUM ? allma_jsonb_int(0) : allma_jsonb_null());

	if (op == AGG_AVG)
		acc = DatumGetNumeric(DirectFunctionCall2(numeric_div,
												  NumericGetDatum(acc),
												  NumericGetDatum(int64_to_numeric(count))));
	acc = DatumGetNumeric(DirectFunctionCall1(numeric_trim_scale,
											  NumericGetDatum(acc)));
	{
		JsonbValue	rv;

		rv.type = jbvNumeric;
		rv.val.numeric = acc;
		return allma_transform_result_object("result", JsonbValueToJsonb(&rv));
	}
}


/* ---------------------------------------------------------------------
 * system/flatten-array
 * ---------------------------------------------------------------------
 */

/*
 * run_flatten_array: {array, path?} -> {result}.
 *
 * Without a path, the elements of nested arrays are spliced in (one level)
 * and other elements are kept as they are.  With a path, each element is
 * first replaced by what the path extracts from it; elements where it finds
 * nothing or null are dropped (as Allma does), arrays are spliced in, and
 * other values are kept.
 */
static Jsonb *
run_flatten_array(const char *module, Jsonb *input)
{
	Jsonb	   *array = allma_transform_get_array(module, input, "array");
	char	   *path = get_path(module, input);
	JsonbParseState *state = NULL;
	JsonbIterator *it;
	JsonbValue	elem;
	JsonbIteratorToken tok;
	JsonbValue *res;

	pushJsonbValue(&state, WJB_BEGIN_ARRAY, NULL);
	it = JsonbIteratorInit(&array->root);
	while ((tok = JsonbIteratorNext(&it, &elem, true)) != WJB_DONE)
	{
		JsonbValue	v;

		if (tok != WJB_ELEM)
			continue;
		if (!extract_value(&elem, path, &v))
			continue;
		if (path != NULL && v.type == jbvNull)
			continue;

		if (value_is_array(&v))
		{
			JsonbIterator *inner = JsonbIteratorInit(v.val.binary.data);
			JsonbValue	child;

			while ((tok = JsonbIteratorNext(&inner, &child, true)) != WJB_DONE)
			{
				if (tok == WJB_ELEM)
					allma_transform_push_value(&state, WJB_ELEM, &child);
			}
		}
		else
			allma_transform_push_value(&state, WJB_ELEM, &v);
	}
	res = pushJsonbValue(&state, WJB_END_ARRAY, NULL);

	return allma_transform_result_object("result", JsonbValueToJsonb(res));
}


/* ---------------------------------------------------------------------
 * system/generate-array
 * ---------------------------------------------------------------------
 */

/* run_generate_array: {count} -> {array: [0, 1, ..., count-1]} */
static Jsonb *
run_generate_array(const char *module, Jsonb *input)
{
	JsonbParseState *state = NULL;
	JsonbValue *res;
	double		d;
	int64		count;
	int64		i;

	if (!get_optional_number(module, input, "count", &d))
		allma_transform_missing_field(module, "count");
	if (d != floor(d) || d < 0 || d > ALLMA_GENERATE_ARRAY_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s: \"count\" must be an integer between 0 and %d",
						module, ALLMA_GENERATE_ARRAY_MAX)));
	count = (int64) d;

	pushJsonbValue(&state, WJB_BEGIN_ARRAY, NULL);
	for (i = 0; i < count; i++)
	{
		JsonbValue	v;

		v.type = jbvNumeric;
		v.val.numeric = int64_to_numeric(i);
		pushJsonbValue(&state, WJB_ELEM, &v);
	}
	res = pushJsonbValue(&state, WJB_END_ARRAY, NULL);

	return allma_transform_result_object("array", JsonbValueToJsonb(res));
}


/* ---------------------------------------------------------------------
 * system/date-time-calculator
 * ---------------------------------------------------------------------
 */

static const char *const datetime_ops[] = {"add", "subtract", NULL};

/*
 * rethrow_data_error is called in a PG_CATCH block.  A data exception
 * (SQLSTATE class 22, such as a bad timestamp or an out-of-range result)
 * becomes an ERRCODE_INVALID_PARAMETER_VALUE error with "message" and the
 * original message as detail; anything else is rethrown unchanged.  Never
 * returns.
 */
static void
rethrow_data_error(MemoryContext cxt, const char *message)
{
	ErrorData  *edata;

	MemoryContextSwitchTo(cxt);
	edata = CopyErrorData();
	if (ERRCODE_TO_CATEGORY(edata->sqlerrcode) != ERRCODE_DATA_EXCEPTION)
		PG_RE_THROW();
	FlushErrorState();
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg_internal("%s", message),
			 errdetail_internal("%s", edata->message)));
	pg_unreachable();
}

/*
 * parse_utc_timestamp reads "s" with timestamptz's input function, with
 * TimeZone set to UTC for the call so that a time without an offset is
 * taken as UTC (Allma runs its servers in UTC).  Throws on bad input.
 */
static TimestampTz
parse_utc_timestamp(const char *module, const char *s)
{
	MemoryContext cxt = CurrentMemoryContext;
	int			nestlevel = NewGUCNestLevel();
	TimestampTz ts = 0;

	PG_TRY();
	{
		(void) set_config_option("TimeZone", "UTC", PGC_USERSET, PGC_S_SESSION,
								 GUC_ACTION_SAVE, true, 0, false);
		ts = DatumGetTimestampTz(DirectFunctionCall3(timestamptz_in,
													 CStringGetDatum(s),
													 ObjectIdGetDatum(InvalidOid),
													 Int32GetDatum(-1)));
	}
	PG_CATCH();
	{
		AtEOXact_GUC(false, nestlevel);
		rethrow_data_error(cxt,
						   psprintf("%s: \"baseTime\" is not a valid ISO 8601 timestamp",
									module));
	}
	PG_END_TRY();
	AtEOXact_GUC(false, nestlevel);

	if (TIMESTAMP_NOT_FINITE(ts))
		allma_transform_bad_field(module, "baseTime", "a finite timestamp");
	return ts;
}

/*
 * format_iso_utc formats ts like JavaScript's Date.toISOString():
 * "2026-01-02T03:04:05.000Z", always UTC, milliseconds truncated.  Years
 * outside 0..9999 get a sign and six digits, as in JavaScript.
 */
static char *
format_iso_utc(TimestampTz ts)
{
	struct pg_tm tm;
	fsec_t		fsec;
	char		year[16];

	if (timestamp2tm(ts, NULL, &tm, &fsec, NULL, NULL) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("timestamp out of range")));

	if (tm.tm_year >= 0 && tm.tm_year <= 9999)
		snprintf(year, sizeof(year), "%04d", tm.tm_year);
	else
		snprintf(year, sizeof(year), "%c%06d",
				 tm.tm_year < 0 ? '-' : '+', abs(tm.tm_year));

	return psprintf("%s-%02d-%02dT%02d:%02d:%02d.%03dZ",
					year, tm.tm_mon, tm.tm_mday,
					tm.tm_hour, tm.tm_min, tm.tm_sec, (int) (fsec / 1000));
}

/*
 * run_date_time_calculator: {baseTime?, offsetSeconds, operation?} ->
 * {result}.
 *
 * baseTime is any timestamp PostgreSQL's timestamptz input accepts (ISO
 * 8601 in practice), UTC when it has no offset; absent means the current
 * time.  offsetSeconds may have a fraction (kept to the microsecond).
 * operation is add (default) or subtract.
 */
static Jsonb *
run_date_time_calculator(const char *module, Jsonb *input)
{
	char	   *base_text = get_optional_string(module, input, "baseTime");
	int			op = allma_transform_get_choice(module, input, "operation", datetime_ops, 0);
	double		offset;
	TimestampTz base;
	TimestampTz result = 0;
	Interval	span;
	MemoryContext cxt = CurrentMemoryContext;

	if (!get_optional_number(module, input, "offsetSeconds", &offset))
		allma_transform_missing_field(module, "offsetSeconds");
	/* about 290,000 years: beyond that the microseconds overflow int64 */
	if (fabs(offset) > 9.0e12)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s: \"offsetSeconds\" is out of range", module)));

	base = base_text ? parse_utc_timestamp(module, base_text) : GetCurrentTimestamp();

	span.month = 0;
	span.day = 0;
	span.time = (TimeOffset) rint(offset * USECS_PER_SEC);

	PG_TRY();
	{
		PGFunction	fn = (op == 0) ? timestamptz_pl_interval : timestamptz_mi_interval;

		result = DatumGetTimestampTz(DirectFunctionCall2(fn,
														 TimestampTzGetDatum(base),
														 IntervalPGetDatum(&span)));
	}
	PG_CATCH();
	{
		rethrow_data_error(cxt, psprintf("%s: the result is out of range", module));
	}
	PG_END_TRY();

	return allma_transform_result_object("result", allma_jsonb_string(format_iso_utc(result)));
}


/* ---------------------------------------------------------------------
 * system/generate-uuid
 * ---------------------------------------------------------------------
 */

/*
 * run_generate_uuid: {prefix?, suffix?} -> {uuid: prefix + uuid + suffix},
 * with a version 4 (random) UUID from pg_strong_random, formatted by uuid's
 * output function (lower case, with dashes).
 */
static Jsonb *
run_generate_uuid(const char *module, Jsonb *input)
{
	char	   *prefix = get_optional_string(module, input, "prefix");
	char	   *suffix = get_optional_string(module, input, "suffix");
	pg_uuid_t  *uuid = palloc(sizeof(pg_uuid_t));
	char	   *text;

	if (!pg_strong_random(uuid->data, UUID_LEN))
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not generate random values")));
	/* RFC 4122: version 4, variant 10xx */
	uuid->data[6] = (uuid->data[6] & 0x0f) | 0x40;
	uuid->data[8] = (uuid->data[8] & 0x3f) | 0x80;

	text = DatumGetCString(DirectFunctionCall1(uuid_out, UUIDPGetDatum(uuid)));
	return allma_transform_result_object("uuid",
										 allma_jsonb_string(psprintf("%s%s%s",
																	 prefix ? prefix : "",
																	 text,
																	 suffix ? suffix : "")));
}
