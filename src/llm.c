/*-------------------------------------------------------------------------
 *
 * llm.c
 *	  LLM provider adapters (OpenAI chat completions, Anthropic messages,
 *	  Gemini generateContent): request building, response parsing and
 *	  Allma's JSON output mode.  See llm.h for the call and result shapes.
 *
 * Everything here is a pure function of its inputs: no network, no SPI,
 * no transaction.  Bad input never throws; it comes back as false plus a
 * message, so the worker can turn it into the step's Allma error.
 *
 * Request bodies are written as JSON text with a small writer (the body is
 * what goes on the wire); values taken from the call (schemas, numbers)
 * are copied as jsonb prints them.  Responses are checked with PostgreSQL's
 * non-throwing JSON parser before jsonb_in sees them.
 *
 * It also owns the SQL test functions allma_llm_request_preview,
 * allma_llm_parse and allma_llm_extract_json.
 *
 * IDENTIFICATION
 *	  src/llm.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "common/jsonapi.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"

#include "http.h"
#include "jsonb_util.h"
#include "llm.h"

PG_FUNCTION_INFO_V1(allma_llm_request_preview);
PG_FUNCTION_INFO_V1(allma_llm_parse);
PG_FUNCTION_INFO_V1(allma_llm_extract_json);

typedef enum LlmProvider
{
	LLM_UNKNOWN,
	LLM_OPENAI,
	LLM_ANTHROPIC,
	LLM_GEMINI,
	LLM_UNSUPPORTED				/* an Allma provider allma does not speak (AWS_BEDROCK, CUSTOM_LAMBDA) */
} LlmProvider;

/* the longest provider error message or body excerpt put in an errmsg */
#define MAX_ERROR_TEXT 500

static LlmProvider
lookup_provider(const char *name)
{
	if (name == NULL)
		return LLM_UNKNOWN;
	if (pg_strcasecmp(name, "OPENAI") == 0)
		return LLM_OPENAI;
	if (pg_strcasecmp(name, "ANTHROPIC") == 0)
		return LLM_ANTHROPIC;
	if (pg_strcasecmp(name, "GEMINI") == 0)
		return LLM_GEMINI;
	if (pg_strcasecmp(name, "AWS_BEDROCK") == 0 ||
		pg_strcasecmp(name, "CUSTOM_LAMBDA") == 0)
		return LLM_UNSUPPORTED;
	return LLM_UNKNOWN;
}

static const char *
provider_label(LlmProvider p)
{
	switch (p)
	{
		case LLM_OPENAI:
			return "OpenAI";
		case LLM_ANTHROPIC:
			return "Anthropic";
		case LLM_GEMINI:
			return "Gemini";
		default:
			return "LLM";
	}
}

/* check the provider name; false + *errmsg when it cannot be used */
static bool
check_provider(const char *name, LlmProvider *p, char **errmsg)
{
	*p = lookup_provider(name);
	if (*p == LLM_UNSUPPORTED)
	{
		*errmsg = psprintf("LLM provider \"%s\" is not supported", name);
		return false;
	}
	if (*p == LLM_UNKNOWN)
	{
		*errmsg = psprintf("unknown LLM provider \"%s\" (expected OPENAI, ANTHROPIC or GEMINI)",
						   name ? name : "");
		return false;
	}
	return true;
}

const char *
allma_llm_default_base_url(const char *provider)
{
	switch (lookup_provider(provider))
	{
		case LLM_OPENAI:
			return "https://api.openai.com/v1";
		case LLM_ANTHROPIC:
			return "https://api.anthropic.com/v1";
		case LLM_GEMINI:
			return "https://generativelanguage.googleapis.com/v1beta";
		default:
			return NULL;
	}
}

/* ----------------------------------------------------------------
 * Non-throwing JSON parsing
 * ----------------------------------------------------------------
 */

/*
 * parse_json_soft parses len bytes of s as JSON into *out; false when they
 * are not valid JSON in the database encoding.  Only numbers beyond
 * numeric's range can still make jsonb_in throw.
 */
static bool
parse_json_soft(const char *s, int len, Jsonb **out)
{
	JsonLexContext *lex;
	char	   *copy;

	if (len <= 0 || !pg_verify_mbstr(GetDatabaseEncoding(), s, len, true))
		return false;
	copy = pnstrdup(s, len);
	if (strlen(copy) != (size_t) len)
		return false;			/* embedded NUL */
	lex = makeJsonLexContextCstringLen(copy, len, GetDatabaseEncoding(), true);
	if (pg_parse_json(lex, &nullSemAction) != JSON_SUCCESS)
		return false;
	*out = allma_jsonb_parse(copy);
	return true;
}

/* ----------------------------------------------------------------
 * A small JSON text writer
 * ----------------------------------------------------------------
 */

#define JW_MAX_DEPTH 32

typedef struct JsonWriter
{
	StringInfoData buf;
	int			depth;
	bool		after_key;
	bool		need_comma[JW_MAX_DEPTH];
} JsonWriter;

static void
jw_init(JsonWriter *w)
{
	initStringInfo(&w->buf);
	w->depth = 0;
	w->after_key = false;
}

/* separator before a value or key */
static void
jw_sep(JsonWriter *w)
{
	if (w->after_key)
	{
		w->after_key = false;
		return;
	}
	if (w->depth > 0)
	{
		if (w->need_comma[w->depth - 1])
			appendStringInfoChar(&w->buf, ',');
		w->need_comma[w->depth - 1] = true;
	}
}

