# Turns and listeners (issue 16: more workers must never mean less
# throughput).  At most allma.max_concurrent_passes workers run a pass at
# the same time; the workers NOTIFY allma_execution_events only while some
# session listens.
#   A. max_concurrent_passes = 1, pass_stall_timeout = 1 h, 3 workers.  A
#      worker held inside its pass (fault point after-claim:wait, an
#      advisory lock the test holds) keeps its turn: an execution started
#      meanwhile is not run (a worker shows 'waiting for a turn', the
#      execution stays RUNNING) until the pass is let go.
#   B. The stall timeout lowered to 200 ms: a pass held longer no longer
#      counts, and an execution started meanwhile completes while that pass
#      is still held.
#   C. A pass running user SQL gives its turn back: with the stall timeout
#      at 1 h again, a NO_OP execution completes while another worker's SQL
#      step waits for a lock the test holds.
#   D. A session that begins to LISTEN while a pass that ends an execution
#      is held before its commit (fault point before-claim-commit:wait; the
#      pass saw no listener) still gets the notification, sent after the
#      commit.  UNLISTEN and a session's exit uncount it: executions end
#      all the same with nobody listening.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use lib 't';
use AllmaTest;

my $fault_lock = 7277;	# faultpoint.c's 'wait' action
my $sql_lock = 7101;
my $node = allma_node('worker_turns', qq{
allma.max_workers = 3
allma.max_concurrent_passes = 1
allma.pass_stall_timeout = '1h'
allma.fault_point = 'after-claim:wait'
});
sub q1 { return $node->safe_psql('postgres', $_[0]); }
sub start { return q1("SELECT allma_start_flow('$_[0]')"); }
sub status { return q1("SELECT status FROM allma.executions WHERE execution_id = '$_[0]'"); }
sub marker { return $node->data_dir . "/allma_fault_fired.$_[0]"; }
sub wait_for_turn_waiter
{
	$node->poll_query_until('postgres',
		"SELECT count(*) > 0 FROM allma.worker_status WHERE state = 'waiting for a turn'")
	  or die 'no worker came to wait for a turn';
}

q1(q{SELECT allma_create_flow('{"id": "one", "startStepInstanceId": "a", "steps": {"a": {"stepType": "NO_OP"}}}')});
q1(qq{SELECT allma_create_flow('{"id": "sqlheld", "startStepInstanceId": "a", "steps": {
  "a": {"stepType": "DATA_LOAD", "moduleIdentifier": "system/sql-query",
        "customConfig": {"sql": "SELECT 1 AS one FROM pg_advisory_xact_lock_shared($sql_lock)"}}}}')});

# --- A: a held pass keeps its turn -------------------------------------------
my $holder = hold_advisory_lock($node, $fault_lock);
my $x = start('one');
wait_for_lock_waiters($node, $fault_lock, 1);
my $y = start('one');
wait_for_turn_waiter();
is(status($y), 'RUNNING', 'A: with the only turn held, an execution started meanwhile waits');
is(status($x), 'RUNNING', 'A: the held pass has not committed');
release_advisory_lock($holder, $fault_lock);
is(q1("SELECT allma_wait('$x', '60 s')"), 'COMPLETED', 'A: the held execution completes once let go');
is(q1("SELECT allma_wait('$y', '60 s')"), 'COMPLETED', 'A: so does the one that waited for the turn');

# --- B: a pass held past the stall timeout no longer counts -----------------
unlink(marker('after-claim')) or die "no fault marker: $!";
$holder = hold_advisory_lock($node, $fault_lock);
$x = start('one');
wait_for_lock_waiters($node, $fault_lock, 1);
$y = start('one');
wait_for_turn_waiter();
is(status($y), 'RUNNING', 'B: with the stall timeout at 1 h, the execution waits for the turn');
q1(q{ALTER SYSTEM SET allma.pass_stall_timeout = '200ms'});
$node->reload;
is(q1("SELECT allma_wait('$y', '60 s')"), 'COMPLETED',
	'B: at 200 ms the held pass no longer counts: the other execution completes');
is(status($x), 'RUNNING', 'B: while the held pass is still held');
release_advisory_lock($holder, $fault_lock);
is(q1("SELECT allma_wait('$x', '60 s')"), 'COMPLETED', 'B: the held execution completes once let go');

# --- C: user SQL gives the turn back -----------------------------------------
q1(q{ALTER SYSTEM SET allma.pass_stall_timeout = '1h'});
$node->reload;
wait_for_setting($node, 'allma.pass_stall_timeout', '1h', 3);
my $sql_holder = hold_advisory_lock($node, $sql_lock);
my $s = start('sqlheld');
wait_for_lock_waiters($node, $sql_lock, 1);
$y = start('one');
is(q1("SELECT allma_wait('$y', '60 s')"), 'COMPLETED',
	'C: a NO_OP execution completes while a SQL step waits for a lock (its pass gave the turn back)');
is(status($s), 'RUNNING', 'C: the SQL step is still waiting');
release_advisory_lock($sql_holder, $sql_lock);
is(q1("SELECT allma_wait('$s', '60 s')"), 'COMPLETED', 'C: the SQL step completes once let go');

# --- D: NOTIFY only while somebody listens, without a lost wake-up ---------
q1(q{ALTER SYSTEM SET allma.fault_point = 'before-claim-commit:wait'});
$node->reload;
# the probe's own passes fire the fault once (the lock is free): re-arm it
wait_for_setting($node, 'allma.fault_point', 'before-claim-commit:wait', 3);
unlink(marker('before-claim-commit'));
$holder = hold_advisory_lock($node, $fault_lock);
$x = start('one');
wait_for_lock_waiters($node, $fault_lock, 1);
my $listener = $node->background_psql('postgres');
$listener->query_safe('LISTEN allma_execution_events');
release_advisory_lock($holder, $fault_lock);
is(q1("SELECT allma_wait('$x', '60 s')"), 'COMPLETED', 'D: the held execution completes');
my $got = 0;
for (my $i = 0; $i < 300 && !$got; $i++)
{
	my $out = $listener->query_safe('SELECT 1');
	$got = 1 if $out =~ /Asynchronous notification "allma_execution_events" with payload "$x"/;
	select(undef, undef, undef, 0.2) unless $got;
}
ok($got, 'D: a session that began to listen before the commit is notified');
$listener->query_safe('UNLISTEN *');
$listener->quit;
$y = start('one');
is(q1("SELECT allma_wait('$y', '60 s')"), 'COMPLETED', 'D: with nobody listening executions end all the same');

done_testing();
