/*-------------------------------------------------------------------------
 *
 * step.c
 *	  The step-type table, and the helpers every step handler shares.
 *
 * The table has one row per stepType of Allma's format, including those
 * this version validates and stores but does not run (they fail at run
 * time with PermanentStepError "step type ... is not supported").  A row
 * says:
 *	- how the step uses moduleIdentifier (none, its own system identifier,
 *	  required, optional) and which built-in modules it runs itself;
 *	- the check of its own fields, called by validate.c after the fields
 *	  every step has;
 *	- how it starts: computing its output in the step's transaction,
 *	  leaving a request that the worker sends after commit, or starting a
 *	  fork (a module step may do either of the first two: a module bound to
 *	  an HTTP endpoint sends a request);
 *	- how it completes: from the response, at the fork's join, or when what
 *	  its parked path waits for happened (a sub-flow's child ended);
 *	- what the state machine does differently for it (END_FLOW ends the
 *	  path; POLL_EXTERNAL_API may ask to run again later).
 * The handlers live in src/steps/, one file per family of step types.
 *
 * The helpers below are what the handlers have in common: the runtime
 * state and template context of a step, the request a step leaves for the
 * worker (its idempotency key, secrets in its headers, its checks), the
 * Allma errors of a failed transfer, and running user code as the role
 * that started the execution.
 *
 * IDENTIFICATION
 *	  src/step.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/guc.h"

#include "engine.h"
#include "jsonb_util.h"
#include "path.h"
#include "acl.h"
#include "secret.h"
#include "secret_use.h"
#include "sqlstep.h"
#include "step.h"
#include "worker.h"
#include "steps/steps.h"
#include "template.h"
#include "limit_gucs.h"
#include "text_valid.h"

/* ----------------------------------------------------------------
 * The step-type table
 * ----------------------------------------------------------------
 */

#define RUNS	ALLMA_STEP_RUNS
#define SENDS	ALLMA_STEP_SENDS
#define FORKS	ALLMA_STEP_FORKS
#define PARKS	ALLMA_STEP_PARKS