static void
jw_open(JsonWriter *w, char c)
{
	jw_sep(w);
	if (w->depth >= JW_MAX_DEPTH)
		elog(ERROR, "allma: JSON writer nested too deeply");
	appendStringInfoChar(&w->buf, c);
	w->need_comma[w->depth++] = false;
}

static void
jw_close(JsonWriter *w, char c)
{
	Assert(w->depth > 0);
	w->depth--;
	appendStringInfoChar(&w->buf, c);
}

static void
jw_key(JsonWriter *w, const char *key)
{
	jw_sep(w);
	escape_json(&w->buf, key);
	appendStringInfoChar(&w->buf, ':');
	w->after_key = true;
}

static void
jw_string(JsonWriter *w, const char *s)
{
	jw_sep(w);
	escape_json(&w->buf, s);
}

static void
jw_raw(JsonWriter *w, const char *json)
{
	jw_sep(w);
	appendStringInfoString(&w->buf, json);
}

static void
jw_jsonb(JsonWriter *w, Jsonb *v)
{
	jw_raw(w, allma_jsonb_to_cstring(v));
}

static void
jw_int(JsonWriter *w, int64 i)
{
	jw_sep(w);
	appendStringInfo(&w->buf, INT64_FORMAT, i);
}

/* shorthands for "key": value */
static void
jw_kv_string(JsonWriter *w, const char *key, const char *s)
{
	jw_key(w, key);
	jw_string(w, s);
}

static void
jw_kv_jsonb(JsonWriter *w, const char *key, Jsonb *v)
{
	jw_key(w, key);
	jw_jsonb(w, v);
}

/* ----------------------------------------------------------------
 * Reading the call
 * ----------------------------------------------------------------
 */

typedef struct LlmParams
{
	Jsonb	   *temperature;	/* numeric scalars, or NULL when not given */
	Jsonb	   *top_p;
	Jsonb	   *max_tokens;
	Jsonb	   *top_k;
	Jsonb	   *seed;
	List	   *stop;			/* of char * */
} LlmParams;

typedef struct LlmCall
{
	LlmProvider provider;
	char	   *base_url;		/* without trailing slashes */
	char	   *model;
	char	   *api_key;		/* NULL or "" when none */
	char	   *prompt;
	char	   *system;
	LlmParams	params;
	Jsonb	   *tools;			/* array or NULL */
	Jsonb	   *tool_choice;	/* NULL when absent */
	bool		json_mode;
	char	   *anthropic_version;
	Jsonb	   *safety_settings;
} LlmCall;

/* true when s is a JSON number (RFC 8259 grammar) */
static bool
is_json_number(const char *s)
{
	const char *p = s;

	if (*p == '-')
		p++;
	if (*p == '0')
		p++;
	else if (isdigit((unsigned char) *p))
		while (isdigit((unsigned char) *p))
			p++;
	else
		return false;
	if (*p == '.')
	{
		p++;
		if (!isdigit((unsigned char) *p))
			return false;
		while (isdigit((unsigned char) *p))
			p++;
	}
	if (*p == 'e' || *p == 'E')
	{
		p++;
		if (*p == '+' || *p == '-')
			p++;
		if (!isdigit((unsigned char) *p))
			return false;
		while (isdigit((unsigned char) *p))
			p++;
	}
	return *p == '\0' && p - s < 64;
}

/*
 * get_number reads params->key as a number (a JSON number or a string
 * holding one).  *out is NULL when the key is absent or null.  With
 * integer, the number must be a whole number.
 */
static bool
get_number(Jsonb *params, const char *key, bool integer, Jsonb **out,
		   char **errmsg)
{
	Jsonb	   *v = allma_jsonb_get(params, key);
	JsonbValue	sv;
	double		d;

	*out = NULL;
	if (v == NULL || !allma_jsonb_scalar(v, &sv) || sv.type == jbvNull)
	{
		if (v != NULL && !allma_jsonb_is_scalar(v))
			goto bad;
		return true;
	}
	if (sv.type == jbvString)
	{
		char	   *s = pnstrdup(sv.val.string.val, sv.val.string.len);

		if (!is_json_number(s))
			goto bad;
		v = allma_jsonb_parse(s);
	}
	else if (sv.type != jbvNumeric)
		goto bad;
	if (!allma_jsonb_scalar(v, &sv) || sv.type != jbvNumeric)
		goto bad;
	d = DatumGetFloat8(DirectFunctionCall1(numeric_float8,
										   NumericGetDatum(sv.val.numeric)));
	if (isnan(d) || isinf(d))
		goto bad;
	if (integer)
	{
		if (d != floor(d) || fabs(d) > 1e15)
			goto bad;
		v = allma_jsonb_int((int64) d);
	}
	*out = v;
	return true;

bad:
	*errmsg = psprintf("inferenceParameters.%s must be %s", key,
					   integer ? "an integer" : "a number");
	return false;
}

