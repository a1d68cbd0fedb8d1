# Invalid bytes from servers (issue 13 #5): a text body with invalid UTF-8
# and a NUL, a JSON body with invalid UTF-8 in a string, a response header
# with invalid UTF-8 and an LLM reply with invalid UTF-8 are stored as
# valid text, every bad byte and NUL replaced by U+FFFD, nothing after a NUL
# lost; pg_dump of the history restores into a new database.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use lib 't';
use AllmaTest;

my $base = start_mock();
my $node = allma_node('bytes', "allma.http_allowlist = '127.0.0.1'\n");
sub q1 { return $node->safe_psql('postgres', $_[0]); }

q1(qq{SET log_statement = 'none'; SELECT allma_set_secret('OPENAI_API_KEY', 'sk-test-bytes')});
q1(qq{
SELECT allma_create_flow('{"id": "bytes", "startStepInstanceId": "text", "steps": {
  "text": {"stepType": "API_CALL", "apiUrlTemplate": {"template": "$base/bad-bytes"}, "apiHttpMethod": "GET",
           "defaultNextStepInstanceId": "json"},
  "json": {"stepType": "API_CALL", "apiUrlTemplate": {"template": "$base/bad-bytes?json=1"}, "apiHttpMethod": "GET",
           "defaultNextStepInstanceId": "llm"},
  "llm": {"stepType": "LLM_INVOCATION", "llmProvider": "OPENAI", "modelId": "mock-bad-bytes",
          "promptTemplateId": "p", "customConfig": {"apiKeySecret": "OPENAI_API_KEY", "baseUrl": "$base/v1"}}}}')});
q1(q{SELECT allma_create_prompt('p', 'say something')});

my $e = q1("SELECT allma_start_flow('bytes', '{}')");
is(q1("SELECT allma_wait('$e', '60 s')"), 'COMPLETED', 'the flow completes');

my $out = "(SELECT output->'steps_output' FROM allma.executions WHERE execution_id = '$e')";
# U+FFFD is \x{FFFD}; psql gives UTF-8 bytes back
is(q1("SELECT $out->'text'->>'data' = E'before \\uFFFD\\uFFFD middle \\uFFFD after \\uFFFD'"), 't',
	'text body: invalid bytes and the NUL replaced by U+FFFD, the text after the NUL kept');
is(q1("SELECT $out->'json'->'data'->>'text' = E'a\\uFFFDb\\uFFFD' AND ($out->'json'->'data'->>'n')::int = 1"), 't',
	'JSON body: still parsed as JSON, invalid bytes in a string replaced');
is(q1("SELECT $out->'text'->'headers'->>'x-bad-bytes' = E'ok \\uFFFD\\uFFFD end'"), 't',
	'response header: invalid bytes replaced');
is(q1("SELECT $out->'llm'->>'llm_response' = E'before \\uFFFD\\uFFFD\\uFFFD( after'"), 't',
	'LLM reply: invalid bytes replaced');
is(q1("SELECT position(E'\\uFFFD' IN details->>'llmRawResponse') > 0 FROM allma.step_executions
        WHERE execution_id = '$e' AND step_instance_id = 'llm' AND status = 'COMPLETED'"), 't',
	'the raw LLM response in the history is valid text too');

# every stored value is valid in the database encoding: dump and restore.
# (allma.flows and allma.flow_versions reference each other, and pg_dump
# does not order extension configuration tables by foreign keys: the
# restore runs with session_replication_role = replica, which pg_dump's
# own --disable-triggers would also use.)
my $dump = $node->basedir . '/bytes.sql';
$node->command_ok([ 'pg_dump', '-d', $node->connstr('postgres'), '-f', $dump ], 'pg_dump of the database');
q1('CREATE DATABASE restored');
$node->command_ok([ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('restored'),
	'-c', 'SET session_replication_role = replica', '-f', $dump ],
	'the dump restores');
is($node->safe_psql('restored', "SELECT count(*) FROM allma.step_executions WHERE execution_id = '$e'"),
	q1("SELECT count(*) FROM allma.step_executions WHERE execution_id = '$e'"), 'the history was restored');
is($node->safe_psql('restored', "SELECT output FROM allma.executions WHERE execution_id = '$e'"),
	q1("SELECT output FROM allma.executions WHERE execution_id = '$e'"), 'the execution was restored unchanged');

done_testing();
