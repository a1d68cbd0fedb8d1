# A wide fork's cost per branch does not grow with the number of branches
# finished before it, and its join pass holds one part of the results at a
# time.  Measured by structure, never by time: pg_stat_statements counts the
# shared buffers each statement of the workers touched.
#
# - The claim: every claimed branch leaves a dead entry at the low end of the
#   claim index until a vacuum.  A claim that read from the start would walk
#   them all (200,000 at the end of this fork: hundreds of index pages per
#   claim); the buffers per claim in the last fifth of the fork must stay
#   within a small multiple of the first fifth's.
# - The join: the aggregate is streamed into allma.large_values a part at a
#   time in path order and the branch rows deleted in chunks, both by the
#   primary key, with the statistics of a table analyzed empty: a few
#   buffers per branch in all (re-reading the remaining branches for each
#   part would be ten times that), and the workers' private memory
#   (RssAnon) in the join no higher than while the branches ran, plus a
#   margin (6 MB).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);
use lib 't';
use AllmaTest;

my $branches = 200_000;

my $node = allma_node('fork_scale', qq{
allma.max_workers = 2
shared_preload_libraries = 'allma,pg_stat_statements'
pg_stat_statements.track = all
pg_stat_statements.max = 1000
});
$node->safe_psql('postgres', 'CREATE EXTENSION pg_stat_statements');
$node->safe_psql('postgres', q{
SELECT allma_create_flow('{"id": "wide", "startStepInstanceId": "fork", "steps": {
  "fork": {"stepType": "PARALLEL_FORK_MANAGER", "itemsPath": "$.items",
           "parallelBranches": [{"branchId": "b", "stepInstanceId": "noop"}]},
  "noop": {"stepType": "NO_OP"}}}')});
# the statistics a fresh installation has: the paths table analyzed empty
$node->safe_psql('postgres', 'ANALYZE allma.execution_paths');

my @pids = split /,/, worker_pids($node);
is(scalar(@pids), 2, 'two workers');

sub rss_peak
{
	my $peak = 0;
	for my $pid (@pids)
	{
		open(my $fh, '<', "/proc/$pid/status") or next;
		while (<$fh>)
		{
			$peak = $1 if /^RssAnon:\s+(\d+)\s+kB/ && $1 > $peak;
		}
		close $fh;
	}
	return $peak;
}

# calls and shared buffers of the workers' statements matching a pattern
sub stmt
{
	my ($like) = @_;
	my ($calls, $blks) = split /\|/, $node->safe_psql('postgres', qq{
		SELECT coalesce(sum(calls), 0), coalesce(sum(shared_blks_hit + shared_blks_read), 0)
		  FROM pg_stat_statements WHERE query LIKE '$like'});
	return ($calls, $blks);
}
my $claim = 'WITH picked AS MATERIALIZED%';

$node->safe_psql('postgres', 'SELECT pg_stat_statements_reset()');
my $t0 = time;
my $e = $node->safe_psql('postgres', qq{
SELECT allma_start_flow('wide', jsonb_build_object('items', (SELECT jsonb_agg(g) FROM generate_series(1, $branches) g)))});

# claim statistics when a fifth, two fifths, three and four fifths of the
# branches have finished; worker memory while the branches run and after
my @marks = map { $_ * $branches / 5 } 1 .. 4;
my @at;
my ($run_peak, $join_peak, $seen_fork) = (0, 0, 0);
my $status = 'RUNNING';
while (time - $t0 < 900)
{
	my $done = $node->safe_psql('postgres', qq{
		SELECT coalesce((SELECT completed + failed FROM allma.forks WHERE execution_id = '$e'), -1)});
	my $rss = rss_peak();
	$seen_fork = 1 if $done >= 0;
	if ($done >= 0 && $done < $branches)
	{
		$run_peak = $rss if $rss > $run_peak;
	}
	elsif ($seen_fork)
	{
		$join_peak = $rss if $rss > $join_peak;
	}
	while (@at < @marks && $done >= $marks[@at])
	{
		push @at, [ stmt($claim) ];
	}
	$status = $node->safe_psql('postgres', "SELECT status FROM allma.executions WHERE execution_id = '$e'");
	last if $status ne 'RUNNING';
	select(undef, undef, undef, 0.02);
}
my $secs = time - $t0;
my $after = rss_peak();
$join_peak = $after if $after > $join_peak;
is($status, 'COMPLETED', 'the fork completed')
  or diag($node->safe_psql('postgres', "SELECT error FROM allma.executions WHERE execution_id = '$e'"));
is($node->safe_psql('postgres', qq{
	SELECT output->'steps_output'->'fork'->'aggregatedData'->>'length' FROM allma.executions
	 WHERE execution_id = '$e'}), $branches, 'every result is in the aggregate');

# the claim: buffers per claim early and late in the fork
is(scalar(@at), 4, 'the claim statistics were read at every fifth')
  or BAIL_OUT('the fork ran past the samples');
my $first = ($at[1][1] - $at[0][1]) / (($at[1][0] - $at[0][0]) || 1);
my $last = ($at[3][1] - $at[2][1]) / (($at[3][0] - $at[2][0]) || 1);
diag(sprintf('%d branches in %.1f s; buffers per claim: %.1f (2nd fifth, %d claims), %.1f (4th fifth, %d claims)',
	$branches, $secs, $first, $at[1][0] - $at[0][0], $last, $at[3][0] - $at[2][0]));
cmp_ok($at[1][0] - $at[0][0], '>', 10, 'claims in the second fifth');
cmp_ok($at[3][0] - $at[2][0], '>', 10, 'claims in the fourth fifth');
# a claim reading past the finished branches' entries from the start would
# touch about 200 more index pages per claim in the fourth fifth than in the
# second (measured: 860 and 1,082 buffers per claim); one claim in 16 does
cmp_ok($last, '<', $first + 80, 'a claim late in the fork touches about as many buffers as early on');

# the join: the streamed parts and the chunked delete, per branch
my ($pcalls, $pblks) = stmt('WITH c AS (SELECT path_id, k, r, lag(k)%');
my ($dcalls, $dblks) = stmt('WITH s AS (SELECT array_agg(y.ctid)%');
diag("join: $pcalls part statements, $pblks buffers; $dcalls delete chunks, $dblks buffers; "
	  . "worker RssAnon peak $run_peak kB while the branches ran, $join_peak kB from the join on");
is($pcalls, $branches / 10_000 + 1, 'the aggregate was streamed a part at a time');
cmp_ok(($pblks + $dblks) / $branches, '<', 8, 'the join read each branch a few times, not once per part');
# measured: 0-2.8 MB above; the join that sorted all branches: ~8 MB above
cmp_ok($join_peak, '<', $run_peak + 6 * 1024, 'the join pass needed no more memory than the branches, plus a margin');

is($node->safe_psql('postgres',
		"SELECT count(*) FROM allma.execution_paths WHERE execution_id = '$e'"),
	'0', 'no branch row left');

# The streamed aggregate relies on path order being item order (branches
# are inserted in item order); a branch out of that order makes the join
# drop the parts it wrote and build the aggregate sorted.  1,200 branches
# park on waits; two of them swap items; the aggregate still follows items.
$node->safe_psql('postgres', q{
ALTER SYSTEM SET allma.out_of_line_threshold = 1000;
SELECT pg_reload_conf();
SELECT allma_create_flow('{"id": "parked", "startStepInstanceId": "fork", "steps": {
  "fork": {"stepType": "PARALLEL_FORK_MANAGER", "itemsPath": "$.items",
           "parallelBranches": [{"branchId": "w", "stepInstanceId": "wait"}]},
  "wait": {"stepType": "WAIT_FOR_EXTERNAL_EVENT", "correlationKeyTemplate": "scale-{{currentItem}}"}}}')});
my $p = $node->safe_psql('postgres', q{
SELECT allma_start_flow('parked', jsonb_build_object('items', (SELECT jsonb_agg(g) FROM generate_series(1, 1200) g)))});
$node->poll_query_until('postgres', qq{
	SELECT count(*) = 1200 FROM allma.waits WHERE execution_id = '$p' AND status = 'OPEN'})
  or die 'the branches did not park';
# the first two branches in path order trade items
$node->safe_psql('postgres', qq{
	UPDATE allma.execution_paths x SET item_index = 1 - x.item_index
	  FROM (SELECT path_id FROM allma.execution_paths WHERE execution_id = '$p' AND parent_path_id IS NOT NULL
	        ORDER BY path_id LIMIT 2) f
	 WHERE x.execution_id = '$p' AND x.path_id = f.path_id});
$node->safe_psql('postgres', q{
	SELECT count(allma_resume_flow('scale-' || g, jsonb_build_object('i', g))) FROM generate_series(1, 1200) g});
$node->poll_query_until('postgres', "SELECT status <> 'RUNNING' FROM allma.executions WHERE execution_id = '$p'")
  or die 'the parked fork did not end';
is($node->safe_psql('postgres', qq{
	SELECT status || ' ' || (output->'steps_output'->'fork'->'aggregatedData' ? '\$allma_ref')
	  FROM allma.executions WHERE execution_id = '$p'}), 'COMPLETED true', 'the parked fork completed, its aggregate out of line');
is($node->safe_psql('postgres', qq{
	SELECT string_agg(v->>'i', ',' ORDER BY o) FILTER (WHERE o <= 3) || ' ' || count(*)
	  FROM allma.executions x,
	       jsonb_array_elements(allma_hydrate(x.output->'steps_output'->'fork'->'aggregatedData')) WITH ORDINALITY AS a(v, o)
	 WHERE x.execution_id = '$p'}), '2,1,3 1200', 'item order, not path order');
is($node->safe_psql('postgres', qq{
	SELECT count(DISTINCT l.value_id) FROM allma.large_values l, allma.executions x
	 WHERE x.execution_id = '$p' AND l.root_execution_id = x.execution_id
	   AND l.value_id::text NOT IN (coalesce(x.output->'steps_output'->'fork'->'aggregatedData'->>'\$allma_ref', ''),
	                                coalesce(x.output->'items'->>'\$allma_ref', ''))}),
	'0', 'the streamed parts were dropped');

$node->stop;
done_testing();
