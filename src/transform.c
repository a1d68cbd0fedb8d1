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
 *	 ALLMA_JOIN_MAX_ROWS rows.
 * - Numbers are PostgreSQL numerics, so sums are exact (Allma's JavaScript
 *	 uses doubles: 0.1 + 0.2 gives 0.3 here, not 0.30000000000000004).
 *
 * Copyright (c) 2026, the allma authors
 *
 * IDENTIFICATION
 *	  src/transform.c
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
#include "modules/aws.h"
#include "path.h"
#include "transform.h"

PG_FUNCTION_INFO_V1(allma_run_module);

/* largest "count" accepted by system/generate-array */
#define ALLMA_GENERATE_ARRAY_MAX	100000

/* largest number of rows system/join-data may produce */
#define ALLMA_JOIN_MAX_ROWS			1000000

typedef Jsonb *(*TransformFunc) (const char *module, Jsonb *input);

typedef struct TransformModule
{
	const char *identifier;
	TransformFunc run;
} TransformModule;

static Jsonb *run_compose_object(const char *module, Jsonb *input);
static Jsonb *run_array_aggregator(const char *module, Jsonb *input);
static Jsonb *run_flatten_array(const char *module, Jsonb *input);
static Jsonb *run_generate_array(const char *module, Jsonb *input);
static Jsonb *run_date_time_calculator(const char *module, Jsonb *input);
static Jsonb *run_generate_uuid(const char *module, Jsonb *input);
static Jsonb *run_join_data(const char *module, Jsonb *input);

static void missing_field(const char *module, const char *field) pg_attribute_noreturn();
static void bad_field(const char *module, const char *field,
					  const char *what) pg_attribute_noreturn();
static void rethrow_data_error(MemoryContext cxt,
							   const char *message) pg_attribute_noreturn();

/* the built-in modules, in the order the unknown-module hint lists them */
static const TransformModule transform_modules[] = {
	{"system/array-aggregator", run_array_aggregator},
	{"system/compose-object-from-input", run_compose_object},
	{"system/date-time-calculator", run_date_time_calculator},
	{"system/flatten-array", run_flatten_array},
	{"system/generate-array", run_generate_array},
	{"system/generate-uuid", run_generate_uuid},
	{"system/join-data", run_join_data},
};

#define NUM_TRANSFORM_MODULES lengthof(transform_modules)


/* ---------------------------------------------------------------------
 * Module lookup and the SQL entry point
 * ---------------------------------------------------------------------
 */

static const TransformModule *
find_module(const char *module_identifier)
{
	int			i;

	for (i = 0; i < NUM_TRANSFORM_MODULES; i++)
	{
		if (strcmp(transform_modules[i].identifier, module_identifier) == 0)
			return &transform_modules[i];
	}
	return NULL;
}

bool
allma_transform_exists(const char *module_identifier)
{
	return module_identifier != NULL && find_module(module_identifier) != NULL;
}

/* "a, b, c": the known module identifiers, for hints */
static char *
known_modules_list(void)
{
	StringInfoData buf;
	int			i;

	initStringInfo(&buf);
	for (i = 0; i < NUM_TRANSFORM_MODULES; i++)
	{
		if (i > 0)
			appendStringInfoString(&buf, ", ");
		appendStringInfoString(&buf, transform_modules[i].identifier);
	}
	return buf.data;
}

/*
 * allma_transform_run runs the built-in module "module_identifier" on
 * "input" and returns its output object.
 *
 * Throws ERRCODE_ALLMA_UNKNOWN_MODULE for an identifier that is not a
 * built-in, and ERRCODE_INVALID_PARAMETER_VALUE when the input is not an
 * object or does not suit the module.
 */
Jsonb *
allma_transform_run(const char *module_identifier, Jsonb *input)
{
	const TransformModule *mod = find_module(module_identifier);

	if (mod == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_ALLMA_UNKNOWN_MODULE),
				 errmsg("unknown transformation module \"%s\"",
						module_identifier),
				 errhint("The built-in modules are %s.", known_modules_list())));

	if (!allma_jsonb_is_object(input))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s: module input must be a JSON object",
						mod->identifier)));

	return mod->run(mod->identifier, input);
}

/*
 * allma_run_module(module_identifier text, input jsonb) RETURNS jsonb
 *
 * Lets flow authors try a built-in module from SQL, exactly as a
 * DATA_TRANSFORMATION step would run it.
 */
Datum
allma_run_module(PG_FUNCTION_ARGS)
{
	char	   *module_identifier = text_to_cstring(PG_GETARG_TEXT_PP(0));
	Jsonb	   *input = PG_GETARG_JSONB_P(1);

	if (allma_aws_module_exists(module_identifier))
		PG_RETURN_JSONB_P(allma_aws_module_run(module_identifier, input, input, NULL));
	PG_RETURN_JSONB_P(allma_transform_run(module_identifier, input));
}


