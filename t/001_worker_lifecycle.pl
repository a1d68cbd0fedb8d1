# Worker lifecycle: preload guard, process names, restart, SIGHUP, SIGTERM,
# kill -9, DROP EXTENSION and DROP DATABASE.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use lib 't';
use AllmaTest;

my $node = allma_node('lifecycle');

is( $node->safe_psql('postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'allma launcher'"),
	'1', 'one launcher is visible in pg_stat_activity');
is( $node->safe_psql('postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'allma worker' AND datname = 'postgres'"),
	'2', 'two workers run in allma.database_name');

$node->safe_psql('postgres', "SELECT allma_create_flow('" . linear_flow('f', 3) . "')");

sub run_flow
{
	my ($label) = @_;
	my $status = $node->safe_psql('postgres',
		"SELECT allma_start_flow('f') AS e \\gset\nSELECT allma_wait(:'e', '60 s')");
	is($status, 'COMPLETED', "a flow completes $label");
}

run_flow('at start');

# the terminal NOTIFY reaches a listener; since 1.1 its payload is only the
# execution id (any role can listen and send on the channel: listeners read
# the status through row-level security)
my $out = $node->safe_psql('postgres', q{
LISTEN allma_execution_events;
SELECT allma_start_flow('f', '{}', '{"executionId": "00000000-0000-4000-8000-0000000000aa"}');
SELECT allma_wait('00000000-0000-4000-8000-0000000000aa');
SELECT pg_sleep(0.2);
});
like($out, qr/Asynchronous notification "allma_execution_events" with payload "00000000-0000-4000-8000-0000000000aa"/,
	'a NOTIFY announces the terminal execution');

# restart
$node->restart;
wait_for_workers($node, 2);
run_flow('after pg_ctl restart');

# SIGHUP: more workers
$node->append_conf('postgresql.conf', 'allma.max_workers = 3');
$node->reload;
wait_for_workers($node, 3);
pass('allma.max_workers is applied on reload');

# SIGTERM of one worker: the launcher starts another
my $pid = $node->safe_psql('postgres',
	"SELECT pid FROM pg_stat_activity WHERE backend_type = 'allma worker' LIMIT 1");
kill 'TERM', $pid;
$node->poll_query_until('postgres',
	"SELECT count(*) = 3 AND bool_and(pid <> $pid) FROM pg_stat_activity WHERE backend_type = 'allma worker'")
  or die 'worker not replaced';
pass('a terminated worker is replaced');
run_flow('after SIGTERM of a worker');

# kill -9 of a worker: crash restart of the server, then everything resumes
$pid = $node->safe_psql('postgres',
	"SELECT pid FROM pg_stat_activity WHERE backend_type = 'allma worker' LIMIT 1");
kill 'KILL', $pid;
poll_until_true($node,
	"SELECT count(*) = 3 AND bool_and(pid <> $pid) FROM pg_stat_activity WHERE backend_type = 'allma worker'")
  or die 'workers not back after kill -9';
run_flow('after kill -9 of a worker');

# errors outside steps (here: a column the workers' claim reads is
# missing) are logged, the worker backs off and recovers, instead of exiting
# or spinning; work started meanwhile completes afterwards.  The same
# processes must be there after several failed passes of every worker (a
# worker that exited and was restarted by the launcher would have a new PID).
my $pids_before = worker_pids($node);
my $log_offset = -s $node->logfile;
$node->safe_psql('postgres', 'ALTER TABLE allma.execution_paths RENAME COLUMN joining TO joining_away');
my $pending = $node->safe_psql('postgres', "SELECT allma_start_flow('f')");
my $failed_passes = 0;
poll_effect(sub {
	$failed_passes = count_in_log($node, qr/ERROR:.*joining/, $log_offset);
	return $failed_passes >= 9;
}, 600);
cmp_ok($failed_passes, '>=', 9, 'the workers fail pass after pass while the column is missing');
is(worker_pids($node), $pids_before, 'workers survive repeated errors (same processes)');
$node->safe_psql('postgres', 'ALTER TABLE allma.execution_paths RENAME COLUMN joining_away TO joining');
is($node->safe_psql('postgres', "SELECT allma_wait('$pending', '60 s')"), 'COMPLETED',
	'the flow started during the errors completes once they stop');

# DROP EXTENSION: workers idle without errors, CREATE EXTENSION brings work back
$node->safe_psql('postgres', 'DROP EXTENSION allma');
$node->poll_query_until('postgres',
	"SELECT count(*) = 3 FROM pg_stat_activity WHERE backend_type = 'allma worker'")
  or die 'workers gone after DROP EXTENSION';
$node->safe_psql('postgres', 'CREATE EXTENSION allma');
$node->safe_psql('postgres', "SELECT allma_create_flow('" . linear_flow('f', 3) . "')");
run_flow('after DROP and CREATE EXTENSION');

# DROP DATABASE of the workers' database is not refused
$node->safe_psql('postgres', 'CREATE DATABASE scratch');
$node->append_conf('postgresql.conf', "allma.database_name = 'scratch'");
$node->restart;
$node->safe_psql('scratch', 'CREATE EXTENSION allma');
$node->poll_query_until('postgres',
	"SELECT count(*) = 3 FROM pg_stat_activity WHERE backend_type = 'allma worker' AND datname = 'scratch'")
  or die 'workers did not move to scratch';
my ($ret, $err);
($ret, $out, $err) = $node->psql('postgres', 'DROP DATABASE scratch');
is($ret, 0, 'DROP DATABASE of the workers\' database succeeds') or diag($err);
$node->safe_psql('postgres', 'CREATE DATABASE scratch');
$node->safe_psql('scratch', 'CREATE EXTENSION allma');
$node->poll_query_until('postgres',
	"SELECT count(*) = 3 FROM pg_stat_activity WHERE backend_type = 'allma worker' AND datname = 'scratch'")
  or die 'workers did not come back to the re-created database';
pass('workers return when the database is created again');

# no crash loop: the workers stay the same processes for a while
my $pids = worker_pids($node);
sleep(3);
is(worker_pids($node), $pids, 'workers are stable (no restart loop)');

$node->stop;

# Without shared_preload_libraries allma refuses to load, with a hint
my $plain = PostgreSQL::Test::Cluster->new('plain');
$plain->init;
$plain->start;
($ret, $out, $err) = $plain->psql('postgres', 'CREATE EXTENSION allma');
isnt($ret, 0, 'CREATE EXTENSION fails without shared_preload_libraries');
like($err, qr/allma can only be loaded via shared_preload_libraries/, 'with a clear message');
like($err, qr/HINT:.*shared_preload_libraries/, 'and a hint');
$plain->stop;

done_testing();
