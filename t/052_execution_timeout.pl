# allma.execution_timeout: the server default timeout of executions whose
# flow sets no timeoutSeconds, fixed when an execution starts (a reload
# changes it for executions started afterwards); a flow's own timeoutSeconds
# wins.  A timed-out execution with a request in flight: the request is
# dropped like a cancelled one's.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use lib 't';
use AllmaTest;

my $base = start_mock();
my $node = allma_node('timeouts', "allma.http_allowlist = '127.0.0.1'\n");
sub q1 { my ($sql) = @_; return $node->safe_psql('postgres', $sql); }

q1(q{SELECT allma_create_flow('{"id": "slow", "startStepInstanceId": "a", "steps": {
  "a": {"stepType": "NO_OP", "delay": {"milliseconds": 3600000, "position": "before"}}}}')});
q1(q{SELECT allma_create_flow('{"id": "own", "startStepInstanceId": "a", "timeoutSeconds": 3600, "steps": {
  "a": {"stepType": "NO_OP", "delay": {"milliseconds": 1000, "position": "before"}}}}')});
q1(qq{SELECT allma_create_flow('{"id": "hung", "startStepInstanceId": "call", "steps": {
  "call": {"stepType": "API_CALL", "apiUrlTemplate": {"template": "$base/echo/hung?hang=1"},
           "apiHttpMethod": "GET", "customConfig": {"timeoutMs": 600000}}}}')});

my $before = q1(q{SELECT allma_start_flow('slow')});
is(q1(qq{SELECT deadline IS NULL FROM allma.executions WHERE execution_id = '$before'}), 't',
	'no timeout by default (allma.execution_timeout = 0)');

q1(q{ALTER SYSTEM SET allma.execution_timeout = '2s'; SELECT pg_reload_conf();});
ok($node->poll_query_until('postgres', q{SELECT current_setting('allma.execution_timeout') = '2s'}),
	'the new default is in effect for new sessions');
my $e = q1(q{SELECT allma_start_flow('slow')});
my $own = q1(q{SELECT allma_start_flow('own')});
my $h = q1(q{SELECT allma_start_flow('hung')});
is(q1(qq{SELECT allma_wait('$e', '60 s')}), 'TIMED_OUT', 'an execution started after the reload times out');
is(q1(qq{SELECT error->>'errorName' || ': ' || (error->>'errorMessage') FROM allma.executions WHERE execution_id = '$e'}),
	'ExecutionTimeoutError: execution ran longer than its timeout of 2 s', 'with ExecutionTimeoutError');
is(q1(qq{SELECT allma_wait('$own', '60 s')}), 'COMPLETED', "a flow's own timeoutSeconds wins");
ok(poll_effect(sub { scalar(@{ mock_json($base, '/__log?path=/echo/hung') }) == 1 }, 300),
	'its request reached the mock');
is(q1(qq{SELECT allma_wait('$h', '60 s')}), 'TIMED_OUT', 'an execution with a request in flight times out');
ok(poll_effect(sub { mock_json($base, '/__stats')->{connections_open} - 1 == 0 }, 300),
	'and its request is dropped (the mock sees the connection closed)');
is(q1(qq{SELECT count(*) FROM allma.step_executions WHERE execution_id = '$h'}), '0', 'the request left no history');
is(q1(qq{SELECT status FROM allma.executions WHERE execution_id = '$before'}), 'RUNNING',
	'an execution started before the reload keeps its (absent) deadline');
q1(qq{SELECT allma_cancel_execution('$before')});

q1(q{ALTER SYSTEM RESET allma.execution_timeout; SELECT pg_reload_conf();});
done_testing();
