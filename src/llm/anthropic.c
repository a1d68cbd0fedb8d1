/*-------------------------------------------------------------------------
 *
 * anthropic.c
 *	  Anthropic's messages API.
 *
 * POST {baseUrl}/messages with the key in x-api-key and an
 * anthropic-version header (customConfig.anthropic_version, default
 * ALLMA_LLM_ANTHROPIC_DEFAULT_VERSION).  max_tokens is required there:
 * ALLMA_LLM_ANTHROPIC_DEFAULT_MAX_TOKENS when the step gives none.  seed is
 * not sent; there is no JSON mode (allma_llm_json_output does the work).
 * Built-in tool: web_search.  The reply gives no token total; provider.c
 * adds input and output.
 *
 * IDENTIFICATION
 *	  src/llm/anthropic.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "allma.h"
#include "provider.h"

#define ALLMA_LLM_ANTHROPIC_DEFAULT_VERSION		"2023-06-01"
#define ALLMA_LLM_ANTHROPIC_DEFAULT_MAX_TOKENS	4096

static void
anthropic_body(JsonWriter *w, LlmCall *c, List *tools, const char *choice,
			   const char *choice_name)
{
	ListCell   *lc;

	jw_open(w, '{');
	jw_kv_string(w, "model", c->model);
	jw_key(w, "max_tokens");
	if (c->params.max_tokens)
		jw_jsonb(w, c->params.max_tokens);
	else
		jw_int(w, ALLMA_LLM_ANTHROPIC_DEFAULT_MAX_TOKENS);
	if (c->system != NULL && c->system[0] != '\0')
		jw_kv_string(w, "system", c->system);
	jw_key(w, "messages");
	jw_open(w, '[');
	jw_open(w, '{');
	jw_kv_string(w, "role", "user");
	jw_kv_string(w, "content", c->prompt);
	jw_close(w, '}');
	jw_close(w, ']');

	if (c->params.temperature)
		jw_kv_jsonb(w, "temperature", c->params.temperature);
	if (c->params.top_p)
		jw_kv_jsonb(w, "top_p", c->params.top_p);
	if (c->params.top_k)
		jw_kv_jsonb(w, "top_k", c->params.top_k);
	if (c->params.stop != NIL)
		allma_llm_write_stop_array(w, "stop_sequences", c->params.stop);

	if (tools != NIL)
	{
		jw_key(w, "tools");
		jw_open(w, '[');
		foreach(lc, tools)
		{
			LlmTool    *t = lfirst(lc);

			jw_open(w, '{');
			if (strcmp(t->type, "web_search") == 0)
			{
				/* Anthropic's server tool; its config keys go in as they are */
				jw_kv_string(w, "type", "web_search_20250305");
				jw_kv_string(w, "name", "web_search");
				if (t->config)
				{
					ListCell   *kc;

					foreach(kc, allma_jsonb_object_keys(t->config))
					{
						char	   *k = lfirst(kc);

						if (strcmp(k, "type") != 0 && strcmp(k, "name") != 0)
							jw_kv_jsonb(w, k, allma_jsonb_get(t->config, k));
					}
				}
			}
			else
			{
				jw_kv_string(w, "name", t->name);
				if (t->description)
					jw_kv_string(w, "description", t->description);
				jw_kv_jsonb(w, "input_schema", t->parameters ? t->parameters : allma_llm_empty_schema());
			}
			jw_close(w, '}');
		}
		jw_close(w, ']');
		if (choice != NULL)
		{
			jw_key(w, "tool_choice");
			jw_open(w, '{');
			if (strcmp(choice, "function") == 0)
			{
				jw_kv_string(w, "type", "tool");
				jw_kv_string(w, "name", choice_name);
			}
			else
				jw_kv_string(w, "type",
							 strcmp(choice, "required") == 0 ? "any" : choice);
			jw_close(w, '}');
		}
	}
	jw_close(w, '}');
}

/* the URL, headers and body of a call */
static char *
anthropic_request(LlmCall *c, List *tools, const char *choice, const char *choice_name,
				  bool have_key, JsonWriter *w, List **headers)
{
	if (have_key)
		*headers = allma_llm_add_header(*headers, "x-api-key", c->api_key);
	*headers = allma_llm_add_header(*headers, "anthropic-version",
									c->anthropic_version ? c->anthropic_version :
									ALLMA_LLM_ANTHROPIC_DEFAULT_VERSION);
	anthropic_body(w, c, tools, choice, choice_name);
	return psprintf("%s/messages", c->base_url);
}

static void
parse_anthropic(Jsonb *doc, LlmResult *r)
{
	ListCell   *lc;

	foreach(lc, allma_jsonb_array_elements(allma_jsonb_get(doc, "content")))
	{
		Jsonb	   *block = lfirst(lc);
		char	   *type = allma_jsonb_get_cstring(block, "type");

		if (type == NULL)
			continue;
		if (strcmp(type, "text") == 0)
			allma_llm_add_text(r, allma_jsonb_get(block, "text"));
		else if (strcmp(type, "tool_use") == 0)
			allma_llm_add_tool_call(r, allma_jsonb_get(block, "id"),
									allma_jsonb_get(block, "name"),
									allma_jsonb_get(block, "input"));
	}
	allma_llm_add_usage(r, "inputTokens", allma_jsonb_get(doc, "usage"), "input_tokens");
	allma_llm_add_usage(r, "outputTokens", allma_jsonb_get(doc, "usage"), "output_tokens");
	r->finish_reason = allma_jsonb_get(doc, "stop_reason");
	r->model = allma_jsonb_get(doc, "model");
}

const AllmaLlmProvider allma_llm_anthropic = {
	.name = "ANTHROPIC",
	.label = "Anthropic",
	.default_base_url = "https://api.anthropic.com/v1",
	.base_url_guc = &allma_anthropic_base_url,
	.api_key_secret = "ANTHROPIC_API_KEY",
	.builtin_tools = (const char *const[]) {"web_search", NULL},
	.error_kind_keys = (const char *const[]) {"code", "type", NULL},
	.write_request = anthropic_request,
	.parse_response = parse_anthropic,
};
