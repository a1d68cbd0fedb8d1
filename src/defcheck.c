/*-------------------------------------------------------------------------
 *
 * defcheck.c
 *	  Field checkers of flow definitions: typed access to a definition's
 *	  members and the checks of paths, conditions, templates and mappings.
 *
 * validate.c walks a definition and the step files (src/steps/) check
 * their own fields through the step-type table; both use these.  Each
 * checker throws on the first problem, with an LM1xx SQLSTATE and a
 * message naming the step (or "flow") and the field, using dots for object
 * members and [n] (0-based) for array elements (see validate.c for the
 * SQLSTATEs and the choices made against Allma's own schemas).
 *
 * IDENTIFICATION
 *	  src/defcheck.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>
#include <math.h>

#include "fmgr.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"

#include "condition.h"
#include "defcheck.h"
#include "http.h"
#include "path.h"
#include "template.h"

const char *const allma_def_http_methods[] = {
	"GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", NULL
};
static const char *const format_as_values[] = {
	"RAW", "JSON", "CUSTOM_STRING", NULL
};

/* ---------------------------------------------------------------------
 * Small helpers: naming, iteration, errors
 * ---------------------------------------------------------------------
 */

/* "step "x" field "f"" or "flow field "f"": the subject of every message */
char *
allma_def_where(AllmaChecker *ck, const char *field)
{
	if (ck->step != NULL)
		return psprintf("step \"%s\" field \"%s\"", ck->step, field);
	return psprintf("flow field \"%s\"", field);
}

/*
 * allma_def_clip: a value quoted in an error message, at most
 * ALLMA_DEF_CLIP_BYTES bytes of it (whole characters) and "..." when it was
 * longer: a megabyte string in a definition must not make a megabyte
 * error.
 */
#define ALLMA_DEF_CLIP_BYTES	120

const char *
allma_def_clip(const char *s)
{
	size_t		len = strlen(s);
	int			keep;

	if (len <= ALLMA_DEF_CLIP_BYTES)
		return s;
	keep = pg_mbcliplen(s, (int) Min(len, (size_t) INT_MAX), ALLMA_DEF_CLIP_BYTES);
	return psprintf("%.*s...", keep, s);
}

/* name of member "key" of the field "parent" (parent NULL: top level) */
char *
allma_def_member_name(const char *parent, const char *key)
{
	if (parent == NULL)
		return pstrdup(key);
	return psprintf("%s.%s", parent, key);
}

/* name of element i of the array field "parent" */
char *
allma_def_element_name(const char *parent, int i)
{
	return psprintf("%s[%d]", parent, i);
}

/* JSON type of a value as a noun phrase, for messages */
const char *
allma_def_type_name(JsonbValue *v)
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

bool
allma_def_is_object(JsonbValue *v)
{
	return v->type == jbvBinary && JsonContainerIsObject(v->val.binary.data);
}

bool
allma_def_is_array(JsonbValue *v)
{
	return v->type == jbvBinary && JsonContainerIsArray(v->val.binary.data);
}

char *
allma_def_string_value(JsonbValue *v)
{
	Assert(v->type == jbvString);
	return pnstrdup(v->val.string.val, v->val.string.len);
}

/* the number of a numeric JsonbValue; +-Inf when out of float8 range */
double
allma_def_number_value(JsonbValue *v)
{
	Assert(v->type == jbvNumeric);
	return DatumGetFloat8(DirectFunctionCall1(numeric_float8_no_overflow,
											  NumericGetDatum(v->val.numeric)));
}

/*
 * members returns the members of an object or the elements of an array, in
 * storage order, with nested containers as jbvBinary values.
 */
