/*-------------------------------------------------------------------------
 *
 * openai.c
 *	  OpenAI's chat completions API (and servers compatible with it).
 *
 * POST {baseUrl}/chat/completions with the key as a bearer token; the
 * system prompt is a "system" message, tools are "function" tools, JSON
 * mode is response_format json_object.  topK is not sent (OpenAI has no
 * such parameter).
 *
 * IDENTIFICATION
 *	  src/llm/openai.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "allma.h"
#include "provider.h"

static void
openai_body(JsonWriter *w, LlmCall *c, List *tools, const char *choice,
			const char *choice_name)
{
	ListCell   *lc;

	jw_open(w, '{');
	jw_kv_string(w, "model", c->model);
	jw_key(w, "messages");
	jw_open(w, '[');
	if (c->system != NULL && c->system[0] != '\0')
	{
		jw_open(w, '{');
		jw_kv_string(w, "role", "system");
		jw_kv_string(w, "content", c->system);
		jw_close(w, '}');
	}
	jw_open(w, '{');
	jw_kv_string(w, "role", "user");
	jw_kv_string(w, "content", c->prompt);
	jw_close(w, '}');
	jw_close(w, ']');

	if (c->params.max_tokens)
		jw_kv_jsonb(w, "max_tokens", c->params.max_tokens);
	if (c->params.temperature)
		jw_kv_jsonb(w, "temperature", c->params.temperature);
	if (c->params.top_p)
		jw_kv_jsonb(w, "top_p", c->params.top_p);
	if (c->params.seed)
		jw_kv_jsonb(w, "seed", c->params.seed);
	if (c->params.stop != NIL)
		allma_llm_write_stop_array(w, "stop", c->params.stop);

	if (tools != NIL)
	{
		jw_key(w, "tools");
		jw_open(w, '[');
		foreach(lc, tools)
		{
			LlmTool    *t = lfirst(lc);

			jw_open(w, '{');
			jw_kv_string(w, "type", "function");
			jw_key(w, "function");
			jw_open(w, '{');
			jw_kv_string(w, "name", t->name);
			if (t->description)
				jw_kv_string(w, "description", t->description);
			jw_kv_jsonb(w, "parameters", t->parameters ? t->parameters : allma_llm_empty_schema());
			jw_close(w, '}');
			jw_close(w, '}');
		}
		jw_close(w, ']');
		if (choice != NULL && strcmp(choice, "function") == 0)
		{
			jw_key(w, "tool_choice");
			jw_open(w, '{');
			jw_kv_string(w, "type", "function");
			jw_key(w, "function");
			jw_open(w, '{');
			jw_kv_string(w, "name", choice_name);
			jw_close(w, '}');
			jw_close(w, '}');
		}
		else if (choice != NULL)
			jw_kv_string(w, "tool_choice", choice);
	}
	if (c->json_mode)
	{
		jw_key(w, "response_format");
		jw_open(w, '{');
		jw_kv_string(w, "type", "json_object");
		jw_close(w, '}');
	}
	jw_close(w, '}');
}

/* the URL, headers and body of a call */
static char *
openai_request(LlmCall *c, List *tools, const char *choice, const char *choice_name,
			   bool have_key, JsonWriter *w, List **headers)
{
	if (have_key)
		*headers = allma_llm_add_header(*headers, "Authorization",
										psprintf("Bearer %s", c->api_key));
	openai_body(w, c, tools, choice, choice_name);
	return psprintf("%s/chat/completions", c->base_url);
}

static void
parse_openai(Jsonb *doc, LlmResult *r)
{
	Jsonb	   *choice = allma_jsonb_array_element(allma_jsonb_get(doc, "choices"), 0);
	Jsonb	   *msg = allma_jsonb_get(choice, "message");
	Jsonb	   *content = allma_jsonb_get(msg, "content");
	ListCell   *lc;

	if (allma_jsonb_is_array(content))
	{
		/* content parts [{type:"text", text}] */
		foreach(lc, allma_jsonb_array_elements(content))
			allma_llm_add_text(r, allma_jsonb_get(lfirst(lc), "text"));
	}
	else
		allma_llm_add_text(r, content);
	foreach(lc, allma_jsonb_array_elements(allma_jsonb_get(msg, "tool_calls")))
	{
		Jsonb	   *tc = lfirst(lc);

		allma_llm_add_tool_call(r, allma_jsonb_get(tc, "id"),
								allma_llm_get_path(tc, "function", "name"),
								allma_llm_get_path(tc, "function", "arguments"));
	}
	allma_llm_add_usage(r, "inputTokens", allma_jsonb_get(doc, "usage"), "prompt_tokens");
	allma_llm_add_usage(r, "outputTokens", allma_jsonb_get(doc, "usage"), "completion_tokens");
	allma_llm_add_usage(r, "totalTokens", allma_jsonb_get(doc, "usage"), "total_tokens");
	r->finish_reason = allma_jsonb_get(choice, "finish_reason");
	r->model = allma_jsonb_get(doc, "model");
}

const AllmaLlmProvider allma_llm_openai = {
	.name = "OPENAI",
	.label = "OpenAI",
	.default_base_url = "https://api.openai.com/v1",
	.base_url_guc = &allma_openai_base_url,
	.api_key_secret = "OPENAI_API_KEY",
	.builtin_tools = NULL,
	.error_kind_keys = (const char *const[]) {"code", "type", NULL},
	.write_request = openai_request,
	.parse_response = parse_openai,
};
