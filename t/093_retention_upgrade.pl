# History without orphans reaches a 1.0 installation through ALTER
# EXTENSION allma UPDATE with executions in flight: history rows of
# executions deleted by hand under 1.0 (orphans) are deleted, the trigger
# that deletes the history of deleted executions is added, the executions
# in flight keep their history and go on to the end, and a purge
# afterwards leaves no orphan.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use lib 't';
use AllmaTest;

my $node = allma_node('retention_upgrade', "allma.timer_scale = 0.01\n",
	create => "CREATE EXTENSION allma VERSION '1.0'");

sub q1 { return $node->safe_psql('postgres', $_[0]); }

is(q1("SELECT extversion FROM pg_extension WHERE extname = 'allma'"), '1.0', 'installed as 1.0');

# a 3-step flow whose first step waits (in flight during the update), and
# one that ends at once
q1(q{SELECT allma_create_flow('{"id": "slow", "startStepInstanceId": "a", "steps": {
  "a": {"stepType": "NO_OP", "defaultNextStepInstanceId": "w"},
  "w": {"stepType": "NO_OP", "delay": {"milliseconds": 300000, "position": "before"},
        "defaultNextStepInstanceId": "z"},
  "z": {"stepType": "NO_OP"}}}')});
q1(q{SELECT allma_create_flow('{"id": "quick", "startStepInstanceId": "a", "steps": {
  "a": {"stepType": "NO_OP"}}}')});

my @slow = split /\n/, q1(q{SELECT allma_start_flow('slow') FROM generate_series(1, 5)});
my $gone = q1(q{SELECT allma_start_flow('quick')});
# under 1.0 (whose library is 1.1's: its workers wait for the update) the
# history of an execution deleted by hand stays: an orphan
q1(qq{INSERT INTO allma.step_executions (execution_id, path_id, seq, step_instance_id, step_type,
		attempt, status, started_at, ended_at)
	  VALUES ('$gone', 0, 1, 'a', 'NO_OP', 1, 'COMPLETED', now(), now());
	  DELETE FROM allma.execution_paths WHERE execution_id = '$gone';
	  DELETE FROM allma.executions WHERE execution_id = '$gone';});
is(q1(qq{SELECT count(*) FROM allma.step_executions WHERE execution_id = '$gone'}), '1', 'an orphaned history row under 1.0');

q1(q{ALTER EXTENSION allma UPDATE});
is(q1("SELECT extversion FROM pg_extension WHERE extname = 'allma'"), '1.1', 'updated');
is(q1(qq{SELECT count(*) FROM allma.step_executions WHERE execution_id = '$gone'}), '0', 'the orphan was deleted');
is(q1(q{SELECT count(*) FROM pg_trigger WHERE tgname = 'executions_delete_history'}),
	'1', 'the trigger that deletes the history of deleted executions is there');

# the executions in flight finish, with all their history
$node->poll_query_until('postgres', q{SELECT count(*) = 5 FROM allma.executions WHERE flow_id = 'slow' AND status = 'COMPLETED'})
  or die 'the executions in flight did not finish';
is(q1(q{SELECT string_agg(n::text, ',') FROM (SELECT count(*) AS n FROM allma.step_executions s
	JOIN allma.executions e USING (execution_id) WHERE e.flow_id = 'slow' GROUP BY execution_id) t}),
	'3,3,3,3,3', 'each has the history of its three steps');

# and they can be purged, history included
is(q1(q{SELECT allma_purge('0', 'slow')}), '5', 'purged');
is(q1(q{SELECT count(*) FROM allma.step_executions s WHERE NOT EXISTS (SELECT FROM allma.executions e WHERE e.execution_id = s.execution_id)}),
	'0', 'no orphan');

$node->stop;
done_testing();
