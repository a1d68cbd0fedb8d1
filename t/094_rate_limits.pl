# Rate limits (issue #15) through two workers against the mock's OpenAI
# endpoint: a requests/min limit holds across both workers and a restart
# (the mock counts requests per wall-clock second); a 429 with Retry-After
# pauses the key for every step using it; 1,000 parked steps cost the
# workers no memory and no connection; a tenant with 5 steps is not
# starved by two with 200 each under one group's limit; a tokens/min limit
# holds in every span of seconds; x-ratelimit-remaining-requests: 0 with a
# reset pauses every step of the key.  Only 127.0.0.1.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use JSON::PP;
use HTTP::Tiny;
use Time::HiRes qw(time);
use lib 't';
use AllmaTest;

my $base = start_mock();
my $node = allma_node('ratelimit', "allma.http_allowlist = '127.0.0.1'\nallma.timer_scale = 0.01\n");
my $json = JSON::PP->new->canonical;
my $key = 'OPENAI:mock-json:OPENAI_API_KEY';

sub q1 { return $node->safe_psql('postgres', $_[0]); }
sub mock_post
{
	my $res = HTTP::Tiny->new(timeout => 60)->post("$base$_[0]");
	die "mock POST $_[0]: $res->{status}" unless $res->{success};
}

$node->safe_psql('postgres', q{
SET log_statement = 'none';
SELECT allma_set_secret('OPENAI_API_KEY', 'sk-ratelimit-test');
});
sub llm_flow
{
	my ($id, $extra) = @_;
	q1(qq{SELECT allma_create_flow('{"id": "$id", "startStepInstanceId": "ask", "steps": {
  "ask": {"stepType": "LLM_INVOCATION", "llmProvider": "OPENAI", "modelId": "mock-json",
          $extra
          "inferenceParameters": {"maxOutputTokens": 20},
          "customConfig": {"baseUrl": "$base/v1", "apiKeySecret": "OPENAI_API_KEY", "jsonOutputMode": true, "prompt": "Answer {{n}}"}}}}')});
}
llm_flow('rl', '');
llm_flow('rl-tenant', '"rateLimitKey": "fair:{{tenant}}",');
llm_flow('rl-park', '"rateLimitKey": "park:{{tenant}}",');

# set_limit(key, rpm, tpm): the only limit, once the workers hold it
sub set_limit
{
	my ($k, $rpm, $tpm) = @_;
	q1("DELETE FROM allma.rate_limits");
	q1("SELECT allma_set_rate_limit('$k', $rpm, $tpm)");
	ok($node->poll_query_until('postgres',
		"SELECT count(*) = 1 FROM allma_rate_limit_status() WHERE key = '$k'"),
		"the workers hold the limit of $k");
}
sub start_many
{
	my ($flow, $n, $tenant) = @_;
	q1("SELECT count(allma_start_flow('$flow', jsonb_build_object('n', g, 'tenant', '$tenant'))) FROM generate_series(1, $n) g");
}
sub wait_all
{
	ok($node->poll_query_until('postgres',
		"SELECT count(*) = 0 FROM allma.executions WHERE status = 'RUNNING'"), $_[0]);
}
# the mock's request counts per second from "since" on, oldest first
sub windows
{
	my ($since) = @_;
	return [ grep { $_->{requests} > 0 } @{ mock_json($base, "/__windows?since=$since")->{windows} } ];
}

# --- 1. 300 requests/min (5/s) across two workers and a restart ---------------
set_limit($key, 300, 'NULL');
mock_post('/__reset');
my $since = int(time());
start_many('rl', 40, 'x');
ok($node->poll_query_until('postgres',
	"SELECT count(*) >= 12 FROM allma.executions WHERE status = 'COMPLETED'"), 'some steps done before the restart');
$node->restart;
wait_for_workers($node, 2);
wait_all('all 40 executions finish after the restart');
is(q1("SELECT count(*) FROM allma.executions WHERE status = 'COMPLETED'"), '40', 'all 40 completed');
my $w = windows($since);
my @counts = map { $_->{requests} } @$w;
my $total = 0;
$total += $_ for @counts;
cmp_ok($total, '>=', 40, 'the mock saw every request');
my @after_first = @counts[1 .. $#counts];
my ($max) = sort { $b <=> $a } @after_first;
# 5 a second; one more when a late request meets one sent on time
cmp_ok($max, '<=', 6, "at most 5 (+1 jitter) requests in any second after the first (max $max)")
  or diag($json->encode($w));
cmp_ok($w->[-1]{start} - $w->[0]{start}, '>=', 6,
	'40 requests at 5 a second spread over at least 7 seconds');

# --- 2. a 429 with Retry-After pauses the key for every step --------------------
set_limit($key, 60, 'NULL');
q1("DELETE FROM allma.step_executions; DELETE FROM allma.executions");
mock_post('/__reset');
mock_post('/__ratelimit?fail_429=1&retry_after=3');
start_many('rl', 5, 'x');
ok($node->poll_query_until('postgres',
	"SELECT count(*) = 1 FROM allma_rate_limit_status() WHERE paused_until > now() + interval '1 s'"),
	'the 429 paused the key');
wait_all('the 5 executions finish after the pause');
is(q1("SELECT count(*) FROM allma.executions WHERE status = 'COMPLETED'"), '5', 'all 5 completed');
my $log = mock_json($base, '/__log?path=/v1/chat');
sub secs { my ($t) = @_; $t =~ /T(\d+):(\d+):(\d+\.\d+)Z/; return $1 * 3600 + $2 * 60 + $3; }
my @times = map { secs($_->{time}) } @$log;
cmp_ok(scalar(@times), '==', 6, '6 requests: the one answered 429 and 5 that succeeded');
cmp_ok($times[1] - $times[0], '>=', 2.9, 'no request of the key went before Retry-After (3 s) passed')
  or diag($json->encode(\@times));
is(q1("SELECT count(*) FROM allma.step_executions WHERE status = 'RETRYING'"),
	'1', 'the step that got the 429 was retried');

# --- 3. 1,000 parked steps: no worker memory, no connection --------------------
sub worker_rss
{
	my $sum = 0;
	for my $pid (split /,/, worker_pids($node))
	{
		open(my $fh, '<', "/proc/$pid/status") or next;
		while (<$fh>) { $sum += $1 if /^RssAnon:\s+(\d+)/; }
		close $fh;
	}
	return $sum;
}
# (a new key "park": its first slot is a minute after the workers read it)
set_limit('park', 1, 'NULL');
q1("DELETE FROM allma.step_executions; DELETE FROM allma.executions");
start_many('rl-park', 20, 'x');
my $all_parked = "SELECT count(*) FILTER (WHERE waiting_on <> 'rate_limit') = 0 AND count(*) >= %d
	FROM allma.live_path_waits";
ok($node->poll_query_until('postgres', sprintf($all_parked, 19)), 'warm-up: 20 parked');
my $rss_before = worker_rss();
start_many('rl-park', 1000, 'x');
ok($node->poll_query_until('postgres', sprintf($all_parked, 1019)),
	'1,020 steps parked on the rate limit (one may have gone after a minute)');
my $rss_after = worker_rss();
cmp_ok($rss_after - $rss_before, '<', 8 * 1024,
	"the workers' private memory grew by less than 8 MB with 1,000 more parked steps ("
	  . ($rss_after - $rss_before) . " kB)");
is(q1("SELECT sum(inflight_requests) FROM allma.worker_status"), '0', 'no request in flight');
cmp_ok(q1("SELECT max(waiting_rate_limits) FROM allma.worker_status"), '>=', 1019, 'worker_status counts them');
cmp_ok(mock_json($base, '/__stats')->{connections_open}, '<=', 3, 'no connection held for them');
is(q1("SELECT waits->0->>'rateLimitKey' FROM allma.execution_progress LIMIT 1"), 'park:x',
	'execution_progress names the key');
# dropping the limit lets them all run
q1("SELECT allma_drop_rate_limit('park')");
wait_all('the parked steps run once the limit is dropped');
is(q1("SELECT count(*) FROM allma.executions WHERE status = 'COMPLETED'"), '1020', 'all 1,020 completed');

# --- 4. fairness: 5 steps of tenant c are not starved by 2 x 200 of a and b -----
set_limit('fair', 600, 'NULL');
q1("DELETE FROM allma.step_executions; DELETE FROM allma.executions");
start_many('rl-tenant', 200, 'a');
start_many('rl-tenant', 200, 'b');
start_many('rl-tenant', 5, 'c');
ok($node->poll_query_until('postgres',
	"SELECT count(*) = 5 FROM allma.executions WHERE input->>'tenant' = 'c' AND status = 'COMPLETED'"),
	"the small tenant's steps finish");
my $before_c = q1("SELECT count(*) FROM allma.executions e WHERE e.input->>'tenant' <> 'c'
	AND e.ended_at < (SELECT max(ended_at) FROM allma.executions WHERE input->>'tenant' = 'c')");
# arrival order would run all 400 first; round robin over the 3 subkeys about 10
cmp_ok($before_c, '<=', 60, "tenant c finished after only $before_c of the 400 steps of a and b");
wait_all('all 405 finish');

# --- 5. tokens per minute: 6,000 (100 tokens a second), 60 steps of ~15 tokens -----
# The budget is paced per second (limit / 60, at 98 %): in every span of
# W seconds the mock may count at most W + 2 seconds' worth (a second of
# grants handed out ahead, one request charged less than it used) plus the
# largest request.  Without the limit the 60 requests go within a second or two.
set_limit($key, 'NULL', 6000);
q1("DELETE FROM allma.step_executions; DELETE FROM allma.executions");
mock_post('/__reset');
$since = int(time());
start_many('rl', 60, 'x');
wait_all('the 60 token-limited executions finish');
is(q1("SELECT count(*) FROM allma.executions WHERE status = 'COMPLETED'"), '60', 'all 60 completed');
$w = windows($since);
my %tok = map { $_->{start} => $_->{tokens} } @$w;
my @secs = sort { $a <=> $b } keys %tok;
my $tok_total = 0;
$tok_total += $_ for values %tok;
my $req_total = 0;
$req_total += $_->{requests} for @$w;
cmp_ok($req_total, '>=', 60, 'the mock saw every request');
cmp_ok($tok_total, '>', 600, "the run used more than 6 seconds' budget ($tok_total tokens)");
my $per_req = $tok_total / $req_total;
my $span = 5;
my $worst = 0;
for my $t ($secs[0] .. $secs[-1])
{
	my $sum = 0;
	$sum += $tok{$_} // 0 for $t .. $t + $span - 1;
	$worst = $sum if $sum > $worst;
}
cmp_ok($worst, '<=', 100 * ($span + 2) + 2 * $per_req,
	"at most $span + 2 seconds' tokens in any $span seconds (max $worst)")
  or diag($json->encode($w));
cmp_ok($secs[-1] - $secs[0], '>=', int($tok_total / 100) - 3,
	"the tokens spread over about their budget's time ($tok_total tokens from second $secs[0] to $secs[-1])");

# --- 5b. replies that use more than estimated: the debt delays the next grants ---
# mock-echo answers its prompt: a 4,000-byte prompt with maxOutputTokens 1 is
# estimated at about 1,000 tokens and uses about 2,000.  Under 60,000
# tokens/min (1,000 a second) 5 of them need about 8 s between the first and
# the last request; charged only their estimates they would go within about 4 s.
q1(qq{SELECT allma_create_flow('{"id": "rl-echo", "startStepInstanceId": "ask", "steps": {
  "ask": {"stepType": "LLM_INVOCATION", "llmProvider": "OPENAI", "modelId": "mock-echo",
          "inferenceParameters": {"maxOutputTokens": 1},
          "customConfig": {"baseUrl": "$base/v1", "apiKeySecret": "OPENAI_API_KEY", "prompt": "{{t}}"}}}}')});
set_limit('OPENAI:mock-echo:OPENAI_API_KEY', 'NULL', 60000);
q1("DELETE FROM allma.step_executions; DELETE FROM allma.executions");
mock_post('/__reset');
$since = int(time());
q1("SELECT count(allma_start_flow('rl-echo', jsonb_build_object('t', repeat('x', 4000) || g))) FROM generate_series(1, 5) g");
wait_all('the 5 echo executions finish');
is(q1("SELECT count(*) FROM allma.executions WHERE status = 'COMPLETED'"), '5', 'all 5 completed');
$w = windows($since);
$tok_total = 0;
$tok_total += $_->{tokens} for @$w;
cmp_ok($tok_total, '>=', 9000, "each reply used about 2,000 tokens ($tok_total in all)");
$log = mock_json($base, '/__log?path=/v1/chat');
@times = sort { $a <=> $b } map { secs($_->{time}) } @$log;
cmp_ok(scalar(@times), '==', 5, '5 requests');
cmp_ok($times[-1] - $times[0], '>=', 0.75 * ($tok_total * 4 / 5) / 1000,
	'the first 4 replies\' tokens spaced the requests at the limit')
  or diag($json->encode(\@times));
q1("DELETE FROM allma.rate_limits WHERE key = 'OPENAI:mock-echo:OPENAI_API_KEY'");

# --- 6. x-ratelimit-remaining-requests: 0 pauses the key for its reset ------------
# max_concurrent 1: the next request can only go once the reply carrying the
# headers was settled, so the pause is certain to come before it.
q1("DELETE FROM allma.rate_limits");
q1("SELECT allma_set_rate_limit('$key', NULL, NULL, 1)");
ok($node->poll_query_until('postgres',
	"SELECT count(*) = 1 FROM allma_rate_limit_status() WHERE key = '$key' AND max_concurrent = 1"),
	'the workers hold the max_concurrent limit');
q1("DELETE FROM allma.step_executions; DELETE FROM allma.executions");
mock_post('/__reset');
mock_post('/__ratelimit?header_replies=1&remaining_requests=0&reset_requests=3');
$since = int(time());
# 30 steps one at a time take more than 3 s even unpaused (about 0.1 s each
# here), so the seconds inside the pause would see some
start_many('rl', 30, 'x');
wait_all('the 30 executions finish after the pause');
is(q1("SELECT count(*) FROM allma.executions WHERE status = 'COMPLETED'"), '30', 'all 30 completed');
$log = mock_json($base, '/__log?path=/v1/chat');
@times = map { secs($_->{time}) } @$log;
cmp_ok(scalar(@times), '==', 30, '30 requests, none failed');
cmp_ok($times[1] - $times[0], '>=', 2.9,
	'no request of the key went before the reset (3 s) the first reply named')
  or diag($json->encode(\@times));
$w = windows($since);
my %req = map { $_->{start} => $_->{requests} } @$w;
my $first = (sort { $a <=> $b } keys %req)[0];
# [T, T + 3) holds the whole seconds first + 1 and first + 2; first and first + 3 are the edges
is(($req{ $first + 1 } // 0) + ($req{ $first + 2 } // 0), 0,
	'the mock counted no request in the seconds strictly inside the pause')
  or diag($json->encode($w));
is(q1("SELECT count(*) FROM allma.step_executions WHERE status = 'RETRYING'"), '0',
	'no step failed: the pause came from the headers, not a 429');

done_testing();