static bool
read_params(Jsonb *params, LlmParams *p, char **errmsg)
{
	Jsonb	   *stop;

	memset(p, 0, sizeof(*p));
	if (params == NULL)
		return true;
	if (!allma_jsonb_is_object(params))
	{
		*errmsg = pstrdup("inferenceParameters must be an object");
		return false;
	}
	if (!get_number(params, "temperature", false, &p->temperature, errmsg) ||
		!get_number(params, "topP", false, &p->top_p, errmsg) ||
		!get_number(params, "maxOutputTokens", true, &p->max_tokens, errmsg) ||
		!get_number(params, "topK", true, &p->top_k, errmsg) ||
		!get_number(params, "seed", true, &p->seed, errmsg))
		return false;

	stop = allma_jsonb_get(params, "stopSequences");
	if (stop != NULL)
	{
		JsonbValue	sv;

		if (allma_jsonb_scalar(stop, &sv) && sv.type == jbvString)
			p->stop = list_make1(pnstrdup(sv.val.string.val, sv.val.string.len));
		else if (allma_jsonb_is_array(stop))
		{
			ListCell   *lc;

			foreach(lc, allma_jsonb_array_elements(stop))
			{
				if (!allma_jsonb_scalar(lfirst(lc), &sv) || sv.type != jbvString)
				{
					*errmsg = pstrdup("inferenceParameters.stopSequences must be an array of strings");
					return false;
				}
				p->stop = lappend(p->stop, pnstrdup(sv.val.string.val, sv.val.string.len));
			}
		}
		else if (!(allma_jsonb_scalar(stop, &sv) && sv.type == jbvNull))
		{
			*errmsg = pstrdup("inferenceParameters.stopSequences must be an array of strings");
			return false;
		}
	}
	return true;
}

/* a string field of the call; absent or null gives NULL, other types an error */
static bool
get_string(Jsonb *obj, const char *key, const char *where, char **out,
		   char **errmsg)
{
	Jsonb	   *v = allma_jsonb_get(obj, key);
	JsonbValue	sv;

	*out = NULL;
	if (v == NULL)
		return true;
	if (allma_jsonb_scalar(v, &sv))
	{
		if (sv.type == jbvNull)
			return true;
		if (sv.type == jbvString)
		{
			*out = pnstrdup(sv.val.string.val, sv.val.string.len);
			return true;
		}
	}
	*errmsg = psprintf("%s%s must be a string", where, key);
	return false;
}

static bool
read_call(LlmProvider provider, Jsonb *call, LlmCall *c, char **errmsg)
{
	Jsonb	   *custom;
	bool		b;

	memset(c, 0, sizeof(*c));
	c->provider = provider;
	if (!allma_jsonb_is_object(call))
	{
		*errmsg = pstrdup("the LLM call must be a JSON object");
		return false;
	}
	custom = allma_jsonb_get(call, "customConfig");
	if (custom != NULL && !allma_jsonb_is_object(custom))
	{
		if (!allma_jsonb_is_scalar(custom) || allma_jsonb_truthy(custom))
		{
			*errmsg = pstrdup("customConfig must be an object");
			return false;
		}
		custom = NULL;
	}

	if (!get_string(call, "baseUrl", "", &c->base_url, errmsg) ||
		!get_string(call, "modelId", "", &c->model, errmsg) ||
		!get_string(call, "apiKey", "", &c->api_key, errmsg) ||
		!get_string(call, "prompt", "", &c->prompt, errmsg) ||
		!get_string(call, "systemPrompt", "", &c->system, errmsg) ||
		!get_string(custom, "anthropic_version", "customConfig.",
					&c->anthropic_version, errmsg))
		return false;

	if (c->base_url == NULL || c->base_url[0] == '\0')
	{
		*errmsg = pstrdup("baseUrl is required");
		return false;
	}
	if (pg_strncasecmp(c->base_url, "http://", 7) != 0 &&
		pg_strncasecmp(c->base_url, "https://", 8) != 0)
	{
		*errmsg = psprintf("baseUrl \"%s\" is not an http:// or https:// URL", c->base_url);
		return false;
	}
	{
		int			n = strlen(c->base_url);

		while (n > 0 && c->base_url[n - 1] == '/')
			c->base_url[--n] = '\0';
	}
	if (c->model == NULL || c->model[0] == '\0')
	{
		*errmsg = pstrdup("modelId is required");
		return false;
	}
	if (c->prompt == NULL)
	{
		*errmsg = pstrdup("prompt is required");
		return false;
	}

	if (!read_params(allma_jsonb_get(call, "inferenceParameters"), &c->params, errmsg))
		return false;

	/* tools: the call's own, else the legacy customConfig.tools */
	c->tools = allma_jsonb_get(call, "tools");
	if (c->tools == NULL || !allma_jsonb_truthy(c->tools))
		c->tools = allma_jsonb_get(custom, "tools");
	if (c->tools != NULL && !allma_jsonb_truthy(c->tools))
		c->tools = NULL;		/* null, [] */
	if (c->tools != NULL && !allma_jsonb_is_array(c->tools))
	{
		*errmsg = pstrdup("tools must be an array");
		return false;
	}
	c->tool_choice = allma_jsonb_get(call, "toolChoice");
	if (c->tool_choice == NULL || !allma_jsonb_truthy(c->tool_choice))
		c->tool_choice = allma_jsonb_get(custom, "toolChoice");
	if (c->tool_choice != NULL && !allma_jsonb_truthy(c->tool_choice))
		c->tool_choice = NULL;

	if (allma_jsonb_get_bool(call, "jsonOutputMode", &b))
		c->json_mode = b;
	else if (allma_jsonb_get_bool(custom, "jsonOutputMode", &b))
		c->json_mode = b;

	c->safety_settings = allma_jsonb_get(custom, "safetySettings");
	if (c->safety_settings != NULL && !allma_jsonb_is_array(c->safety_settings))
		c->safety_settings = NULL;
	return true;
}

/* ----------------------------------------------------------------
 * Tools
 * ----------------------------------------------------------------
 */

typedef struct LlmTool
{
	char	   *type;			/* "function" or a built-in */
	char	   *name;
	char	   *description;
	Jsonb	   *parameters;		/* object or NULL */
	Jsonb	   *config;			/* built-ins' config object or NULL */
} LlmTool;

