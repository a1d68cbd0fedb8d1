# Shared helpers for allma's TAP tests.
package AllmaTest;

use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Exporter 'import';

our @EXPORT = qw(allma_node wait_for_workers linear_flow poll_until_true start_mock stop_mock
  mock_json poll_effect count_in_log worker_pids hold_advisory_lock release_advisory_lock
  wait_for_lock_waiters wait_for_setting);

# allma_node(name, extra_conf, create => SQL): an initialized, started
# cluster with allma preloaded and the extension created in "postgres" (by
# "CREATE EXTENSION allma", or the given statement).
sub allma_node
{
	my ($name, $extra, %opts) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init;
	$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'allma'
allma.database_name = 'postgres'
allma.max_workers = 2
max_worker_processes = 16
log_min_messages = info
restart_after_crash = on
# the tests start flows with SQL steps as the bootstrap superuser; the
# default (off) is tested by t/080_security_steps.pl, which sets it again
allma.allow_superuser_sql_steps = on
});
	$node->append_conf('postgresql.conf', $extra) if defined $extra;
	$node->start;
	$node->safe_psql('postgres', $opts{create} // 'CREATE EXTENSION allma');
	my ($workers) = (defined $extra && $extra =~ /allma\.max_workers\s*=\s*(\d+)/) ? ($1) : (2);
	wait_for_workers($node, $workers);
	return $node;
}

# wait_for_workers(node, n): until n allma workers are running
sub wait_for_workers
{
	my ($node, $n) = @_;
	$node->poll_query_until('postgres',
		"SELECT count(*) >= $n FROM pg_stat_activity WHERE backend_type = 'allma worker'")
	  or die "allma workers did not start";
}

# poll_until_true(node, sql): like poll_query_until, but survives the server
# being in crash recovery (connections refused) while it polls.
sub poll_until_true
{
	my ($node, $sql, $timeout) = @_;
	$timeout //= 180;
	for (my $i = 0; $i < $timeout * 5; $i++)
	{
		my ($ret, $out, $err) = $node->psql('postgres', $sql, on_error_stop => 1);
		return 1 if $ret == 0 && $out eq 't';
		select(undef, undef, undef, 0.2);
	}
	return 0;
}

# start_mock(smtp => 1): starts mock/mock_server.py on 127.0.0.1 (ephemeral
# ports), returns its base URL (and, with smtp => 1, the SMTP port as a
# second value); the server is stopped when the test exits.
my $mock_handle;
my $mock_port_file;
sub start_mock
{
	my (%opts) = @_;
	require IPC::Run;
	require JSON::PP;
	my $src = $ENV{ALLMA_SRC} // '.';
	my $tmp = PostgreSQL::Test::Utils::tempdir();
	my $port_file = "$tmp/mock.port";
	my ($out, $err) = ('', '');
	$mock_port_file = $port_file;
	$mock_handle = IPC::Run::start(
		[ 'python3', "$src/mock/mock_server.py", '--port', '0', '--port-file', $port_file,
		  '--smtp-port', $opts{smtp} ? '0' : '-1' ],
		'>', \$out, '2>', \$err);
	for (my $i = 0; $i < 300; $i++)
	{
		if (-s $port_file)
		{
			my $info = eval { JSON::PP->new->decode(PostgreSQL::Test::Utils::slurp_file($port_file)) };
			next unless $info && $info->{http};
			my $base = "http://127.0.0.1:$info->{http}";
			return wantarray ? ($base, $info->{smtp}) : $base;
		}
		select(undef, undef, undef, 0.1);
	}
	die "mock server did not start: $err";
}
END { $mock_handle->signal('TERM') if $mock_handle && $mock_handle->pumpable; }

# stop_mock(): stops the mock server; true when it exited cleanly and
# removed its port file
sub stop_mock
{
	return 0 unless $mock_handle;
	$mock_handle->signal('TERM');
	my $clean = $mock_handle->finish;
	$mock_handle = undef;
	return $clean && !-e $mock_port_file;
}

# mock_json(base, path): the decoded JSON answer of the mock server to GET
# path (e.g. "/__log?path=/echo/crash", "/__mail"); dies on any other answer
sub mock_json
{
	my ($base, $path) = @_;
	require HTTP::Tiny;
	require JSON::PP;
	my $res = HTTP::Tiny->new(timeout => 60)->get("$base$path");
	die "mock GET $path: $res->{status} $res->{content}" unless $res->{success};
	return JSON::PP->new->decode($res->{content});
}

# poll_effect(code, tries): calls code until it returns true (at most tries
# times, default 300, 0.2 s apart); returns whether it did.  For settings
# that running workers pick up on a reload: poll for their effect instead of
# sleeping and hoping the workers have reloaded.
sub poll_effect
{
	my ($code, $tries) = @_;
	$tries //= 300;
	for (my $i = 0; $i < $tries; $i++)
	{
		return 1 if $code->();
		select(undef, undef, undef, 0.2);
	}
	return 0;
}

