# Secrets, injection and the superuser guard against the mock server:
# - a role without a grant cannot send a secret anywhere (a static header,
#   an LLM apiKeySecret with a baseUrl of its choosing, the SMTP login);
# - data cannot smuggle secret references into requests (an input value, a
#   mapped context value, an MCP session id the server sends);
# - allowed hosts;
# - SQL steps and SQL-bound functions of superuser-started executions run
#   only with allma.allow_superuser_sql_steps on;
# - an invalid secret name does not put the value into the server log.
# Each refusal happens before anything is sent: the mock never sees the
# canaries, and neither does the server log.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use lib 't';
use AllmaTest;

my ($base, $smtp_port) = start_mock(smtp => 1);
my $node = allma_node('security', qq{
allma.http_allowlist = '127.0.0.1'
allma.timer_scale = 0.01
allma.smtp_url = 'smtp://127.0.0.1:$smtp_port'
allma.smtp_username = 'mailer'
allma.allow_superuser_sql_steps = off
});

my $tag = int(rand(1e9));
my $canary_x = "sk-canary-x-$tag";		# granted to nobody
my $canary_ok = "sk-canary-ok-$tag";	# granted to alice
my $canary_mail = "smtp-canary-$tag";	# the SMTP password, granted to nobody

sub q1 { return $node->safe_psql('postgres', $_[0]); }

sub mock_get
{
	my ($path) = @_;
	return `python3 -c "import urllib.request; print(urllib.request.urlopen('$base$path').read().decode())"`;
}

# start(role, flow, input): starts as role (undef: the superuser), waits, returns the id
sub start
{
	my ($role, $flow, $input) = @_;
	$input //= '{}';
	my $set = defined $role ? "SET ROLE $role;" : '';
	my $e = q1("$set SELECT allma_start_flow('$flow', '$input')");
	q1("SELECT allma_wait('$e', '60 s')");
	return $e;
}

sub outcome
{
	my ($e) = @_;
	return q1("SELECT status || ' ' || coalesce(error->>'errorName', '') || ': ' || coalesce(error->>'errorMessage', '')
			   FROM allma.executions WHERE execution_id = '$e'");
}

# (statement logging off while secrets are set: the statements hold them)
q1(qq{
SET log_statement = 'none';
CREATE ROLE alice;
CREATE ROLE mallory;
GRANT allma_user TO alice, mallory;
SELECT allma_set_secret('CANARY_X', '$canary_x');
SELECT allma_set_secret('CANARY_OK', '$canary_ok');
SELECT allma_set_secret('SMTP_PASSWORD', '$canary_mail');
SELECT allma_grant_secret('CANARY_OK', 'alice');
});

# ----------------------------------------------------------------------------
# Exfiltration by a role without a grant
# ----------------------------------------------------------------------------
q1(qq{
SET ROLE mallory;
SELECT allma_create_flow('{"id": "steal-header", "startStepInstanceId": "call", "steps": {
  "call": {"stepType": "API_CALL", "apiUrlTemplate": {"template": "$base/echo/steal"}, "apiHttpMethod": "GET",
           "apiStaticHeaders": {"Authorization": "Bearer {{secrets.CANARY_X}}"}}}}');
SELECT allma_create_flow('{"id": "steal-llm", "startStepInstanceId": "ask", "steps": {
  "ask": {"stepType": "LLM_INVOCATION", "llmProvider": "OPENAI", "modelId": "mock-echo",
          "customConfig": {"prompt": "hello", "apiKeySecret": "CANARY_X", "baseUrl": "$base/steal/v1"}}}}');
SELECT allma_create_flow('{"id": "steal-mail", "startStepInstanceId": "mail", "steps": {
  "mail": {"stepType": "EMAIL", "from": "m\@example.com", "to": "m\@example.com", "subject": "s", "body": "b"}}}');
SELECT allma_grant_flow('steal-header', 'alice', 'START');
});
my $e = start('mallory', 'steal-header');
like(outcome($e), qr/^FAILED PermanentStepError: secret "CANARY_X" may not be used by a step of an execution started by role "mallory"/,
	'a static header with a secret the starter holds no grant on fails the step, naming the secret');
