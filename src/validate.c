/*-------------------------------------------------------------------------
 *
 * validate.c
 *	  Validation of Allma flow definitions before they are stored.
 *
 * A flow definition is Allma's JSON format: an object with an "id", a
 * "steps" map keyed by step instance id and a "startStepInstanceId", each
 * step an object with its "stepType" and that type's fields.  allma_validate_definition walks it once
 * and throws on the first problem, so that nothing broken is stored and
 * the engine may trust the shapes it reads.  The walk goes: flow fields,
 * then each step in jsonb key order (shorter keys first), and inside a
 * step the common fields before the fields of its stepType, which the
 * type's row in the step-type table checks (its check function lives with
 * the type's handlers in src/steps/).  The field checkers are defcheck.c.
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

#include "concurrency.h"
#include "defcheck.h"
#include "ratelimit.h"
#include "step.h"
#include "validate.h"

PG_FUNCTION_INFO_V1(allma_validate_flow);

/* Limits of allma's own choosing (see the file header). */
#define MAX_ID_LENGTH				200
#define MAX_TRANSITIONS_LIMIT		1000000
#define MAX_RETRY_COUNT				10
#define MAX_RETRY_INTERVAL_SECONDS	86400.0
#define MAX_BACKOFF_RATE			10.0
#define MAX_DELAY_MS				86400000.0

static const char *const delay_positions[] = {"before", "after", NULL};
static const char *const jitter_strategies[] = {"FULL", "NONE", NULL};
static const char *const action_types[] = {
	"LOG_ONLY", "API_CALL", "SQS_SEND", "SNS_SEND", "CUSTOM_LAMBDA_INVOKE",
	"DATA_SAVE", "NOTIFY", NULL
};
static const char *const execute_on_statuses[] = {
	"COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT", "ANY", NULL
};

/* ---------------------------------------------------------------------
 * Common step fields
 * ---------------------------------------------------------------------
 */

/* outputMappings: {settable JSONPath: JSONPath} */
static void
check_output_mappings(AllmaChecker *ck, JsonbContainer *step)
{
	JsonbContainer *map = allma_def_get_object(ck, step, NULL, "outputMappings", false);
	int			n;
	int			i;
	AllmaDefMember	   *ms;

	if (map == NULL)
		return;
	ms = allma_def_members(map, &n);
	for (i = 0; i < n; i++)
	{
		char	   *entry = allma_def_member_name("outputMappings", ms[i].key);

		allma_def_check_settable_path(ck, "outputMappings", ms[i].key);
		if (ms[i].value.type != jbvString)
			allma_def_error_type(ck, entry, "a JSONPath string", &ms[i].value);
		allma_def_check_jsonpath(ck, entry, allma_def_string_value(&ms[i].value));
	}
}

/* transitions: [{condition, nextStepInstanceId, maxTransitions?}] */
static void
check_transitions(AllmaChecker *ck, JsonbContainer *step)
{
	JsonbContainer *arr = allma_def_get_array(ck, step, NULL, "transitions", false);
	int			n;
	int			i;
	AllmaDefMember	   *elems;

	if (arr == NULL)
		return;
	elems = allma_def_members(arr, &n);
	for (i = 0; i < n; i++)
	{
		char	   *field = allma_def_element_name("transitions", i);
		JsonbContainer *t;

		if (!allma_def_is_object(&elems[i].value))
			allma_def_error_type(ck, field, "an object", &elems[i].value);
		t = elems[i].value.val.binary.data;
		allma_def_check_condition_field(ck, t, field, "condition", true);
		allma_def_check_step_ref_field(ck, t, field, "nextStepInstanceId", true);
		allma_def_check_number_field(ck, t, field, "maxTransitions", true,
									 0, false, MAX_TRANSITIONS_LIMIT,
									 ERRCODE_ALLMA_INVALID_DEFINITION);
	}
}

/*
 * A retry rule: onError.retries (allma's per-step retry policy), or the
 * "retries" of a webhook completion action; parent names it.
 */
