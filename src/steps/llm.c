/*-------------------------------------------------------------------------
 *
 * llm.c
 *	  The LLM_INVOCATION step: its model chain, its prompt, its output.
 *
 * Runs like API_CALL (request built in one pass, sent after commit,
 * answered in another), once per model of the chain: the primary
 * (llmProvider, modelId, ...) then fallbacks[] in order.  Any failure of a
 * model (HTTP error, unusable reply, invalid JSON in jsonOutputMode) moves
 * to the next one; when the last fails, its error is the step's.  The API
 * key comes from a secret (customConfig.apiKeySecret, default
 * <PROVIDER>_API_KEY) and is never stored: the stored request has it
 * redacted, the real headers only live in the worker's memory.  An OPENAI
 * step with its own customConfig.baseUrl and no apiKeySecret talks to a
 * key-less OpenAI-compatible server (llm_keyless): no key is sent.
 *
 * The providers' wire formats are in src/llm/ (llm.h).
 *
 * IDENTIFICATION
 *	  src/steps/llm.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "mb/pg_wchar.h"

#include <math.h>

#include "defcheck.h"
#include "acl.h"
#include "jsonb_util.h"
#include "llm.h"
#include "prompt.h"
#include "secret.h"
#include "steps.h"
#include "template.h"

static List *
llm_candidates(StepRun *run, Jsonb *tctx)
{
	Jsonb	   *def = run->step->def;
	Jsonb	   *primary = allma_jsonb_empty_object();
	const char *fields[] = {"llmProvider", "modelId", "inferenceParameters", "customConfig",
	"tools", "toolChoice"};
	List	   *list;
	ListCell   *lc;

	for (int i = 0; i < lengthof(fields); i++)
	{
		Jsonb	   *v = allma_jsonb_get(def, fields[i]);

		if (v != NULL)
			primary = allma_jsonb_set_key(primary, fields[i], v);
	}
	list = list_make1(primary);
	foreach(lc, allma_jsonb_array_elements(allma_jsonb_get(def, "fallbacks")))
	{
		Jsonb	   *fb = lfirst(lc);

		/* a fallback inherits what it does not say from the primary */
		list = lappend(list, allma_jsonb_concat(primary, fb));
	}
	foreach(lc, list)
		lfirst(lc) = allma_template_render_value(lfirst(lc), tctx);
	return list;
}

/* customConfig.baseUrl, else the provider's allma.*_base_url, else its public API */
static const char *
llm_base_url(const char *provider, Jsonb *candidate)
{
	Jsonb	   *cfg = allma_jsonb_get(candidate, "customConfig");
	char	   *url = cfg ? allma_jsonb_get_cstring(cfg, "baseUrl") : NULL;

	if (url != NULL && url[0] != '\0')
		return url;
	return allma_llm_base_url(provider);
}

/*
 * llm_keyless: does an OPENAI step talk to an OpenAI-compatible server that
 * needs no key (Ollama, llama.cpp, vLLM)?  When its customConfig names a
 * baseUrl other than OpenAI's and no apiKeySecret: then no key is looked up
 * and no Authorization header is sent (OPENAI_API_KEY, meant for OpenAI,
 * never goes to another server unasked).  A secret named explicitly is
 * always required.
 */
static bool
llm_keyless(const char *provider, Jsonb *cfg)
{
	char	   *url = cfg ? allma_jsonb_get_cstring(cfg, "baseUrl") : NULL;
	const char *def = allma_llm_default_base_url(provider);
	int			len;

	if (strcmp(provider, "OPENAI") != 0 || url == NULL || url[0] == '\0')
		return false;
	len = strlen(url);
	while (len > 0 && url[len - 1] == '/')
		url[--len] = '\0';
	return def == NULL || pg_strcasecmp(url, def) != 0;
}

/*
 * the rendered prompt: promptTemplateId (published version), else the step's
 * directPrompt (Allma declares it but never reads it), else customConfig.prompt
 */
