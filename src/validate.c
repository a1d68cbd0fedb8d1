/*-------------------------------------------------------------------------
 *
 * validate.c
 *	  Validation of Allma flow definitions before they are stored.
 *
 * A flow definition is Allma's JSON format (allma-semantics.md sections 2
 * to 4): an object with an "id", a "steps" map keyed by step instance id
 * and a "startStepInstanceId".  allma_validate_definition walks it once
 * and throws on the first problem, so that nothing broken is stored and
 * the engine may trust the shapes it reads.  The walk goes: flow fields,
 * then each step in jsonb key order (shorter keys first), and inside a
 * step the common fields before the fields of its stepType.
 *
 * SQLSTATEs (src/allma.h):
 *	LM100  structure: missing required field, bad value of an enum, a
 *		   number out of range outside onError, a bad id
 *	LM101  unknown stepType
 *	LM102  a step reference (start step, transition, default next step,
 *		   fallback, catch, branch) that names no step
 *	LM103  bad JSONPath, settable JSONPath or dot path
 *	LM104  condition that does not parse
 *	LM105  template that does not parse
 *	LM106  bad number in onError.retries / onError.retryOnContentError
 *	LM107  a step's "stepInstanceId" differs from its key
 *	LM108  wrong JSON type (message names the field and expected type)
 *	LM109  moduleIdentifier that cannot be right for the step type
 *
 * Every message names the step (or "flow" for top-level fields) and the
 * field, using dots for object members and [n] (0-based) for array
 * elements, e.g. step "fetch" field "transitions[1].nextStepInstanceId".
 *
 * Deliberate choices, compared with Allma's zod schemas:
 *	- Unknown fields are allowed everywhere (Allma's schemas pass them
 *	  through), and so are unknown module identifiers: a module that is not
 *	  built in runs through allma.module_bindings at run time.
 *	- JSONPaths may be "$", "$." (Allma's "whole value") or start with "$."
 *	  or "$["; Allma itself requires "$.".  An input mapping source that has
 *	  the prefix but does not parse only draws a WARNING, since Allma checks
 *	  nothing more and real flows contain such sources.
 *	- onError.retries allows count 0..10 (Allma: 0..5), intervalSeconds in
 *	  (0, 86400] (Allma: integer 1..300) and backoffRate 1..10 (Allma: 1..5),
 *	  plus allma's maxDelaySeconds and jitterStrategy.  onError.catch is an
 *	  allma extension.
 *	- delay allows 0 ms; pollingConfig allows intervals in (0, 86400]
 *	  seconds and up to 10000 attempts (Allma: 5..3600 and 1..100).
 *	- A step with a "stepDefinitionId" inherits fields from a reusable
 *	  definition, so the fields its type requires are not required on it.
 *	- Step keys may use letters, digits, "_" and "-" only, because the
 *	  default output mapping writes to "$.steps_output.<key>".
 *	- The trigger markers EMAIL_START_POINT and SCHEDULE_START_POINT do not
 *	  need emailAddress / scheduleExpression (they do nothing when run).
 *
 * Everything is allocated in a private memory context that is deleted on
 * return; errors are formatted into ErrorContext by ereport.
 *
 * Copyright (c) 2026, the allma authors
 *
 * IDENTIFICATION
 *	  src/validate.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "fmgr.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/numeric.h"

#include "condition.h"
#include "llm.h"
#include "path.h"
#include "sqlstep.h"
#include "step.h"
#include "template.h"
#include "transform.h"
#include "validate.h"

PG_FUNCTION_INFO_V1(allma_validate_flow);

/* Limits of allma's own choosing (see the file header). */
#define MAX_ID_LENGTH				200
#define MAX_TRANSITIONS_LIMIT		1000000
#define MAX_RETRY_COUNT				10
#define MAX_RETRY_INTERVAL_SECONDS	86400.0
#define MAX_BACKOFF_RATE			10.0
#define MAX_DELAY_MS				86400000.0
#define MAX_WAIT_SECONDS			31536000.0
#define MAX_POLL_INTERVAL_SECONDS	86400.0
#define MAX_POLL_ATTEMPTS			10000
#define MAX_CONCURRENCY				1000000

/*
 * Allma's built-in DATA_TRANSFORMATION modules.  transform.c answers for
 * the ones allma implements; this list keeps the check right while it does
 * not (yet) know them all.
 */
static const char *const builtin_transforms[] = {
	"system/compose-object-from-input",
	"system/array-aggregator",
	"system/flatten-array",
	"system/generate-array",
	"system/date-time-calculator",
	"system/generate-uuid",
	"system/join-data",
	NULL
};

static const char *const http_methods[] = {
	"GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", NULL
};
static const char *const format_as_values[] = {
	"RAW", "JSON", "CUSTOM_STRING", NULL
};
static const char *const aggregation_strategies[] = {
	"COLLECT_ARRAY", "MERGE_OBJECTS", "SUM", "NONE", "CUSTOM_MODULE", NULL
};
static const char *const delay_positions[] = {"before", "after", NULL};
static const char *const jitter_strategies[] = {"FULL", "NONE", NULL};
static const char *const tool_choices[] = {"auto", "none", "required", NULL};
static const char *const sub_flow_modes[] = {"SYNC", "ASYNC", NULL};
static const char *const action_types[] = {
	"LOG_ONLY", "API_CALL", "SQS_SEND", "SNS_SEND", "CUSTOM_LAMBDA_INVOKE",
	"DATA_SAVE", NULL
};
static const char *const execute_on_statuses[] = {
	"COMPLETED", "FAILED", "ANY", NULL
};

/*
 * State of one validation: the steps map (to resolve references) and the
 * step being checked, which every message names.
 */
typedef struct Checker
{
	JsonbContainer *steps;		/* the definition's "steps" object */
	const char *step;			/* key of the step being checked, or NULL */
	bool		inherits;		/* step has a stepDefinitionId */
} Checker;

/* one member of an object (key set) or element of an array (key NULL) */
typedef struct Member
{
	char	   *key;
	JsonbValue	value;
} Member;


/* ---------------------------------------------------------------------
 * Small helpers: naming, iteration, errors
 * ---------------------------------------------------------------------
 */

/* "step "x" field "f"" or "flow field "f"": the subject of every message */
static char *
where(Checker *ck, const char *field)
{
	if (ck->step != NULL)
		return psprintf("step \"%s\" field \"%s\"", ck->step, field);
	return psprintf("flow field \"%s\"", field);
}

/* name of member "key" of the field "parent" (parent NULL: top level) */
static char *
member_name(const char *parent, const char *key)
{
	if (parent == NULL)
		return pstrdup(key);
	return psprintf("%s.%s", parent, key);
}

/* name of element i of the array field "parent" */
static char *
element_name(const char *parent, int i)
{
	return psprintf("%s[%d]", parent, i);
}

/* JSON type of a value as a noun phrase, for messages */
static const char *
type_name(JsonbValue *v)
{
	switch (v->type)
	{
		case jbvNull:
			return "null";
		case jbvString:
			return "a string";
		case jbvNumeric:
			return "a number";
		case jbvBool:
			return "a boolean";
		case jbvArray:
			return "an array";
		case jbvObject:
			return "an object";
		case jbvBinary:
			return JsonContainerIsObject(v->val.binary.data) ?
				"an object" : "an array";
		default:
			return "an unknown value";
	}
}

static bool
is_object(JsonbValue *v)
{
	return v->type == jbvBinary && JsonContainerIsObject(v->val.binary.data);
}

static bool
is_array(JsonbValue *v)
{
	return v->type == jbvBinary && JsonContainerIsArray(v->val.binary.data);
}

static char *
string_value(JsonbValue *v)
{
	Assert(v->type == jbvString);
	return pnstrdup(v->val.string.val, v->val.string.len);
}

/* the number of a numeric JsonbValue; +-Inf when out of float8 range */
static double
number_value(JsonbValue *v)
{
	Assert(v->type == jbvNumeric);
	return DatumGetFloat8(DirectFunctionCall1(numeric_float8_no_overflow,
											  NumericGetDatum(v->val.numeric)));
}

/*
 * members returns the members of an object or the elements of an array, in
 * storage order, with nested containers as jbvBinary values.
 */
static Member *
members(JsonbContainer *c, int *count)
{
	int			size = JsonContainerSize(c);
	Member	   *result = palloc0(sizeof(Member) * Max(size, 1));
	JsonbIterator *it = JsonbIteratorInit(c);
	JsonbValue	v;
	JsonbIteratorToken tok;
	int			n = 0;
	char	   *key = NULL;

	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (tok == WJB_KEY)
			key = string_value(&v);
		else if (tok == WJB_VALUE || tok == WJB_ELEM)
		{
			Assert(n < size);
			result[n].key = (tok == WJB_VALUE) ? key : NULL;
			result[n].value = v;
			n++;
		}
	}
	*count = n;
	return result;
}

/* looks up member "key" of object c; false when absent */
static bool
lookup(JsonbContainer *c, const char *key, JsonbValue *out)
{
	return getKeyJsonValueFromContainer(c, key, strlen(key), out) != NULL;
}

/* "a", "b" or "c": the allowed values of an enum, for messages */
static char *
enum_list(const char *const *allowed)
{
	StringInfoData buf;
	int			i;

	initStringInfo(&buf);
	for (i = 0; allowed[i] != NULL; i++)
	{
		if (i > 0)
			appendStringInfoString(&buf, allowed[i + 1] == NULL ? " or " : ", ");
		appendStringInfo(&buf, "\"%s\"", allowed[i]);
	}
	return buf.data;
}