AllmaDefMember *
allma_def_members(JsonbContainer *c, int *count)
{
	int			size = JsonContainerSize(c);
	AllmaDefMember	   *result = palloc0(sizeof(AllmaDefMember) * Max(size, 1));
	JsonbIterator *it = JsonbIteratorInit(c);
	JsonbValue	v;
	JsonbIteratorToken tok;
	int			n = 0;
	char	   *key = NULL;

	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (tok == WJB_KEY)
			key = allma_def_string_value(&v);
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
bool
allma_def_lookup(JsonbContainer *c, const char *key, JsonbValue *out)
{
	return getKeyJsonValueFromContainer(c, key, strlen(key), out) != NULL;
}

/* "a", "b" or "c": the allowed values of an enum, for messages */
char *
allma_def_enum_list(const char *const *allowed)
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

bool
allma_def_in_list(const char *s, const char *const *allowed)
{
	int			i;

	for (i = 0; allowed[i] != NULL; i++)
	{
		if (strcmp(s, allowed[i]) == 0)
			return true;
	}
	return false;
}

void
allma_def_error_missing(AllmaChecker *ck, const char *field, const char *detail)
{
	ereport(ERROR,
			(errcode(ERRCODE_ALLMA_INVALID_DEFINITION),
			 errmsg("%s is required", allma_def_where(ck, field)),
			 detail ? errdetail("%s", detail) : 0));
}

void
allma_def_error_type(AllmaChecker *ck, const char *field, const char *expected, JsonbValue *v)
{
	ereport(ERROR,
			(errcode(ERRCODE_ALLMA_INVALID_FIELD_TYPE),
			 errmsg("%s must be %s, not %s", allma_def_where(ck, field), expected,
					allma_def_type_name(v))));
}

/* raises when the string "value" of "field" is not one of "allowed" */
void
allma_def_check_enum(AllmaChecker *ck, const char *field, const char *value,
					 const char *const *allowed)
{
	if (!allma_def_in_list(value, allowed))
		ereport(ERROR,
				(errcode(ERRCODE_ALLMA_INVALID_DEFINITION),
				 errmsg("%s must be one of %s", allma_def_where(ck, field),
						allma_def_enum_list(allowed)),
				 errdetail("The value is \"%s\".", allma_def_clip(value))));
}

/*
 * check_range raises "sqlstate" unless lo <= value <= hi (lo < value when
 * lo_exclusive).  hi may be INFINITY.
 */
void
allma_def_check_range(AllmaChecker *ck, const char *field, double value, double lo,
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
				 errmsg("%s must be greater than %.15g", allma_def_where(ck, field), lo) :
				 errmsg("%s must be at least %.15g", allma_def_where(ck, field), lo),
				 errdetail("The value is %.15g.", value)));
	else
		ereport(ERROR,
				(errcode(sqlstate),
				 lo_exclusive ?
				 errmsg("%s must be greater than %.15g and at most %.15g",
						allma_def_where(ck, field), lo, hi) :
				 errmsg("%s must be between %.15g and %.15g",
						allma_def_where(ck, field), lo, hi),
				 errdetail("The value is %.15g.", value)));
}

/* ---------------------------------------------------------------------
 * Typed field access.  Each getter looks up "key" in obj, reports a
 * missing required field (LM100) or a wrong type (LM108), and returns
 * NULL / false when an optional field is absent.  "parent" is the name of
 * obj for messages (NULL for the step or flow itself).
 * ---------------------------------------------------------------------
 */

char *
allma_def_get_string(AllmaChecker *ck, JsonbContainer *obj, const char *parent,
					 const char *key, bool required)
{
	JsonbValue	v;

	if (!allma_def_lookup(obj, key, &v))
	{
		if (required)
			allma_def_error_missing(ck, allma_def_member_name(parent, key), NULL);
		return NULL;
	}
	if (v.type != jbvString)
		allma_def_error_type(ck, allma_def_member_name(parent, key), "a string", &v);
	return allma_def_string_value(&v);
}

/* like get_string, and an empty string is an error */
char *
allma_def_get_nonempty_string(AllmaChecker *ck, JsonbContainer *obj, const char *parent,
							  const char *key, bool required)
{
	char	   *s = allma_def_get_string(ck, obj, parent, key, required);

	if (s != NULL && s[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_ALLMA_INVALID_DEFINITION),
				 errmsg("%s must not be empty", allma_def_where(ck, allma_def_member_name(parent, key)))));
	return s;
}

JsonbContainer *
allma_def_get_object(AllmaChecker *ck, JsonbContainer *obj, const char *parent,
					 const char *key, bool required)
{
	JsonbValue	v;

	if (!allma_def_lookup(obj, key, &v))
	{
		if (required)
			allma_def_error_missing(ck, allma_def_member_name(parent, key), NULL);
		return NULL;
	}
	if (!allma_def_is_object(&v))
		allma_def_error_type(ck, allma_def_member_name(parent, key), "an object", &v);
	return v.val.binary.data;
}

