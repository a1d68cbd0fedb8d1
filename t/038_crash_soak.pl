# Engine faults: crash soak (docs/engine-faults.md).
#
# ALLMA_SOAK_EXECUTIONS (default 2,000) executions of a flow that mixes SQL
# steps (inserts into a table with a unique key), HTTP steps against the
# mock (answering after 1 s, so that kills land on requests in flight),
# a condition and a 2-branch fork (one branch SQL, one HTTP), while
# the postmaster is SIGKILLed ALLMA_SOAK_KILLS times (default 5; the long
# run uses 30) at random 5-20 s intervals and restarted.  The executions
# are started in waves, one between two kills, a slice every second, so
# every kill lands on work in progress.  Pass: every execution terminal and COMPLETED, every
# SQL effect exactly once, no step (so no execution end) recorded twice,
# and every request the mock saw more than once carries its first send's
# Idempotency-Key.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use lib 't';
use AllmaTest;

my $kills = $ENV{ALLMA_SOAK_KILLS} // 5;
my $total = $ENV{ALLMA_SOAK_EXECUTIONS} // 2000;
my $base = start_mock();
my $node = allma_node('soak', "allma.http_allowlist = '127.0.0.1'\nallma.timer_scale = 0.01\n");

sub q1 { my ($sql) = @_; return $node->safe_psql('postgres', $sql); }

q1("CREATE TABLE soak_effects (k int, step text, PRIMARY KEY (k, step))");
q1(qq{SELECT allma_create_flow('{"id": "soak", "startStepInstanceId": "ins", "steps": {
  "ins": {"stepType": "DATA_SAVE", "moduleIdentifier": "system/sql-execute",
          "customConfig": {"sql": "INSERT INTO soak_effects VALUES (\$1, ''ins'')", "parameters": ["\$.k"]},
          "outputMappings": {"\$.ins": "\$"},
          "transitions": [{"condition": "\$.big == true", "nextStepInstanceId": "fork"}],
          "defaultNextStepInstanceId": "call"},
  "call": {"stepType": "API_CALL", "apiUrlTemplate": {"template": "$base/echo/soak/{{k}}?latency_ms=1000"},
           "apiHttpMethod": "POST", "inputMappings": {"k": "\$.k"},
           "outputMappings": {"\$.call": "\$.status"}, "defaultNextStepInstanceId": "fork"},
  "fork": {"stepType": "PARALLEL_FORK_MANAGER", "itemsPath": "\$.items",
           "parallelBranches": [{"branchId": "sql", "stepInstanceId": "bins"},
                                {"branchId": "http", "stepInstanceId": "bcall"}],
           "outputMappings": {"\$.fork": "\$.status"}, "defaultNextStepInstanceId": "done"},
  "bins": {"stepType": "DATA_SAVE", "moduleIdentifier": "system/sql-execute",
           "customConfig": {"sql": "INSERT INTO soak_effects VALUES (\$1, ''branch'')", "parameters": ["\$.k"]}},
  "bcall": {"stepType": "API_CALL", "apiUrlTemplate": {"template": "$base/echo/soakb/{{k}}?latency_ms=1000"},
            "apiHttpMethod": "POST", "inputMappings": {"k": "\$.k"}},
  "done": {"stepType": "DATA_SAVE", "moduleIdentifier": "system/sql-execute",
           "customConfig": {"sql": "INSERT INTO soak_effects VALUES (\$1, ''done'')", "parameters": ["\$.k"]}}}}')});

my $waves = $kills + 1;
my $per_wave = int(($total + $waves - 1) / $waves);
my $started = 0;

sub start_wave
{
	my ($n) = @_;
	$n //= $per_wave;
	$n = $total - $started if $started + $n > $total;
	return if $n <= 0;
	my ($from, $to) = ($started + 1, $started + $n);
	q1("SELECT count(allma_start_flow('soak', jsonb_build_object('k', i, 'big', i % 3 = 0, 'items', jsonb_build_array(i))))
	      FROM generate_series($from, $to) i");
	$started += $n;
}

my $done_kills = 0;
for my $kill (1 .. $kills)
{
	# the fault schedule: a random 5-20 s of work, then SIGKILL; the wave
	# is started a slice a second meanwhile
	my $secs = 5 + int(rand(16));
	my $wave_end = $started + $per_wave;
	for my $s (1 .. $secs)
	{
		start_wave(int(($per_wave + $secs - 1) / $secs)) if $started < $wave_end;
		sleep(1);
	}
	$node->kill9;
	$done_kills++;
	# the old server's children exit when they notice; until then its
	# shared memory is in use and a new postmaster refuses to start
	my $up = 0;
	for (my $try = 0; $try < 120 && !$up; $try++)
	{
		$up = $node->start(fail_ok => 1);
		next if $up;
		# a failed start leaves the dead postmaster's pid recorded: forget it
		$node->{_pid} = undef;
		sleep(1);
	}
	die "the server did not come back after kill $kill" unless $up;
	wait_for_workers($node, 2);
}
start_wave($total - $started);
is($done_kills, $kills, "the postmaster was SIGKILLed $kills times");
is($started, $total, "$total executions were started");

ok(poll_until_true($node,
	"SELECT count(*) = 0 FROM allma.executions WHERE flow_id = 'soak' AND status = 'RUNNING'", 900),
	'every execution is terminal');
is(q1("SELECT count(*) FROM allma.executions WHERE flow_id = 'soak' AND status = 'COMPLETED'"),
	$total, 'every execution completed');
is(q1("SELECT count(*) FROM soak_effects"), 3 * $total,
	'every SQL effect happened (and the unique key shows none happened twice)');
is(q1(q{SELECT count(*) FROM (SELECT FROM allma.step_executions h
   JOIN allma.executions x USING (execution_id) WHERE x.flow_id = 'soak' AND h.status = 'COMPLETED'
   GROUP BY h.execution_id, h.path_id, h.step_instance_id HAVING count(*) > 1) d}),
	'0', 'no step was recorded as completed twice (so no execution ended twice)');
is(q1(q{SELECT count(*) FROM allma.step_executions h JOIN allma.executions x USING (execution_id)
   WHERE x.flow_id = 'soak' AND h.status = 'COMPLETED' AND h.step_instance_id = 'done'}),
	$total, 'each execution ended once');

my %keys;
my $requests = 0;
for my $prefix ('/echo/soak/', '/echo/soakb/')
{
	for my $entry (@{ mock_json($base, "/__log?path=$prefix") })
	{
		$requests++;
		push @{ $keys{ $entry->{path} } }, $entry->{headers}{'idempotency-key'} // '';
	}
}
my @repeated = grep { @{ $keys{$_} } > 1 } keys %keys;
my @bad = grep { my $k = $keys{$_}; grep { $_ ne $k->[0] || $_ eq '' } @$k } keys %keys;
is(scalar(@bad), 0, "every repeated request carries its first send's Idempotency-Key ("
	  . scalar(@repeated) . " requests repeated, $requests sent)");
ok(scalar(keys %keys) >= $total, 'every execution made its HTTP calls');
diag("soak: $total executions, $kills kills, $requests requests, " . scalar(@repeated) . " repeated");

$node->stop;
done_testing();
