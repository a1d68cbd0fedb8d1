# Allma-compatibility papercuts that need a server to talk to: an API_CALL
# without apiHttpMethod sends a GET (the README's default; it used to be a
# required field).  The definition-time side is in sql/93_papercuts.sql.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use lib 't';
use AllmaTest;

my $base = start_mock();
my $node = allma_node('compat', "allma.http_allowlist = '127.0.0.1'\nallma.timer_scale = 0.01\n");
sub q1 { return $node->safe_psql('postgres', $_[0]); }

q1(qq{SELECT allma_create_flow('{"id": "no-method", "startStepInstanceId": "call", "steps": {
  "call": {"stepType": "API_CALL", "apiUrlTemplate": {"template": "$base/echo/no-method"}}}}')});
my $e = q1(q{SELECT allma_start_flow('no-method', '{}')});
is(q1("SELECT allma_wait('$e', '60 s')"), 'COMPLETED', 'an API_CALL without apiHttpMethod runs')
  or diag(q1("SELECT error FROM allma.executions WHERE execution_id = '$e'"));
is(q1("SELECT output->'steps_output'->'call'->'data'->>'method' FROM allma.executions WHERE execution_id = '$e'"),
	'GET', 'and sends a GET');
my $log = mock_json($base, '/__log?path=/echo/no-method');
is(scalar(@$log), 1, 'one request reached the server');
is($log->[0]{method}, 'GET', 'the server saw a GET');

$node->stop;
done_testing();
