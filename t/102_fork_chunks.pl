# A wide fork writes its branch rows in chunks, counts finished branches into
# its fork row once per pass (not once per branch), deletes the branches in
# chunks when it joins, and loses nothing when its worker is killed between
# two chunks of its branch inserts.  Checked by structure, never by time:
# pg_stat_statements counts the workers' statements and the rows they wrote.
#
# - 12,001 NO_OP branches (the items and the aggregate out of line): the branch insert runs three times (5,000, 5,000
#   and 1,001 rows); the statements that lock and count the fork row run
#   once per pass that finished branches (never more often than the claims,
#   and far less often than once per branch); the join deletes the branches
#   in two chunks (10,000 and 2,001) and streams the aggregate in two parts.
# - The same fork with the worker killed (SIGKILL, fault point mid-fan-out:
#   after two chunks are inserted, before the third) in its fork pass: the
#   server restarts, the fork is planned again from the start, and the
#   execution completes with each of the 12,001 branches run once and every
#   result in the aggregate, in item order.  Needs a test build (make
#   FAULT_INJECTION=1, as scripts/test.sh builds); skipped otherwise.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use lib 't';
use AllmaTest;

my $branches = 12_001;

my $node = allma_node('fork_chunks', qq{
shared_preload_libraries = 'allma,pg_stat_statements'
pg_stat_statements.track = all
pg_stat_statements.max = 1000
# the 12,001 results (about 130 kB) go out of line
allma.out_of_line_threshold = 16384
});
$node->safe_psql('postgres', 'CREATE EXTENSION pg_stat_statements');
$node->safe_psql('postgres', q{
SELECT allma_create_flow('{"id": "wide", "startStepInstanceId": "fork", "steps": {
  "fork": {"stepType": "PARALLEL_FORK_MANAGER", "itemsPath": "$.items",
           "parallelBranches": [{"branchId": "b", "stepInstanceId": "echo"}]},
  "echo": {"stepType": "NO_OP", "inputMappings": {"v": "$.currentItem"}}}}')});

sub q1 { my ($sql) = @_; return $node->safe_psql('postgres', $sql); }

# calls and rows of the workers' statements matching a pattern
sub stmt
{
	my ($like) = @_;
	return split /\|/, q1(qq{
		SELECT coalesce(sum(calls), 0), coalesce(sum(rows), 0)
		  FROM pg_stat_statements WHERE query LIKE '$like'});
}

sub run_fork
{
	my $e = q1(qq{
		SELECT allma_start_flow('wide', jsonb_build_object('items',
		  (SELECT jsonb_agg(g) FROM generate_series(1, $branches) g)))});
	ok(poll_until_true($node,
		"SELECT status <> 'RUNNING' FROM allma.executions WHERE execution_id = '$e'", 600),
		'the fork ends');
	return $e;
}

# the execution completed with every branch once and its results in order
sub check_complete
{
	my ($e, $case) = @_;
	is(q1("SELECT status FROM allma.executions WHERE execution_id = '$e'"), 'COMPLETED',
		"$case: the execution completed");
	is(q1(qq{SELECT count(*) || ' ' || count(DISTINCT path_id) FROM allma.step_executions
	          WHERE execution_id = '$e' AND step_instance_id = 'echo' AND status = 'COMPLETED'}),
		"$branches $branches", "$case: each branch ran once");
	is(q1("SELECT count(*) FROM allma.step_executions WHERE execution_id = '$e' AND step_instance_id = 'fork' AND status = 'COMPLETED'"),
		'1', "$case: the fork step completed once");
	is(q1("SELECT count(*) FROM allma.execution_paths WHERE execution_id = '$e'"), '0',
		"$case: no branch row is left");
	# the aggregate is out of line (more than 1,000 branches): its parts,
	# read in order, are {"v": 1} .. {"v": n}
	is(q1(qq{SELECT output->'steps_output'->'fork'->'aggregatedData'->>'length' FROM allma.executions
	          WHERE execution_id = '$e'}),
		$branches, "$case: the aggregate holds every result, out of line");
	is(q1(qq{
		SELECT count(*) || ' ' || bool_and((x.v->>'v')::int = x.n)
		  FROM (SELECT v, row_number() OVER (ORDER BY l.part, o.i) AS n
		          FROM allma.large_values l,
		               jsonb_array_elements(l.value) WITH ORDINALITY AS o(v, i)
		         WHERE l.execution_id = '$e'
		           AND l.value_id = (SELECT (output->'steps_output'->'fork'->'aggregatedData'->>'\$allma_ref')::uuid
		                               FROM allma.executions WHERE execution_id = '$e')) x}),
		"$branches true", "$case: the results are in item order");
}

# ---- chunks and per-pass counts ----
q1('SELECT pg_stat_statements_reset()');
my $e = run_fork();
check_complete($e, 'undisturbed');

my ($icalls, $irows) = stmt('INSERT INTO allma.execution_paths (execution_id, path_id, parent_path_id,%');
is("$icalls $irows", "3 $branches", 'the branches were inserted in three chunks');

my ($ccalls) = stmt('WITH picked AS MATERIALIZED%');
my ($lcalls) = stmt('SELECT $3 FROM allma.forks f, unnest%');
my ($ucalls, $urows) = stmt('UPDATE allma.forks f SET pending%');
diag("$ccalls claims; the fork row locked $lcalls times, counted $ucalls times ($urows rows)");
is($lcalls, $ucalls, 'the fork row is locked once for each count');
is($urows, $ucalls, 'each count updates the one fork row once');
cmp_ok($ucalls, '<=', $ccalls, 'at most one count per pass');
cmp_ok($ucalls, '>=', int(($branches + 63) / 64), 'no pass counted more than a batch');
# one count per branch would be 12,001; a batch of 64 NO_OP branches per
# pass makes about 190 (a pass that finds fewer counts fewer)
cmp_ok($ucalls, '<', $branches / 8, 'finished branches are counted a pass at a time, not one by one');

my ($dcalls) = stmt('WITH s AS (SELECT array_agg(y.ctid)%');
is($dcalls, 2, 'the joined branches were deleted in two chunks');
my ($pcalls) = stmt('WITH c AS (SELECT path_id, k, r, lag(k)%');
is($pcalls, 2, 'the aggregate was written in two parts');

# ---- a worker killed between two chunks of the branch inserts ----
SKIP:
{
	skip 'this allma build has no fault points (build it with make FAULT_INJECTION=1)', 10
	  if q1("SELECT current_setting('allma.fault_point', true) IS NULL") eq 't';

	my $pgdata = $node->data_dir;
	$node->stop;
	unlink glob("$pgdata/allma_fault_fired.*");
	$node->append_conf('postgresql.conf', "allma.fault_point = 'mid-fan-out:sigkill'\n");
	$node->start;
	wait_for_workers($node, 2);
	my $before = worker_pids($node);
	my $log_offset = -s $node->logfile;
	$e = run_fork();
	ok(-e "$pgdata/allma_fault_fired.mid-fan-out", 'the worker was killed in its fork pass');
	cmp_ok(count_in_log($node, qr/terminated by signal 9/, $log_offset), '>=', 1,
		'the server saw the worker die');
	isnt(worker_pids($node), $before, 'the workers were restarted');
	check_complete($e, 'killed mid-fan-out');
}

$node->stop;
done_testing();
