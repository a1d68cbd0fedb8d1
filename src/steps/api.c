/*-------------------------------------------------------------------------
 *
 * api.c
 *	  API_CALL, POLL_EXTERNAL_API, and the transport of modules bound to
 *	  an HTTP endpoint (allma_bind_module_http).
 *
 * IDENTIFICATION
 *	  src/steps/api.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "mb/pg_wchar.h"

#include "condition.h"
#include "defcheck.h"
#include "jsonb_util.h"
#include "path.h"
#include "steps.h"
#include "template.h"

/* ----------------------------------------------------------------
 * API_CALL
 *
 * A step that talks HTTP runs in two passes.  The first builds the request
 * (templates, mappings) and leaves the path INFLIGHT with the request
 * stored in its row; the worker sends it once that pass has committed, with
 * no transaction open.  When the response arrives the worker claims the
 * path again with ps->response set, and the step completes from it.
 * ----------------------------------------------------------------
 */

/*
 * leave_api_request leaves the request an API_CALL-shaped definition asks
 * for (the step's, POLL_EXTERNAL_API's apiCallDefinition, or the one made
 * for an HTTP binding, which sends body_override and is marked "binding")
 * for the worker to send.
 */
static void
leave_api_request(StepRun *run, Jsonb *def, Jsonb *body_override, bool binding,
				  const char *request)
{
	AllmaStep  *step = run->step;
	Jsonb	   *tctx = allma_step_template_context(run);
	Jsonb	   *url_def = allma_jsonb_get(def, "apiUrlTemplate");
	char	   *url;
	char	   *method = allma_jsonb_get_cstring(def, "apiHttpMethod");
	Jsonb	   *headers = allma_jsonb_empty_object();
	Jsonb	   *static_headers = allma_jsonb_get(def, "apiStaticHeaders");
	Jsonb	   *header_paths = allma_jsonb_get(def, "apiHeadersTemplate");
	Jsonb	   *body_def = allma_jsonb_get(def, "requestBodyTemplate");
	Jsonb	   *cfg = step->custom_config ? allma_template_render_value(step->custom_config, tctx) : NULL;
	/* as defined: rendering turns a "$.path" string into the value it names */
	char	   *body_path = step->custom_config ?
		allma_jsonb_get_cstring(step->custom_config, "requestBodyPath") : NULL;
	Jsonb	   *body = NULL;
	double		timeout_ms = allma_http_timeout_ms;
	Jsonb	   *req = allma_jsonb_empty_object();
	char	   *error;

	/* the URL: a template string, or {template, contextMappings} */
	if (allma_jsonb_is_object(url_def))
	{
		char	   *tmpl = allma_jsonb_get_cstring(url_def, "template");
		Jsonb	   *mappings = allma_jsonb_get(url_def, "contextMappings");

		if (allma_jsonb_is_object(mappings))
			tctx = allma_jsonb_concat(tctx, allma_step_mapping_values(mappings, tctx));
		url = tmpl ? allma_template_render(tmpl, tctx) : pstrdup("");
	}
	else
	{
		char	   *tmpl = allma_jsonb_get_cstring(def, "apiUrlTemplate");

		url = tmpl ? allma_template_render(tmpl, tctx) : pstrdup("");
	}
	if (!allma_http_check_url(url, &error))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("step \"%s\" has an invalid URL \"%s\": %s", step->id, url,
						error ? error : "not an http or https URL")));

	if (allma_jsonb_is_object(static_headers))
		headers = allma_jsonb_concat(headers,
									 allma_secret_render_headers(static_headers, tctx));
	if (allma_jsonb_is_object(header_paths))
	{
		List	   *keys = allma_jsonb_object_keys(header_paths);
		ListCell   *lc;

		foreach(lc, keys)
		{
			char	   *name = lfirst(lc);
			char	   *path = allma_jsonb_get_cstring(header_paths, name);
			Jsonb	   *v = path ? (path[0] == '$' ? allma_path_get(run->ps->context, path) :
									allma_jsonb_string(allma_template_render(path, tctx))) : NULL;

			if (v != NULL)
				headers = allma_jsonb_set_key(headers, name,
											  allma_jsonb_string(allma_jsonb_to_display_text(v)));
		}
	}

	if (body_override != NULL)
		body = body_override;
	else if (allma_jsonb_is_object(body_def))
		body = allma_step_mapping_values(body_def, tctx);
	else if (body_path != NULL)
		body = allma_path_get(run->ps->context, body_path);
	else if (method != NULL && (pg_strcasecmp(method, "POST") == 0 ||
								pg_strcasecmp(method, "PUT") == 0 ||
								pg_strcasecmp(method, "PATCH") == 0))
		body = run->input;

	if (cfg != NULL)
		(void) allma_jsonb_get_number(cfg, "timeoutMs", &timeout_ms);

	req = allma_jsonb_set_key(req, "method", allma_jsonb_string(method ? method : "GET"));
	req = allma_jsonb_set_key(req, "url", allma_jsonb_string(url));
	if (body != NULL)
	{
		if (!allma_jsonb_has_key(headers, "Content-Type") && !allma_jsonb_has_key(headers, "content-type"))
			headers = allma_jsonb_set_key(headers, "Content-Type", allma_jsonb_string("application/json"));
		req = allma_jsonb_set_key(req, "body", allma_jsonb_string(allma_jsonb_to_cstring(body)));
	}
	req = allma_jsonb_set_key(req, "timeoutMs", allma_jsonb_int((int64) timeout_ms));
	req = allma_jsonb_set_key(req, "idempotencyKey",
							  allma_jsonb_string(allma_step_request_key(run->ps, step, request)));
	if (binding)
		req = allma_jsonb_set_key(req, "binding", allma_jsonb_bool(true));
	allma_step_set_io_request(run, req, headers);
}

