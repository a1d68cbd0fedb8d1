# Parked waits cost the workers neither memory nor work: many executions
# park on WAIT_FOR_EXTERNAL_EVENT, the workers then run other executions
# (many passes), and
#   - no worker's private memory (RssAnon) grows with the parked waits,
#   - no pass reads them: the index of parked paths is read only at its
#     head (a pass walking all parked waits would read every one of them),
#     and no wait row is read at all,
# then one statement resumes them all and every execution completes with
# its own payload.  Sized for a 2-core CI machine (ALLMA_PARKED_WAITS,
# default 20,000); every bound is generous, nothing is timed.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use lib 't';
use AllmaTest;

my $n = $ENV{ALLMA_PARKED_WAITS} // 20000;
my $node = allma_node('parked');
sub q1 { my ($sql) = @_; return $node->safe_psql('postgres', $sql); }

# rss_kb: the largest RssAnon (kB) among the workers
sub rss_kb
{
	my $max = 0;
	for my $pid (split /,/, worker_pids($node))
	{
		open(my $fh, '<', "/proc/$pid/status") or next;
		while (<$fh>) { $max = $1 if /^RssAnon:\s+(\d+)/ && $1 > $max; }
		close $fh;
	}
	return $max;
}

# the counters of what the workers read: entries of the parked paths' index,
# index scans of it (one or two a pass: it moves whenever the workers
# work), rows of allma.waits read
sub counters
{
	my @c = split /\|/, q1(q{SELECT i.idx_tup_read, i.idx_scan, t.seq_tup_read + coalesce(t.idx_tup_fetch, 0)
	    FROM pg_stat_user_indexes i, pg_stat_user_tables t
	   WHERE i.indexrelname = 'execution_paths_waits_idx' AND t.schemaname = 'allma' AND t.relname = 'waits'});
	return @c;
}

q1(q{SELECT allma_create_flow('{"id": "parked", "startStepInstanceId": "wait", "enableExecutionLogs": false,
  "steps": {"wait": {"stepType": "WAIT_FOR_EXTERNAL_EVENT", "correlationKeyTemplate": "p-{{i}}",
                     "maxWaitTimeSeconds": 86400, "outputMappings": {"$.answer": "$.answer"},
                     "defaultNextStepInstanceId": "done"},
            "done": {"stepType": "NO_OP"}}}')});
q1(q{SELECT allma_create_flow('{"id": "busy", "startStepInstanceId": "a", "enableExecutionLogs": false,
  "steps": {"a": {"stepType": "NO_OP", "defaultNextStepInstanceId": "b"}, "b": {"stepType": "NO_OP"}}}')});

# the workers' memory once they have run something (caches warm)
q1(q{SELECT allma_start_flow('busy', '{}') FROM generate_series(1, 200)});
ok(poll_until_true($node, q{SELECT count(*) = 0 FROM allma.executions WHERE status = 'RUNNING'}),
	'warm-up executions complete');
my $rss_before = rss_kb();
ok($rss_before > 0, "the workers' RssAnon is readable ($rss_before kB)");

# park them
q1(qq{SELECT count(allma_start_flow('parked', jsonb_build_object('i', i))) FROM generate_series(1, $n) i});
ok(poll_until_true($node, qq{SELECT count(*) = $n FROM allma.waits WHERE status = 'OPEN'}, 600),
	"$n waits are parked");
is(q1(q{SELECT count(*) FROM allma.execution_paths WHERE status = 'WAITING' AND request ? 'wait'}), $n,
	'each as a WAITING path');

# the workers work on other executions while the waits are parked: many
# passes, each of which would walk the parked waits if it looked at them
my @c0 = counters();
for my $round (1 .. 20)
{
	q1(q{SELECT allma_start_flow('busy', '{}') FROM generate_series(1, 10)});
	poll_until_true($node, q{SELECT count(*) = 0 FROM allma.executions WHERE status = 'RUNNING' AND flow_id = 'busy'});
}
# the workers flush their statistics at most once a second: a pass after that
sleep 1.1;
q1(q{SELECT allma_start_flow('busy', '{}')});
ok(poll_until_true($node, q{SELECT count(*) = 0 FROM allma.executions WHERE status = 'RUNNING' AND flow_id = 'busy'}),
	'the other executions complete');
sleep 1.1;
q1(q{SELECT allma_start_flow('busy', '{}')});
poll_until_true($node, q{SELECT count(*) = 0 FROM allma.executions WHERE status = 'RUNNING' AND flow_id = 'busy'});
my @c1;
ok(poll_until_true($node, qq{SELECT idx_scan >= $c0[1] + 20
  FROM pg_stat_user_indexes WHERE indexrelname = 'execution_paths_waits_idx'}, 60),
	'the workers made passes meanwhile (the index of parked paths was probed)');
@c1 = counters();
my $passes = $c1[1] - $c0[1];
my $read = $c1[0] - $c0[0];
note("$passes probes of execution_paths_waits_idx read $read entries; $n waits parked");
cmp_ok($read, '<=', 2 * $passes + 100,
	'the passes read at most the head of the index of parked paths, not the parked waits');
cmp_ok($c1[2] - $c0[2], '<=', 100, 'and no wait row');
all_waits_open();

my $rss_parked = rss_kb();
note("worker RssAnon: $rss_before kB before parking, $rss_parked kB with $n waits parked");
cmp_ok($rss_parked, '<=', $rss_before + 32 * 1024,
	"no worker's private memory grew with the parked waits (under 32 MB more)");

sub all_waits_open
{
	is(q1(q{SELECT count(*) FROM allma.waits WHERE status = 'OPEN'}), $n, 'every wait is still open');
}

# resume them all from one statement
is(q1(qq{SELECT count(allma_resume_flow('p-' || i, jsonb_build_object('answer', i)))
  FROM generate_series(1, $n) i}), $n, 'one statement resumes them all');
ok(poll_until_true($node, q{SELECT count(*) = 0 FROM allma.executions WHERE status = 'RUNNING'}, 600),
	'and they all end');
is(q1(q{SELECT count(*) FROM allma.executions WHERE flow_id = 'parked' AND status = 'COMPLETED'
  AND output->'answer' = input->'i'}), $n, 'every one COMPLETED with its own payload mapped');
is(q1(q{SELECT count(*) FROM allma.waits WHERE status = 'RESUMED'}), $n, 'every wait RESUMED');
is(q1(q{SELECT count(*) FROM allma.execution_paths}), '0', 'no path is left');

$node->stop;
done_testing();
