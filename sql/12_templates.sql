-- "{{ }}" templates: allma's Handlebars subset, Allma's helpers, parse
-- errors, and renderNestedTemplates (allma_template_render_value).
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS allma;
RESET client_min_messages;

-- Test hooks exported by the library (not part of the extension script).
CREATE FUNCTION pg_temp.tcheck(text) RETURNS text
	AS '$libdir/allma', 'allma_test_template_check' LANGUAGE C STRICT;
CREATE FUNCTION pg_temp.trender(jsonb, jsonb) RETURNS jsonb
	AS '$libdir/allma', 'allma_test_render_value' LANGUAGE C STRICT;

CREATE TEMP TABLE tctx AS SELECT '{
	"name": "World", "n": 3, "zero": 0, "neg": -1.5, "t": true, "f": false,
	"nul": null, "empty": "", "str": "hello", "zero_str": "0",
	"a": {"b": {"c": 42}}, "arr": ["x", "y", "z"], "nums": [1, 2, 3, 4, 5],
	"none": [], "obj": {"k": "v", "n": [1, 2]}, "eobj": {},
	"people": [{"name": "Ann", "age": 30}, {"name": "Bob", "age": 25}],
	"key with space": "spaced", "u": "naïve café", "tricky": "a\"b\\c",
	"ptr": "$.name"
}'::jsonb AS c;

-- Renders every template of the array against tctx, in order.
CREATE FUNCTION pg_temp.cases(templates text[])
RETURNS TABLE (template text, result text) LANGUAGE sql AS $$
	SELECT t, allma_render_template(t, c)
	  FROM tctx, unnest(templates) WITH ORDINALITY AS u(t, i)
	 ORDER BY i
$$;

--
-- Paths, literals and output
--
SELECT * FROM pg_temp.cases(ARRAY[
	'no markup at all',
	'Hello {{name}}!',
	'{{ name }}|{{{name}}}|{{&name}}',
	'{{a.b.c}} {{a/b/c}} {{this.a.b.c}} {{./a.b.c}}',
	'[{{missing}}] [{{a.missing.deeper}}] [{{name.length.x}}]',
	'{{arr.[0]}} {{arr.1}} {{arr.[2]}} [{{arr.3}}] [{{arr.01}}]',
	'{{arr.length}} {{str.length}} {{u.length}} {{none.length}}',
	'{{people.1.name}} {{people.[0].age}}',
	'{{[key with space]}} {{["key with space"]}}',
	'{{n}} {{zero}} {{neg}} {{t}} {{f}} [{{nul}}] [{{empty}}]',
	'{{obj}} {{arr}} {{eobj}} {{none}}',
	'{{tricky}} {{u}}',
	'{{this}}',
	'{{.}}',
	'{{"name"}} {{''name''}}',
	'{{@root.name}} [{{@index}}] [{{@key}}] [{{@foo}}]'
]);

--
-- Comments, escapes and whitespace control
--
SELECT * FROM pg_temp.cases(ARRAY[
	'a{{! a comment }}b{{!-- a }} long --}}c',
	E'line 1\n  {{! standalone comment }}\nline 2',
	E'\\{{name}} is literal, \\\\{{name}} is not',
	E'\\{{name}} {{name}} \\{{x}}',
	'[  {{~name~}}  ]',
	E'[\n\t{{~name}}\n]',
	E'[ {{name~}} \n ]',
	'[ {{~{name}~}} ]',
	E'{{#if t ~}}\n   yes   \n{{~/if}}|',
	E'{{#if f}}\n  yes\n{{~else~}}\n  no\n{{/if}}|',
	'x {{~! stripped comment ~}} y'
]);

-- standalone block tags take their line with them
SELECT allma_render_template(E'Items:\n{{#each arr}}\n  - {{this}}\n{{/each}}\nDone.', c) FROM tctx;
SELECT allma_render_template(E'{{#if f}}\n  A\n{{else}}\n  B\n{{/if}}\nend', c) FROM tctx;
SELECT allma_render_template(E'  {{#each nums}}\n    {{#if (gt this 3)}}\n    big {{this}}\n    {{/if}}\n  {{/each}}\n', c) FROM tctx;
-- a block tag that shares its line with text is not standalone
SELECT allma_render_template(E'{{#if t}}- one\n{{/if}}{{#if t}}- two\n{{/if}}\nend', c) FROM tctx;

