# Crash semantics: with 200 executions in flight, a fast restart, a kill -9
# of a worker and an immediate shutdown each lose nothing and run no
# committed step twice.  Every step writes a row into a table with a unique
# key in the same transaction as its state change, so a step that ran twice
# would fail its execution, and a step that was lost would leave a gap.
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

my $node = allma_node('crash', "allma.batch_size = 16\nallma.max_chain_steps = 2\n");

$node->safe_psql('postgres', q{
CREATE TABLE effects (execution_id uuid, step text, PRIMARY KEY (execution_id, step));
GRANT INSERT ON effects TO PUBLIC;
});

my @steps;
for my $i (1 .. $nsteps)
{
	my $next = $i < $nsteps ? qq{, "defaultNextStepInstanceId": "s@{[$i+1]}"} : '';
	push @steps, qq{"s$i": {"stepType": "DATA_SAVE", "moduleIdentifier": "system/sql-execute",
		"customConfig": {"sql": "INSERT INTO effects VALUES (\$1::uuid, \$2)",
		                 "parameters": ["\$.flow_variables.flowExecutionId", "s$i"]},
		"delay": {"milliseconds": 200, "position": "after"}$next}};
}
$node->safe_psql('postgres',
	"SELECT allma_create_flow('{\"id\": \"crash\", \"startStepInstanceId\": \"s1\", \"steps\": {"
	  . join(', ', @steps) . "}}')");

sub run_scenario
{
	my ($label, $disrupt) = @_;

	$node->safe_psql('postgres',
		'TRUNCATE effects; DELETE FROM allma.executions; DELETE FROM allma.step_executions');
	$node->safe_psql('postgres',
		"SELECT allma_start_flow('crash') FROM generate_series(1, $nexec)");

	# disrupt at roughly half way
	poll_until_true($node,
		"SELECT count(*) >= $total / 2 FROM allma.step_executions")
	  or die "no progress before $label";
	my $before = $node->safe_psql('postgres', 'SELECT count(*) FROM allma.step_executions');
	cmp_ok($before, '<', $total, "$label happens while executions are in flight");
	$disrupt->();

	poll_until_true($node,
		"SELECT count(*) = $nexec FROM allma.executions WHERE status <> 'RUNNING'", 300)
	  or die "executions did not finish after $label";

	is($node->safe_psql('postgres',
			"SELECT count(*) FROM allma.executions WHERE status = 'COMPLETED'"),
		$nexec, "$label: every execution completed");
	is($node->safe_psql('postgres', 'SELECT count(*) FROM effects'),
		$total, "$label: every step's effect is there exactly once");
	is($node->safe_psql('postgres',
			"SELECT count(*) FROM allma.step_executions WHERE status = 'COMPLETED'"),
		$total, "$label: one history row per step");
	is($node->safe_psql('postgres', q{
		SELECT count(*) FROM (
			SELECT execution_id FROM allma.step_executions
			GROUP BY execution_id
			HAVING array_agg(step_instance_id ORDER BY seq) <>
			       array(SELECT 's' || g FROM generate_series(1, 10) g)) bad}),
		'0', "$label: every execution ran s1..s10 in order, once each");
	is($node->safe_psql('postgres', 'SELECT count(*) FROM allma.execution_paths'),
		'0', "$label: no path is left behind");
}

run_scenario('pg_ctl restart', sub { $node->restart; });

run_scenario('kill -9 of a worker', sub {
	my $pid = $node->safe_psql('postgres',
		"SELECT pid FROM pg_stat_activity WHERE backend_type = 'allma worker' LIMIT 1");
	kill 'KILL', $pid;
});

run_scenario('immediate shutdown', sub {
	$node->stop('immediate');
	$node->start;
});

$node->stop;
done_testing();
