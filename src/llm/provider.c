/*-------------------------------------------------------------------------
 *
 * provider.c
 *	  LLM calls: the provider table, reading and checking a call, the
 *	  request, the response, and the SQL debug functions.
 *
 * An LLM_INVOCATION step turns into one call (a jsonb object, see llm.h)
 * per model of its chain.  This file reads and checks the call, hands it
 * to its provider's request writer, and reads the reply through the
 * provider's parser into Allma's result; each provider (openai.c,
 * anthropic.c, gemini.c) is a row of the table below and owns its default
 * URL, its base-URL GUC, its API-key secret name and its wire format.
 *
 * Everything here is a pure function of its inputs: no network, no SPI,
 * no transaction.  Bad input never throws; it comes back as false plus a
 * message, so the worker can turn it into the step's Allma error.
 * Responses are checked with PostgreSQL's non-throwing JSON parser before
 * jsonb_in sees them.
 *
 * It also owns the SQL test functions allma_llm_request_preview,
 * allma_llm_parse and allma_llm_extract_json.
 *
 * IDENTIFICATION
 *	  src/llm/provider.c
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
#include "provider.h"

PG_FUNCTION_INFO_V1(allma_llm_request_preview);
PG_FUNCTION_INFO_V1(allma_llm_parse);
PG_FUNCTION_INFO_V1(allma_llm_extract_json);

/* the longest provider error message or body excerpt put in an errmsg */
#define MAX_ERROR_TEXT 500

/* a provider of Allma's format that allma does not speak */
#define UNSUPPORTED_PROVIDER(name) \
	{name, "LLM", NULL, NULL, name "_API_KEY", NULL, NULL, NULL, NULL}

/*
 * The providers, in the order of Allma's LlmProvider enum (which is the
 * order validation lists them in).  A provider is one row here and one
 * file with its row's definition.
 */
static const AllmaLlmProvider *const providers[] = {
	&allma_llm_gemini,
	&allma_llm_anthropic,
	&allma_llm_openai,
};
static const AllmaLlmProvider unsupported_providers[] = {
	UNSUPPORTED_PROVIDER("AWS_BEDROCK"),
	UNSUPPORTED_PROVIDER("CUSTOM_LAMBDA"),
};

/* the row of provider "name" (any case), or NULL */
const AllmaLlmProvider *
allma_llm_provider_find(const char *name)
{
	if (name == NULL)
		return NULL;
	for (int i = 0; i < lengthof(providers); i++)
	{
		if (pg_strcasecmp(name, providers[i]->name) == 0)
			return providers[i];
	}
	for (int i = 0; i < lengthof(unsupported_providers); i++)
	{
		if (pg_strcasecmp(name, unsupported_providers[i].name) == 0)
			return &unsupported_providers[i];
	}
	return NULL;
}

/* the names of llmProvider, for validation: the table's, then the others */
const char **
allma_llm_provider_names(void)
{
	const char **names = palloc(sizeof(char *) *
								(lengthof(providers) + lengthof(unsupported_providers) + 1));
	int			n = 0;

	for (int i = 0; i < lengthof(providers); i++)
		names[n++] = providers[i]->name;
	for (int i = 0; i < lengthof(unsupported_providers); i++)
		names[n++] = unsupported_providers[i].name;
	names[n] = NULL;
	return names;
}

/* check the provider name; false + *errmsg when it cannot be used */
static bool
check_provider(const char *name, const AllmaLlmProvider **p, char **errmsg)
{
	*p = allma_llm_provider_find(name);
	if (*p != NULL && (*p)->write_request == NULL)
	{
		*errmsg = psprintf("LLM provider \"%s\" is not supported", name);
		return false;
	}
	if (*p == NULL)
	{
		StringInfoData expected;

		/* the table's providers, last first: "OPENAI, ANTHROPIC or GEMINI" */
		initStringInfo(&expected);
		for (int i = lengthof(providers) - 1; i >= 0; i--)
			appendStringInfo(&expected, "%s%s",
							 i == lengthof(providers) - 1 ? "" : (i == 0 ? " or " : ", "),
							 providers[i]->name);
		*errmsg = psprintf("unknown LLM provider \"%s\" (expected %s)",
						   name ? name : "", expected.data);
		return false;
	}
	return true;
}