static char *
llm_prompt(StepRun *run, Jsonb *tctx)
{
	char	   *template_id = allma_jsonb_get_cstring(run->step->def, "promptTemplateId");
	Jsonb	   *mappings = allma_jsonb_get(run->step->def, "templateContextMappings");
	char	   *content = NULL;

	if (allma_jsonb_is_object(mappings))
		tctx = allma_jsonb_concat(tctx, allma_step_mapping_values(mappings, run->ps->context));
	if (template_id != NULL)
	{
		/* the flow version's creator must have USAGE on the prompt */
		allma_acl_use_check(ALLMA_OBJ_PROMPT, template_id,
							allma_flow_version_creator(run->ps->flow->flow_id, run->ps->flow->version),
							false, run->step->id);
		(void) allma_prompt_get(template_id, 0, &content);
	}
	else
		content = allma_jsonb_get_cstring(run->step->def, "directPrompt");
	if (content == NULL && run->step->custom_config != NULL)
		content = allma_jsonb_get_cstring(run->step->custom_config, "prompt");
	if (content == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_ALLMA_INVALID_DEFINITION),
				 errmsg("LLM step \"%s\" has no prompt", run->step->id),
				 errhint("Set promptTemplateId (see allma_create_prompt), directPrompt or customConfig.prompt.")));
	return allma_template_render(content, tctx);
}

