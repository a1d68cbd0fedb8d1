/*-------------------------------------------------------------------------
 *
 * gemini.c
 *	  Google's Gemini generateContent API.
 *
 * POST {baseUrl}/models/{model}:generateContent with the key in
 * x-goog-api-key; the system prompt is systemInstruction, parameters go in
 * generationConfig, JSON mode is responseMimeType application/json, and
 * safetySettings pass through.  Built-in tools: google_search and
 * code_execution.  A prompt Gemini blocks is a PermanentStepError;
 * thinking summaries are not part of the answer.
 *
 * IDENTIFICATION
 *	  src/llm/gemini.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "allma.h"
#include "provider.h"

static void
gemini_body(JsonWriter *w, LlmCall *c, List *tools, const char *choice,
			const char *choice_name)
{
	ListCell   *lc;
	bool		any_functions = false;
	LlmParams  *p = &c->params;

	jw_open(w, '{');
	jw_key(w, "contents");
	jw_open(w, '[');
	jw_open(w, '{');
	jw_kv_string(w, "role", "user");
	jw_key(w, "parts");
	jw_open(w, '[');
	jw_open(w, '{');
	jw_kv_string(w, "text", c->prompt);
	jw_close(w, '}');
	jw_close(w, ']');
	jw_close(w, '}');
	jw_close(w, ']');

	if (c->system != NULL && c->system[0] != '\0')
	{
		jw_key(w, "systemInstruction");
		jw_open(w, '{');
		jw_key(w, "parts");
		jw_open(w, '[');
		jw_open(w, '{');
		jw_kv_string(w, "text", c->system);
		jw_close(w, '}');
		jw_close(w, ']');
		jw_close(w, '}');
	}

	if (p->temperature || p->max_tokens || p->top_p || p->top_k || p->seed ||
		p->stop != NIL || c->json_mode)
	{
		jw_key(w, "generationConfig");
		jw_open(w, '{');
		if (p->temperature)
			jw_kv_jsonb(w, "temperature", p->temperature);
		if (p->max_tokens)
			jw_kv_jsonb(w, "maxOutputTokens", p->max_tokens);
		if (p->top_p)
			jw_kv_jsonb(w, "topP", p->top_p);
		if (p->top_k)
			jw_kv_jsonb(w, "topK", p->top_k);
		if (p->seed)
			jw_kv_jsonb(w, "seed", p->seed);
		if (p->stop != NIL)
			allma_llm_write_stop_array(w, "stopSequences", p->stop);
		if (c->json_mode)
			jw_kv_string(w, "responseMimeType", "application/json");
		jw_close(w, '}');
	}

	if (c->safety_settings)
		jw_kv_jsonb(w, "safetySettings", c->safety_settings);

	if (tools != NIL)
	{
		jw_key(w, "tools");
		jw_open(w, '[');
		foreach(lc, tools)
		{
			LlmTool    *t = lfirst(lc);

			if (strcmp(t->type, "function") == 0)
			{
				any_functions = true;
				continue;
			}
			jw_open(w, '{');
			jw_key(w, strcmp(t->type, "google_search") == 0 ?
				   "googleSearch" : "codeExecution");
			if (t->config)
				jw_jsonb(w, t->config);
			else
				jw_raw(w, "{}");
			jw_close(w, '}');
		}
		if (any_functions)
		{
			jw_open(w, '{');
			jw_key(w, "functionDeclarations");
			jw_open(w, '[');
			foreach(lc, tools)
			{
				LlmTool    *t = lfirst(lc);

				if (strcmp(t->type, "function") != 0)
					continue;
				jw_open(w, '{');
				jw_kv_string(w, "name", t->name);
				if (t->description)
					jw_kv_string(w, "description", t->description);
				if (t->parameters)
					jw_kv_jsonb(w, "parameters", t->parameters);
				jw_close(w, '}');
			}
			jw_close(w, ']');
			jw_close(w, '}');
		}
		jw_close(w, ']');

		if (choice != NULL && any_functions)
		{
			jw_key(w, "toolConfig");
			jw_open(w, '{');
			jw_key(w, "functionCallingConfig");
			jw_open(w, '{');
			if (strcmp(choice, "function") == 0)
			{
				jw_kv_string(w, "mode", "ANY");
				jw_key(w, "allowedFunctionNames");
				jw_open(w, '[');
				jw_string(w, choice_name);
				jw_close(w, ']');
			}
			else
				jw_kv_string(w, "mode",
							 strcmp(choice, "auto") == 0 ? "AUTO" :
							 strcmp(choice, "none") == 0 ? "NONE" : "ANY");
			jw_close(w, '}');
			jw_close(w, '}');
		}
	}
	jw_close(w, '}');
}

/* the URL, headers and body of a call */
static char *
gemini_request(LlmCall *c, List *tools, const char *choice, const char *choice_name,
			   bool have_key, JsonWriter *w, List **headers)
{
	const char *model = c->model;

	/* "models/gemini-x" is accepted as well as "gemini-x" */
	if (strncmp(model, "models/", 7) == 0)
		model += 7;
	if (have_key)
		*headers = allma_llm_add_header(*headers, "x-goog-api-key", c->api_key);
	gemini_body(w, c, tools, choice, choice_name);
	return psprintf("%s/models/%s:generateContent", c->base_url,
					allma_llm_url_escape(model));
}

