# Table maintenance under sustained load (issue 12, the soak).
#
# 1. The storage parameters of allma.executions (vacuum scale factor),
#    allma.execution_paths (vacuum by a
#    fixed number of dead rows) and allma.step_executions are set by a fresh
#    installation and by ALTER EXTENSION allma UPDATE from 1.0 alike.
# 2. Worker 0's purge runs in bounded batches while executions run, picks
#    the expired executions by the index on ended_at and deletes them by
#    their primary key: across 100 purge transactions allma.executions is
#    not read sequentially (the join the purge used before hashed a
#    sequential scan of the whole table for every batch), nothing keyed by
#    a purged execution is left, and the executions that ran meanwhile are
#    complete and kept.  Structural assertions only: counters, never times.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use lib 't';
use AllmaTest;

# retention off to begin with: the expired rows are written first
my $node = allma_node('table_maintenance', qq{
allma.retention = 0
allma.purge_batch_size = 200
allma.purge_interval = '100ms'
allma.timer_scale = 0.01
autovacuum = off
});

sub q1 { return $node->safe_psql('postgres', $_[0]); }

# the three tables' storage parameters, sorted, one line per table
my $options_sql = q{SELECT string_agg(c.relname || ' ' || coalesce(
		(SELECT string_agg(o, ',' ORDER BY o COLLATE "C") FROM unnest(c.reloptions) o), '-'), E'\n'
		ORDER BY c.relname COLLATE "C")
	  FROM pg_class c WHERE c.relnamespace = 'allma'::regnamespace
	   AND c.relname IN ('executions', 'execution_paths', 'step_executions')};
my $expected = join("\n",
	'execution_paths autovacuum_vacuum_scale_factor=0,autovacuum_vacuum_threshold=1000',
	'executions autovacuum_vacuum_scale_factor=0.05',
	'step_executions autovacuum_vacuum_insert_scale_factor=0.05,autovacuum_vacuum_scale_factor=0.05');

is(q1($options_sql), $expected, 'a fresh installation sets the storage parameters');

# the same through the upgrade from 1.0 (which had none)
q1('DROP EXTENSION allma CASCADE');
q1(q{CREATE EXTENSION allma VERSION '1.0'});
is(q1($options_sql), join("\n", 'execution_paths -', 'executions -', 'step_executions -'),
	'1.0 has no storage parameters');
q1('ALTER EXTENSION allma UPDATE');
is(q1("SELECT extversion FROM pg_extension WHERE extname = 'allma'"), '1.1', 'updated to 1.1');
is(q1($options_sql), $expected, 'the update sets the same storage parameters');
wait_for_workers($node, 2);