/* Allma's StepType enum, in its order */
const AllmaStepType allma_step_types[] = {
	/*
	 * name, moduleIdentifier rule, own system module, built-in modules it
	 * runs, check; how it starts, start, complete, flags
	 */
	{"NO_OP", ALLMA_MODULE_NONE, "system/noop", 0, NULL,
	RUNS, allma_step_pass_input, NULL, 0},
	{"END_FLOW", ALLMA_MODULE_NONE, NULL, 0, NULL,
	RUNS, allma_step_pass_input, NULL, ALLMA_STEP_ENDS_FLOW},
	{"CUSTOM_LOGIC", ALLMA_MODULE_REQUIRED, NULL, 0, NULL,
	RUNS | SENDS, allma_module_step_start, allma_module_step_complete, 0},
	{"CUSTOM_LAMBDA_INVOKE", ALLMA_MODULE_OPTIONAL, NULL, 0, allma_check_custom_lambda,
	RUNS | SENDS, allma_lambda_step_start, allma_module_step_complete, 0},
	{"DATA_LOAD", ALLMA_MODULE_REQUIRED, NULL, ALLMA_MODULES_DATA, NULL,
	RUNS | SENDS, allma_module_step_start, allma_module_step_complete, 0},
	{"DATA_SAVE", ALLMA_MODULE_REQUIRED, NULL, ALLMA_MODULES_DATA, NULL,
	RUNS | SENDS, allma_module_step_start, allma_module_step_complete, 0},
	{"DATA_TRANSFORMATION", ALLMA_MODULE_REQUIRED, NULL, ALLMA_MODULES_TRANSFORM, NULL,
	RUNS | SENDS, allma_module_step_start, allma_module_step_complete, 0},
	{"FILE_DOWNLOAD", ALLMA_MODULE_FIXED, "system/file-download", 0, allma_check_file_download,
	SENDS, allma_file_download_start, allma_file_download_complete, 0},
	{"LLM_INVOCATION", ALLMA_MODULE_NONE, "system/llm-invocation", 0, allma_check_llm_invocation,
	SENDS, allma_llm_step_start, allma_llm_step_complete, 0},
	{"PARALLEL_FORK_MANAGER", ALLMA_MODULE_NONE, "system/parallel-fork-manager", 0, allma_check_parallel,
	RUNS | FORKS, allma_fork_start, allma_fork_join, 0},
	{"START_SUB_FLOW", ALLMA_MODULE_NONE, "system/start-sub-flow", 0, allma_check_start_sub_flow,
	RUNS | PARKS, allma_subflow_start, allma_subflow_complete, 0},
	{"START_FLOW_EXECUTION", ALLMA_MODULE_FIXED, "system/start-flow-execution", 0, allma_check_start_flow_execution,
	RUNS | PARKS, allma_subflow_start, allma_subflow_complete, 0},
	{"API_CALL", ALLMA_MODULE_NONE, "system/api-call", 0, allma_check_api_call,
	SENDS, allma_api_call_start, allma_api_call_complete, 0},
	{"MCP_CALL", ALLMA_MODULE_NONE, "system/mcp-call", 0, allma_check_mcp_call,
	SENDS, allma_mcp_call_start, allma_mcp_call_complete, 0},
	{"WAIT_FOR_EXTERNAL_EVENT", ALLMA_MODULE_NONE, "system/wait-for-external-event", 0, allma_check_wait,
	RUNS | PARKS, allma_wait_step_start, NULL, 0},
	{"POLL_EXTERNAL_API", ALLMA_MODULE_NONE, "system/poll-external-api", 0, allma_check_poll,
	SENDS, allma_poll_start, allma_poll_complete, ALLMA_STEP_POLLS},
	{"SQS_SEND", ALLMA_MODULE_FIXED, "system/sqs-send", 0, allma_check_sqs_send,
	0, allma_step_unsupported, NULL, 0},
	{"SNS_PUBLISH", ALLMA_MODULE_FIXED, "system/sns-publish", 0, allma_check_sns_publish,
	0, allma_step_unsupported, NULL, 0},
	{"EMAIL", ALLMA_MODULE_NONE, "system/email-send", 0, allma_check_email,
	SENDS, allma_email_step_start, allma_email_step_complete, 0},
	{"EMAIL_START_POINT", ALLMA_MODULE_NONE, "system/email-start-point", 0, allma_check_email_start_point,
	RUNS, allma_step_pass_input, NULL, 0},
	{"SCHEDULE_START_POINT", ALLMA_MODULE_NONE, "system/schedule-start-point", 0, allma_check_schedule_start_point,
	RUNS, allma_step_pass_input, NULL, 0},
};

const int	allma_nstep_types = lengthof(allma_step_types);

/* a stepType that is not in the table (validation rejects it) */
const AllmaStepType allma_step_type_unknown = {
	"(unknown)", ALLMA_MODULE_NONE, NULL, 0, NULL,
	0, allma_step_unsupported, NULL, 0
};

/*
 * allma_step_type_find returns the row of stepType "name", NULL when allma
 * does not know it.  Called when a flow is parsed into the cache and when
 * a definition is validated, never per step run.
 */
const AllmaStepType *
allma_step_type_find(const char *name)
{
	if (name == NULL)
		return NULL;
	for (int i = 0; i < allma_nstep_types; i++)
	{
		if (strcmp(allma_step_types[i].name, name) == 0)
			return &allma_step_types[i];
	}
	return NULL;
}

/* ----------------------------------------------------------------
 * Context and templates
 * ----------------------------------------------------------------
 */

/*
 * allma_timestamp_iso: ts as Allma writes times (JavaScript's
 * toISOString(): UTC, milliseconds), or with microseconds
 */
char *
allma_timestamp_iso(TimestampTz ts, bool micro)
{
	struct pg_tm tm;
	fsec_t		fsec;

	if (timestamp2tm(ts, NULL, &tm, &fsec, NULL, NULL) != 0)
		return pstrdup("");
	if (micro)
		return psprintf("%04d-%02d-%02dT%02d:%02d:%02d.%06dZ",
						tm.tm_year, tm.tm_mon, tm.tm_mday,
						tm.tm_hour, tm.tm_min, tm.tm_sec, (int) fsec);
	return psprintf("%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
					tm.tm_year, tm.tm_mon, tm.tm_mday,
					tm.tm_hour, tm.tm_min, tm.tm_sec, (int) (fsec / 1000));
}