--
-- #if, #unless, else chains, truthiness
--
SELECT * FROM pg_temp.cases(ARRAY[
	'{{#if t}}T{{/if}}{{#if f}}F{{/if}}',
	'{{#if name}}yes{{else}}no{{/if}}',
	'{{#if missing}}yes{{else}}no{{/if}}',
	'{{#if zero}}yes{{else}}no{{/if}} {{#if zero includeZero=true}}yes{{else}}no{{/if}}',
	'{{#if zero_str}}yes{{else}}no{{/if}} {{#if empty}}yes{{else}}no{{/if}}',
	'{{#if none}}yes{{else}}no{{/if}} {{#if arr}}yes{{else}}no{{/if}}',
	'{{#if eobj}}yes{{else}}no{{/if}} {{#if nul}}yes{{else}}no{{/if}} {{#if neg}}yes{{else}}no{{/if}}',
	'{{#unless f}}U{{else}}not{{/unless}} {{#unless t}}U{{else}}not{{/unless}}',
	'{{#if f}}A{{else if zero}}B{{else if n}}C{{else}}D{{/if}}',
	'{{#if f}}A{{else if zero}}B{{else}}D{{/if}}',
	'{{#if t}}{{#if a.b}}{{a.b.c}}{{/if}}{{/if}}',
	'{{^if f}}inverted{{/if}}',
	'{{#if t}}in if, this is root: {{name}} {{../name}}.{{/if}}'
]);

--
-- #each over arrays and objects, data variables, block parameters, ../
--
SELECT * FROM pg_temp.cases(ARRAY[
	'{{#each arr}}{{@index}}={{this}}{{#if @first}}(first){{/if}}{{#if @last}}(last){{/if}} {{/each}}',
	'{{#each obj}}{{@index}}.{{@key}}:{{this}}{{#if @first}}(first){{/if}}{{#if @last}}(last){{/if}}|{{/each}}',
	'{{#each people}}{{name}} is {{age}}; {{/each}}',
	'{{#each people as |p i|}}{{i}}:{{p.name}}/{{name}} {{/each}}',
	'{{#each obj as |v k|}}{{k}}={{v}} {{/each}}',
	'{{#each none}}x{{else}}empty{{/each}} {{#each missing}}x{{else}}nothing{{/each}} {{#each str}}x{{else}}not iterable{{/each}}',
	'{{#each arr}}{{this}}@{{../name}}{{#if @last}}.{{else}},{{/if}}{{/each}}',
	'{{#each people}}{{#each ../arr}}{{@../index}}{{@index}}{{../name}} {{/each}}{{/each}}',
	'{{#each people}}{{@root.name}}/{{../../name}}|{{/each}}',
	'{{#each (slice nums 1 3)}}{{this}};{{/each}}',
	'{{#each people}}{{#with this as |who|}}{{who.name}}{{/with}}{{/each}}',
	'{{#each arr}}{{#each ../people}}{{../this}}{{name}} {{/each}}{{/each}}'
]);

--
-- #with, Mustache sections
--
SELECT * FROM pg_temp.cases(ARRAY[
	'{{#with a.b}}c={{c}} root={{../name}}{{/with}}',
	'{{#with a as |x|}}{{x.b.c}} {{b.c}}{{/with}}',
	'{{#with missing}}yes{{else}}no context{{/with}} {{#with zero}}zero is {{this}}{{/with}}',
	'{{#a}}{{b.c}}{{/a}} {{#arr}}[{{this}}]{{/arr}} {{#t}}true{{/t}} {{#f}}x{{else}}false{{/f}}',
	'{{^none}}no items{{/none}} {{^t}}x{{else}}t is true{{/t}} {{^missing}}absent{{/missing}}',
	'{{#str}}{{this}} {{length}}{{/str}} {{#empty}}[{{this}}]{{/empty}}'
]);