JsonbContainer *
allma_def_get_array(AllmaChecker *ck, JsonbContainer *obj, const char *parent,
					const char *key, bool required)
{
	JsonbValue	v;

	if (!allma_def_lookup(obj, key, &v))
	{
		if (required)
			allma_def_error_missing(ck, allma_def_member_name(parent, key), NULL);
		return NULL;
	}
	if (!allma_def_is_array(&v))
		allma_def_error_type(ck, allma_def_member_name(parent, key), "an array", &v);
	return v.val.binary.data;
}

bool
allma_def_get_bool(AllmaChecker *ck, JsonbContainer *obj, const char *parent,
				   const char *key, bool *out)
{
	JsonbValue	v;

	if (!allma_def_lookup(obj, key, &v))
		return false;
	if (v.type != jbvBool)
		allma_def_error_type(ck, allma_def_member_name(parent, key), "a boolean", &v);
	if (out)
		*out = v.val.boolean;
	return true;
}

/*
 * get_number: an optional number; "integer" also rejects fractions (as
 * LM108: the type is "an integer").  Returns whether it was present.
 */
bool
allma_def_get_number(AllmaChecker *ck, JsonbContainer *obj, const char *parent,
					 const char *key, bool integer, double *out)
{
	JsonbValue	v;
	double		d;

	if (!allma_def_lookup(obj, key, &v))
		return false;
	if (v.type != jbvNumeric)
		allma_def_error_type(ck, allma_def_member_name(parent, key),
							 integer ? "an integer" : "a number", &v);
	d = allma_def_number_value(&v);
	if (integer && !isinf(d) && d != floor(d))
		ereport(ERROR,
				(errcode(ERRCODE_ALLMA_INVALID_FIELD_TYPE),
				 errmsg("%s must be an integer", allma_def_where(ck, allma_def_member_name(parent, key))),
				 errdetail("The value is %.15g.", d)));
	*out = d;
	return true;
}

/* an optional number that must lie in a range (see check_range) */
void
allma_def_check_number_field(AllmaChecker *ck, JsonbContainer *obj, const char *parent,
							 const char *key, bool integer, double lo, bool lo_exclusive,
							 double hi, int sqlstate)
{
	double		d;

	if (allma_def_get_number(ck, obj, parent, key, integer, &d))
		allma_def_check_range(ck, allma_def_member_name(parent, key), d, lo, lo_exclusive, hi,
							  sqlstate);
}

/* an optional string field whose value must be one of "allowed" */
void
allma_def_check_enum_field(AllmaChecker *ck, JsonbContainer *obj, const char *parent,
						   const char *key, bool required, const char *const *allowed)
{
	char	   *s = allma_def_get_string(ck, obj, parent, key, required);

	if (s != NULL)
		allma_def_check_enum(ck, allma_def_member_name(parent, key), s, allowed);
}

/* an optional field that is a string or an array of strings */
void
allma_def_check_string_or_strings(AllmaChecker *ck, JsonbContainer *obj, const char *parent,
								  const char *key, bool required)
{
	JsonbValue	v;
	char	   *field = allma_def_member_name(parent, key);

	if (!allma_def_lookup(obj, key, &v))
	{
		if (required)
			allma_def_error_missing(ck, field, NULL);
		return;
	}
	if (allma_def_is_array(&v))
	{
		int			n;
		int			i;
		AllmaDefMember	   *elems = allma_def_members(v.val.binary.data, &n);

		for (i = 0; i < n; i++)
		{
			if (elems[i].value.type != jbvString)
				allma_def_error_type(ck, allma_def_element_name(field, i), "a string",
									 &elems[i].value);
		}
	}
	else if (v.type != jbvString)
		allma_def_error_type(ck, field, "a string or an array of strings", &v);
}

/*
 * check_string_array: an array of strings; non_empty_items rejects "".
 * The array itself is given (already type-checked).
 */
void
allma_def_check_string_array(AllmaChecker *ck, JsonbContainer *arr, const char *field,
							 bool non_empty_items, int sqlstate)
{
	int			n;
	int			i;
	AllmaDefMember	   *elems = allma_def_members(arr, &n);

	for (i = 0; i < n; i++)
	{
		if (elems[i].value.type != jbvString)
			allma_def_error_type(ck, allma_def_element_name(field, i), "a string", &elems[i].value);
		if (non_empty_items && elems[i].value.val.string.len == 0)
			ereport(ERROR,
					(errcode(sqlstate),
					 errmsg("%s must not be empty",
							allma_def_where(ck, allma_def_element_name(field, i)))));
	}
}