/* build_llm_request: the request for model "index" of the chain */
static void
build_llm_request(StepRun *run, int index, Jsonb *model_errors)
{
	Jsonb	   *tctx = allma_step_template_context(run);
	List	   *candidates = llm_candidates(run, tctx);
	Jsonb	   *cand = list_nth(candidates, index);
	char	   *provider = allma_jsonb_get_cstring(cand, "llmProvider");
	Jsonb	   *cfg = allma_jsonb_get(cand, "customConfig");
	char	   *secret_name = cfg ? allma_jsonb_get_cstring(cfg, "apiKeySecret") : NULL;
	Jsonb	   *call = allma_jsonb_empty_object();
	char	   *url,
			   *body,
			   *errmsg = NULL;
	List	   *headers;
	ListCell   *lc;
	Jsonb	   *send_headers = allma_jsonb_empty_object();
	Jsonb	   *stored_headers = allma_jsonb_empty_object();
	char	   *api_key;
	Jsonb	   *req = allma_jsonb_empty_object();
	double		timeout_ms = allma_http_timeout_ms;
	bool		json_mode = false;
	MemoryContext oldcxt;

	if (provider == NULL)
		allma_step_raise_config_error(psprintf("LLM step \"%s\" has no llmProvider", run->step->id));
	for (char *c = provider; *c; c++)
		*c = pg_toupper((unsigned char) *c);
	if (secret_name == NULL && llm_keyless(provider, cfg))
		api_key = NULL;			/* a key-less OpenAI-compatible server */
	else
	{
		AllmaSecretUse use = allma_step_secret_use(run, llm_base_url(provider, cand));

		if (secret_name == NULL)
			secret_name = allma_llm_api_key_secret(provider);
		api_key = allma_secret_get_for(secret_name, &use);
	}

	call = allma_jsonb_set_key(call, "baseUrl", allma_jsonb_string(llm_base_url(provider, cand)));
	call = allma_jsonb_set_key(call, "modelId", allma_jsonb_get(cand, "modelId"));
	if (api_key != NULL)
		call = allma_jsonb_set_key(call, "apiKey", allma_jsonb_string(api_key));
	call = allma_jsonb_set_key(call, "prompt", allma_jsonb_string(llm_prompt(run, tctx)));
	call = allma_jsonb_set_key(call, "inferenceParameters", allma_jsonb_get(cand, "inferenceParameters"));
	call = allma_jsonb_set_key(call, "tools", allma_jsonb_get(cand, "tools"));
	call = allma_jsonb_set_key(call, "toolChoice", allma_jsonb_get(cand, "toolChoice"));
	call = allma_jsonb_set_key(call, "customConfig", cfg);
	if (cfg != NULL)
	{
		(void) allma_jsonb_get_bool(cfg, "jsonOutputMode", &json_mode);
		(void) allma_jsonb_get_number(cfg, "timeoutMs", &timeout_ms);
	}
	call = allma_jsonb_set_key(call, "jsonOutputMode", allma_jsonb_bool(json_mode));

	if (!allma_llm_build_request(provider, call, &url, &headers, &body, &errmsg))
		allma_step_raise_config_error(psprintf("LLM step \"%s\": %s", run->step->id,
											   errmsg ? errmsg : "invalid call"));
	foreach(lc, headers)
	{
		AllmaHttpHeader *h = lfirst(lc);

		send_headers = allma_jsonb_set_key(send_headers, h->name, allma_jsonb_string(h->value));
		stored_headers = allma_jsonb_set_key(stored_headers, h->name,
											 allma_jsonb_string(allma_secret_redact(h->value)));
	}
	req = allma_jsonb_set_key(req, "method", allma_jsonb_string("POST"));
	req = allma_jsonb_set_key(req, "url", allma_jsonb_string(allma_secret_redact(url)));
	req = allma_jsonb_set_key(req, "headers", stored_headers);
	req = allma_jsonb_set_key(req, "body", allma_jsonb_string(body));
	req = allma_jsonb_set_key(req, "timeoutMs", allma_jsonb_int((int64) timeout_ms));
	/* each model is a new request with its own idempotency key (step.c) */
	req = allma_jsonb_set_key(req, "idempotencyKey",
							  allma_jsonb_string(allma_step_request_key(run->ps, run->step,
																		index > 0 ? psprintf("fallback-%d", index) : NULL)));
	req = allma_jsonb_set_key(req, "candidate", allma_jsonb_int(index));
	req = allma_jsonb_set_key(req, "provider", allma_jsonb_string(provider));
	req = allma_jsonb_set_key(req, "modelId", allma_jsonb_get(cand, "modelId"));
	req = allma_jsonb_set_key(req, "jsonOutputMode", allma_jsonb_bool(json_mode));
	if (model_errors != NULL)
		req = allma_jsonb_set_key(req, "modelErrors", model_errors);

	/*
	 * its rate-limit key and token estimate (ratelimit.c): the secret's
	 * name, never its value; prompt bytes / 4 + maxOutputTokens
	 */
	{
		double		max_out = 256;
		Jsonb	   *ip = allma_jsonb_get(cand, "inferenceParameters");
		char	   *model = allma_jsonb_get_cstring(cand, "modelId");

		if (ip != NULL && allma_jsonb_get_number(ip, "maxOutputTokens", &max_out))
			max_out = Max(0, Min(max_out, 1e9));
		run->rl_key = psprintf("%s:%s:%s", provider, model ? model : "",
							   api_key != NULL ? secret_name : "keyless");
		run->rl_tokens = (int64) (strlen(body) + 3) / 4 + (int64) max_out;
	}

	oldcxt = MemoryContextSwitchTo(run->pathcxt);
	run->ps->io_request = (Jsonb *) palloc(VARSIZE(req));
	memcpy(run->ps->io_request, req, VARSIZE(req));
	run->ps->io_send_headers = (Jsonb *) palloc(VARSIZE(send_headers));
	memcpy(run->ps->io_send_headers, send_headers, VARSIZE(send_headers));
	/* the URL may carry the key: the real one is only kept in memory */
	run->ps->io_send_url = pstrdup(url);
	MemoryContextSwitchTo(oldcxt);
	run->io = true;
}

Jsonb *
allma_llm_step_start(StepRun *run)
{
	build_llm_request(run, 0, NULL);
	return NULL;
}

/*
 * allma_llm_step_complete: the step output for a model's reply; NULL after moving on to
 * the next model of the chain (run->io set); throws when the last failed.
 */