static bool
read_tools(LlmCall *c, List **tools, char **errmsg)
{
	ListCell   *lc;
	int			i = 0;

	*tools = NIL;
	if (c->tools == NULL)
		return true;
	foreach(lc, allma_jsonb_array_elements(c->tools))
	{
		Jsonb	   *t = lfirst(lc);
		LlmTool    *tool = palloc0(sizeof(LlmTool));
		char	   *where = psprintf("tools[%d].", i++);

		if (!allma_jsonb_is_object(t))
		{
			*errmsg = psprintf("tools[%d] must be an object", i - 1);
			return false;
		}
		if (!get_string(t, "type", where, &tool->type, errmsg) ||
			!get_string(t, "name", where, &tool->name, errmsg) ||
			!get_string(t, "description", where, &tool->description, errmsg))
			return false;
		if (tool->type == NULL)
			tool->type = "function";
		tool->parameters = allma_jsonb_get(t, "parameters");
		if (tool->parameters != NULL && !allma_jsonb_is_object(tool->parameters))
		{
			*errmsg = psprintf("%sparameters must be a JSON schema object", where);
			return false;
		}
		tool->config = allma_jsonb_get(t, "config");
		if (tool->config != NULL && !allma_jsonb_is_object(tool->config))
			tool->config = NULL;
		if (strcmp(tool->type, "function") == 0)
		{
			if (tool->name == NULL || tool->name[0] == '\0')
			{
				*errmsg = psprintf("%sname is required for a function tool", where);
				return false;
			}
		}
		else if (!((strcmp(tool->type, "google_search") == 0 ||
					strcmp(tool->type, "code_execution") == 0) &&
				   c->provider == LLM_GEMINI) &&
				 !(strcmp(tool->type, "web_search") == 0 &&
				   c->provider == LLM_ANTHROPIC))
		{
			*errmsg = psprintf("tool type \"%s\" is not supported by %s",
							   tool->type, provider_label(c->provider));
			return false;
		}
		*tools = lappend(*tools, tool);
	}
	return true;
}

/*
 * read_tool_choice: "auto", "none", "required", or {type:"function", name}.
 * *mode is set to the string form, *name to the function for the last.
 */
static bool
read_tool_choice(LlmCall *c, const char **mode, char **name, char **errmsg)
{
	JsonbValue	sv;

	*mode = NULL;
	*name = NULL;
	if (c->tool_choice == NULL)
		return true;
	if (allma_jsonb_scalar(c->tool_choice, &sv) && sv.type == jbvString)
	{
		char	   *s = pnstrdup(sv.val.string.val, sv.val.string.len);

		if (strcmp(s, "auto") == 0 || strcmp(s, "none") == 0 ||
			strcmp(s, "required") == 0)
		{
			*mode = s;
			return true;
		}
	}
	else if (allma_jsonb_is_object(c->tool_choice))
	{
		char	   *type = allma_jsonb_get_cstring(c->tool_choice, "type");

		*name = allma_jsonb_get_cstring(c->tool_choice, "name");
		if (type != NULL && strcmp(type, "function") == 0 &&
			*name != NULL && (*name)[0] != '\0')
		{
			*mode = "function";
			return true;
		}
	}
	*errmsg = pstrdup("toolChoice must be \"auto\", \"none\", \"required\" or {\"type\": \"function\", \"name\": ...}");
	return false;
}

static Jsonb *
empty_schema(void)
{
	return allma_jsonb_parse("{\"type\": \"object\", \"properties\": {}}");
}

/* ----------------------------------------------------------------
 * Request bodies
 * ----------------------------------------------------------------
 */

static void
write_stop_array(JsonWriter *w, const char *key, List *stop)
{
	ListCell   *lc;

	jw_key(w, key);
	jw_open(w, '[');
	foreach(lc, stop)
		jw_string(w, lfirst(lc));
	jw_close(w, ']');
}

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
		write_stop_array(w, "stop", c->params.stop);

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
			jw_kv_jsonb(w, "parameters", t->parameters ? t->parameters : empty_schema());
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
		write_stop_array(w, "stop_sequences", c->params.stop);

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
				jw_kv_jsonb(w, "input_schema", t->parameters ? t->parameters : empty_schema());
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
			write_stop_array(w, "stopSequences", p->stop);
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

/* percent-encode everything but RFC 3986 unreserved characters */
static char *
url_path_escape(const char *s)
{
	StringInfoData buf;

	initStringInfo(&buf);
	for (; *s; s++)
	{
		unsigned char ch = (unsigned char) *s;

		if (isalnum(ch) || ch == '-' || ch == '.' || ch == '_' || ch == '~')
			appendStringInfoChar(&buf, ch);
		else
			appendStringInfo(&buf, "%%%02X", ch);
	}
	return buf.data;
}

static List *
add_header(List *headers, const char *name, const char *value)
{
	AllmaHttpHeader *h = palloc(sizeof(AllmaHttpHeader));

	h->name = pstrdup(name);
	h->value = pstrdup(value);
	return lappend(headers, h);
}

/* header values must not carry CR, LF or NUL (http.h) */
static bool
header_safe(const char *s)
{
	return strpbrk(s, "\r\n") == NULL;
}