static Jsonb *
uuid_jsonb(pg_uuid_t *id)
{
	return allma_jsonb_string(DatumGetCString(DirectFunctionCall1(uuid_out, UUIDPGetDatum(id))));
}

/* runtime_pair pushes one key and its value into the runtime object being built */
static void
runtime_pair(JsonbParseState **state, const char *key, Jsonb *value)
{
	JsonbValue	k;

	k.type = jbvString;
	k.val.string.val = (char *) key;
	k.val.string.len = strlen(key);
	pushJsonbValue(state, WJB_KEY, &k);
	allma_jsonb_push(state, WJB_VALUE, value);
}

/*
 * allma_runtime_state: Allma's FlowRuntimeState fields a flow may read
 * (README, docs/subflows.md): identity, position, timing, progress, tree
 * linkage and, under _internal, when the current step began.
 */
Jsonb *
allma_runtime_state(AllmaPathState *ps)
{
	JsonbParseState *state = NULL;
	const char *kind;

	/* built in one pass (each key set on its own re-serialized the object) */
	pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
	runtime_pair(&state, "flowExecutionId", uuid_jsonb(&ps->execution_id));
	runtime_pair(&state, "flowDefinitionId", allma_jsonb_string(ps->flow->flow_id));
	runtime_pair(&state, "flowDefinitionVersion", allma_jsonb_int(ps->flow->version));
	runtime_pair(&state, "enableExecutionLogs", allma_jsonb_bool(ps->logs));
	if (ps->step_id)
		runtime_pair(&state, "currentStepInstanceId", allma_jsonb_string(ps->step_id));
	if (ps->branch_id)
		runtime_pair(&state, "branchId", allma_jsonb_string(ps->branch_id));
	runtime_pair(&state, "startTime",
				 allma_jsonb_string(allma_timestamp_iso(ps->execution_started_at, false)));
	runtime_pair(&state, "status", allma_jsonb_string("RUNNING"));
	runtime_pair(&state, "completedStepCount", allma_jsonb_int(ps->step_count));
	if (ps->transition_counts != NULL)
		runtime_pair(&state, "transitionCounts", ps->transition_counts);

	/* the execution tree */
	runtime_pair(&state, "rootFlowExecutionId", uuid_jsonb(&ps->root_execution_id));
	if (ps->has_parent)
		runtime_pair(&state, "parentFlowExecutionId", uuid_jsonb(&ps->parent_execution_id));
	runtime_pair(&state, "depth", allma_jsonb_int(ps->depth));
	if (ps->is_branch)
		kind = "PARALLEL_BRANCH";
	else if (!ps->has_parent)
		kind = "ROOT";
	else
		kind = ps->sync_child ? "SYNC_SUBFLOW" : "ASYNC_SUBFLOW";
	runtime_pair(&state, "executionKind", allma_jsonb_string(kind));

	if (ps->step_started_at != 0)
		runtime_pair(&state, "_internal",
					 allma_jsonb_set_key(NULL, "currentStepStartTime",
										 allma_jsonb_string(allma_timestamp_iso(ps->step_started_at,
																				false))));
	return JsonbValueToJsonb(pushJsonbValue(&state, WJB_END_OBJECT, NULL));
}

Jsonb *
allma_step_runtime(StepRun *run)
{
	if (run->runtime == NULL)
		run->runtime = allma_runtime_state(run->ps);
	return run->runtime;
}

/* value at an input-mapping path: the context first, then the runtime state */
Jsonb *
allma_step_lookup(StepRun *run, const char *path)
{
	Jsonb	   *v = allma_path_get(run->ps->context, path);

	if (v == NULL)
		v = allma_path_get(allma_step_runtime(run), path);
	return v;
}