/* ---------------------------------------------------------------------
 * References, paths, conditions and templates
 * ---------------------------------------------------------------------
 */

/* raises LM102 when "target" is not a key of "steps" */
void
allma_def_check_step_ref(AllmaChecker *ck, const char *field, const char *target)
{
	JsonbValue	v;

	if (!allma_def_lookup(ck->steps, target, &v))
		ereport(ERROR,
				(errcode(ERRCODE_ALLMA_DANGLING_REFERENCE),
				 errmsg("%s names unknown step \"%s\"", allma_def_where(ck, field), allma_def_clip(target)),
				 errhint("A step reference must be a key of \"steps\".")));
}

/* a required, non-empty string field naming an existing step */
void
allma_def_check_step_ref_field(AllmaChecker *ck, JsonbContainer *obj, const char *parent,
							   const char *key, bool required)
{
	char	   *target = allma_def_get_nonempty_string(ck, obj, parent, key, required);

	if (target != NULL)
		allma_def_check_step_ref(ck, allma_def_member_name(parent, key), target);
}

/*
 * check_jsonpath raises LM103 unless "path" is a JSONPath Allma accepts
 * ("$", "$." or starting with "$." or "$[") and path.c can evaluate it.
 */
void
allma_def_check_jsonpath(AllmaChecker *ck, const char *field, const char *path)
{
	char	   *msg = NULL;

	if (strcmp(path, "$.") == 0)
		return;					/* Allma's "the whole value" */
	if (path[0] != '$' || (path[1] != '\0' && path[1] != '.' && path[1] != '['))
		ereport(ERROR,
				(errcode(ERRCODE_ALLMA_INVALID_PATH),
				 errmsg("%s has invalid JSONPath \"%s\"", allma_def_where(ck, field), allma_def_clip(path)),
				 errdetail("A JSONPath is \"$\" or starts with \"$.\" or \"$[\".")));
	if (!allma_path_check(path, &msg))
		ereport(ERROR,
				(errcode(ERRCODE_ALLMA_INVALID_PATH),
				 errmsg("%s has invalid JSONPath \"%s\"", allma_def_where(ck, field), allma_def_clip(path)),
				 msg ? errdetail("%s", msg) : 0));
}

/* LM103 unless "path" is a JSONPath made of keys and indexes only */
void
allma_def_check_settable_path(AllmaChecker *ck, const char *field, const char *path)
{
	char	   *msg = NULL;

	allma_def_check_jsonpath(ck, field, path);
	if (strcmp(path, "$.") == 0)
		return;
	if (!allma_path_check_settable(path, &msg))
		ereport(ERROR,
				(errcode(ERRCODE_ALLMA_INVALID_PATH),
				 errmsg("%s has JSONPath \"%s\" that cannot be assigned to",
						allma_def_where(ck, field), allma_def_clip(path)),
				 msg ? errdetail("%s", msg) : 0));
}

/* LM103 unless "dotpath" is a dot path ("a.b[0].c") into a step input */
void
allma_def_check_dotpath(AllmaChecker *ck, const char *field, const char *dotpath)
{
	char	   *msg = NULL;

	if (dotpath[0] == '\0' || !allma_dotpath_check(dotpath, &msg))
		ereport(ERROR,
				(errcode(ERRCODE_ALLMA_INVALID_PATH),
				 errmsg("%s has invalid dot path \"%s\"", allma_def_where(ck, field), allma_def_clip(dotpath)),
				 msg ? errdetail("%s", msg) : 0));
}

/*
 * check_mapping_source: the source JSONPath of an input mapping (Allma's
 * StepInputMappingSchema values).  Allma checks only its "$." prefix, and
 * real flows hold sources such as "$.a | prepend: 'x'" that select nothing;
 * so a source that has the prefix but does not parse is stored with a
 * WARNING instead of an error.
 */
void
allma_def_check_mapping_source(AllmaChecker *ck, const char *field, const char *path)
{
	char	   *msg = NULL;

	if (strcmp(path, "$.") == 0)
		return;
	if (path[0] != '$' || (path[1] != '\0' && path[1] != '.' && path[1] != '['))
		allma_def_check_jsonpath(ck, field, path);	/* raises */
	if (!allma_path_check(path, &msg))
		ereport(WARNING,
				(errcode(ERRCODE_ALLMA_INVALID_PATH),
				 errmsg("%s has JSONPath \"%s\" that selects nothing",
						allma_def_where(ck, field), allma_def_clip(path)),
				 msg ? errdetail("%s", msg) : 0,
				 errhint("Allma checks only that a mapping source starts with \"$.\", so the flow is accepted.")));
}

