# Worker settings and their effects: allma.http_timeout (the default total
# timeout of a request, which a step's customConfig.timeoutMs overrides),
# allma.http_connect_timeout (against a loopback port whose accept queue is
# full, so that connecting hangs), allma.batch_size and
# allma.max_chain_steps (which steps commit together: the history rows one
# transaction wrote share their xmin), and allma.naptime (how long an idle
# worker sleeps when nothing wakes it).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Socket;
use IO::Socket::INET;
use Time::HiRes ();
use lib 't';
use AllmaTest;

my $base = start_mock();
my $node = allma_node('settings', "allma.http_allowlist = '127.0.0.1'\nallma.http_timeout = 500ms\n");

sub q1 { return $node->safe_psql('postgres', $_[0]); }

sub api_flow
{
	my ($id, $url, $extra) = @_;
	$extra //= '';
	q1(qq{SELECT allma_create_flow('{"id": "$id", "startStepInstanceId": "call", "steps": {
  "call": {"stepType": "API_CALL", "apiUrlTemplate": {"template": "$url"}, "apiHttpMethod": "GET",
           "onError": {"retries": {"count": 0}} $extra}}}')});
}

# finish(flow): the execution's status|error message once terminal
sub finish
{
	my ($flow) = @_;
	my $e = q1("SELECT allma_start_flow('$flow')");
	q1("SELECT allma_wait('$e', '120 s')");
	return (q1("SELECT status || '|' || coalesce(error->>'errorMessage', '') FROM allma.executions WHERE execution_id = '$e'"), $e);
}

# ---------------------------------------------------------------------------
# allma.naptime: an idle worker wakes up after at most naptime, even when
# nothing wakes it.  With naptime = 10 s: a path made due by a plain UPDATE
# (which wakes no worker; here a step delayed by an hour) runs no sooner
# than 10 s after the workers went to sleep.  With naptime = 200 ms: idle
# workers start a pass (pg_stat_activity.query_start) several times a second.
# ---------------------------------------------------------------------------
q1(q{SELECT allma_create_flow('{"id": "nap", "startStepInstanceId": "s1", "steps": {
  "s1": {"stepType": "NO_OP", "delay": {"milliseconds": 3600000, "position": "after"},
         "defaultNextStepInstanceId": "s2"},
  "s2": {"stepType": "NO_OP"}}}')});

$node->append_conf('postgresql.conf', "allma.naptime = 10s\n");
$node->reload;
wait_for_setting($node, 'allma.naptime', '10s');
my ($nap, $t0) = split /\|/, q1("SELECT allma_start_flow('nap') || '|' || clock_timestamp()");
$node->poll_query_until('postgres',
	"SELECT step_instance_id = 's2' AND due_at > now() + interval '30 min' FROM allma.execution_paths WHERE execution_id = '$nap'")
  or die 's1 did not run';
# both workers asleep: waiting, after a pass that began after the start
# (which saw s2 an hour away), and still in that same wait half a second
# later (not just passing through a wait whose latch is already set)
my $sleep_sql = qq{SELECT count(*) FILTER (WHERE wait_event = 'Extension' AND query_start > '$t0')
	|| '|' || string_agg(query_start::text, ',' ORDER BY pid) || '|' || min(query_start)
	FROM pg_stat_activity WHERE backend_type = 'allma worker'};
poll_effect(sub {
	my ($n1, $starts1, $min1) = split /\|/, q1($sleep_sql);
	return 0 unless $n1 == 2;
	select(undef, undef, undef, 0.5);
	my ($n2, $starts2) = split /\|/, q1($sleep_sql);
	return $n2 == 2 && $starts1 eq $starts2;
}) or die 'the workers did not go to sleep';
# watch the sleeping workers for 3 s: with naptime = 10 s they start no pass
# of their own (with the default of 1 s they would start about six).  A
# latch may always be set for some other reason (PostgreSQL allows spurious
# wake-ups), so up to two passes are tolerated; that cannot hide a naptime
# that is ignored.
my %seen;
for my $row (split /\n/, q1("SELECT pid || '|' || query_start FROM pg_stat_activity WHERE backend_type = 'allma worker'"))
{
	$seen{$row} = 1;
}
my $passes = 0;
my $window_end = Time::HiRes::time() + 3;
while (Time::HiRes::time() < $window_end)
{
	select(undef, undef, undef, 0.1);
	for my $row (split /\n/, q1("SELECT pid || '|' || query_start FROM pg_stat_activity WHERE backend_type = 'allma worker'"))
	{
		$passes++ unless $seen{$row}++;
	}
}
cmp_ok($passes, '<=', 2, 'with allma.naptime = 10 s, idle workers start no passes of their own for 3 s');
q1("UPDATE allma.execution_paths SET due_at = now() WHERE execution_id = '$nap'");
is(q1("SELECT allma_wait('$nap', '120 s')"), 'COMPLETED', 'a path made due by an UPDATE runs');

$node->append_conf('postgresql.conf', "allma.naptime = 200ms\n");
$node->reload;
wait_for_setting($node, 'allma.naptime', '200ms');
# the passes idle workers start: with naptime = 200 ms, two of them come
# less than 0.7 s apart (with the default of 1 s, or 10 s, none would; the
# first pass seen is left out, as something else may have woken it)
my %starts;
for (my $i = 0; $i < 100; $i++)
{
	for my $row (split /\n/, q1("SELECT pid || '|' || extract(epoch FROM query_start) FROM pg_stat_activity WHERE backend_type = 'allma worker'"))
	{
		my ($pid, $start) = split /\|/, $row;
		$starts{$pid}{$start} = 1;
	}
	last if keys(%starts) == 2 && !grep { keys(%$_) < 7 } values %starts;
	select(undef, undef, undef, 0.1);
}
my $min_gap;
for my $pid (keys %starts)
{
	my @t = sort { $a <=> $b } keys %{ $starts{$pid} };
	for my $i (2 .. $#t)
	{
		$min_gap = $t[$i] - $t[$i - 1] if !defined $min_gap || $t[$i] - $t[$i - 1] < $min_gap;
	}
}
cmp_ok($min_gap // 99, '<', 0.7,
	'with allma.naptime = 200 ms, idle workers wake up more often than once a second');
$nap = q1("SELECT allma_start_flow('nap')");
$node->poll_query_until('postgres',
	"SELECT step_instance_id = 's2' FROM allma.execution_paths WHERE execution_id = '$nap'")
  or die 's1 did not run';
q1("UPDATE allma.execution_paths SET due_at = now() WHERE execution_id = '$nap'");
is(q1("SELECT allma_wait('$nap', '120 s')"), 'COMPLETED', 'and a path made due by an UPDATE runs');
$node->append_conf('postgresql.conf', "allma.naptime = 1s\n");
$node->reload;

# ---------------------------------------------------------------------------
# allma.http_timeout = 500 ms
# ---------------------------------------------------------------------------
api_flow('slow', "$base/echo?latency_ms=20000");
my ($outcome) = finish('slow');
like($outcome, qr/^FAILED\|request timed out after 500 ms /,
	'allma.http_timeout bounds a request without a timeout of its own');
api_flow('slow-own', "$base/echo?latency_ms=1500", ', "customConfig": {"timeoutMs": 60000}');
($outcome) = finish('slow-own');
is($outcome, 'COMPLETED|', 'a step\'s customConfig.timeoutMs overrides allma.http_timeout');

# ---------------------------------------------------------------------------
# allma.http_connect_timeout = 300 ms: a listening socket that never accepts,
# its accept queue filled, so that the kernel drops further connection
# attempts (loopback only).  Set for this part only: a machine busy enough
# could make a real connection take that long.
# ---------------------------------------------------------------------------
$node->append_conf('postgresql.conf', "allma.http_connect_timeout = 300ms\n");
$node->reload;
wait_for_setting($node, 'allma.http_connect_timeout', '300ms');
socket(my $listener, PF_INET, SOCK_STREAM, 0) or die "socket: $!";
bind($listener, pack_sockaddr_in(0, inet_aton('127.0.0.1'))) or die "bind: $!";
listen($listener, 0) or die "listen: $!";
my ($dead_port) = unpack_sockaddr_in(getsockname($listener));
my @fillers = map {
	IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $dead_port, Blocking => 0)
} 1 .. 4;
my $probe = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $dead_port, Timeout => 2);
ok(!$probe && $@ =~ /timeout/, "connecting to port $dead_port hangs") or diag("connect: $@");
api_flow('unreachable', "http://127.0.0.1:$dead_port/x", ', "customConfig": {"timeoutMs": 60000}');
my $e;
($outcome, $e) = finish('unreachable');
is($outcome, 'FAILED|request timed out while connecting: no connection within 300 ms (allma.http_connect_timeout)',
	'allma.http_connect_timeout bounds connecting, well within the request\'s timeout');
is(q1("SELECT error->'errorDetails'->>'timedOut' FROM allma.executions WHERE execution_id = '$e'"), 'true',
	'as a timeout');
cmp_ok(q1("SELECT extract(epoch FROM ended_at - started_at) FROM allma.step_executions WHERE execution_id = '$e'"),
	'<', 9, 'the step ended long before the default connect timeout (10 s) or its own (60 s)');
$node->append_conf('postgresql.conf', "allma.http_connect_timeout = 10s\n");
$node->reload;

# ---------------------------------------------------------------------------
# allma.batch_size and allma.max_chain_steps: the history rows written in
# one transaction share their xmin, so grouping them by xmin shows how many
# executions a pass claimed and how many steps of each it chained.  12
# executions of 6 NO_OP steps are committed at once; the first pass of a
# worker claims a full batch and chains as far as allowed.
# ---------------------------------------------------------------------------
q1("SELECT allma_create_flow('" . linear_flow('six', 6) . "')");

# passes(): "most executions in one transaction,most steps of one execution
# in one transaction" for 12 new executions
sub passes
{
	my $ids = q1("SELECT string_agg(quote_literal(allma_start_flow('six')), ',') FROM generate_series(1, 12)");
	is(q1("SELECT count(*) FROM unnest(ARRAY[$ids]::uuid[]) e WHERE allma_wait(e, '120 s') = 'COMPLETED'"), '12',
		'12 executions complete');
	is(q1("SELECT count(*) FROM allma.step_executions WHERE execution_id IN ($ids)"), '72', 'with 72 steps');
	return q1(qq{
		SELECT (SELECT max(n) FROM (SELECT count(DISTINCT execution_id) AS n FROM allma.step_executions
		                             WHERE execution_id IN ($ids) GROUP BY xmin::text) a)
		       || ',' ||
		       (SELECT max(n) FROM (SELECT count(*) AS n FROM allma.step_executions
		                             WHERE execution_id IN ($ids) GROUP BY xmin::text, execution_id) b)});
}

$node->append_conf('postgresql.conf', "allma.batch_size = 5\nallma.max_chain_steps = 3\n");
$node->reload;
wait_for_setting($node, 'allma.batch_size', '5');
wait_for_setting($node, 'allma.max_chain_steps', '3');
is(passes(), '5,3', 'batch_size 5, max_chain_steps 3: a pass claims 5 executions and runs up to 3 steps of each');

$node->append_conf('postgresql.conf', "allma.batch_size = 2\nallma.max_chain_steps = 1\n");
$node->reload;
wait_for_setting($node, 'allma.batch_size', '2');
wait_for_setting($node, 'allma.max_chain_steps', '1');
is(passes(), '2,1', 'batch_size 2, max_chain_steps 1: a pass claims 2 executions and commits after every step');

close($_) for grep { defined } @fillers;
close($listener);
$node->stop;
done_testing();