/* the document templates see: {...context, ...runtimeState, ...stepInput} */
Jsonb *
allma_step_template_context(StepRun *run)
{
	return allma_jsonb_merge3(run->ps->context, allma_step_runtime(run), run->input);
}

/* module input: rendered customConfig with the step input merged over it */
Jsonb *
allma_step_module_input(StepRun *run)
{
	Jsonb	   *cfg = run->step->custom_config;

	if (cfg == NULL)
		return run->input;
	/* the template context is built only for a customConfig that has templates */
	if (allma_template_value_needs_render(cfg))
		cfg = allma_template_render_value(cfg, allma_step_template_context(run));
	if (!allma_jsonb_is_object(cfg))
		cfg = allma_jsonb_empty_object();
	return allma_jsonb_concat(cfg, run->input);
}

/*
 * allma_step_mapping_values: Allma's TemplateContextMappingItem objects
 * ({sourceJsonPath, formatAs RAW|JSON}) evaluated over ctx, as an object
 */
Jsonb *
allma_step_mapping_values(Jsonb *mappings, Jsonb *ctx)
{
	Jsonb	   *values = allma_jsonb_empty_object();
	List	   *keys = allma_jsonb_object_keys(mappings);
	ListCell   *lc;

	foreach(lc, keys)
	{
		char	   *key = lfirst(lc);
		Jsonb	   *item = allma_jsonb_get(mappings, key);
		char	   *path = allma_jsonb_is_object(item) ?
			allma_jsonb_get_cstring(item, "sourceJsonPath") :
			allma_jsonb_get_cstring(mappings, key);
		char	   *format = allma_jsonb_is_object(item) ? allma_jsonb_get_cstring(item, "formatAs") : NULL;
		Jsonb	   *v = path ? allma_path_get(ctx, path) : NULL;

		if (v == NULL)
			continue;
		if (format != NULL && strcmp(format, "JSON") == 0)
			v = allma_jsonb_string(allma_jsonb_to_cstring(v));
		values = allma_jsonb_set_key(values, key, v);
	}
	return values;
}

/* allma_step_timeout_ms: customConfig.timeoutMs (rendered), else allma.http_timeout */
int64
allma_step_timeout_ms(StepRun *run)
{
	double		timeout_ms = allma_http_timeout_ms;

	if (run->step->custom_config != NULL)
		(void) allma_jsonb_get_number(allma_template_render_value(run->step->custom_config,
																  allma_step_template_context(run)),
									  "timeoutMs", &timeout_ms);
	return (int64) timeout_ms;
}

/* ----------------------------------------------------------------
 * The request a step leaves for the worker
 * ----------------------------------------------------------------
 */

/*
 * Idempotency keys.  A key names one request: a server that honours it
 * answers a re-send of that request (after a crash, a lost response) with
 * its first answer.  So a re-send keeps its key (it is stored with the
 * request), and each distinct request of an attempt gets its own: the
 * first is execution/step/attempt (allma_step_idempotency_key), later ones
 * add what they are (allma_step_request_key): "/poll-N" for the Nth poll
 * of a POLL_EXTERNAL_API step, "/fallback-N" for an LLM step's Nth
 * fallback model, "/initialize", "/initialized" and "/after-initialize"
 * for the phases of an MCP session handshake and the call that follows it.
 */
char *
allma_step_request_key(AllmaPathState *ps, AllmaStep *step, const char *request)
{
	char	   *key = allma_step_idempotency_key(ps, step);

	return request ? psprintf("%s/%s", key, request) : key;
}

char *
allma_step_idempotency_key(AllmaPathState *ps, AllmaStep *step)
{
	char	   *exec = DatumGetCString(DirectFunctionCall1(uuid_out,
														   UUIDPGetDatum(&ps->execution_id)));

	if (ps->is_branch)
		return psprintf("%s/%lld:%s/%d", exec, (long long) ps->path_id, step->id, ps->attempt);
	return psprintf("%s/%s/%d", exec, step->id, ps->attempt);
}