/* a string field holding a JSONPath */
void
allma_def_check_jsonpath_field(AllmaChecker *ck, JsonbContainer *obj, const char *parent,
							   const char *key, bool required)
{
	char	   *path = allma_def_get_string(ck, obj, parent, key, required);

	if (path != NULL)
		allma_def_check_jsonpath(ck, allma_def_member_name(parent, key), path);
}

/*
 * has_single_eq: does a condition compare with a lone "=" (outside quotes,
 * brackets and parentheses, so not in a filter or a jsonpath predicate)?
 */
static bool
has_single_eq(const char *c)
{
	char		quote = 0;
	int			depth = 0;

	for (int i = 0; c[i]; i++)
	{
		char		ch = c[i];

		if (quote)
		{
			if (ch == '\\' && c[i + 1])
				i++;
			else if (ch == quote)
				quote = 0;
		}
		else if (ch == '\'' || ch == '"')
			quote = ch;
		else if (ch == '[' || ch == '(')
			depth++;
		else if ((ch == ']' || ch == ')') && depth > 0)
			depth--;
		else if (ch == '=' && depth == 0 && (i == 0 || strchr("<>=!", c[i - 1]) == NULL) &&
				 c[i + 1] != '=')
			return true;
	}
	return false;
}

/*
 * LM104 unless "cond" parses as a transition condition.  A lone "=" is a
 * WARNING: Allma reads it as loose equality (so does allma), but it is
 * easily an assignment written by mistake.
 */
void
allma_def_check_condition(AllmaChecker *ck, const char *field, const char *cond)
{
	char	   *msg = NULL;

	if (!allma_condition_check(cond, &msg))
		ereport(ERROR,
				(errcode(ERRCODE_ALLMA_INVALID_CONDITION),
				 errmsg("%s has invalid condition \"%s\"", allma_def_where(ck, field), allma_def_clip(cond)),
				 msg ? errdetail("%s", msg) : 0));
	if (has_single_eq(cond))
		ereport(WARNING,
				(errcode(ERRCODE_ALLMA_INVALID_CONDITION),
				 errmsg("%s compares with a single \"=\": \"%s\"", allma_def_where(ck, field), cond),
				 errdetail("A single \"=\" is loose equality, like \"==\" (as in Allma); it assigns nothing."),
				 errhint("Write \"==\" (or \"===\" for strict equality).")));
}

void
allma_def_check_condition_field(AllmaChecker *ck, JsonbContainer *obj, const char *parent,
								const char *key, bool required)
{
	char	   *cond = allma_def_get_string(ck, obj, parent, key, required);

	if (cond != NULL)
		allma_def_check_condition(ck, allma_def_member_name(parent, key), cond);
}

/* LM105 when the string "s" holds "{{" markup that does not parse */
void
allma_def_check_template(AllmaChecker *ck, const char *field, const char *s)
{
	char	   *msg = NULL;

	if (!allma_template_has_markup(s))
		return;
	if (!allma_template_check(s, &msg))
		ereport(ERROR,
				(errcode(ERRCODE_ALLMA_INVALID_TEMPLATE),
				 errmsg("%s has invalid template", allma_def_where(ck, field)),
				 msg ? errdetail("%s", msg) : 0));
}

/*
 * allma_def_check_url_template: a URL template must lead to an http or
 * https URL.  Without markup it must be one the HTTP client accepts; with
 * markup, a scheme written out before the first "{{" must be http or https
 * (a URL that comes wholly from the context is checked when it is sent).
 */
