/*-------------------------------------------------------------------------
 *
 * llm.h
 *	  LLM provider adapters: pure functions that turn an LLM call into the
 *	  provider's HTTP request and the provider's HTTP response into Allma's
 *	  result.  No network, no catalog access, no transaction needed.
 *
 * Usage (an LLM_INVOCATION step; the worker does the HTTP part):
 *
 *	  if (!allma_llm_build_request(provider, call, &url, &headers, &body, &msg))
 *		  fail the step with ConfigurationError, msg
 *	  submit POST url, headers (List of AllmaHttpHeader *), body
 *	  ...
 *	  if (!allma_llm_parse_response(provider, status, resp_body,
 *									&result, &error_name, &msg))
 *		  fail the step with error_name, msg (try the next fallback)
 *	  if (json mode && !allma_llm_json_output(text of result, &out, &msg))
 *		  ContentBasedRetryableError, msg
 *
 * The call (a jsonb object, built by the engine after rendering the step):
 *
 *	  baseUrl		  required; "http(s)://host/v1" for OPENAI and ANTHROPIC,
 *					  "http(s)://host/v1beta" for GEMINI (no trailing "/"
 *					  needed).  Never defaulted here.
 *	  modelId		  required
 *	  apiKey		  optional; sent as the provider's credential header
 *	  prompt		  required; the rendered prompt template (the user message)
 *	  systemPrompt	  optional
 *	  inferenceParameters  optional {temperature, maxOutputTokens, topP, topK,
 *					  seed, stopSequences}; numbers may also be numeric strings
 *					  (templated values).  Only the parameters given are sent
 *					  (Allma's schema defaults are the engine's business);
 *					  a parameter the provider lacks is left out (OPENAI: topK;
 *					  ANTHROPIC: seed).  ANTHROPIC requires max_tokens:
 *					  a default (anthropic.c) when not given.
 *	  tools			  optional array; {type:"function", name, description?,
 *					  parameters?}, or built-ins {type:"google_search"} and
 *					  {type:"code_execution"} (GEMINI), {type:"web_search",
 *					  config?} (ANTHROPIC).  customConfig.tools is the legacy
 *					  place, used when tools is absent.
 *	  toolChoice	  optional "auto" | "none" | "required" |
 *					  {type:"function", name}; ignored without tools.
 *					  customConfig.toolChoice is the legacy place.
 *	  jsonOutputMode  optional boolean (or customConfig.jsonOutputMode):
 *					  OPENAI response_format json_object, GEMINI
 *					  responseMimeType application/json, ANTHROPIC nothing
 *					  (it has no JSON mode; allma_llm_json_output does the work)
 *	  customConfig	  optional {anthropic_version, safetySettings (GEMINI,
 *					  passed through), jsonOutputMode, tools, toolChoice}
 *
 * The result of allma_llm_parse_response (a jsonb object):
 *
 *	  {text: "...",				   -- text parts joined; "" when none
 *	   tool_calls: [{id, name, arguments: {...}}],	  -- [] when none
 *	   usage: {inputTokens, outputTokens, totalTokens},  -- those given
 *	   finishReason, model,		   -- as the provider says them (or absent)
 *	   groundingMetadata?}		   -- GEMINI, when present
 *
 * Secrets: the engine resolves the API key (allma_secret_get) and puts it in
 * the call; anything it logs about the request must go through
 * allma_secret_redact.
 *
 * The adapters are in src/llm/: provider.c reads the call and holds the
 * provider table, one file per provider writes its request and parses its
 * reply.
 *
 * IDENTIFICATION
 *	  src/llm.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ALLMA_LLM_H
#define ALLMA_LLM_H

#include "allma.h"

#include "nodes/pg_list.h"

/*
 * allma_llm_build_request builds the provider's request for "call".  On
 * success *url, *headers (a List of palloc'd AllmaHttpHeader, Content-Type
 * included) and *body (JSON text) are set and the method is POST.  On a
 * problem with the call (unknown or unsupported provider, missing baseUrl,
 * modelId or prompt, a parameter of the wrong type, a bad tool or
 * toolChoice) returns false with *errmsg; the engine reports that as
 * ConfigurationError.  Never throws for bad input.
 */
extern bool allma_llm_build_request(const char *provider, Jsonb *call,
									char **url, List **headers, char **body,
									char **errmsg);

/*
 * allma_llm_parse_response reads the provider's answer.  status is the
 * HTTP status (0: no response).  On success returns true with *result.
 * Otherwise returns false with *error_name and *errmsg:
 *	  TransientStepError	   no response, 408, 429, 5xx, or a 2xx body that
 *							   is not the provider's JSON
 *	  PermanentStepError	   other 4xx, other statuses, GEMINI blocked prompt
 *	  ContentBasedRetryableError  no text and no tool call (empty or
 *							   filtered answer), tool arguments that are not
 *							   a JSON object
 * errmsg carries the provider's error message when its error shape has one.
 * Never throws for bad input.
 */
extern bool allma_llm_parse_response(const char *provider, int status,
									 const char *body, Jsonb **result,
									 char **error_name, char **errmsg);

/*
 * allma_llm_json_output implements Allma's jsonOutputMode on a reply text:
 * the whole text if it is JSON, else the inside of the first ``` fence,
 * else the text from the first "{" or "[" to its matching bracket (or to
 * the last closing bracket of that kind).  An object is returned as is;
 * any other JSON value is wrapped as {"llm_response": value}.  Returns
 * false with *errmsg when no JSON can be found (the caller raises
 * ContentBasedRetryableError).  Never throws for bad input.
 */
extern bool allma_llm_json_output(const char *text, Jsonb **out, char **errmsg);

/*
 * The provider table (src/llm/provider.c).  allma_llm_default_base_url: the
 * provider's public API base URL; allma_llm_base_url: its allma.*_base_url
 * GUC when set, else that default (both NULL for a provider allma does not
 * speak).  allma_llm_api_key_secret: the name of the secret that holds its
 * key ("<PROVIDER>_API_KEY" for any name).  allma_llm_provider_names: every
 * llmProvider value of Allma's format, NULL-terminated, for validation.
 */
extern const char *allma_llm_default_base_url(const char *provider);
extern const char *allma_llm_base_url(const char *provider);
extern char *allma_llm_api_key_secret(const char *provider);
extern const char **allma_llm_provider_names(void);

#endif							/* ALLMA_LLM_H */