/*
 * Secrets in headers: "{{secrets.NAME}}" in a header value of a stored
 * definition (apiStaticHeaders, an MCP connection's headers, an HTTP
 * binding's) becomes a mark before templates are rendered, and each mark
 * becomes the secret's value only in the headers that are sent, once the
 * use is allowed; the stored request says "[redacted]" (secret_use.c).
 */

/* allma_step_secret_use: who uses a secret in this step, sent to url */
AllmaSecretUse
allma_step_secret_use(StepRun *run, const char *url)
{
	AllmaSecretUse use = {run->ps->run_as, run->ps->flow->flow_id, run->ps->flow->version, url};

	return use;
}

/*
 * allma_step_set_io_request stores req as the path's request to send, and
 * the headers with secrets resolved, when there are any, as the ones really
 * sent.  headers may contain secret marks (allma_secret_mark_refs); req
 * gets them redacted, the headers sent get the values if the step may use
 * them.
 */
void
allma_step_set_io_request(StepRun *run, Jsonb *req, Jsonb *headers)
{
	bool		any = false;
	Jsonb	   *sent = NULL;
	MemoryContext oldcxt;
	AllmaSecretUse use = allma_step_secret_use(run, allma_jsonb_get_cstring(req, "url"));

	req = allma_jsonb_set_key(req, "headers", allma_secret_resolve_headers(headers, NULL, &any));
	if (any)
		sent = allma_secret_resolve_headers(headers, &use, &any);
	oldcxt = MemoryContextSwitchTo(run->pathcxt);
	run->ps->io_request = allma_step_copy_jsonb(req);
	run->ps->io_send_headers = allma_step_copy_jsonb(sent);
	MemoryContextSwitchTo(oldcxt);
	run->io = true;
}

void
allma_engine_http_request(AllmaPathState *ps, AllmaHttpRequest *r)
{
	Jsonb	   *req = ps->io_request;
	double		timeout_ms = 0;
	double		max_bytes = 0;

	memset(r, 0, sizeof(*r));
	r->url = ps->io_send_url ? ps->io_send_url : allma_jsonb_get_cstring(req, "url");
	r->body = allma_jsonb_get_cstring(req, "body");
	if (allma_jsonb_get(req, "mailFrom") != NULL)
	{
		/* an EMAIL step's message, see build_email */
		List	   *rcpt = allma_jsonb_array_elements(allma_jsonb_get(req, "rcpt"));
		const char **addrs = palloc(sizeof(char *) * Max(list_length(rcpt), 1));
		ListCell   *lc;

		foreach(lc, rcpt)
			addrs[r->nmail_rcpt++] = allma_jsonb_to_display_text(lfirst(lc));
		r->mail_from = allma_jsonb_get_cstring(req, "mailFrom");
		r->mail_rcpt = addrs;
		r->body = ps->io_send_body ? ps->io_send_body : allma_jsonb_get_cstring(req, "message");
		if (ps->io_send_password != NULL)
		{
			r->username = allma_smtp_username;
			r->password = ps->io_send_password;
		}
	}
	else
	{
		Jsonb	   *hdrs = ps->io_send_headers ? ps->io_send_headers : allma_jsonb_get(req, "headers");
		List	   *names = allma_jsonb_object_keys(hdrs);
		AllmaHttpHeader *headers = palloc(sizeof(AllmaHttpHeader) * Max(list_length(names), 1));
		ListCell   *lc;

		foreach(lc, names)
		{
			headers[r->nheaders].name = lfirst(lc);
			headers[r->nheaders].value =
				allma_jsonb_to_display_text(allma_jsonb_get(hdrs, lfirst(lc)));
			r->nheaders++;
		}
		r->headers = headers;
		r->method = allma_jsonb_get_cstring(req, "method");
		r->idempotency_key = allma_jsonb_get_cstring(req, "idempotencyKey");
		(void) allma_jsonb_get_number(req, "timeoutMs", &timeout_ms);
		r->timeout_ms = (long) timeout_ms;
		if (allma_jsonb_get_number(req, "maxResponseBytes", &max_bytes) && max_bytes > 0)
			r->max_response_bytes = (size_t) max_bytes;
	}
	r->body_len = r->body ? strlen(r->body) : 0;
}