static void
check_retry_rule(AllmaChecker *ck, JsonbContainer *r, const char *parent)
{
	JsonbContainer *errs;
	char	   *jitter;

	allma_def_check_number_field(ck, r, parent, "count", true,
								 0, false, MAX_RETRY_COUNT, ERRCODE_ALLMA_INVALID_RETRY);
	allma_def_check_number_field(ck, r, parent, "intervalSeconds", false,
								 0, true, MAX_RETRY_INTERVAL_SECONDS,
								 ERRCODE_ALLMA_INVALID_RETRY);
	allma_def_check_number_field(ck, r, parent, "backoffRate", false,
								 1, false, MAX_BACKOFF_RATE, ERRCODE_ALLMA_INVALID_RETRY);
	allma_def_check_number_field(ck, r, parent, "maxDelaySeconds", false,
								 0, true, MAX_RETRY_INTERVAL_SECONDS,
								 ERRCODE_ALLMA_INVALID_RETRY);
	jitter = allma_def_get_string(ck, r, parent, "jitterStrategy", false);
	if (jitter != NULL && !allma_def_in_list(jitter, jitter_strategies))
		ereport(ERROR,
				(errcode(ERRCODE_ALLMA_INVALID_RETRY),
				 errmsg("%s must be one of %s",
						allma_def_where(ck, allma_def_member_name(parent, "jitterStrategy")),
						allma_def_enum_list(jitter_strategies)),
				 errdetail("The value is \"%s\".", allma_def_clip(jitter))));
	errs = allma_def_get_array(ck, r, parent, "errorEquals", false);
	if (errs != NULL)
		allma_def_check_string_array(ck, errs, allma_def_member_name(parent, "errorEquals"), true,
									 ERRCODE_ALLMA_INVALID_RETRY);
}

static void
check_retries(AllmaChecker *ck, JsonbContainer *on_error)
{
	JsonbContainer *r = allma_def_get_object(ck, on_error, "onError", "retries", false);

	if (r != NULL)
		check_retry_rule(ck, r, "onError.retries");
}

/* onError.retryOnContentError: retries of ContentBasedRetryableError */
static void
check_content_retries(AllmaChecker *ck, JsonbContainer *on_error)
{
	const char *parent = "onError.retryOnContentError";
	JsonbContainer *r = allma_def_get_object(ck, on_error, "onError",
											 "retryOnContentError", false);

	if (r == NULL)
		return;
	allma_def_check_number_field(ck, r, parent, "count", true,
								 1, false, MAX_RETRY_COUNT, ERRCODE_ALLMA_INVALID_RETRY);
	allma_def_check_number_field(ck, r, parent, "intervalSeconds", false,
								 0, false, MAX_RETRY_INTERVAL_SECONDS,
								 ERRCODE_ALLMA_INVALID_RETRY);
	allma_def_check_number_field(ck, r, parent, "backoffRate", false,
								 1, false, MAX_BACKOFF_RATE, ERRCODE_ALLMA_INVALID_RETRY);
}

/* onError.catch: [{errorEquals, nextStepInstanceId, resultPath?}] */
static void
check_catch(AllmaChecker *ck, JsonbContainer *on_error)
{
	JsonbContainer *arr = allma_def_get_array(ck, on_error, "onError", "catch", false);
	int			n;
	int			i;
	AllmaDefMember	   *elems;

	if (arr == NULL)
		return;
	elems = allma_def_members(arr, &n);
	for (i = 0; i < n; i++)
	{
		char	   *field = allma_def_element_name("onError.catch", i);
		JsonbContainer *c;
		JsonbContainer *errs;
		char	   *result_path;

		if (!allma_def_is_object(&elems[i].value))
			allma_def_error_type(ck, field, "an object", &elems[i].value);
		c = elems[i].value.val.binary.data;
		errs = allma_def_get_array(ck, c, field, "errorEquals", true);
		if (JsonContainerSize(errs) == 0)
			ereport(ERROR,
					(errcode(ERRCODE_ALLMA_INVALID_DEFINITION),
					 errmsg("%s must not be empty",
							allma_def_where(ck, allma_def_member_name(field, "errorEquals"))),
					 errhint("Use [\"States.ALL\"] to catch every error.")));
		allma_def_check_string_array(ck, errs, allma_def_member_name(field, "errorEquals"), true,
									 ERRCODE_ALLMA_INVALID_DEFINITION);
		allma_def_check_step_ref_field(ck, c, field, "nextStepInstanceId", true);
		result_path = allma_def_get_string(ck, c, field, "resultPath", false);
		if (result_path != NULL)
			allma_def_check_settable_path(ck, allma_def_member_name(field, "resultPath"),
										  result_path);
	}
}

