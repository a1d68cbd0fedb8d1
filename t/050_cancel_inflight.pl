# allma_cancel_execution while a step's request is in flight: the worker
# that sent it drops it (the mock sees its connection closed, long before
# any timeout), and a response that would come later changes nothing: no
# history row for the step, no next step, no path left.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use lib 't';
use AllmaTest;

my $base = start_mock();
my $node = allma_node('cancel', "allma.http_allowlist = '127.0.0.1'\nallma.timer_scale = 0.01\n");

sub q1 { my ($sql) = @_; return $node->safe_psql('postgres', $sql); }

sub flow
{
	my ($id, $query) = @_;
	q1(qq{SELECT allma_create_flow('{"id": "$id", "startStepInstanceId": "call", "steps": {
  "call": {"stepType": "API_CALL", "apiUrlTemplate": {"template": "$base/echo/$id?$query"},
           "apiHttpMethod": "GET", "customConfig": {"timeoutMs": 600000},
           "defaultNextStepInstanceId": "after"},
  "after": {"stepType": "NO_OP"}}}')});
}

# connections open at the mock, besides the one asking
sub open_connections { return mock_json($base, '/__stats')->{connections_open} - 1; }

# a request the mock never answers: only the client can close its connection
flow('hang', 'hang=1');
my $e = q1("SELECT allma_start_flow('hang')");
ok(poll_effect(sub { scalar(@{ mock_json($base, '/__log?path=/echo/hang') }) == 1 }, 300),
	'the request is in flight (the mock logged it)');
ok(poll_effect(sub { open_connections() == 1 }, 300), 'its connection is open');
my $offset = -s $node->logfile;
like(q1("SELECT allma_cancel_execution('$e', 'stop')"), qr/^execution \S+ cancelled$/,
	'allma_cancel_execution says it cancelled');
is(q1("SELECT status FROM allma.executions WHERE execution_id = '$e'"), 'CANCELLED',
	'the execution is CANCELLED at once');
# the step's timeout is 10 min: only the worker dropping it closes the connection
ok(poll_effect(sub { open_connections() == 0 }, 300),
	'the worker dropped the request: the mock sees its connection closed');
ok(count_in_log($node, qr/allma dropped 1 request of cancelled or timed-out executions/, $offset) >= 1,
	'the worker says so in the log');
is(q1("SELECT count(*) FROM allma.execution_paths WHERE execution_id = '$e'"), '0', 'no path is left');
is(q1("SELECT count(*) FROM allma.step_executions WHERE execution_id = '$e'"), '0',
	'the step has no history row');

# a request answered 1.5 s later: the answer, if it comes, is discarded
flow('late', 'latency_ms=1500');
$e = q1("SELECT allma_start_flow('late')");
ok(poll_effect(sub { scalar(@{ mock_json($base, '/__log?path=/echo/late') }) == 1 }, 300),
	'the late request is in flight');
like(q1("SELECT allma_cancel_execution('$e')"), qr/cancelled$/, 'cancelled while in flight');
# an execution started after the cancel, answered as late, completes: by
# then the cancelled one's answer would have come too
my $later = q1("SELECT allma_start_flow('late')");
is(q1("SELECT allma_wait('$later', '120 s')"), 'COMPLETED', 'a later execution of the same flow completes');
is(q1("SELECT status FROM allma.executions WHERE execution_id = '$e'"), 'CANCELLED', 'still CANCELLED');
is(q1("SELECT count(*) FROM allma.step_executions WHERE execution_id = '$e'"), '0',
	'the late response recorded nothing');
is(q1("SELECT count(*) FROM allma.execution_paths WHERE execution_id = '$e'"), '0', 'no path is left');
is(q1("SELECT output IS NULL FROM allma.executions WHERE execution_id = '$e'"), 't', 'no output was written');

done_testing();