--
-- Allma helpers: json, slice, eq, neq, gt, lt, default, base64; lookup, log
--
SELECT * FROM pg_temp.cases(ARRAY[
	'{{json obj}} {{json arr}} {{json people}}',
	'{{json name}} {{json n}} {{json t}} {{json nul}} {{json missing}} {{json tricky}}',
	'{{json (slice people 0 1)}}',
	'{{slice arr 1}} {{slice arr 0 2}} {{slice arr -1}} {{slice arr -2 -1}} {{slice arr 5}}',
	'{{slice str 1 3}} {{slice str -3}} [{{slice str 3 1}}] {{slice u 0 5}}',
	'{{slice n 0 1}} {{slice missing 0 1}}',
	'{{eq name "World"}} {{eq n 3}} {{eq n "3"}} {{eq nul null}} {{eq missing undefined}} {{eq missing nul}}',
	'{{eq obj obj}} {{eq arr arr}} {{eq (slice arr 0 1) (slice arr 0 1)}} {{neq name "x"}} {{neq n 3}}',
	'{{gt n 2}} {{gt n 3}} {{lt n 4}} {{lt neg 0}} {{gt "b" "a"}} {{lt "B" "a"}} {{gt n "2"}} {{gt n "x"}} {{gt t f}} {{lt missing 1}}',
	'{{#if (eq name ''World'')}}hello{{else}}who?{{/if}} {{#if (gt (slice nums 2) 0)}}x{{else}}arrays compare as NaN{{/if}}',
	'{{#eq n 3}}three{{else}}not three{{/eq}} {{#neq n 3}}x{{else}}is three{{/neq}} {{#gt n 1}}big{{/gt}} {{#lt n 1}}x{{else}}not small{{/lt}}',
	'{{default missing "fallback"}} {{default nul "was null"}} {{default name "x"}} [{{default empty "x"}}] {{default zero 9}} {{default missing}}',
	'{{#each (default missing arr)}}{{this}}{{/each}}',
	'{{base64 "user:pass"}} {{base64 name}} [{{base64 missing}}] [{{base64 empty}}] {{base64 n}} {{base64 u}}',
	'{{lookup obj "k"}} {{lookup arr 1}} {{lookup people.1 "name"}} [{{lookup missing "k"}}] [{{lookup obj missing}}]',
	'[{{log "ignored"}}]',
	'{{#json obj}}ignored block{{/json}}',
	'{{#each people}}{{#if (eq name "Bob")}}{{name}} is {{age}}{{/if}}{{/each}}'
]);

--
-- with_json_path: an Allma JSONPath over the current context
--
SELECT * FROM pg_temp.cases(ARRAY[
	'{{#with_json_path "$.people[*].name" as |names|}}{{#each names}}{{this}};{{/each}} {{json names}}{{/with_json_path}}',
	'{{#with_json_path "$.a.b.c" as |v|}}{{v}} and {{name}}{{/with_json_path}}',
	'{{#with_json_path "$.nothing.here" as |v|}}[{{v}}]{{/with_json_path}}',
	'{{#with a}}{{#with_json_path "$.b" as |v|}}{{json v}}{{/with_json_path}}{{/with}}',
	'{{#each people}}{{#with_json_path "$.age" as |age|}}{{age}} {{/with_json_path}}{{/each}}'
]);

--
-- Real Allma templates (test/fixtures/allma-example-flows)
--
SELECT allma_render_template(
	'arn:aws:lambda:{{region}}:{{accountId}}:function:optiroq-sanitizerfqdocumentexcel-{{stage}}',
	'{"region": "eu-west-1", "accountId": "123456789012", "stage": "dev"}');
SELECT allma_render_template(
	'COMM#{{_internal.currentStepStartTime}}#SUPPLIER#{{initialContextData.supplier.supplierId}}',
	'{"_internal": {"currentStepStartTime": "2026-01-02T03:04:05Z"},
	  "initialContextData": {"supplier": {"supplierId": "SUP-7"}}}');
SELECT allma_render_template(
	E'{{initialContextData.body}}\n\n---\n\nAttachments:\n{{steps_output.attachment_links.linksText}}',
	'{"initialContextData": {"body": "Dear supplier,"}, "steps_output": {"attachment_links": {}}}');
SELECT allma_render_template(
	E'Your Bill of Materials for project {{projectId}} failed processing and could not be imported. The system reported the following issues:\n\n{{steps_output.validation_result.errors}}',
	'{"projectId": "P-1", "steps_output": {"validation_result": {"errors": ["row 3: missing part number"]}}}');

