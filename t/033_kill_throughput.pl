# Engine faults: terminated workers (issue: pg_terminate_backend on allma's
# workers twice a second stalled the engine).  The throughput itself is
# measured by bench/scenarios/kills.sh; this test checks the mechanisms:
#   A. a worker terminated before it ran its first pass is replaced at once
#      (before 1.1 only a worker that had run passes was; one killed while
#      starting left its slot empty for the 2 s restart delay).  The new
#      workers are held in their first pass by a lock, then terminated.
#   B. 10,000 one-step executions drain while every worker is terminated
#      twice a second: all complete, each step once, no path is blamed for
#      the terminations (no pass mark counted, allma.path_failures empty),
#      and right after the kills stop a new execution is picked up.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use lib 't';
use AllmaTest;

my $node = allma_node('kills', "allma.timer_scale = 0.01\n");

sub q1 { my ($sql) = @_; return $node->safe_psql('postgres', $sql); }

q1(q{SELECT allma_create_flow('{"id": "one", "startStepInstanceId": "a", "steps": {"a": {"stepType": "NO_OP"}}}')});

# --- A: terminated while starting ---------------------------------------
my $before = worker_pids($node);
my $locker = $node->background_psql('postgres');
$locker->query_safe("BEGIN; LOCK TABLE allma.execution_paths IN ACCESS EXCLUSIVE MODE");
q1("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE backend_type = 'allma worker'");
# the replacements block in their first claim (not served yet)
ok(poll_until_true($node,
	"SELECT count(*) = 2 FROM pg_stat_activity WHERE backend_type = 'allma worker' AND wait_event_type = 'Lock' "
	  . "AND pid NOT IN (" . join(',', split(/,/, $before)) . ")"),
	'A: the new workers are held in their first pass');
my $held = q1("SELECT string_agg(pid::text, ',' ORDER BY pid) FROM pg_stat_activity WHERE backend_type = 'allma worker'");
my $offset = -s $node->logfile;
q1("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE backend_type = 'allma worker'");
ok(poll_effect(sub {
		count_in_log($node, qr/allma worker \d stopped after running passes: replacing it at once/, $offset) >= 2 }),
	'A: workers terminated before their first pass are replaced at once');
$locker->query_safe("COMMIT");
$locker->quit;
my $a = q1("SELECT allma_start_flow('one')");
is(q1("SELECT allma_wait('$a', '60 s')"), 'COMPLETED', 'A: the replaced workers run executions');

# --- B: 2,000 executions under kills twice a second ---------------------
q1("CREATE TABLE started AS SELECT allma_start_flow('one') AS e FROM generate_series(1, 10000)");
my $killer = $node->background_psql('postgres');
$killer->query_safe(q{
CREATE PROCEDURE pg_temp.kill_workers() LANGUAGE plpgsql AS $$
BEGIN
	WHILE EXISTS (SELECT FROM allma.executions WHERE status = 'RUNNING') LOOP
		PERFORM pg_terminate_backend(pid) FROM pg_stat_activity WHERE backend_type = 'allma worker';
		COMMIT;
		PERFORM pg_sleep(0.5);
		COMMIT;
	END LOOP;
END $$});
my $kills_offset = -s $node->logfile;
$killer->query_safe("CALL pg_temp.kill_workers()");
$killer->quit;
my $terminated = count_in_log($node, qr/terminating background worker "allma worker" due to administrator command/,
	$kills_offset);
cmp_ok($terminated, '>=', 2, "B: workers were terminated while the backlog drained ($terminated)");
is(q1("SELECT string_agg(DISTINCT status, ',') FROM allma.executions WHERE execution_id IN (SELECT e FROM started)"),
	'COMPLETED', 'B: all 10,000 complete');
is(q1("SELECT count(*) FROM allma.step_executions WHERE execution_id IN (SELECT e FROM started)"), '10000',
	'B: each step ran once');
is(q1("SELECT count(*) FROM allma.path_failures"), '0', 'B: no path is blamed for the terminations');
wait_for_workers($node, 2);
my $late = q1("SELECT allma_start_flow('one')");
is(q1("SELECT allma_wait('$late', '60 s')"), 'COMPLETED',
	'B: right after the kills stop a new execution is picked up');

$node->stop;
done_testing();
