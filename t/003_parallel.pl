# Parallel fan-out under concurrency and crashes: the join of a fork runs
# exactly once even when its last branches finish at the same moment on
# different workers, and a 2,000-branch fork interrupted by an immediate
# shutdown half way (held there by an advisory lock) ends with one result
# per item and one join.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use lib 't';
use AllmaTest;

# one path per transaction, one step per path: the most interleaving
my $node = allma_node('parallel',
	"allma.batch_size = 1\nallma.max_chain_steps = 1\nallma.max_workers = 2\n");

# 1. many small forks whose two branches finish concurrently
$node->safe_psql('postgres', q{
SELECT allma_create_flow('{"id": "pair", "startStepInstanceId": "fork", "steps": {
  "fork": {"stepType": "PARALLEL_FORK_MANAGER", "itemsPath": "$.items",
           "parallelBranches": [{"branchId": "b", "stepInstanceId": "work"}],
           "defaultNextStepInstanceId": "done"},
  "work": {"stepType": "NO_OP", "literals": {"v": "$.currentItem"}},
  "done": {"stepType": "NO_OP"}}}');
SELECT allma_start_flow('pair', '{"items": [1, 2]}') FROM generate_series(1, 300);
});
poll_until_true($node,
	"SELECT count(*) = 300 FROM allma.executions WHERE flow_id = 'pair' AND status <> 'RUNNING'", 300)
  or die 'pair executions did not finish';
is($node->safe_psql('postgres',
		"SELECT count(*) FROM allma.executions WHERE flow_id = 'pair' AND status = 'COMPLETED'"),
	'300', 'every fork joined and completed');
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM allma.executions x
	 WHERE flow_id = 'pair'
	   AND (SELECT count(*) FROM allma.step_executions s
	         WHERE s.execution_id = x.execution_id AND s.step_instance_id = 'fork') <> 1}),
	'0', 'each join ran exactly once');
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM allma.executions
	 WHERE flow_id = 'pair'
	   AND output->'steps_output'->'fork'->'aggregatedData' <> '[{"v": 1}, {"v": 2}]'}),
	'0', 'each join saw both branch results, in item order');
is($node->safe_psql('postgres', 'SELECT count(*) FROM allma.forks'), '0', 'no fork row left');

# 2. a 2,000-branch fork through an immediate shutdown.  The branches of
# items above 1,000 wait for an advisory lock the test holds before they
# write, so when both workers wait there the shutdown lands mid-fork
# whatever the machine's speed: at most 1,000 effects are committed, the
# rest must be committed after the restart, each exactly once.
$node->append_conf('postgresql.conf', "allma.batch_size = 64\nallma.max_chain_steps = 16\n");
$node->reload;
my $lock = 4203;
$node->safe_psql('postgres', q{
CREATE TABLE effects (item int PRIMARY KEY);
CREATE FUNCTION gate(item int) RETURNS int LANGUAGE plpgsql AS $$
BEGIN
	IF item > 1000 THEN
		PERFORM pg_advisory_xact_lock_shared(4203);
	END IF;
	RETURN item;
END $$;
SELECT allma_create_flow('{"id": "wide", "startStepInstanceId": "fork", "steps": {
  "fork": {"stepType": "PARALLEL_FORK_MANAGER", "itemsPath": "$.items",
           "parallelBranches": [{"branchId": "b", "stepInstanceId": "write"}],
           "aggregationConfig": {"maxConcurrency": 200}},
  "write": {"stepType": "DATA_SAVE", "moduleIdentifier": "system/sql-execute",
            "customConfig": {"sql": "INSERT INTO effects VALUES (gate($1))", "parameters": ["$.currentItem"]},
            "defaultNextStepInstanceId": "hold"},
  "hold": {"stepType": "NO_OP", "delay": {"milliseconds": 100, "position": "before"},
           "literals": {"item": "$.currentItem"}, "outputMappings": {"$.output": "$.item"}}}}');
});
my $holder = hold_advisory_lock($node, $lock);
$node->safe_psql('postgres', q{
SELECT allma_start_flow('wide', jsonb_build_object('items', (SELECT jsonb_agg(g) FROM generate_series(1, 2000) g)),
                        '{"executionId": "00000000-0000-4000-8000-000000000777"}');
});
wait_for_lock_waiters($node, $lock, 2);
my $done = $node->safe_psql('postgres', 'SELECT count(*) FROM effects');
cmp_ok($done, '>', 0, 'branches committed work before the shutdown');
is($node->safe_psql('postgres', 'SELECT count(*) FROM effects WHERE item > 1000'), '0',
	'the shutdown happens while branches are running (none past the held ones)');
$node->stop('immediate');
$node->start;
release_advisory_lock($holder, $lock);

poll_until_true($node,
	"SELECT status <> 'RUNNING' FROM allma.executions WHERE execution_id = '00000000-0000-4000-8000-000000000777'", 300)
  or die 'wide fork did not finish after restart';
is($node->safe_psql('postgres',
		"SELECT status FROM allma.executions WHERE execution_id = '00000000-0000-4000-8000-000000000777'"),
	'COMPLETED', 'the fork completed after the crash');
is($node->safe_psql('postgres', 'SELECT count(*) FROM effects'), '2000', 'every item has exactly one effect');
cmp_ok(2000 - $done, '>=', 1000, 'the held half was committed after the restart');
is($node->safe_psql('postgres', q{
	SELECT output->'steps_output'->'fork'->'aggregatedData' =
	       (SELECT jsonb_agg(g) FROM generate_series(1, 2000) g)
	  FROM allma.executions WHERE execution_id = '00000000-0000-4000-8000-000000000777'}),
	't', 'every item has exactly one result, in order');
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM allma.step_executions
	 WHERE execution_id = '00000000-0000-4000-8000-000000000777' AND step_instance_id = 'fork'}),
	'1', 'the join ran once');
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM allma.step_executions
	 WHERE execution_id = '00000000-0000-4000-8000-000000000777' AND step_instance_id = 'write'}),
	'2000', 'each branch step committed once');
is($node->safe_psql('postgres', 'SELECT count(*) FROM allma.execution_paths'), '0', 'no path left');

$node->stop;
done_testing();