/* ---------------------------------------------------------------------
 * Input helpers shared by the modules
 * ---------------------------------------------------------------------
 */

/* throws the standard "field is required" error */
static void
missing_field(const char *module, const char *field)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("%s: \"%s\" is required", module, field)));
}

/* throws the standard "field must be <what>" error */
static void
bad_field(const char *module, const char *field, const char *what)
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
static Jsonb *
get_optional(Jsonb *input, const char *field)
{
	Jsonb	   *v = allma_jsonb_get(input, field);

	if (v == NULL || jsonb_is_null(v))
		return NULL;
	return v;
}

/* the array at "field"; throws when absent or not an array */
static Jsonb *
get_array(const char *module, Jsonb *input, const char *field)
{
	Jsonb	   *v = get_optional(input, field);

	if (v == NULL)
		missing_field(module, field);
	if (!allma_jsonb_is_array(v))
		bad_field(module, field, "an array");
	return v;
}

/* the string at "field", or NULL when absent; throws when not a string */
static char *
get_optional_string(const char *module, Jsonb *input, const char *field)
{
	Jsonb	   *v = get_optional(input, field);
	JsonbValue	sv;

	if (v == NULL)
		return NULL;
	if (!allma_jsonb_scalar(v, &sv) || sv.type != jbvString)
		bad_field(module, field, "a string");
	return pnstrdup(sv.val.string.val, sv.val.string.len);
}

/* the number at "field" as a double, false when absent; throws on non-numbers */
static bool
get_optional_number(const char *module, Jsonb *input, const char *field,
					double *out)
{
	Jsonb	   *v = get_optional(input, field);

	if (v == NULL)
		return false;
	if (!allma_jsonb_get_number(input, field, out))
		bad_field(module, field, "a number");
	return true;
}

/*
 * get_choice returns the index in "choices" (NULL-terminated) of the string
 * at "field".  When the field is absent it returns "dflt", or throws if
 * dflt < 0 (the field is required).  Any other value throws, listing the
 * choices.
 */
static int
get_choice(const char *module, Jsonb *input, const char *field,
		   const char *const *choices, int dflt)
{
	char	   *s = get_optional_string(module, input, field);
	StringInfoData list;
	int			i;

	if (s == NULL)
	{
		if (dflt < 0)
			missing_field(module, field);
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
		bad_field(module, "path", "a non-empty string");
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
static Jsonb *
result_object(const char *key, Jsonb *value)
{
	return allma_jsonb_set_key(NULL, key, value);
}

/*
 * push_value pushes v as the current array element or object value.  A
 * binary container is pushed whole (pushJsonbValue unpacks it).
 */
static void
push_value(JsonbParseState **state, JsonbIteratorToken seq, JsonbValue *v)
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
	Jsonb	   *array = get_array(module, input, "array");
	char	   *path = get_path(module, input);
	int			op = get_choice(module, input, "operation", aggregator_ops, -1);
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
		return result_object("result",
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
		return result_object("result", JsonbValueToJsonb(&rv));
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
	Jsonb	   *array = get_array(module, input, "array");
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
					push_value(&state, WJB_ELEM, &child);
			}
		}
		else
			push_value(&state, WJB_ELEM, &v);
	}
	res = pushJsonbValue(&state, WJB_END_ARRAY, NULL);

	return result_object("result", JsonbValueToJsonb(res));
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
		missing_field(module, "count");
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

	return result_object("array", JsonbValueToJsonb(res));
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
		bad_field(module, "baseTime", "a finite timestamp");
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
	int			op = get_choice(module, input, "operation", datetime_ops, 0);
	double		offset;
	TimestampTz base;
	TimestampTz result = 0;
	Interval	span;
	MemoryContext cxt = CurrentMemoryContext;

	if (!get_optional_number(module, input, "offsetSeconds", &offset))
		missing_field(module, "offsetSeconds");
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

	return result_object("result", allma_jsonb_string(format_iso_utc(result)));
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
	return result_object("uuid",
						 allma_jsonb_string(psprintf("%s%s%s",
													 prefix ? prefix : "",
													 text,
													 suffix ? suffix : "")));
}


