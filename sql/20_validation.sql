-- allma_validate_flow: every rule of src/validate.c, each error with its
-- SQLSTATE, message, detail and hint.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS allma;
RESET client_min_messages;

-- check() runs the validator and prints "ok" or "SQLSTATE: message" plus the
-- DETAIL and HINT lines (the same fields \set VERBOSITY verbose shows, without
-- its LOCATION line, which names source lines).
CREATE FUNCTION pg_temp.check(def jsonb) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	st text; msg text; det text; hnt text;
BEGIN
	PERFORM allma_validate_flow(def);
	RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT,
		det = PG_EXCEPTION_DETAIL, hnt = PG_EXCEPTION_HINT;
	RETURN st || ': ' || msg
		|| CASE WHEN det <> '' THEN E'\nDETAIL:  ' || det ELSE '' END
		|| CASE WHEN hnt <> '' THEN E'\nHINT:  ' || hnt ELSE '' END;
END $$;

-- A valid flow that uses most step types; each test below breaks one thing.
CREATE TEMP TABLE base (def jsonb);
INSERT INTO base VALUES ($json$
{
  "id": "demo-flow",
  "version": 1,
  "isPublished": true,
  "description": null,
  "enableExecutionLogs": true,
  "flowVariables": {"FromEmail": "a@example.com"},
  "startStepInstanceId": "start",
  "steps": {
    "start": {
      "stepInstanceId": "start", "stepType": "NO_OP",
      "transitions": [{"condition": "$.n > 1", "nextStepInstanceId": "load", "maxTransitions": 0}],
      "defaultNextStepInstanceId": "load", "defaultNextMaxTransitions": 10
    },
    "load": {
      "stepType": "DATA_LOAD", "moduleIdentifier": "system/sql-query",
      "customConfig": {"sql": "SELECT $1::int AS n", "parameters": ["$.n", 5, "text"]},
      "inputMappings": {"a.b[0]": "$.x", "whole": "$"},
      "outputMappings": {"$.steps_output.load": "$.", "$.rows": "$.rows"},
      "onError": {
        "retries": {"count": 3, "intervalSeconds": 0.5, "backoffRate": 2, "maxDelaySeconds": 60,
                    "jitterStrategy": "FULL", "errorEquals": ["TransientStepError"]},
        "retryOnContentError": {"count": 1, "intervalSeconds": 0, "backoffRate": 1},
        "fallbackStepInstanceId": "end", "continueOnFailure": false,
        "catch": [{"errorEquals": ["States.ALL"], "nextStepInstanceId": "end", "resultPath": "$.error"}]
      },
      "delay": {"milliseconds": 0, "position": "before"},
      "defaultNextStepInstanceId": "fork"
    },
    "fork": {
      "stepType": "PARALLEL_FORK_MANAGER", "itemsPath": "$.items",
      "parallelBranches": [{"branchId": "b1", "stepInstanceId": "work", "condition": "$.currentItem.ok == true",
                            "inputMappings": {"item": "$.currentItem"}, "literals": {"k": "v"}}],
      "aggregationConfig": {"strategy": "COLLECT_ARRAY", "dataPath": "$.output", "maxConcurrency": 2,
                            "failOnBranchError": false, "toleratedFailurePercentage": 50, "toleratedFailureCount": 1},
      "defaultNextStepInstanceId": "llm"
    },
    "work": {
      "stepType": "DATA_TRANSFORMATION", "moduleIdentifier": "system/compose-object-from-input",
      "literals": {"greeting": "hi {{name}}", "nested.list": ["{{a}}", {"b": "{{b}}"}], "n": 1}
    },
    "llm": {
      "stepType": "LLM_INVOCATION", "llmProvider": "GEMINI", "modelId": "gemini-flash-latest",
      "promptTemplateId": "p1", "customConfig": {"jsonOutputMode": true},
      "inferenceParameters": {"temperature": 0.5, "maxOutputTokens": 1000, "topP": 1, "topK": 40, "seed": -3},
      "templateContextMappings": {
        "rows": {"sourceJsonPath": "$.rows[0:3]", "formatAs": "CUSTOM_STRING", "itemTemplate": "- {{name}}",
                 "selectFields": ["name"], "joinSeparator": "\n"}},
      "fallbacks": [{"llmProvider": "{{flow_variables.p}}", "modelId": "m2"}],
      "toolChoice": {"type": "function", "name": "f"},
      "tools": [{"type": "function", "name": "f", "description": "d", "parameters": {}}],
      "mediaAttachments": [{"url": "http://127.0.0.1/x.png"}],
      "defaultNextStepInstanceId": "call"
    },
    "call": {
      "stepType": "API_CALL", "apiUrlTemplate": {"template": "http://127.0.0.1/{{id}}"},
      "apiHttpMethod": "POST", "apiHeadersTemplate": {"X-Id": "$.id"}, "apiStaticHeaders": {"Accept": "*/*"},
      "requestBodyTemplate": {"body": {"sourceJsonPath": "$.payload"}},
      "customConfig": {"timeoutMs": 1000}, "defaultNextStepInstanceId": "wait"
    },
    "wait": {
      "stepType": "WAIT_FOR_EXTERNAL_EVENT", "correlationKeyTemplate": "approval:{{id}}",
      "maxWaitTimeSeconds": 604800, "defaultNextStepInstanceId": "poll"
    },
    "poll": {
      "stepType": "POLL_EXTERNAL_API",
      "apiCallDefinition": {"apiUrlTemplate": {"template": "http://127.0.0.1/status"}, "apiHttpMethod": "GET"},
      "pollingConfig": {"intervalSeconds": 5, "maxAttempts": 3},
      "exitConditions": {"successCondition": "$.data.done == true", "failureCondition": "$.data.failed"},
      "defaultNextStepInstanceId": "mail"
    },
    "mail": {
      "stepType": "EMAIL", "from": "{{flow_variables.FromEmail}}", "to": ["x@example.com"],
      "cc": "y@example.com", "subject": "Hi {{name}}", "body": "Body",
      "attachments": [{"filename": "a.txt", "s3Pointer": {"bucket": "b", "key": "k"}}],
      "defaultNextStepInstanceId": "end"
    },
    "end": {"stepInstanceId": "end", "stepType": "END_FLOW"}
  }
}
$json$);

