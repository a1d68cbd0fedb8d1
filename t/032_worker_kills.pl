# Terminated workers: pg_terminate_backend on a worker that has been
# running passes gets it replaced at once (not after the 2 s restart
# throttle meant for workers that cannot start), its work is taken over,
# and nothing is lost or done twice.  Every kill waits until the slot's new
# worker has run a pass, so each killed worker has served and the launcher's
# decision is deterministic; the log says it replaced each one at once.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use lib 't';
use AllmaTest;

my $node = allma_node("kills");
sub q1 { return $node->safe_psql('postgres', $_[0]); }

q1(q{CREATE TABLE effects (execution_id uuid, step text, PRIMARY KEY (execution_id, step))});
q1(q{SELECT allma_create_flow('{"id": "kills", "startStepInstanceId": "a", "steps": {
  "a": {"stepType": "DATA_SAVE", "moduleIdentifier": "system/sql-execute",
        "customConfig": {"sql": "INSERT INTO effects VALUES ($1::uuid, ''a'')", "parameters": ["$.flow_variables.flowExecutionId"]},
        "delay": {"milliseconds": 500, "position": "after"}, "defaultNextStepInstanceId": "b"},
  "b": {"stepType": "DATA_SAVE", "moduleIdentifier": "system/sql-execute",
        "customConfig": {"sql": "INSERT INTO effects VALUES ($1::uuid, ''b'')", "parameters": ["$.flow_variables.flowExecutionId"]},
        "delay": {"milliseconds": 500, "position": "after"}, "defaultNextStepInstanceId": "c"},
  "c": {"stepType": "DATA_SAVE", "moduleIdentifier": "system/sql-execute",
        "customConfig": {"sql": "INSERT INTO effects VALUES ($1::uuid, ''c'')", "parameters": ["$.flow_variables.flowExecutionId"]}}}}')});
q1(q{CREATE TABLE started AS SELECT allma_start_flow('kills') AS e FROM generate_series(1, 1000)});

# the pid of slot $slot once its worker has run a pass (idle or busy)
sub serving_pid
{
	my ($slot, $not) = @_;
	$not //= 0;
	for (my $i = 0; $i < 1200; $i++)
	{
		my $pid = q1("SELECT pid FROM allma_worker_status() WHERE worker = $slot AND state IN ('idle', 'busy') AND pid <> $not");
		return $pid if $pid ne '';
		select(undef, undef, undef, 0.1);
	}
	die "worker $slot did not come back";
}

my $log_offset = -s $node->logfile;
my $kills = 10;
for my $k (0 .. $kills - 1)
{
	my $slot = $k % 2;
	my $pid = serving_pid($slot);
	is(q1("SELECT pg_terminate_backend($pid)"), 't', "kill $k: worker $slot (pid $pid) terminated");
	serving_pid($slot, $pid);
}

my $log = substr(slurp_file($node->logfile), $log_offset);
my @replaced = $log =~ /allma worker \d stopped after running passes: replacing it at once/g;
is(scalar(@replaced), $kills, 'every terminated worker was replaced at once');

$node->poll_query_until('postgres',
	"SELECT count(*) = 0 FROM allma.executions WHERE execution_id IN (SELECT e FROM started) AND status = 'RUNNING'",
	't') or die 'the executions did not end';
is(q1("SELECT string_agg(DISTINCT status, ',') FROM allma.executions WHERE execution_id IN (SELECT e FROM started)"),
	'COMPLETED', 'every execution completed');
is(q1("SELECT count(*) FROM effects"), '3000', 'every step wrote its effect exactly once');

$node->stop;
done_testing();