static bool
in_list(const char *s, const char *const *allowed)
{
	int			i;

	for (i = 0; allowed[i] != NULL; i++)
	{
		if (strcmp(s, allowed[i]) == 0)
			return true;
	}
	return false;
}

static void error_missing(Checker *ck, const char *field,
						  const char *detail) pg_attribute_noreturn();
static void error_type(Checker *ck, const char *field, const char *expected,
					   JsonbValue *v) pg_attribute_noreturn();

static void
error_missing(Checker *ck, const char *field, const char *detail)
{
	ereport(ERROR,
			(errcode(ERRCODE_ALLMA_INVALID_DEFINITION),
			 errmsg("%s is required", where(ck, field)),
			 detail ? errdetail("%s", detail) : 0));
}

static void
error_type(Checker *ck, const char *field, const char *expected, JsonbValue *v)
{
	ereport(ERROR,
			(errcode(ERRCODE_ALLMA_INVALID_FIELD_TYPE),
			 errmsg("%s must be %s, not %s", where(ck, field), expected,
					type_name(v))));
}

/* raises when the string "value" of "field" is not one of "allowed" */
static void
check_enum(Checker *ck, const char *field, const char *value,
		   const char *const *allowed)
{
	if (!in_list(value, allowed))
		ereport(ERROR,
				(errcode(ERRCODE_ALLMA_INVALID_DEFINITION),
				 errmsg("%s must be one of %s", where(ck, field),
						enum_list(allowed)),
				 errdetail("The value is \"%s\".", value)));
}

/*
 * check_range raises "sqlstate" unless lo <= value <= hi (lo < value when
 * lo_exclusive).  hi may be INFINITY.
 */
static void
check_range(Checker *ck, const char *field, double value, double lo,
			bool lo_exclusive, double hi, int sqlstate)
{
	bool		ok;

	ok = !isinf(value) &&
		(lo_exclusive ? value > lo : value >= lo) && value <= hi;
	if (ok)
		return;
	if (isinf(hi))
		ereport(ERROR,
				(errcode(sqlstate),
				 lo_exclusive ?
				 errmsg("%s must be greater than %.15g", where(ck, field), lo) :
				 errmsg("%s must be at least %.15g", where(ck, field), lo),
				 errdetail("The value is %.15g.", value)));
	else
		ereport(ERROR,
				(errcode(sqlstate),
				 lo_exclusive ?
				 errmsg("%s must be greater than %.15g and at most %.15g",
						where(ck, field), lo, hi) :
				 errmsg("%s must be between %.15g and %.15g",
						where(ck, field), lo, hi),
				 errdetail("The value is %.15g.", value)));
}


/* ---------------------------------------------------------------------
 * Typed field access.  Each getter looks up "key" in obj, reports a
 * missing required field (LM100) or a wrong type (LM108), and returns
 * NULL / false when an optional field is absent.  "parent" is the name of
 * obj for messages (NULL for the step or flow itself).
 * ---------------------------------------------------------------------
 */

static char *
get_string(Checker *ck, JsonbContainer *obj, const char *parent,
		   const char *key, bool required)
{
	JsonbValue	v;

	if (!lookup(obj, key, &v))
	{
		if (required)
			error_missing(ck, member_name(parent, key), NULL);
		return NULL;
	}
	if (v.type != jbvString)
		error_type(ck, member_name(parent, key), "a string", &v);
	return string_value(&v);
}

/* like get_string, and an empty string is an error */
static char *
get_nonempty_string(Checker *ck, JsonbContainer *obj, const char *parent,
					const char *key, bool required)
{
	char	   *s = get_string(ck, obj, parent, key, required);

	if (s != NULL && s[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_ALLMA_INVALID_DEFINITION),
				 errmsg("%s must not be empty", where(ck, member_name(parent, key)))));
	return s;
}

static JsonbContainer *
get_object(Checker *ck, JsonbContainer *obj, const char *parent,
		   const char *key, bool required)
{
	JsonbValue	v;

	if (!lookup(obj, key, &v))
	{
		if (required)
			error_missing(ck, member_name(parent, key), NULL);
		return NULL;
	}
	if (!is_object(&v))
		error_type(ck, member_name(parent, key), "an object", &v);
	return v.val.binary.data;
}

static JsonbContainer *
get_array(Checker *ck, JsonbContainer *obj, const char *parent,
		  const char *key, bool required)
{
	JsonbValue	v;

	if (!lookup(obj, key, &v))
	{
		if (required)
			error_missing(ck, member_name(parent, key), NULL);
		return NULL;
	}
	if (!is_array(&v))
		error_type(ck, member_name(parent, key), "an array", &v);
	return v.val.binary.data;
}

static bool
get_bool(Checker *ck, JsonbContainer *obj, const char *parent,
		 const char *key, bool *out)
{
	JsonbValue	v;

	if (!lookup(obj, key, &v))
		return false;
	if (v.type != jbvBool)
		error_type(ck, member_name(parent, key), "a boolean", &v);
	if (out)
		*out = v.val.boolean;
	return true;
}

/*
 * get_number: an optional number; "integer" also rejects fractions (as
 * LM108: the type is "an integer").  Returns whether it was present.
 */
static bool
get_number(Checker *ck, JsonbContainer *obj, const char *parent,
		   const char *key, bool integer, double *out)
{
	JsonbValue	v;
	double		d;

	if (!lookup(obj, key, &v))
		return false;
	if (v.type != jbvNumeric)
		error_type(ck, member_name(parent, key),
				   integer ? "an integer" : "a number", &v);
	d = number_value(&v);
	if (integer && !isinf(d) && d != floor(d))
		ereport(ERROR,
				(errcode(ERRCODE_ALLMA_INVALID_FIELD_TYPE),
				 errmsg("%s must be an integer", where(ck, member_name(parent, key))),
				 errdetail("The value is %.15g.", d)));
	*out = d;
	return true;
}

/* an optional number that must lie in a range (see check_range) */
static void
check_number_field(Checker *ck, JsonbContainer *obj, const char *parent,
				   const char *key, bool integer, double lo, bool lo_exclusive,
				   double hi, int sqlstate)
{
	double		d;

	if (get_number(ck, obj, parent, key, integer, &d))
		check_range(ck, member_name(parent, key), d, lo, lo_exclusive, hi,
					sqlstate);
}

/* an optional string field whose value must be one of "allowed" */
static void
check_enum_field(Checker *ck, JsonbContainer *obj, const char *parent,
				 const char *key, bool required, const char *const *allowed)
{
	char	   *s = get_string(ck, obj, parent, key, required);

	if (s != NULL)
		check_enum(ck, member_name(parent, key), s, allowed);
}

/* an optional field that is a string or an array of strings */
static void
check_string_or_strings(Checker *ck, JsonbContainer *obj, const char *parent,
						const char *key, bool required)
{
	JsonbValue	v;
	char	   *field = member_name(parent, key);

	if (!lookup(obj, key, &v))
	{
		if (required)
			error_missing(ck, field, NULL);
		return;
	}
	if (is_array(&v))
	{
		int			n;
		int			i;
		Member	   *elems = members(v.val.binary.data, &n);

		for (i = 0; i < n; i++)
		{
			if (elems[i].value.type != jbvString)
				error_type(ck, element_name(field, i), "a string",
						   &elems[i].value);
		}
	}
	else if (v.type != jbvString)
		error_type(ck, field, "a string or an array of strings", &v);
}

/*
 * check_string_array: an array of strings; non_empty_items rejects "".
 * The array itself is given (already type-checked).
 */
static void
check_string_array(Checker *ck, JsonbContainer *arr, const char *field,
				   bool non_empty_items, int sqlstate)
{
	int			n;
	int			i;
	Member	   *elems = members(arr, &n);

	for (i = 0; i < n; i++)
	{
		if (elems[i].value.type != jbvString)
			error_type(ck, element_name(field, i), "a string", &elems[i].value);
		if (non_empty_items && elems[i].value.val.string.len == 0)
			ereport(ERROR,
					(errcode(sqlstate),
					 errmsg("%s must not be empty",
							where(ck, element_name(field, i)))));
	}
}


/* ---------------------------------------------------------------------
 * References, paths, conditions and templates
 * ---------------------------------------------------------------------
 */

/* raises LM102 when "target" is not a key of "steps" */
static void
check_step_ref(Checker *ck, const char *field, const char *target)
{
	JsonbValue	v;

	if (!lookup(ck->steps, target, &v))
		ereport(ERROR,
				(errcode(ERRCODE_ALLMA_DANGLING_REFERENCE),
				 errmsg("%s names unknown step \"%s\"", where(ck, field), target),
				 errhint("A step reference must be a key of \"steps\".")));
}

/* a required, non-empty string field naming an existing step */
static void
check_step_ref_field(Checker *ck, JsonbContainer *obj, const char *parent,
					 const char *key, bool required)
{
	char	   *target = get_nonempty_string(ck, obj, parent, key, required);

	if (target != NULL)
		check_step_ref(ck, member_name(parent, key), target);
}

/*
 * check_jsonpath raises LM103 unless "path" is a JSONPath Allma accepts
 * ("$", "$." or starting with "$." or "$[") and path.c can evaluate it.
 */