Jsonb *
allma_llm_step_complete(StepRun *run)
{
	AllmaHttpCompletion *c = run->ps->response;
	Jsonb	   *prev = run->ps->prev_request;
	double		index = 0;
	char	   *provider = allma_jsonb_get_cstring(prev, "provider");
	bool		json_mode = false;
	Jsonb	   *result = NULL;
	char	   *error_name = NULL;
	char	   *errmsg = NULL;
	Jsonb	   *out = NULL;
	char	   *body;
	size_t		body_len;
	int			ncandidates = 1 + Max(allma_jsonb_array_length(allma_jsonb_get(run->step->def, "fallbacks")), 0);

	/* the reply as valid text: NULs and invalid bytes replaced (text_valid.c) */
	body = allma_step_response_text(c, &body_len);
	(void) allma_jsonb_get_number(prev, "candidate", &index);
	(void) allma_jsonb_get_bool(prev, "jsonOutputMode", &json_mode);

	if (c->error != NULL)
	{
		/*
		 * no usable response: say where to (the stored URL, secrets
		 * redacted) and what libcurl said, as API_CALL does
		 */
		char	   *url = allma_jsonb_get_cstring(prev, "url");

		error_name = pstrdup(c->refused_destination || c->too_large ?
							 ALLMA_ERR_PERMANENT : ALLMA_ERR_TRANSIENT);
		errmsg = psprintf("LLM request to %s failed: %s (curl code %d)",
						  url ? url : "?", c->error, c->curl_code);
	}
	else if (!allma_llm_parse_response(provider ? provider : "", c->error ? 0 : c->status,
									   body, &result, &error_name, &errmsg))
		;
	else
	{
		char	   *text = allma_jsonb_get_cstring(result, "text");
		Jsonb	   *tool_calls = allma_jsonb_get(result, "tool_calls");

		if (json_mode)
		{
			if (!allma_llm_json_output(text ? text : "", &out, &errmsg))
			{
				error_name = pstrdup(ALLMA_ERR_CONTENT);
				out = NULL;
			}
		}
		else
			out = allma_jsonb_set_key(NULL, "llm_response", allma_jsonb_string(text ? text : ""));
		if (out != NULL && allma_jsonb_array_length(tool_calls) > 0)
			out = allma_jsonb_set_key(out, "tool_calls", tool_calls);
		if (out != NULL)
		{
			Jsonb	   *details = allma_jsonb_empty_object();

			details = allma_jsonb_set_key(details, "provider", allma_jsonb_string(provider));
			details = allma_jsonb_set_key(details, "modelId", allma_jsonb_get(prev, "modelId"));
			details = allma_jsonb_set_key(details, "model", allma_jsonb_get(result, "model"));
			details = allma_jsonb_set_key(details, "fallbackIndex", allma_jsonb_int((int64) index));
			details = allma_jsonb_set_key(details, "tokenUsage", allma_jsonb_get(result, "usage"));
			if (run->ps->logs)
			{
				details = allma_jsonb_set_key(details, "llmPrompt", allma_jsonb_get(prev, "body"));
				details = allma_jsonb_set_key(details, "llmRawResponse",
											  allma_jsonb_string_len(body, body_len));
			}
			run->details = allma_secret_redact_jsonb(details);
			return out;
		}
	}

	/*
	 * this model failed: the next one, or the step fails.  Every model's
	 * error is kept (carried in the next request) for the step's error.
	 */
	{
		Jsonb	   *model_errors = allma_jsonb_get(prev, "modelErrors");
		Jsonb	   *this_error = allma_jsonb_empty_object();
		Jsonb	   *details;
		char	   *msg = allma_secret_redact(errmsg ? errmsg : "LLM invocation failed");

		this_error = allma_jsonb_set_key(this_error, "provider", allma_jsonb_string(provider ? provider : ""));
		this_error = allma_jsonb_set_key(this_error, "modelId", allma_jsonb_get(prev, "modelId"));
		this_error = allma_jsonb_set_key(this_error, "fallbackIndex", allma_jsonb_int((int64) index));
		this_error = allma_jsonb_set_key(this_error, "errorName",
										 allma_jsonb_string(error_name ? error_name : ALLMA_ERR_PERMANENT));
		this_error = allma_jsonb_set_key(this_error, "errorMessage",
										 allma_jsonb_string_len(msg, pg_mbcliplen(msg, strlen(msg), 1000)));
		this_error = allma_jsonb_set_key(this_error, "status", allma_jsonb_int(c->status));
		if (c->error != NULL)
		{
			this_error = allma_jsonb_set_key(this_error, "curlCode", allma_jsonb_int(c->curl_code));
			this_error = allma_jsonb_set_key(this_error, "timedOut", allma_jsonb_bool(c->timed_out));
		}
		model_errors = allma_jsonb_array_append(allma_jsonb_is_array(model_errors) ? model_errors : NULL,
												this_error);
		if (index + 1 < ncandidates)
		{
			build_llm_request(run, (int) index + 1, model_errors);
			return NULL;
		}
		details = allma_jsonb_set_key(NULL, "status", allma_jsonb_int(c->status));
		details = allma_jsonb_set_key(details, "modelId", allma_jsonb_get(prev, "modelId"));
		details = allma_jsonb_set_key(details, "url", allma_jsonb_get(prev, "url"));
		if (c->error != NULL)
		{
			details = allma_jsonb_set_key(details, "curlCode", allma_jsonb_int(c->curl_code));
			details = allma_jsonb_set_key(details, "timedOut", allma_jsonb_bool(c->timed_out));
		}
		if (ncandidates > 1)
			details = allma_jsonb_set_key(details, "modelErrors", model_errors);
		allma_step_raise_error(error_name ? error_name : ALLMA_ERR_PERMANENT, msg, details);
	}
	return NULL;
}