Jsonb *
allma_api_call_start(StepRun *run)
{
	leave_api_request(run, run->step->def, NULL, false, NULL);
	return NULL;
}

/* allma_api_call_complete: the step output for a response, or the Allma error it means */
Jsonb *
allma_api_call_complete(StepRun *run)
{
	AllmaHttpCompletion *c = run->ps->response;
	Jsonb	   *data;
	Jsonb	   *out;

	(void) allma_step_raise_for_transfer(c, 400, "");

	/* JSON bodies are parsed, anything else is text (valid text, see text_valid.c) */
	data = allma_step_response_data(c);
	out = allma_jsonb_set_key(NULL, "status", allma_jsonb_int(c->status));
	out = allma_jsonb_set_key(out, "headers", c->headers ? c->headers : allma_jsonb_empty_object());
	return allma_jsonb_set_key(out, "data", data);
}

/*
 * allma_http_binding_send: a module or Lambda ARN bound to an HTTP endpoint
 * (allma_bind_module_http) is called like an API_CALL that POSTs the module
 * input as JSON, with the binding's headers ({{secrets.NAME}} allowed).
 * The step's output is the response's JSON body (or its text); errors are
 * classified like API_CALL's.  See allma_http_binding_output.
 */
void
allma_http_binding_send(StepRun *run, const char *url, Jsonb *headers, Jsonb *payload)
{
	Jsonb	   *def = allma_jsonb_empty_object();

	def = allma_jsonb_set_key(def, "apiUrlTemplate", allma_jsonb_string(url));
	def = allma_jsonb_set_key(def, "apiHttpMethod", allma_jsonb_string("POST"));
	if (headers != NULL)
		def = allma_jsonb_set_key(def, "apiStaticHeaders", headers);
	leave_api_request(run, def, payload, true, NULL);
}

/* allma_http_binding_output: the output of a step whose binding is an HTTP endpoint */
Jsonb *
allma_http_binding_output(StepRun *run)
{
	AllmaHttpCompletion *c = run->ps->response;
	Jsonb	   *data;

	(void) allma_step_raise_for_transfer(c, 400, "");
	data = allma_step_response_data(c);
	return data;
}

/* ----------------------------------------------------------------
 * POLL_EXTERNAL_API
 *
 * Each poll is the request of apiCallDefinition, sent like an API_CALL.
 * On a response, exitConditions.successCondition (true: the step completes
 * with the response data) and failureCondition (true: PollingFailed) are
 * evaluated over the response data; otherwise the step polls again after
 * pollingConfig.intervalSeconds — a durable due time, not a sleeping
 * process — until pollingConfig.maxAttempts polls have been made (which
 * Allma never enforced), then fails with PollingMaxAttemptsExceeded.  The
 * poll count is kept with the path's transition counters.
 * ----------------------------------------------------------------
 */