/* ---------------------------------------------------------------------
 * system/join-data
 *
 * Both sources become a JoinTable: named columns and rows of cells.  The
 * right table is hashed on its join key; each left row then probes the
 * hash table, so the join costs O(left + right + output).
 *
 * Keys compare by their display text, the way Allma (which joins the
 * key values' JavaScript string forms) does: a CSV "1" matches a JSON 1,
 * numbers compare without trailing fractional zeros (1.50 matches 1.5),
 * objects and arrays compare as JSON text.  A row whose key has a null or
 * missing part never matches (as in SQL); outer joins still output it.
 *
 * Output rows are objects whose columns are the left columns, then the left
 * join key names if not among them, then the selected right columns (all
 * right columns by default) except the right join key columns.  A matched
 * row takes the right row's value for a column both sides have, except the
 * join keys, which keep the left value.  Columns a row lacks are null.  An
 * unmatched right row (right and outer joins) gets its key values under the
 * left key names.
 * ---------------------------------------------------------------------
 */

typedef struct JoinTable
{
	const char *field;			/* "left_source" or "right_source" */
	int			nrows;
	int			ncols;
	char	  **colnames;		/* in first-seen order */
	HTAB	   *colmap;			/* column name -> index */
	JsonbValue **cells;			/* nrows * ncols; NULL where a row lacks a
								 * column */
} JoinTable;

/* entry of a name -> index map; the key is a pointer to a C string */
typedef struct NameEntry
{
	const char *name;
	int			index;
} NameEntry;

/* entry of the join hash table: the right rows with one key */
typedef struct KeyGroup
{
	const char *key;
	int			head;			/* first right row with this key */
	int			tail;			/* last one; rows chain through next_row[] */
} KeyGroup;

/* hash and compare functions for hash tables keyed by a C string pointer */
static uint32
cstring_ptr_hash(const void *key, Size keysize)
{
	const char *s = *(const char *const *) key;

	return hash_bytes((const unsigned char *) s, strlen(s));
}

static int
cstring_ptr_match(const void *key1, const void *key2, Size keysize)
{
	return strcmp(*(const char *const *) key1, *(const char *const *) key2);
}

/* a hash table keyed by C string pointers, in CurrentMemoryContext */
static HTAB *
create_string_hash(const char *name, long nelem, Size entrysize)
{
	HASHCTL		ctl;

	ctl.keysize = sizeof(char *);
	ctl.entrysize = entrysize;
	ctl.hash = cstring_ptr_hash;
	ctl.match = cstring_ptr_match;
	ctl.hcxt = CurrentMemoryContext;
	return hash_create(name, Max(nelem, 16), &ctl,
					   HASH_ELEM | HASH_FUNCTION | HASH_COMPARE | HASH_CONTEXT);
}

/* index of "name" in map, or -1 */
static int
name_lookup(HTAB *map, const char *name)
{
	NameEntry  *e = hash_search(map, &name, HASH_FIND, NULL);

	return e ? e->index : -1;
}

/*
 * name_add adds "name" with index *count (then increments *count) unless
 * present; returns true if it was added.
 */
static bool
name_add(HTAB *map, const char *name, int *count)
{
	bool		found;
	NameEntry  *e = hash_search(map, &name, HASH_ENTER, &found);

	if (found)
		return false;
	e->index = (*count)++;
	return true;
}

/* allocates the nrows * ncols cell matrix, refusing absurd sizes */
static JsonbValue **
alloc_cells(const char *module, const char *field, int nrows, int ncols)
{
	Size		n = (Size) nrows * (Size) ncols;

	if (ncols > 0 && n / ncols != (Size) nrows)
		n = MaxAllocHugeSize;
	if (n >= MaxAllocHugeSize / sizeof(JsonbValue *))
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("%s: \"%s\" is too large", module, field)));
	return MemoryContextAllocHuge(CurrentMemoryContext,
								  Max(n, 1) * sizeof(JsonbValue *));
}

/*
 * table_from_json builds a JoinTable from a JSON array of objects.  The
 * columns are all keys of all rows.  Cells point into "array".
 */