$e = start('mallory', 'steal-llm');
like(outcome($e), qr/^FAILED PermanentStepError: secret "CANARY_X" may not be used/,
	'so does an LLM apiKeySecret with a baseUrl of the author\'s choosing');
$e = start('mallory', 'steal-mail');
like(outcome($e), qr/^FAILED PermanentStepError: secret "SMTP_PASSWORD" may not be used/,
	'an EMAIL step needs a grant on the SMTP password secret too');
# a superuser (or alice) starting mallory's flow does not lend it the secret
$e = start(undef, 'steal-header');
like(outcome($e), qr/^FAILED PermanentStepError: secret "CANARY_X" may not be used by a flow version created by role "mallory"/,
	'started by a superuser, the flow of a role without a grant still cannot use the secret');

# alice, granted, uses her secret; allowed hosts narrow where it goes
q1(qq{
SET ROLE alice;
SELECT allma_create_flow('{"id": "use-ok", "startStepInstanceId": "call", "steps": {
  "call": {"stepType": "API_CALL", "apiUrlTemplate": {"template": "$base/echo/ok"}, "apiHttpMethod": "GET",
           "apiStaticHeaders": {"Authorization": "Bearer {{secrets.CANARY_OK}}"}}}}');
});
$e = start('alice', 'use-ok');
like(outcome($e), qr/^COMPLETED/, 'a granted secret is used');
q1("SELECT allma_set_secret_allowed_hosts('CANARY_OK', ARRAY['api.example.com'])");
$e = start('alice', 'use-ok');
like(outcome($e), qr/^FAILED PermanentStepError: secret "CANARY_OK" may not be sent to host "127.0.0.1"/,
	'a secret is not sent to a host outside its allowed hosts');
q1("SELECT allma_set_secret_allowed_hosts('CANARY_OK', ARRAY['127.0.0.1'])");
$e = start('alice', 'use-ok');
like(outcome($e), qr/^COMPLETED/, 'and is sent to an allowed one');

my $log = mock_get('/__log');
my $ok_log = mock_get('/__log?path=/echo/ok');
is(scalar(() = $ok_log =~ /"seq": /g), 2, 'the granted secret\'s steps reached the mock twice');
like($ok_log, qr/Bearer \Q$canary_ok\E/, 'with the secret');
unlike($log, qr{/steal}, 'the mock never got a request of the refused steps');
like(mock_get('/__mail'), qr/^\[\]\s*$/, 'and no mail');

# ----------------------------------------------------------------------------
# Injection: data imitating a secret reference, with grants that would allow
# the secret (the superuser starts the flows)
# ----------------------------------------------------------------------------
q1(qq{
SELECT allma_create_flow('{"id": "inject-input", "startStepInstanceId": "call", "steps": {
  "call": {"stepType": "API_CALL", "apiUrlTemplate": {"template": "$base/echo/inject-input"}, "apiHttpMethod": "GET",
           "apiStaticHeaders": {"X-Trace": "trace {{trace}}"}}}}');
SELECT allma_create_flow('{"id": "inject-context", "startStepInstanceId": "map", "steps": {
  "map": {"stepType": "NO_OP", "inputMappings": {"trace": "\$.trace"}, "outputMappings": {"\$.saved.trace": "\$.trace"},
          "defaultNextStepInstanceId": "call"},
  "call": {"stepType": "API_CALL", "apiUrlTemplate": {"template": "$base/echo/inject-context"}, "apiHttpMethod": "GET",
           "apiHeadersTemplate": {"X-Trace": "\$.saved.trace"}}}}');
SELECT allma_create_mcp_connection('hostile', '$base/mcp-stateful?session_id=%01secret%3ACANARY_X%01');
SELECT allma_create_flow('{"id": "inject-session", "startStepInstanceId": "call", "steps": {
  "call": {"stepType": "MCP_CALL", "mcpConnectionId": "hostile", "toolName": "echo"}}}');
});
my $mark = '{"trace": "\\u0001secret:CANARY_X\\u0001"}';
$e = start(undef, 'inject-input', $mark);
like(outcome($e), qr/^FAILED PermanentStepError: header "X-Trace" contains the bytes of a secret reference/,
	'an input value imitating a secret reference fails the step');