-- The whole EMAIL step of optiroq-send-rfq-emails (Allma renders the whole
-- step definition): each with lookup and ../, standalone lines, if/else.
CREATE TEMP TABLE rfq_email AS SELECT '{
	"stepInstanceId": "send_single_email",
	"displayName": "Send RFQ to Supplier",
	"stepType": "EMAIL",
	"from": "{{flow_variables.FromEmail}}",
	"to": "{{currentItem.email}}",
	"cc": ["{{userEmail}}"],
	"subject": "Request for Quotation (RFQ) {{steps_output.email_context.rfq.rfqId}} for Project {{steps_output.email_context.rfq.projectId}}",
	"body": "Hello {{currentItem.name}},\n\nWe are formally requesting a quotation for the parts and services detailed below for our project.\n\n**Project ID:** {{steps_output.email_context.rfq.projectId}}\n**RFQ ID:** {{steps_output.email_context.rfq.rfqId}}\n**Response Deadline:** {{steps_output.email_context.rfq.responseDeadline}}\n\n**Parts Included in this RFQ:**\n{{#each steps_output.email_context.rfq.parts}}\n- **{{this}}**: {{lookup ../steps_output.email_context.rfq.partDescriptions this}}\n{{/each}}\n\n**Volume Scenarios:**\n{{#each steps_output.email_context.rfq.volumeScenarios}}\n- {{this.volume}} {{this.unit}}\n{{/each}}\n\n**Information Required:**\nPlease provide a detailed breakdown for the following items:\n{{#if steps_output.email_context.rfq.requirements.material}}- Material Cost Breakdown\n{{/if}}{{#if steps_output.email_context.rfq.requirements.process}}- Process Cost Breakdown\n{{/if}}{{#if steps_output.email_context.rfq.requirements.tooling}}- Tooling Cost (must be separate)\n{{/if}}{{#if steps_output.email_context.rfq.requirements.logistics}}- Logistics Costs\n{{/if}}{{#if steps_output.email_context.rfq.requirements.terms}}- Payment Terms and Lead Times\n{{/if}}{{#if steps_output.email_context.rfq.requirements.capacity}}- Capacity Confirmation\n{{/if}}{{#if steps_output.email_context.rfq.requirements.quality}}- Quality Certifications\n{{/if}}{{#if steps_output.email_context.rfq.requirements.prototype}}- Prototype Sample Availability\n{{/if}}{{#if steps_output.email_context.rfq.requirements.sustainability}}- Sustainability/ESG Information\n{{/if}}\n\n**Additional Notes:**\n{{#if steps_output.email_context.rfq.additionalNotes}}{{steps_output.email_context.rfq.additionalNotes}}{{else}}N/A{{/if}}\n\nPlease find any relevant attachments with this email. We look forward to your prompt response.\n\nBest regards,\nThe Optiroq Sourcing Team",
	"defaultNextStepInstanceId": "log_communication_event"
}'::jsonb AS step, '{
	"flow_variables": {"FromEmail": "rfq@optiroq.example"},
	"userEmail": "buyer@example.com",
	"currentItem": {"name": "Acme Parts", "email": "sales@acme.example"},
	"steps_output": {"email_context": {"rfq": {
		"rfqId": "RFQ-42", "projectId": "PRJ-7", "responseDeadline": "2026-03-01",
		"parts": ["P-100", "P-200", "P-300"],
		"partDescriptions": {"P-100": "Bracket, steel", "P-200": "Housing, ABS"},
		"volumeScenarios": [{"volume": 1000, "unit": "pcs/year"}, {"volume": 5000, "unit": "pcs/year"}],
		"requirements": {"material": true, "process": false, "tooling": true, "terms": true, "quality": true},
		"additionalNotes": ""
	}}}
}'::jsonb AS ctx;

SELECT key, value FROM rfq_email, jsonb_each(pg_temp.trender(step, ctx) -> 'value') ORDER BY key;
SELECT (pg_temp.trender(step, ctx) -> 'value' ->> 'body') AS body FROM rfq_email;

