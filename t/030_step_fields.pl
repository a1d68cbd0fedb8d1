# Documented step fields that validation accepts, run end to end against the
# mock server: API_CALL's apiHeadersTemplate, requestBodyTemplate and
# customConfig.requestBodyPath (checked in what the mock's /echo received);
# LLM_INVOCATION's customConfig.prompt and templateContextMappings (the
# mock's mock-echo model answers with the prompt it got); and the provider
# base-URL settings allma.openai_base_url, allma.anthropic_base_url and
# allma.gemini_base_url (which path of the mock each provider's request
# reached), below a step's customConfig.baseUrl and following a reload.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use JSON::PP;
use lib 't';
use AllmaTest;

my $base = start_mock();
my $node = allma_node('fields', "allma.http_allowlist = '127.0.0.1'\n"
	  . "allma.openai_base_url = '$base/gw-openai/v1'\n"
	  . "allma.anthropic_base_url = '$base/gw-anthropic/v1'\n"
	  . "allma.gemini_base_url = '$base/gw-gemini/v1beta'\n");

sub q1 { return $node->safe_psql('postgres', $_[0]); }

# run(flow, input): the finished execution's id
sub run
{
	my ($flow, $input) = @_;
	my $e = q1("SELECT allma_start_flow('$flow', '$input')");
	my $status = q1("SELECT allma_wait('$e', '60 s')");
	is($status, 'COMPLETED', "$flow completes")
	  or diag(q1("SELECT error FROM allma.executions WHERE execution_id = '$e'"));
	return $e;
}

# step_output(execution, step): that step's output, decoded
sub step_output
{
	my ($e, $step) = @_;
	return JSON::PP->new->decode(
		q1("SELECT output->'steps_output'->'$step' FROM allma.executions WHERE execution_id = '$e'"));
}


