# A 200,000-branch fork in flat worker memory: the branches are inserted
# and deleted in chunks, and the COLLECT_ARRAY aggregate is built by SQL
# straight into allma.large_values (in parts of 10,000 results), so no
# worker holds every branch result at once.  The workers' private memory
# (RssAnon from /proc/<pid>/status) is sampled while the fork runs and at
# its end, and must stay under a generous bound (a worker building the
# aggregate in memory needed about 220 MB at 100,000 branches in 1.0).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);
use lib 't';
use AllmaTest;

my $branches = 200_000;
# MB: twice what a worker needs (11-12 MB measured since the join streams
# the aggregate a part at a time; 18-19 MB before), far below what holding
# 200,000 results at once would take
my $bound_mb = 24;

my $node = allma_node('fork_memory', "allma.max_workers = 2\n");
$node->safe_psql('postgres', q{
SELECT allma_create_flow('{"id": "wide", "startStepInstanceId": "fork", "steps": {
  "fork": {"stepType": "PARALLEL_FORK_MANAGER", "itemsPath": "$.items",
           "parallelBranches": [{"branchId": "b", "stepInstanceId": "noop"}],
           "defaultNextStepInstanceId": "after"},
  "noop": {"stepType": "NO_OP"},
  "after": {"stepType": "NO_OP",
            "inputMappings": {"n": "$.steps_output.fork.aggregatedData.length",
                              "last": "$.steps_output.fork.aggregatedData[-1]"},
            "outputMappings": {"$.after": "$"}}}}')});

my @pids = split /,/, worker_pids($node);
is(scalar(@pids), 2, 'two workers');

# the RssAnon (kB) of each worker now; a worker that is gone reads 0
sub rss_anon
{
	my %kb;
	for my $pid (@pids)
	{
		$kb{$pid} = 0;
		open(my $fh, '<', "/proc/$pid/status") or next;
		while (<$fh>)
		{
			$kb{$pid} = $1 if /^RssAnon:\s+(\d+)\s+kB/;
		}
		close $fh;
	}
	return %kb;
}

my %before = rss_anon();
my $t0 = time;
my $e = $node->safe_psql('postgres', qq{
SELECT allma_start_flow('wide', jsonb_build_object('items', (SELECT jsonb_agg(g) FROM generate_series(1, $branches) g)))});

# sample every 50 ms until the execution ends (at most 10 minutes)
my $peak = 0;
my $samples = 0;
my $status = 'RUNNING';
while (time - $t0 < 600)
{
	my %kb = rss_anon();
	for (values %kb) { $peak = $_ if $_ > $peak; }
	$samples++;
	$status = $node->safe_psql('postgres', "SELECT status FROM allma.executions WHERE execution_id = '$e'");
	last if $status ne 'RUNNING';
	select(undef, undef, undef, 0.05);
}
my %end = rss_anon();
for (values %end) { $peak = $_ if $_ > $peak; }
my $secs = time - $t0;
diag(sprintf('%d branches in %.1f s (%.0f branches/s); worker RssAnon before %s kB, peak %d kB, at the end %s kB (%d samples)',
	$branches, $secs, $branches / $secs, join('/', values %before), $peak, join('/', values %end), $samples));

is($status, 'COMPLETED', 'the fork completed')
  or diag($node->safe_psql('postgres', "SELECT error FROM allma.executions WHERE execution_id = '$e'"));
cmp_ok($samples, '>', 3, 'memory was sampled while the fork ran');
cmp_ok($peak, '>', 0, 'the workers were there to measure');
cmp_ok($peak, '<', $bound_mb * 1024, "worker RssAnon stayed under $bound_mb MB (peak $peak kB)");
is(join(',', sort { $a <=> $b } split /,/, worker_pids($node)), join(',', sort { $a <=> $b } @pids),
	'the same workers ran the whole fork');

# the aggregate is out of line, in 20 parts; the next step read through it
is($node->safe_psql('postgres', qq{
	SELECT (output->'steps_output'->'fork'->'aggregatedData' ? '\$allma_ref') || ' ' ||
	       (output->'steps_output'->'fork'->'aggregatedData'->>'length') || ' ' ||
	       (output->'after'->>'n')
	  FROM allma.executions WHERE execution_id = '$e'}),
	"true $branches $branches", 'the aggregate is a pointer; the next step read its length through it');
is($node->safe_psql('postgres', qq{
	SELECT count(*) || ' ' || min(first_element) || ' ' || max(first_element) || ' ' ||
	       bool_and(jsonb_array_length(value) = 10000)
	  FROM allma.large_values l, allma.executions x
	 WHERE x.execution_id = '$e' AND l.root_execution_id = x.execution_id
	   AND l.value_id = (x.output->'steps_output'->'fork'->'aggregatedData'->>'\$allma_ref')::uuid}),
	'20 0 190000 true', 'stored in parts of 10,000 results');
# the 200,000 items (1.6 MB of input) went out of line when the execution
# started, in parts too: the fork read them a part at a time
is($node->safe_psql('postgres', qq{
	SELECT min(x.output->'items'->>'length') || ' ' || count(l.*)
	  FROM allma.executions x JOIN allma.large_values l
	    ON l.root_execution_id = x.execution_id AND l.value_id = (x.output->'items'->>'\$allma_ref')::uuid
	 WHERE x.execution_id = '$e'}),
	"$branches 20", 'the items went out of line at the start, in parts');
is($node->safe_psql('postgres', qq{
	SELECT jsonb_array_length(allma_hydrate(output)->'steps_output'->'fork'->'aggregatedData')
	  FROM allma.executions WHERE execution_id = '$e'}),
	$branches, 'allma_hydrate gives every result');
is($node->safe_psql('postgres',
		"SELECT count(*) FROM allma.execution_paths WHERE execution_id = '$e'"),
	'0', 'no branch row left');
is($node->safe_psql('postgres', "SELECT count(*) FROM allma.forks"), '0', 'no fork row left');

# purge takes the values with the execution
$node->safe_psql('postgres', "SELECT allma_purge('0 seconds')");
is($node->safe_psql('postgres', "SELECT count(*) FROM allma.large_values"), '0',
	'purge removed the out-of-line values');

$node->stop;
done_testing();