-- patch(step, fields): the base flow with fields merged into one step;
-- add(step, definition): the base flow with one more (unreferenced) step;
-- flow(fields): the base flow with top-level fields merged in.
CREATE FUNCTION pg_temp.patch(step text, p jsonb) RETURNS text LANGUAGE sql AS $$
	SELECT pg_temp.check(jsonb_set(def, ARRAY['steps', step], (def->'steps'->step) || p)) FROM base $$;
CREATE FUNCTION pg_temp.add(step text, s jsonb) RETURNS text LANGUAGE sql AS $$
	SELECT pg_temp.check(jsonb_set(def, ARRAY['steps', step], s)) FROM base $$;
CREATE FUNCTION pg_temp.flow(p jsonb) RETURNS text LANGUAGE sql AS $$
	SELECT pg_temp.check(def || p) FROM base $$;
CREATE FUNCTION pg_temp.without(path text[]) RETURNS text LANGUAGE sql AS $$
	SELECT pg_temp.check(def #- path) FROM base $$;

\pset tuples_only on
\pset format unaligned

SELECT pg_temp.check(def) FROM base;

-- the function is STRICT; a NULL definition returns NULL
SELECT allma_validate_flow(NULL) IS NULL;

------------------------------------------------------------------------
-- flow fields
------------------------------------------------------------------------
SELECT pg_temp.check('[]');
SELECT pg_temp.check('"flow"');
SELECT pg_temp.without('{id}');
SELECT pg_temp.flow('{"id": 7}');
SELECT pg_temp.flow('{"id": ""}');
SELECT pg_temp.flow('{"id": "my flow"}');
SELECT pg_temp.flow(jsonb_build_object('id', repeat('x', 201)));
SELECT pg_temp.flow(jsonb_build_object('id', repeat('x', 200)));
SELECT pg_temp.flow('{"id": "acme.flows:v2_x-y"}');
SELECT pg_temp.flow('{"version": 0}');
SELECT pg_temp.flow('{"version": 1.5}');
SELECT pg_temp.flow('{"version": "1"}');
SELECT pg_temp.without('{version}');
SELECT pg_temp.flow('{"isPublished": "yes"}');
SELECT pg_temp.flow('{"enableExecutionLogs": "true"}');
SELECT pg_temp.flow('{"description": 5}');
SELECT pg_temp.flow('{"description": "text"}');
SELECT pg_temp.flow('{"flowVariables": []}');
SELECT pg_temp.flow('{"defaultStepConfig": 1}');
SELECT pg_temp.flow('{"defaultStepConfig": null}');
SELECT pg_temp.without('{steps}');
SELECT pg_temp.flow('{"steps": []}');
SELECT pg_temp.flow('{"steps": {}}');
SELECT pg_temp.without('{startStepInstanceId}');
SELECT pg_temp.flow('{"startStepInstanceId": 5}');
SELECT pg_temp.flow('{"startStepInstanceId": ""}');
SELECT pg_temp.flow('{"startStepInstanceId": "nope"}');
-- unknown top-level fields pass through
SELECT pg_temp.flow('{"name": "x", "tags": ["a"], "createdAt": "2025-01-01T00:00:00Z"}');

-- onCompletionActions
SELECT pg_temp.flow('{"onCompletionActions": [{"actionType": "LOG_ONLY"},
	{"actionType": "API_CALL", "target": "http://127.0.0.1/{{id}}", "apiHttpMethod": "POST",
	 "executeOnStatus": "ANY", "condition": "$.ok", "payloadTemplate": {"a.b": "$.x"}},
	{"actionType": "SNS_SEND", "target": "arn:aws:sns:x", "messageAttributesTemplate": {"k": "$.v"}},
	{"actionType": "DATA_SAVE", "moduleIdentifier": "acme/save"}]}');
SELECT pg_temp.flow('{"onCompletionActions": {}}');
SELECT pg_temp.flow('{"onCompletionActions": [1]}');
SELECT pg_temp.flow('{"onCompletionActions": [{}]}');
SELECT pg_temp.flow('{"onCompletionActions": [{"actionType": "PRINT"}]}');
SELECT pg_temp.flow('{"onCompletionActions": [{"actionType": "LOG_ONLY", "executeOnStatus": "SOMETIMES"}]}');
SELECT pg_temp.flow('{"onCompletionActions": [{"actionType": "LOG_ONLY", "condition": 1}]}');
SELECT pg_temp.flow('{"onCompletionActions": [{"actionType": "API_CALL", "apiHttpMethod": "GET"}]}');
SELECT pg_temp.flow('{"onCompletionActions": [{"actionType": "API_CALL", "target": "http://x", "apiHttpMethod": "FETCH"}]}');
SELECT pg_temp.flow('{"onCompletionActions": [{"actionType": "LOG_ONLY", "payloadTemplate": {"a": "x"}}]}');
SELECT pg_temp.flow('{"onCompletionActions": [{"actionType": "SNS_SEND", "target": "t", "messageAttributesTemplate": {"k": "v"}}]}');
SELECT pg_temp.flow('{"onCompletionActions": [{"actionType": "DATA_SAVE"}]}');