static void
check_on_error(AllmaChecker *ck, JsonbContainer *step)
{
	JsonbContainer *on_error = allma_def_get_object(ck, step, NULL, "onError", false);

	if (on_error == NULL)
		return;
	allma_def_check_step_ref_field(ck, on_error, "onError", "fallbackStepInstanceId", false);
	allma_def_get_bool(ck, on_error, "onError", "continueOnFailure", NULL);
	check_retries(ck, on_error);
	check_content_retries(ck, on_error);
	check_catch(ck, on_error);
}

/* delay: {milliseconds} or {delayFrom, delayTo}, position before|after */
static void
check_delay(AllmaChecker *ck, JsonbContainer *step)
{
	JsonbContainer *d = allma_def_get_object(ck, step, NULL, "delay", false);
	double		ms;
	double		from;
	double		to;
	bool		has_ms;
	bool		has_from;
	bool		has_to;

	if (d == NULL)
		return;
	has_ms = allma_def_get_number(ck, d, "delay", "milliseconds", true, &ms);
	if (has_ms)
		allma_def_check_range(ck, "delay.milliseconds", ms, 0, false, MAX_DELAY_MS,
							  ERRCODE_ALLMA_INVALID_DEFINITION);
	has_from = allma_def_get_number(ck, d, "delay", "delayFrom", true, &from);
	if (has_from)
		allma_def_check_range(ck, "delay.delayFrom", from, 0, false, MAX_DELAY_MS,
							  ERRCODE_ALLMA_INVALID_DEFINITION);
	has_to = allma_def_get_number(ck, d, "delay", "delayTo", true, &to);
	if (has_to)
		allma_def_check_range(ck, "delay.delayTo", to, 0, false, MAX_DELAY_MS,
							  ERRCODE_ALLMA_INVALID_DEFINITION);
	if (has_ms && (has_from || has_to))
		ereport(ERROR,
				(errcode(ERRCODE_ALLMA_INVALID_DEFINITION),
				 errmsg("%s cannot be combined with delayFrom or delayTo",
						allma_def_where(ck, "delay.milliseconds"))));
	if (!has_ms && !(has_from && has_to))
		ereport(ERROR,
				(errcode(ERRCODE_ALLMA_INVALID_DEFINITION),
				 errmsg("%s needs milliseconds, or both delayFrom and delayTo",
						allma_def_where(ck, "delay"))));
	if (has_from && from > to)
		ereport(ERROR,
				(errcode(ERRCODE_ALLMA_INVALID_DEFINITION),
				 errmsg("%s must not be greater than delayTo",
						allma_def_where(ck, "delay.delayFrom")),
				 errdetail("delayFrom is %.15g and delayTo is %.15g.", from, to)));
	allma_def_check_enum_field(ck, d, "delay", "position", false, delay_positions);
}

/* step fields read by the engine that are not specific to a type */
static void
check_misc_fields(AllmaChecker *ck, JsonbContainer *step)
{
	bool		disable = false;
	bool		force = false;
	JsonbContainer *obj;

	allma_def_get_bool(ck, step, NULL, "disableS3Offload", &disable);
	allma_def_get_bool(ck, step, NULL, "forceS3Offload", &force);
	if (disable && force)
		ereport(ERROR,
				(errcode(ERRCODE_ALLMA_INVALID_DEFINITION),
				 errmsg("step \"%s\" sets both disableS3Offload and forceS3Offload",
						ck->step)));

	obj = allma_def_get_object(ck, step, NULL, "checkpoint", false);
	if (obj != NULL)
	{
		double		order;

		allma_def_get_nonempty_string(ck, obj, "checkpoint", "id", true);
		allma_def_get_string(ck, obj, "checkpoint", "label", false);
		allma_def_get_number(ck, obj, "checkpoint", "order", false, &order);
	}

	obj = allma_def_get_object(ck, step, NULL, "outputValidation", false);
	if (obj != NULL)
	{
		JsonbContainer *req = allma_def_get_array(ck, obj, "outputValidation",
												  "requiredFields", false);

		if (req != NULL)
		{
			int			n;
			int			i;
			AllmaDefMember	   *elems = allma_def_members(req, &n);

			for (i = 0; i < n; i++)
			{
				char	   *field = allma_def_element_name("outputValidation.requiredFields", i);

				if (elems[i].value.type != jbvString)
					allma_def_error_type(ck, field, "a JSONPath string", &elems[i].value);
				allma_def_check_jsonpath(ck, field, allma_def_string_value(&elems[i].value));
			}
		}
	}

	obj = allma_def_get_object(ck, step, NULL, "securityValidatorConfig", false);
	if (obj != NULL)
	{
		JsonbContainer *strs = allma_def_get_array(ck, obj, "securityValidatorConfig",
												   "forbiddenStrings", false);
		JsonbContainer *sem;

		if (strs != NULL)
			allma_def_check_string_array(ck, strs,
										 "securityValidatorConfig.forbiddenStrings",
										 false, ERRCODE_ALLMA_INVALID_DEFINITION);
		sem = allma_def_get_object(ck, obj, "securityValidatorConfig", "semanticCheck",
								   false);
		if (sem != NULL)
			allma_def_check_number_field(ck, sem, "securityValidatorConfig.semanticCheck",
										 "similarityThreshold", false, 0.8, false, 1.0,
										 ERRCODE_ALLMA_INVALID_DEFINITION);
	}
}


