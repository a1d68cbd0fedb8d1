# MCP_CALL and FILE_DOWNLOAD through the worker, against the mock server.
# MCP: a tools/call with the step input as arguments (JSON and SSE
# replies), headers and a bearer token from secrets that are never stored,
# tool errors (isError), JSON-RPC errors, an unknown connection, 5xx and
# timeouts retried as TransientStepError.  FILE_DOWNLOAD: binary bodies
# stored byte for byte in allma.files, the size cap, 4xx/5xx, row-level
# security and deletion with the execution.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use JSON::PP;
use HTTP::Tiny;
use Digest::MD5 qw(md5_hex);
use lib 't';
use AllmaTest;

my $base = start_mock();
my $node = allma_node('mcpfile', "allma.http_allowlist = '127.0.0.1'\nallma.timer_scale = 0.01\n"
	  . "allma.file_download_max_bytes = 100kB\n");

sub q1 { my ($sql) = @_; return $node->safe_psql('postgres', $sql); }

sub run
{
	my ($flow, $input) = @_;
	$input //= '{}';
	my $e = q1("SELECT allma_start_flow('$flow', '$input')");
	q1("SELECT allma_wait('$e', '60 s')");
	return $e;
}

# requests the mock received with this Idempotency-Key
sub sent
{
	my ($key) = @_;
	my $res = HTTP::Tiny->new->get("$base/__log?key=$key");
	die "mock log: $res->{status}" unless $res->{success};
	return JSON::PP->new->decode($res->{content});
}