static JoinTable *
table_from_json(const char *module, const char *field, Jsonb *array)
{
	JoinTable  *t = palloc0(sizeof(JoinTable));
	int			nelems = allma_jsonb_array_length(array);
	JsonbContainer **rows = palloc(Max(nelems, 1) * sizeof(JsonbContainer *));
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	int			capacity = 16;
	int			r;
	int			c;

	t->field = field;
	t->colmap = create_string_hash("allma join columns", 16, sizeof(NameEntry));
	t->colnames = palloc(capacity * sizeof(char *));

	/* pass 1: collect the rows and the union of their keys */
	it = JsonbIteratorInit(&array->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		JsonbIterator *rit;
		JsonbValue	k;

		if (tok != WJB_ELEM)
			continue;
		if (v.type != jbvBinary || !JsonContainerIsObject(v.val.binary.data))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("%s: \"%s\" must be an array of objects", module, field),
					 errdetail("The element at index %d is not an object.",
							   t->nrows)));
		rows[t->nrows++] = v.val.binary.data;

		rit = JsonbIteratorInit(v.val.binary.data);
		while ((tok = JsonbIteratorNext(&rit, &k, true)) != WJB_DONE)
		{
			char	   *name;

			if (tok != WJB_KEY)
				continue;
			name = pnstrdup(k.val.string.val, k.val.string.len);
			if (name_lookup(t->colmap, name) >= 0)
			{
				pfree(name);
				continue;
			}
			if (t->ncols == capacity)
			{
				capacity *= 2;
				t->colnames = repalloc(t->colnames, capacity * sizeof(char *));
			}
			t->colnames[t->ncols] = name;
			name_add(t->colmap, name, &t->ncols);
		}
	}

	/* pass 2: the cells */
	t->cells = alloc_cells(module, field, t->nrows, t->ncols);
	for (r = 0; r < t->nrows; r++)
	{
		for (c = 0; c < t->ncols; c++)
			t->cells[(Size) r * t->ncols + c] =
				getKeyJsonValueFromContainer(rows[r], t->colnames[c],
											 strlen(t->colnames[c]), NULL);
	}
	pfree(rows);
	return t;
}

/* state of the CSV reader */
typedef struct CsvReader
{
	const char *text;
	int			len;
	int			pos;
	int			line;			/* line number at pos, from 1 */
} CsvReader;

/*
 * csv_next_record reads one record (RFC 4180: comma separated, fields may
 * be double-quoted, "" is a quote inside a quoted field, and quoted fields
 * may hold commas and line breaks; lines end with LF or CRLF).  A quote
 * inside an unquoted field is an ordinary character; text after a closing
 * quote is kept.  Returns the fields as a List of C strings, or NIL at the
 * end of the text.  Blank lines are skipped.  *line gets the record's first
 * line number.  Throws on an unterminated quoted field.
 */
static List *
csv_next_record(const char *module, const char *field, CsvReader *rd,
				int *line)
{
	for (;;)
	{
		List	   *fields = NIL;
		bool		blank = true;

		if (rd->pos >= rd->len)
			return NIL;
		*line = rd->line;

		for (;;)
		{
			StringInfoData buf;
			bool		quoted = false;

			initStringInfo(&buf);
			if (rd->pos < rd->len && rd->text[rd->pos] == '"')
			{
				int			start_line = rd->line;

				quoted = true;
				rd->pos++;
				for (;;)
				{
					char		ch;

					if (rd->pos >= rd->len)
						ereport(ERROR,
								(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
								 errmsg("%s: \"%s\" is not valid CSV", module, field),
								 errdetail("The quoted field starting on line %d is not terminated.",
										   start_line)));
					ch = rd->text[rd->pos];
					if (ch == '"')
					{
						if (rd->pos + 1 < rd->len && rd->text[rd->pos + 1] == '"')
						{
							appendStringInfoChar(&buf, '"');
							rd->pos += 2;
							continue;
						}
						rd->pos++;
						break;
					}
					if (ch == '\n')
						rd->line++;
					appendStringInfoChar(&buf, ch);
					rd->pos++;
				}
			}
			/* unquoted text, or what follows a closing quote */
			while (rd->pos < rd->len)
			{
				char		ch = rd->text[rd->pos];

				if (ch == ',' || ch == '\n' || ch == '\r')
					break;
				appendStringInfoChar(&buf, ch);
				rd->pos++;
			}

			if (quoted || fields != NIL ||
				strspn(buf.data, " \t") != (size_t) buf.len)
				blank = false;
			fields = lappend(fields, buf.data);

			if (rd->pos < rd->len && rd->text[rd->pos] == ',')
			{
				rd->pos++;
				continue;
			}
			break;
		}

		/* end of line */
		if (rd->pos < rd->len && rd->text[rd->pos] == '\r')
			rd->pos++;
		if (rd->pos < rd->len && rd->text[rd->pos] == '\n')
			rd->pos++;
		rd->line++;

		if (!blank)
			return fields;
		list_free_deep(fields);
	}
}

/*
 * table_from_csv builds a JoinTable from CSV text whose first record is
 * the header.  Every cell is a string.  Throws on a duplicate column name
 * or a record whose field count differs from the header's.
 */