------------------------------------------------------------------------
-- step keys, stepInstanceId, stepType
------------------------------------------------------------------------
SELECT pg_temp.add('a.b', '{"stepType": "NO_OP"}');
SELECT pg_temp.add('', '{"stepType": "NO_OP"}');
SELECT pg_temp.add('Step-2_b', '{"stepType": "NO_OP"}');
SELECT pg_temp.add('x', '[]');
SELECT pg_temp.add('x', '"NO_OP"');
SELECT pg_temp.patch('load', '{"stepInstanceId": "other"}');
SELECT pg_temp.patch('load', '{"stepInstanceId": 1}');
SELECT pg_temp.add('x', '{"stepInstanceId": "x"}');
SELECT pg_temp.add('x', '{"stepType": 3}');
SELECT pg_temp.add('x', '{"stepType": "TELEPORT"}');
SELECT pg_temp.add('x', '{"stepType": "no_op"}');
-- every Allma step type is known (fields each type requires are given)
SELECT pg_temp.add('x', '{"stepType": "CUSTOM_LOGIC", "moduleIdentifier": "acme/logic"}');
SELECT pg_temp.add('x', '{"stepType": "CUSTOM_LAMBDA_INVOKE", "lambdaFunctionArnTemplate": "arn:aws:lambda:x"}');
SELECT pg_temp.add('x', '{"stepType": "DATA_SAVE", "moduleIdentifier": "system/dynamodb-update-item"}');
SELECT pg_temp.add('x', '{"stepType": "FILE_DOWNLOAD", "sourceUrlTemplate": "http://127.0.0.1/f", "moduleIdentifier": "system/file-download",
	"method": "GET", "headersTemplate": {"Authorization": "$.token"}, "destinationKeyTemplate": "k/{{id}}",
	"customConfig": {"timeoutMs": 5, "verifySsl": false}}');
SELECT pg_temp.add('x', '{"stepType": "START_SUB_FLOW", "subFlowDefinitionId": "other", "subFlowVersion": 2,
	"subFlowExecutionMode": "ASYNC", "inputMappingsToSubFlow": {"a": "$.a"}}');
SELECT pg_temp.add('x', '{"stepType": "START_FLOW_EXECUTION", "moduleIdentifier": "system/start-flow-execution",
	"literals": {"flowDefinitionId": "{{flow_variables.Other}}"}, "flowVersion": "LATEST_PUBLISHED"}');
SELECT pg_temp.add('x', '{"stepType": "MCP_CALL", "mcpConnectionId": "c1", "toolName": "search"}');
SELECT pg_temp.add('x', '{"stepType": "SQS_SEND", "moduleIdentifier": "system/sqs-send", "queueUrl": "http://q",
	"payload": {"a": "{{b}}"}, "messageGroupId": "g"}');
SELECT pg_temp.add('x', '{"stepType": "SNS_PUBLISH", "topicArn": "arn:aws:sns:x", "payload": {}, "messageAttributes": {"k": "v"}}');
SELECT pg_temp.add('x', '{"stepType": "EMAIL_START_POINT", "emailAddress": "in@example.com", "keyword": "K"}');
SELECT pg_temp.add('x', '{"stepType": "SCHEDULE_START_POINT", "scheduleExpression": "{{flow_variables.Cron}}",
	"enabled": false, "timezone": "UTC", "payloadTemplate": {"a": 1}}');
-- unknown step fields pass through
SELECT pg_temp.add('x', '{"stepType": "NO_OP", "position": {"x": 1, "y": 2}, "fill": "#fff",
	"errorHandling": {"default": {"action": "TRANSITION"}}, "comment": "c"}');
SELECT pg_temp.patch('load', '{"displayName": 5}');
SELECT pg_temp.patch('load', '{"stepDefinitionId": 5}');

------------------------------------------------------------------------
-- moduleIdentifier
------------------------------------------------------------------------
SELECT pg_temp.add('x', '{"stepType": "DATA_LOAD"}');
SELECT pg_temp.add('x', '{"stepType": "CUSTOM_LOGIC"}');
SELECT pg_temp.add('x', '{"stepType": "DATA_LOAD", "stepDefinitionId": "system-dynamodb-data-loader"}');
SELECT pg_temp.add('x', '{"stepType": "DATA_LOAD", "stepDefinitionId": null}');
SELECT pg_temp.add('x', '{"stepType": "DATA_LOAD", "moduleIdentifier": ""}');
SELECT pg_temp.add('x', '{"stepType": "DATA_LOAD", "moduleIdentifier": 5}');
-- modules allma does not implement are allowed: they run through bindings
SELECT pg_temp.add('x', '{"stepType": "DATA_TRANSFORMATION", "moduleIdentifier": "system/jsonata-transformer"}');
SELECT pg_temp.add('x', '{"stepType": "DATA_SAVE", "moduleIdentifier": "system/dynamodb-batch-writer"}');
SELECT pg_temp.add('x', '{"stepType": "NO_OP", "moduleIdentifier": "acme/x"}');
SELECT pg_temp.add('x', '{"stepType": "NO_OP", "moduleIdentifier": "system/noop"}');
SELECT pg_temp.add('x', '{"stepType": "END_FLOW", "moduleIdentifier": "system/noop"}');
SELECT pg_temp.add('x', '{"stepType": "START_FLOW_EXECUTION", "moduleIdentifier": "system/start-sub-flow"}');
SELECT pg_temp.add('x', '{"stepType": "SQS_SEND", "moduleIdentifier": "system/sns-publish"}');
SELECT pg_temp.add('x', '{"stepType": "DATA_LOAD", "moduleIdentifier": "system/generate-uuid"}');
SELECT pg_temp.add('x', '{"stepType": "CUSTOM_LAMBDA_INVOKE", "moduleIdentifier": "system/flatten-array"}');
-- system/sql-query and system/sql-execute
SELECT pg_temp.add('x', '{"stepType": "DATA_SAVE", "moduleIdentifier": "system/sql-execute",
	"customConfig": {"sql": "UPDATE t SET a = $1", "parameters": ["$.a"]}}');
