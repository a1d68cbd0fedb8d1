# Terminated workers (issue 13, item 8): what a killed worker held is free
# at once, the surviving worker takes it over, and the killed worker is
# replaced at once (not after the restart delay meant for workers that
# cannot start).
#   A. One worker holds the claims of 10 executions, held in the first one's
#      SQL step by an advisory lock the test holds.  Connections to the
#      database are then refused (so no replacement can start) and the
#      holder is terminated.  The survivor claims all 10 at once, with
#      allma.naptime at 60 s: its claims are gone with the terminated
#      worker's transaction (no lease to wait for), and the survivor looks
#      again as soon as it is woken by the dying worker (or, as it does while
#      due paths are held by another worker, at its next deadline check).
#      It alone runs them: each step's effect once, written by the
#      survivor, no path blamed.  The launcher replaced the terminated worker
#      at once (one log line) but not the replacements that could not
#      connect (the restart delay keeps those from a crash loop).
#   B. Connections allowed again: the slot's worker comes back; the survivor
#      is terminated in turn and replaced at once; the executions of a new
#      start complete.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use lib 't';
use AllmaTest;

my $lock = 7034;
my $node = allma_node('kill_replacement', "allma.naptime = '60s'\n");
sub q1 { return $node->safe_psql('postgres', $_[0]); }

q1(q{CREATE TABLE effects (execution_id uuid PRIMARY KEY, pid integer NOT NULL)});
q1(qq{SELECT allma_create_flow('{"id": "held", "startStepInstanceId": "a", "steps": {
  "a": {"stepType": "DATA_SAVE", "moduleIdentifier": "system/sql-execute",
        "customConfig": {"sql": "INSERT INTO effects SELECT \$1::uuid, pg_backend_pid() FROM pg_advisory_xact_lock_shared($lock)",
                         "parameters": ["\$.flow_variables.flowExecutionId"]}}}}')});
q1(q{SELECT allma_create_flow('{"id": "one", "startStepInstanceId": "a", "steps": {"a": {"stepType": "NO_OP"}}}')});

# --- A: the holder is terminated, the survivor takes over -----------------
my $holder_lock = hold_advisory_lock($node, $lock);
# one commit of 10 starts wakes one worker (allma.batch_size 64): it claims all 10
q1(q{CREATE TABLE started AS SELECT allma_start_flow('held') AS e FROM generate_series(1, 10)});
wait_for_lock_waiters($node, $lock, 1);
my $holder = q1(qq{SELECT a.pid FROM pg_locks l JOIN pg_stat_activity a USING (pid)
	WHERE l.locktype = 'advisory' AND l.objid = $lock AND NOT l.granted AND a.backend_type = 'allma worker'});
my $survivor = q1(qq{SELECT pid FROM pg_stat_activity WHERE backend_type = 'allma worker' AND pid <> $holder});
like($survivor, qr/^\d+$/, "one worker ($holder) is held in a step, the other ($survivor) is free");
# nothing of the 10 is left for anyone else: the holder has them all
is(q1(q{SELECT count(*) FROM (SELECT FROM allma.execution_paths WHERE execution_id IN (SELECT e FROM started)
	FOR UPDATE SKIP LOCKED) s}), '0', 'A: the held worker claimed all 10 paths');

# the survivor runs other work while the holder is held
my $one = q1("SELECT allma_start_flow('one')");
is(q1("SELECT allma_wait('$one', '60 s')"), 'COMPLETED', 'A: the survivor runs other work meanwhile');
ok($node->poll_query_until('postgres',
		"SELECT state = 'idle' FROM allma_worker_status() WHERE pid = $survivor"),
	'A: the survivor is idle');

# sessions opened before connections are refused: $ctl in template1 (a
# database cannot refuse connections from a session of its own), $pg here
my $ctl = $node->background_psql('template1');
my $pg = $node->background_psql('postgres');
$ctl->query_safe("ALTER DATABASE postgres ALLOW_CONNECTIONS false");
my $offset = -s $node->logfile;
$ctl->query_safe("SELECT pg_terminate_backend($holder, 60000)");

# The survivor must claim the 10 paths and come to wait in the first step
# (holding them all), with no replacement running, well before its 60 s
# naptime would end.
my $took_over = 0;
for (my $i = 0; $i < 200 && !$took_over; $i++)	# 40 s at most
{
	$took_over = $ctl->query_safe(qq{
		SELECT count(*) = 1 FROM pg_locks l
		 WHERE l.locktype = 'advisory' AND l.objid = $lock AND NOT l.granted AND l.pid = $survivor}) eq 't';
	select(undef, undef, undef, 0.2) unless $took_over;
}
ok($took_over, 'A: the survivor claimed the terminated worker\'s paths at once, with no replacement running');
is($ctl->query_safe(q{SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'allma worker'}), '1',
	'A: no replacement could connect');
is($pg->query_safe(q{SELECT count(*) FROM (SELECT FROM allma.execution_paths WHERE execution_id IN (SELECT e FROM started)
	FOR UPDATE SKIP LOCKED) s}), '0', 'A: the survivor holds all 10');

$ctl->query_safe("ALTER DATABASE postgres ALLOW_CONNECTIONS true");
is(count_in_log($node, qr/allma worker \d stopped after running passes: replacing it at once/, $offset), 1,
	'A: the terminated worker was replaced at once, the replacements that could not connect were not');
cmp_ok(count_in_log($node, qr/database "postgres" is not currently accepting connections/, $offset), '>=', 1,
	'A: its replacement was refused');
$ctl->quit;
$pg->quit;

release_advisory_lock($holder_lock, $lock);
$node->poll_query_until('postgres',
	"SELECT count(*) = 0 FROM allma.executions WHERE execution_id IN (SELECT e FROM started) AND status = 'RUNNING'")
  or die 'the held executions did not end';
is(q1("SELECT string_agg(DISTINCT status, ',') FROM allma.executions WHERE execution_id IN (SELECT e FROM started)"),
	'COMPLETED', 'A: all 10 completed');
is(q1("SELECT count(*) || ' ' || count(DISTINCT execution_id) || ' ' || string_agg(DISTINCT pid::text, ',') FROM effects"),
	"10 10 $survivor", 'A: each step took effect once, all run by the survivor');
is(q1("SELECT count(*) FROM allma.path_failures"), '0', 'A: no path is blamed for the termination');

# --- B: the slot comes back; the survivor is terminated and replaced ---------
wait_for_workers($node, 2);
$offset = -s $node->logfile;
is(q1("SELECT pg_terminate_backend($survivor, 60000)"), 't', 'B: the survivor is terminated');
ok(poll_effect(sub {
		count_in_log($node, qr/allma worker \d stopped after running passes: replacing it at once/, $offset) == 1 }),
	'B: it is replaced at once');
wait_for_workers($node, 2);
my $late = q1("SELECT allma_start_flow('one')");
is(q1("SELECT allma_wait('$late', '60 s')"), 'COMPLETED', 'B: the workers run new executions');

$node->stop;
done_testing();