void
allma_def_check_url_template(AllmaChecker *ck, const char *field, const char *s)
{
	const char *markup = strstr(s, "{{");
	const char *colon = strchr(s, ':');
	char	   *error = NULL;

	if (markup == NULL)
	{
		if (!allma_http_check_url(s, &error))
			ereport(ERROR,
					(errcode(ERRCODE_ALLMA_INVALID_DEFINITION),
					 errmsg("%s is not an http or https URL", allma_def_where(ck, field)),
					 error ? errdetail("%s", error) : 0));
		return;
	}
	if (colon != NULL && colon < markup)
	{
		/* at most 40 bytes of it in the message */
		char	   *scheme = pnstrdup(s, pg_mbcliplen(s, (int) (colon - s), 40));

		if ((colon - s != 4 || pg_strncasecmp(s, "http", 4) != 0) &&
			(colon - s != 5 || pg_strncasecmp(s, "https", 5) != 0))
			ereport(ERROR,
					(errcode(ERRCODE_ALLMA_INVALID_DEFINITION),
					 errmsg("%s has the URL scheme \"%s\"", allma_def_where(ck, field), scheme),
					 errhint("Only http:// and https:// URLs can be requested.")));
	}
}

/*
 * check_templates_in walks a value the way Allma's renderNestedTemplates
 * does (objects and arrays, strings rendered) and checks every string.
 */
void
allma_def_check_templates_in(AllmaChecker *ck, const char *field, JsonbValue *v)
{
	check_stack_depth();
	if (v->type == jbvString)
		allma_def_check_template(ck, field, allma_def_string_value(v));
	else if (v->type == jbvBinary)
	{
		bool		obj = JsonContainerIsObject(v->val.binary.data);
		int			n;
		int			i;
		AllmaDefMember	   *ms = allma_def_members(v->val.binary.data, &n);

		for (i = 0; i < n; i++)
			allma_def_check_templates_in(ck,
										 obj ? allma_def_member_name(field, ms[i].key) :
										 allma_def_element_name(field, i),
										 &ms[i].value);
	}
}

/* check_templates_in on member "key" of obj, when present */
void
allma_def_check_templates_field(AllmaChecker *ck, JsonbContainer *obj, const char *parent,
								const char *key)
{
	JsonbValue	v;

	if (allma_def_lookup(obj, key, &v))
		allma_def_check_templates_in(ck, allma_def_member_name(parent, key), &v);
}