SELECT pg_temp.without('{steps,load,customConfig}');
SELECT pg_temp.without('{steps,load,customConfig,sql}');
SELECT pg_temp.patch('load', '{"customConfig": {"sql": 5}}');
SELECT pg_temp.patch('load', '{"customConfig": {"sql": ""}}');
SELECT pg_temp.patch('load', '{"customConfig": {"sql": "SELECT 1", "parameters": "$.a"}}');
SELECT pg_temp.patch('load', '{"customConfig": {"sql": "SELECT $1", "parameters": ["$a"]}}');

------------------------------------------------------------------------
-- transitions
------------------------------------------------------------------------
SELECT pg_temp.patch('start', '{"transitions": {}}');
SELECT pg_temp.patch('start', '{"transitions": []}');
SELECT pg_temp.patch('start', '{"transitions": ["load"]}');
SELECT pg_temp.patch('start', '{"transitions": [{"nextStepInstanceId": "load"}]}');
SELECT pg_temp.patch('start', '{"transitions": [{"condition": true, "nextStepInstanceId": "load"}]}');
SELECT pg_temp.patch('start', '{"transitions": [{"condition": "$.a"}]}');
SELECT pg_temp.patch('start', '{"transitions": [{"condition": "$.a", "nextStepInstanceId": "load"},
	{"condition": "$.b", "nextStepInstanceId": "nope"}]}');
SELECT pg_temp.patch('start', '{"transitions": [{"condition": "$.a", "nextStepInstanceId": ""}]}');
SELECT pg_temp.patch('start', '{"transitions": [{"condition": "$.a", "nextStepInstanceId": "load", "maxTransitions": -1}]}');
SELECT pg_temp.patch('start', '{"transitions": [{"condition": "$.a", "nextStepInstanceId": "load", "maxTransitions": 1.5}]}');
SELECT pg_temp.patch('start', '{"transitions": [{"condition": "$.a", "nextStepInstanceId": "load", "maxTransitions": 1000001}]}');
SELECT pg_temp.patch('start', '{"transitions": [{"condition": "$.a", "nextStepInstanceId": "load", "maxTransitions": "5"}]}');
SELECT pg_temp.patch('start', '{"defaultNextStepInstanceId": "nope"}');
SELECT pg_temp.patch('start', '{"defaultNextStepInstanceId": 5}');
SELECT pg_temp.patch('start', '{"defaultNextMaxTransitions": -1}');
-- cycles are allowed
SELECT pg_temp.patch('end', '{"stepType": "NO_OP", "defaultNextStepInstanceId": "start"}');

------------------------------------------------------------------------
-- onError
------------------------------------------------------------------------
SELECT pg_temp.patch('load', '{"onError": []}');
SELECT pg_temp.patch('load', '{"onError": {"fallbackStepInstanceId": "nope"}}');
SELECT pg_temp.patch('load', '{"onError": {"continueOnFailure": "yes"}}');
SELECT pg_temp.patch('load', '{"onError": {"retries": 3}}');
SELECT pg_temp.patch('load', '{"onError": {"retries": {"count": 11}}}');
SELECT pg_temp.patch('load', '{"onError": {"retries": {"count": 10}}}');
SELECT pg_temp.patch('load', '{"onError": {"retries": {"count": -1}}}');
SELECT pg_temp.patch('load', '{"onError": {"retries": {"count": 1.5}}}');
SELECT pg_temp.patch('load', '{"onError": {"retries": {"count": "3"}}}');
SELECT pg_temp.patch('load', '{"onError": {"retries": {"count": 1e400}}}');
SELECT pg_temp.patch('load', '{"onError": {"retries": {"intervalSeconds": 0}}}');
SELECT pg_temp.patch('load', '{"onError": {"retries": {"intervalSeconds": 86401}}}');
SELECT pg_temp.patch('load', '{"onError": {"retries": {"backoffRate": 0.5}}}');
SELECT pg_temp.patch('load', '{"onError": {"retries": {"backoffRate": 10.5}}}');
SELECT pg_temp.patch('load', '{"onError": {"retries": {"maxDelaySeconds": 0}}}');
SELECT pg_temp.patch('load', '{"onError": {"retries": {"jitterStrategy": "SOME"}}}');
SELECT pg_temp.patch('load', '{"onError": {"retries": {"jitterStrategy": true}}}');
SELECT pg_temp.patch('load', '{"onError": {"retries": {"errorEquals": "TransientStepError"}}}');
SELECT pg_temp.patch('load', '{"onError": {"retries": {"errorEquals": ["A", ""]}}}');
SELECT pg_temp.patch('load', '{"onError": {"retries": {"errorEquals": [1]}}}');
SELECT pg_temp.patch('load', '{"onError": {"retryOnContentError": {"count": 0}}}');
SELECT pg_temp.patch('load', '{"onError": {"retryOnContentError": {"intervalSeconds": -1}}}');
SELECT pg_temp.patch('load', '{"onError": {"retryOnContentError": {"backoffRate": 11}}}');
SELECT pg_temp.patch('load', '{"onError": {"catch": {}}}');
SELECT pg_temp.patch('load', '{"onError": {"catch": ["end"]}}');
SELECT pg_temp.patch('load', '{"onError": {"catch": [{"nextStepInstanceId": "end"}]}}');
SELECT pg_temp.patch('load', '{"onError": {"catch": [{"errorEquals": [], "nextStepInstanceId": "end"}]}}');
SELECT pg_temp.patch('load', '{"onError": {"catch": [{"errorEquals": [""], "nextStepInstanceId": "end"}]}}');
SELECT pg_temp.patch('load', '{"onError": {"catch": [{"errorEquals": ["X"]}]}}');
SELECT pg_temp.patch('load', '{"onError": {"catch": [{"errorEquals": ["X"], "nextStepInstanceId": "nope"}]}}');
SELECT pg_temp.patch('load', '{"onError": {"catch": [{"errorEquals": ["X"], "nextStepInstanceId": "end", "resultPath": "error"}]}}');