/*
 * allma_step_check_io_request: the request a step is about to leave for the
 * worker must be one the HTTP client accepts (a header value rendered from
 * the context may hold a line break, say); if not, the step fails now, in
 * its transaction, instead of the worker failing to send it.
 */
void
allma_step_check_io_request(StepRun *run)
{
	AllmaHttpRequest r;
	char	   *error = NULL;
	char	   *detail = NULL;

	allma_engine_http_request(run->ps, &r);
	if (!allma_http_check_request(&r, &error, &detail))
		allma_step_raise_error(ALLMA_ERR_PERMANENT,
							   psprintf("step \"%s\" cannot send its request: %s%s%s", run->step->id,
										error, detail ? " " : "", detail ? detail : ""),
							   allma_jsonb_empty_object());
}

/* ----------------------------------------------------------------
 * Errors and responses
 * ----------------------------------------------------------------
 */

/*
 * allma_step_error_sqlstate: the SQLSTATE of an error allma raises by name,
 * as the README maps them (LM200..LM203); any other name is LM200.
 */
int
allma_step_error_sqlstate(const char *name)
{
	if (strcmp(name, ALLMA_ERR_TRANSIENT) == 0)
		return ERRCODE_ALLMA_TRANSIENT_STEP_ERROR;
	if (strcmp(name, ALLMA_ERR_RETRYABLE) == 0)
		return ERRCODE_ALLMA_RETRYABLE_STEP_ERROR;
	if (strcmp(name, ALLMA_ERR_CONTENT) == 0)
		return ERRCODE_ALLMA_CONTENT_ERROR;
	return ERRCODE_ALLMA_PERMANENT_STEP_ERROR;
}

/* allma_step_raise_error: an Allma error with details, through the DETAIL JSON convention */
void
allma_step_raise_error(const char *name, const char *message, Jsonb *details)
{
	Jsonb	   *detail = allma_jsonb_set_key(NULL, "errorName", allma_jsonb_string(name));

	/* a server may echo what it was sent, credentials included */
	message = allma_secret_redact(message);
	detail = allma_jsonb_set_key(detail, "errorDetails", allma_secret_redact_jsonb(details));
	ereport(ERROR,
			(errcode(allma_step_error_sqlstate(name)),
			 errmsg_internal("%s", message),
			 errdetail_internal("%s", allma_jsonb_to_cstring(detail))));
}

void
allma_step_raise_config_error(const char *message)
{
	allma_step_raise_error(ALLMA_ERR_CONFIG, message, allma_jsonb_empty_object());
}

/*
 * allma_step_raise_for_transfer throws the Allma error of a failed transfer
 * or an unacceptable status: refused destinations and oversize bodies are
 * permanent, other transfer failures (timeouts, connection errors) and
 * 429/5xx transient, other statuses from "bad_status" on permanent.  Returns
 * the details object (status, url) when the response is usable.  "what"
 * prefixes the messages ("MCP call"); "" for API_CALL's own.
 */