static JoinTable *
table_from_csv(const char *module, const char *field, const char *text, int len)
{
	JoinTable  *t = palloc0(sizeof(JoinTable));
	CsvReader	rd;
	List	   *header;
	List	   *rec;
	ListCell   *lc;
	List	   *rows = NIL;
	int			line;
	int			r;

	t->field = field;
	t->colmap = create_string_hash("allma join columns", 16, sizeof(NameEntry));

	rd.text = text;
	rd.len = len;
	rd.pos = 0;
	rd.line = 1;
	/* a UTF-8 byte order mark, as spreadsheet exports write */
	if (len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0)
		rd.pos = 3;

	header = csv_next_record(module, field, &rd, &line);
	t->ncols = list_length(header);
	t->colnames = palloc(Max(t->ncols, 1) * sizeof(char *));
	{
		int			n = 0;

		foreach(lc, header)
		{
			char	   *name = lfirst(lc);

			if (!name_add(t->colmap, name, &n))
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("%s: \"%s\" is not valid CSV", module, field),
						 errdetail("The header names column \"%s\" twice.", name)));
			t->colnames[n - 1] = name;
		}
	}

	while ((rec = csv_next_record(module, field, &rd, &line)) != NIL)
	{
		JsonbValue *vals;
		int			c = 0;

		if (list_length(rec) != t->ncols)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("%s: \"%s\" is not valid CSV", module, field),
					 errdetail_plural("The record on line %d has %d field, but the header has %d.",
									  "The record on line %d has %d fields, but the header has %d.",
									  list_length(rec),
									  line, list_length(rec), t->ncols)));
		vals = palloc(t->ncols * sizeof(JsonbValue));
		foreach(lc, rec)
		{
			char	   *s = lfirst(lc);

			vals[c].type = jbvString;
			vals[c].val.string.val = s;
			vals[c].val.string.len = strlen(s);
			c++;
		}
		list_free(rec);
		rows = lappend(rows, vals);
		if (list_length(rows) > ALLMA_JOIN_MAX_ROWS)
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("%s: \"%s\" has more than %d rows",
							module, field, ALLMA_JOIN_MAX_ROWS)));
	}

	t->nrows = list_length(rows);
	t->cells = alloc_cells(module, field, t->nrows, t->ncols);
	r = 0;
	foreach(lc, rows)
	{
		JsonbValue *vals = lfirst(lc);
		int			c;

		for (c = 0; c < t->ncols; c++)
			t->cells[(Size) r * t->ncols + c] = &vals[c];
		r++;
	}
	list_free(rows);
	return t;
}

/*
 * load_source reads "left_source" or "right_source" and its format field
 * ("json" or "csv"; inferred from the value's type when absent) into a
 * JoinTable.
 */
static JoinTable *
load_source(const char *module, Jsonb *input, const char *field,
			const char *format_field)
{
	static const char *const formats[] = {"json", "csv", NULL};
	Jsonb	   *src = get_optional(input, field);
	int			format;
	JsonbValue	sv;
	bool		is_string;

	if (src == NULL)
		missing_field(module, field);
	is_string = allma_jsonb_scalar(src, &sv) && sv.type == jbvString;
	if (!is_string && !allma_jsonb_is_array(src))
		bad_field(module, field, "a JSON array or a CSV string");

	format = get_choice(module, input, format_field, formats, is_string ? 1 : 0);
	if (format == 1 && !is_string)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s: \"%s\" must be a string when \"%s\" is csv",
						module, field, format_field)));
	if (format == 0 && is_string)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s: \"%s\" must be an array when \"%s\" is json",
						module, field, format_field)));

	if (format == 1)
		return table_from_csv(module, field, sv.val.string.val, sv.val.string.len);
	if (allma_jsonb_array_length(src) > ALLMA_JOIN_MAX_ROWS)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("%s: \"%s\" has more than %d rows",
						module, field, ALLMA_JOIN_MAX_ROWS)));
	return table_from_json(module, field, src);
}

/*
 * value_text gives the text of a cell: strings raw, numbers as numeric_out
 * writes them (without trailing fractional zeros when "trim"), booleans as
 * true/false, null as "", objects and arrays as JSON text.
 */
static char *
value_text(JsonbValue *v, bool trim)
{
	Numeric		n;

	switch (v->type)
	{
		case jbvNull:
			return pstrdup("");
		case jbvString:
			return pnstrdup(v->val.string.val, v->val.string.len);
		case jbvBool:
			return pstrdup(v->val.boolean ? "true" : "false");
		case jbvNumeric:
			n = v->val.numeric;
			if (trim)
				n = DatumGetNumeric(DirectFunctionCall1(numeric_trim_scale,
														NumericGetDatum(n)));
			return DatumGetCString(DirectFunctionCall1(numeric_out,
													   NumericGetDatum(n)));
		case jbvBinary:
			return JsonbToCString(NULL, v->val.binary.data, v->val.binary.len);
		default:
			elog(ERROR, "unexpected jsonb value type %d", (int) v->type);
	}
	return NULL;				/* keep compiler quiet */
}