------------------------------------------------------------------------
-- inputMappings, outputMappings, literals, customConfig
------------------------------------------------------------------------
SELECT pg_temp.patch('load', '{"inputMappings": []}');
SELECT pg_temp.patch('load', '{"inputMappings": {"": "$.a"}}');
SELECT pg_temp.patch('load', '{"inputMappings": {"a": 5}}');
SELECT pg_temp.patch('load', '{"inputMappings": {"a": "a.b"}}');
SELECT pg_temp.patch('load', '{"inputMappings": {"a": "$a"}}');
SELECT pg_temp.patch('load', '{"inputMappings": {"a": "$[0]", "expressionAttributeValues.:v": "$.v"}}');
SELECT pg_temp.patch('load', '{"outputMappings": "$.x"}');
SELECT pg_temp.patch('load', '{"outputMappings": {"x": "$"}}');
SELECT pg_temp.patch('load', '{"outputMappings": {"$.x": 1}}');
SELECT pg_temp.patch('load', '{"outputMappings": {"$.x": "y"}}');
SELECT pg_temp.patch('load', '{"outputMappings": {}}');
SELECT pg_temp.patch('work', '{"literals": [1]}');
SELECT pg_temp.patch('work', '{"literals": {"": 1}}');
SELECT pg_temp.patch('load', '{"customConfig": "SELECT 1"}');

------------------------------------------------------------------------
-- delay and other common fields
------------------------------------------------------------------------
SELECT pg_temp.patch('load', '{"delay": 100}');
SELECT pg_temp.patch('load', '{"delay": {}}');
SELECT pg_temp.patch('load', '{"delay": {"milliseconds": -1}}');
SELECT pg_temp.patch('load', '{"delay": {"milliseconds": 86400001}}');
SELECT pg_temp.patch('load', '{"delay": {"milliseconds": 1.5}}');
SELECT pg_temp.patch('load', '{"delay": {"milliseconds": 5, "delayFrom": 1, "delayTo": 2}}');
SELECT pg_temp.patch('load', '{"delay": {"delayFrom": 1}}');
SELECT pg_temp.patch('load', '{"delay": {"delayFrom": 5, "delayTo": 2}}');
SELECT pg_temp.patch('load', '{"delay": {"delayFrom": 2, "delayTo": 5, "position": "after"}}');
SELECT pg_temp.patch('load', '{"delay": {"milliseconds": 5, "position": "middle"}}');
SELECT pg_temp.patch('load', '{"disableS3Offload": true, "forceS3Offload": true}');
SELECT pg_temp.patch('load', '{"disableS3Offload": "yes"}');
SELECT pg_temp.patch('load', '{"checkpoint": {"label": "half way"}}');
SELECT pg_temp.patch('load', '{"checkpoint": {"id": "c1", "label": "half way", "order": 2}}');
SELECT pg_temp.patch('load', '{"outputValidation": {"requiredFields": ["$.a", "b"]}}');
SELECT pg_temp.patch('load', '{"securityValidatorConfig": {"forbiddenStrings": ["x"], "semanticCheck": {"similarityThreshold": 0.5}}}');

------------------------------------------------------------------------
-- CUSTOM_LAMBDA_INVOKE
------------------------------------------------------------------------
SELECT pg_temp.add('x', '{"stepType": "CUSTOM_LAMBDA_INVOKE"}');
SELECT pg_temp.add('x', '{"stepType": "CUSTOM_LAMBDA_INVOKE", "moduleIdentifier": "acme/enrich"}');
SELECT pg_temp.add('x', '{"stepType": "CUSTOM_LAMBDA_INVOKE", "lambdaFunctionArnTemplate": ""}');
SELECT pg_temp.add('x', '{"stepType": "CUSTOM_LAMBDA_INVOKE", "lambdaFunctionArnTemplate": "arn", "payloadTemplate": {"a": 1}}');