# 20,000 executions that ended two hours ago, with two history rows each,
# written directly (finished flows, as the purge finds them)
q1(q{SELECT allma_create_flow('{"id": "old", "startStepInstanceId": "a", "steps": {"a": {"stepType": "NO_OP"}}}')});
q1(q{SELECT allma_create_flow('{"id": "live", "startStepInstanceId": "a", "steps": {
  "a": {"stepType": "NO_OP", "defaultNextStepInstanceId": "w"},
  "w": {"stepType": "NO_OP", "delay": {"milliseconds": 300000, "position": "after"},
        "defaultNextStepInstanceId": "z"},
  "z": {"stepType": "NO_OP"}}}')});
q1(q{
INSERT INTO allma.executions (execution_id, flow_id, flow_version, status, input, output, started_by,
		root_execution_id, started_at, ended_at)
SELECT id, 'old', 1, 'COMPLETED', '{}', '{"n": 1}', 'postgres', id,
	   now() - interval '2 hours', now() - interval '2 hours' + g * interval '1 ms'
  FROM (SELECT gen_random_uuid() AS id, g FROM generate_series(1, 20000) g) s;
INSERT INTO allma.step_executions (execution_id, path_id, seq, step_instance_id, step_type, attempt, status,
		started_at, ended_at)
SELECT e.execution_id, 0, k, 'a', 'NO_OP', 1, 'COMPLETED', e.started_at, e.ended_at
  FROM allma.executions e, generate_series(1, 2) k WHERE e.flow_id = 'old';
ANALYZE allma.executions, allma.step_executions;
});

# every statement that deletes executions records how many, per transaction
q1(q{
CREATE TABLE purge_log (xid xid8, deleted bigint, t timestamptz);
CREATE FUNCTION log_purge() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO purge_log SELECT pg_current_xact_id(), count(*), clock_timestamp() FROM gone;
	RETURN NULL;
END $$;
CREATE TRIGGER log_purge AFTER DELETE ON allma.executions
	REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION log_purge();
});

# the counters before (flushed: this session's own reads are in them)
q1('SELECT pg_stat_force_next_flush()');
my ($seq0, $ended0) = split /\|/, q1(q{SELECT pg_stat_get_numscans('allma.executions'::regclass),
	pg_stat_get_numscans('allma.executions_ended_idx'::regclass)});

# executions that run while the purge goes on (a 3-s delay, at timer_scale
# 0.01), then retention on
my @live = split /\n/, q1(q{SELECT allma_start_flow('live') FROM generate_series(1, 300)});
q1(q{ALTER SYSTEM SET allma.retention = '1h'});
q1('SELECT pg_reload_conf()');

# polled on the log only: a query of allma.executions could itself scan it
$node->poll_query_until('postgres', 'SELECT coalesce(sum(deleted), 0) = 20000 FROM purge_log')
  or die 'the expired executions were not purged';
my $npurges = q1('SELECT count(DISTINCT xid) FROM purge_log');
cmp_ok($npurges, '>=', 100, "the purge ran in at least 100 transactions ($npurges)");
is(q1('SELECT max(n) FROM (SELECT sum(deleted) AS n FROM purge_log GROUP BY xid) t'), '200',
	'no purge transaction deleted more than a batch (200)');

# the workers' statistics arrive when they flush them: wait until the
# ended_at index shows at least one scan per purge transaction
$node->poll_query_until('postgres',
	"SELECT pg_stat_get_numscans('allma.executions_ended_idx'::regclass) >= $ended0 + $npurges")
  or die 'the purge did not pick by the ended_at index';
my $seq = q1(q{SELECT pg_stat_get_numscans('allma.executions'::regclass)}) - $seq0;
cmp_ok($seq, '<', $npurges / 4,
	"allma.executions was not read sequentially per purge batch ($seq sequential scans, $npurges batches)");

# (polled only now: this query may itself read the table sequentially)
$node->poll_query_until('postgres',
	"SELECT count(*) = 300 FROM allma.executions WHERE execution_id = ANY ('{" . join(',', @live)
	  . "}') AND status = 'COMPLETED'")
  or die 'the executions that ran meanwhile did not complete';

cmp_ok(q1(q{SELECT count(*) FROM purge_log l WHERE EXISTS (SELECT FROM allma.executions e
	  WHERE e.flow_id = 'live' AND l.t BETWEEN e.started_at AND e.ended_at)}), '>', 0,
	'purge transactions ran while those executions were running');
is(q1(q{SELECT (SELECT count(*) FROM allma.step_executions s WHERE NOT EXISTS (SELECT FROM allma.executions e WHERE e.execution_id = s.execution_id))
	  + (SELECT count(*) FROM allma.execution_paths s WHERE NOT EXISTS (SELECT FROM allma.executions e WHERE e.execution_id = s.execution_id))}),
	'0', 'no orphan history or path');
is(q1("SELECT count(*) FROM allma.executions WHERE flow_id = 'old'"), '0', 'every expired execution is gone');
is(q1("SELECT count(*) FROM allma.step_executions s JOIN allma.executions e USING (execution_id) WHERE e.flow_id = 'live'"),
	'900', 'the executions that ran meanwhile keep their history (3 steps each)');

my $log = slurp_file($node->logfile);
unlike($log, qr/allma purge failed|ERROR:.*purg/, 'no purge error in the log');

$node->stop;
done_testing();