/*
 * row_key builds the hash key of row "row" from the key columns
 * "keycols[0..nkeys-1]": each part's display text preceded by its length,
 * so that no two different key tuples share a string.  NULL when a part is
 * missing or null (such a row never matches).
 */
static char *
row_key(JoinTable *t, int row, const int *keycols, int nkeys)
{
	StringInfoData buf;
	int			k;

	initStringInfo(&buf);
	for (k = 0; k < nkeys; k++)
	{
		JsonbValue *cell;
		char	   *s;

		if (keycols[k] < 0)
			return NULL;
		cell = t->cells[(Size) row * t->ncols + keycols[k]];
		if (cell == NULL || cell->type == jbvNull)
			return NULL;
		s = value_text(cell, true);
		appendStringInfo(&buf, "%zu:%s", strlen(s), s);
		pfree(s);
	}
	return buf.data;
}

/* appends s to a CSV line, quoted when it holds a comma, quote or line break */
static void
csv_append_field(StringInfo out, const char *s)
{
	const char *p;

	if (strpbrk(s, ",\"\r\n") == NULL)
	{
		appendStringInfoString(out, s);
		return;
	}
	appendStringInfoChar(out, '"');
	for (p = s; *p; p++)
	{
		if (*p == '"')
			appendStringInfoChar(out, '"');
		appendStringInfoChar(out, *p);
	}
	appendStringInfoChar(out, '"');
}

/* the output being built by run_join_data */
typedef struct JoinOutput
{
	int			ncols;
	char	  **colnames;
	int		   *left_src;		/* per output column: left column or -1 */
	int		   *right_src;		/* per output column: right column or -1 */
	int		   *key_of;			/* per output column: join key number or -1 */
	int		   *right_keycols;	/* per join key: right column or -1 */
	bool		csv;
	JsonbParseState *state;		/* JSON output */
	StringInfoData text;		/* CSV output */
	int			nrows;
	const char *module;
} JoinOutput;

/*
 * emit_row appends the merged row of left row "l" and right row "r" (either
 * may be -1 for "no row") to the output.
 */
static void
emit_row(JoinOutput *out, JoinTable *left, JoinTable *right, int l, int r)
{
	int			c;

	if (out->nrows >= ALLMA_JOIN_MAX_ROWS)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("%s: the join result has more than %d rows",
						out->module, ALLMA_JOIN_MAX_ROWS)));
	out->nrows++;

	if (out->csv)
		appendStringInfoChar(&out->text, '\n');
	else
		pushJsonbValue(&out->state, WJB_BEGIN_OBJECT, NULL);

	for (c = 0; c < out->ncols; c++)
	{
		JsonbValue *lv = NULL;
		JsonbValue *rv = NULL;
		JsonbValue *v;
		JsonbValue	null;

		if (l >= 0 && out->left_src[c] >= 0)
			lv = left->cells[(Size) l * left->ncols + out->left_src[c]];
		if (r >= 0 && out->key_of[c] >= 0)
		{
			int			rc = out->right_keycols[out->key_of[c]];

			if (rc >= 0)
				rv = right->cells[(Size) r * right->ncols + rc];
		}
		else if (r >= 0 && out->right_src[c] >= 0)
			rv = right->cells[(Size) r * right->ncols + out->right_src[c]];

		/* join keys keep the left value; other columns take the right one */
		if (out->key_of[c] >= 0)
			v = (l >= 0) ? lv : rv;
		else
			v = rv ? rv : lv;
		if (v == NULL)
		{
			null.type = jbvNull;
			v = &null;
		}

		if (out->csv)
		{
			char	   *s = value_text(v, false);

			if (c > 0)
				appendStringInfoChar(&out->text, ',');
			csv_append_field(&out->text, s);
			pfree(s);
		}
		else
		{
			JsonbValue	k;

			k.type = jbvString;
			k.val.string.val = out->colnames[c];
			k.val.string.len = strlen(out->colnames[c]);
			pushJsonbValue(&out->state, WJB_KEY, &k);
			push_value(&out->state, WJB_VALUE, v);
		}
	}

	if (!out->csv)
		pushJsonbValue(&out->state, WJB_END_OBJECT, NULL);
}

/* true when the List of C strings "list" contains s */
static bool
string_member(List *list, const char *s)
{
	ListCell   *lc;

	foreach(lc, list)
	{
		if (strcmp(lfirst(lc), s) == 0)
			return true;
	}
	return false;
}