------------------------------------------------------------------------
-- LLM_INVOCATION
------------------------------------------------------------------------
SELECT pg_temp.without('{steps,llm,llmProvider}');
SELECT pg_temp.patch('llm', '{"llmProvider": "CLIPPY"}');
SELECT pg_temp.without('{steps,llm,modelId}');
SELECT pg_temp.patch('llm', '{"modelId": ""}');
SELECT pg_temp.patch('llm', '{"inferenceParameters": {"temperature": 3}}');
SELECT pg_temp.patch('llm', '{"inferenceParameters": {"maxOutputTokens": 0}}');
SELECT pg_temp.patch('llm', '{"inferenceParameters": {"topK": 1.5}}');
SELECT pg_temp.patch('llm', '{"inferenceParameters": {"topP": 1.1}}');
SELECT pg_temp.patch('llm', '{"fallbacks": {}}');
SELECT pg_temp.patch('llm', '{"fallbacks": [{"llmProvider": "GEMINI"}]}');
SELECT pg_temp.patch('llm', '{"fallbacks": [{"modelId": "m"}]}');
SELECT pg_temp.patch('llm', '{"toolChoice": "sometimes"}');
SELECT pg_temp.patch('llm', '{"toolChoice": 5}');
SELECT pg_temp.patch('llm', '{"toolChoice": "auto", "tools": [1]}');
SELECT pg_temp.patch('llm', '{"toolsPath": "tools"}');
SELECT pg_temp.patch('llm', '{"mediaAttachments": [{"url": "http://a", "base64": "AA=="}]}');
SELECT pg_temp.patch('llm', '{"mediaAttachments": [{"mimeType": "image/png"}]}');
SELECT pg_temp.patch('llm', '{"mediaAttachmentsPath": "images"}');
SELECT pg_temp.patch('llm', '{"templateContextMappings": {"rows": "$.rows"}}');
SELECT pg_temp.patch('llm', '{"templateContextMappings": {"rows": {"formatAs": "JSON"}}}');
SELECT pg_temp.patch('llm', '{"templateContextMappings": {"rows": {"sourceJsonPath": "rows"}}}');
SELECT pg_temp.patch('llm', '{"templateContextMappings": {"rows": {"sourceJsonPath": "$.rows", "formatAs": "XML"}}}');
SELECT pg_temp.patch('llm', '{"templateContextMappings": {"rows": {"sourceJsonPath": "$.rows", "formatAs": "CUSTOM_STRING"}}}');
SELECT pg_temp.patch('llm', '{"templateContextMappings": {"rows": {"sourceJsonPath": "$.rows", "selectFields": [1]}}}');
SELECT pg_temp.patch('llm', '{"customConfig": {"jsonOutputMode": "yes"}}');

------------------------------------------------------------------------
-- API_CALL and POLL_EXTERNAL_API
------------------------------------------------------------------------
SELECT pg_temp.without('{steps,call,apiUrlTemplate}');
SELECT pg_temp.patch('call', '{"apiUrlTemplate": "http://127.0.0.1/"}');
SELECT pg_temp.patch('call', '{"apiUrlTemplate": {"contextMappings": {}}}');
SELECT pg_temp.without('{steps,call,apiHttpMethod}');
SELECT pg_temp.patch('call', '{"apiHttpMethod": "FETCH"}');
SELECT pg_temp.patch('call', '{"apiHttpMethod": "get"}');
SELECT pg_temp.patch('call', '{"apiHeadersTemplate": {"X-Id": "id"}}');
SELECT pg_temp.patch('call', '{"apiStaticHeaders": {"X-N": 5}}');
SELECT pg_temp.patch('call', '{"requestBodyTemplate": {"body": {"sourceJsonPath": "payload"}}}');
SELECT pg_temp.patch('call', '{"customConfig": {"timeoutMs": 0}}');
SELECT pg_temp.patch('call', '{"customConfig": {"requestBodyPath": "body"}}');
SELECT pg_temp.without('{steps,poll,apiCallDefinition}');
SELECT pg_temp.without('{steps,poll,apiCallDefinition,apiHttpMethod}');
SELECT pg_temp.without('{steps,poll,pollingConfig}');
SELECT pg_temp.patch('poll', '{"pollingConfig": {"intervalSeconds": 0, "maxAttempts": 3}}');
SELECT pg_temp.patch('poll', '{"pollingConfig": {"intervalSeconds": 86401, "maxAttempts": 3}}');
SELECT pg_temp.patch('poll', '{"pollingConfig": {"intervalSeconds": 1}}');
SELECT pg_temp.patch('poll', '{"pollingConfig": {"intervalSeconds": 1, "maxAttempts": 0}}');
SELECT pg_temp.patch('poll', '{"pollingConfig": {"maxAttempts": 3}}');
SELECT pg_temp.without('{steps,poll,exitConditions}');
SELECT pg_temp.patch('poll', '{"exitConditions": {"failureCondition": "$.x"}}');
SELECT pg_temp.patch('poll', '{"exitConditions": {"successCondition": ["$.x"]}}');

