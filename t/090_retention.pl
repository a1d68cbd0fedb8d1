# Retention: worker 0 purges executions that ended longer ago than
# allma.retention, in batches of allma.purge_batch_size executions per
# transaction, while other executions run and finish; afterwards nothing
# keyed by a purged execution is left (history, paths, forks, files), and
# running executions and recent ones are untouched.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use lib 't';
use AllmaTest;

my $node = allma_node('retention', qq{
allma.retention = '1h'
allma.purge_batch_size = 40
allma.purge_interval = '100ms'
allma.timer_scale = 0.01
});

sub q1 { return $node->safe_psql('postgres', $_[0]); }

# short: four steps with history; forky: a fork of three branches (forks and
# branch paths while it runs); long: waits 864 s (a day at timer_scale 0.01: RUNNING throughout)
q1(q{SELECT allma_create_flow('{"id": "short", "startStepInstanceId": "a", "steps": {
  "a": {"stepType": "NO_OP", "defaultNextStepInstanceId": "b"},
  "b": {"stepType": "NO_OP", "defaultNextStepInstanceId": "c"},
  "c": {"stepType": "NO_OP", "defaultNextStepInstanceId": "d"},
  "d": {"stepType": "NO_OP"}}}')});
q1(q{SELECT allma_create_flow('{"id": "forky", "startStepInstanceId": "f", "steps": {
  "f": {"stepType": "PARALLEL_FORK_MANAGER", "itemsPath": "$.items",
        "parallelBranches": [{"branchId": "b", "stepInstanceId": "x"}],
        "defaultNextStepInstanceId": "z"},
  "x": {"stepType": "NO_OP"},
  "z": {"stepType": "NO_OP"}}}')});
q1(q{SELECT allma_create_flow('{"id": "long", "startStepInstanceId": "w", "steps": {
  "w": {"stepType": "NO_OP", "delay": {"milliseconds": 86400000, "position": "after"},
        "defaultNextStepInstanceId": "e"},
  "e": {"stepType": "NO_OP"}}}')});

# every statement that deletes executions records, per transaction, how many
q1(q{
CREATE TABLE purge_log (xid xid8, deleted bigint);
CREATE FUNCTION log_purge() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO purge_log SELECT pg_current_xact_id(), count(*) FROM gone;
	RETURN NULL;
END $$;
CREATE TRIGGER log_purge AFTER DELETE ON allma.executions
	REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION log_purge();
});

q1(q{SELECT allma_start_flow('long') FROM generate_series(1, 50)});
q1(q{SELECT allma_start_flow('short') FROM generate_series(1, 400)});
q1(q{SELECT allma_start_flow('forky', '{"items": [1, 2, 3]}') FROM generate_series(1, 100)});
$node->poll_query_until('postgres',
	"SELECT count(*) = 500 FROM allma.executions WHERE flow_id IN ('short', 'forky') AND status = 'COMPLETED'")
  or die 'executions did not complete';
is(q1("SELECT count(*) FROM allma.step_executions s JOIN allma.executions e USING (execution_id) WHERE e.flow_id = 'short'"),
	'1600', 'history of the short executions is there');

# they ended "two hours ago": expired.  While worker 0 purges them, more
# executions start and finish (recent: they stay).
q1(q{UPDATE allma.executions SET ended_at = ended_at - interval '2 hours', started_at = started_at - interval '2 hours'
	  WHERE status = 'COMPLETED'});
q1(q{SELECT allma_start_flow('short') FROM generate_series(1, 200)});
q1(q{SELECT allma_start_flow('forky', '{"items": [1, 2, 3]}') FROM generate_series(1, 50)});
$node->poll_query_until('postgres',
	"SELECT count(*) = 0 FROM allma.executions WHERE ended_at < now() - interval '1 hour'")
  or die 'expired executions were not purged';
$node->poll_query_until('postgres',
	"SELECT count(*) = 250 FROM allma.executions WHERE flow_id IN ('short', 'forky') AND status = 'COMPLETED'")
  or die 'the new executions did not complete';

is(q1("SELECT sum(deleted) FROM purge_log"), '500', 'the 500 expired executions were purged');
is(q1("SELECT max(n) FROM (SELECT sum(deleted) AS n FROM purge_log GROUP BY xid) t"), '40',
	'no transaction deleted more than a batch (40)');
cmp_ok(q1("SELECT count(DISTINCT xid) FROM purge_log"), '>=', 13, 'in at least 13 transactions');

is(q1(q{SELECT (SELECT count(*) FROM allma.step_executions s WHERE NOT EXISTS (SELECT FROM allma.executions e WHERE e.execution_id = s.execution_id))
	  + (SELECT count(*) FROM allma.execution_paths s WHERE NOT EXISTS (SELECT FROM allma.executions e WHERE e.execution_id = s.execution_id))
	  + (SELECT count(*) FROM allma.forks s WHERE NOT EXISTS (SELECT FROM allma.executions e WHERE e.execution_id = s.execution_id))
	  + (SELECT count(*) FROM allma.files s WHERE NOT EXISTS (SELECT FROM allma.executions e WHERE e.execution_id = s.execution_id))}),
	'0', 'no orphan');
is(q1("SELECT count(*) FROM allma.executions WHERE flow_id = 'long' AND status = 'RUNNING'"), '50',
	'running executions are kept');
is(q1("SELECT count(*) FROM allma.execution_paths p JOIN allma.executions e USING (execution_id) WHERE e.flow_id = 'long'"),
	'50', 'with their paths');
is(q1("SELECT count(*) FROM allma.step_executions s JOIN allma.executions e USING (execution_id) WHERE e.flow_id = 'short'"),
	'800', 'the recent executions keep their history');

# the server log has no error of the purge passes
my $log = slurp_file($node->logfile);
unlike($log, qr/allma purge failed|ERROR:.*purg/, 'no purge error in the log');

$node->stop;
done_testing();