static void
check_jsonpath(Checker *ck, const char *field, const char *path)
{
	char	   *msg = NULL;

	if (strcmp(path, "$.") == 0)
		return;					/* Allma's "the whole value" */
	if (path[0] != '$' || (path[1] != '\0' && path[1] != '.' && path[1] != '['))
		ereport(ERROR,
				(errcode(ERRCODE_ALLMA_INVALID_PATH),
				 errmsg("%s has invalid JSONPath \"%s\"", where(ck, field), path),
				 errdetail("A JSONPath is \"$\" or starts with \"$.\" or \"$[\".")));
	if (!allma_path_check(path, &msg))
		ereport(ERROR,
				(errcode(ERRCODE_ALLMA_INVALID_PATH),
				 errmsg("%s has invalid JSONPath \"%s\"", where(ck, field), path),
				 msg ? errdetail("%s", msg) : 0));
}

/* LM103 unless "path" is a JSONPath made of keys and indexes only */
static void
check_settable_path(Checker *ck, const char *field, const char *path)
{
	char	   *msg = NULL;

	check_jsonpath(ck, field, path);
	if (strcmp(path, "$.") == 0)
		return;
	if (!allma_path_check_settable(path, &msg))
		ereport(ERROR,
				(errcode(ERRCODE_ALLMA_INVALID_PATH),
				 errmsg("%s has JSONPath \"%s\" that cannot be assigned to",
						where(ck, field), path),
				 msg ? errdetail("%s", msg) : 0));
}

/* LM103 unless "dotpath" is a dot path ("a.b[0].c") into a step input */
static void
check_dotpath(Checker *ck, const char *field, const char *dotpath)
{
	char	   *msg = NULL;

	if (dotpath[0] == '\0' || !allma_dotpath_check(dotpath, &msg))
		ereport(ERROR,
				(errcode(ERRCODE_ALLMA_INVALID_PATH),
				 errmsg("%s has invalid dot path \"%s\"", where(ck, field), dotpath),
				 msg ? errdetail("%s", msg) : 0));
}

/*
 * check_mapping_source: the source JSONPath of an input mapping (Allma's
 * StepInputMappingSchema values).  Allma checks only its "$." prefix, and
 * real flows hold sources such as "$.a | prepend: 'x'" that select nothing;
 * so a source that has the prefix but does not parse is stored with a
 * WARNING instead of an error.
 */
static void
check_mapping_source(Checker *ck, const char *field, const char *path)
{
	char	   *msg = NULL;

	if (strcmp(path, "$.") == 0)
		return;
	if (path[0] != '$' || (path[1] != '\0' && path[1] != '.' && path[1] != '['))
		check_jsonpath(ck, field, path);	/* raises */
	if (!allma_path_check(path, &msg))
		ereport(WARNING,
				(errcode(ERRCODE_ALLMA_INVALID_PATH),
				 errmsg("%s has JSONPath \"%s\" that selects nothing",
						where(ck, field), path),
				 msg ? errdetail("%s", msg) : 0,
				 errhint("Allma checks only that a mapping source starts with \"$.\", so the flow is accepted.")));
}

/* a string field holding a JSONPath */
static void
check_jsonpath_field(Checker *ck, JsonbContainer *obj, const char *parent,
					 const char *key, bool required)
{
	char	   *path = get_string(ck, obj, parent, key, required);

	if (path != NULL)
		check_jsonpath(ck, member_name(parent, key), path);
}

/* LM104 unless "cond" parses as a transition condition */
static void
check_condition(Checker *ck, const char *field, const char *cond)
{
	char	   *msg = NULL;

	if (!allma_condition_check(cond, &msg))
		ereport(ERROR,
				(errcode(ERRCODE_ALLMA_INVALID_CONDITION),
				 errmsg("%s has invalid condition \"%s\"", where(ck, field), cond),
				 msg ? errdetail("%s", msg) : 0));
}

static void
check_condition_field(Checker *ck, JsonbContainer *obj, const char *parent,
					  const char *key, bool required)
{
	char	   *cond = get_string(ck, obj, parent, key, required);

	if (cond != NULL)
		check_condition(ck, member_name(parent, key), cond);
}

/* LM105 when the string "s" holds "{{" markup that does not parse */
static void
check_template(Checker *ck, const char *field, const char *s)
{
	char	   *msg = NULL;

	if (!allma_template_has_markup(s))
		return;
	if (!allma_template_check(s, &msg))
		ereport(ERROR,
				(errcode(ERRCODE_ALLMA_INVALID_TEMPLATE),
				 errmsg("%s has invalid template", where(ck, field)),
				 msg ? errdetail("%s", msg) : 0));
}

/*
 * check_templates_in walks a value the way Allma's renderNestedTemplates
 * does (objects and arrays, strings rendered) and checks every string.
 */
static void
check_templates_in(Checker *ck, const char *field, JsonbValue *v)
{
	check_stack_depth();
	if (v->type == jbvString)
		check_template(ck, field, string_value(v));
	else if (v->type == jbvBinary)
	{
		bool		obj = JsonContainerIsObject(v->val.binary.data);
		int			n;
		int			i;
		Member	   *ms = members(v->val.binary.data, &n);

		for (i = 0; i < n; i++)
			check_templates_in(ck,
							   obj ? member_name(field, ms[i].key) :
							   element_name(field, i),
							   &ms[i].value);
	}
}

/* check_templates_in on member "key" of obj, when present */
static void
check_templates_field(Checker *ck, JsonbContainer *obj, const char *parent,
					  const char *key)
{
	JsonbValue	v;

	if (lookup(obj, key, &v))
		check_templates_in(ck, member_name(parent, key), &v);
}

/* a string field that Allma renders as a template */
static char *
get_template_string(Checker *ck, JsonbContainer *obj, const char *parent,
					const char *key, bool required)
{
	char	   *s = get_nonempty_string(ck, obj, parent, key, required);

	if (s != NULL)
		check_template(ck, member_name(parent, key), s);
	return s;
}


/* ---------------------------------------------------------------------
 * Mappings
 * ---------------------------------------------------------------------
 */

/*
 * check_input_mappings: {dotPath: JSONPath}.  Used for inputMappings,
 * branch inputMappings, inputMappingsToSubFlow and action payloadTemplate.
 */
static void
check_input_mappings(Checker *ck, JsonbContainer *obj, const char *parent,
					 const char *key)
{
	JsonbContainer *map = get_object(ck, obj, parent, key, false);
	char	   *field = member_name(parent, key);
	int			n;
	int			i;
	Member	   *ms;

	if (map == NULL)
		return;
	ms = members(map, &n);
	for (i = 0; i < n; i++)
	{
		char	   *entry = member_name(field, ms[i].key);

		check_dotpath(ck, field, ms[i].key);
		if (ms[i].value.type != jbvString)
			error_type(ck, entry, "a JSONPath string", &ms[i].value);
		check_mapping_source(ck, entry, string_value(&ms[i].value));
	}
}

/* outputMappings: {settable JSONPath: JSONPath} */
static void
check_output_mappings(Checker *ck, JsonbContainer *step)
{
	JsonbContainer *map = get_object(ck, step, NULL, "outputMappings", false);
	int			n;
	int			i;
	Member	   *ms;

	if (map == NULL)
		return;
	ms = members(map, &n);
	for (i = 0; i < n; i++)
	{
		char	   *entry = member_name("outputMappings", ms[i].key);

		check_settable_path(ck, "outputMappings", ms[i].key);
		if (ms[i].value.type != jbvString)
			error_type(ck, entry, "a JSONPath string", &ms[i].value);
		check_jsonpath(ck, entry, string_value(&ms[i].value));
	}
}

/* literals: {dotPath: any}, string values anywhere being templates */
static void
check_literals(Checker *ck, JsonbContainer *obj, const char *parent)
{
	JsonbContainer *map = get_object(ck, obj, parent, "literals", false);
	char	   *field = member_name(parent, "literals");
	int			n;
	int			i;
	Member	   *ms;

	if (map == NULL)
		return;
	ms = members(map, &n);
	for (i = 0; i < n; i++)
	{
		check_dotpath(ck, field, ms[i].key);
		check_templates_in(ck, member_name(field, ms[i].key), &ms[i].value);
	}
}

/* a record whose values are JSONPath strings (headers templates) */
static void
check_jsonpath_record(Checker *ck, JsonbContainer *obj, const char *parent,
					  const char *key)
{
	JsonbContainer *map = get_object(ck, obj, parent, key, false);
	char	   *field = member_name(parent, key);
	int			n;
	int			i;
	Member	   *ms;

	if (map == NULL)
		return;
	ms = members(map, &n);
	for (i = 0; i < n; i++)
	{
		char	   *entry = member_name(field, ms[i].key);

		if (ms[i].value.type != jbvString)
			error_type(ck, entry, "a JSONPath string", &ms[i].value);
		check_jsonpath(ck, entry, string_value(&ms[i].value));
	}
}

/* a record whose values are strings */
static void
check_string_record(Checker *ck, JsonbContainer *obj, const char *parent,
					const char *key)
{
	JsonbContainer *map = get_object(ck, obj, parent, key, false);
	char	   *field = member_name(parent, key);
	int			n;
	int			i;
	Member	   *ms;

	if (map == NULL)
		return;
	ms = members(map, &n);
	for (i = 0; i < n; i++)
	{
		if (ms[i].value.type != jbvString)
			error_type(ck, member_name(field, ms[i].key), "a string",
					   &ms[i].value);
	}
}