bool
allma_llm_build_request(const char *provider, Jsonb *call, char **url,
						List **headers, char **body, char **errmsg)
{
	LlmProvider p;
	LlmCall		c;
	List	   *tools;
	const char *choice;
	char	   *choice_name;
	JsonWriter	w;
	List	   *hdrs = NIL;
	bool		have_key;

	*errmsg = NULL;
	if (!check_provider(provider, &p, errmsg) ||
		!read_call(p, call, &c, errmsg) ||
		!read_tools(&c, &tools, errmsg) ||
		!read_tool_choice(&c, &choice, &choice_name, errmsg))
		return false;
	if (choice_name != NULL)
	{
		ListCell   *lc;
		bool		found = false;

		foreach(lc, tools)
		{
			LlmTool    *t = lfirst(lc);

			if (t->name && strcmp(t->name, choice_name) == 0)
				found = true;
		}
		if (tools != NIL && !found)
		{
			*errmsg = psprintf("toolChoice names function \"%s\", which is not among the tools",
							   choice_name);
			return false;
		}
	}
	have_key = c.api_key != NULL && c.api_key[0] != '\0';
	if (have_key && !header_safe(c.api_key))
	{
		*errmsg = pstrdup("apiKey must not contain line breaks");
		return false;
	}
	if (c.anthropic_version && !header_safe(c.anthropic_version))
	{
		*errmsg = pstrdup("customConfig.anthropic_version must not contain line breaks");
		return false;
	}

	jw_init(&w);
	hdrs = add_header(hdrs, "Content-Type", "application/json");
	switch (p)
	{
		case LLM_OPENAI:
			*url = psprintf("%s/chat/completions", c.base_url);
			if (have_key)
				hdrs = add_header(hdrs, "Authorization", psprintf("Bearer %s", c.api_key));
			openai_body(&w, &c, tools, choice, choice_name);
			break;
		case LLM_ANTHROPIC:
			*url = psprintf("%s/messages", c.base_url);
			if (have_key)
				hdrs = add_header(hdrs, "x-api-key", c.api_key);
			hdrs = add_header(hdrs, "anthropic-version",
							  c.anthropic_version ? c.anthropic_version :
							  ALLMA_LLM_ANTHROPIC_DEFAULT_VERSION);
			anthropic_body(&w, &c, tools, choice, choice_name);
			break;
		case LLM_GEMINI:
			{
				const char *model = c.model;

				/* "models/gemini-x" is accepted as well as "gemini-x" */
				if (strncmp(model, "models/", 7) == 0)
					model += 7;
				*url = psprintf("%s/models/%s:generateContent", c.base_url,
								url_path_escape(model));
				if (have_key)
					hdrs = add_header(hdrs, "x-goog-api-key", c.api_key);
				gemini_body(&w, &c, tools, choice, choice_name);
			}
			break;
		default:
			elog(ERROR, "allma: unexpected LLM provider %d", (int) p);
	}
	*headers = hdrs;
	*body = w.buf.data;
	return true;
}

/* ----------------------------------------------------------------
 * Responses
 * ----------------------------------------------------------------
 */

/* value at a chain of object keys; NULL when any step is missing */
static Jsonb *
get_path(Jsonb *v, const char *k1, const char *k2)
{
	v = allma_jsonb_get(v, k1);
	if (v != NULL && k2 != NULL)
		v = allma_jsonb_get(v, k2);
	return v;
}

static char *
truncate_text(const char *s)
{
	int			len = strlen(s);

	if (len <= MAX_ERROR_TEXT)
		return pstrdup(s);
	len = pg_mbcliplen(s, len, MAX_ERROR_TEXT);
	return psprintf("%.*s...", len, s);
}

/* display text of a scalar value, or NULL */
static char *
scalar_text(Jsonb *v)
{
	JsonbValue	sv;

	if (v == NULL || !allma_jsonb_scalar(v, &sv) || sv.type == jbvNull)
		return NULL;
	return allma_jsonb_to_display_text(v);
}

/*
 * error_text builds the message of a failed call from the provider's error
 * shape: OpenAI {error:{message,type,code}}, Anthropic {type:"error",
 * error:{type,message}}, Gemini {error:{code,message,status}} (also inside
 * an array).  Falls back to the start of the body.
 */
static char *
error_text(LlmProvider p, int status, const char *body, Jsonb *doc)
{
	Jsonb	   *err;
	char	   *message = NULL;
	char	   *kind = NULL;
	const char *label = provider_label(p);

	if (allma_jsonb_is_array(doc))
		doc = allma_jsonb_array_element(doc, 0);
	err = allma_jsonb_get(doc, "error");
	if (allma_jsonb_is_object(err))
	{
		message = scalar_text(allma_jsonb_get(err, "message"));
		if (p == LLM_GEMINI)
			kind = scalar_text(allma_jsonb_get(err, "status"));
		else
		{
			kind = scalar_text(allma_jsonb_get(err, "code"));
			if (kind == NULL)
				kind = scalar_text(allma_jsonb_get(err, "type"));
		}
	}
	else if (err != NULL)
		message = scalar_text(err);
	if (message == NULL)
		message = scalar_text(allma_jsonb_get(doc, "message"));
	if (message == NULL)
		message = (body && body[0]) ? pstrdup(body) : pstrdup("(empty response body)");
	message = truncate_text(message);

	if (status <= 0)
		return psprintf("%s request got no response", label);
	if (kind)
		return psprintf("%s API error (HTTP %d, %s): %s", label, status, kind, message);
	return psprintf("%s API error (HTTP %d): %s", label, status, message);
}

/* builder of the parsed result */
typedef struct LlmResult
{
	StringInfoData text;
	Jsonb	   *tool_calls;		/* array */
	Jsonb	   *usage;			/* object */
	Jsonb	   *finish_reason;
	Jsonb	   *model;
	Jsonb	   *grounding;
	char	   *error;			/* ContentBasedRetryableError message */
} LlmResult;