/* ----------------------------------------------------------------
 * The definition check
 * ----------------------------------------------------------------
 */

static const char *const tool_choices[] = {"auto", "none", "required", NULL};

/* LLM inferenceParameters (Allma's LlmParametersSchema) */
static void
check_inference_parameters(AllmaChecker *ck, JsonbContainer *obj, const char *parent)
{
	JsonbContainer *p = allma_def_get_object(ck, obj, parent, "inferenceParameters", false);
	char	   *field = allma_def_member_name(parent, "inferenceParameters");
	double		seed;

	if (p == NULL)
		return;
	allma_def_check_number_field(ck, p, field, "temperature", false, 0, false, 2,
								 ERRCODE_ALLMA_INVALID_DEFINITION);
	allma_def_check_number_field(ck, p, field, "maxOutputTokens", true, 0, true, INFINITY,
								 ERRCODE_ALLMA_INVALID_DEFINITION);
	allma_def_check_number_field(ck, p, field, "topP", false, 0, false, 1,
								 ERRCODE_ALLMA_INVALID_DEFINITION);
	allma_def_check_number_field(ck, p, field, "topK", true, 0, true, INFINITY,
								 ERRCODE_ALLMA_INVALID_DEFINITION);
	allma_def_get_number(ck, p, field, "seed", true, &seed);
}

/* llmProvider: a provider name or a template that renders to one */
static void
check_llm_provider(AllmaChecker *ck, JsonbContainer *obj, const char *parent,
				   bool required)
{
	char	   *provider = allma_def_get_string(ck, obj, parent, "llmProvider", required);

	if (provider == NULL)
		return;
	if (allma_template_has_markup(provider))
		allma_def_check_template(ck, allma_def_member_name(parent, "llmProvider"), provider);
	else
		allma_def_check_enum(ck, allma_def_member_name(parent, "llmProvider"), provider,
							 allma_llm_provider_names());
}