/* ---------------------------------------------------------------------
 * Modules
 * ---------------------------------------------------------------------
 */

/* "A or B": the step types that run the built-in modules of "kind" */
static char *
step_types_running(int kind)
{
	StringInfoData buf;

	initStringInfo(&buf);
	for (int i = 0; i < allma_nstep_types; i++)
	{
		if (allma_step_types[i].builtin_modules & kind)
			appendStringInfo(&buf, "%s%s", buf.len > 0 ? " or " : "",
							 allma_step_types[i].name);
	}
	return buf.data;
}

/*
 * check_module applies the moduleIdentifier rules of the step's type
 * (its row in step.c's table), then the checks of a built-in module it
 * names (a SQL module's customConfig).
 */
static void
check_module(AllmaChecker *ck, JsonbContainer *step, const AllmaStepType *info)
{
	char	   *module = allma_def_get_string(ck, step, NULL, "moduleIdentifier", false);
	const AllmaBuiltinModule *builtin;

	if (module != NULL && module[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_ALLMA_INVALID_DEFINITION),
				 errmsg("%s must not be empty", allma_def_where(ck, "moduleIdentifier"))));

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
									allma_def_where(ck, "moduleIdentifier"), allma_def_clip(module),
									info->name)));
				else
					ereport(ERROR,
							(errcode(ERRCODE_ALLMA_UNKNOWN_MODULE),
							 errmsg("%s names module \"%s\", but steps of type %s run \"%s\"",
									allma_def_where(ck, "moduleIdentifier"), allma_def_clip(module),
									info->name, info->own_module),
							 errhint("Remove moduleIdentifier or set it to \"%s\".",
									 info->own_module)));
			}
			break;
		case ALLMA_MODULE_REQUIRED:
			if (module == NULL && !ck->inherits)
				allma_def_error_missing(ck, "moduleIdentifier",
										psprintf("Steps of type %s name the module they run.",
												 info->name));
			break;
		case ALLMA_MODULE_OPTIONAL:
			break;
	}

	if (module == NULL)
		return;
	builtin = allma_module_find(module);
	if (builtin != NULL && builtin->exclusive &&
		(info->builtin_modules & builtin->kind) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_ALLMA_UNKNOWN_MODULE),
				 errmsg("%s names module \"%s\", which runs only in steps of type %s",
						allma_def_where(ck, "moduleIdentifier"), allma_def_clip(module),
						step_types_running(builtin->kind)),
				 errdetail("The step's type is %s.", info->name)));
	if (builtin != NULL && builtin->check != NULL)
		builtin->check(ck, step, module);
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
check_step(AllmaChecker *ck, const char *key, JsonbValue *value)
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
	if (!allma_def_is_object(value))
		ereport(ERROR,
				(errcode(ERRCODE_ALLMA_INVALID_FIELD_TYPE),
				 errmsg("step \"%s\" must be an object, not %s", key,
						allma_def_type_name(value))));
	step = value->val.binary.data;

	id = allma_def_get_string(ck, step, NULL, "stepInstanceId", false);
	if (id != NULL && strcmp(id, key) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_ALLMA_STEP_KEY_MISMATCH),
				 errmsg("step \"%s\" field \"stepInstanceId\" is \"%s\", not its key",
						key, allma_def_clip(id)),
				 errhint("A step's stepInstanceId must equal its key in \"steps\".")));

	step_type = allma_def_get_string(ck, step, NULL, "stepType", true);
	info = allma_step_type_find(step_type);
	if (info == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_ALLMA_UNKNOWN_STEP_TYPE),
				 errmsg("step \"%s\" has unknown stepType \"%s\"", key, allma_def_clip(step_type))));

	if (allma_def_lookup(step, "stepDefinitionId", &v) && v.type != jbvNull)
	{
		if (v.type != jbvString)
			allma_def_error_type(ck, "stepDefinitionId", "a string or null", &v);
		ck->inherits = true;
	}
	allma_def_get_string(ck, step, NULL, "displayName", false);

	check_module(ck, step, info);
	check_transitions(ck, step);
	allma_def_check_step_ref_field(ck, step, NULL, "defaultNextStepInstanceId", false);
	allma_def_check_number_field(ck, step, NULL, "defaultNextMaxTransitions", true,
								 0, false, MAX_TRANSITIONS_LIMIT,
								 ERRCODE_ALLMA_INVALID_DEFINITION);
	check_on_error(ck, step);
	allma_def_check_input_mappings(ck, step, NULL, "inputMappings");
	check_output_mappings(ck, step);
	allma_def_check_literals(ck, step, NULL);
	if (allma_def_get_object(ck, step, NULL, "customConfig", false) != NULL)
		allma_def_check_templates_field(ck, step, NULL, "customConfig");
	check_delay(ck, step);
	check_misc_fields(ck, step);
	allma_ratelimit_check_step(ck, step);

	/* the fields of its type, checked by the type's row (step.c) */
	if (info->check != NULL)
		info->check(ck, step);
}

