#!/usr/bin/env python3
"""Generates allma's bad-input corpus: invalid flow definitions, one file
each, under test/corpus/definitions/ (t/066_bad_definitions.pl submits every
file and compares the error with test/corpus/definitions/MANIFEST.tsv).

    python3 scripts/gen-bad-definitions.py [OUTDIR]

Deterministic: the same files every time.  Categories (file name prefix):
json (broken JSON), utf8 (invalid UTF-8), nul (NUL bytes), struct (not a
flow), type (wrong JSON types), ref (dangling references), path (bad
JSONPaths), cond (bad conditions), tmpl (bad templates), num (absurd
numbers), deep (10,000-deep nesting), big (megabyte strings), url
(non-http schemes), enum (unknown names).  After changing this script,
regenerate the files, then the manifest with ALLMA_CORPUS_RECORD=1 (see
t/066_bad_definitions.pl) and review the diff.
"""
import copy
import json
import os
import sys

BASE = {
    "id": "corpus-flow",
    "version": 1,
    "enableExecutionLogs": True,
    "flowVariables": {"FromEmail": "a@example.com"},
    "startStepInstanceId": "start",
    "steps": {
        "start": {
            "stepInstanceId": "start", "stepType": "NO_OP",
            "transitions": [{"condition": "$.n > 1", "nextStepInstanceId": "load", "maxTransitions": 0}],
            "defaultNextStepInstanceId": "load", "defaultNextMaxTransitions": 10,
        },
        "load": {
            "stepType": "DATA_LOAD", "moduleIdentifier": "system/sql-query",
            "customConfig": {"sql": "SELECT $1::int AS n", "parameters": ["$.n"]},
            "inputMappings": {"a.b[0]": "$.x"},
            "outputMappings": {"$.rows": "$.rows"},
            "onError": {
                "retries": {"count": 3, "intervalSeconds": 0.5, "backoffRate": 2, "maxDelaySeconds": 60},
                "fallbackStepInstanceId": "end",
                "catch": [{"errorEquals": ["States.ALL"], "nextStepInstanceId": "end", "resultPath": "$.error"}],
            },
            "delay": {"milliseconds": 0, "position": "before"},
            "defaultNextStepInstanceId": "fork",
        },
        "fork": {
            "stepType": "PARALLEL_FORK_MANAGER", "itemsPath": "$.items",
            "parallelBranches": [{"branchId": "b1", "stepInstanceId": "work", "condition": "$.currentItem.ok == true",
                                  "inputMappings": {"item": "$.currentItem"}}],
            "aggregationConfig": {"strategy": "COLLECT_ARRAY", "dataPath": "$.output", "maxConcurrency": 2},
            "defaultNextStepInstanceId": "llm",
        },
        "work": {
            "stepType": "DATA_TRANSFORMATION", "moduleIdentifier": "system/compose-object-from-input",
            "literals": {"greeting": "hi {{name}}", "n": 1},
        },
        "llm": {
            "stepType": "LLM_INVOCATION", "llmProvider": "OPENAI", "modelId": "gpt-4o-mini",
            "promptTemplateId": "p1", "customConfig": {"jsonOutputMode": True},
            "inferenceParameters": {"temperature": 0.5, "maxOutputTokens": 1000},
            "fallbacks": [{"llmProvider": "OPENAI", "modelId": "m2"}],
            "defaultNextStepInstanceId": "call",
        },
        "call": {
            "stepType": "API_CALL", "apiUrlTemplate": {"template": "http://127.0.0.1/{{id}}"},
            "apiHttpMethod": "POST", "apiHeadersTemplate": {"X-Id": "$.id"}, "apiStaticHeaders": {"Accept": "*/*"},
            "customConfig": {"timeoutMs": 1000}, "defaultNextStepInstanceId": "poll",
        },
        "poll": {
            "stepType": "POLL_EXTERNAL_API",
            "apiCallDefinition": {"apiUrlTemplate": {"template": "http://127.0.0.1/status"}, "apiHttpMethod": "GET"},
            "pollingConfig": {"intervalSeconds": 5, "maxAttempts": 3},
            "exitConditions": {"successCondition": "$.data.done == true", "failureCondition": "$.data.failed"},
            "defaultNextStepInstanceId": "dl",
        },
        "dl": {
            "stepType": "FILE_DOWNLOAD", "sourceUrlTemplate": "http://127.0.0.1/files/{{n}}",
            "defaultNextStepInstanceId": "mail",
        },
        "mail": {
            "stepType": "EMAIL", "from": "{{flow_variables.FromEmail}}", "to": ["x@example.com"],
            "subject": "Hi {{name}}", "body": "Body", "defaultNextStepInstanceId": "end",
        },
        "end": {"stepInstanceId": "end", "stepType": "END_FLOW"},
    },
}

