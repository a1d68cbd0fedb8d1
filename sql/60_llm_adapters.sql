-- LLM provider adapters: request building, response parsing, JSON output mode.
-- Pure functions: nothing here makes a network request.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS allma;
RESET client_min_messages;

-- errors as "SQLSTATE: message" (VERBOSITY verbose would print source lines)
CREATE FUNCTION pg_temp.try(q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	st text;
	msg text;
BEGIN
	EXECUTE q;
	RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT;
	RETURN st || ': ' || msg;
END $$;

------------------------------------------------------------------------------
-- Requests: OpenAI chat completions
------------------------------------------------------------------------------

-- minimal call: only what was given is sent; the key is redacted in the preview
SELECT jsonb_pretty(allma_llm_request_preview('OPENAI', '{
  "baseUrl": "http://127.0.0.1:9/v1/", "modelId": "gpt-4o-mini",
  "apiKey": "sk-test-123456", "prompt": "Say hi"}'));

-- every parameter, a system prompt, tools, a forced function, JSON mode
SELECT jsonb_pretty(allma_llm_request_preview('openai', '{
  "baseUrl": "http://127.0.0.1:9/openai/v1", "modelId": "mock-json", "apiKey": "k-abcd",
  "systemPrompt": "You are terse.", "prompt": "Weather in {{city}}?",
  "inferenceParameters": {"temperature": 0.2, "maxOutputTokens": 256, "topP": 0.9,
                          "topK": 40, "seed": 7, "stopSequences": ["END", "STOP"]},
  "tools": [{"type": "function", "name": "get_weather", "description": "Weather by city",
             "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                            "required": ["city"]}},
            {"name": "no_params"}],
  "toolChoice": {"type": "function", "name": "get_weather"},
  "jsonOutputMode": true}'));

-- toolChoice strings; a toolChoice without tools is not sent; numeric strings
-- (templated values) become numbers; legacy customConfig.tools/jsonOutputMode
SELECT c, (allma_llm_request_preview('OPENAI', jsonb_build_object(
         'baseUrl', 'http://h/v1', 'modelId', 'm', 'prompt', 'p') || c::jsonb)->'body') - 'messages'::text - 'model'::text AS body
  FROM (VALUES ('{"tools": [{"name": "f"}], "toolChoice": "auto"}'),
               ('{"tools": [{"name": "f"}], "toolChoice": "none"}'),
               ('{"tools": [{"name": "f"}], "toolChoice": "required"}'),
               ('{"toolChoice": "required"}'),
               ('{"tools": [], "toolChoice": "auto"}'),
               ('{"inferenceParameters": {"temperature": "0.5", "maxOutputTokens": "100", "stopSequences": "X"}}'),
               ('{"customConfig": {"jsonOutputMode": true, "tools": [{"name": "legacy"}], "toolChoice": "required"}}'),
               ('{"jsonOutputMode": false, "customConfig": {"jsonOutputMode": true}}')) t(c);

-- no apiKey: no Authorization header (local OpenAI-compatible servers)
SELECT allma_llm_request_preview('OPENAI', '{"baseUrl": "http://h/v1", "modelId": "m", "prompt": "p"}')->'headers';

------------------------------------------------------------------------------
-- Requests: Anthropic messages
------------------------------------------------------------------------------

SELECT jsonb_pretty(allma_llm_request_preview('ANTHROPIC', '{
  "baseUrl": "http://127.0.0.1:9/v1", "modelId": "claude-x", "apiKey": "sk-ant-secret",
  "prompt": "Hello"}'));

SELECT jsonb_pretty(allma_llm_request_preview('ANTHROPIC', '{
  "baseUrl": "http://127.0.0.1:9/v1", "modelId": "claude-x", "apiKey": "sk-ant-secret",
  "systemPrompt": "Be brief.", "prompt": "Hello",
  "inferenceParameters": {"temperature": 1, "maxOutputTokens": 1000, "topP": 0.5, "topK": 5,
                          "seed": 3, "stopSequences": ["\n\nHuman:"]},
  "tools": [{"type": "function", "name": "lookup", "description": "Look up",
             "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}},
            {"name": "bare"},
            {"type": "web_search", "config": {"max_uses": 2}}],
  "toolChoice": "required", "jsonOutputMode": true,
  "customConfig": {"anthropic_version": "2024-01-01"}}'));

SELECT c, allma_llm_request_preview('ANTHROPIC', jsonb_build_object(
         'baseUrl', 'http://h/v1', 'modelId', 'm', 'prompt', 'p', 'tools', '[{"name": "f"}]'::jsonb) || c::jsonb)->'body'->'tool_choice'
  FROM (VALUES ('{"toolChoice": "auto"}'), ('{"toolChoice": "none"}'),
               ('{"toolChoice": {"type": "function", "name": "f"}}'), ('{}')) t(c);

------------------------------------------------------------------------------
-- Requests: Gemini generateContent
------------------------------------------------------------------------------

SELECT jsonb_pretty(allma_llm_request_preview('GEMINI', '{
  "baseUrl": "http://127.0.0.1:9/v1beta", "modelId": "gemini-2.0-flash", "apiKey": "AIza-secret",
  "prompt": "Hi"}'));

SELECT jsonb_pretty(allma_llm_request_preview('GEMINI', '{
  "baseUrl": "http://127.0.0.1:9/v1beta", "modelId": "models/mock-tools", "apiKey": "AIza-secret",
  "systemPrompt": "Sys", "prompt": "Hi",
  "inferenceParameters": {"temperature": 0.7, "maxOutputTokens": 16000, "topP": 0.95, "topK": 40,
                          "seed": 1, "stopSequences": ["x"]},
  "tools": [{"type": "function", "name": "f", "description": "d",
             "parameters": {"type": "object", "properties": {"a": {"type": "number"}}}},
            {"type": "google_search"}, {"type": "code_execution"}],
  "toolChoice": {"type": "function", "name": "f"},
  "jsonOutputMode": true,
  "customConfig": {"safetySettings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}]}}'));

SELECT c, allma_llm_request_preview('GEMINI', jsonb_build_object(
         'baseUrl', 'http://h/v1beta', 'modelId', 'm', 'prompt', 'p', 'tools', '[{"name": "f"}]'::jsonb) || c::jsonb)->'body'->'toolConfig'
  FROM (VALUES ('{"toolChoice": "auto"}'), ('{"toolChoice": "none"}'),
               ('{"toolChoice": "required"}'), ('{}')) t(c);

-- the model id is percent-encoded into the path
SELECT allma_llm_request_preview('GEMINI', '{"baseUrl": "http://h/v1beta", "modelId": "a b/c?d", "prompt": "p"}')->>'url';

------------------------------------------------------------------------------
-- Bad calls
------------------------------------------------------------------------------

\set VERBOSITY terse
SELECT allma_llm_request_preview('MISTRAL', '{"baseUrl": "http://h", "modelId": "m", "prompt": "p"}');
SELECT allma_llm_request_preview('AWS_BEDROCK', '{"baseUrl": "http://h", "modelId": "m", "prompt": "p"}');
SELECT allma_llm_request_preview('OPENAI', '{"modelId": "m", "prompt": "p"}');
SELECT allma_llm_request_preview('OPENAI', '{"baseUrl": "ftp://h", "modelId": "m", "prompt": "p"}');
SELECT allma_llm_request_preview('OPENAI', '{"baseUrl": "http://h", "prompt": "p"}');
SELECT allma_llm_request_preview('OPENAI', '{"baseUrl": "http://h", "modelId": "m"}');
SELECT allma_llm_request_preview('OPENAI', '{"baseUrl": "http://h", "modelId": 5, "prompt": "p"}');
SELECT allma_llm_request_preview('OPENAI', '{"baseUrl": "http://h", "modelId": "m", "prompt": "p", "inferenceParameters": {"temperature": "hot"}}');
SELECT allma_llm_request_preview('OPENAI', '{"baseUrl": "http://h", "modelId": "m", "prompt": "p", "inferenceParameters": {"maxOutputTokens": 1.5}}');
SELECT allma_llm_request_preview('OPENAI', '{"baseUrl": "http://h", "modelId": "m", "prompt": "p", "inferenceParameters": {"stopSequences": [1]}}');
SELECT allma_llm_request_preview('OPENAI', '{"baseUrl": "http://h", "modelId": "m", "prompt": "p", "tools": {"name": "f"}}');
SELECT allma_llm_request_preview('OPENAI', '{"baseUrl": "http://h", "modelId": "m", "prompt": "p", "tools": [{"type": "function"}]}');
SELECT allma_llm_request_preview('OPENAI', '{"baseUrl": "http://h", "modelId": "m", "prompt": "p", "tools": [{"type": "google_search"}]}');
SELECT allma_llm_request_preview('OPENAI', '{"baseUrl": "http://h", "modelId": "m", "prompt": "p", "tools": [{"name": "f", "parameters": "x"}]}');
SELECT allma_llm_request_preview('OPENAI', '{"baseUrl": "http://h", "modelId": "m", "prompt": "p", "tools": [{"name": "f"}], "toolChoice": "sometimes"}');
SELECT allma_llm_request_preview('OPENAI', '{"baseUrl": "http://h", "modelId": "m", "prompt": "p", "tools": [{"name": "f"}], "toolChoice": {"type": "function", "name": "g"}}');
SELECT allma_llm_request_preview('OPENAI', '{"baseUrl": "http://h", "modelId": "m", "prompt": "p", "apiKey": "a\r\nX-Evil: 1"}');
SELECT allma_llm_request_preview('OPENAI', '["not an object"]');
\set VERBOSITY default

------------------------------------------------------------------------------
-- Responses: OpenAI (shapes as the mock server and the real API send them)
------------------------------------------------------------------------------

SELECT jsonb_pretty(allma_llm_parse('OPENAI', 200, '{"id": "chatcmpl-1", "object": "chat.completion",
  "created": 1, "model": "gpt-4o-mini-2024",
  "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello there"},
               "finish_reason": "stop"}],
  "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15}}'));

SELECT jsonb_pretty(allma_llm_parse('OPENAI', 200, '{"model": "m",
  "choices": [{"index": 0, "message": {"role": "assistant", "content": null,
    "tool_calls": [{"id": "call_a", "type": "function", "function": {"name": "f", "arguments": "{\"x\": 1}"}},
                   {"id": "call_b", "type": "function", "function": {"name": "g", "arguments": ""}}]},
    "finish_reason": "tool_calls"}],
  "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}}'));

-- arguments that are not a JSON object; no content at all; content filter
SELECT allma_llm_parse('OPENAI', 200, '{"choices": [{"message": {"content": null,
  "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "{oops"}}]}, "finish_reason": "tool_calls"}]}');
SELECT allma_llm_parse('OPENAI', 200, '{"choices": []}');
SELECT allma_llm_parse('OPENAI', 200, '{"choices": [{"message": {"content": ""}, "finish_reason": "content_filter"}]}');

-- errors: rate limit and server errors are transient, other 4xx permanent
SELECT s, allma_llm_parse('OPENAI', s, b)
  FROM (VALUES (429, '{"error": {"message": "Rate limit reached", "type": "requests", "param": null, "code": "rate_limit_exceeded"}}'),
               (401, '{"error": {"message": "Incorrect API key provided", "type": "invalid_request_error", "param": null, "code": "invalid_api_key"}}'),
               (400, '{"error": {"message": "Bad param", "type": "invalid_request_error", "param": null, "code": null}}'),
               (500, '<html>Internal Server Error</html>'),
               (503, ''),
               (408, '{"error": "timeout"}'),
               (0, NULL),
               (302, 'moved')) t(s, b);

-- a 200 that is not JSON, or not an object
SELECT allma_llm_parse('OPENAI', 200, 'not json');
SELECT allma_llm_parse('OPENAI', 200, '[1, 2]');

------------------------------------------------------------------------------
-- Responses: Anthropic
------------------------------------------------------------------------------

SELECT jsonb_pretty(allma_llm_parse('ANTHROPIC', 200, '{"id": "msg_1", "type": "message", "role": "assistant",
  "model": "claude-x", "content": [{"type": "text", "text": "Hello "}, {"type": "text", "text": "world"}],
  "stop_reason": "end_turn", "stop_sequence": null, "usage": {"input_tokens": 10, "output_tokens": 4}}'));

SELECT jsonb_pretty(allma_llm_parse('ANTHROPIC', 200, '{"type": "message", "model": "claude-x",
  "content": [{"type": "text", "text": "Let me check."},
              {"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {"q": "pg"}},
              {"type": "tool_use", "id": "toolu_2", "name": "noargs", "input": {}}],
  "stop_reason": "tool_use", "usage": {"input_tokens": 20, "output_tokens": 9}}'));

SELECT s, allma_llm_parse('ANTHROPIC', s, b)
  FROM (VALUES (529, '{"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}'),
               (401, '{"type": "error", "error": {"type": "authentication_error", "message": "invalid x-api-key"}}'),
               (404, '{"type": "error", "error": {"type": "not_found_error", "message": "model: nope"}}')) t(s, b);
SELECT allma_llm_parse('ANTHROPIC', 200, '{"type": "message", "content": [], "stop_reason": "max_tokens"}');

------------------------------------------------------------------------------
-- Responses: Gemini
------------------------------------------------------------------------------

SELECT jsonb_pretty(allma_llm_parse('GEMINI', 200, '{"candidates": [{"content": {"role": "model",
  "parts": [{"text": "thinking...", "thought": true}, {"text": "{\"a\": "}, {"text": "1}"}]},
  "finishReason": "STOP", "index": 0}],
  "usageMetadata": {"promptTokenCount": 8, "candidatesTokenCount": 4, "totalTokenCount": 12},
  "modelVersion": "gemini-2.0-flash-001"}'));

SELECT jsonb_pretty(allma_llm_parse('GEMINI', 200, '{"candidates": [{"content": {"role": "model",
  "parts": [{"functionCall": {"name": "f", "args": {"x": 1}}}, {"functionCall": {"id": "fc-2", "name": "g"}}]},
  "finishReason": "STOP", "groundingMetadata": {"webSearchQueries": ["pg"]}}],
  "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 2, "totalTokenCount": 5}}'));

SELECT s, allma_llm_parse('GEMINI', s, b)
  FROM (VALUES (429, '{"error": {"code": 429, "message": "Resource has been exhausted", "status": "RESOURCE_EXHAUSTED"}}'),
               (503, '[{"error": {"code": 503, "message": "The model is overloaded", "status": "UNAVAILABLE"}}]'),
               (400, '{"error": {"code": 400, "message": "API key not valid", "status": "INVALID_ARGUMENT"}}')) t(s, b);
-- a blocked prompt is permanent; a candidate without content is a content error
SELECT allma_llm_parse('GEMINI', 200, '{"promptFeedback": {"blockReason": "SAFETY"}}');
SELECT allma_llm_parse('GEMINI', 200, '{"candidates": [{"finishReason": "SAFETY", "index": 0}]}');

-- long error bodies are cut
SELECT length(allma_llm_parse('OPENAI', 500, repeat('x', 5000))->'error'->>'message') < 600 AS cut;
SELECT allma_llm_parse('GROQ', 200, '{}');

------------------------------------------------------------------------------
-- jsonOutputMode: JSON extraction
------------------------------------------------------------------------------

SELECT r, allma_llm_extract_json(r)
  FROM (VALUES ('{"answer": 42}'),
               ('  {"answer": 42}  '),
               (E'```json\n{"a": 1, "b": [1, 2]}\n```'),
               (E'Here you go:\n```JSON\n{"a": "fenced"}\n```\nAnything else?'),
               (E'```\n[1, 2, 3]\n```'),
               ('Sure! {"a": {"b": "}"}} Hope that helps {really}.'),
               ('Result: {"a": 1} and also {"b": 2}'),
               ('List: [1, {"x": [2]}] done'),
               ('[note] then {"a": 1}'),
               ('42'),
               ('"just a string"'),
               ('null'),
               ('{"outer": {"inner": "with \"quotes\" and \\ backslash"}}'),
               (E'```json\n{"unterminated": true}')) t(r);

SELECT pg_temp.try($$SELECT allma_llm_extract_json('this is not json {')$$);
SELECT pg_temp.try($$SELECT allma_llm_request_preview('OPENAI', '{}')$$);
\set VERBOSITY terse
SELECT allma_llm_extract_json('');
SELECT allma_llm_extract_json('{"a": 1');
SELECT allma_llm_extract_json('no brackets at all');
SELECT allma_llm_extract_json('{"nul": "\u0000"}');
\set VERBOSITY default