-- every template in the example flows parses
SELECT count(*) AS templates, count(pg_temp.tcheck(t)) AS failures FROM (VALUES
	('OptiroqEntityGraph-{{stage}}'),
	('RFQ#{{rfqId}}'),
	('{{flow_variables.EntityGraphTableName}}'),
	('Request for Quotation (RFQ) {{steps_output.email_context.rfq.rfqId}} for Project {{steps_output.email_context.rfq.projectId}}'),
	($q$$._internal.currentStepStartTime | prepend: 'COMM#' | append: '#SUPPLIER#' | append: '{{currentItem.name}}'$q$),
	('https://{{optiroqApiDomain}}'),
	('Comparison_Board_{{initialContextData.rfqId}}.xlsx'),
	('{{steps_output.excel_s3_pointer._s3_output_pointer.bucket}}'),
	('rfq-approval:{{initialContextData.rfqId}}'),
	('[RFQ#{{initialContextData.rfqId}}] {{initialContextData.subject}}'),
	(E'Subject: {{initialContextData.emailSubject}}\n\n{{initialContextData.emailBody}}'),
	('Error: {{_internal.lastError.message}}')
) v(t);
SELECT pg_temp.tcheck(step ->> 'body') AS body_error FROM rfq_email;

--
-- renderNestedTemplates (allma_template_render_value)
--
CREATE TEMP TABLE rctx AS SELECT '{
	"name": "World", "n": 3, "list": [1, 2], "obj": {"k": "v"}, "nul": null,
	"ptr": "$.name", "tmpl": "Hi {{name}}", "loop": "$.loop", "a2b": "$.b2a", "b2a": "$.a2b",
	"dyn": "list"
}'::jsonb AS c;

-- nothing to render: the very same value comes back
SELECT pg_temp.trender('{"a": "plain", "b": [1, true, null], "c": {"d": "$ not a path"}}', c) FROM rctx;
SELECT pg_temp.trender('"just a string"', c) FROM rctx;
SELECT pg_temp.trender('42', c) FROM rctx;
-- interpolation everywhere, keys untouched, non-strings untouched
SELECT pg_temp.trender('{"{{name}}": "{{name}}", "deep": [{"x": ["{{n}}", 7, false]}]}', c) FROM rctx;
-- a whole "$.path" becomes the typed value
SELECT pg_temp.trender('{"s": "$.name", "num": "$.n", "arr": "$.list", "o": "$.obj", "z": "$.nul", "first": "$.list[0]"}', c) FROM rctx;
-- "{{ }}" producing a path, then resolved: "$.{{dyn}}" is "$.list"
SELECT pg_temp.trender('{"v": "$.{{dyn}}"}', c) FROM rctx;
-- a path whose value is a template or another path is rendered again
SELECT pg_temp.trender('{"via_ptr": "$.ptr", "via_tmpl": "$.tmpl"}', c) FROM rctx;
-- self-reference stops at once, a cycle stops at the depth guard
SELECT pg_temp.trender('{"self": "$.loop", "cycle": "$.a2b"}', c) FROM rctx;
-- a missing path: dropped from objects, null in arrays, null at top level
SELECT pg_temp.trender('{"gone": "$.nope", "kept": 1, "arr": ["$.nope", "$.n"]}', c) FROM rctx;
SELECT pg_temp.trender('"$.nope"', c) FROM rctx;
-- only a whole, single-line "$." string is a path; an invalid path stays text
SELECT pg_temp.trender(E'{"a": " $.name", "c": "$.na\\nme", "d": "x $.name", "e": "$name", "f": "$.[bad"}', c) FROM rctx;
SELECT pg_temp.trender(jsonb_build_object('k', $q$$._internal.currentStepStartTime | prepend: 'COMM#' | append: '{{name}}'$q$), c) FROM rctx;
-- top-level scalar string
SELECT pg_temp.trender('"{{name}}-{{n}}"', c) FROM rctx;
SELECT pg_temp.trender('"$.obj"', c) FROM rctx;

--
-- Cache: the same template many times, and more templates than the cache
-- holds (256); results must not change.
--
SELECT count(DISTINCT allma_render_template('{{#each arr}}{{this}}{{/each}}-{{name}}', c)) AS distinct_results
  FROM tctx, generate_series(1, 50);