/*
 * check_context_mappings: a record of TemplateContextMappingItem
 * ({sourceJsonPath, formatAs, selectFields, itemTemplate, joinSeparator}),
 * as used by templateContextMappings, apiUrlTemplate.contextMappings and
 * requestBodyTemplate.
 */
static void
check_context_mappings(Checker *ck, JsonbContainer *obj, const char *parent,
					   const char *key)
{
	JsonbContainer *map = get_object(ck, obj, parent, key, false);
	char	   *field = member_name(parent, key);
	int			n;
	int			i;
	Member	   *ms;

	if (map == NULL)
		return;
	ms = members(map, &n);
	for (i = 0; i < n; i++)
	{
		char	   *entry = member_name(field, ms[i].key);
		JsonbContainer *item;
		JsonbContainer *fields;
		char	   *format_as;

		if (!is_object(&ms[i].value))
			error_type(ck, entry, "an object", &ms[i].value);
		item = ms[i].value.val.binary.data;
		check_jsonpath_field(ck, item, entry, "sourceJsonPath", true);
		format_as = get_string(ck, item, entry, "formatAs", false);
		if (format_as != NULL)
			check_enum(ck, member_name(entry, "formatAs"), format_as,
					   format_as_values);
		fields = get_array(ck, item, entry, "selectFields", false);
		if (fields != NULL)
			check_string_array(ck, fields, member_name(entry, "selectFields"),
							   false, ERRCODE_ALLMA_INVALID_DEFINITION);
		if (get_template_string(ck, item, entry, "itemTemplate", false) == NULL &&
			format_as != NULL && strcmp(format_as, "CUSTOM_STRING") == 0)
			error_missing(ck, member_name(entry, "itemTemplate"),
						  "formatAs \"CUSTOM_STRING\" renders each item with itemTemplate.");
		get_string(ck, item, entry, "joinSeparator", false);
	}
}


/* ---------------------------------------------------------------------
 * Common step fields
 * ---------------------------------------------------------------------
 */

/* transitions: [{condition, nextStepInstanceId, maxTransitions?}] */
static void
check_transitions(Checker *ck, JsonbContainer *step)
{
	JsonbContainer *arr = get_array(ck, step, NULL, "transitions", false);
	int			n;
	int			i;
	Member	   *elems;

	if (arr == NULL)
		return;
	elems = members(arr, &n);
	for (i = 0; i < n; i++)
	{
		char	   *field = element_name("transitions", i);
		JsonbContainer *t;

		if (!is_object(&elems[i].value))
			error_type(ck, field, "an object", &elems[i].value);
		t = elems[i].value.val.binary.data;
		check_condition_field(ck, t, field, "condition", true);
		check_step_ref_field(ck, t, field, "nextStepInstanceId", true);
		check_number_field(ck, t, field, "maxTransitions", true,
						   0, false, MAX_TRANSITIONS_LIMIT,
						   ERRCODE_ALLMA_INVALID_DEFINITION);
	}
}

/* onError.retries: allma's per-step retry policy */
static void
check_retries(Checker *ck, JsonbContainer *on_error)
{
	const char *parent = "onError.retries";
	JsonbContainer *r = get_object(ck, on_error, "onError", "retries", false);
	JsonbContainer *errs;
	char	   *jitter;

	if (r == NULL)
		return;
	check_number_field(ck, r, parent, "count", true,
					   0, false, MAX_RETRY_COUNT, ERRCODE_ALLMA_INVALID_RETRY);
	check_number_field(ck, r, parent, "intervalSeconds", false,
					   0, true, MAX_RETRY_INTERVAL_SECONDS,
					   ERRCODE_ALLMA_INVALID_RETRY);
	check_number_field(ck, r, parent, "backoffRate", false,
					   1, false, MAX_BACKOFF_RATE, ERRCODE_ALLMA_INVALID_RETRY);
	check_number_field(ck, r, parent, "maxDelaySeconds", false,
					   0, true, MAX_RETRY_INTERVAL_SECONDS,
					   ERRCODE_ALLMA_INVALID_RETRY);
	jitter = get_string(ck, r, parent, "jitterStrategy", false);
	if (jitter != NULL && !in_list(jitter, jitter_strategies))
		ereport(ERROR,
				(errcode(ERRCODE_ALLMA_INVALID_RETRY),
				 errmsg("%s must be one of %s",
						where(ck, "onError.retries.jitterStrategy"),
						enum_list(jitter_strategies)),
				 errdetail("The value is \"%s\".", jitter)));
	errs = get_array(ck, r, parent, "errorEquals", false);
	if (errs != NULL)
		check_string_array(ck, errs, "onError.retries.errorEquals", true,
						   ERRCODE_ALLMA_INVALID_RETRY);
}

/* onError.retryOnContentError: retries of ContentBasedRetryableError */
static void
check_content_retries(Checker *ck, JsonbContainer *on_error)
{
	const char *parent = "onError.retryOnContentError";
	JsonbContainer *r = get_object(ck, on_error, "onError",
								   "retryOnContentError", false);

	if (r == NULL)
		return;
	check_number_field(ck, r, parent, "count", true,
					   1, false, MAX_RETRY_COUNT, ERRCODE_ALLMA_INVALID_RETRY);
	check_number_field(ck, r, parent, "intervalSeconds", false,
					   0, false, MAX_RETRY_INTERVAL_SECONDS,
					   ERRCODE_ALLMA_INVALID_RETRY);
	check_number_field(ck, r, parent, "backoffRate", false,
					   1, false, MAX_BACKOFF_RATE, ERRCODE_ALLMA_INVALID_RETRY);
}

/* onError.catch: [{errorEquals, nextStepInstanceId, resultPath?}] */
static void
check_catch(Checker *ck, JsonbContainer *on_error)
{
	JsonbContainer *arr = get_array(ck, on_error, "onError", "catch", false);
	int			n;
	int			i;
	Member	   *elems;

	if (arr == NULL)
		return;
	elems = members(arr, &n);
	for (i = 0; i < n; i++)
	{
		char	   *field = element_name("onError.catch", i);
		JsonbContainer *c;
		JsonbContainer *errs;
		char	   *result_path;

		if (!is_object(&elems[i].value))
			error_type(ck, field, "an object", &elems[i].value);
		c = elems[i].value.val.binary.data;
		errs = get_array(ck, c, field, "errorEquals", true);
		if (JsonContainerSize(errs) == 0)
			ereport(ERROR,
					(errcode(ERRCODE_ALLMA_INVALID_DEFINITION),
					 errmsg("%s must not be empty",
							where(ck, member_name(field, "errorEquals"))),
					 errhint("Use [\"States.ALL\"] to catch every error.")));
		check_string_array(ck, errs, member_name(field, "errorEquals"), true,
						   ERRCODE_ALLMA_INVALID_DEFINITION);
		check_step_ref_field(ck, c, field, "nextStepInstanceId", true);
		result_path = get_string(ck, c, field, "resultPath", false);
		if (result_path != NULL)
			check_settable_path(ck, member_name(field, "resultPath"),
								result_path);
	}
}

static void
check_on_error(Checker *ck, JsonbContainer *step)
{
	JsonbContainer *on_error = get_object(ck, step, NULL, "onError", false);

	if (on_error == NULL)
		return;
	check_step_ref_field(ck, on_error, "onError", "fallbackStepInstanceId", false);
	get_bool(ck, on_error, "onError", "continueOnFailure", NULL);
	check_retries(ck, on_error);
	check_content_retries(ck, on_error);
	check_catch(ck, on_error);
}

/* delay: {milliseconds} or {delayFrom, delayTo}, position before|after */
static void
check_delay(Checker *ck, JsonbContainer *step)
{
	JsonbContainer *d = get_object(ck, step, NULL, "delay", false);
	double		ms;
	double		from;
	double		to;
	bool		has_ms;
	bool		has_from;
	bool		has_to;

	if (d == NULL)
		return;
	has_ms = get_number(ck, d, "delay", "milliseconds", true, &ms);
	if (has_ms)
		check_range(ck, "delay.milliseconds", ms, 0, false, MAX_DELAY_MS,
					ERRCODE_ALLMA_INVALID_DEFINITION);
	has_from = get_number(ck, d, "delay", "delayFrom", true, &from);
	if (has_from)
		check_range(ck, "delay.delayFrom", from, 0, false, MAX_DELAY_MS,
					ERRCODE_ALLMA_INVALID_DEFINITION);
	has_to = get_number(ck, d, "delay", "delayTo", true, &to);
	if (has_to)
		check_range(ck, "delay.delayTo", to, 0, false, MAX_DELAY_MS,
					ERRCODE_ALLMA_INVALID_DEFINITION);
	if (has_ms && (has_from || has_to))
		ereport(ERROR,
				(errcode(ERRCODE_ALLMA_INVALID_DEFINITION),
				 errmsg("%s cannot be combined with delayFrom or delayTo",
						where(ck, "delay.milliseconds"))));
	if (!has_ms && !(has_from && has_to))
		ereport(ERROR,
				(errcode(ERRCODE_ALLMA_INVALID_DEFINITION),
				 errmsg("%s needs milliseconds, or both delayFrom and delayTo",
						where(ck, "delay"))));
	if (has_from && from > to)
		ereport(ERROR,
				(errcode(ERRCODE_ALLMA_INVALID_DEFINITION),
				 errmsg("%s must not be greater than delayTo",
						where(ck, "delay.delayFrom")),
				 errdetail("delayFrom is %.15g and delayTo is %.15g.", from, to)));
	check_enum_field(ck, d, "delay", "position", false, delay_positions);
}

