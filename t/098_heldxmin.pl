# Keyset claims (src/claimfloor.c) while a snapshot holds the xmin horizon:
# a worker's claim starts where its previous one found work, so a path
# that becomes runnable below that point -- here a start whose transaction
# commits seconds after the start was written -- is not seen by the
# ordinary claims.  It must still run: at the next full claim, which an
# execution started with a positive priority requests at its commit, or
# which allma.claim_rescan_interval brings.  The order of events is forced
# by transactions and by the recorded clock, never by sleeping: the
# straggler's due time is read from its row, and the worker is made to
# claim past that time plus the slack (and lately claimed priority) before the straggler commits.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use lib 't';
use AllmaTest;

# no periodic full claim during the first part
my $node = allma_node('heldxmin', "allma.max_workers = 1\nallma.claim_rescan_interval = '1h'\n");
$node->safe_psql('postgres', q{
SELECT allma_create_flow('{"id": "one", "startStepInstanceId": "a", "steps": {"a": {"stepType": "NO_OP"}}}');
});

# the held horizon
my $holder = $node->background_psql('postgres');
$holder->query_safe('BEGIN ISOLATION LEVEL REPEATABLE READ');
$holder->query_safe('SELECT txid_current()');

# runs one execution to its end: the worker has claimed after now()
sub run_one
{
	my $e = $node->safe_psql('postgres', "SELECT allma_start_flow('one', '{}', \$\$$_[0]\$\$)");
	is($node->safe_psql('postgres', "SELECT allma_wait('$e', '60 s')"), 'COMPLETED',
		"an execution ($_[0]) ran");
	return $e;
}

# straggler(): an uncommitted start, the worker then claims something due
# more than 4 s after it (its floor, the claim's time minus the 2 s slack
# and the priority 1 it claimed lately, passes the straggler's key), then
# the start commits.  Returns its id.
sub straggler
{
	my $s = $node->background_psql('postgres');
	$s->query_safe('BEGIN');
	my $id = $s->query_safe("SELECT allma_start_flow('one')");
	chomp $id;
	my $due = $s->query_safe("SELECT due_at FROM allma.execution_paths WHERE execution_id = '$id'");
	chomp $due;
	$node->poll_query_until('postgres', "SELECT clock_timestamp() > '$due'::timestamptz + interval '4 s'")
	  or die 'the clock did not advance';
	run_one('{}');
	$s->query_safe('COMMIT');
	$s->quit;
	return $id;
}

run_one('{}');    # the first claim is a full one: from here on keyset claims
my $late = straggler();
# claims after its commit start above it: it waits for a full claim
run_one('{}');
run_one('{}');
is($node->safe_psql('postgres', "SELECT status FROM allma.executions WHERE execution_id = '$late'"),
	'RUNNING', 'a path below the claim floor is not seen by ordinary claims');
# a start with a positive priority makes the next claim a full one
run_one('{"priority": 1}');
is($node->safe_psql('postgres', "SELECT allma_wait('$late', '60 s')"), 'COMPLETED',
	'a full claim, requested by a prioritized start, runs it');

# the periodic full claim
my $late2 = straggler();
run_one('{}');
is($node->safe_psql('postgres', "SELECT status FROM allma.executions WHERE execution_id = '$late2'"),
	'RUNNING', 'the second straggler waits too');
$node->append_conf('postgresql.conf', "allma.claim_rescan_interval = '200ms'\n");
$node->reload;
is($node->safe_psql('postgres', "SELECT allma_wait('$late2', '60 s')"), 'COMPLETED',
	'allma.claim_rescan_interval brings the full claim that runs it');

$holder->query_safe('COMMIT');
$holder->quit;
$node->stop;
done_testing();