------------------------------------------------------------------------
-- WAIT_FOR_EXTERNAL_EVENT, EMAIL, start points, FILE_DOWNLOAD
------------------------------------------------------------------------
SELECT pg_temp.without('{steps,wait,correlationKeyTemplate}');
SELECT pg_temp.patch('wait', '{"correlationKeyTemplate": ""}');
SELECT pg_temp.patch('wait', '{"maxWaitTimeSeconds": 0}');
SELECT pg_temp.patch('wait', '{"promptUserMessageTemplate": 5}');
SELECT pg_temp.patch('wait', '{"promptUserMessageTemplate": {"text": "approve {{id}}?"}}');
SELECT pg_temp.without('{steps,mail,to}');
SELECT pg_temp.without('{steps,mail,subject}');
SELECT pg_temp.patch('mail', '{"to": 5}');
SELECT pg_temp.patch('mail', '{"cc": ["a@example.com", 1]}');
SELECT pg_temp.patch('mail', '{"customHeaders": 5}');
SELECT pg_temp.patch('mail', '{"attachmentsPath": "$.files"}');
SELECT pg_temp.patch('mail', '{"attachments": [{"filename": "a"}]}');
SELECT pg_temp.patch('mail', '{"attachments": [{"s3Pointer": "{{p}}"}]}');
-- trigger markers run as no-ops: their trigger fields are optional
SELECT pg_temp.add('x', '{"stepType": "EMAIL_START_POINT"}');
SELECT pg_temp.add('x', '{"stepType": "SCHEDULE_START_POINT"}');
SELECT pg_temp.add('x', '{"stepType": "EMAIL_START_POINT", "emailAddress": ""}');
SELECT pg_temp.add('x', '{"stepType": "EMAIL_START_POINT", "emailAddress": ["a@example.com"]}');
SELECT pg_temp.add('x', '{"stepType": "SCHEDULE_START_POINT", "scheduleExpression": "rate(1 day)", "enabled": "yes"}');
SELECT pg_temp.add('x', '{"stepType": "FILE_DOWNLOAD"}');
SELECT pg_temp.add('x', '{"stepType": "FILE_DOWNLOAD", "sourceUrlTemplate": "http://f", "method": "FETCH"}');
SELECT pg_temp.add('x', '{"stepType": "FILE_DOWNLOAD", "sourceUrlTemplate": "http://f", "headersTemplate": {"A": "token"}}');
SELECT pg_temp.add('x', '{"stepType": "FILE_DOWNLOAD", "sourceUrlTemplate": "http://f", "moduleIdentifier": "acme/dl"}');

------------------------------------------------------------------------
-- sub-flows, MCP, SQS, SNS
------------------------------------------------------------------------
SELECT pg_temp.add('x', '{"stepType": "START_FLOW_EXECUTION", "flowVersion": true}');
SELECT pg_temp.add('x', '{"stepType": "START_FLOW_EXECUTION", "flowVersion": 0}');
SELECT pg_temp.add('x', '{"stepType": "START_FLOW_EXECUTION", "flowDefinitionId": 5}');
SELECT pg_temp.add('x', '{"stepType": "START_SUB_FLOW"}');
SELECT pg_temp.add('x', '{"stepType": "START_SUB_FLOW", "subFlowDefinitionId": "f", "subFlowExecutionMode": "LATER"}');
SELECT pg_temp.add('x', '{"stepType": "START_SUB_FLOW", "subFlowDefinitionId": "f", "inputMappingsToSubFlow": {"a": "a"}}');
SELECT pg_temp.add('x', '{"stepType": "MCP_CALL", "mcpConnectionId": "c1"}');
SELECT pg_temp.add('x', '{"stepType": "SQS_SEND", "payload": []}');
SELECT pg_temp.add('x', '{"stepType": "SNS_PUBLISH", "topicArn": 5}');

------------------------------------------------------------------------
-- PARALLEL_FORK_MANAGER
------------------------------------------------------------------------
SELECT pg_temp.patch('fork', '{"itemsPath": "items"}');
SELECT pg_temp.patch('fork', '{"parallelBranches": {}}');
SELECT pg_temp.patch('fork', '{"parallelBranches": ["work"]}');
SELECT pg_temp.patch('fork', '{"parallelBranches": [{"stepInstanceId": "work"}]}');
SELECT pg_temp.patch('fork', '{"parallelBranches": [{"branchId": "a", "stepInstanceId": "work"},
	{"branchId": "b", "stepInstanceId": "work"}, {"branchId": "a", "stepInstanceId": "end"}]}');
SELECT pg_temp.patch('fork', '{"parallelBranches": [{"branchId": "a"}]}');
SELECT pg_temp.patch('fork', '{"parallelBranches": [{"branchId": "a", "stepType": "START_SUB_FLOW", "subFlowDefinitionId": "f"}]}');
SELECT pg_temp.patch('fork', '{"parallelBranches": [{"branchId": "a", "stepInstanceId": "nope"}]}');
SELECT pg_temp.patch('fork', '{"parallelBranches": [{"branchId": "a", "stepInstanceId": "work", "condition": 5}]}');
SELECT pg_temp.patch('fork', '{"parallelBranches": [{"branchId": "a", "stepInstanceId": "work", "inputMappings": {"a": "a"}}]}');
SELECT pg_temp.patch('fork', '{"parallelBranches": [{"branchId": "a", "stepInstanceId": "work", "literals": {"": 1}}]}');
SELECT pg_temp.patch('fork', '{"aggregationConfig": []}');
SELECT pg_temp.patch('fork', '{"aggregationConfig": {"strategy": "AVG"}}');
SELECT pg_temp.patch('fork', '{"aggregationConfig": {"strategy": "CUSTOM_MODULE"}}');
SELECT pg_temp.patch('fork', '{"aggregationConfig": {"strategy": "CUSTOM_MODULE", "customModuleIdentifier": "acme/agg"}}');
SELECT pg_temp.patch('fork', '{"aggregationConfig": {"dataPath": "output"}}');
SELECT pg_temp.patch('fork', '{"aggregationConfig": {"maxConcurrency": -1}}');
SELECT pg_temp.patch('fork', '{"aggregationConfig": {"toleratedFailurePercentage": 101}}');
SELECT pg_temp.patch('fork', '{"aggregationConfig": {"toleratedFailureCount": -2}}');
SELECT pg_temp.patch('fork', '{"aggregationConfig": {"failOnBranchError": "no"}}');
-- a fork with no branches and no items path is accepted, as in Allma
SELECT pg_temp.add('x', '{"stepType": "PARALLEL_FORK_MANAGER"}');

