# Shared helpers for allma's TAP tests.
package AllmaTest;

use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Exporter 'import';

our @EXPORT = qw(allma_node wait_for_workers linear_flow poll_until_true start_mock stop_mock);

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
