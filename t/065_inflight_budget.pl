# Per-worker in-flight byte budget (issue 13 #4): response buffers of
# running requests stay within allma.max_inflight_bytes (plus at most one
# response cap: the oldest request never waits), requests beyond it wait
# for room instead of failing, and the bodies handed out by one poll stay
# within it too; the response cap stays per request.  Observed with the
# test hook allma_test_http_budget (src/http_budget_probe.c: the workers'
# client code) and through the workers.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use JSON::PP;
use lib 't';
use AllmaTest;

my $base = start_mock();
my $node = allma_node('budget', "allma.http_allowlist = '127.0.0.1'\nallma.max_inflight_bytes = 3MB\n"
	  . "allma.http_max_response_size = 4MB\n");
sub q1 { return $node->safe_psql('postgres', $_[0]); }

q1(q{CREATE FUNCTION probe(text[], bigint, bigint) RETURNS jsonb
	AS '$libdir/allma', 'allma_test_http_budget' LANGUAGE C STRICT});

# 40 responses of 2 MB, sent slowly so that they overlap
sub probe
{
	my ($n, $size, $budget, $cap, $drip) = @_;
	return decode_json(q1("SELECT probe(array(SELECT '$base/files/$size?drip_ms=1&drip_bytes=$drip&i=' || g
		FROM generate_series(1, $n) g), $budget, $cap)"));
}

my $free = probe(40, 2000000, 0, 4000000, 100000);
is($free->{ok}, 40, 'without a budget: every request completes');
cmp_ok($free->{peakInflightBytes}, '>', 10000000, 'and the client holds many responses at once (the probe can see it)');

my $r = probe(40, 2000000, 5000000, 4000000, 200000);
is($r->{ok}, 40, 'with a 5 MB budget: every request completes (they wait, none fails)');
is($r->{bytes}, 80000000, 'with all their bytes');
cmp_ok($r->{peakInflightBytes}, '<=', 5000000 + 4000001, 'buffers stay within the budget plus one response cap');
cmp_ok($r->{maxPollBytes}, '<=', 5000000, 'one poll hands out bodies within the budget');

# many small and mixed responses under a tiny budget: nothing waits forever
$r = decode_json(q1("SELECT probe(array(SELECT '$base/files/' || (g * 37) || '?drip_ms=1&drip_bytes=20000&i=' || g
	FROM generate_series(1, 300) g), 100000, 4000000)"));
is($r->{ok}, 300, 'mixed sizes under a 100 kB budget all complete');
cmp_ok($r->{peakInflightBytes}, '<=', 100000 + 4000001, 'within the budget plus one cap');

# the response cap stays per request
$r = probe(3, 5000000, 5000000, 4000000, 500000);
is($r->{ok} . ' ' . $r->{completed}, '0 3', 'a response over the per-request cap still fails, budget or not');

# through the workers (allma.max_inflight_bytes = 3MB): 20 API calls of 1 MB each complete
q1(qq{SELECT allma_create_flow('{"id": "big", "startStepInstanceId": "get", "steps": {
  "get": {"stepType": "API_CALL", "apiHttpMethod": "GET",
          "apiUrlTemplate": {"template": "$base/files/1000000?drip_ms=1&drip_bytes=100000&i={{i}}"},
          "outputMappings": {"\$.n": "\$.status"}}}}')});
q1("CREATE TABLE runs AS SELECT allma_start_flow('big', jsonb_build_object('i', g)) AS e FROM generate_series(1, 20) g");
is(q1("SELECT count(*) FILTER (WHERE allma_wait(e, '120 s') = 'COMPLETED') FROM runs"), '20',
	'20 API calls of 1 MB under a 3 MB worker budget all complete');
is(q1("SELECT setting || ' ' || unit || ' ' || context FROM pg_settings WHERE name = 'allma.max_inflight_bytes'"),
	'3072 kB sighup', 'allma.max_inflight_bytes is a reloadable setting');

done_testing();