/* step fields read by the engine that are not specific to a type */
static void
check_misc_fields(Checker *ck, JsonbContainer *step)
{
	bool		disable = false;
	bool		force = false;
	JsonbContainer *obj;

	get_bool(ck, step, NULL, "disableS3Offload", &disable);
	get_bool(ck, step, NULL, "forceS3Offload", &force);
	if (disable && force)
		ereport(ERROR,
				(errcode(ERRCODE_ALLMA_INVALID_DEFINITION),
				 errmsg("step \"%s\" sets both disableS3Offload and forceS3Offload",
						ck->step)));

	obj = get_object(ck, step, NULL, "checkpoint", false);
	if (obj != NULL)
	{
		double		order;

		get_nonempty_string(ck, obj, "checkpoint", "id", true);
		get_string(ck, obj, "checkpoint", "label", false);
		get_number(ck, obj, "checkpoint", "order", false, &order);
	}

	obj = get_object(ck, step, NULL, "outputValidation", false);
	if (obj != NULL)
	{
		JsonbContainer *req = get_array(ck, obj, "outputValidation",
										"requiredFields", false);

		if (req != NULL)
		{
			int			n;
			int			i;
			Member	   *elems = members(req, &n);

			for (i = 0; i < n; i++)
			{
				char	   *field = element_name("outputValidation.requiredFields", i);

				if (elems[i].value.type != jbvString)
					error_type(ck, field, "a JSONPath string", &elems[i].value);
				check_jsonpath(ck, field, string_value(&elems[i].value));
			}
		}
	}

	obj = get_object(ck, step, NULL, "securityValidatorConfig", false);
	if (obj != NULL)
	{
		JsonbContainer *strs = get_array(ck, obj, "securityValidatorConfig",
										 "forbiddenStrings", false);
		JsonbContainer *sem;

		if (strs != NULL)
			check_string_array(ck, strs,
							   "securityValidatorConfig.forbiddenStrings",
							   false, ERRCODE_ALLMA_INVALID_DEFINITION);
		sem = get_object(ck, obj, "securityValidatorConfig", "semanticCheck",
						 false);
		if (sem != NULL)
			check_number_field(ck, sem, "securityValidatorConfig.semanticCheck",
							   "similarityThreshold", false, 0.8, false, 1.0,
							   ERRCODE_ALLMA_INVALID_DEFINITION);
	}
}


/* ---------------------------------------------------------------------
 * Modules
 * ---------------------------------------------------------------------
 */

static bool
is_builtin_transform(const char *module)
{
	return allma_transform_exists(module) || in_list(module, builtin_transforms);
}

/*
 * check_sql_config: system/sql-query and system/sql-execute run
 * customConfig.sql with customConfig.parameters; parameters that are
 * strings starting with "$" are JSONPaths into the context.
 */
static void
check_sql_config(Checker *ck, JsonbContainer *step, const char *module)
{
	JsonbContainer *config = get_object(ck, step, NULL, "customConfig", false);
	JsonbContainer *params;
	char	   *detail = psprintf("Module \"%s\" runs the SQL statement in customConfig.sql.",
								  module);

	if (config == NULL || get_string(ck, config, "customConfig", "sql", false) == NULL)
		error_missing(ck, "customConfig.sql", detail);
	get_nonempty_string(ck, config, "customConfig", "sql", true);
	params = get_array(ck, config, "customConfig", "parameters", false);
	if (params != NULL)
	{
		int			n;
		int			i;
		Member	   *elems = members(params, &n);

		for (i = 0; i < n; i++)
		{
			if (elems[i].value.type == jbvString &&
				elems[i].value.val.string.len > 0 &&
				elems[i].value.val.string.val[0] == '$')
				check_jsonpath(ck, element_name("customConfig.parameters", i),
							   string_value(&elems[i].value));
		}
	}
}

/*
 * check_module applies the moduleIdentifier rules of the step's type
 * (its row in step.c's table) and checks the configuration of the modules allma
 * knows the shape of.
 */
static void
check_module(Checker *ck, JsonbContainer *step, const AllmaStepType *info)
{
	char	   *module = get_string(ck, step, NULL, "moduleIdentifier", false);

	if (module != NULL && module[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_ALLMA_INVALID_DEFINITION),
				 errmsg("%s must not be empty", where(ck, "moduleIdentifier"))));

	switch (info->module_rule)
	{
		case ALLMA_MODULE_NONE:
		case ALLMA_MODULE_FIXED:
			if (module != NULL &&
				(info->own_module == NULL || strcmp(module, info->own_module) != 0))
			{
				if (info->own_module == NULL)
					ereport(ERROR,
							(errcode(ERRCODE_ALLMA_UNKNOWN_MODULE),
							 errmsg("%s names module \"%s\", but steps of type %s run no module",
									where(ck, "moduleIdentifier"), module,
									info->name)));
				else
					ereport(ERROR,
							(errcode(ERRCODE_ALLMA_UNKNOWN_MODULE),
							 errmsg("%s names module \"%s\", but steps of type %s run \"%s\"",
									where(ck, "moduleIdentifier"), module,
									info->name, info->own_module),
							 errhint("Remove moduleIdentifier or set it to \"%s\".",
									 info->own_module)));
			}
			break;
		case ALLMA_MODULE_REQUIRED:
			if (module == NULL && !ck->inherits)
				error_missing(ck, "moduleIdentifier",
							  psprintf("Steps of type %s name the module they run.",
									   info->name));
			break;
		case ALLMA_MODULE_OPTIONAL:
			break;
	}

	if (module == NULL)
		return;
	if (is_builtin_transform(module) &&
		strcmp(info->name, "DATA_TRANSFORMATION") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_ALLMA_UNKNOWN_MODULE),
				 errmsg("%s names module \"%s\", which runs only in steps of type DATA_TRANSFORMATION",
						where(ck, "moduleIdentifier"), module),
				 errdetail("The step's type is %s.", info->name)));
	if (strcmp(module, ALLMA_MODULE_SQL_QUERY) == 0 ||
		strcmp(module, ALLMA_MODULE_SQL_EXECUTE) == 0)
		check_sql_config(ck, step, module);
}


/* ---------------------------------------------------------------------
 * Step types
 * ---------------------------------------------------------------------
 */

/* CUSTOM_LAMBDA_INVOKE: a Lambda ARN template or a bound module */
static void
check_custom_lambda(Checker *ck, JsonbContainer *step)
{
	char	   *arn = get_template_string(ck, step, NULL,
										  "lambdaFunctionArnTemplate", false);
	JsonbValue	v;

	if (arn == NULL && !ck->inherits && !lookup(step, "moduleIdentifier", &v))
		error_missing(ck, "lambdaFunctionArnTemplate",
					  "Steps of type CUSTOM_LAMBDA_INVOKE need lambdaFunctionArnTemplate or moduleIdentifier.");
	check_string_record(ck, step, NULL, "payloadTemplate");
}

/* LLM inferenceParameters (Allma's LlmParametersSchema) */
static void
check_inference_parameters(Checker *ck, JsonbContainer *obj, const char *parent)
{
	JsonbContainer *p = get_object(ck, obj, parent, "inferenceParameters", false);
	char	   *field = member_name(parent, "inferenceParameters");
	double		seed;

	if (p == NULL)
		return;
	check_number_field(ck, p, field, "temperature", false, 0, false, 2,
					   ERRCODE_ALLMA_INVALID_DEFINITION);
	check_number_field(ck, p, field, "maxOutputTokens", true, 0, true, INFINITY,
					   ERRCODE_ALLMA_INVALID_DEFINITION);
	check_number_field(ck, p, field, "topP", false, 0, false, 1,
					   ERRCODE_ALLMA_INVALID_DEFINITION);
	check_number_field(ck, p, field, "topK", true, 0, true, INFINITY,
					   ERRCODE_ALLMA_INVALID_DEFINITION);
	get_number(ck, p, field, "seed", true, &seed);
}

/* llmProvider: a provider name or a template that renders to one */
static void
check_llm_provider(Checker *ck, JsonbContainer *obj, const char *parent,
				   bool required)
{
	char	   *provider = get_string(ck, obj, parent, "llmProvider", required);

	if (provider == NULL)
		return;
	if (allma_template_has_markup(provider))
		check_template(ck, member_name(parent, "llmProvider"), provider);
	else
		check_enum(ck, member_name(parent, "llmProvider"), provider,
				   allma_llm_provider_names());
}

