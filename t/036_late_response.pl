# Engine faults: a response completes only the request it answers
# (docs/engine-faults.md).  The in-flight tag is (execution, path, attempt,
# seq): two HTTP steps of one path in a row both have attempt 1 but not the
# same seq, so a late answer to the first can never complete the second.
# A queued request's deadline counts from its submission, so it cannot
# outlive its path's lease (commit + timeout + 60 s).
#
# 60 executions of two API calls each, under allma.http_max_per_host = 1
# (every request queued behind the others), with a little latency: every
# output must be the answer to its own call of its own execution.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use lib 't';
use AllmaTest;

my $base = start_mock();
my $node = allma_node('late', "allma.http_allowlist = '127.0.0.1'\nallma.timer_scale = 0.01\n"
	  . "allma.http_max_per_host = 1\n");

sub q1 { my ($sql) = @_; return $node->safe_psql('postgres', $sql); }

q1(qq{SELECT allma_create_flow('{"id": "two", "startStepInstanceId": "first", "steps": {
  "first": {"stepType": "API_CALL",
            "apiUrlTemplate": {"template": "$base/echo/first/{{flow_variables.flowExecutionId}}?latency_ms=5"},
            "apiHttpMethod": "GET", "defaultNextStepInstanceId": "second"},
  "second": {"stepType": "API_CALL",
             "apiUrlTemplate": {"template": "$base/echo/second/{{flow_variables.flowExecutionId}}?latency_ms=5"},
             "apiHttpMethod": "GET"}}}')});

q1("CREATE TABLE started AS SELECT allma_start_flow('two') AS e FROM generate_series(1, 60)");
ok(poll_until_true($node,
	"SELECT count(*) = 0 FROM allma.executions WHERE execution_id IN (SELECT e FROM started) AND status = 'RUNNING'"),
	'the 60 executions end');
is(q1("SELECT string_agg(DISTINCT status, ',') FROM allma.executions WHERE execution_id IN (SELECT e FROM started)"),
	'COMPLETED', 'all complete');
is(q1(q{SELECT count(*) FROM allma.executions x JOIN started s ON s.e = x.execution_id
  WHERE x.output->'steps_output'->'first'->'data'->>'path' = '/echo/first/' || x.execution_id
    AND x.output->'steps_output'->'second'->'data'->>'path' = '/echo/second/' || x.execution_id}),
	'60', 'every output is the answer to its own call of its own execution');
is(q1(q{SELECT count(*) FROM allma.step_executions h JOIN started s ON s.e = h.execution_id
  WHERE h.status = 'COMPLETED'}), '120', 'each step completed once');

$node->stop;
done_testing();