cases = []          # (name, bytes)


def add(name, data):
    if isinstance(data, str):
        data = data.encode("utf-8")
    elif not isinstance(data, bytes):
        data = json.dumps(data, indent=1, ensure_ascii=False).encode("utf-8")
    cases.append((name, data))


def mutate(name, fn):
    d = copy.deepcopy(BASE)
    fn(d)
    add(name, d)


def setp(path, value):
    """a mutation setting BASE[path...] = value (None removes)"""
    def fn(d):
        obj = d
        for k in path[:-1]:
            obj = obj[k]
        if value is DELETE:
            del obj[path[-1]]
        else:
            obj[path[-1]] = value
    return fn


DELETE = object()
S = ["steps"]
BASE_TEXT = json.dumps(BASE, indent=1)

# ---- json: broken JSON --------------------------------------------------
for i, cut in enumerate([1, 2, 10, 57, 200, 777, 1500, len(BASE_TEXT) // 2, len(BASE_TEXT) - 1]):
    add(f"json-truncated-{i:02d}", BASE_TEXT[:cut])
for name, text in [
        ("empty", ""), ("whitespace", "  \n\t "), ("bom", "\ufeff" + BASE_TEXT),
        ("trailing-comma-object", '{"id": "x", "steps": {},}'),
        ("trailing-comma-array", '{"id": "x", "steps": {"a": {"stepType": "NO_OP", "transitions": [1,]}}}'),
        ("single-quotes", "{'id': 'x'}"), ("unquoted-keys", "{id: \"x\"}"),
        ("comment-line", '{"id": "x" // c\n}'), ("comment-block", '{"id": /* c */ "x"}'),
        ("nan", '{"id": "x", "version": NaN}'), ("infinity", '{"id": "x", "version": Infinity}'),
        ("minus-infinity", '{"id": "x", "version": -Infinity}'),
        ("hex-number", '{"id": "x", "version": 0x10}'), ("leading-zero", '{"id": "x", "version": 012}'),
        ("plus-number", '{"id": "x", "version": +1}'), ("dot-number", '{"id": "x", "version": .5}'),
        ("lone-high-surrogate", '{"id": "\\ud800"}'), ("lone-low-surrogate", '{"id": "\\udc00x"}'),
        ("escaped-nul", '{"id": "a\\u0000b"}'), ("bad-escape", '{"id": "a\\qb"}'),
        ("short-unicode-escape", '{"id": "\\u12"}'), ("raw-newline-in-string", '{"id": "a\nb"}'),
        ("raw-tab-in-string", '{"id": "a\tb"}'), ("two-objects", '{"id": "x"}{"id": "y"}'),
        ("garbage-after", '{"id": "x"} trailing'), ("unclosed-string", '{"id": "x'),
        ("unclosed-object", '{"id": "x", "steps": {'), ("unclosed-array", '{"a": [1, 2'),
        ("colon-missing", '{"id" "x"}'), ("comma-missing", '{"id": "x" "steps": {}}'),
        ("true-typo", '{"id": "x", "enableExecutionLogs": tru}'), ("null-typo", '{"id": nul}'),
        ("key-not-string", '{1: "x"}'), ("undefined", '{"id": undefined}'),
        ("python-literal", "{'id': None}"), ("yaml", "id: x\nsteps: {}\n"),
        ("xml", "<flow id=\"x\"/>"), ("only-bracket", "}"),
]:
    add(f"json-{name}", text)

# ---- utf8: invalid UTF-8 ---------------------------------------------------
for name, raw in [
        ("ff-in-string", b"\xff"), ("fe-in-string", b"\xfe\xfe"), ("overlong-slash", b"\xc0\xaf"),
        ("overlong-nul", b"\xc0\x80"), ("surrogate-d800", b"\xed\xa0\x80"), ("truncated-2", b"\xc3"),
        ("truncated-3", b"\xe2\x82"), ("truncated-4", b"\xf0\x9f\x98"), ("beyond-u10ffff", b"\xf4\x90\x80\x80"),
        ("continuation-only", b"\x80\x80"), ("latin1", "café".encode("latin-1")), ("cp1252-quote", b"\x93x\x94"),
]:
    add(f"utf8-{name}-value", b'{"id": "a' + raw + b'", "startStepInstanceId": "s", "steps": {"s": {"stepType": "NO_OP"}}}')
    add(f"utf8-{name}-key", b'{"id": "x", "startStepInstanceId": "s", "steps": {"s' + raw + b'": {"stepType": "NO_OP"}}}')
add("utf8-invalid-outside-string", b'{"id": "x"\xff, "steps": {}}')
add("utf16-le", '{"id": "x"}'.encode("utf-16-le"))
add("utf16-be-bom", '{"id": "x"}'.encode("utf-16"))

# ---- nul: NUL bytes -----------------------------------------------------------
add("nul-in-id", b'{"id": "a\x00b", "steps": {}}')
add("nul-in-step-key", b'{"id": "x", "startStepInstanceId": "s", "steps": {"s\x00": {"stepType": "NO_OP"}}}')
add("nul-between-tokens", b'{"id": "x",\x00 "steps": {}}')
add("nul-at-end", BASE_TEXT.encode() + b"\x00")
add("nul-at-start", b"\x00" + BASE_TEXT.encode())
add("nul-only", b"\x00")
add("nul-in-condition", BASE_TEXT.replace('"$.n > 1"', '"$.n > 1\\u0000"').encode().replace(b"\\u0000", b"\x00"))
add("nul-in-template", BASE_TEXT.replace('"hi {{name}}"', '"hi {{na\\u0000me}}"').encode().replace(b"\\u0000", b"\x00"))

# ---- struct: not a flow ------------------------------------------------------
for name, value in [("array", []), ("number", 1), ("string", "flow"), ("null", None), ("true", True),
                    ("empty-object", {}), ("array-of-flow", [BASE])]:
    add(f"struct-{name}", value)
mutate("struct-no-id", setp(["id"], DELETE))
mutate("struct-empty-id", setp(["id"], ""))
mutate("struct-no-steps", setp(["steps"], DELETE))
mutate("struct-empty-steps", setp(["steps"], {}))
mutate("struct-no-start", setp(["startStepInstanceId"], DELETE))
mutate("struct-empty-start", setp(["startStepInstanceId"], ""))
mutate("struct-step-key-mismatch", setp(S + ["start", "stepInstanceId"], "other"))
mutate("struct-step-not-object", setp(S + ["work"], "NO_OP"))
mutate("struct-step-array", setp(S + ["work"], [{"stepType": "NO_OP"}]))
mutate("struct-step-null", setp(S + ["work"], None))
mutate("struct-no-step-type", setp(S + ["work", "stepType"], DELETE))
mutate("struct-empty-step-type", setp(S + ["work", "stepType"], ""))
mutate("struct-transition-no-next", setp(S + ["start", "transitions"], [{"condition": "$.a"}]))
mutate("struct-transition-no-condition", setp(S + ["start", "transitions"], [{"nextStepInstanceId": "end"}]))
mutate("struct-branch-no-step", setp(S + ["fork", "parallelBranches"], [{"branchId": "b1"}]))
mutate("struct-catch-no-next", setp(S + ["load", "onError", "catch"], [{"errorEquals": ["X"]}]))
mutate("struct-api-no-url", setp(S + ["call", "apiUrlTemplate"], DELETE))
mutate("struct-api-no-template", setp(S + ["call", "apiUrlTemplate"], {}))
mutate("struct-poll-no-config", setp(S + ["poll", "pollingConfig"], DELETE))
mutate("struct-poll-no-exits", setp(S + ["poll", "exitConditions"], DELETE))
mutate("struct-poll-no-interval", setp(S + ["poll", "pollingConfig", "intervalSeconds"], DELETE))
mutate("struct-poll-no-success", setp(S + ["poll", "exitConditions", "successCondition"], DELETE))
mutate("struct-dl-no-url", setp(S + ["dl", "sourceUrlTemplate"], DELETE))
mutate("struct-llm-no-provider", setp(S + ["llm", "llmProvider"], DELETE))

# ---- type: wrong JSON types ----------------------------------------------------------
WRONG = {"string": "x", "number": 7, "bool": True, "array": [1], "object": {"a": 1}, "null": None}
FIELDS = {
    "id": (["id"], "string"),
    "version": (["version"], "number"),
    "start": (["startStepInstanceId"], "string"),
    "steps": (["steps"], "object"),
    "flow-variables": (["flowVariables"], "object"),
    "logs": (["enableExecutionLogs"], "bool"),
    "step-type": (S + ["work", "stepType"], "string"),
    "transitions": (S + ["start", "transitions"], "array"),
    "condition": (S + ["start", "transitions", 0, "condition"], "string"),
    "next": (S + ["start", "transitions", 0, "nextStepInstanceId"], "string"),
    "max-transitions": (S + ["start", "transitions", 0, "maxTransitions"], "number"),
    "default-next": (S + ["start", "defaultNextStepInstanceId"], "string"),
    "input-mappings": (S + ["load", "inputMappings"], "object"),
    "input-mapping-value": (S + ["load", "inputMappings", "a.b[0]"], "string"),
    "output-mappings": (S + ["load", "outputMappings"], "object"),
    "literals": (S + ["work", "literals"], "object"),
    "module": (S + ["work", "moduleIdentifier"], "string"),
    "custom-config": (S + ["load", "customConfig"], "object"),
    "on-error": (S + ["load", "onError"], "object"),
    "retries": (S + ["load", "onError", "retries"], "object"),
    "retry-count": (S + ["load", "onError", "retries", "count"], "number"),
    "retry-interval": (S + ["load", "onError", "retries", "intervalSeconds"], "number"),
    "catch": (S + ["load", "onError", "catch"], "array"),
    "catch-errors": (S + ["load", "onError", "catch", 0, "errorEquals"], "array"),
    "delay": (S + ["load", "delay"], "object"),
    "delay-ms": (S + ["load", "delay", "milliseconds"], "number"),
    "items-path": (S + ["fork", "itemsPath"], "string"),
    "branches": (S + ["fork", "parallelBranches"], "array"),
    "aggregation": (S + ["fork", "aggregationConfig"], "object"),
    "max-concurrency": (S + ["fork", "aggregationConfig", "maxConcurrency"], "number"),
    "fallbacks": (S + ["llm", "fallbacks"], "array"),
    "inference": (S + ["llm", "inferenceParameters"], "object"),
    "temperature": (S + ["llm", "inferenceParameters", "temperature"], "number"),
    "api-url": (S + ["call", "apiUrlTemplate"], "object"),
    "api-url-template": (S + ["call", "apiUrlTemplate", "template"], "string"),
    "api-method": (S + ["call", "apiHttpMethod"], "string"),
    "api-static-headers": (S + ["call", "apiStaticHeaders"], "object"),
    "api-header-value": (S + ["call", "apiStaticHeaders", "Accept"], "string"),
    "timeout": (S + ["call", "customConfig", "timeoutMs"], "number"),
    "polling": (S + ["poll", "pollingConfig"], "object"),
    "max-attempts": (S + ["poll", "pollingConfig", "maxAttempts"], "number"),
    "exits": (S + ["poll", "exitConditions"], "object"),
    "success": (S + ["poll", "exitConditions", "successCondition"], "string"),
    "source-url": (S + ["dl", "sourceUrlTemplate"], "string"),
    "mail-to": (S + ["mail", "to"], "array"),
}
for fname, (path, right) in FIELDS.items():
    for wname, wvalue in WRONG.items():
        if wname == right or (right == "string" and wname == "null" and fname in ("id",)):
            continue
        # two wrong types per field keep the corpus varied but not huge
        if wname not in {"string": ("number", "array"), "number": ("string", "object"),
                         "object": ("array", "string"), "array": ("object", "number"),
                         "bool": ("string", "number")}[right]:
            continue
        mutate(f"type-{fname}-{wname}", setp(path, wvalue))

# ---- ref: dangling references --------------------------------------------------------------
for name, path, value in [
        ("start", ["startStepInstanceId"], "nowhere"),
        ("start-case", ["startStepInstanceId"], "Start"),
        ("start-space", ["startStepInstanceId"], "start "),
        ("transition", S + ["start", "transitions", 0, "nextStepInstanceId"], "nowhere"),
        ("default-next", S + ["start", "defaultNextStepInstanceId"], "nowhere"),
        ("default-next-empty", S + ["start", "defaultNextStepInstanceId"], ""),
        ("fallback", S + ["load", "onError", "fallbackStepInstanceId"], "nowhere"),
        ("catch", S + ["load", "onError", "catch", 0, "nextStepInstanceId"], "nowhere"),
        ("branch", S + ["fork", "parallelBranches", 0, "stepInstanceId"], "nowhere"),
        ("fork-next", S + ["fork", "defaultNextStepInstanceId"], "nowhere"),
        ("llm-next", S + ["llm", "defaultNextStepInstanceId"], "nowhere"),
        ("api-next", S + ["call", "defaultNextStepInstanceId"], "nowhere"),
        ("poll-next", S + ["poll", "defaultNextStepInstanceId"], "nowhere"),
        ("dl-next", S + ["dl", "defaultNextStepInstanceId"], "nowhere"),
        ("mail-next", S + ["mail", "defaultNextStepInstanceId"], "nowhere"),
        ("unicode", S + ["start", "defaultNextStepInstanceId"], "lоad"),   # Cyrillic o
]:
    mutate(f"ref-{name}", setp(path, value))
mutate("ref-removed-target", setp(S + ["end"], DELETE))
mutate("ref-removed-branch-step", setp(S + ["work"], DELETE))

# ---- path: bad JSONPaths ---------------------------------------------------------------
BAD_PATHS = ["$[", "$.a[", "$.a[?(@.x", "$['a", "$..", "$.a.", "$a b", "$.a[1:2:0:1]", "$.[",
             "$.a[*", "$.a)", "$.a[?(@.b ==)]", "$.a[\"b]", "$.a..[", "$..*..[", "$.a[?(]"]
# (inputMappings sources are not rejected, by design: like Allma, a source
# that is not a usable path yields nothing)
for i, p in enumerate(BAD_PATHS):
    mutate(f"path-output-source-{i:02d}", setp(S + ["load", "outputMappings"], {"$.rows": p}))
for i, p in enumerate(BAD_PATHS[:8]):
    mutate(f"path-items-{i:02d}", setp(S + ["fork", "itemsPath"], p))
    mutate(f"path-catch-result-{i:02d}", setp(S + ["load", "onError", "catch", 0, "resultPath"], p))
    mutate(f"path-output-target-{i:02d}", setp(S + ["load", "outputMappings"], {p: "$.rows"}))
    mutate(f"path-header-{i:02d}", setp(S + ["call", "apiHeadersTemplate", "X-Id"], p))
for i, p in enumerate(["a..b", "a.[", "a[0", ".a", "a.", "[0]a"]):
    mutate(f"path-dot-target-{i:02d}", setp(S + ["load", "inputMappings"], {p: "$.x"}))

# ---- cond: bad conditions -------------------------------------------------------------------
BAD_CONDS = ["$.a ==", "== 1", "&& $.b", "$.a &&", "(", ")", "($.a", "$.a)", "$.a === ", "'unterminated",
             "\"unterminated", "$.a > > 1", "!", "$.a ? 1", "1 +", "$.a == 'x' ||", "$[", "$.a in",
             "$.a =>", "$.a <>", "$.a ~~ 1", ";", "$.a == 1 $.b", "@", "#", "$.a[?(@)",
             "function(){}", "$.a.b.", "(((((((((((((((((((("]
for i, c in enumerate(BAD_CONDS):
    mutate(f"cond-transition-{i:02d}", setp(S + ["start", "transitions", 0, "condition"], c))
for i, c in enumerate(BAD_CONDS[:8]):
    mutate(f"cond-branch-{i:02d}", setp(S + ["fork", "parallelBranches", 0, "condition"], c))
    mutate(f"cond-poll-success-{i:02d}", setp(S + ["poll", "exitConditions", "successCondition"], c))
    mutate(f"cond-poll-failure-{i:02d}", setp(S + ["poll", "exitConditions", "failureCondition"], c))

# ---- tmpl: bad templates -----------------------------------------------------------------------
BAD_TMPLS = ["{{", "{{name", "{{#each x}}", "{{/if}}", "{{#if a}}{{/each}}", "{{> partial}}", "{{{x}}",
             "{{else}}", "{{#with a}}{{else}}{{else}}{{/with}}",
             "{{!-- unclosed", "{{#*inline \"x\"}}{{/inline}}", "{{{{raw}}}}{{{{/raw}}}}", "{{a.[b}}",
             "{{@}}", "{{(}}", "{{(lookup a}}", "{{a b=}}", "{{#each a as |x}}{{/each}}",
             "{{../}}", "{{&}}", "{{~}}", "{{#if a}}" * 3]
for i, t in enumerate(BAD_TMPLS):
    mutate(f"tmpl-literal-{i:02d}", setp(S + ["work", "literals", "greeting"], t))
for i, t in enumerate(BAD_TMPLS[:8]):
    mutate(f"tmpl-url-{i:02d}", setp(S + ["call", "apiUrlTemplate", "template"], "http://127.0.0.1/" + t))
    mutate(f"tmpl-subject-{i:02d}", setp(S + ["mail", "subject"], t))
    mutate(f"tmpl-source-url-{i:02d}", setp(S + ["dl", "sourceUrlTemplate"], "http://127.0.0.1/" + t))
mutate("tmpl-nesting-101", setp(S + ["work", "literals", "greeting"], "{{#if a}}" * 101 + "{{/if}}" * 101))

# ---- num: absurd numbers ---------------------------------------------------------------------------
for name, path, value in [
        ("retry-count-negative", S + ["load", "onError", "retries", "count"], -1),
        ("retry-count-huge", S + ["load", "onError", "retries", "count"], 1e300),
        ("retry-count-fraction", S + ["load", "onError", "retries", "count"], 1.5),
        ("retry-interval-negative", S + ["load", "onError", "retries", "intervalSeconds"], -5),
        ("retry-interval-huge", S + ["load", "onError", "retries", "intervalSeconds"], 1e308),
        ("retry-backoff-negative", S + ["load", "onError", "retries", "backoffRate"], -2),
        ("retry-backoff-huge", S + ["load", "onError", "retries", "backoffRate"], 1e300),
        ("retry-max-delay-negative", S + ["load", "onError", "retries", "maxDelaySeconds"], -1),
        ("max-transitions-negative", S + ["start", "transitions", 0, "maxTransitions"], -1),
        ("max-transitions-fraction", S + ["start", "transitions", 0, "maxTransitions"], 0.5),
        ("default-max-transitions-negative", S + ["start", "defaultNextMaxTransitions"], -3),
        ("delay-negative", S + ["load", "delay", "milliseconds"], -1),
        ("delay-huge", S + ["load", "delay", "milliseconds"], 1e20),
        ("timeout-negative", S + ["call", "customConfig", "timeoutMs"], -1),
        ("poll-interval-negative", S + ["poll", "pollingConfig", "intervalSeconds"], -1),
        ("poll-interval-huge", S + ["poll", "pollingConfig", "intervalSeconds"], 1e9),
        ("poll-attempts-zero", S + ["poll", "pollingConfig", "maxAttempts"], 0),
        ("poll-attempts-huge", S + ["poll", "pollingConfig", "maxAttempts"], 1e9),
        ("poll-attempts-fraction", S + ["poll", "pollingConfig", "maxAttempts"], 2.5),
        ("concurrency-negative", S + ["fork", "aggregationConfig", "maxConcurrency"], -1),
        ("concurrency-fraction", S + ["fork", "aggregationConfig", "maxConcurrency"], 1.5),
        ("temperature-negative", S + ["llm", "inferenceParameters", "temperature"], -0.1),
        ("temperature-huge", S + ["llm", "inferenceParameters", "temperature"], 1e10),
        ("max-tokens-negative", S + ["llm", "inferenceParameters", "maxOutputTokens"], -1),
        ("max-tokens-fraction", S + ["llm", "inferenceParameters", "maxOutputTokens"], 10.5),
        ("top-p-huge", S + ["llm", "inferenceParameters", "topP"], 2),
]:
    mutate(f"num-{name}", setp(path, value))
add("num-exponent-overflow", BASE_TEXT.replace('"count": 3', '"count": 1e99999'))
add("num-exponent-underflow-negative", BASE_TEXT.replace('"count": 3', '"count": -1e99999'))

# ---- deep: 10,000-deep nesting ---------------------------------------------------------------
add("deep-arrays-as-steps", '{"id": "x", "startStepInstanceId": "s", "steps": ' + "[" * 10000 + "]" * 10000 + "}")
add("deep-objects-as-steps", '{"id": "x", "startStepInstanceId": "s", "steps": ' + '{"a":' * 10000 + "1" + "}" * 10000 + "}")
add("deep-arrays-as-id", '{"id": ' + "[" * 10000 + "]" * 10000 + ', "steps": {}}')
add("deep-unclosed", '{"id": "x", "steps": ' + "[" * 10000)
add("deep-condition-parens", BASE_TEXT.replace('"$.n > 1"', '"' + "(" * 10000 + "$.n > 1" + ")" * 9999 + '"'))
add("deep-template-blocks", BASE_TEXT.replace('"hi {{name}}"', '"' + "{{#if a}}" * 10000 + "{{/if}}" * 10000 + '"'))
add("deep-path-brackets", BASE_TEXT.replace('"itemsPath": "$.items"', '"itemsPath": "$' + "[0]" * 10000 + "[" + '"'))

# ---- big: megabyte strings -----------------------------------------------------------------------
MB = 1024 * 1024
mutate("big-step-type", setp(S + ["work", "stepType"], "X" * MB))
mutate("big-condition", setp(S + ["start", "transitions", 0, "condition"], "$.a == " + "(" * (MB // 2)))
mutate("big-template", setp(S + ["work", "literals", "greeting"], "{{" + "a" * MB))
mutate("big-url-scheme", setp(S + ["dl", "sourceUrlTemplate"], "f" * MB + "://x/{{n}}"))

# ---- url: non-http schemes -----------------------------------------------------------------------
SCHEMES = ["ftp://127.0.0.1/x", "file:///etc/passwd", "gopher://127.0.0.1/", "javascript:alert(1)",
           "data:text/plain,hi", "ldap://127.0.0.1/", "dict://127.0.0.1:11211/", "smtp://127.0.0.1/",
           "telnet://127.0.0.1/", "tftp://127.0.0.1/x", "scp://127.0.0.1/x", "mailto:a@b.c",
           "/relative/path", "127.0.0.1/x", "", "https//x"]
for i, u in enumerate(SCHEMES):
    mutate(f"url-api-{i:02d}", setp(S + ["call", "apiUrlTemplate", "template"], u))
for i, u in enumerate(SCHEMES[:8]):
    mutate(f"url-poll-{i:02d}", setp(S + ["poll", "apiCallDefinition", "apiUrlTemplate", "template"], u))
    mutate(f"url-download-{i:02d}", setp(S + ["dl", "sourceUrlTemplate"], u))
    mutate(f"url-templated-{i:02d}", setp(S + ["call", "apiUrlTemplate", "template"],
                                          u.split(":")[0] + "://{{host}}/x"))

# ---- enum: unknown names ----------------------------------------------------------------------------
for name, path, value in [
        ("step-type", S + ["work", "stepType"], "TELEPORT"), ("step-type-case", S + ["work", "stepType"], "no_op"),
        ("http-method", S + ["call", "apiHttpMethod"], "FETCH"), ("llm-provider", S + ["llm", "llmProvider"], "SKYNET"),
        ("delay-position", S + ["load", "delay", "position"], "during"),
        ("aggregation-strategy", S + ["fork", "aggregationConfig", "strategy"], "SHUFFLE"),
        ("jitter", S + ["load", "onError", "retries", "jitterStrategy"], "CHAOS"),
]:
    mutate(f"enum-{name}", setp(path, value))


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "test", "corpus", "definitions")
    os.makedirs(out, exist_ok=True)
    names = set()
    for name, _ in cases:
        assert name not in names, name
        names.add(name)
    for f in os.listdir(out):
        if f.endswith(".json"):
            os.remove(os.path.join(out, f))
    for name, data in cases:
        with open(os.path.join(out, name + ".json"), "wb") as fh:
            fh.write(data)
    print(f"{len(cases)} definitions in {out}")


if __name__ == "__main__":
    main()