/* tools, toolsPath and toolChoice of an LLM step or fallback */
static void
check_llm_tools(Checker *ck, JsonbContainer *obj, const char *parent)
{
	JsonbContainer *tools = get_array(ck, obj, parent, "tools", false);
	JsonbValue	choice;

	if (tools != NULL)
	{
		int			n;
		int			i;
		Member	   *elems = members(tools, &n);

		for (i = 0; i < n; i++)
		{
			char	   *field = element_name(member_name(parent, "tools"), i);

			if (!is_object(&elems[i].value))
				error_type(ck, field, "an object", &elems[i].value);
			get_nonempty_string(ck, elems[i].value.val.binary.data, field,
								"type", true);
		}
	}
	check_jsonpath_field(ck, obj, parent, "toolsPath", false);
	if (lookup(obj, "toolChoice", &choice))
	{
		char	   *field = member_name(parent, "toolChoice");

		if (choice.type == jbvString)
			check_enum(ck, field, string_value(&choice), tool_choices);
		else if (is_object(&choice))
			get_nonempty_string(ck, choice.val.binary.data, field, "name", true);
		else
			error_type(ck, field, "a string or an object", &choice);
	}
}

static void
check_llm_invocation(Checker *ck, JsonbContainer *step)
{
	JsonbContainer *arr;
	JsonbContainer *config;

	check_llm_provider(ck, step, NULL, !ck->inherits);
	get_template_string(ck, step, NULL, "modelId", !ck->inherits);
	get_nonempty_string(ck, step, NULL, "promptTemplateId", false);
	get_string(ck, step, NULL, "directPrompt", false);
	check_context_mappings(ck, step, NULL, "templateContextMappings");
	check_inference_parameters(ck, step, NULL);
	check_llm_tools(ck, step, NULL);

	config = get_object(ck, step, NULL, "customConfig", false);
	if (config != NULL)
		get_bool(ck, config, "customConfig", "jsonOutputMode", NULL);

	arr = get_array(ck, step, NULL, "fallbacks", false);
	if (arr != NULL)
	{
		int			n;
		int			i;
		Member	   *elems = members(arr, &n);

		for (i = 0; i < n; i++)
		{
			char	   *field = element_name("fallbacks", i);
			JsonbContainer *fb;

			if (!is_object(&elems[i].value))
				error_type(ck, field, "an object", &elems[i].value);
			fb = elems[i].value.val.binary.data;
			check_llm_provider(ck, fb, field, true);
			get_template_string(ck, fb, field, "modelId", true);
			check_inference_parameters(ck, fb, field);
			check_llm_tools(ck, fb, field);
			if (get_object(ck, fb, field, "customConfig", false) != NULL)
				check_templates_field(ck, fb, field, "customConfig");
		}
	}

	arr = get_array(ck, step, NULL, "mediaAttachments", false);
	if (arr != NULL)
	{
		int			n;
		int			i;
		Member	   *elems = members(arr, &n);

		for (i = 0; i < n; i++)
		{
			char	   *field = element_name("mediaAttachments", i);
			JsonbContainer *m;
			int			sources = 0;
			JsonbValue	v;

			if (!is_object(&elems[i].value))
				error_type(ck, field, "an object", &elems[i].value);
			m = elems[i].value.val.binary.data;
			sources += lookup(m, "s3Pointer", &v) ? 1 : 0;
			sources += lookup(m, "url", &v) ? 1 : 0;
			sources += lookup(m, "base64", &v) ? 1 : 0;
			if (sources != 1)
				ereport(ERROR,
						(errcode(ERRCODE_ALLMA_INVALID_DEFINITION),
						 errmsg("%s must have exactly one of s3Pointer, url and base64",
								where(ck, field)),
						 errdetail("It has %d of them.", sources)));
			get_string(ck, m, field, "url", false);
			get_string(ck, m, field, "base64", false);
			get_string(ck, m, field, "mimeType", false);
			check_templates_in(ck, field, &elems[i].value);
		}
	}
	check_jsonpath_field(ck, step, NULL, "mediaAttachmentsPath", false);
}

/*
 * check_api_call_definition: the HTTP call of API_CALL (fields on the step)
 * and of POLL_EXTERNAL_API (fields in apiCallDefinition).
 */
static void
check_api_call_definition(Checker *ck, JsonbContainer *obj, const char *parent,
						  bool required)
{
	JsonbContainer *url = get_object(ck, obj, parent, "apiUrlTemplate", required);

	if (url != NULL)
	{
		char	   *field = member_name(parent, "apiUrlTemplate");

		get_template_string(ck, url, field, "template", true);
		check_context_mappings(ck, url, field, "contextMappings");
	}
	check_enum_field(ck, obj, parent, "apiHttpMethod", required, http_methods);
	check_jsonpath_record(ck, obj, parent, "apiHeadersTemplate");
	check_string_record(ck, obj, parent, "apiStaticHeaders");
	check_context_mappings(ck, obj, parent, "requestBodyTemplate");
}

static void
check_api_call(Checker *ck, JsonbContainer *step)
{
	JsonbContainer *config;

	check_api_call_definition(ck, step, NULL, !ck->inherits);
	config = get_object(ck, step, NULL, "customConfig", false);
	if (config != NULL)
	{
		check_number_field(ck, config, "customConfig", "timeoutMs", true,
						   0, true, INFINITY, ERRCODE_ALLMA_INVALID_DEFINITION);
		check_jsonpath_field(ck, config, "customConfig", "requestBodyPath", false);
	}
}

static void
check_poll(Checker *ck, JsonbContainer *step)
{
	JsonbContainer *def;
	JsonbContainer *polling;
	JsonbContainer *exits;

	def = get_object(ck, step, NULL, "apiCallDefinition", !ck->inherits);
	if (def != NULL)
		check_api_call_definition(ck, def, "apiCallDefinition", true);

	polling = get_object(ck, step, NULL, "pollingConfig", !ck->inherits);
	if (polling != NULL)
	{
		double		d;

		if (!get_number(ck, polling, "pollingConfig", "intervalSeconds", false, &d))
			error_missing(ck, "pollingConfig.intervalSeconds", NULL);
		check_range(ck, "pollingConfig.intervalSeconds", d, 0, true,
					MAX_POLL_INTERVAL_SECONDS, ERRCODE_ALLMA_INVALID_DEFINITION);
		if (!get_number(ck, polling, "pollingConfig", "maxAttempts", true, &d))
			error_missing(ck, "pollingConfig.maxAttempts", NULL);
		check_range(ck, "pollingConfig.maxAttempts", d, 1, false,
					MAX_POLL_ATTEMPTS, ERRCODE_ALLMA_INVALID_DEFINITION);
	}

	exits = get_object(ck, step, NULL, "exitConditions", !ck->inherits);
	if (exits != NULL)
	{
		check_condition_field(ck, exits, "exitConditions", "successCondition", true);
		check_condition_field(ck, exits, "exitConditions", "failureCondition", false);
	}
}

static void
check_wait(Checker *ck, JsonbContainer *step)
{
	JsonbValue	v;

	get_template_string(ck, step, NULL, "correlationKeyTemplate", !ck->inherits);
	check_number_field(ck, step, NULL, "maxWaitTimeSeconds", false,
					   0, true, MAX_WAIT_SECONDS, ERRCODE_ALLMA_INVALID_DEFINITION);
	if (lookup(step, "promptUserMessageTemplate", &v))
	{
		if (v.type != jbvString && !is_object(&v))
			error_type(ck, "promptUserMessageTemplate", "a string or an object", &v);
		check_templates_in(ck, "promptUserMessageTemplate", &v);
	}
	get_string(ck, step, NULL, "messageSenderModuleIdentifier", false);
}

/* EMAIL: the address, subject and body fields are rendered templates */
static void
check_email(Checker *ck, JsonbContainer *step)
{
	static const char *const rendered[] = {
		"from", "fromName", "to", "cc", "bcc", "replyTo", "subject", "body",
		"customHeaders", "attachments", "attachmentsPath", NULL
	};
	JsonbValue	v;
	JsonbContainer *attachments;
	int			i;

	get_string(ck, step, NULL, "from", !ck->inherits);
	get_string(ck, step, NULL, "fromName", false);
	check_string_or_strings(ck, step, NULL, "to", !ck->inherits);
	check_string_or_strings(ck, step, NULL, "cc", false);
	check_string_or_strings(ck, step, NULL, "bcc", false);
	check_string_or_strings(ck, step, NULL, "replyTo", false);
	get_string(ck, step, NULL, "subject", !ck->inherits);
	get_string(ck, step, NULL, "body", !ck->inherits);
	if (lookup(step, "customHeaders", &v) && v.type != jbvString &&
		!is_array(&v) && !is_object(&v))
		error_type(ck, "customHeaders", "an array, an object or a string", &v);

	attachments = get_array(ck, step, NULL, "attachments", false);
	if (attachments != NULL)
	{
		int			n;
		Member	   *elems = members(attachments, &n);

		if (lookup(step, "attachmentsPath", &v))
			ereport(ERROR,
					(errcode(ERRCODE_ALLMA_INVALID_DEFINITION),
					 errmsg("step \"%s\" sets both attachments and attachmentsPath",
							ck->step)));
		for (i = 0; i < n; i++)
		{
			char	   *field = element_name("attachments", i);
			JsonbContainer *a;
			JsonbValue	ptr;

			if (!is_object(&elems[i].value))
				error_type(ck, field, "an object", &elems[i].value);
			a = elems[i].value.val.binary.data;
			get_nonempty_string(ck, a, field, "filename", true);
			/* Allma's s3Pointer, or allma's filePointer (FILE_DOWNLOAD's output) */
			if (lookup(a, "filePointer", &ptr))
			{
				if (ptr.type != jbvString && !is_object(&ptr))
					error_type(ck, member_name(field, "filePointer"),
							   "an object or a string", &ptr);
				continue;
			}
			if (!lookup(a, "s3Pointer", &ptr))
				error_missing(ck, member_name(field, "filePointer"),
							  "An attachment names a file stored by FILE_DOWNLOAD: {\"filePointer\": {\"fileId\": ...}}.");
			if (ptr.type != jbvString && !is_object(&ptr))
				error_type(ck, member_name(field, "s3Pointer"),
						   "an object or a string", &ptr);
		}
	}
	get_string(ck, step, NULL, "attachmentsPath", false);

	for (i = 0; rendered[i] != NULL; i++)
		check_templates_field(ck, step, NULL, rendered[i]);
}