static void
add_tool_call(LlmResult *r, Jsonb *id, Jsonb *name, Jsonb *args)
{
	Jsonb	   *tc = allma_jsonb_empty_object();
	JsonbValue	sv;

	if (allma_jsonb_scalar(args, &sv) && sv.type == jbvString)
	{
		/* OpenAI sends the arguments as JSON text */
		Jsonb	   *parsed = NULL;

		if (sv.val.string.len == 0)
			parsed = allma_jsonb_empty_object();
		else if (!parse_json_soft(sv.val.string.val, sv.val.string.len, &parsed))
			parsed = NULL;
		args = parsed;
	}
	else if (args == NULL || (allma_jsonb_scalar(args, &sv) && sv.type == jbvNull))
		args = allma_jsonb_empty_object();
	if (!allma_jsonb_is_object(args))
	{
		if (r->error == NULL)
			r->error = psprintf("the arguments of tool call \"%s\" are not a JSON object",
								name ? allma_jsonb_to_display_text(name) : "");
		return;
	}
	if (id == NULL)
		id = allma_jsonb_string(psprintf("call_%d",
										 allma_jsonb_array_length(r->tool_calls)));
	tc = allma_jsonb_set_key(tc, "id", id);
	tc = allma_jsonb_set_key(tc, "name", name ? name : allma_jsonb_string(""));
	tc = allma_jsonb_set_key(tc, "arguments", args);
	r->tool_calls = allma_jsonb_array_append(r->tool_calls, tc);
}

/* usage.key = the number at src.srckey, when it is one */
static void
add_usage(LlmResult *r, const char *key, Jsonb *src, const char *srckey)
{
	Jsonb	   *v = allma_jsonb_get(src, srckey);
	JsonbValue	sv;

	if (v != NULL && allma_jsonb_scalar(v, &sv) && sv.type == jbvNumeric)
		r->usage = allma_jsonb_set_key(r->usage, key, v);
}

static void
add_text(LlmResult *r, Jsonb *v)
{
	JsonbValue	sv;

	if (v != NULL && allma_jsonb_scalar(v, &sv) && sv.type == jbvString)
		appendBinaryStringInfo(&r->text, sv.val.string.val, sv.val.string.len);
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
			add_text(r, allma_jsonb_get(lfirst(lc), "text"));
	}
	else
		add_text(r, content);
	foreach(lc, allma_jsonb_array_elements(allma_jsonb_get(msg, "tool_calls")))
	{
		Jsonb	   *tc = lfirst(lc);

		add_tool_call(r, allma_jsonb_get(tc, "id"),
					  get_path(tc, "function", "name"),
					  get_path(tc, "function", "arguments"));
	}
	add_usage(r, "inputTokens", allma_jsonb_get(doc, "usage"), "prompt_tokens");
	add_usage(r, "outputTokens", allma_jsonb_get(doc, "usage"), "completion_tokens");
	add_usage(r, "totalTokens", allma_jsonb_get(doc, "usage"), "total_tokens");
	r->finish_reason = allma_jsonb_get(choice, "finish_reason");
	r->model = allma_jsonb_get(doc, "model");
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
			add_text(r, allma_jsonb_get(block, "text"));
		else if (strcmp(type, "tool_use") == 0)
			add_tool_call(r, allma_jsonb_get(block, "id"),
						  allma_jsonb_get(block, "name"),
						  allma_jsonb_get(block, "input"));
	}
	add_usage(r, "inputTokens", allma_jsonb_get(doc, "usage"), "input_tokens");
	add_usage(r, "outputTokens", allma_jsonb_get(doc, "usage"), "output_tokens");
	r->finish_reason = allma_jsonb_get(doc, "stop_reason");
	r->model = allma_jsonb_get(doc, "model");
}

static void
parse_gemini(Jsonb *doc, LlmResult *r)
{
	Jsonb	   *cand = allma_jsonb_array_element(allma_jsonb_get(doc, "candidates"), 0);
	ListCell   *lc;
	char	   *blocked = scalar_text(get_path(doc, "promptFeedback", "blockReason"));

	foreach(lc, allma_jsonb_array_elements(get_path(cand, "content", "parts")))
	{
		Jsonb	   *part = lfirst(lc);
		Jsonb	   *fc = allma_jsonb_get(part, "functionCall");
		bool		thought = false;

		if (allma_jsonb_get_bool(part, "thought", &thought) && thought)
			continue;			/* thinking summaries are not the answer */
		if (fc != NULL)
			add_tool_call(r, allma_jsonb_get(fc, "id"),
						  allma_jsonb_get(fc, "name"),
						  allma_jsonb_get(fc, "args"));
		else
			add_text(r, allma_jsonb_get(part, "text"));
	}
	add_usage(r, "inputTokens", allma_jsonb_get(doc, "usageMetadata"), "promptTokenCount");
	add_usage(r, "outputTokens", allma_jsonb_get(doc, "usageMetadata"), "candidatesTokenCount");
	add_usage(r, "totalTokens", allma_jsonb_get(doc, "usageMetadata"), "totalTokenCount");
	r->finish_reason = allma_jsonb_get(cand, "finishReason");
	r->model = allma_jsonb_get(doc, "modelVersion");
	r->grounding = allma_jsonb_get(cand, "groundingMetadata");
	if (blocked != NULL && cand == NULL)
		r->error = psprintf("Gemini blocked the prompt (%s)", blocked);
}

