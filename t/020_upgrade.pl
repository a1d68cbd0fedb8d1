# Upgrading allma 1.0 to the current version with executions in flight.
#
# Full mode (the git history is there): allma 1.0 (commit 88e6da2, the
# shipped release) is built into a private copy of PostgreSQL, a cluster
# runs it, and executions are held mid-flight: SQL steps and the branches of
# a fork blocked on an advisory lock the test holds, a path waiting on a
# delay timer, an API_CALL in flight against the mock's slow endpoint.  The
# server is stopped, switched to the current build's installation and
# started again with the extension still at 1.0: the schema gate must keep
# the workers idle, show it in allma_worker_status(), say once in the log
# what to run, and log no errors.  After ALTER EXTENSION allma UPDATE the
# workers resume by themselves and every execution completes exactly once,
# each effect written exactly once.
#
# Fallback (a shallow clone without that commit): the current build with
# CREATE EXTENSION allma VERSION '1.0', executions started while the gate
# holds, then the update.
#
# The test asserts behaviour, not the upgrade script's contents: later
# sections of allma--1.0--1.1.sql keep it working as long as an upgraded
# installation behaves.
use strict;
use warnings;
use File::Basename qw(dirname);
use File::Spec;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use JSON::PP;
use lib 't';
use AllmaTest;

my $src = $ENV{ALLMA_SRC} // '.';
my $shipped = '88e6da2';
my $lock_key = 20201;

# the installation the test runs (PATH): the current build
my $current_bindir = `pg_config --bindir`;
chomp $current_bindir;
my $current_install = dirname($current_bindir);

# git runs as the test's user on a checkout another user may own
my @git = ('git', '-c', 'safe.directory=*', '-C', $src);
my $full = system(@git, 'cat-file', '-e', "$shipped^{commit}") == 0
  && !$ENV{ALLMA_TEST_UPGRADE_FALLBACK};

my $base = start_mock();
my $conf = qq{
shared_preload_libraries = 'allma'
allma.database_name = 'postgres'
allma.max_workers = 2
allma.http_allowlist = '127.0.0.1'
allma.sql_step_timeout = 0
max_worker_processes = 16
log_min_messages = info
};

# build_shipped(): allma 1.0 built and installed into a private copy of
# PostgreSQL in a temporary directory; returns that installation's path
sub build_shipped
{
	my $tmp = File::Spec->rel2abs(PostgreSQL::Test::Utils::tempdir());
	my $log = "$tmp/build.log";
	mkdir "$tmp/src" or die "mkdir: $!";
	system("@git archive $shipped | tar -x -C $tmp/src") == 0
	  or die "git archive $shipped failed";
	my $pg_config = `$src/scripts/dev-pgroot.sh $tmp/pg 2>>$log`;
	chomp $pg_config;
	die "dev-pgroot.sh failed: " . slurp_file($log) unless -x $pg_config;
	# the copy may carry an allma installed into the system's PostgreSQL
	my $pkglibdir = `$pg_config --pkglibdir`;
	my $sharedir = `$pg_config --sharedir`;
	chomp($pkglibdir, $sharedir);
	unlink glob("$pkglibdir/allma.so $sharedir/extension/allma*");
	system("make -C $tmp/src -s -j2 PG_CONFIG=$pg_config install >>$log 2>&1") == 0
	  or die "building allma $shipped failed:\n" . slurp_file($log);
	return dirname(dirname($pg_config));
}

my $node;
if ($full)
{
	note "full mode: allma 1.0 built from commit $shipped";
	my $install_10 = build_shipped();
	$node = PostgreSQL::Test::Cluster->new('upgrade', install_path => $install_10);
	$node->init;
	$node->append_conf('postgresql.conf', $conf);
	$node->start;
	$node->safe_psql('postgres', 'CREATE EXTENSION allma');
	is($node->safe_psql('postgres', "SELECT extversion FROM pg_extension WHERE extname = 'allma'"),
		'1.0', 'the cluster runs allma 1.0');
	wait_for_workers($node, 2);
}
else
{
	note "fallback mode: commit $shipped is not in the history (a shallow clone?); "
	  . "CREATE EXTENSION allma VERSION '1.0' on the current build";
	$node = PostgreSQL::Test::Cluster->new('upgrade');
	$node->init;
	$node->append_conf('postgresql.conf', $conf);
	$node->append_conf('postgresql.conf', 'allma.allow_superuser_sql_steps = on');
	$node->start;
	$node->safe_psql('postgres', "CREATE EXTENSION allma VERSION '1.0'");
	wait_for_workers($node, 2);
}