const char *
allma_llm_default_base_url(const char *provider)
{
	const AllmaLlmProvider *p = allma_llm_provider_find(provider);

	return p != NULL ? p->default_base_url : NULL;
}

const char *
allma_llm_base_url(const char *provider)
{
	const AllmaLlmProvider *p = allma_llm_provider_find(provider);

	if (p != NULL && p->base_url_guc != NULL && *p->base_url_guc != NULL &&
		(*p->base_url_guc)[0] != '\0')
		return *p->base_url_guc;
	return p != NULL ? p->default_base_url : NULL;
}

char *
allma_llm_api_key_secret(const char *provider)
{
	const AllmaLlmProvider *p = allma_llm_provider_find(provider);

	if (p != NULL)
		return pstrdup(p->api_key_secret);
	return psprintf("%s_API_KEY", provider);
}

/* ----------------------------------------------------------------
 * Non-throwing JSON parsing
 * ----------------------------------------------------------------
 */

/*
 * allma_llm_parse_json_soft parses len bytes of s as JSON into *out; false when they
 * are not valid JSON in the database encoding.  Only numbers beyond
 * numeric's range can still make jsonb_in throw.
 */
bool
allma_llm_parse_json_soft(const char *s, int len, Jsonb **out)
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
 * Reading the call
 * ----------------------------------------------------------------
 */

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
read_call(const AllmaLlmProvider *provider, Jsonb *call, LlmCall *c, char **errmsg)
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

/* true when the provider has a built-in tool of this type */
static bool
is_builtin_tool(const AllmaLlmProvider *p, const char *type)
{
	for (const char *const *t = p->builtin_tools; t != NULL && *t != NULL; t++)
	{
		if (strcmp(*t, type) == 0)
			return true;
	}
	return false;
}

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
		else if (!is_builtin_tool(c->provider, tool->type))
		{
			*errmsg = psprintf("tool type \"%s\" is not supported by %s",
							   tool->type, c->provider->label);
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

Jsonb *
allma_llm_empty_schema(void)
{
	return allma_jsonb_parse("{\"type\": \"object\", \"properties\": {}}");
}

/* ----------------------------------------------------------------
 * Request bodies
 * ----------------------------------------------------------------
 */

void
allma_llm_write_stop_array(JsonWriter *w, const char *key, List *stop)
{
	ListCell   *lc;

	jw_key(w, key);
	jw_open(w, '[');
	foreach(lc, stop)
		jw_string(w, lfirst(lc));
	jw_close(w, ']');
}

/* percent-encode everything but RFC 3986 unreserved characters */
char *
allma_llm_url_escape(const char *s)
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

List *
allma_llm_add_header(List *headers, const char *name, const char *value)
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
	const AllmaLlmProvider *p;
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
	hdrs = allma_llm_add_header(hdrs, "Content-Type", "application/json");
	*url = p->write_request(&c, tools, choice, choice_name, have_key, &w, &hdrs);
	*headers = hdrs;
	*body = w.buf.data;
	return true;
}

/* ----------------------------------------------------------------
 * Responses
 * ----------------------------------------------------------------
 */

/* value at a chain of object keys; NULL when any step is missing */
Jsonb *
allma_llm_get_path(Jsonb *v, const char *k1, const char *k2)
{
	v = allma_jsonb_get(v, k1);
	if (v != NULL && k2 != NULL)
		v = allma_jsonb_get(v, k2);
	return v;
}

char *
allma_llm_truncate_text(const char *s)
{
	int			len = strlen(s);

	if (len <= MAX_ERROR_TEXT)
		return pstrdup(s);
	len = pg_mbcliplen(s, len, MAX_ERROR_TEXT);
	return psprintf("%.*s...", len, s);
}