bool
allma_llm_parse_response(const char *provider, int status, const char *body,
						 Jsonb **result, char **error_name, char **errmsg)
{
	LlmProvider p;
	Jsonb	   *doc = NULL;
	LlmResult	r;
	Jsonb	   *res;
	double		in,
				out;

	*result = NULL;
	*error_name = NULL;
	*errmsg = NULL;
	if (!check_provider(provider, &p, errmsg))
	{
		*error_name = ALLMA_ERR_CONFIG;
		return false;
	}
	if (body == NULL)
		body = "";
	if (!parse_json_soft(body, strlen(body), &doc))
		doc = NULL;

	if (status < 200 || status > 299)
	{
		if (status <= 0 || status == 408 || status == 429 || status >= 500)
			*error_name = ALLMA_ERR_TRANSIENT;
		else
			*error_name = ALLMA_ERR_PERMANENT;
		*errmsg = error_text(p, status, body, doc);
		return false;
	}
	if (!allma_jsonb_is_object(doc))
	{
		*error_name = ALLMA_ERR_TRANSIENT;
		*errmsg = psprintf("%s response is not a JSON object: %s",
						   provider_label(p), truncate_text(body));
		return false;
	}

	memset(&r, 0, sizeof(r));
	initStringInfo(&r.text);
	r.tool_calls = allma_jsonb_empty_array();
	r.usage = allma_jsonb_empty_object();
	switch (p)
	{
		case LLM_OPENAI:
			parse_openai(doc, &r);
			break;
		case LLM_ANTHROPIC:
			parse_anthropic(doc, &r);
			break;
		case LLM_GEMINI:
			parse_gemini(doc, &r);
			if (r.error != NULL && strncmp(r.error, "Gemini blocked", 14) == 0)
			{
				*error_name = ALLMA_ERR_PERMANENT;
				*errmsg = r.error;
				return false;
			}
			break;
		default:
			elog(ERROR, "allma: unexpected LLM provider %d", (int) p);
	}
	if (r.error != NULL)
	{
		*error_name = ALLMA_ERR_CONTENT;
		*errmsg = r.error;
		return false;
	}
	if (r.text.len == 0 && allma_jsonb_array_length(r.tool_calls) == 0)
	{
		char	   *why = scalar_text(r.finish_reason);

		*error_name = ALLMA_ERR_CONTENT;
		*errmsg = psprintf("%s returned no content (finish reason: %s)",
						   provider_label(p), why ? why : "none");
		return false;
	}

	/* Anthropic gives no total */
	if (!allma_jsonb_has_key(r.usage, "totalTokens") &&
		allma_jsonb_get_number(r.usage, "inputTokens", &in) &&
		allma_jsonb_get_number(r.usage, "outputTokens", &out))
		r.usage = allma_jsonb_set_key(r.usage, "totalTokens",
									  allma_jsonb_int((int64) (in + out)));

	res = allma_jsonb_empty_object();
	res = allma_jsonb_set_key(res, "text", allma_jsonb_string_len(r.text.data, r.text.len));
	res = allma_jsonb_set_key(res, "tool_calls", r.tool_calls);
	res = allma_jsonb_set_key(res, "usage", r.usage);
	if (r.finish_reason)
		res = allma_jsonb_set_key(res, "finishReason", r.finish_reason);
	if (r.model)
		res = allma_jsonb_set_key(res, "model", r.model);
	if (r.grounding)
		res = allma_jsonb_set_key(res, "groundingMetadata", r.grounding);
	*result = res;
	return true;
}

/* ----------------------------------------------------------------
 * JSON output mode
 * ----------------------------------------------------------------
 */

/*
 * matching_close scans from s[start] (an opening bracket) and returns the
 * index of the bracket that closes it, skipping JSON strings; -1 if none.
 */
static int
matching_close(const char *s, int len, int start)
{
	int			depth = 0;
	bool		in_string = false;
	int			i;

	for (i = start; i < len; i++)
	{
		char		ch = s[i];

		if (in_string)
		{
			if (ch == '\\')
				i++;
			else if (ch == '"')
				in_string = false;
			continue;
		}
		if (ch == '"')
			in_string = true;
		else if (ch == '{' || ch == '[')
			depth++;
		else if (ch == '}' || ch == ']')
		{
			if (--depth == 0)
				return i;
		}
	}
	return -1;
}

/* try the text from the first "open" to its match, then to the last "close" */
static bool
try_bracketed(const char *s, int len, char open, char close, Jsonb **out)
{
	const char *first = memchr(s, open, len);
	int			start,
				end;

	if (first == NULL)
		return false;
	start = first - s;
	end = matching_close(s, len, start);
	if (end > start && parse_json_soft(s + start, end - start + 1, out))
		return true;
	for (end = len - 1; end > start; end--)
	{
		if (s[end] == close)
			return parse_json_soft(s + start, end - start + 1, out);
	}
	return false;
}

/* find JSON in s (len bytes); see allma_llm_json_output */
static bool
find_json(const char *s, int len, Jsonb **out)
{
	const char *obj,
			   *arr;

	/* trim */
	while (len > 0 && isspace((unsigned char) *s))
		s++, len--;
	while (len > 0 && isspace((unsigned char) s[len - 1]))
		len--;
	if (len == 0)
		return false;
	if (parse_json_soft(s, len, out))
		return true;

	/* the first bracket that comes first wins; then the other kind */
	obj = memchr(s, '{', len);
	arr = memchr(s, '[', len);
	if (arr != NULL && (obj == NULL || arr < obj))
		return try_bracketed(s, len, '[', ']', out) ||
			try_bracketed(s, len, '{', '}', out);
	return try_bracketed(s, len, '{', '}', out) ||
		try_bracketed(s, len, '[', ']', out);
}