sub q1 { return $node->safe_psql('postgres', $_[0]); }

sub mock_log
{
	my ($key) = @_;
	return JSON::PP->new->decode(
		`python3 -c "import json,urllib.request; print(json.dumps(json.load(urllib.request.urlopen('$base/__log?key=$key'))))"`);
}

# Every effect has a unique key: a step that ran twice would fail its
# execution, one that was lost would leave a gap.  The locked steps wait
# for the test's advisory lock (shared, so they do not wait for each other).
q1(qq{
CREATE TABLE effects (execution_id uuid, what text, PRIMARY KEY (execution_id, what));
GRANT INSERT ON effects TO PUBLIC;
CREATE FUNCTION upgrade_effect(e uuid, what text, locked boolean) RETURNS void
LANGUAGE plpgsql AS \$\$
BEGIN
	IF locked THEN
		PERFORM pg_advisory_xact_lock_shared($lock_key);
	END IF;
	INSERT INTO effects VALUES (e, what);
END \$\$;
});

sub effect_step
{
	my ($what, $locked, $extra) = @_;
	$extra //= '';
	my $l = $locked ? 'true' : 'false';
	return qq{{"stepType": "DATA_SAVE", "moduleIdentifier": "system/sql-execute",
		"customConfig": {"sql": "SELECT upgrade_effect(\$1::uuid, \$2, $l)",
		                 "parameters": ["\$.flow_variables.flowExecutionId", "$what"]} $extra}};
}

sub create_flow
{
	my ($id, $steps, $start) = @_;
	q1("SELECT allma_create_flow(\$flow\${\"id\": \"$id\", \"startStepInstanceId\": \"$start\", \"steps\": {$steps}}\$flow\$)");
}

# a SQL step blocked on the lock, then an unlocked one
create_flow('locked', '"s1": ' . effect_step('locked', 1, ', "defaultNextStepInstanceId": "s2"')
	  . ', "s2": ' . effect_step('after-locked', 0), 's1');
# a fork whose three branches block on the lock, then the join
create_flow('fork', qq{"fork": {"stepType": "PARALLEL_FORK_MANAGER", "itemsPath": "\$.items",
	"parallelBranches": [{"branchId": "b", "stepInstanceId": "branch"}],
	"defaultNextStepInstanceId": "joined"},
	"branch": {"stepType": "DATA_SAVE", "moduleIdentifier": "system/sql-execute",
		"customConfig": {"sql": "SELECT upgrade_effect(\$1::uuid, 'branch-' || \$2, true)",
		                 "parameters": ["\$.flow_variables.flowExecutionId", "\$.currentItem"]}},
	"joined": } . effect_step('joined', 0), 'fork');
# a path waiting on a one-hour timer
create_flow('timer', qq{"wait": {"stepType": "NO_OP", "delay": {"milliseconds": 3600000, "position": "before"},
	"defaultNextStepInstanceId": "fired"}, "fired": } . effect_step('fired', 0), 'wait');
# an API_CALL to the mock's slow endpoint (8 s), then an effect
create_flow('api', qq{"call": {"stepType": "API_CALL", "apiUrlTemplate": {"template": "$base/echo?latency_ms=8000"},
	"apiHttpMethod": "POST", "defaultNextStepInstanceId": "answered"},
	"answered": } . effect_step('answered', 0), 'call');

my %exec;
my $lock_holder = $node->background_psql('postgres');

sub hold_lock { $lock_holder->query_safe("SELECT pg_advisory_lock($lock_key)"); }

sub start_all
{
	$exec{timer} = q1("SELECT allma_start_flow('timer')");
	$exec{api} = q1("SELECT allma_start_flow('api')");
	$exec{fork} = q1("SELECT allma_start_flow('fork', '{\"items\": [1, 2, 3]}')");
	$exec{locked} = q1("SELECT allma_start_flow('locked')");
}

