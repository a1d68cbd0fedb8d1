/*-------------------------------------------------------------------------
 *
 * provider.h
 *	  The LLM provider table and what the provider files share: the call
 *	  as read from its jsonb, its tools, the parsed result being built,
 *	  and a small JSON text writer for request bodies.
 *
 * A provider is one row of the table in provider.c and one file here
 * (openai.c, anthropic.c, gemini.c) with its request writer and response
 * parser.  Nothing here is for use outside src/llm/: the rest of allma
 * goes through llm.h.
 *
 * IDENTIFICATION
 *	  src/llm/provider.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ALLMA_LLM_PROVIDER_H
#define ALLMA_LLM_PROVIDER_H

#include "allma.h"

#include "lib/stringinfo.h"
#include "nodes/pg_list.h"
#include "utils/json.h"

#include "jsonb_util.h"

struct AllmaLlmProvider;

typedef struct LlmParams
{
	Jsonb	   *temperature;	/* numeric scalars, or NULL when not given */
	Jsonb	   *top_p;
	Jsonb	   *max_tokens;
	Jsonb	   *top_k;
	Jsonb	   *seed;
	List	   *stop;			/* of char * */
} LlmParams;

/* the call (see llm.h), read and checked */
typedef struct LlmCall
{
	const struct AllmaLlmProvider *provider;
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

typedef struct LlmTool
{
	char	   *type;			/* "function" or a built-in */
	char	   *name;
	char	   *description;
	Jsonb	   *parameters;		/* object or NULL */
	Jsonb	   *config;			/* built-ins' config object or NULL */
} LlmTool;

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
	bool		refused;		/* the provider refused the prompt: "error"
								 * is a PermanentStepError */
} LlmResult;

/*
 * A small JSON text writer: the request body is what goes on the wire.
 * Values taken from the call (schemas, numbers) are copied as jsonb prints
 * them.
 */
#define JW_MAX_DEPTH 32

typedef struct JsonWriter
{
	StringInfoData buf;
	int			depth;
	bool		after_key;
	bool		need_comma[JW_MAX_DEPTH];
} JsonWriter;

/*
 * One row of the provider table (provider.c).  A row without a request
 * writer is a provider of Allma's format that allma does not speak.
 */
typedef struct AllmaLlmProvider
{
	const char *name;			/* Allma's llmProvider ("OPENAI") */
	const char *label;			/* in messages ("OpenAI") */
	const char *default_base_url;	/* its public API */
	char	  **base_url_guc;	/* allma.<provider>_base_url, which overrides
								 * the default when set */
	const char *api_key_secret; /* the secret with the key, unless the step
								 * names one (customConfig.apiKeySecret) */
	const char *const *builtin_tools;	/* tool types besides "function" */
	const char *const *error_kind_keys; /* members of its error object that
										 * name the kind of error, in order */

	/*
	 * write_request returns the URL of a call and writes its body into w;
	 * it appends its own headers (the credential, a version) to *headers,
	 * which holds Content-Type.  tools (of LlmTool *) and the tool choice
	 * (mode "auto" | "none" | "required" | "function", and the function's
	 * name) have been checked.  have_key: c->api_key is not empty.
	 */
	char	   *(*write_request) (LlmCall *c, List *tools, const char *choice,
								  const char *choice_name, bool have_key,
								  JsonWriter *w, List **headers);

	/* parse_response reads a 2xx JSON object into r */
	void		(*parse_response) (Jsonb *doc, LlmResult *r);
} AllmaLlmProvider;

/* the provider rows (openai.c, anthropic.c, gemini.c) */
extern const AllmaLlmProvider allma_llm_openai;
extern const AllmaLlmProvider allma_llm_anthropic;
extern const AllmaLlmProvider allma_llm_gemini;

/* the row of provider "name" (any case), or NULL */
extern const AllmaLlmProvider *allma_llm_provider_find(const char *name);

/* helpers of the request writers (provider.c) */
extern void allma_llm_write_stop_array(JsonWriter *w, const char *key, List *stop);
extern Jsonb *allma_llm_empty_schema(void);
extern char *allma_llm_url_escape(const char *s);
extern List *allma_llm_add_header(List *headers, const char *name, const char *value);

/* helpers of the response parsers (provider.c) */
extern Jsonb *allma_llm_get_path(Jsonb *v, const char *k1, const char *k2);
extern char *allma_llm_scalar_text(Jsonb *v);
extern void allma_llm_add_tool_call(LlmResult *r, Jsonb *id, Jsonb *name, Jsonb *args);
extern void allma_llm_add_usage(LlmResult *r, const char *key, Jsonb *src,
								const char *srckey);
extern void allma_llm_add_text(LlmResult *r, Jsonb *v);

/* non-throwing JSON parsing (provider.c) */
extern bool allma_llm_parse_json_soft(const char *s, int len, Jsonb **out);

/* s cut to the length of an error message, "..." marking the cut */
extern char *allma_llm_truncate_text(const char *s);

/* the JSON writer, inline: the request writers call it for every value */
#define JW_MAX_DEPTH 32

static inline void
jw_init(JsonWriter *w)
{
	initStringInfo(&w->buf);
	w->depth = 0;
	w->after_key = false;
}

/* separator before a value or key */
static inline void
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

static inline void
jw_open(JsonWriter *w, char c)
{
	jw_sep(w);
	if (w->depth >= JW_MAX_DEPTH)
		elog(ERROR, "allma: JSON writer nested too deeply");
	appendStringInfoChar(&w->buf, c);
	w->need_comma[w->depth++] = false;
}

static inline void
jw_close(JsonWriter *w, char c)
{
	Assert(w->depth > 0);
	w->depth--;
	appendStringInfoChar(&w->buf, c);
}

static inline void
jw_key(JsonWriter *w, const char *key)
{
	jw_sep(w);
	escape_json(&w->buf, key);
	appendStringInfoChar(&w->buf, ':');
	w->after_key = true;
}

static inline void
jw_string(JsonWriter *w, const char *s)
{
	jw_sep(w);
	escape_json(&w->buf, s);
}

static inline void
jw_raw(JsonWriter *w, const char *json)
{
	jw_sep(w);
	appendStringInfoString(&w->buf, json);
}

static inline void
jw_jsonb(JsonWriter *w, Jsonb *v)
{
	jw_raw(w, allma_jsonb_to_cstring(v));
}

static inline void
jw_int(JsonWriter *w, int64 i)
{
	jw_sep(w);
	appendStringInfo(&w->buf, INT64_FORMAT, i);
}

/* shorthands for "key": value */
static inline void
jw_kv_string(JsonWriter *w, const char *key, const char *s)
{
	jw_key(w, key);
	jw_string(w, s);
}

static inline void
jw_kv_jsonb(JsonWriter *w, const char *key, Jsonb *v)
{
	jw_key(w, key);
	jw_jsonb(w, v);
}

#endif							/* ALLMA_LLM_PROVIDER_H */