SELECT bool_and(allma_render_template('{{n}}+' || i || '={{name}}', c) = '3+' || i || '=World') AS all_ok
  FROM tctx, generate_series(1, 600) AS i;
SELECT allma_render_template('Hello {{name}}!', c) FROM tctx;

--
-- Errors.  They are shown as "SQLSTATE: message | DETAIL: ..." by this
-- wrapper rather than with \set VERBOSITY verbose, whose LOCATION lines
-- carry source line numbers.
--
CREATE FUNCTION pg_temp.try(tmpl text, ctx jsonb DEFAULT '{}') RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
	st text;
	msg text;
	det text;
BEGIN
	RETURN allma_render_template(tmpl, ctx);
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT,
		det = PG_EXCEPTION_DETAIL;
	RETURN st || ': ' || msg
		|| CASE WHEN det <> '' THEN ' | DETAIL: ' || det ELSE '' END;
END
$$;
CREATE FUNCTION pg_temp.try_value(value jsonb, ctx jsonb DEFAULT '{}') RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
	RETURN pg_temp.trender(value, ctx)::text;
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE || ': ' || SQLERRM;
END
$$;

-- syntax errors (LM105), also reported by allma_template_check
SELECT pg_temp.try('{{#if t}}never closed');
SELECT pg_temp.try('{{#if t}}x{{/each}}');
SELECT pg_temp.try(E'ok\n{{/if}}');
SELECT pg_temp.try('{{else}}');
SELECT pg_temp.try('{{#each arr}}a{{else}}b{{else}}c{{/each}}');
SELECT pg_temp.try('Hello {{name');
SELECT pg_temp.try('{{name}}}');
SELECT pg_temp.try('{{{name}}');
SELECT pg_temp.try('{"a": {{name}}}}');
SELECT pg_temp.try('{{}}');
SELECT pg_temp.try('{{eq "unterminated}}');
SELECT pg_temp.try('{{eq (gt 1 2}}');
SELECT pg_temp.try('{{a.this}}');
SELECT pg_temp.try('{{a b=1 c}}');
SELECT pg_temp.try('{{#each arr as ||}}x{{/each}}');
SELECT pg_temp.try('{{> partial}}');
SELECT pg_temp.try('{{{{raw}}}}x{{{{/raw}}}}');
SELECT pg_temp.try('{{!-- unclosed comment }}');
SELECT pg_temp.try(E'line 1\nline 2 {{#if x}}\n{{#with y}}{{/if}}');
-- render errors (LM105): unknown helpers and misused helpers
SELECT pg_temp.try('{{shout name}}', '{"name": "x"}');
SELECT pg_temp.try('{{#iff t}}x{{/iff}}', '{"t": true}');
SELECT pg_temp.try('{{#if (upper name)}}x{{/if}}', '{"name": "x"}');
SELECT pg_temp.try('{{a.b c}}', '{"a": {"b": "x"}}');
SELECT pg_temp.try('{{#if t}}{{#each}}x{{/each}}{{/if}}', '{"t": true}');
SELECT pg_temp.try('{{#if a b}}x{{/if}}');
SELECT pg_temp.try('{{if t}}', '{"t": true}');
SELECT pg_temp.try('{{#with_json_path 12 as |v|}}x{{/with_json_path}}');
-- an invalid JSONPath in with_json_path (LM103)
SELECT pg_temp.try('{{#with_json_path "no dollar" as |v|}}x{{/with_json_path}}', '{"a": 1}');
-- an unknown helper in a branch that is not taken is not an error
SELECT pg_temp.try('{{#if f}}{{shout name}}{{else}}fine{{/if}}', '{"f": false}');
-- render errors also come out of renderNestedTemplates
SELECT pg_temp.try_value('{"a": "{{#if x}}"}');

-- allma_template_check never throws
SELECT t, pg_temp.tcheck(t) AS error FROM (VALUES
	('no markup'), ('{{ok}}'), ('{{#if a}}{{else}}{{/if}}'), ('{{shout name}}'),
	('{{#if a}}'), ('{{/if}}'), ('{{x'), ('{{"x'), ('{{a.[b}}'), ('{{@}}'),
	(E'a\n b\n  {{#each x}}\n{{/with}}')
) v(t);