/*
 * The start points are trigger markers that do nothing when run, so unlike
 * Allma we do not require their trigger fields.
 */
static void
check_email_start_point(Checker *ck, JsonbContainer *step)
{
	get_template_string(ck, step, NULL, "emailAddress", false);
	get_string(ck, step, NULL, "keyword", false);
	get_string(ck, step, NULL, "triggerMessagePattern", false);
}

static void
check_schedule_start_point(Checker *ck, JsonbContainer *step)
{
	get_template_string(ck, step, NULL, "scheduleExpression", false);
	get_string(ck, step, NULL, "timezone", false);
	get_bool(ck, step, NULL, "enabled", NULL);
	if (get_object(ck, step, NULL, "payloadTemplate", false) != NULL)
		check_templates_field(ck, step, NULL, "payloadTemplate");
}

static void
check_file_download(Checker *ck, JsonbContainer *step)
{
	JsonbContainer *config;

	get_template_string(ck, step, NULL, "sourceUrlTemplate", !ck->inherits);
	check_enum_field(ck, step, NULL, "method", false, http_methods);
	check_jsonpath_record(ck, step, NULL, "headersTemplate");
	get_template_string(ck, step, NULL, "destinationBucket", false);
	get_template_string(ck, step, NULL, "destinationKeyTemplate", false);
	config = get_object(ck, step, NULL, "customConfig", false);
	if (config != NULL)
	{
		check_number_field(ck, config, "customConfig", "timeoutMs", true,
						   0, true, INFINITY, ERRCODE_ALLMA_INVALID_DEFINITION);
		get_bool(ck, config, "customConfig", "verifySsl", NULL);
	}
}

/* flowVersion / subFlowVersion: "LATEST_PUBLISHED", a template or a number */
static void
check_flow_version(Checker *ck, JsonbContainer *step, const char *key)
{
	JsonbValue	v;

	if (!lookup(step, key, &v))
		return;
	if (v.type == jbvString)
		check_template(ck, key, string_value(&v));
	else if (v.type == jbvNumeric)
		check_number_field(ck, step, NULL, key, true, 0, true, INFINITY,
						   ERRCODE_ALLMA_INVALID_DEFINITION);
	else
		error_type(ck, key, "a string or a number", &v);
}

static void
check_start_flow_execution(Checker *ck, JsonbContainer *step)
{
	get_template_string(ck, step, NULL, "flowDefinitionId", false);
	check_flow_version(ck, step, "flowVersion");
}

static void
check_start_sub_flow(Checker *ck, JsonbContainer *step)
{
	get_nonempty_string(ck, step, NULL, "subFlowDefinitionId", !ck->inherits);
	check_flow_version(ck, step, "subFlowVersion");
	check_enum_field(ck, step, NULL, "subFlowExecutionMode", false,
					 sub_flow_modes);
	check_input_mappings(ck, step, NULL, "inputMappingsToSubFlow");
}

static void
check_mcp_call(Checker *ck, JsonbContainer *step)
{
	JsonbContainer *config;

	get_nonempty_string(ck, step, NULL, "mcpConnectionId", !ck->inherits);
	get_nonempty_string(ck, step, NULL, "toolName", !ck->inherits);
	config = get_object(ck, step, NULL, "customConfig", false);
	if (config != NULL)
		check_number_field(ck, config, "customConfig", "timeoutMs", true,
						   0, true, INFINITY, ERRCODE_ALLMA_INVALID_DEFINITION);
}

static void
check_sqs_send(Checker *ck, JsonbContainer *step)
{
	get_template_string(ck, step, NULL, "queueUrl", false);
	if (get_object(ck, step, NULL, "payload", false) != NULL)
		check_templates_field(ck, step, NULL, "payload");
	get_template_string(ck, step, NULL, "messageGroupId", false);
	get_template_string(ck, step, NULL, "messageDeduplicationId", false);
}

static void
check_sns_publish(Checker *ck, JsonbContainer *step)
{
	get_template_string(ck, step, NULL, "topicArn", false);
	if (get_object(ck, step, NULL, "payload", false) != NULL)
		check_templates_field(ck, step, NULL, "payload");
	if (get_object(ck, step, NULL, "messageAttributes", false) != NULL)
		check_templates_field(ck, step, NULL, "messageAttributes");
}

/* aggregationConfig of a PARALLEL_FORK_MANAGER */
static void
check_aggregation(Checker *ck, JsonbContainer *step)
{
	const char *parent = "aggregationConfig";
	JsonbContainer *agg = get_object(ck, step, NULL, parent, false);
	char	   *strategy;
	char	   *custom;

	if (agg == NULL)
		return;
	strategy = get_string(ck, agg, parent, "strategy", false);
	if (strategy != NULL)
		check_enum(ck, "aggregationConfig.strategy", strategy,
				   aggregation_strategies);
	check_jsonpath_field(ck, agg, parent, "dataPath", false);
	custom = get_nonempty_string(ck, agg, parent, "customModuleIdentifier", false);
	if (strategy != NULL && strcmp(strategy, "CUSTOM_MODULE") == 0 && custom == NULL)
		error_missing(ck, "aggregationConfig.customModuleIdentifier",
					  "Strategy \"CUSTOM_MODULE\" names the module that aggregates.");
	get_bool(ck, agg, parent, "failOnBranchError", NULL);
	check_number_field(ck, agg, parent, "maxConcurrency", true,
					   0, false, MAX_CONCURRENCY, ERRCODE_ALLMA_INVALID_DEFINITION);
	check_number_field(ck, agg, parent, "toleratedFailurePercentage", false,
					   0, false, 100, ERRCODE_ALLMA_INVALID_DEFINITION);
	check_number_field(ck, agg, parent, "toleratedFailureCount", true,
					   0, false, INFINITY, ERRCODE_ALLMA_INVALID_DEFINITION);
}

static void
check_parallel(Checker *ck, JsonbContainer *step)
{
	JsonbContainer *branches;

	check_jsonpath_field(ck, step, NULL, "itemsPath", false);
	branches = get_array(ck, step, NULL, "parallelBranches", false);
	if (branches != NULL)
	{
		int			n;
		int			i;
		int			j;
		Member	   *elems = members(branches, &n);
		char	  **ids = palloc0(sizeof(char *) * Max(n, 1));

		for (i = 0; i < n; i++)
		{
			char	   *field = element_name("parallelBranches", i);
			JsonbContainer *b;
			JsonbValue	v;

			if (!is_object(&elems[i].value))
				error_type(ck, field, "an object", &elems[i].value);
			b = elems[i].value.val.binary.data;
			ids[i] = get_nonempty_string(ck, b, field, "branchId", true);
			for (j = 0; j < i; j++)
			{
				if (strcmp(ids[i], ids[j]) == 0)
					ereport(ERROR,
							(errcode(ERRCODE_ALLMA_INVALID_DEFINITION),
							 errmsg("%s repeats branch id \"%s\"",
									where(ck, member_name(field, "branchId")),
									ids[i]),
							 errdetail("parallelBranches[%d] has the same branchId.", j)));
			}
			if (!lookup(b, "stepInstanceId", &v))
				ereport(ERROR,
						(errcode(ERRCODE_ALLMA_INVALID_DEFINITION),
						 errmsg("%s is required",
								where(ck, member_name(field, "stepInstanceId"))),
						 lookup(b, "subFlowDefinitionId", &v) ?
						 errhint("Inline sub-flow branches do not run; start the sub-flow from a START_FLOW_EXECUTION step in the branch.") : 0));
			check_step_ref_field(ck, b, field, "stepInstanceId", true);
			check_condition_field(ck, b, field, "condition", false);
			get_string(ck, b, field, "icon", false);
			check_input_mappings(ck, b, field, "inputMappings");
			check_literals(ck, b, field);
		}
	}
	check_aggregation(ck, step);
}


/* ---------------------------------------------------------------------
 * Steps and the flow
 * ---------------------------------------------------------------------
 */

/*
 * check_id_chars raises LM100 when "id" is empty, too long or has a
 * character outside [A-Za-z0-9_-] and "extra"; "what" names the id in
 * messages and "allowed" lists the characters in words.
 */
static void
check_id_chars(const char *what, const char *id, const char *extra,
			   const char *allowed)
{
	const char *p;
	size_t		len = strlen(id);

	if (len == 0 || len > MAX_ID_LENGTH)
		ereport(ERROR,
				(errcode(ERRCODE_ALLMA_INVALID_DEFINITION),
				 errmsg("%s must be 1 to %d characters long", what, MAX_ID_LENGTH),
				 errdetail("It has %zu characters.", len)));
	for (p = id; *p; p++)
	{
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
			  (*p >= '0' && *p <= '9') || *p == '_' || *p == '-' ||
			  strchr(extra, *p) != NULL))
			ereport(ERROR,
					(errcode(ERRCODE_ALLMA_INVALID_DEFINITION),
					 errmsg("%s contains a character that is not allowed", what),
					 errdetail("Allowed characters are %s.", allowed)));
	}
}