/* display text of a scalar value, or NULL */
char *
allma_llm_scalar_text(Jsonb *v)
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
error_text(const AllmaLlmProvider *p, int status, const char *body, Jsonb *doc)
{
	Jsonb	   *err;
	char	   *message = NULL;
	char	   *kind = NULL;
	const char *label = p->label;

	if (allma_jsonb_is_array(doc))
		doc = allma_jsonb_array_element(doc, 0);
	err = allma_jsonb_get(doc, "error");
	if (allma_jsonb_is_object(err))
	{
		message = allma_llm_scalar_text(allma_jsonb_get(err, "message"));
		for (const char *const *k = p->error_kind_keys; kind == NULL && k && *k; k++)
			kind = allma_llm_scalar_text(allma_jsonb_get(err, *k));
	}
	else if (err != NULL)
		message = allma_llm_scalar_text(err);
	if (message == NULL)
		message = allma_llm_scalar_text(allma_jsonb_get(doc, "message"));
	if (message == NULL)
		message = (body && body[0]) ? pstrdup(body) : pstrdup("(empty response body)");
	message = allma_llm_truncate_text(message);

	if (status <= 0)
		return psprintf("%s request got no response", label);
	if (kind)
		return psprintf("%s API error (HTTP %d, %s): %s", label, status, kind, message);
	return psprintf("%s API error (HTTP %d): %s", label, status, message);
}

void
allma_llm_add_tool_call(LlmResult *r, Jsonb *id, Jsonb *name, Jsonb *args)
{
	Jsonb	   *tc = allma_jsonb_empty_object();
	JsonbValue	sv;

	if (allma_jsonb_scalar(args, &sv) && sv.type == jbvString)
	{
		/* OpenAI sends the arguments as JSON text */
		Jsonb	   *parsed = NULL;

		if (sv.val.string.len == 0)
			parsed = allma_jsonb_empty_object();
		else if (!allma_llm_parse_json_soft(sv.val.string.val, sv.val.string.len, &parsed))
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
void
allma_llm_add_usage(LlmResult *r, const char *key, Jsonb *src, const char *srckey)
{
	Jsonb	   *v = allma_jsonb_get(src, srckey);
	JsonbValue	sv;

	if (v != NULL && allma_jsonb_scalar(v, &sv) && sv.type == jbvNumeric)
		r->usage = allma_jsonb_set_key(r->usage, key, v);
}

void
allma_llm_add_text(LlmResult *r, Jsonb *v)
{
	JsonbValue	sv;

	if (v != NULL && allma_jsonb_scalar(v, &sv) && sv.type == jbvString)
		appendBinaryStringInfo(&r->text, sv.val.string.val, sv.val.string.len);
}

bool
allma_llm_parse_response(const char *provider, int status, const char *body,
						 Jsonb **result, char **error_name, char **errmsg)
{
	const AllmaLlmProvider *p;
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
	if (!allma_llm_parse_json_soft(body, strlen(body), &doc))
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
						   p->label, allma_llm_truncate_text(body));
		return false;
	}

	memset(&r, 0, sizeof(r));
	initStringInfo(&r.text);
	r.tool_calls = allma_jsonb_empty_array();
	r.usage = allma_jsonb_empty_object();
	p->parse_response(doc, &r);
	if (r.refused)
	{
		*error_name = ALLMA_ERR_PERMANENT;
		*errmsg = r.error;
		return false;
	}
	if (r.error != NULL)
	{
		*error_name = ALLMA_ERR_CONTENT;
		*errmsg = r.error;
		return false;
	}
	if (r.text.len == 0 && allma_jsonb_array_length(r.tool_calls) == 0)
	{
		char	   *why = allma_llm_scalar_text(r.finish_reason);

		*error_name = ALLMA_ERR_CONTENT;
		*errmsg = psprintf("%s returned no content (finish reason: %s)",
						   p->label, why ? why : "none");
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