/*
 * An API_CALL completion action (a webhook, steps/completion.c): its
 * method, a literal target must be an http(s) URL, signingSecret names a
 * secret, retries is a retry rule.
 */
static void
check_webhook_action(AllmaChecker *ck, JsonbContainer *a, const char *field)
{
	char	   *target = allma_def_get_string(ck, a, field, "target", true);
	char	   *error = NULL;
	JsonbContainer *r;

	allma_def_check_enum_field(ck, a, field, "apiHttpMethod", true, allma_def_http_methods);
	if (strstr(target, "{{") == NULL && !allma_http_check_url(target, &error))
		ereport(ERROR,
				(errcode(ERRCODE_ALLMA_INVALID_DEFINITION),
				 errmsg("%s must be an http or https URL",
						allma_def_where(ck, allma_def_member_name(field, "target"))),
				 errdetail("The value is \"%s\": %s", target, error ? error : "not a URL")));
	allma_def_get_nonempty_string(ck, a, field, "signingSecret", false);
	r = allma_def_get_object(ck, a, field, "retries", false);
	if (r != NULL)
		check_retry_rule(ck, r, allma_def_member_name(field, "retries"));
}

/* a NOTIFY completion action: target is the channel, a lower-case identifier */
static void
check_notify_channel(AllmaChecker *ck, JsonbContainer *a, const char *field)
{
	char	   *channel = allma_def_get_string(ck, a, field, "target", true);
	bool		ok = channel[0] != '\0' && strlen(channel) < NAMEDATALEN &&
		!(channel[0] >= '0' && channel[0] <= '9');

	for (const char *p = channel; ok && *p; p++)
		ok = (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_';
	if (!ok)
		ereport(ERROR,
				(errcode(ERRCODE_ALLMA_INVALID_DEFINITION),
				 errmsg("%s must be a channel name: lower-case letters, digits and \"_\", not starting with a digit, at most %d characters",
						allma_def_where(ck, allma_def_member_name(field, "target")), NAMEDATALEN - 1),
				 errdetail("The value is \"%s\".", channel),
				 errhint("The notification's payload is the execution id; LISTEN on the channel.")));
}

/* onCompletionActions: side effects after the flow ends */
static void
check_completion_actions(AllmaChecker *ck, JsonbContainer *flow)
{
	JsonbContainer *arr = allma_def_get_array(ck, flow, NULL, "onCompletionActions", false);
	int			n;
	int			i;
	AllmaDefMember	   *elems;

	if (arr == NULL)
		return;
	elems = allma_def_members(arr, &n);
	for (i = 0; i < n; i++)
	{
		char	   *field = allma_def_element_name("onCompletionActions", i);
		JsonbContainer *a;
		char	   *type;
		bool		needs_target;

		if (!allma_def_is_object(&elems[i].value))
			allma_def_error_type(ck, field, "an object", &elems[i].value);
		a = elems[i].value.val.binary.data;
		type = allma_def_get_string(ck, a, field, "actionType", true);
		allma_def_check_enum(ck, allma_def_member_name(field, "actionType"), type, action_types);
		allma_def_check_enum_field(ck, a, field, "executeOnStatus", false,
								   execute_on_statuses);
		allma_def_check_condition_field(ck, a, field, "condition", false);
		allma_def_check_input_mappings(ck, a, field, "payloadTemplate");
		needs_target = (strcmp(type, "LOG_ONLY") != 0 &&
						strcmp(type, "DATA_SAVE") != 0);
		allma_def_get_template_string(ck, a, field, "target", needs_target);
		if (strcmp(type, "API_CALL") == 0)
			check_webhook_action(ck, a, field);
		if (strcmp(type, "NOTIFY") == 0)
			check_notify_channel(ck, a, field);
		if (strcmp(type, "SNS_SEND") == 0)
			allma_def_check_jsonpath_record(ck, a, field, "messageAttributesTemplate");
		if (strcmp(type, "DATA_SAVE") == 0)
			allma_def_get_nonempty_string(ck, a, field, "moduleIdentifier", true);
	}
}

/*
 * check_flow validates a whole definition (see the file header for the
 * order and the SQLSTATEs).
 */
static void
check_flow(Jsonb *definition)
{
	AllmaChecker		ck = {0};
	JsonbContainer *flow;
	JsonbValue	v;
	char	   *id;
	char	   *start;
	double		version;
	int			n;
	int			i;
	AllmaDefMember	   *steps;

	if (!JB_ROOT_IS_OBJECT(definition))
		ereport(ERROR,
				(errcode(ERRCODE_ALLMA_INVALID_DEFINITION),
				 errmsg("flow definition must be a JSON object")));
	flow = &definition->root;

	id = allma_def_get_string(&ck, flow, NULL, "id", true);
	check_id_chars("flow field \"id\"", id, ".:",
				   "ASCII letters, digits, \"_\", \"-\", \".\" and \":\"");
	if (allma_def_get_number(&ck, flow, NULL, "version", true, &version))
		allma_def_check_range(&ck, "version", version, 0, true, PG_INT32_MAX,
							  ERRCODE_ALLMA_INVALID_DEFINITION);
	allma_def_get_bool(&ck, flow, NULL, "isPublished", NULL);
	allma_def_get_bool(&ck, flow, NULL, "enableExecutionLogs", NULL);
	if (allma_def_lookup(flow, "description", &v) && v.type != jbvNull &&
		v.type != jbvString)
		allma_def_error_type(&ck, "description", "a string or null", &v);
	allma_def_get_object(&ck, flow, NULL, "flowVariables", false);
	/* the execution timeout (lifecycle.c), up to a year */
	allma_def_check_number_field(&ck, flow, NULL, "timeoutSeconds", false, 0, true, 31536000,
								 ERRCODE_ALLMA_INVALID_RETRY);
	if (allma_def_lookup(flow, "defaultStepConfig", &v) && v.type != jbvNull &&
		!allma_def_is_object(&v))
		allma_def_error_type(&ck, "defaultStepConfig", "an object or null", &v);

	ck.steps = allma_def_get_object(&ck, flow, NULL, "steps", true);
	if (JsonContainerSize(ck.steps) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_ALLMA_INVALID_DEFINITION),
				 errmsg("flow field \"steps\" must not be empty")));
	start = allma_def_get_nonempty_string(&ck, flow, NULL, "startStepInstanceId", true);
	allma_def_check_step_ref(&ck, "startStepInstanceId", start);
	check_completion_actions(&ck, flow);
	allma_concurrency_check_definition(&ck, flow);

	steps = allma_def_members(ck.steps, &n);
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