# requests the mock received for one step attempt: the key and the keys of
# its later requests (key/initialize, key/initialized, ...), in order
sub sent_all
{
	my ($key) = @_;
	my $res = HTTP::Tiny->new->get("$base/__log");
	die "mock log: $res->{status}" unless $res->{success};
	return [ grep { ($_->{idempotency_key} // '') =~ m{^\Q$key\E(/|$)} }
		  @{ JSON::PP->new->decode($res->{content}) } ];
}

# the flow "id": one step "call" of the given JSON, then a NO_OP
sub flow
{
	my ($id, $step) = @_;
	q1(qq{SELECT allma_create_flow('{"id": "$id", "startStepInstanceId": "call", "steps": {
  "call": $step,
  "after": {"stepType": "NO_OP"}}}')});
}

sub mcp_flow
{
	my ($id, $conn, $tool, $extra) = @_;
	$extra //= '';
	flow($id, qq{{"stepType": "MCP_CALL", "mcpConnectionId": "$conn", "toolName": "$tool",
           "inputMappings": {"text": "\$.text"}, "literals": {"n": 2} $extra,
           "defaultNextStepInstanceId": "after"}});
}

sub error_of
{
	my ($e) = @_;
	return q1("SELECT error->>'errorName' || ': ' || (error->>'errorMessage') FROM allma.executions WHERE execution_id = '$e'");
}

sub history
{
	my ($e) = @_;
	return q1("SELECT string_agg(status || ':' || coalesce(error->>'errorName', ''), ',' ORDER BY seq) "
		  . "FROM allma.step_executions WHERE execution_id = '$e'");
}

q1("SELECT allma_set_secret('MCP_TOKEN', 'tok-secret-123'), allma_set_secret('MCP_HDR', 'hdr-secret-456')");
q1(qq{SELECT allma_create_mcp_connection('mock', '$base/mcp',
	'{"X-Tenant": "t1", "X-Token": "{{secrets.MCP_HDR}}", "Accept": "text/html"}', 'MCP_TOKEN')});
q1("SELECT allma_create_mcp_connection('sse', '$base/mcp?sse=1')");
q1("SELECT allma_create_mcp_connection('slow', '$base/mcp?latency_ms=1500', '{}', 'MCP_TOKEN')");
q1("SELECT allma_create_mcp_connection('broken', '$base/mcp?status=500')");
q1("SELECT allma_create_mcp_connection('hung', '$base/mcp?latency_ms=3000')");

# ---- MCP_CALL ----------------------------------------------------------------

# success: the step input is the tool's arguments, the output {result}
mcp_flow('mcp-ok', 'mock', 'echo');
my $e = run('mcp-ok', '{"text": "hi"}');
is(q1("SELECT status FROM allma.executions WHERE execution_id = '$e'"), 'COMPLETED', 'MCP_CALL completes');
is(q1("SELECT output->'steps_output'->'call'->'result'->'structuredContent' = '{\"text\": \"hi\", \"n\": 2}' FROM allma.executions WHERE execution_id = '$e'"),
	't', 'the tool got the step input (mappings and literals) as its arguments');
is(q1("SELECT output->'steps_output'->'call'->'result'->'content'->0->>'text' FROM allma.executions WHERE execution_id = '$e'"),
	'called echo with {"n":2,"text":"hi"}', 'the output is the JSON-RPC result');
my $reqs = sent("$e/call/1");
is(scalar(@$reqs), 1, 'one request, with Idempotency-Key execution/step/attempt');
my $r = $reqs->[0];
my $rpc = JSON::PP->new->decode($r->{body});
is_deeply([ $r->{method}, $rpc->{jsonrpc}, $rpc->{method}, $rpc->{params}{name}, $rpc->{id} ],
	[ 'POST', '2.0', 'tools/call', 'echo', "$e/call/1" ], 'a JSON-RPC 2.0 tools/call POST');
is($r->{headers}{accept}, 'application/json, text/event-stream',
	'Accept names JSON and SSE (the connection cannot override it)');
is($r->{headers}{'content-type'}, 'application/json', 'the body is JSON');
is($r->{headers}{authorization}, 'Bearer tok-secret-123', 'the bearer secret is sent');
is($r->{headers}{'x-token'}, 'hdr-secret-456', '{{secrets.NAME}} in a connection header is resolved');
is($r->{headers}{'x-tenant'}, 't1', 'static connection headers are sent');

# SSE reply: a notification event first, then the answer over several data lines
mcp_flow('mcp-sse', 'sse', 'echo');
$e = run('mcp-sse', '{"text": "streamed"}');
is(q1("SELECT output->'steps_output'->'call'->'result'->'structuredContent'->>'text' FROM allma.executions WHERE execution_id = '$e'"),
	'streamed', 'a text/event-stream reply is read');

# the stored request never holds a secret
mcp_flow('mcp-slow', 'slow', 'echo');
$e = q1("SELECT allma_start_flow('mcp-slow', '{\"text\": \"x\"}')");
poll_until_true($node, "SELECT status = 'INFLIGHT' FROM allma.execution_paths WHERE execution_id = '$e'")
  or die 'MCP request did not go in flight';
is(q1("SELECT request->'headers'->>'Authorization' FROM allma.execution_paths WHERE execution_id = '$e'"),
	'Bearer [redacted]', 'the stored request has the bearer token redacted');
q1("SELECT allma_wait('$e', '60 s')");
is(q1("SELECT status FROM allma.executions WHERE execution_id = '$e'"), 'COMPLETED', 'and the call completes');
is(q1("SELECT count(*) FROM allma.step_executions s, allma.executions x WHERE x.execution_id = s.execution_id "
	  . "AND concat(s.input, s.output, s.error, s.details, x.output, x.error) ~ 'secret-(123|456)'"),
	'0', 'no secret value reaches the history or the executions');

# a tool error (isError) is permanent, with the tool's text
mcp_flow('mcp-tool-error', 'mock', 'tool_error');
$e = run('mcp-tool-error', '{"text": "boom"}');
like(error_of($e), qr/^PermanentStepError: MCP tool "tool_error" returned an error: called tool_error with \{"n":2,"text":"boom"\}$/,
	'a result with isError is a PermanentStepError with the tool\'s text');
is(history($e), 'FAILED:PermanentStepError', 'not retried');

# a JSON-RPC error is permanent
mcp_flow('mcp-rpc-error', 'mock', 'rpc_error');
$e = run('mcp-rpc-error');
is(error_of($e), 'PermanentStepError: MCP tool "rpc_error" failed: JSON-RPC error -32603: mock tool failure',
	'a JSON-RPC error is a PermanentStepError');
is(q1("SELECT error->'errorDetails'->'rpcError'->>'code' FROM allma.executions WHERE execution_id = '$e'"),
	'-32603', 'with the JSON-RPC error in errorDetails');

# an unknown connection is a permanent configuration error naming the step
mcp_flow('mcp-unknown', 'nope', 'echo');
$e = run('mcp-unknown');
is(error_of($e), 'PermanentStepError: MCP_CALL step "call" uses MCP connection "nope", which does not exist',
	'an unknown mcpConnectionId fails the step');
is(history($e), 'FAILED:PermanentStepError', 'at once');

# HTTP 500: transient, retried, then the step fails
mcp_flow('mcp-500', 'broken', 'echo', ', "onError": {"retries": {"count": 2, "intervalSeconds": 1}}');
$e = run('mcp-500');
is(history($e), 'RETRYING:TransientStepError,RETRYING:TransientStepError,FAILED:TransientStepError',
	'HTTP 500 is a TransientStepError, retried');
is(q1("SELECT error->'errorDetails'->>'status' FROM allma.executions WHERE execution_id = '$e'"), '500',
	'the status is in errorDetails');

# a timeout: transient
mcp_flow('mcp-timeout', 'hung', 'echo',
	', "customConfig": {"timeoutMs": 200}, "onError": {"retries": {"count": 1, "intervalSeconds": 1}}');
$e = run('mcp-timeout');
is(q1("SELECT string_agg(status || ':' || (error->>'errorName') || ':' || (error->'errorDetails'->>'timedOut'), ',' ORDER BY seq) FROM allma.step_executions WHERE execution_id = '$e'"),
	'RETRYING:TransientStepError:true,FAILED:TransientStepError:true', 'a timeout is a TransientStepError');

# a dropped connection cannot be used any more
is(q1("SELECT allma_drop_mcp_connection('sse')"), 't', 'allma_drop_mcp_connection drops');
$e = run('mcp-sse', '{"text": "again"}');
like(error_of($e), qr/uses MCP connection "sse", which does not exist/, 'a dropped connection is unknown');

# a server that keeps sessions: the first call opens one (initialize, then
# the initialized notification) and calls again; the session is kept for the
# next calls; when the server forgets it (404), a new one is opened
q1(qq{SELECT allma_create_mcp_connection('stateful', '$base/mcp-stateful')});
mcp_flow('mcp-session', 'stateful', 'echo');
$e = run('mcp-session', '{"text": "first"}');
is(q1("SELECT status FROM allma.executions WHERE execution_id = '$e'"), 'COMPLETED',
	'a call to a server that needs a session completes');
is(q1("SELECT output->'steps_output'->'call'->'result'->'structuredContent'->>'text' FROM allma.executions WHERE execution_id = '$e'"),
	'first', 'with the tool result');
my @methods = map { JSON::PP->new->decode($_->{body})->{method} } @{ sent_all("$e/call/1") };
is(join(',', @methods), 'tools/call,initialize,notifications/initialized,tools/call',
	'after a 400 it opened a session and called again');
my $sid = q1("SELECT session_id FROM allma.mcp_connections WHERE id = 'stateful'");
like($sid, qr/^sess-/, 'the session is kept with the connection');
$e = run('mcp-session', '{"text": "second"}');
@methods = map { JSON::PP->new->decode($_->{body})->{method} } @{ sent_all("$e/call/1") };
is(join(',', @methods), 'tools/call', 'the next call uses the session at once');
is(sent("$e/call/1")->[0]{headers}{'mcp-session-id'}, $sid, 'sending its id');
HTTP::Tiny->new->post("$base/__reset");
$e = run('mcp-session', '{"text": "third"}');
is(q1("SELECT output->'steps_output'->'call'->'result'->'structuredContent'->>'text' FROM allma.executions WHERE execution_id = '$e'"),
	'third', 'a session the server forgot (404) is replaced');
@methods = map { JSON::PP->new->decode($_->{body})->{method} } @{ sent_all("$e/call/1") };
is(join(',', @methods), 'tools/call,initialize,notifications/initialized,tools/call', 'by opening a new one');
isnt(q1("SELECT session_id FROM allma.mcp_connections WHERE id = 'stateful'"), $sid, 'which is kept instead');

# ---- FILE_DOWNLOAD -------------------------------------------------------------

sub dl_flow
{
	my ($id, $url, $extra) = @_;
	$extra //= '';
	flow($id, qq{{"stepType": "FILE_DOWNLOAD", "sourceUrlTemplate": "$url" $extra,
           "defaultNextStepInstanceId": "after"}});
}

sub file_of
{
	my ($e, $cols) = @_;
	return q1("SELECT $cols FROM allma.files WHERE file_id = (SELECT (output->'steps_output'->'call'->'filePointer'->>'fileId')::uuid "
		  . "FROM allma.executions WHERE execution_id = '$e')");
}

# binary content, NUL bytes included, stored byte for byte
dl_flow('dl-ok', "$base/bytes/{{n}}",
	', "headersTemplate": {"X-Auth": "$.auth", "X-N": "$.n"}');
$e = run('dl-ok', '{"n": 70000, "auth": "Bearer abc"}');
is(q1("SELECT status FROM allma.executions WHERE execution_id = '$e'"), 'COMPLETED', 'FILE_DOWNLOAD completes');
is(q1("SELECT output->'steps_output'->'call'->>'contentLength' || ' ' || (output->'steps_output'->'call'->>'contentType') FROM allma.executions WHERE execution_id = '$e'"),
	'70000 application/octet-stream', 'the output has contentLength and contentType');
my $expected = md5_hex(join('', map { chr($_ % 256) } 0 .. 69999));
is(file_of($e, "md5(content)"), $expected, 'the stored bytes are identical (md5), NUL bytes included');
is(file_of($e, "get_byte(content, 256) || ' ' || octet_length(content) || ' ' || content_length || ' ' || step_id || ' ' || (execution_id = '$e')"),
	"0 70000 70000 call true", 'the row records its size, step and execution');
is(file_of($e, "url"), "$base/bytes/70000", 'and the rendered URL');
$r = sent("$e/call/1")->[0];
is_deeply([ $r->{method}, $r->{headers}{'x-auth'}, $r->{headers}{'x-n'} ], [ 'GET', 'Bearer abc', '70000' ],
	'a GET with the headers of headersTemplate (JSONPaths)');

# over allma.file_download_max_bytes (100kB)
dl_flow('dl-huge', "$base/bytes/200000");
$e = run('dl-huge');
like(error_of($e), qr/^PermanentStepError: file download of step "call" failed: .*102400/,
	'a body over allma.file_download_max_bytes fails the step cleanly');
is(q1("SELECT count(*) FROM allma.files WHERE execution_id = '$e'"), '0', 'and stores nothing');

# 404: permanent; 503: transient
dl_flow('dl-404', "$base/status/404");
$e = run('dl-404');
is(error_of($e) . ' ' . q1("SELECT error->'errorDetails'->>'status' FROM allma.executions WHERE execution_id = '$e'"),
	"PermanentStepError: file download failed: HTTP 404 from $base/status/404 404", 'a 404 is a PermanentStepError');
is(history($e), 'FAILED:PermanentStepError', 'not retried');
dl_flow('dl-503', "$base/status/503", ', "onError": {"retries": {"count": 1, "intervalSeconds": 1}}');
$e = run('dl-503');
is(history($e), 'RETRYING:TransientStepError,FAILED:TransientStepError', 'a 503 is a TransientStepError, retried');
is(q1("SELECT count(*) FROM allma.files WHERE execution_id = '$e'"), '0', 'a failed download stores nothing');

# row-level security: a file is visible to the execution's starter only;
# deleting the execution deletes its files
# (since 1.1 the roles need allma_user, and alice START on the flow)
q1("CREATE ROLE alice; CREATE ROLE bob; GRANT allma_user TO alice, bob;
    SELECT allma_grant_flow('dl-ok', 'alice', 'START')");
$e = q1("SET ROLE alice; SELECT allma_start_flow('dl-ok', '{\"n\": 10}')");
q1("SELECT allma_wait('$e', '60 s')");
is(q1("SET ROLE alice; SELECT count(*) FROM allma.files WHERE execution_id = '$e'"), '1', 'the starter sees the file');
is(q1("SET ROLE bob; SELECT count(*) FROM allma.files WHERE execution_id = '$e'"), '0', 'another role does not');
q1("DELETE FROM allma.executions WHERE execution_id = '$e'");
is(q1("SELECT count(*) FROM allma.files WHERE execution_id = '$e'"), '0', 'files are deleted with their execution');

$node->stop;
done_testing();