------------------------------------------------------------------------
-- first problem wins: steps are checked in jsonb key order (shorter keys
-- first), flow fields before steps
------------------------------------------------------------------------
SELECT pg_temp.check(jsonb_set(jsonb_set(def, '{steps,start,stepType}', '"BAD"'),
	'{steps,end,stepType}', '"WORSE"')) FROM base;
SELECT pg_temp.check(jsonb_set(def, '{steps,end,stepType}', '"BAD"') || '{"version": -1}') FROM base;

------------------------------------------------------------------------
-- JSONPaths, dot paths, conditions and templates rejected by the parsers
-- of src/path.c, src/condition.c and src/template.c (the detail is theirs)
------------------------------------------------------------------------
SELECT pg_temp.patch('start', '{"transitions": [
	{"condition": "$.s3Key endsWith ''.xlsx'' || $.s3Key endsWith ''.xls''", "nextStepInstanceId": "load"},
	{"condition": "$.rows[?(@.severity==''High'')]", "nextStepInstanceId": "load"},
	{"condition": "$.a >= $.b && $.c !== null", "nextStepInstanceId": "load"}]}');
SELECT pg_temp.patch('start', '{"transitions": [{"condition": "$.a ==", "nextStepInstanceId": "load"}]}');
SELECT pg_temp.patch('start', '{"transitions": [{"condition": "hello", "nextStepInstanceId": "load"}]}');
SELECT pg_temp.patch('fork', '{"parallelBranches": [{"branchId": "a", "stepInstanceId": "work", "condition": "$.a >"}]}');
SELECT pg_temp.patch('poll', '{"exitConditions": {"successCondition": "$.a == "}}');
SELECT pg_temp.flow('{"onCompletionActions": [{"actionType": "LOG_ONLY", "condition": "$.x =="}]}');
-- an input mapping source with Allma's "$." prefix is only warned about, as
-- real flows hold sources such as "$.a | prepend: 'x'"
SELECT pg_temp.patch('load', '{"inputMappings": {"a": "$.a["}}');
SELECT pg_temp.patch('fork', '{"parallelBranches": [{"branchId": "a", "stepInstanceId": "work",
	"inputMappings": {"k": "$.id | prepend: ''RFQ#''"}}]}');
SELECT pg_temp.patch('load', '{"inputMappings": {"a..b": "$.a"}}');
SELECT pg_temp.patch('load', '{"inputMappings": {"a[": "$.a"}}');
SELECT pg_temp.patch('load', '{"outputMappings": {"$": "$.", "$[''a b''][0]": "$..x", "$.c": "$.items[?(@.n > 1)].id"}}');
SELECT pg_temp.patch('load', '{"outputMappings": {"$.a[*]": "$"}}');
SELECT pg_temp.patch('load', '{"outputMappings": {"$..a": "$"}}');
SELECT pg_temp.patch('load', '{"outputMappings": {"$.a": "$.b["}}');
SELECT pg_temp.patch('load', '{"onError": {"catch": [{"errorEquals": ["X"], "nextStepInstanceId": "end", "resultPath": "$.e[*]"}]}}');
SELECT pg_temp.patch('fork', '{"itemsPath": "$.items[?("}');
SELECT pg_temp.patch('fork', '{"aggregationConfig": {"dataPath": "$.a[("}}');
SELECT pg_temp.patch('work', '{"literals": {"a..b": 1}}');
SELECT pg_temp.patch('work', '{"literals": {"greeting": "hi {{name"}}');
SELECT pg_temp.patch('work', '{"literals": {"list": ["ok", {"deep": "{{#if a}}no end"}]}}');
SELECT pg_temp.patch('load', '{"customConfig": {"sql": "SELECT 1", "note": "{{#each x}}"}}');
SELECT pg_temp.add('x', '{"stepType": "CUSTOM_LAMBDA_INVOKE", "lambdaFunctionArnTemplate": "arn:{{fn"}');
SELECT pg_temp.patch('llm', '{"modelId": "{{model"}');
SELECT pg_temp.patch('llm', '{"llmProvider": "{{provider"}');
SELECT pg_temp.patch('llm', '{"templateContextMappings": {"rows": {"sourceJsonPath": "$.rows", "formatAs": "CUSTOM_STRING", "itemTemplate": "{{/if}}"}}}');
SELECT pg_temp.patch('call', '{"apiUrlTemplate": {"template": "http://127.0.0.1/{{id"}}');
SELECT pg_temp.patch('wait', '{"correlationKeyTemplate": "k:{{#if}}"}');
SELECT pg_temp.patch('mail', '{"subject": "Hi {{name"}');
SELECT pg_temp.patch('mail', '{"to": ["{{a}}", "{{b"]}');
SELECT pg_temp.add('x', '{"stepType": "EMAIL_START_POINT", "emailAddress": "{{addr"}');
SELECT pg_temp.add('x', '{"stepType": "SCHEDULE_START_POINT", "scheduleExpression": "{{cron"}');