static void
parse_gemini(Jsonb *doc, LlmResult *r)
{
	Jsonb	   *cand = allma_jsonb_array_element(allma_jsonb_get(doc, "candidates"), 0);
	ListCell   *lc;
	char	   *blocked = allma_llm_scalar_text(allma_llm_get_path(doc, "promptFeedback", "blockReason"));

	foreach(lc, allma_jsonb_array_elements(allma_llm_get_path(cand, "content", "parts")))
	{
		Jsonb	   *part = lfirst(lc);
		Jsonb	   *fc = allma_jsonb_get(part, "functionCall");
		bool		thought = false;

		if (allma_jsonb_get_bool(part, "thought", &thought) && thought)
			continue;			/* thinking summaries are not the answer */
		if (fc != NULL)
			allma_llm_add_tool_call(r, allma_jsonb_get(fc, "id"),
									allma_jsonb_get(fc, "name"),
									allma_jsonb_get(fc, "args"));
		else
			allma_llm_add_text(r, allma_jsonb_get(part, "text"));
	}
	allma_llm_add_usage(r, "inputTokens", allma_jsonb_get(doc, "usageMetadata"), "promptTokenCount");
	allma_llm_add_usage(r, "outputTokens", allma_jsonb_get(doc, "usageMetadata"), "candidatesTokenCount");
	allma_llm_add_usage(r, "totalTokens", allma_jsonb_get(doc, "usageMetadata"), "totalTokenCount");
	r->finish_reason = allma_jsonb_get(cand, "finishReason");
	r->model = allma_jsonb_get(doc, "modelVersion");
	r->grounding = allma_jsonb_get(cand, "groundingMetadata");
	if (blocked != NULL && cand == NULL)
	{
		r->error = psprintf("Gemini blocked the prompt (%s)", blocked);
		r->refused = true;
	}
}

const AllmaLlmProvider allma_llm_gemini = {
	.name = "GEMINI",
	.label = "Gemini",
	.default_base_url = "https://generativelanguage.googleapis.com/v1beta",
	.base_url_guc = &allma_gemini_base_url,
	.api_key_secret = "GEMINI_API_KEY",
	.builtin_tools = (const char *const[]) {"google_search", "code_execution", NULL},
	.error_kind_keys = (const char *const[]) {"status", NULL},
	.write_request = gemini_request,
	.parse_response = parse_gemini,
};
