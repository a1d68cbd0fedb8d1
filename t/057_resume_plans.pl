# The statements of a resume look their rows up by key whatever the
# planner believed about the tables when it planned them (issue 10: a
# 100,000-wait resume ran 7 minutes after the bench's cleanup).  Two states
# that made the old statements read whole tables per resume:
#   1. plans made while the tables were (nearly) empty: one session resumes a
#      few waits first (its statements get planned, and their generic plans
#      kept, on tables of one page), then resumes many more in the same
#      session once they parked;
#   2. statistics that say "empty" for full tables: the tables are emptied
#      and vacuumed (as bench/scenarios/waits.sh does), and an ANALYZE runs
#      while the start of many executions is still uncommitted (it records
#      0 rows on all their pages); a new session then resumes them.
# Each big resume runs in one transaction, whose own counters
# (pg_stat_xact_user_tables) must show no sequential read of allma's tables
# and a bounded number of rows fetched through indexes: a handful per
# resume, where a plan that walks a table or an index per resume reads
# about N * N / 2.  Structural counts only, nothing is timed; autovacuum is
# off so that no ANALYZE changes the state under the test.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use lib 't';
use AllmaTest;

my $n = $ENV{ALLMA_RESUME_PLAN_WAITS} // 2000;
my $node = allma_node('resume_plans', "autovacuum = off\n");
sub q1 { my ($sql) = @_; return $node->safe_psql('postgres', $sql); }

q1(q{SELECT allma_create_flow('{"id": "rp", "startStepInstanceId": "wait", "enableExecutionLogs": false,
  "steps": {"wait": {"stepType": "WAIT_FOR_EXTERNAL_EVENT", "correlationKeyTemplate": "r-{{k}}",
                     "maxWaitTimeSeconds": 86400, "outputMappings": {"$.got": "$.got"},
                     "defaultNextStepInstanceId": "done"},
            "done": {"stepType": "NO_OP"}}}')});

# parked(prefix, count): until count waits on keys r-<prefix>... are open
sub parked
{
	my ($prefix, $count) = @_;
	return poll_until_true($node, qq{SELECT count(*) = $count FROM allma.waits
	    WHERE status = 'OPEN' AND correlation_key LIKE 'r-$prefix%'}, 600);
}

# the resume of prefix's count waits in one transaction of session s, and
# that transaction's reads of allma's tables: "table seq_tup_read
# idx_tup_fetch" lines
my $resume_and_count = q{
BEGIN;
SELECT count(allma_resume_flow('r-%s' || i, jsonb_build_object('got', i)))
  FROM generate_series(1, %d) i;
SELECT string_agg(relname || ' ' || seq_tup_read || ' ' || coalesce(idx_tup_fetch, 0), E'\n' ORDER BY relname)
  FROM pg_stat_xact_user_tables
 WHERE schemaname = 'allma' AND relname IN ('executions', 'execution_paths', 'waits');
COMMIT;
};

# check_reads(label, output of $resume_and_count, count)
sub check_reads
{
	my ($label, $out, $count) = @_;
	my @lines = split /\n/, $out;
	is($lines[0], $count, "$label: $count waits resumed in one statement");
	my %seen;
	for my $line (@lines[1 .. $#lines])
	{
		my ($rel, $seq, $fetch) = split / /, $line;
		next unless defined $fetch;
		$seen{$rel} = 1;
		is($seq, 0, "$label: no sequential read of allma.$rel");
		cmp_ok($fetch, '<=', 4 * $count,
			"$label: allma.$rel rows fetched by index stay at a few per resume ($fetch for $count)");
	}
	is(scalar(keys %seen), 3, "$label: the counters of all three tables were read");
	return;
}

# cleanup: empties allma's tables and vacuums them, as the benchmark does
# between rounds (their statistics then say 0 rows on 0 pages)
sub cleanup
{
	q1(q{DELETE FROM allma.execution_paths; DELETE FROM allma.waits;
	     TRUNCATE allma.step_executions; DELETE FROM allma.executions});
	q1(q{VACUUM ANALYZE allma.executions, allma.execution_paths, allma.waits});
	return;
}

# 1. plans made on (nearly) empty tables, used again on full ones
cleanup();
my $s = $node->background_psql('postgres');
q1(q{SELECT count(allma_start_flow('rp', jsonb_build_object('k', 'a' || i))) FROM generate_series(1, 10) i});
ok(parked('a', 10), '10 waits parked on small tables');
# ten resumes in one session: after five the plan cache keeps a generic
# plan, made while each table held one page
is($s->query_safe(q{SELECT count(allma_resume_flow('r-a' || i)) FROM generate_series(1, 10) i}), 10,
	'the session resumed the first 10 waits');
q1(qq{SELECT count(allma_start_flow('rp', jsonb_build_object('k', 'b' || i))) FROM generate_series(1, $n) i});
ok(parked('b', $n), "$n more waits parked");
check_reads('plans made on small tables', $s->query_safe(sprintf($resume_and_count, 'b', $n)), $n);
$s->quit;
ok(poll_until_true($node, qq{SELECT count(*) = $n + 10 FROM allma.executions
    WHERE flow_id = 'rp' AND status = 'COMPLETED'}, 600), 'every resumed execution completed');
is(q1(q{SELECT count(*) FROM allma.executions x JOIN allma.waits w USING (execution_id)
         WHERE w.correlation_key LIKE 'r-b%' AND x.status = 'COMPLETED'
           AND w.payload->>'got' = substr(w.correlation_key, 4)}),
	$n, 'each wait got its own payload');

# 2. emptied and vacuumed, then statistics that say "empty" for full tables
cleanup();
my $t = $node->background_psql('postgres');
$t->query_safe(q{BEGIN});
$t->query_safe(qq{SELECT count(allma_start_flow('rp', jsonb_build_object('k', 'c' || i))) FROM generate_series(1, $n) i});
q1(q{ANALYZE allma.executions, allma.execution_paths});
$t->query_safe(q{COMMIT});
$t->quit;
is(q1(q{SELECT reltuples = 0 AND relpages > 0 FROM pg_class WHERE oid = 'allma.executions'::regclass}), 't',
	'the statistics say allma.executions is empty, on pages that are not');
ok(parked('c', $n), "$n waits parked");
check_reads('statistics that say empty', q1(sprintf($resume_and_count, 'c', $n)), $n);
ok(poll_until_true($node, qq{SELECT count(*) = $n FROM allma.executions
    WHERE flow_id = 'rp' AND status = 'COMPLETED'}, 600), 'every resumed execution completed');

$node->stop;
done_testing();