/* reads a JSON array of non-empty strings at "field" into a List */
static List *
get_string_list(const char *module, Jsonb *input, const char *field,
				bool allow_empty)
{
	Jsonb	   *arr = get_array(module, input, field);
	List	   *elems = allma_jsonb_array_elements(arr);
	List	   *result = NIL;
	ListCell   *lc;

	if (elems == NIL && !allow_empty)
		bad_field(module, field, "a non-empty array of column names");
	foreach(lc, elems)
	{
		JsonbValue	v;

		if (!allma_jsonb_scalar(lfirst(lc), &v) || v.type != jbvString ||
			v.val.string.len == 0)
			bad_field(module, field, "an array of column names (non-empty strings)");
		result = lappend(result, pnstrdup(v.val.string.val, v.val.string.len));
	}
	return result;
}

/*
 * get_key_names reads join_keys or key_mappings (exactly one must be given)
 * into parallel lists of left and right column names.
 */
static void
get_key_names(const char *module, Jsonb *input, List **lkeys, List **rkeys)
{
	bool		has_keys = get_optional(input, "join_keys") != NULL;
	bool		has_mappings = get_optional(input, "key_mappings") != NULL;

	if (has_keys == has_mappings)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s: exactly one of \"join_keys\" and \"key_mappings\" must be given",
						module),
				 errhint("Use \"join_keys\" for key columns with the same name on both sides and \"key_mappings\" ([{\"left\": ..., \"right\": ...}]) otherwise.")));

	if (has_keys)
	{
		*lkeys = get_string_list(module, input, "join_keys", false);
		*rkeys = list_copy(*lkeys);
	}
	else
	{
		List	   *maps = allma_jsonb_array_elements(get_array(module, input, "key_mappings"));
		ListCell   *lc;

		if (maps == NIL)
			bad_field(module, "key_mappings", "a non-empty array");
		*lkeys = NIL;
		*rkeys = NIL;
		foreach(lc, maps)
		{
			Jsonb	   *m = lfirst(lc);
			char	   *l = allma_jsonb_get_cstring(m, "left");
			char	   *r = allma_jsonb_get_cstring(m, "right");

			if (l == NULL || r == NULL || l[0] == '\0' || r[0] == '\0')
				bad_field(module, "key_mappings",
						  "an array of objects with non-empty string \"left\" and \"right\" column names");
			*lkeys = lappend(*lkeys, l);
			*rkeys = lappend(*rkeys, r);
		}
	}
}

/* the column number of each key in t; throws if t has rows but lacks one */
static int *
key_columns(const char *module, JoinTable *t, List *names)
{
	int		   *cols = palloc(list_length(names) * sizeof(int));
	ListCell   *lc;
	int			k = 0;

	foreach(lc, names)
	{
		char	   *name = lfirst(lc);

		cols[k] = name_lookup(t->colmap, name);
		if (cols[k] < 0 && t->nrows > 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("%s: join key \"%s\" is not a column of \"%s\"",
							module, name, t->field)));
		k++;
	}
	return cols;
}

/*
 * run_join_data: {left_source, right_source, left_format?, right_format?,
 * join_keys | key_mappings, join_type?, right_select_columns?,
 * output_format?} -> {result, rowCount}.  See the section comment above for
 * the semantics.  "result" is an array of objects, or for output_format
 * csv a CSV string with a header line ("" when there are no rows).
 */