/* tools, toolsPath and toolChoice of an LLM step or fallback */
static void
check_llm_tools(AllmaChecker *ck, JsonbContainer *obj, const char *parent)
{
	JsonbContainer *tools = allma_def_get_array(ck, obj, parent, "tools", false);
	JsonbValue	choice;

	if (tools != NULL)
	{
		int			n;
		int			i;
		AllmaDefMember	   *elems = allma_def_members(tools, &n);

		for (i = 0; i < n; i++)
		{
			char	   *field = allma_def_element_name(allma_def_member_name(parent, "tools"), i);

			if (!allma_def_is_object(&elems[i].value))
				allma_def_error_type(ck, field, "an object", &elems[i].value);
			allma_def_get_nonempty_string(ck, elems[i].value.val.binary.data, field,
										  "type", true);
		}
	}
	allma_def_check_jsonpath_field(ck, obj, parent, "toolsPath", false);
	if (allma_def_lookup(obj, "toolChoice", &choice))
	{
		char	   *field = allma_def_member_name(parent, "toolChoice");

		if (choice.type == jbvString)
			allma_def_check_enum(ck, field, allma_def_string_value(&choice), tool_choices);
		else if (allma_def_is_object(&choice))
			allma_def_get_nonempty_string(ck, choice.val.binary.data, field, "name", true);
		else
			allma_def_error_type(ck, field, "a string or an object", &choice);
	}
}

void
allma_check_llm_invocation(AllmaChecker *ck, JsonbContainer *step)
{
	JsonbContainer *arr;
	JsonbContainer *config;

	check_llm_provider(ck, step, NULL, !ck->inherits);
	allma_def_get_template_string(ck, step, NULL, "modelId", !ck->inherits);
	allma_def_get_nonempty_string(ck, step, NULL, "promptTemplateId", false);
	allma_def_get_template_string(ck, step, NULL, "directPrompt", false);
	allma_def_check_context_mappings(ck, step, NULL, "templateContextMappings");
	check_inference_parameters(ck, step, NULL);
	check_llm_tools(ck, step, NULL);

	config = allma_def_get_object(ck, step, NULL, "customConfig", false);
	if (config != NULL)
		allma_def_get_bool(ck, config, "customConfig", "jsonOutputMode", NULL);

	arr = allma_def_get_array(ck, step, NULL, "fallbacks", false);
	if (arr != NULL)
	{
		int			n;
		int			i;
		AllmaDefMember	   *elems = allma_def_members(arr, &n);

		for (i = 0; i < n; i++)
		{
			char	   *field = allma_def_element_name("fallbacks", i);
			JsonbContainer *fb;

			if (!allma_def_is_object(&elems[i].value))
				allma_def_error_type(ck, field, "an object", &elems[i].value);
			fb = elems[i].value.val.binary.data;
			check_llm_provider(ck, fb, field, true);
			allma_def_get_template_string(ck, fb, field, "modelId", true);
			check_inference_parameters(ck, fb, field);
			check_llm_tools(ck, fb, field);
			if (allma_def_get_object(ck, fb, field, "customConfig", false) != NULL)
				allma_def_check_templates_field(ck, fb, field, "customConfig");
		}
	}

	arr = allma_def_get_array(ck, step, NULL, "mediaAttachments", false);
	if (arr != NULL)
	{
		int			n;
		int			i;
		AllmaDefMember	   *elems = allma_def_members(arr, &n);

		for (i = 0; i < n; i++)
		{
			char	   *field = allma_def_element_name("mediaAttachments", i);
			JsonbContainer *m;
			int			sources = 0;
			JsonbValue	v;

			if (!allma_def_is_object(&elems[i].value))
				allma_def_error_type(ck, field, "an object", &elems[i].value);
			m = elems[i].value.val.binary.data;
			sources += allma_def_lookup(m, "s3Pointer", &v) ? 1 : 0;
			sources += allma_def_lookup(m, "url", &v) ? 1 : 0;
			sources += allma_def_lookup(m, "base64", &v) ? 1 : 0;
			if (sources != 1)
				ereport(ERROR,
						(errcode(ERRCODE_ALLMA_INVALID_DEFINITION),
						 errmsg("%s must have exactly one of s3Pointer, url and base64",
								allma_def_where(ck, field)),
						 errdetail("It has %d of them.", sources)));
			allma_def_get_string(ck, m, field, "url", false);
			allma_def_get_string(ck, m, field, "base64", false);
			allma_def_get_string(ck, m, field, "mimeType", false);
			allma_def_check_templates_in(ck, field, &elems[i].value);
		}
	}
	allma_def_check_jsonpath_field(ck, step, NULL, "mediaAttachmentsPath", false);
}