Jsonb *
allma_poll_start(StepRun *run)
{
	Jsonb	   *def = allma_jsonb_get(run->step->def, "apiCallDefinition");
	double		polls = 0;

	/* each poll is a new request with its own idempotency key (step.c) */
	(void) allma_jsonb_get_number(run->ps->transition_counts,
								  psprintf("%s_poll", run->step->id), &polls);
	leave_api_request(run, allma_jsonb_is_object(def) ? def : run->step->def, NULL, false,
					  polls >= 1 ? psprintf("poll-%d", (int) polls + 1) : NULL);
	return NULL;
}

/* at most this much of the response that met a failure condition is kept in the error */
#define POLL_FAILURE_RESPONSE_MAX	2048

/*
 * poll_failure_details: the condition and the response that met it, the
 * response as it is when small, else an excerpt of its JSON text.
 */
static Jsonb *
poll_failure_details(Jsonb *response, const char *condition, double polls)
{
	Jsonb	   *details = allma_jsonb_set_key(NULL, "polls", allma_jsonb_int((int64) polls));
	Jsonb	   *data = allma_jsonb_get(response, "data");
	char	   *text = allma_jsonb_to_cstring(data);
	size_t		len = strlen(text);

	details = allma_jsonb_set_key(details, "failureCondition", allma_jsonb_string(condition));
	details = allma_jsonb_set_key(details, "status", allma_jsonb_get(response, "status"));
	if (len <= POLL_FAILURE_RESPONSE_MAX)
		details = allma_jsonb_set_key(details, "response", data);
	else
	{
		details = allma_jsonb_set_key(details, "responseExcerpt",
									  allma_jsonb_string_len(text, pg_mbcliplen(text, (int) len,
																				POLL_FAILURE_RESPONSE_MAX)));
		details = allma_jsonb_set_key(details, "responseBytes", allma_jsonb_int((int64) len));
	}
	return details;
}

static Jsonb *
poll_output(StepRun *run)
{
	Jsonb	   *response = allma_api_call_complete(run);	/* HTTP errors throw here */
	Jsonb	   *data = allma_jsonb_get(response, "data");
	Jsonb	   *exits = allma_jsonb_get(run->step->def, "exitConditions");
	Jsonb	   *polling = allma_jsonb_get(run->step->def, "pollingConfig");
	char	   *success = exits ? allma_jsonb_get_cstring(exits, "successCondition") : NULL;
	char	   *failure = exits ? allma_jsonb_get_cstring(exits, "failureCondition") : NULL;
	char	   *counter = psprintf("%s_poll", run->step->id);
	double		polls = 0,
				max_attempts = 100,
				interval = 5;

	(void) allma_jsonb_get_number(run->ps->transition_counts, counter, &polls);
	(void) allma_jsonb_get_number(polling, "maxAttempts", &max_attempts);
	(void) allma_jsonb_get_number(polling, "intervalSeconds", &interval);
	polls += 1;

	if (failure != NULL && allma_condition_eval(failure, data))
		allma_step_raise_error("PollingFailed",
							   psprintf("polling step \"%s\" met its failure condition", run->step->id),
							   poll_failure_details(response, failure, polls));
	if (success != NULL && allma_condition_eval(success, data))
	{
		run->details = allma_jsonb_set_key(NULL, "polls", allma_jsonb_int((int64) polls));
		/* the counter starts again if the flow comes back to this step */
		run->ps->transition_counts = allma_jsonb_delete_key(run->ps->transition_counts, counter);
		return data;
	}
	if (polls >= max_attempts)
		allma_step_raise_error("PollingMaxAttemptsExceeded",
							   psprintf("polling step \"%s\" made %d polls without meeting a condition",
										run->step->id, (int) polls),
							   allma_jsonb_set_key(NULL, "polls", allma_jsonb_int((int64) polls)));
	run->ps->transition_counts = allma_jsonb_set_key(run->ps->transition_counts, counter,
													 allma_jsonb_int((int64) polls));
	run->repoll_ms = (int64) (interval * 1000.0 * allma_timer_scale);
	run->details = allma_jsonb_set_key(NULL, "polls", allma_jsonb_int((int64) polls));
	return NULL;
}