Jsonb *
allma_step_raise_for_transfer(AllmaHttpCompletion *c, int bad_status, const char *what)
{
	Jsonb	   *details = allma_jsonb_empty_object();

	details = allma_jsonb_set_key(details, "status", allma_jsonb_int(c->status));
	details = allma_jsonb_set_key(details, "url", allma_jsonb_string(c->effective_url ? c->effective_url : ""));
	if (c->retry_after_ms >= 0)
	{
		/* a server cannot park a step for longer than allma.max_retry_after */
		details = allma_jsonb_set_key(details, "retryAfterMs",
									  allma_jsonb_int(Min(c->retry_after_ms, (long) allma_max_retry_after_ms)));
		if (c->retry_after_ms > allma_max_retry_after_ms)
			details = allma_jsonb_set_key(details, "retryAfterRequestedMs", allma_jsonb_int(c->retry_after_ms));
	}
	if (c->error != NULL)
	{
		details = allma_jsonb_set_key(details, "curlCode", allma_jsonb_int(c->curl_code));
		details = allma_jsonb_set_key(details, "timedOut", allma_jsonb_bool(c->timed_out));
		if (c->refused_destination)
			allma_step_raise_error(ALLMA_ERR_PERMANENT,
								   psprintf("%s%srequest refused: %s", what, *what ? " " : "", c->error),
								   details);
		if (c->too_large)
			allma_step_raise_error(ALLMA_ERR_PERMANENT,
								   psprintf("%s%sresponse too large: %s", what, *what ? " " : "", c->error),
								   details);
		allma_step_raise_error(ALLMA_ERR_TRANSIENT,
							   *what ? psprintf("%s request failed: %s", what, c->error) : c->error,
							   details);
	}
	if (c->status >= bad_status || c->status < 200)
	{
		/* an excerpt of a text body helps; binary bodies are left out */
		if (c->body_len > 0)
		{
			size_t		len;
			char	   *text = allma_step_response_text(c, &len);

			details = allma_jsonb_set_key(details, "body",
										  allma_jsonb_string_len(text, pg_mbcliplen(text, (int) Min(len, 4000), 1000)));
		}
		allma_step_raise_error(c->status == 429 || c->status >= 500 ? ALLMA_ERR_TRANSIENT : ALLMA_ERR_PERMANENT,
							   psprintf("%s%sHTTP %d from %s", what, *what ? " failed: " : "", c->status,
										c->effective_url ? c->effective_url : "server"),
							   details);
	}
	return details;
}

/*
 * allma_step_response_text: the response body as valid text of the
 * database encoding, NULs and invalid bytes replaced (text_valid.h); a
 * copy when anything was replaced (c, held across passes, is left as is).
 */
char *
allma_step_response_text(AllmaHttpCompletion *c, size_t *len)
{
	return allma_text_make_valid(c->body, c->body_len, len, NULL);
}

/*
 * allma_step_response_data: the body parsed when it is JSON, else as a
 * string; valid text either way (allma_step_response_text).
 */
Jsonb *
allma_step_response_data(AllmaHttpCompletion *c)
{
	size_t		len;
	char	   *text = allma_step_response_text(c, &len);
	Jsonb	   *data = len > 0 ? allma_step_parse_json(text) : NULL;

	return data ? data : allma_jsonb_string_len(text, len);
}

/* allma_step_parse_json: s parsed as JSON, or NULL when it is not JSON */
Jsonb *
allma_step_parse_json(const char *s)
{
	MemoryContext cxt = CurrentMemoryContext;
	Jsonb	   *volatile result = NULL;

	PG_TRY();
	{
		result = allma_jsonb_parse(s);
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cxt);
		FlushErrorState();
		result = NULL;
	}
	PG_END_TRY();
	return result;
}

/* ----------------------------------------------------------------
 * User code and memory
 * ----------------------------------------------------------------
 */

/*
 * allma_step_enter_user_code switches to the execution's starter role for
 * user code and arms the step's SQL timeout (steps/sql.c);
 * allma_step_leave_user_code disarms it, switches back and undoes GUC
 * changes.  On error the subtransaction abort restores all three.
 */
void
allma_step_enter_user_code(StepRun *run, AllmaUserCodeState *st)
{
	allma_user_code_guard(run->ps->run_as, run->step->id);
	/* user SQL may wait on locks for long: not on a worker's turn */
	allma_worker_give_back_turn();
	GetUserIdAndSecContext(&st->save_userid, &st->save_sec);
	SetUserIdAndSecContext(run->ps->run_as,
						   st->save_sec | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	st->save_nestlevel = NewGUCNestLevel();
	allma_sql_timeout_begin(run->step->id, run->step->custom_config);
}

void
allma_step_leave_user_code(AllmaUserCodeState *st)
{
	allma_sql_timeout_end();
	AtEOXact_GUC(false, st->save_nestlevel);
	SetUserIdAndSecContext(st->save_userid, st->save_sec);
}

Jsonb *
allma_step_copy_jsonb(Jsonb *jb)
{
	Jsonb	   *copy;

	if (jb == NULL)
		return NULL;
	copy = palloc(VARSIZE(jb));
	memcpy(copy, jb, VARSIZE(jb));
	return copy;
}
