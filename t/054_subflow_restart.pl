# Sync sub-flows survive an immediate shutdown: parents parked on children
# that are held (advisory lock) when the server stops with "pg_ctl stop -m
# immediate" finish after the restart, each with exactly the one child its
# committed step started.  And step timing is true for a step that waits
# for an HTTP response (the mock answers after 1.5 s): its history row and
# its _internal.currentStepStartTime count from when the request was
# committed for sending.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use lib 't';
use AllmaTest;

my $base = start_mock();
my $node = allma_node('subflows', "allma.http_allowlist = '127.0.0.1'\nallma.timer_scale = 0.01\n");
my $nparents = 20;
my $key = 5401;

$node->safe_psql('postgres', qq{
CREATE FUNCTION hold(input jsonb) RETURNS jsonb LANGUAGE plpgsql AS \$\$
BEGIN
	PERFORM pg_advisory_xact_lock_shared($key);
	RETURN jsonb_build_object('n', input->'n');
END \$\$;
SELECT allma_bind_module('test/hold', 'hold(jsonb)');
SELECT allma_create_flow('{"id": "held-child", "startStepInstanceId": "hold",
  "steps": {"hold": {"stepType": "CUSTOM_LOGIC", "moduleIdentifier": "test/hold",
                     "inputMappings": {"n": "\$.n"}, "outputMappings": {"\$.doubled": "\$.n"}}}}');
SELECT allma_create_flow('{"id": "sync-parent", "startStepInstanceId": "call",
  "steps": {"call": {"stepType": "START_FLOW_EXECUTION", "flowDefinitionId": "held-child",
                     "customConfig": {"sync": true}, "inputMappings": {"initialContextData.n": "\$.n"},
                     "outputMappings": {"\$.fromChild": "\$.doubled"}, "defaultNextStepInstanceId": "after"},
            "after": {"stepType": "NO_OP"}}}');
});

my $holder = hold_advisory_lock($node, $key);
$node->safe_psql('postgres',
	"SELECT allma_start_flow('sync-parent', jsonb_build_object('n', g)) FROM generate_series(1, $nparents) g");
# every parent has committed its step (parked on its child), and a worker
# is stuck inside a child (the one that claimed them)
$node->poll_query_until('postgres', qq{
	SELECT count(*) = $nparents FROM allma.execution_paths p JOIN allma.executions e USING (execution_id)
	 WHERE e.flow_id = 'sync-parent' AND p.status = 'WAITING'})
  or die 'parents did not park';
wait_for_lock_waiters($node, $key, 1);
is($node->safe_psql('postgres', "SELECT count(*) FROM allma.executions WHERE flow_id = 'held-child'"),
	$nparents, 'each parked parent started its child');

$node->stop('immediate');
release_advisory_lock($holder, $key);
$node->start;

poll_until_true($node, qq{
	SELECT count(*) = $nparents AND bool_and(status = 'COMPLETED')
	  FROM allma.executions WHERE flow_id = 'sync-parent'})
  or die 'parents did not complete after the restart';
is($node->safe_psql('postgres', qq{
	SELECT count(*) FROM allma.executions p
	 WHERE p.flow_id = 'sync-parent'
	   AND (p.output->'fromChild' IS DISTINCT FROM p.input->'n'
	        OR (SELECT count(*) FROM allma.executions c WHERE c.parent_execution_id = p.execution_id) <> 1
	        OR (SELECT count(*) FROM allma.step_executions s
	             WHERE s.execution_id = p.execution_id AND s.step_instance_id = 'call') <> 1)}),
	'0', "every parent got its child's result, from exactly one child, with one history row of its step");
is($node->safe_psql('postgres', qq{
	SELECT count(*) FROM allma.executions WHERE flow_id = 'held-child' AND status <> 'COMPLETED'}),
	'0', 'every child completed');
is($node->safe_psql('postgres', 'SELECT count(*) FROM allma.execution_paths'), '0',
	'nothing is left parked');

# an API_CALL that waits 1.5 s for its response
$node->safe_psql('postgres', qq{
SELECT allma_create_flow('{"id": "slow-call", "startStepInstanceId": "call",
  "steps": {"call": {"stepType": "API_CALL",
                     "apiUrlTemplate": {"template": "$base/echo?latency_ms=1500"},
                     "literals": {"at": "{{_internal.currentStepStartTime}}"},
                     "apiHttpMethod": "POST", "outputMappings": {"\$.sentAt": "\$.data.json.at"}}}}')});
my $e = $node->safe_psql('postgres', "SELECT allma_start_flow('slow-call', '{}')");
is($node->safe_psql('postgres', "SELECT allma_wait('$e', '60 s')"), 'COMPLETED', 'the slow call completed');
is($node->safe_psql('postgres', qq{
	SELECT duration_ms >= 1500 FROM allma.step_executions WHERE execution_id = '$e'}),
	't', 'the history row of an HTTP step spans the wait for its response');
is($node->safe_psql('postgres', qq{
	SELECT (x.output->>'sentAt')::timestamptz = date_trunc('milliseconds', s.started_at)
	  FROM allma.executions x JOIN allma.step_executions s USING (execution_id)
	 WHERE x.execution_id = '$e'}),
	't', '_internal.currentStepStartTime is the step\'s started_at');
is($node->safe_psql('postgres', "SELECT step_count FROM allma.executions WHERE execution_id = '$e'"),
	'1', 'an attempt that waited for its response counts once');

$node->stop;
done_testing();
