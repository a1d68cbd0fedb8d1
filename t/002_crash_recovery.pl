# Crash semantics: with 200 executions in flight, a fast restart, a kill -9
# of a worker and an immediate shutdown each lose nothing and run no
# committed step twice.  Every step writes a row into a table with a unique
# key in the same transaction as its state change, so a step that ran twice
# would fail its execution, and a step that was lost would leave a gap.
#
# The disruption always lands mid-work, however fast or loaded the machine:
# step s6 of every execution waits for an advisory lock the test holds, so
# when both workers wait there, part of the work is committed (steps before
# s6), part is running in their open transactions, and none after s6 has
# run.  The disruption ends the holder's session with everything else; the
# rest of the work must then be committed after the restart.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use lib 't';
use AllmaTest;

my $nexec = 200;
my $nsteps = 10;
my $total = $nexec * $nsteps;
my $gate_step = 6;
my $lock = 4202;

my $node = allma_node('crash', "allma.batch_size = 16\nallma.max_chain_steps = 2\n");

$node->safe_psql('postgres', q{
CREATE TABLE effects (execution_id uuid, step text, PRIMARY KEY (execution_id, step));
GRANT INSERT ON effects TO PUBLIC;
});

# s1..s10 insert their effect; s6 first waits for the lock (a shared lock:
# once the test lets go, every execution passes at once); s3 is followed by
# a durable 50 ms timer, which must survive the disruptions too
my @steps;
for my $i (1 .. $nsteps)
{
	my $next = $i < $nsteps ? qq{, "defaultNextStepInstanceId": "s@{[$i+1]}"} : '';
	my $from = $i == $gate_step ? " FROM pg_advisory_xact_lock_shared($lock)" : '';
	my $delay = $i == 3 ? qq{, "delay": {"milliseconds": 50, "position": "after"}} : '';
	push @steps, qq{"s$i": {"stepType": "DATA_SAVE", "moduleIdentifier": "system/sql-execute",
		"customConfig": {"sql": "INSERT INTO effects SELECT \$1::uuid, \$2$from",
		                 "parameters": ["\$.flow_variables.flowExecutionId", "s$i"]}$delay$next}};
}
$node->safe_psql('postgres',
	"SELECT allma_create_flow('{\"id\": \"crash\", \"startStepInstanceId\": \"s1\", \"steps\": {"
	  . join(', ', @steps) . "}}')");

sub run_scenario
{
	my ($label, $disrupt) = @_;

	$node->safe_psql('postgres',
		'TRUNCATE effects; DELETE FROM allma.executions; DELETE FROM allma.step_executions');
	my $holder = hold_advisory_lock($node, $lock);
	$node->safe_psql('postgres',
		"SELECT allma_start_flow('crash') FROM generate_series(1, $nexec)");

	# both workers are held inside s6, each with a pass open
	wait_for_lock_waiters($node, $lock, 2);
	my $before = $node->safe_psql('postgres', 'SELECT count(*) FROM effects');
	cmp_ok($before, '>', 0, "$label: work was committed before the disruption");
	is($node->safe_psql('postgres',
			"SELECT count(*) FROM effects WHERE substr(step, 2)::int >= $gate_step"),
		'0', "$label happens while every execution is held before s$gate_step");

	$disrupt->();
	release_advisory_lock($holder, $lock);

	poll_until_true($node,
		"SELECT count(*) = $nexec FROM allma.executions WHERE status <> 'RUNNING'", 300)
	  or die "executions did not finish after $label";

	is($node->safe_psql('postgres',
			"SELECT count(*) FROM allma.executions WHERE status = 'COMPLETED'"),
		$nexec, "$label: every execution completed");
	cmp_ok($node->safe_psql('postgres', 'SELECT count(*) FROM effects') - $before,
		'>=', $nexec * ($nsteps - $gate_step + 1),
		"$label: the rest of the work was committed after the restart");
	is($node->safe_psql('postgres', 'SELECT count(*) FROM effects'),
		$total, "$label: every step's effect is there exactly once");
	is($node->safe_psql('postgres',
			"SELECT count(*) FROM allma.step_executions WHERE status = 'COMPLETED'"),
		$total, "$label: one history row per step");
	is($node->safe_psql('postgres', qq{
		SELECT count(*) FROM (
			SELECT execution_id FROM allma.step_executions
			GROUP BY execution_id
			HAVING array_agg(step_instance_id ORDER BY seq) <>
			       array(SELECT 's' || g FROM generate_series(1, $nsteps) g)) bad}),
		'0', "$label: every execution ran s1..s$nsteps in order, once each");
	is($node->safe_psql('postgres', 'SELECT count(*) FROM allma.execution_paths'),
		'0', "$label: no path is left behind");
}

run_scenario('pg_ctl restart', sub { $node->restart; });

run_scenario('kill -9 of a worker', sub {
	my $pid = $node->safe_psql('postgres',
		"SELECT pid FROM pg_stat_activity WHERE backend_type = 'allma worker' LIMIT 1");
	kill 'KILL', $pid;
	# the postmaster ends every session (the lock holder's too) and restarts
	poll_until_true($node,
		"SELECT count(*) = 2 AND bool_and(pid <> $pid) FROM pg_stat_activity WHERE backend_type = 'allma worker'")
	  or die 'workers not back after kill -9';
});

run_scenario('immediate shutdown', sub {
	$node->stop('immediate');
	$node->start;
});

$node->stop;
done_testing();
