# Engine faults: a response completes only the request it answers
# (docs/engine-faults.md).  The in-flight tag is (execution, path, attempt,
# seq): two HTTP steps of one path in a row both have attempt 1 but not the
# same seq, so a late answer to the first can never complete the second.
#
# The old bug, reproduced: 60 executions of two API calls each ("first",
# then "second"), one worker, allma.http_max_per_host = 1.  A blocker
# request that never answers holds the only connection, so the 60 "first"
# requests (R1) wait in the queue.  Their paths' leases are made to expire
# (as a lease did when a request waited in the queue longer than it), the
# worker's lease sweep releases them and runs "first" again: a second
# request (R1') per execution, queued behind the R1s.  Then the blocker is
# cancelled and the queue drains in order: each R1 is answered first and
# completes "first" (R1 and R1' are the same call: same attempt, same seq),
# the path goes on to "second" (attempt 1 again, but the next seq), and
# then the late R1' arrives.  With a tag of (execution, path, attempt)
# only, R1' completed "second" with the body of "first"; now its seq no
# longer matches and it is dropped, and "second" gets its own answer.
# Every output must be the answer to its own call of its own execution,
# and the mock must have answered both R1 and R1' (the late answers really
# arrived).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use lib 't';
use AllmaTest;

my $base = start_mock();
my $node = allma_node('late', "allma.http_allowlist = '127.0.0.1'\nallma.timer_scale = 0.01\n"
	  . "allma.http_max_per_host = 1\nallma.max_workers = 1\nallma.http_timeout = '10min'\n");

sub q1 { my ($sql) = @_; return $node->safe_psql('postgres', $sql); }

q1(qq{SELECT allma_create_flow('{"id": "two", "startStepInstanceId": "first", "steps": {
  "first": {"stepType": "API_CALL",
            "apiUrlTemplate": {"template": "$base/echo/first/{{flow_variables.flowExecutionId}}"},
            "apiHttpMethod": "GET", "defaultNextStepInstanceId": "second"},
  "second": {"stepType": "API_CALL",
             "apiUrlTemplate": {"template": "$base/echo/second/{{flow_variables.flowExecutionId}}"},
             "apiHttpMethod": "GET"}}}')});
q1(qq{SELECT allma_create_flow('{"id": "blocker", "startStepInstanceId": "hold", "steps": {
  "hold": {"stepType": "API_CALL", "apiUrlTemplate": {"template": "$base/echo/block?hang=1"},
           "apiHttpMethod": "GET"}}}')});

# the blocker holds the only connection to the mock
my $blocker = q1("SELECT allma_start_flow('blocker')");
ok(poll_effect(sub { scalar(@{ mock_json($base, '/__log?path=/echo/block') }) == 1 }),
	'the blocker request is on the wire');

# the 60 "first" requests wait behind it
q1("CREATE TABLE started AS SELECT allma_start_flow('two') AS e FROM generate_series(1, 60)");
ok(poll_until_true($node,
	"SELECT count(*) = 60 FROM allma.execution_paths WHERE execution_id IN (SELECT e FROM started) "
	  . "AND status = 'INFLIGHT' AND step_instance_id = 'first'"),
	'the 60 "first" requests are in flight (queued)');
is(scalar(@{ mock_json($base, '/__log?path=/echo/first/') }), 0, 'none of them reached the mock');

# their leases expire: the lease sweep runs "first" again (R1'), behind the R1s
q1("UPDATE allma.execution_paths SET lease_until = clock_timestamp() - interval '1 s' "
	  . "WHERE execution_id IN (SELECT e FROM started)");
ok(poll_until_true($node,
	"SELECT count(*) = 60 FROM allma.execution_paths "
	  . "WHERE execution_id IN (SELECT e FROM started) AND status = 'INFLIGHT' "
	  . "AND step_instance_id = 'first' AND lease_until > clock_timestamp()"),
	'the 60 "first" steps were run again (a second request each, with a new lease)');
is(scalar(@{ mock_json($base, '/__log?path=/echo/first/') }), 0, 'still none reached the mock');

# the queue drains: R1 (late), then R1', then "second"
like(q1("SELECT allma_cancel_execution('$blocker', 'unblock')"), qr/cancelled/, 'the blocker is cancelled');
ok(poll_until_true($node,
	"SELECT count(*) = 0 FROM allma.executions WHERE execution_id IN (SELECT e FROM started) AND status = 'RUNNING'"),
	'the 60 executions end');
is(q1("SELECT string_agg(DISTINCT status, ',') FROM allma.executions WHERE execution_id IN (SELECT e FROM started)"),
	'COMPLETED', 'all complete');
my $firsts = mock_json($base, '/__log?path=/echo/first/');
my %sent;
$sent{ $_->{path} }++ for @$firsts;
is(scalar(grep { $_ == 2 } values %sent) . '/' . scalar(keys %sent), '60/60',
	'the mock answered both requests of "first" of every execution (the late one too)');
is(q1(q{SELECT count(*) FROM allma.executions x JOIN started s ON s.e = x.execution_id
  WHERE x.output->'steps_output'->'first'->'data'->>'path' = '/echo/first/' || x.execution_id
    AND x.output->'steps_output'->'second'->'data'->>'path' = '/echo/second/' || x.execution_id}),
	'60', 'every output is the answer to its own call of its own execution');
is(q1(q{SELECT count(*) FROM allma.step_executions h JOIN started s ON s.e = h.execution_id
  WHERE h.status = 'COMPLETED'}), '120', 'each step completed once');

$node->stop;
done_testing();