# count_in_log(node, regexp, offset): how many lines of the server log from
# byte offset on match regexp
sub count_in_log
{
	my ($node, $re, $offset) = @_;
	my $log = PostgreSQL::Test::Utils::slurp_file($node->logfile, $offset // 0);
	return scalar(grep { /$re/ } split /\n/, $log);
}

# worker_pids(node): the allma workers' PIDs, sorted, comma-separated
sub worker_pids
{
	my ($node) = @_;
	return $node->safe_psql('postgres',
		"SELECT string_agg(pid::text, ',' ORDER BY pid) FROM pg_stat_activity WHERE backend_type = 'allma worker'");
}

# hold_advisory_lock(node, key): a background psql session
# (PostgreSQL::Test::BackgroundPsql) holding the advisory lock key.  A step
# whose SQL takes pg_advisory_xact_lock_shared(key) waits for it, holding
# its worker mid-step: a test can stop, crash or inspect the server while
# the work is certainly not done, on a machine of any speed.
sub hold_advisory_lock
{
	my ($node, $key) = @_;
	my $session = $node->background_psql('postgres');
	$session->query_safe("SELECT pg_advisory_lock($key)");
	return $session;
}

# release_advisory_lock(session, key): lets the waiting steps go on; a
# session that died with its server (a crash, a restart) is only reaped
sub release_advisory_lock
{
	my ($session, $key) = @_;
	eval { $session->query_safe("SELECT pg_advisory_unlock($key)"); };
	eval { $session->quit; };
	return;
}

# wait_for_lock_waiters(node, key, n): until n allma workers wait for the
# advisory lock key
sub wait_for_lock_waiters
{
	my ($node, $key, $n) = @_;
	$node->poll_query_until('postgres', qq{
		SELECT count(*) >= $n FROM pg_locks l JOIN pg_stat_activity a USING (pid)
		 WHERE l.locktype = 'advisory' AND l.objid = $key AND NOT l.granted
		   AND a.backend_type = 'allma worker'})
	  or die "$n allma workers did not come to wait for advisory lock $key";
	return;
}

# wait_for_setting(node, name, value, nworkers): after a configuration
# reload, waits until each of the nworkers (default 2) allma workers runs
# with setting name = value.  Workers apply a reload when they next wake up,
# so a test must not assume it has happened.  A SQL step runs inside a
# worker and reads that worker's own setting; each round holds every worker
# inside such a step at once (an advisory lock the test holds), so that each
# worker answers, not only the one quickest to claim.  Starts executions of
# a flow "allma_test_setting_probe".
my $probe_lock = 4999;
sub wait_for_setting
{
	my ($node, $name, $value, $nworkers) = @_;
	$nworkers //= 2;
	$node->safe_psql('postgres', qq{
SELECT allma_create_flow('{"id": "allma_test_setting_probe", "startStepInstanceId": "probe", "steps": {
  "probe": {"stepType": "DATA_LOAD", "moduleIdentifier": "system/sql-query",
            "customConfig": {"sql": "SELECT pg_backend_pid() AS pid, current_setting(\$1) AS value FROM pg_advisory_xact_lock_shared($probe_lock)",
                             "parameters": ["\$.name"]}}}}')
 WHERE NOT EXISTS (SELECT FROM allma.flows WHERE flow_id = 'allma_test_setting_probe')});
	for (my $round = 0; $round < 100; $round++)
	{
		my $holder = hold_advisory_lock($node, $probe_lock);
		my @ids;
		for my $n (1 .. $nworkers)
		{
			push @ids, $node->safe_psql('postgres',
				"SELECT allma_start_flow('allma_test_setting_probe', jsonb_build_object('name', '$name'))");
			wait_for_lock_waiters($node, $probe_lock, $n);
		}
		release_advisory_lock($holder, $probe_lock);
		my %seen;
		for my $e (@ids)
		{
			my $row = $node->safe_psql('postgres', qq{
				SELECT allma_wait('$e', '60 s'),
				       (SELECT (output->'steps_output'->'probe'->'rows'->0->>'pid') || '=' ||
				               (output->'steps_output'->'probe'->'rows'->0->>'value')
				          FROM allma.executions WHERE execution_id = '$e')});
			my (undef, $pid, $v) = $row =~ /^(\w+)\|(\d+)=(.*)$/s or die "setting probe failed: $row";
			$seen{$pid} = $v;
		}
		return if keys(%seen) == $nworkers && !grep { $_ ne $value } values %seen;
		select(undef, undef, undef, 0.2);
	}
	die "allma workers did not apply $name = '$value'";
}

# linear_flow(id, nsteps, delay_ms): JSON of a flow of nsteps NO_OP steps
sub linear_flow
{
	my ($id, $n, $delay) = @_;
	my @steps;
	for my $i (1 .. $n)
	{
		my $next = $i < $n ? qq{, "defaultNextStepInstanceId": "s@{[$i+1]}"} : '';
		my $d = $delay ? qq{, "delay": {"milliseconds": $delay, "position": "after"}} : '';
		push @steps, qq{"s$i": {"stepType": "NO_OP"$next$d}};
	}
	return '{"id": "' . $id . '", "startStepInstanceId": "s1", "steps": {'
	  . join(', ', @steps) . '}}';
}

1;