Jsonb *
allma_poll_complete(StepRun *run)
{
	Jsonb	   *out = poll_output(run);

	if (out == NULL)
		run->io = false;		/* poll again later: see run_step */
	return out;
}

/* ----------------------------------------------------------------
 * The definition check
 * ----------------------------------------------------------------
 */

/* the limits of pollingConfig */
#define MAX_POLL_INTERVAL_SECONDS	86400.0
#define MAX_POLL_ATTEMPTS			10000

/*
 * check_api_call_definition: the HTTP call of API_CALL (fields on the step)
 * and of POLL_EXTERNAL_API (fields in apiCallDefinition).
 */
static void
check_api_call_definition(AllmaChecker *ck, JsonbContainer *obj, const char *parent,
						  bool required)
{
	JsonbContainer *url = allma_def_get_object(ck, obj, parent, "apiUrlTemplate", required);

	if (url != NULL)
	{
		char	   *field = allma_def_member_name(parent, "apiUrlTemplate");
		char	   *tmpl = allma_def_get_template_string(ck, url, field, "template", true);

		if (tmpl != NULL)
			allma_def_check_url_template(ck, allma_def_member_name(field, "template"), tmpl);
		allma_def_check_context_mappings(ck, url, field, "contextMappings");
	}
	/* GET when absent (leave_api_request) */
	allma_def_check_enum_field(ck, obj, parent, "apiHttpMethod", false, allma_def_http_methods);
	allma_def_check_jsonpath_record(ck, obj, parent, "apiHeadersTemplate");
	allma_def_check_string_record(ck, obj, parent, "apiStaticHeaders");
	allma_def_check_context_mappings(ck, obj, parent, "requestBodyTemplate");
}

void
allma_check_api_call(AllmaChecker *ck, JsonbContainer *step)
{
	JsonbContainer *config;

	check_api_call_definition(ck, step, NULL, !ck->inherits);
	config = allma_def_get_object(ck, step, NULL, "customConfig", false);
	if (config != NULL)
	{
		allma_def_check_number_field(ck, config, "customConfig", "timeoutMs", true,
									 0, true, INFINITY, ERRCODE_ALLMA_INVALID_DEFINITION);
		allma_def_check_jsonpath_field(ck, config, "customConfig", "requestBodyPath", false);
	}
}

void
allma_check_poll(AllmaChecker *ck, JsonbContainer *step)
{
	JsonbContainer *def;
	JsonbContainer *polling;
	JsonbContainer *exits;

	def = allma_def_get_object(ck, step, NULL, "apiCallDefinition", !ck->inherits);
	if (def != NULL)
		check_api_call_definition(ck, def, "apiCallDefinition", true);

	polling = allma_def_get_object(ck, step, NULL, "pollingConfig", !ck->inherits);
	if (polling != NULL)
	{
		double		d;

		if (!allma_def_get_number(ck, polling, "pollingConfig", "intervalSeconds", false, &d))
			allma_def_error_missing(ck, "pollingConfig.intervalSeconds", NULL);
		allma_def_check_range(ck, "pollingConfig.intervalSeconds", d, 0, true,
							  MAX_POLL_INTERVAL_SECONDS, ERRCODE_ALLMA_INVALID_DEFINITION);
		if (!allma_def_get_number(ck, polling, "pollingConfig", "maxAttempts", true, &d))
			allma_def_error_missing(ck, "pollingConfig.maxAttempts", NULL);
		allma_def_check_range(ck, "pollingConfig.maxAttempts", d, 1, false,
							  MAX_POLL_ATTEMPTS, ERRCODE_ALLMA_INVALID_DEFINITION);
	}

	exits = allma_def_get_object(ck, step, NULL, "exitConditions", !ck->inherits);
	if (exits != NULL)
	{
		allma_def_check_condition_field(ck, exits, "exitConditions", "successCondition", true);
		allma_def_check_condition_field(ck, exits, "exitConditions", "failureCondition", false);
	}
}