/* check_step validates the step stored under key "key" */
static void
check_step(Checker *ck, const char *key, JsonbValue *value)
{
	JsonbContainer *step;
	JsonbValue	v;
	char	   *id;
	char	   *step_type;
	const AllmaStepType *info;

	ck->step = NULL;
	ck->inherits = false;
	check_id_chars(psprintf("step key \"%s\"", key), key, "",
				   "ASCII letters, digits, \"_\" and \"-\"");
	ck->step = key;
	if (!is_object(value))
		ereport(ERROR,
				(errcode(ERRCODE_ALLMA_INVALID_FIELD_TYPE),
				 errmsg("step \"%s\" must be an object, not %s", key,
						type_name(value))));
	step = value->val.binary.data;

	id = get_string(ck, step, NULL, "stepInstanceId", false);
	if (id != NULL && strcmp(id, key) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_ALLMA_STEP_KEY_MISMATCH),
				 errmsg("step \"%s\" field \"stepInstanceId\" is \"%s\", not its key",
						key, id),
				 errhint("A step's stepInstanceId must equal its key in \"steps\".")));

	step_type = get_string(ck, step, NULL, "stepType", true);
	info = allma_step_type_find(step_type);
	if (info == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_ALLMA_UNKNOWN_STEP_TYPE),
				 errmsg("step \"%s\" has unknown stepType \"%s\"", key, step_type)));

	if (lookup(step, "stepDefinitionId", &v) && v.type != jbvNull)
	{
		if (v.type != jbvString)
			error_type(ck, "stepDefinitionId", "a string or null", &v);
		ck->inherits = true;
	}
	get_string(ck, step, NULL, "displayName", false);

	check_module(ck, step, info);
	check_transitions(ck, step);
	check_step_ref_field(ck, step, NULL, "defaultNextStepInstanceId", false);
	check_number_field(ck, step, NULL, "defaultNextMaxTransitions", true,
					   0, false, MAX_TRANSITIONS_LIMIT,
					   ERRCODE_ALLMA_INVALID_DEFINITION);
	check_on_error(ck, step);
	check_input_mappings(ck, step, NULL, "inputMappings");
	check_output_mappings(ck, step);
	check_literals(ck, step, NULL);
	if (get_object(ck, step, NULL, "customConfig", false) != NULL)
		check_templates_field(ck, step, NULL, "customConfig");
	check_delay(ck, step);
	check_misc_fields(ck, step);

	if (strcmp(step_type, "CUSTOM_LAMBDA_INVOKE") == 0)
		check_custom_lambda(ck, step);
	else if (strcmp(step_type, "LLM_INVOCATION") == 0)
		check_llm_invocation(ck, step);
	else if (strcmp(step_type, "API_CALL") == 0)
		check_api_call(ck, step);
	else if (strcmp(step_type, "POLL_EXTERNAL_API") == 0)
		check_poll(ck, step);
	else if (strcmp(step_type, "WAIT_FOR_EXTERNAL_EVENT") == 0)
		check_wait(ck, step);
	else if (strcmp(step_type, "EMAIL") == 0)
		check_email(ck, step);
	else if (strcmp(step_type, "EMAIL_START_POINT") == 0)
		check_email_start_point(ck, step);
	else if (strcmp(step_type, "SCHEDULE_START_POINT") == 0)
		check_schedule_start_point(ck, step);
	else if (strcmp(step_type, "FILE_DOWNLOAD") == 0)
		check_file_download(ck, step);
	else if (strcmp(step_type, "START_FLOW_EXECUTION") == 0)
		check_start_flow_execution(ck, step);
	else if (strcmp(step_type, "START_SUB_FLOW") == 0)
		check_start_sub_flow(ck, step);
	else if (strcmp(step_type, "MCP_CALL") == 0)
		check_mcp_call(ck, step);
	else if (strcmp(step_type, "SQS_SEND") == 0)
		check_sqs_send(ck, step);
	else if (strcmp(step_type, "SNS_PUBLISH") == 0)
		check_sns_publish(ck, step);
	else if (strcmp(step_type, "PARALLEL_FORK_MANAGER") == 0)
		check_parallel(ck, step);
}

/* onCompletionActions: side effects after the flow ends */
static void
check_completion_actions(Checker *ck, JsonbContainer *flow)
{
	JsonbContainer *arr = get_array(ck, flow, NULL, "onCompletionActions", false);
	int			n;
	int			i;
	Member	   *elems;

	if (arr == NULL)
		return;
	elems = members(arr, &n);
	for (i = 0; i < n; i++)
	{
		char	   *field = element_name("onCompletionActions", i);
		JsonbContainer *a;
		char	   *type;
		bool		needs_target;

		if (!is_object(&elems[i].value))
			error_type(ck, field, "an object", &elems[i].value);
		a = elems[i].value.val.binary.data;
		type = get_string(ck, a, field, "actionType", true);
		check_enum(ck, member_name(field, "actionType"), type, action_types);
		check_enum_field(ck, a, field, "executeOnStatus", false,
						 execute_on_statuses);
		check_condition_field(ck, a, field, "condition", false);
		check_input_mappings(ck, a, field, "payloadTemplate");
		needs_target = (strcmp(type, "LOG_ONLY") != 0 &&
						strcmp(type, "DATA_SAVE") != 0);
		get_template_string(ck, a, field, "target", needs_target);
		if (strcmp(type, "API_CALL") == 0)
			check_enum_field(ck, a, field, "apiHttpMethod", true, http_methods);
		if (strcmp(type, "SNS_SEND") == 0)
			check_jsonpath_record(ck, a, field, "messageAttributesTemplate");
		if (strcmp(type, "DATA_SAVE") == 0)
			get_nonempty_string(ck, a, field, "moduleIdentifier", true);
	}
}

/*
 * check_flow validates a whole definition (see the file header for the
 * order and the SQLSTATEs).
 */
static void
check_flow(Jsonb *definition)
{
	Checker		ck = {0};
	JsonbContainer *flow;
	JsonbValue	v;
	char	   *id;
	char	   *start;
	double		version;
	int			n;
	int			i;
	Member	   *steps;

	if (!JB_ROOT_IS_OBJECT(definition))
		ereport(ERROR,
				(errcode(ERRCODE_ALLMA_INVALID_DEFINITION),
				 errmsg("flow definition must be a JSON object")));
	flow = &definition->root;

	id = get_string(&ck, flow, NULL, "id", true);
	check_id_chars("flow field \"id\"", id, ".:",
				   "ASCII letters, digits, \"_\", \"-\", \".\" and \":\"");
	if (get_number(&ck, flow, NULL, "version", true, &version))
		check_range(&ck, "version", version, 0, true, PG_INT32_MAX,
					ERRCODE_ALLMA_INVALID_DEFINITION);
	get_bool(&ck, flow, NULL, "isPublished", NULL);
	get_bool(&ck, flow, NULL, "enableExecutionLogs", NULL);
	if (lookup(flow, "description", &v) && v.type != jbvNull &&
		v.type != jbvString)
		error_type(&ck, "description", "a string or null", &v);
	get_object(&ck, flow, NULL, "flowVariables", false);
	if (lookup(flow, "defaultStepConfig", &v) && v.type != jbvNull &&
		!is_object(&v))
		error_type(&ck, "defaultStepConfig", "an object or null", &v);

	ck.steps = get_object(&ck, flow, NULL, "steps", true);
	if (JsonContainerSize(ck.steps) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_ALLMA_INVALID_DEFINITION),
				 errmsg("flow field \"steps\" must not be empty")));
	start = get_nonempty_string(&ck, flow, NULL, "startStepInstanceId", true);
	check_step_ref(&ck, "startStepInstanceId", start);
	check_completion_actions(&ck, flow);

	steps = members(ck.steps, &n);
	for (i = 0; i < n; i++)
		check_step(&ck, steps[i].key, &steps[i].value);
}

/*
 * allma_validate_definition throws on the first problem of a definition,
 * with an LM1xx SQLSTATE and a message naming the step and the field.
 * Allocates nothing that outlives the call.
 */
void
allma_validate_definition(Jsonb *definition)
{
	MemoryContext tmp;
	MemoryContext old;

	tmp = AllocSetContextCreate(CurrentMemoryContext,
								"allma validation",
								ALLOCSET_DEFAULT_SIZES);
	old = MemoryContextSwitchTo(tmp);
	check_flow(definition);
	MemoryContextSwitchTo(old);
	MemoryContextDelete(tmp);
}

/* true when stepType is one allma knows (whether or not it runs it yet) */
bool
allma_step_type_known(const char *step_type)
{
	return allma_step_type_find(step_type) != NULL;
}

/*
 * allma_validate_flow(definition jsonb) RETURNS void: SQL access to
 * allma_validate_definition; stores nothing.
 */
Datum
allma_validate_flow(PG_FUNCTION_ARGS)
{
	allma_validate_definition(PG_GETARG_JSONB_P(0));
	PG_RETURN_VOID();
}
