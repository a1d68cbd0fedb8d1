# The HTTP client limits follow a configuration reload in running workers:
# with allma.http_max_per_host = 1 the mock (300 ms per request) receives
# each request at least 300 ms after the previous one; after raising the
# limit and reloading, in the same worker process, requests overlap.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use JSON::PP;
use lib 't';
use AllmaTest;

my $base = start_mock();
my $node = allma_node('limits', "allma.http_allowlist = '127.0.0.1'\nallma.http_max_per_host = 1\n"
	  . "allma.max_workers = 1\n");

sub q1 { return $node->safe_psql('postgres', $_[0]); }

# the smallest gap (ms) between the arrivals of the last n /echo requests
sub min_arrival_gap
{
	my ($n) = @_;
	my $log = JSON::PP->new->decode(
		`python3 -c "import urllib.request; print(urllib.request.urlopen('$base/__log?path=/echo&limit=$n').read().decode())"`);
	my @ms = sort { $a <=> $b } map {
		$_->{time} =~ /T(\d+):(\d+):(\d+(?:\.\d+)?)/ or die "bad time $_->{time}";
		(($1 * 60 + $2) * 60 + $3) * 1000
	} @$log;
	is(scalar(@ms), $n, "the mock logged $n requests");
	my $min;
	for my $i (1 .. $#ms)
	{
		my $gap = $ms[$i] - $ms[$i - 1];
		$min = $gap if !defined $min || $gap < $min;
	}
	return $min;
}

q1(qq{SELECT allma_create_flow('{"id": "slow", "startStepInstanceId": "call", "steps": {
  "call": {"stepType": "API_CALL", "apiHttpMethod": "GET", "apiUrlTemplate": {"template": "$base/echo?latency_ms=300"}}}}')});

my $pid = q1("SELECT pid FROM pg_stat_activity WHERE backend_type = 'allma worker'");

sub run_batch
{
	my ($n) = @_;
	my $ids = q1("SELECT string_agg(allma_start_flow('slow')::text, ',') FROM generate_series(1, $n)");
	my @ids = split /,/, $ids;
	for my $e (@ids)
	{
		is(q1("SELECT allma_wait('$e', '120 s')"), 'COMPLETED', "execution $e completes") or last;
	}
}

run_batch(4);
cmp_ok(min_arrival_gap(4), '>=', 290, 'with allma.http_max_per_host = 1, one request at a time');

$node->append_conf('postgresql.conf', "allma.http_max_per_host = 16\n");
$node->reload;
# the worker applies the reload when it next wakes up: wait until it has
wait_for_setting($node, 'allma.http_max_per_host', '16', 1);
run_batch(8);
cmp_ok(min_arrival_gap(8), '<', 290, 'after raising it and reloading, requests overlap');
is(q1("SELECT pid FROM pg_stat_activity WHERE backend_type = 'allma worker'"), $pid,
	'in the same worker process');

$node->stop;
done_testing();