static Jsonb *
run_join_data(const char *module, Jsonb *input)
{
	static const char *const join_types[] = {"inner", "left", "right", "outer", NULL};
	enum
	{
		JOIN_INNER_T, JOIN_LEFT_T, JOIN_RIGHT_T, JOIN_OUTER_T
	};
	static const char *const out_formats[] = {"json", "csv", NULL};
	int			join_type;
	bool		keep_left;
	bool		keep_right;
	List	   *lkeys;
	List	   *rkeys;
	List	   *select = NIL;
	bool		has_select;
	JoinTable  *left;
	JoinTable  *right;
	int			nkeys;
	int		   *lkeycols;
	int		   *rkeycols;
	HTAB	   *outmap;
	HTAB	   *groups;
	int		   *next_row;
	bool	   *matched;
	int			capacity;
	ListCell   *lc;
	JoinOutput	out;
	int			i;
	int			r;
	Jsonb	   *result;

	/* validate the parameters before loading the (possibly big) sources */
	get_key_names(module, input, &lkeys, &rkeys);
	join_type = get_choice(module, input, "join_type", join_types, 0);
	keep_left = (join_type == JOIN_LEFT_T || join_type == JOIN_OUTER_T);
	keep_right = (join_type == JOIN_RIGHT_T || join_type == JOIN_OUTER_T);
	memset(&out, 0, sizeof(out));
	out.module = module;
	out.csv = get_choice(module, input, "output_format", out_formats, 0) == 1;
	has_select = get_optional(input, "right_select_columns") != NULL;
	if (has_select)
		select = get_string_list(module, input, "right_select_columns", true);

	left = load_source(module, input, "left_source", "left_format");
	right = load_source(module, input, "right_source", "right_format");

	nkeys = list_length(lkeys);
	lkeycols = key_columns(module, left, lkeys);
	rkeycols = key_columns(module, right, rkeys);

	/*
	 * Output columns: the left columns, the left key names, then the
	 * selected right columns that are not join keys of either side.
	 */
	capacity = left->ncols + nkeys + (has_select ? list_length(select) : right->ncols) + 1;
	out.colnames = palloc(capacity * sizeof(char *));
	out.left_src = palloc(capacity * sizeof(int));
	out.right_src = palloc(capacity * sizeof(int));
	out.key_of = palloc(capacity * sizeof(int));
	out.right_keycols = rkeycols;
	outmap = create_string_hash("allma join output columns", capacity, sizeof(NameEntry));

	for (i = 0; i < left->ncols; i++)
	{
		out.colnames[out.ncols] = left->colnames[i];
		name_add(outmap, left->colnames[i], &out.ncols);
	}
	foreach(lc, lkeys)
	{
		if (name_lookup(outmap, lfirst(lc)) < 0)
		{
			out.colnames[out.ncols] = lfirst(lc);
			name_add(outmap, lfirst(lc), &out.ncols);
		}
	}
	if (!has_select)
	{
		for (i = 0; i < right->ncols; i++)
			select = lappend(select, right->colnames[i]);
	}
	foreach(lc, select)
	{
		char	   *name = lfirst(lc);

		if (string_member(rkeys, name) || string_member(lkeys, name))
			continue;
		if (name_lookup(outmap, name) < 0)
		{
			out.colnames[out.ncols] = name;
			name_add(outmap, name, &out.ncols);
		}
	}
	for (i = 0; i < out.ncols; i++)
	{
		char	   *name = out.colnames[i];
		int			k;

		out.left_src[i] = name_lookup(left->colmap, name);
		out.right_src[i] = -1;
		out.key_of[i] = -1;
		k = 0;
		foreach(lc, lkeys)
		{
			if (strcmp(lfirst(lc), name) == 0)
			{
				out.key_of[i] = k;
				break;
			}
			k++;
		}
		if (out.key_of[i] < 0 && !string_member(rkeys, name) &&
			(!has_select || string_member(select, name)))
			out.right_src[i] = name_lookup(right->colmap, name);
	}

	/* build: hash the right rows on their key */
	groups = create_string_hash("allma join keys", Max(right->nrows, 1), sizeof(KeyGroup));
	next_row = palloc(Max(right->nrows, 1) * sizeof(int));
	matched = palloc0(Max(right->nrows, 1) * sizeof(bool));
	for (r = 0; r < right->nrows; r++)
	{
		char	   *key = row_key(right, r, rkeycols, nkeys);
		KeyGroup   *g;
		bool		found;

		next_row[r] = -1;
		if (key == NULL)
			continue;
		g = hash_search(groups, &key, HASH_ENTER, &found);
		if (!found)
			g->head = r;
		else
		{
			next_row[g->tail] = r;
			pfree(key);
		}
		g->tail = r;
	}

	/* probe with each left row, then add the unmatched right rows */
	if (out.csv)
	{
		initStringInfo(&out.text);
		for (i = 0; i < out.ncols; i++)
		{
			if (i > 0)
				appendStringInfoChar(&out.text, ',');
			csv_append_field(&out.text, out.colnames[i]);
		}
	}
	else
		pushJsonbValue(&out.state, WJB_BEGIN_ARRAY, NULL);

	for (i = 0; i < left->nrows; i++)
	{
		char	   *key = row_key(left, i, lkeycols, nkeys);
		KeyGroup   *g = NULL;

		if (key != NULL)
		{
			g = hash_search(groups, &key, HASH_FIND, NULL);
			pfree(key);
		}
		if (g != NULL)
		{
			for (r = g->head; r >= 0; r = next_row[r])
			{
				emit_row(&out, left, right, i, r);
				matched[r] = true;
			}
		}
		else if (keep_left)
			emit_row(&out, left, right, i, -1);
	}
	if (keep_right)
	{
		for (r = 0; r < right->nrows; r++)
		{
			if (!matched[r])
				emit_row(&out, left, right, -1, r);
		}
	}
	hash_destroy(groups);
	hash_destroy(outmap);

	if (out.csv)
		result = allma_jsonb_string(out.nrows > 0 ? out.text.data : "");
	else
		result = JsonbValueToJsonb(pushJsonbValue(&out.state, WJB_END_ARRAY, NULL));

	return allma_jsonb_set_key(result_object("result", result),
							   "rowCount", allma_jsonb_int(out.nrows));
}