/* a string field that Allma renders as a template */
char *
allma_def_get_template_string(AllmaChecker *ck, JsonbContainer *obj, const char *parent,
							  const char *key, bool required)
{
	char	   *s = allma_def_get_nonempty_string(ck, obj, parent, key, required);

	if (s != NULL)
		allma_def_check_template(ck, allma_def_member_name(parent, key), s);
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
void
allma_def_check_input_mappings(AllmaChecker *ck, JsonbContainer *obj, const char *parent,
							   const char *key)
{
	JsonbContainer *map = allma_def_get_object(ck, obj, parent, key, false);
	char	   *field = allma_def_member_name(parent, key);
	int			n;
	int			i;
	AllmaDefMember	   *ms;

	if (map == NULL)
		return;
	ms = allma_def_members(map, &n);
	for (i = 0; i < n; i++)
	{
		char	   *entry = allma_def_member_name(field, ms[i].key);

		allma_def_check_dotpath(ck, field, ms[i].key);
		if (ms[i].value.type != jbvString)
			allma_def_error_type(ck, entry, "a JSONPath string", &ms[i].value);
		allma_def_check_mapping_source(ck, entry, allma_def_string_value(&ms[i].value));
	}
}

/* literals: {dotPath: any}, string values anywhere being templates */
void
allma_def_check_literals(AllmaChecker *ck, JsonbContainer *obj, const char *parent)
{
	JsonbContainer *map = allma_def_get_object(ck, obj, parent, "literals", false);
	char	   *field = allma_def_member_name(parent, "literals");
	int			n;
	int			i;
	AllmaDefMember	   *ms;

	if (map == NULL)
		return;
	ms = allma_def_members(map, &n);
	for (i = 0; i < n; i++)
	{
		allma_def_check_dotpath(ck, field, ms[i].key);
		allma_def_check_templates_in(ck, allma_def_member_name(field, ms[i].key), &ms[i].value);
	}
}

/* a record whose values are JSONPath strings (headers templates) */
void
allma_def_check_jsonpath_record(AllmaChecker *ck, JsonbContainer *obj, const char *parent,
								const char *key)
{
	JsonbContainer *map = allma_def_get_object(ck, obj, parent, key, false);
	char	   *field = allma_def_member_name(parent, key);
	int			n;
	int			i;
	AllmaDefMember	   *ms;

	if (map == NULL)
		return;
	ms = allma_def_members(map, &n);
	for (i = 0; i < n; i++)
	{
		char	   *entry = allma_def_member_name(field, ms[i].key);

		if (ms[i].value.type != jbvString)
			allma_def_error_type(ck, entry, "a JSONPath string", &ms[i].value);
		allma_def_check_jsonpath(ck, entry, allma_def_string_value(&ms[i].value));
	}
}

/* a record whose values are strings */
void
allma_def_check_string_record(AllmaChecker *ck, JsonbContainer *obj, const char *parent,
							  const char *key)
{
	JsonbContainer *map = allma_def_get_object(ck, obj, parent, key, false);
	char	   *field = allma_def_member_name(parent, key);
	int			n;
	int			i;
	AllmaDefMember	   *ms;

	if (map == NULL)
		return;
	ms = allma_def_members(map, &n);
	for (i = 0; i < n; i++)
	{
		if (ms[i].value.type != jbvString)
			allma_def_error_type(ck, allma_def_member_name(field, ms[i].key), "a string",
								 &ms[i].value);
	}
}

/*
 * check_context_mappings: a record of TemplateContextMappingItem
 * ({sourceJsonPath, formatAs, selectFields, itemTemplate, joinSeparator}),
 * as used by templateContextMappings, apiUrlTemplate.contextMappings and
 * requestBodyTemplate.
 */
void
allma_def_check_context_mappings(AllmaChecker *ck, JsonbContainer *obj, const char *parent,
								 const char *key)
{
	JsonbContainer *map;
	char	   *field = allma_def_member_name(parent, key);
	int			n;
	int			i;
	AllmaDefMember	   *ms;
	JsonbValue	v;

	if (allma_def_lookup(obj, key, &v) && !allma_def_is_object(&v))
		ereport(ERROR,
				(errcode(ERRCODE_ALLMA_INVALID_FIELD_TYPE),
				 errmsg("%s must be an object whose members are {\"sourceJsonPath\": ...} objects, not %s",
						allma_def_where(ck, field), allma_def_type_name(&v)),
				 errhint("For example: {\"customer\": {\"sourceJsonPath\": \"$.order.customer\", \"formatAs\": \"JSON\"}}.")));
	map = allma_def_get_object(ck, obj, parent, key, false);
	if (map == NULL)
		return;
	ms = allma_def_members(map, &n);
	for (i = 0; i < n; i++)
	{
		char	   *entry = allma_def_member_name(field, ms[i].key);
		JsonbContainer *item;
		JsonbContainer *fields;
		char	   *format_as;

		if (!allma_def_is_object(&ms[i].value))
		{
			JsonbValue *e = &ms[i].value;
			char	   *example = (e->type == jbvString && e->val.string.len > 0) ?
				pnstrdup(e->val.string.val, e->val.string.len) : "$.path.to.value";

			ereport(ERROR,
					(errcode(ERRCODE_ALLMA_INVALID_FIELD_TYPE),
					 errmsg("%s must be an object {\"sourceJsonPath\", \"formatAs\"?, \"selectFields\"?, \"itemTemplate\"?, \"joinSeparator\"?}, not %s",
							allma_def_where(ck, entry), allma_def_type_name(e)),
					 errhint("Write \"%s\": {\"sourceJsonPath\": \"%s\"} (formatAs RAW, JSON or CUSTOM_STRING).",
							 ms[i].key, example)));
		}
		item = ms[i].value.val.binary.data;
		allma_def_check_jsonpath_field(ck, item, entry, "sourceJsonPath", true);
		format_as = allma_def_get_string(ck, item, entry, "formatAs", false);
		if (format_as != NULL)
			allma_def_check_enum(ck, allma_def_member_name(entry, "formatAs"), format_as,
								 format_as_values);
		fields = allma_def_get_array(ck, item, entry, "selectFields", false);
		if (fields != NULL)
			allma_def_check_string_array(ck, fields, allma_def_member_name(entry, "selectFields"),
										 false, ERRCODE_ALLMA_INVALID_DEFINITION);
		if (allma_def_get_template_string(ck, item, entry, "itemTemplate", false) == NULL &&
			format_as != NULL && strcmp(format_as, "CUSTOM_STRING") == 0)
			allma_def_error_missing(ck, allma_def_member_name(entry, "itemTemplate"),
									"formatAs \"CUSTOM_STRING\" renders each item with itemTemplate.");
		allma_def_get_string(ck, item, entry, "joinSeparator", false);
	}
}
