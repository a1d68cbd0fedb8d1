# HTTP client (src/http.c) against the mock server: methods, headers,
# bodies, Idempotency-Key, statuses, Retry-After, timeouts, dripping, the
# response-size cap, redirects (limits, method rewriting, which headers
# reach another origin) and the destination allow-list, concurrency
# through the multi interface, per-host limits and keep-alive reuse.
# Only ever talks to 127.0.0.1 (also named "localhost", a second origin).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use JSON::PP;
use POSIX qw(strftime);
use Time::HiRes qw(time);
use lib 't';
use AllmaTest;

my $json = JSON::PP->new->canonical;

# --- the mock server -------------------------------------------------------
my $base = start_mock();
my ($port) = $base =~ /:(\d+)$/;
note "mock server on $base";

my $node = allma_node('http');

sub lit { my $s = shift; $s =~ s/'/''/g; return "'$s'"; }

# req(method, url, headers, body, options): the decoded result of
# allma_http_request; options default to allowing 127.0.0.1
sub req
{
	my ($method, $url, $headers, $body, $options) = @_;
	$headers //= {};
	$options //= { allow => '127.0.0.1' };
	my $sql = sprintf("SELECT allma_http_request(%s, %s, %s, %s, %s)",
		lit($method), lit($url), lit($json->encode($headers)),
		defined $body ? lit($body) : 'NULL', lit($json->encode($options)));
	return $json->decode($node->safe_psql('postgres', $sql));
}

sub batch
{
	my ($requests, $options) = @_;
	my $sql = sprintf("SELECT allma_http_batch(%s, %s)",
		lit($json->encode($requests)), lit($json->encode($options)));
	return $json->decode($node->safe_psql('postgres', $sql));
}

sub mock_get
{
	my ($path) = @_;
	my $r = req('GET', "$base$path");
	die "mock control request failed" unless ($r->{status} // 0) == 200;
	return $json->decode($r->{body});
}

sub mock_reset { req('POST', "$base/__reset"); }

# --- methods, headers, bodies ------------------------------------------------
mock_reset();
my $r = req('GET', "$base/echo?x=1", { 'X-Test' => 'abc', 'X-Num' => 5 }, undef,
	{ allow => '127.0.0.1', idempotencyKey => 'key-get-1' });
is($r->{status}, 200, 'GET /echo answers 200');
is($r->{error}, undef, 'no error for a complete response');
is($r->{contentType}, 'application/json', 'content type reported');
is($r->{headers}{server}, 'allma-mock', 'response headers with lower-case names');
my $echo = $json->decode($r->{body});
is($echo->{method}, 'GET', 'method sent');
is($echo->{query}{x}, '1', 'query string sent');
is($echo->{headers}{'x-test'}, 'abc', 'custom header sent');
is($echo->{headers}{'x-num'}, '5', 'numeric header value sent as text');
is($echo->{headers}{'idempotency-key'}, 'key-get-1', 'Idempotency-Key sent');
like($echo->{headers}{'user-agent'}, qr{^allma/\d}, 'User-Agent allma/<version>');
is($echo->{headers}{'content-type'}, undef, 'no content type without a body');

$r = req('POST', "$base/echo", { 'Content-Type' => 'application/json' },
	'{"a": [1, 2], "b": "x"}', { allow => '127.0.0.1', idempotencyKey => 'key-post-1' });
$echo = $json->decode($r->{body});
is($echo->{method}, 'POST', 'POST sent');
is_deeply($echo->{json}, { a => [ 1, 2 ], b => 'x' }, 'JSON body arrives intact');
is($echo->{headers}{'content-type'}, 'application/json', 'given content type sent');
is($echo->{headers}{expect}, undef, 'no Expect: 100-continue');

my $log = mock_get('/__log?key=key-post-1');
is(scalar(@$log), 1, 'mock logged the POST once under its Idempotency-Key');
is($log->[0]{idempotency_key}, 'key-post-1', 'log has the Idempotency-Key');
is($log->[0]{body}, '{"a": [1, 2], "b": "x"}', 'log has the body');

my $text = "plain text\nwith lines and ünïcödé";
$r = req('PUT', "$base/echo/t", { 'Content-Type' => 'text/plain; charset=utf-8' }, $text);
$echo = $json->decode($r->{body});
is($echo->{method}, 'PUT', 'PUT sent');
is($echo->{body}, $text, 'text body arrives intact');
is($echo->{json}, undef, 'text body is not JSON');

$r = req('POST', "$base/echo", {}, 'a=b&c=d');
$echo = $json->decode($r->{body});
is($echo->{headers}{'content-type'}, undef, 'no default form content type for a body');
is($echo->{headers}{'content-length'}, '7', 'body length sent');

$r = req('POST', "$base/echo", {}, undef);
$echo = $json->decode($r->{body});
is($echo->{headers}{'content-length'}, '0', 'POST without body sends Content-Length: 0');

$r = req('delete', "$base/echo");
is($json->decode($r->{body})->{method}, 'DELETE', 'method is upper-cased');

$r = req('HEAD', "$base/files/1234");
is($r->{status}, 200, 'HEAD answers 200');
is($r->{bodyBytes}, 0, 'HEAD has no body');
is($r->{headers}{'content-length'}, '1234', 'HEAD has the headers');

$r = req('GET', "$base/echo", { 'Idempotency-Key' => 'from-header' }, undef,
	{ allow => '127.0.0.1', idempotencyKey => 'from-option' });
is($json->decode($r->{body})->{headers}{'idempotency-key'}, 'from-option',
	'idempotencyKey replaces an Idempotency-Key header');

# --- statuses and Retry-After --------------------------------------------------
$r = req('GET', "$base/status/404");
is($r->{status}, 404, '404 status');
is($r->{error}, undef, 'an HTTP error status is not a transport error');
is($json->decode($r->{body})->{status}, 404, 'error body delivered');
$r = req('POST', "$base/anything?status=503");
is($r->{status}, 503, '503 status');
is($json->decode($r->{body})->{error}{status}, 503, '503 error body');
is($r->{retryAfterMs}, undef, 'no Retry-After');

$r = req('GET', "$base/status/429?retry_after=7");
is($r->{status}, 429, '429 status');
is($r->{retryAfterMs}, 7000, 'Retry-After in seconds -> ms');

my $date = strftime('%a, %d %b %Y %H:%M:%S GMT', gmtime(time() + 60));
$date =~ s/ /%20/g;
$r = req('GET', "$base/status/503?retry_after=$date");
ok($r->{retryAfterMs} >= 55000 && $r->{retryAfterMs} <= 61000,
	"Retry-After as an HTTP date -> ms ($r->{retryAfterMs})");
$r = req('GET', "$base/status/503?retry_after=Wed,%2021%20Oct%202015%2007:28:00%20GMT");
is($r->{retryAfterMs}, 0, 'Retry-After in the past -> 0');
$r = req('GET', "$base/status/503?retry_after=soon");
is($r->{retryAfterMs}, undef, 'invalid Retry-After -> null');

# --- timeouts, dripping, failures ------------------------------------------------
my $t0 = time();
$r = req('GET', "$base/slow?latency_ms=5000", {}, undef, { allow => '127.0.0.1', timeoutMs => 300 });
my $took = time() - $t0;
ok($r->{error}{timedOut}, 'latency over timeoutMs times out');
is($r->{error}{code}, 28, 'curl code 28');
like($r->{error}{message}, qr/timed out after 300 ms waiting for the response/, 'timeout message says where');
ok($took < 3, "timeout is enforced ($took s)");
is($r->{body}, undef, 'no body after a timeout');

$r = req('GET', "$base/drip?size=60&drip_ms=50&drip_bytes=10");
is($r->{status}, 200, 'slow drip completes');
is($r->{bodyBytes}, 60, 'slow drip delivers the whole body');
ok($r->{durationMs} >= 200, "slow drip takes its time ($r->{durationMs} ms)");

$r = req('GET', "$base/drip?size=200&drip_ms=200&drip_bytes=5", {}, undef,
	{ allow => '127.0.0.1', timeoutMs => 700 });
ok($r->{error}{timedOut}, 'a drip slower than the timeout times out');
like($r->{error}{message}, qr/while receiving the response/, 'after the response started');

$r = req('GET', "$base/x?hang=1", {}, undef, { allow => '127.0.0.1', timeoutMs => 300 });
ok($r->{error}{timedOut}, 'a hanging server times out');

$r = req('GET', "$base/x?drop=1");
is($r->{error}{code}, 52, 'dropped connection: curl code 52');
ok(!$r->{error}{timedOut} && !$r->{error}{refused}, 'dropped connection is a plain error');

# a cancelled statement destroys its client cleanly; the session goes on
my ($ret, $out, $err) = $node->psql('postgres',
	"SET statement_timeout = '300ms'; SELECT allma_http_request('GET', '$base/x?hang=1', options => '{\"allow\": \"127.0.0.1\"}')");
like($err, qr/canceling statement due to statement timeout/, 'a waiting request is cancellable');

# --- response size cap -------------------------------------------------------------
$r = req('GET', "$base/files/5000", {}, undef, { allow => '127.0.0.1', maxBytes => 5000 });
is($r->{bodyBytes}, 5000, 'a body of exactly maxBytes is accepted');
is($r->{error}, undef, '... without error');
$r = req('GET', "$base/files/100000", {}, undef, { allow => '127.0.0.1', maxBytes => 1000 });
ok($r->{error}{tooLarge}, 'oversize body fails with tooLarge');
is($r->{body}, undef, 'no partial body');
like($r->{error}{message}, qr/exceeds the limit of 1000 bytes/, 'size message');
$r = req('GET', "$base/files/" . (11 * 1024 * 1024));
ok($r->{error}{tooLarge}, 'default cap (10 MB) applies');
$r = req('GET', "$base/drip?size=3000&drip_ms=20&drip_bytes=500", {}, undef,
	{ allow => '127.0.0.1', maxBytes => 1000 });
ok($r->{error}{tooLarge}, 'oversize dripping body fails with tooLarge');

# --- redirects -----------------------------------------------------------------------
$r = req('GET', "$base/redirect/3?k=v");
is($r->{status}, 200, 'redirects are followed');
is($r->{redirects}, 3, 'redirect count');
like($r->{url}, qr{/redirect/0\?k=v$}, 'effective URL after redirects');

$r = req('GET', "$base/redirect/9", {}, undef, { allow => '127.0.0.1', maxRedirects => 2 });
is($r->{error}{code}, 47, 'too many redirects: curl code 47');

$r = req('GET', "$base/x?redirect_to=http://127.0.0.2:1/x");
ok($r->{error}{refused}, 'redirect to a refused destination is refused');
like($r->{error}{message}, qr/127\.0\.0\.2 \(loopback\)/, 'message names the address');

$r = req('GET', "$base/x?redirect_to=ftp://127.0.0.1/x");
ok($r->{error}{refused}, 'redirect to ftp:// is refused');
like($r->{error}{message}, qr/only http and https/, 'message names the rule');
$r = req('GET', "$base/x?redirect_to=file:///etc/passwd&redirect_status=307");
ok($r->{error}{refused}, 'redirect to file:// is refused');

$r = req('GET', "$base/x?redirect_to=mailto:someone\@example.com");
ok($r->{error}{refused}, 'redirect to a target that is no http(s) URL is refused');
$r = req('GET', "$base/x?redirect_to=http://%5B::1");
ok($r->{error}{refused}, 'redirect to a malformed URL is refused');
like($r->{error}{message}, qr/^redirect refused: invalid URL/, '... saying why');
is($r->{status}, 302, '... and reporting the redirect response');

$r = req('GET', "$base/x?redirect_to=http://127.0.0.2:1/x");
is($r->{status}, 302, 'a hop refused before any response reports the redirect that led there');
is($r->{headers}{location}, 'http://127.0.0.2:1/x', '... with its headers');
is($r->{url}, 'http://127.0.0.2:1/x', '... and the refused URL as the effective URL');

$r = req('GET', "$base/redirect/2", {}, undef, { allow => '127.0.0.1', maxRedirects => 2 });
is($r->{status}, 200, 'exactly maxRedirects redirects are followed');
$r = req('GET', "$base/redirect/3", {}, undef, { allow => '127.0.0.1', maxRedirects => 2 });
is($r->{error}{code}, 47, 'one more is too many');
is($r->{redirects}, 2, '... after following maxRedirects');
is($r->{status}, 302, '... reporting the last redirect response');
like($r->{error}{message}, qr/too many redirects/, '... saying so');

$r = req('GET', "$base/x?redirect_to=/echo", {}, undef, { allow => '127.0.0.1', maxRedirects => 0 });
is($r->{status}, 302, 'maxRedirects 0: the redirect is the response');
is($r->{redirects}, 0, '... nothing followed');
is($json->decode($r->{body})->{redirect}, '/echo', '... with its body');
$r = req('GET', "$base/x?redirect_to=/echo&redirect_status=300");
is($r->{status}, 300, '300 Multiple Choices is not followed');
is($r->{redirects}, 0, '... no redirect counted');

# the body of a followed redirect is discarded, not counted against maxBytes
$r = req('GET', "$base/x?redirect_to=/files/10&body=" . ('x' x 500), {}, undef,
	{ allow => '127.0.0.1', maxBytes => 20 });
is($r->{status}, 200, 'a redirect body over maxBytes does not fail the request');
is($r->{body}, '0123456789', '... and only the final body is returned');

# one deadline for the whole chain: two hops of 400 ms exceed 600 ms
$t0 = time();
$r = req('GET', "$base/x?latency_ms=400&redirect_to=/echo%3Flatency_ms%3D400", {}, undef,
	{ allow => '127.0.0.1', timeoutMs => 600 });
$took = time() - $t0;
ok($r->{error}{timedOut}, 'timeoutMs covers all hops together');
like($r->{error}{message}, qr/timed out after 600 ms .*after 1 redirect$/, '... the message counts the redirects');
ok($took < 3, "... and is enforced ($took s)");

# --- redirects: which headers go where, methods ------------------------------------
# 127.0.0.1 and localhost (same mock, same port) are two origins.  Every
# case sends an Idempotency-Key (which may cross origins) to find its hops
# in the mock's log.
sub qesc
{
	my $s = shift;
	$s =~ s/([^A-Za-z0-9\-._~\/:])/sprintf('%%%02X', ord($1))/ge;
	return $s;
}
my $other = "http://localhost:$port";
my %secret = (
	'X-Api-Key' => 'sk-secret',
	'Authorization' => 'Bearer tok-secret',
	'Cookie' => 'session=s3cr3t',
	'X-Custom' => 'custom',
	'Accept' => 'application/json',
	'User-Agent' => 'flow-agent/2');
sub opts { return { allow => '127.0.0.1, ::1', idempotencyKey => shift }; }
sub hops { return mock_get('/__log?key=' . shift); }
sub no_secrets
{
	my ($h, $what) = @_;
	ok(!exists $h->{'x-api-key'} && !exists $h->{authorization} && !exists $h->{cookie}
		  && !exists $h->{'x-custom'},
		"$what: X-Api-Key, Authorization, Cookie and custom headers are not sent");
}

mock_reset();
$r = req('GET', "$base/same?redirect_to=/echo/same", \%secret, undef, opts('rd-same'));
is($r->{status}, 200, 'same-origin relative redirect followed');
is($r->{redirects}, 1, '... one redirect');
is($r->{url}, "$base/echo/same", '... relative Location resolved against the current URL');
$log = hops('rd-same');
is(scalar(@$log), 2, '... two requests reached the mock');
is($log->[1]{path}, '/echo/same', '... the second at the redirect target');
is($log->[1]{headers}{'x-api-key'}, 'sk-secret', 'same origin: X-Api-Key sent again');
is($log->[1]{headers}{authorization}, 'Bearer tok-secret', 'same origin: Authorization sent again');
is($log->[1]{headers}{'x-custom'}, 'custom', 'same origin: custom header sent again');

$r = req('GET', "$base/abs?redirect_to=" . qesc("$base/echo/abs"), \%secret, undef, opts('rd-abs'));
$log = hops('rd-abs');
is($r->{redirects}, 1, 'same-origin absolute redirect followed');
is($log->[1]{headers}{'x-api-key'}, 'sk-secret', 'absolute Location to the same origin: X-Api-Key sent');

$r = req('GET', "$base/cross?redirect_to=" . qesc("$other/echo/cross"), \%secret, undef, opts('rd-cross'));
is($r->{status}, 200, 'cross-origin redirect followed');
is($r->{url}, "$other/echo/cross", '... effective URL on the other origin');
is($r->{redirects}, 1, '... one redirect');
$log = hops('rd-cross');
is(scalar(@$log), 2, '... two requests reached the mock');
is($log->[0]{headers}{'x-api-key'}, 'sk-secret', 'the original origin got X-Api-Key');
is($log->[0]{headers}{authorization}, 'Bearer tok-secret', 'the original origin got Authorization');
is($log->[1]{headers}{host}, "localhost:$port", 'the second hop went to the other origin');
no_secrets($log->[1]{headers}, 'other origin');
is($log->[1]{headers}{accept}, 'application/json', 'other origin: Accept kept');
is($log->[1]{headers}{'user-agent'}, 'flow-agent/2', 'other origin: User-Agent kept');
is($log->[1]{headers}{'idempotency-key'}, 'rd-cross', 'other origin: Idempotency-Key kept');

# leaving the original origin drops the headers for the rest of the chain
my $back = "$other/via?redirect_to=" . qesc("$base/echo/back");
$r = req('GET', "$base/leave?redirect_to=" . qesc($back), \%secret, undef, opts('rd-back'));
is($r->{redirects}, 2, 'there and back: two redirects');
is($r->{url}, "$base/echo/back", '... ending on the original origin');
$log = hops('rd-back');
is(scalar(@$log), 3, '... three requests');
no_secrets($log->[2]{headers}, 'back on the original origin after leaving it');

# batch: concurrent transfers each keep their own headers across redirects
my $bres = batch([
		{ url => "$base/b1?redirect_to=/echo/b1", headers => { 'X-Api-Key' => 'k1' },
		  options => { idempotencyKey => 'rd-b1' } },
		{ url => "$base/b2?redirect_to=" . qesc("$other/echo/b2"), headers => { 'X-Api-Key' => 'k2' },
		  options => { idempotencyKey => 'rd-b2' } },
		{ url => "$base/b3?redirect_to=/echo/b3", headers => { 'X-Api-Key' => 'k3' },
		  options => { idempotencyKey => 'rd-b3' } } ],
	{ allow => '127.0.0.1, ::1' });
is(join(',', map { $_->{redirects} } @$bres), '1,1,1', 'batch: every request followed its redirect');
is(hops('rd-b1')->[1]{headers}{'x-api-key'}, 'k1', 'batch: same origin keeps its own key');
ok(!exists hops('rd-b2')->[1]{headers}{'x-api-key'}, 'batch: cross origin drops its key');
is(hops('rd-b3')->[1]{headers}{'x-api-key'}, 'k3', 'batch: the other same-origin request keeps its key');

# per-host limit 1: a transfer keeps its slot between hops and nothing stalls
my @chains = map { { url => "$base/redirect/2?i=$_" } } (1 .. 4);
$bres = batch(\@chains, { allow => '127.0.0.1', maxPerHost => 1, maxInFlight => 2 });
is(scalar(grep { ($_->{status} // 0) == 200 && $_->{redirects} == 2 } @$bres), 4,
	'redirect chains under maxPerHost 1 all complete');

# methods: 303 -> GET without body, 301/302 turn POST into GET, 307/308 keep
my %ctype = ('Content-Type' => 'application/json', 'X-Api-Key' => 'sk-secret');
$r = req('POST', "$base/p303?redirect_status=303&redirect_to=/echo/p303", \%ctype,
	'{"n": 303}', opts('rd-303'));
$echo = $json->decode($r->{body});
is($echo->{method}, 'GET', '303: POST becomes GET');
is($echo->{body}, '', '303: body dropped');
ok(!exists $echo->{headers}{'content-type'} && !exists $echo->{headers}{'content-length'},
	'303: no Content-Type or Content-Length without the body');
is($echo->{headers}{'x-api-key'}, 'sk-secret', '303 on the same origin: other headers kept');
$log = hops('rd-303');
is($log->[0]{method}, 'POST', '303: the first request was the POST');
is($log->[0]{body}, '{"n": 303}', '... with its body');

$r = req('DELETE', "$base/d303?redirect_status=303&redirect_to=/echo/d303", {}, undef, opts('rd-d303'));
is($json->decode($r->{body})->{method}, 'GET', '303: DELETE becomes GET');

$r = req('HEAD', "$base/h303?redirect_status=303&redirect_to=/files/77", {}, undef, opts('rd-h303'));
is($r->{status}, 200, '303 after HEAD followed');
is($r->{headers}{'content-length'}, '77', '... target headers');
is(hops('rd-h303')->[1]{method}, 'HEAD', '303: HEAD stays HEAD');

foreach my $code (301, 302)
{
	$r = req('POST', "$base/p$code?redirect_status=$code&redirect_to=/echo/p$code", \%ctype,
		'{"n": 1}', opts("rd-$code"));
	$echo = $json->decode($r->{body});
	is($echo->{method}, 'GET', "$code: POST becomes GET");
	is($echo->{body}, '', "$code: body dropped");
	ok(!exists $echo->{headers}{'content-type'}, "$code: Content-Type dropped with the body");
}
$r = req('PUT', "$base/u302?redirect_status=302&redirect_to=/echo/u302", \%ctype, '{"n": 2}',
	opts('rd-u302'));
$echo = $json->decode($r->{body});
is($echo->{method}, 'PUT', '302: PUT stays PUT');
is($echo->{body}, '{"n": 2}', '302: PUT keeps its body');

foreach my $code (307, 308)
{
	$r = req('POST', "$base/p$code?redirect_status=$code&redirect_to=/echo/p$code", \%ctype,
		'{"n": ' . $code . '}', opts("rd-$code"));
	$echo = $json->decode($r->{body});
	is($echo->{method}, 'POST', "$code: POST stays POST");
	is($echo->{body}, '{"n": ' . $code . '}', "$code: body sent again");
	is($echo->{headers}{'content-type'}, 'application/json', "$code: Content-Type kept");
	is($echo->{headers}{'x-api-key'}, 'sk-secret', "$code on the same origin: X-Api-Key kept");
}

$r = req('POST', "$base/x307?redirect_status=307&redirect_to=" . qesc("$other/echo/x307"),
	{ %secret, 'Content-Type' => 'application/json' }, '{"n": "x"}', opts('rd-x307'));
$echo = $json->decode($r->{body});
is($echo->{method}, 'POST', '307 to another origin: POST stays POST');
is($echo->{body}, '{"n": "x"}', '307 to another origin: body sent');
is($echo->{headers}{'content-type'}, 'application/json', '307 to another origin: Content-Type kept with the body');
no_secrets($echo->{headers}, '307 to another origin');
$log = hops('rd-x307');
is($log->[0]{headers}{'x-api-key'}, 'sk-secret', '... while the first hop had them');

# --- allow-list ---------------------------------------------------------------------------
my $before = mock_get('/__stats')->{requests};
$r = req('GET', "$base/echo", {}, undef, {});
ok($r->{error}{refused}, 'loopback is refused without an allow-list');
is($r->{error}{message}, 'destination address 127.0.0.1 (loopback) is not allowed',
	'refusal names the address');
is(mock_get('/__stats')->{requests}, $before, 'the refused request never reached the server');
$r = req('GET', "$base/echo", {}, undef, { allow => '127.0.0.0/8' });
is($r->{status}, 200, 'allowed by a CIDR range');
$r = req('GET', "http://localhost:$port/echo", {}, undef, { allow => '127.0.0.1, ::1' });
is($r->{status}, 200, 'localhost allowed through its addresses');

# --- concurrency through the multi interface ---------------------------------------------
mock_reset();
my @reqs = map { { url => "$base/c?latency_ms=300&i=$_" } } (1 .. 200);
$t0 = time();
my $res = batch(\@reqs, { allow => '127.0.0.1', maxPerHost => 200 });
$took = time() - $t0;
is(scalar(@$res), 200, 'batch returns 200 results');
is(scalar(grep { ($_->{status} // 0) == 200 } @$res), 200, 'all 200 succeeded');
is(scalar(grep { $res->[$_]{url} =~ /&i=@{[$_ + 1]}$/ } 0 .. 199), 200, 'results in request order');
ok($took < 20, "200 requests of 300 ms each ran concurrently ($took s, sequential: 60 s)");
my $stats = mock_get('/__stats');
ok($stats->{connections_peak} >= 100, "many connections at once (peak $stats->{connections_peak})");

# per-host limit: queued in the client, not started late by curl
mock_reset();
@reqs = map { { url => "$base/h?latency_ms=200&i=$_" } } (1 .. 10);
$t0 = time();
$res = batch(\@reqs, { allow => '127.0.0.1', maxPerHost => 2 });
$took = time() - $t0;
is(scalar(grep { ($_->{status} // 0) == 200 } @$res), 10, 'per-host limited batch succeeds');
ok($took >= 0.9, "maxPerHost 2 runs 10 requests of 200 ms in 5 rounds ($took s)");
$log = mock_get('/__log?path=/h');
my %hconns = map { $_->{conn} => 1 } @$log;
is(scalar(@$log), 10, 'mock saw the 10 requests');
ok(scalar(keys %hconns) <= 2, 'over at most 2 connections (' . scalar(keys %hconns) . ')');

# keep-alive: connections are reused across requests
mock_reset();
@reqs = map { { url => "$base/k?latency_ms=5&i=$_" } } (1 .. 40);
$res = batch(\@reqs, { allow => '127.0.0.1', maxInFlight => 4 });
is(scalar(grep { ($_->{status} // 0) == 200 } @$res), 40, 'keep-alive batch succeeds');
$stats = mock_get('/__stats');
is($stats->{requests}, 40, 'mock saw 40 requests');
ok($stats->{connections_total} < 20, "over few connections ($stats->{connections_total}, control requests included)");
$log = mock_get('/__log?path=/k');
my %conns = map { $_->{conn} => 1 } @$log;
ok(scalar(keys %conns) <= 4, 'requests share ' . scalar(keys %conns) . ' keep-alive connections');

# a batch that mixes outcomes keeps each result with its request
$res = batch([
		{ url => "$base/status/201" },
		{ url => "$base/x?latency_ms=3000", options => { timeoutMs => 200 } },
		{ url => "$base/files/50000", options => { maxBytes => 100 } },
		{ url => "http://10.0.0.1/" },
		{ url => "$base/echo", method => 'POST', body => 'hi', headers => { 'Content-Type' => 'text/plain' },
		  options => { idempotencyKey => 'mixed' } } ],
	{ allow => '127.0.0.1' });
is($res->[0]{status}, 201, 'mixed batch: status');
ok($res->[1]{error}{timedOut}, 'mixed batch: timeout');
ok($res->[2]{error}{tooLarge}, 'mixed batch: too large');
ok($res->[3]{error}{refused}, 'mixed batch: refused');
is($json->decode($res->[4]{body})->{headers}{'idempotency-key'}, 'mixed', 'mixed batch: POST with key');

$node->stop;
ok(stop_mock(), 'mock server stopped cleanly and removed its port file');

done_testing();