# ---------------------------------------------------------------------------
# API_CALL: headers from paths and templates, a body from a template of
# mappings, a body from a path of the context
# ---------------------------------------------------------------------------
q1(qq{SELECT allma_create_flow('{"id": "api-template", "startStepInstanceId": "call", "steps": {
  "call": {"stepType": "API_CALL", "apiUrlTemplate": {"template": "$base/echo/template"}, "apiHttpMethod": "POST",
           "inputMappings": {"n": "\$.n"},
           "apiStaticHeaders": {"X-Static": "s-{{n}}"},
           "apiHeadersTemplate": {"X-Customer": "\$.customer.id", "X-Count": "\$.items.length",
                                  "X-Missing": "\$.nowhere"},
           "requestBodyTemplate": {"who": {"sourceJsonPath": "\$.customer.name"},
                                   "items": {"sourceJsonPath": "\$.items"},
                                   "itemsText": {"sourceJsonPath": "\$.items", "formatAs": "JSON"},
                                   "absent": {"sourceJsonPath": "\$.nowhere"}}}}}')});
my $e = run('api-template', '{"n": 7, "customer": {"id": "c-42", "name": "Ada"}, "items": [1, {"k": "v"}]}');
my $echo = step_output($e, 'call')->{data};
is($echo->{path}, '/echo/template', 'the request reached the mock');
is($echo->{headers}{'x-customer'}, 'c-42', 'apiHeadersTemplate: a $.path header comes from the context');
is($echo->{headers}{'x-count'}, '2', 'apiHeadersTemplate: a non-string value is sent as its text');
ok(!exists $echo->{headers}{'x-missing'}, 'apiHeadersTemplate: a path that matches nothing sends no header');
is($echo->{headers}{'x-static'}, 's-7', 'apiStaticHeaders still apply');
like($echo->{headers}{'content-type'}, qr{^application/json}, 'the body is sent as JSON');
is_deeply($echo->{json}, { who => 'Ada', items => [ 1, { k => 'v' } ], itemsText => '[1, {"k": "v"}]' },
	'requestBodyTemplate: one member per mapping, formatAs JSON gives JSON text, absent sources are left out');

q1(qq{SELECT allma_create_flow('{"id": "api-bodypath", "startStepInstanceId": "call", "steps": {
  "call": {"stepType": "API_CALL", "apiUrlTemplate": {"template": "$base/echo/bodypath"}, "apiHttpMethod": "PUT",
           "inputMappings": {"n": "\$.n"},
           "customConfig": {"requestBodyPath": "\$.order.payload"}}}}')});
$e = run('api-bodypath', '{"n": 5, "order": {"payload": {"sku": "A-1", "qty": 2, "tags": ["x", null, true]}}}');
$echo = step_output($e, 'call')->{data};
is($echo->{method}, 'PUT', 'the method is the step\'s');
is_deeply($echo->{json}, { sku => 'A-1', qty => 2, tags => [ 'x', undef, JSON::PP::true ] },
	'customConfig.requestBodyPath: the body is that part of the context, not the step input');

# ---------------------------------------------------------------------------
# LLM_INVOCATION: customConfig.prompt and templateContextMappings
# ---------------------------------------------------------------------------
q1(q{SET log_statement = 'none';
SELECT allma_set_secret('OPENAI_API_KEY', 'k-openai'), allma_set_secret('ANTHROPIC_API_KEY', 'k-anthropic'),
       allma_set_secret('GEMINI_API_KEY', 'k-gemini');});
q1(qq{SELECT allma_create_flow('{"id": "llm-inline", "startStepInstanceId": "ask", "steps": {
  "ask": {"stepType": "LLM_INVOCATION", "llmProvider": "OPENAI", "modelId": "mock-echo",
          "inputMappings": {"topic": "\$.topic"}, "literals": {"style": "a haiku"},
          "customConfig": {"baseUrl": "$base/v1", "apiKeySecret": "OPENAI_API_KEY", "prompt": "Write about {{topic}} as {{style}}."}}}}')});
$e = run('llm-inline', '{"topic": "queues"}');
is(step_output($e, 'ask')->{llm_response}, 'Write about queues as a haiku.',
	'customConfig.prompt is the prompt, rendered with the step input');

q1(q{SELECT allma_create_prompt('order-note', 'Note for {{customer}}: order {{order}} ({{count}} lines), {{tone}}.')});
q1(qq{SELECT allma_create_flow('{"id": "llm-mapped", "startStepInstanceId": "ask", "steps": {
  "ask": {"stepType": "LLM_INVOCATION", "llmProvider": "OPENAI", "modelId": "mock-echo",
          "promptTemplateId": "order-note", "literals": {"tone": "friendly"},
          "templateContextMappings": {"customer": {"sourceJsonPath": "\$.customer.name"},
                                      "order": {"sourceJsonPath": "\$.order", "formatAs": "JSON"},
                                      "count": {"sourceJsonPath": "\$.order.lines.length"}},
          "customConfig": {"baseUrl": "$base/v1", "apiKeySecret": "OPENAI_API_KEY"}}}}')});
$e = run('llm-mapped', '{"customer": {"name": "Ada"}, "order": {"id": 9, "lines": ["a", "b"]}}');
is(step_output($e, 'ask')->{llm_response}, 'Note for Ada: order {"id": 9, "lines": ["a", "b"]} (2 lines), friendly.',
	'templateContextMappings add context values (formatAs JSON as JSON text) to the prompt template');

# ---------------------------------------------------------------------------
# provider base URLs: the settings, below customConfig.baseUrl
# ---------------------------------------------------------------------------
q1(q{SELECT allma_create_flow('{"id": "llm-providers", "startStepInstanceId": "openai", "steps": {
  "openai": {"stepType": "LLM_INVOCATION", "llmProvider": "OPENAI", "modelId": "mock-echo",
             "customConfig": {"prompt": "to openai"}, "defaultNextStepInstanceId": "anthropic"},
  "anthropic": {"stepType": "LLM_INVOCATION", "llmProvider": "ANTHROPIC", "modelId": "mock-echo",
                "customConfig": {"prompt": "to anthropic"}, "defaultNextStepInstanceId": "gemini"},
  "gemini": {"stepType": "LLM_INVOCATION", "llmProvider": "GEMINI", "modelId": "mock-echo",
             "customConfig": {"prompt": "to gemini"}}}}')});
$e = run('llm-providers', '{}');
for my $p ([ 'openai', '/gw-openai/v1/chat/completions' ], [ 'anthropic', '/gw-anthropic/v1/messages' ],
	[ 'gemini', '/gw-gemini/v1beta/models/mock-echo:generateContent' ])
{
	my ($provider, $path) = @$p;
	is(step_output($e, $provider)->{llm_response}, "to $provider", "$provider answers through the mock");
	is(scalar(@{ mock_json($base, "/__log?path=$path") }), 1,
		"allma.${provider}_base_url is where the $provider request goes ($path)");
}
# the step's own customConfig.baseUrl wins (llm-inline went to /v1 above)
is(scalar(@{ mock_json($base, '/__log?path=/v1/chat/completions') }), 2,
	'customConfig.baseUrl takes precedence over allma.openai_base_url');

# the settings follow a reload
$node->append_conf('postgresql.conf', "allma.openai_base_url = '$base/gw-other/v1'\n");
$node->reload;
wait_for_setting($node, 'allma.openai_base_url', "$base/gw-other/v1");
$e = run('llm-providers', '{}');
is(scalar(@{ mock_json($base, '/__log?path=/gw-other/v1/chat/completions') }), 1,
	'a reloaded allma.openai_base_url applies to the next request');
is(scalar(@{ mock_json($base, '/__log?path=/gw-openai/') }), 1, 'and the old one is no longer used');

$node->stop;
done_testing();