$e = start(undef, 'inject-context', $mark);
like(outcome($e), qr/^FAILED PermanentStepError: header "X-Trace" contains the bytes of a secret reference/,
	'so does a mapped context value');
$e = start(undef, 'inject-session');
like(outcome($e), qr/^FAILED PermanentStepError: header "Mcp-Session-Id" contains the bytes of a secret reference/,
	'so does an MCP session id the server sent');
$log = mock_get('/__log');
like($log, qr/initialize/, 'the MCP server was asked to open a session');
unlike($log, qr/inject-(input|context)/, 'the injected requests were not sent');
unlike($log, qr/\Q$canary_x\E/, 'the mock never saw the canary');

# ----------------------------------------------------------------------------
# The superuser guard of SQL steps and SQL-bound functions
# ----------------------------------------------------------------------------
q1(q{
CREATE FUNCTION whoami(input jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT jsonb_build_object('who', current_user) $$;
SELECT allma_bind_module('test/whoami', 'whoami(jsonb)');
SELECT allma_grant_module_binding('test/whoami', 'allma_user');
SET ROLE mallory;
SELECT allma_create_flow('{"id": "escalate", "startStepInstanceId": "q", "steps": {
  "q": {"stepType": "DATA_SAVE", "moduleIdentifier": "system/sql-execute",
        "customConfig": {"sql": "ALTER ROLE mallory SUPERUSER"}}}}');
SELECT allma_create_flow('{"id": "bound", "startStepInstanceId": "b", "steps": {
  "b": {"stepType": "CUSTOM_LOGIC", "moduleIdentifier": "test/whoami"}}}');
});
$e = start(undef, 'escalate');
like(outcome($e), qr/^FAILED PermanentStepError: step "q" would run SQL as superuser/,
	'a SQL step of a superuser-started execution fails');
like(q1("SELECT error->'errorDetails'->>'hint' FROM allma.executions WHERE execution_id = '$e'"),
	qr/allma\.allow_superuser_sql_steps/, 'the error names allma.allow_superuser_sql_steps');
is(q1("SELECT rolsuper FROM pg_roles WHERE rolname = 'mallory'"), 'f', 'mallory did not become superuser');
$e = start(undef, 'bound');
like(outcome($e), qr/^FAILED PermanentStepError: step "b" would run SQL as superuser/,
	'so does a SQL-bound function');
$e = start('mallory', 'bound');
is(q1("SELECT output->'steps_output'->'b'->>'who' FROM allma.executions WHERE execution_id = '$e'"),
	'mallory', 'started by an ordinary role it runs, as that role');
$node->append_conf('postgresql.conf', "allma.allow_superuser_sql_steps = on\n");
$node->restart;
wait_for_workers($node, 2);
$e = start(undef, 'bound');
like(outcome($e), qr/^COMPLETED/, 'with allma.allow_superuser_sql_steps on it runs');

# ----------------------------------------------------------------------------
# An invalid secret name: the error does not log the statement (and value)
# ----------------------------------------------------------------------------
my $canary_log = "sk-canary-log-$tag";
# (statement logging off: only log_min_error_statement, at its default, counts)
my ($ret, $out, $err) = $node->psql('postgres',
	"SET log_statement = 'none'; SELECT allma_set_secret('bad name!', '$canary_log')");
like($err, qr/invalid secret name "bad name!"/, 'an invalid secret name is refused');

$node->stop;
my $server_log = slurp_file($node->logfile);
like($server_log, qr/invalid secret name "bad name!"/, 'the error is in the server log');
unlike($server_log, qr/\Q$canary_log\E/, 'the value is not');
unlike($server_log, qr/\Q$canary_x\E|\Q$canary_ok\E|\Q$canary_mail\E/, 'nor is any other secret');
ok(stop_mock(), 'the mock server stopped cleanly');
done_testing();