bool
allma_llm_json_output(const char *text, Jsonb **out, char **errmsg)
{
	const char *fence;
	int			len;
	Jsonb	   *value = NULL;
	bool		found = false;

	*out = NULL;
	*errmsg = NULL;
	if (text == NULL)
		text = "";
	len = strlen(text);

	/* a ``` fence (```json, ```JSON or bare) comes first */
	fence = strstr(text, "```");
	if (fence != NULL)
	{
		const char *start = fence + 3;
		const char *end;

		/* skip the info string up to the end of the line */
		while (*start && *start != '\n' && !isspace((unsigned char) *start))
			start++;
		end = strstr(start, "```");
		if (end == NULL)
			end = text + len;	/* unterminated: up to the end */
		found = find_json(start, end - start, &value);
	}
	if (!found)
		found = find_json(text, len, &value);
	if (!found)
	{
		*errmsg = psprintf("the LLM reply contains no valid JSON: %s",
						   truncate_text(text[0] ? text : "(empty)"));
		return false;
	}
	if (!allma_jsonb_is_object(value))
		value = allma_jsonb_set_key(NULL, "llm_response", value);
	*out = value;
	return true;
}

/* ----------------------------------------------------------------
 * SQL test functions
 * ----------------------------------------------------------------
 */

/* replace every occurrence of key in s with [redacted] */
static char *
redact_key(const char *s, const char *key)
{
	StringInfoData buf;
	const char *hit;
	int			klen = strlen(key);

	if (klen == 0)
		return pstrdup(s);
	initStringInfo(&buf);
	while ((hit = strstr(s, key)) != NULL)
	{
		appendBinaryStringInfo(&buf, s, hit - s);
		appendStringInfoString(&buf, "[redacted]");
		s = hit + klen;
	}
	appendStringInfoString(&buf, s);
	return buf.data;
}

/*
 * allma_llm_request_preview(provider text, call jsonb) returns jsonb
 * {url, method, headers, body}: the request allma_llm_build_request makes,
 * with the apiKey replaced by "[redacted]".  A bad call raises
 * invalid_parameter_value with the adapter's message.
 */
Datum
allma_llm_request_preview(PG_FUNCTION_ARGS)
{
	char	   *provider = text_to_cstring(PG_GETARG_TEXT_PP(0));
	Jsonb	   *call = PG_GETARG_JSONB_P(1);
	char	   *url,
			   *body,
			   *msg;
	List	   *headers;
	char	   *key;
	ListCell   *lc;
	Jsonb	   *hdrs = allma_jsonb_empty_object();
	Jsonb	   *res = allma_jsonb_empty_object();

	if (!allma_llm_build_request(provider, call, &url, &headers, &body, &msg))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid LLM call: %s", msg)));
	key = allma_jsonb_get_cstring(call, "apiKey");
	foreach(lc, headers)
	{
		AllmaHttpHeader *h = lfirst(lc);
		const char *value = h->value;

		if (key != NULL)
			value = redact_key(value, key);
		hdrs = allma_jsonb_set_key(hdrs, h->name, allma_jsonb_string(value));
	}
	res = allma_jsonb_set_key(res, "url", allma_jsonb_string(url));
	res = allma_jsonb_set_key(res, "method", allma_jsonb_string("POST"));
	res = allma_jsonb_set_key(res, "headers", hdrs);
	res = allma_jsonb_set_key(res, "body", allma_jsonb_parse(body));
	PG_RETURN_JSONB_P(res);
}

/*
 * allma_llm_parse(provider text, status integer, body text) returns jsonb:
 * the parsed result, or {"error": {"errorName", "message"}} when the
 * adapter reports a failure.
 */
Datum
allma_llm_parse(PG_FUNCTION_ARGS)
{
	char	   *provider;
	int32		status;
	char	   *body;
	Jsonb	   *result;
	char	   *error_name,
			   *msg;
	Jsonb	   *err;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		PG_RETURN_NULL();
	provider = text_to_cstring(PG_GETARG_TEXT_PP(0));
	status = PG_GETARG_INT32(1);
	body = PG_ARGISNULL(2) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(2));

	if (allma_llm_parse_response(provider, status, body, &result, &error_name, &msg))
		PG_RETURN_JSONB_P(result);
	err = allma_jsonb_empty_object();
	err = allma_jsonb_set_key(err, "errorName", allma_jsonb_string(error_name));
	err = allma_jsonb_set_key(err, "message", allma_jsonb_string(msg));
	PG_RETURN_JSONB_P(allma_jsonb_set_key(NULL, "error", err));
}

/*
 * allma_llm_extract_json(text) returns jsonb: jsonOutputMode's result;
 * raises LM203 (ContentBasedRetryableError's SQLSTATE) when there is no JSON.
 */
Datum
allma_llm_extract_json(PG_FUNCTION_ARGS)
{
	char	   *reply = text_to_cstring(PG_GETARG_TEXT_PP(0));
	Jsonb	   *out;
	char	   *msg;

	if (!allma_llm_json_output(reply, &out, &msg))
		ereport(ERROR,
				(errcode(ERRCODE_ALLMA_CONTENT_ERROR),
				 errmsg("%s", msg),
				 errdetail("A step in jsonOutputMode fails with ContentBasedRetryableError here.")));
	PG_RETURN_JSONB_P(out);
}