my $exec_list;
if ($full)
{
	# hold everything mid-flight on 1.0: the timer and the request first
	# (the locked steps will occupy both workers)
	hold_lock();
	$exec{timer} = q1("SELECT allma_start_flow('timer')");
	$exec{api} = q1("SELECT allma_start_flow('api')");
	poll_until_true($node, "SELECT status = 'INFLIGHT' FROM allma.execution_paths WHERE execution_id = '$exec{api}'")
	  or die 'the API_CALL did not go in flight';
	for (my $i = 0; $i < 600 && !@{ mock_log("$exec{api}/call/1") }; $i++)
	{
		select(undef, undef, undef, 0.1);
	}
	is(scalar(@{ mock_log("$exec{api}/call/1") }), 1, '1.0: the API_CALL request reached the mock');
	poll_until_true($node, "SELECT status = 'READY' AND step_instance_id = 'wait' AND due_at > now() + interval '30 min'
		FROM allma.execution_paths WHERE execution_id = '$exec{timer}'")
	  or die 'the timer path is not waiting';
	$exec{fork} = q1("SELECT allma_start_flow('fork', '{\"items\": [1, 2, 3]}')");
	poll_until_true($node, "SELECT count(*) = 3 FROM allma.execution_paths WHERE execution_id = '$exec{fork}' AND parent_path_id IS NOT NULL")
	  or die 'the fork did not start its branches';
	# a worker holds the branches, blocked; the other one is free for "locked"
	poll_until_true($node, "SELECT count(*) >= 1 FROM pg_locks WHERE locktype = 'advisory' AND objid = $lock_key AND NOT granted")
	  or die 'the branches are not waiting for the lock';
	$exec{locked} = q1("SELECT allma_start_flow('locked')");
	poll_until_true($node, "SELECT count(*) >= 2 FROM pg_locks WHERE locktype = 'advisory' AND objid = $lock_key AND NOT granted")
	  or die 'the locked steps are not waiting for the lock';
	$exec_list = join(', ', map { "'$_'" } values %exec);
	is(q1("SELECT count(*) FROM effects"), '0', '1.0: nothing held has written its effect');
	is(q1("SELECT count(*) FROM allma.executions WHERE execution_id IN ($exec_list) AND status = 'RUNNING'"),
		'4', '1.0: all four executions are in flight');

	# the binary upgrade: stop, switch to the current build, start.  An
	# immediate stop: a fast one terminates the lock holder's session first,
	# and a worker blocked on that lock could then finish its held step
	# before its own termination arrives (seen in CI)
	$node->stop('immediate');
	eval { $lock_holder->quit; };
	$node->{_install_path} = $current_install;
	# the held executions were started by the bootstrap superuser; 1.1 runs
	# their SQL steps only where that is allowed (t/080 tests the default,
	# docs/security.md's upgrade notes say what to do)
	$node->append_conf('postgresql.conf', 'allma.allow_superuser_sql_steps = on');
}

# the log since the new binaries started (in fallback mode: all of it)
my $log_offset = $full ? -s $node->logfile : 0;
$node->start if $full;
wait_for_workers($node, 2);
is(q1("SELECT extversion FROM pg_extension WHERE extname = 'allma'"), '1.0',
	'the extension is still at 1.0');
if (!$full)
{
	start_all();
	$exec_list = join(', ', map { "'$_'" } values %exec);
}

# --- the gate ---------------------------------------------------------------
poll_until_true($node, "SELECT count(*) = 2 AND bool_and(state = 'waiting for ALTER EXTENSION UPDATE')
	FROM allma_worker_status()")
  or die 'the workers do not show the gate';
pass('allma_worker_status() shows the workers waiting for ALTER EXTENSION UPDATE');

# Watch the gated workers for a few seconds (several passes each, at most
# one second apart): no claim, no lock wait, no step recorded, no error.
my $steps_before = q1("SELECT count(*) FROM allma.step_executions WHERE execution_id IN ($exec_list)");
my $violation = '';
for (my $i = 0; $i < 10 && $violation eq ''; $i++)
{
	select(undef, undef, undef, 0.3);
	$violation = q1(qq{SELECT concat_ws(', ',
		CASE WHEN (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = $lock_key AND NOT granted) > 0
			 THEN 'a worker waits for the lock' END,
		CASE WHEN (SELECT count(*) FROM allma.step_executions WHERE execution_id IN ($exec_list)) <> $steps_before
			 THEN 'a step ran' END,
		CASE WHEN (SELECT count(*) FROM effects) > 0 THEN 'an effect was written' END,
		CASE WHEN (SELECT count(*) FROM allma.executions WHERE execution_id IN ($exec_list) AND status <> 'RUNNING') > 0
			 THEN 'an execution ended' END)});
}
is($violation, '', 'the gated workers claim nothing');
if ($full)
{
	is(q1("SELECT status FROM allma.execution_paths WHERE execution_id = '$exec{api}'"), 'INFLIGHT',
		'the request in flight at the upgrade waits for the update');
}
my $gated_log = substr(slurp_file($node->logfile), $log_offset);
my @notices = $gated_log =~ /allma's workers are idle: extension "allma" in database "postgres" is at version 1\.0, but this allma library needs version 1\.1/g;
is(scalar(@notices), 1, 'the gate is logged once');
like($gated_log, qr/HINT:  Run ALTER EXTENSION allma UPDATE in database "postgres"/, 'the log says what to run');
my @errors = grep { /\b(ERROR|WARNING|FATAL|PANIC):/ } split /\n/, $gated_log;
is(join("\n", @errors), '', 'no errors in the log while the gate holds');

# --- the update -------------------------------------------------------------
# the locked steps block (again) until the test lets them go
$lock_holder = $node->background_psql('postgres');
hold_lock();
$log_offset = -s $node->logfile;
q1('ALTER EXTENSION allma UPDATE');
is(q1("SELECT extversion FROM pg_extension WHERE extname = 'allma'"), '1.1', 'extversion is 1.1');
poll_until_true($node, "SELECT count(*) = 2 AND bool_and(state IN ('idle', 'busy')) FROM allma_worker_status()", 60)
  or die 'the workers did not resume';
pass('the workers resume after the update without a restart');
poll_until_true($node, "SELECT count(*) >= 1 FROM pg_locks WHERE locktype = 'advisory' AND objid = $lock_key AND NOT granted", 60)
  or die 'the locked steps did not run again';
pass('the held steps run again');
like(substr(slurp_file($node->logfile), $log_offset), qr/allma's workers resume: extension "allma" is at version 1\.1/,
	'the log says the workers resume');

# release the holds: the lock, and the timer, made due now rather than in
# an hour once its path waits on it
poll_until_true($node, "SELECT status = 'READY' AND step_instance_id = 'wait' AND due_at > now() + interval '30 min'
	FROM allma.execution_paths WHERE execution_id = '$exec{timer}'")
  or die 'the timer path is not waiting';
$lock_holder->query_safe("SELECT pg_advisory_unlock($lock_key)");
$lock_holder->quit;
q1("UPDATE allma.execution_paths SET due_at = now() WHERE execution_id = '$exec{timer}' AND status = 'READY'");

poll_until_true($node, "SELECT count(*) = 4 FROM allma.executions WHERE execution_id IN ($exec_list) AND status <> 'RUNNING'", 180)
  or die 'the executions did not finish after the update';
is(q1("SELECT string_agg(status, ',') FROM allma.executions WHERE execution_id IN ($exec_list)"),
	'COMPLETED,COMPLETED,COMPLETED,COMPLETED', 'every execution completes');

my %want = (
	locked => 'after-locked,locked',
	fork => 'branch-1,branch-2,branch-3,joined',
	timer => 'fired',
	api => 'answered');
for my $flow (sort keys %want)
{
	is(q1("SELECT string_agg(what, ',' ORDER BY what) FROM effects WHERE execution_id = '$exec{$flow}'"),
		$want{$flow}, "$flow: each effect written exactly once");
}
is(q1("SELECT count(*) FROM allma.step_executions WHERE execution_id IN ($exec_list) AND status <> 'COMPLETED'"),
	'0', 'no step failed or was retried');
is(q1("SELECT string_agg(step_instance_id || ':' || n, ',' ORDER BY step_instance_id) FROM
	(SELECT step_instance_id, count(*) AS n FROM allma.step_executions WHERE execution_id = '$exec{api}' GROUP BY 1) s"),
	'answered:1,call:1', 'api: each step recorded once');
my $sent = mock_log("$exec{api}/call/1");
cmp_ok(scalar(@$sent), '>=', $full ? 2 : 1,
	$full ? 'the request lost at the upgrade was sent again' : 'the request was sent');
is(scalar(grep { ($_->{headers}{'Idempotency-Key'} // $_->{headers}{'idempotency-key'} // '') eq "$exec{api}/call/1" } @$sent),
	scalar(@$sent), 'always with the same Idempotency-Key');

$node->stop;
ok(stop_mock(), 'the mock server stops cleanly');
done_testing();
