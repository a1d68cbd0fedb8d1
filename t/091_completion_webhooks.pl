# onCompletionActions webhooks (API_CALL) against the mock server, which
# checks their X-Allma-Signature: signed with a named secret, retried on
# 500 with the same Idempotency-Key, a failing webhook visible in the
# history and never changing the execution's outcome, the secret used only
# under its grants and allowed hosts and never stored; and a NOTIFY action
# delivered with the execution id as its only payload.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use HTTP::Tiny;
use JSON::PP;
use lib 't';
use AllmaTest;

my $base = start_mock();
my $node = allma_node('webhooks', qq{
allma.http_allowlist = '127.0.0.1'
allma.timer_scale = 0.01
});

sub q1 { return $node->safe_psql('postgres', $_[0]); }

my $secret = 'whsec-' . join('', map { ('a' .. 'z')[ rand 26 ] } 1 .. 24);
my $res = HTTP::Tiny->new->post("$base/__webhook_secret?name=hook", { content => $secret });
ok($res->{success}, 'mock knows the webhook secret');

q1(qq{SELECT allma_set_secret('HOOK_SECRET', '$secret')});
q1(q{SELECT allma_set_secret_allowed_hosts('HOOK_SECRET', ARRAY['127.0.0.1'])});
q1(q{SELECT allma_set_secret('FAR_SECRET', 'far-away')});
q1(q{SELECT allma_set_secret_allowed_hosts('FAR_SECRET', ARRAY['hooks.example.com'])});
# (the test harness logs every statement, these included: look from here on)
my $log_offset = -s $node->logfile;

# 0: signed, fails twice with 500, then verified; 1: a webhook whose
# secret the mock does not know (401 on every attempt); 2: a secret not
# allowed for the host (nothing is sent); 3: NOTIFY
q1(qq{SELECT allma_create_flow('{"id": "hooked", "startStepInstanceId": "s",
  "steps": {"s": {"stepType": "NO_OP"}},
  "onCompletionActions": [
    {"actionType": "API_CALL", "target": "$base/webhook/hook?fail_times=2", "apiHttpMethod": "POST",
     "signingSecret": "HOOK_SECRET", "retries": {"count": 3, "intervalSeconds": 1},
     "payloadTemplate": {"name": "\$.name", "status": "\$.status", "id": "\$.flowExecutionId"}},
    {"actionType": "API_CALL", "target": "$base/webhook/stranger", "apiHttpMethod": "POST",
     "signingSecret": "HOOK_SECRET", "retries": {"count": 1, "intervalSeconds": 1}},
    {"actionType": "API_CALL", "target": "$base/webhook/far", "apiHttpMethod": "POST",
     "signingSecret": "FAR_SECRET", "retries": {"count": 0}},
    {"actionType": "NOTIFY", "target": "tap_hooked"}]}')});

# LISTEN, start, wait, and see the notification, in one session
my $out = q1(q{LISTEN tap_hooked;
SELECT allma_start_flow('hooked', '{"name": "ada"}', '{"executionId": "00000000-0000-4000-8000-00000000b001"}');
SELECT allma_wait('00000000-0000-4000-8000-00000000b001', '120 s');
SELECT 'done';});
like($out, qr/COMPLETED/, 'the execution completed');
like($out, qr/Asynchronous notification "tap_hooked" with payload "00000000-0000-4000-8000-00000000b001" received/,
	'NOTIFY action: the execution id is the payload');

my $e = '00000000-0000-4000-8000-00000000b001';
$node->poll_query_until('postgres', qq{
	SELECT count(*) = 3 FROM allma.step_executions
	 WHERE execution_id = '$e' AND path_id < 0 AND status IN ('COMPLETED', 'FAILED')
	   AND step_type = 'COMPLETION_ACTION' AND step_instance_id <> 'onCompletionActions[3]'})
  or die 'the webhooks did not finish';
is(q1(qq{SELECT count(*) FROM allma.execution_paths WHERE execution_id = '$e'}), '0',
	'no webhook path left');
unlike(slurp_file($node->logfile, $log_offset), qr/\Q$secret\E/, 'the secret is not in the server log');

is(q1(qq{SELECT string_agg(attempt || ':' || status, ' ' ORDER BY seq) FROM allma.step_executions
	WHERE execution_id = '$e' AND step_instance_id = 'onCompletionActions[0]'}),
	'1:RETRYING 2:RETRYING 3:COMPLETED', 'action 0: retried twice on 500, then delivered');
is(q1(qq{SELECT string_agg(DISTINCT error->'errorDetails'->>'status', ',') FROM allma.step_executions
	WHERE execution_id = '$e' AND step_instance_id = 'onCompletionActions[0]' AND status = 'RETRYING'}),
	'500', 'the retries were for the 500s');
is(q1(qq{SELECT string_agg(attempt || ':' || status || ':' || coalesce(error->'errorDetails'->>'status', ''), ' ' ORDER BY seq)
	FROM allma.step_executions WHERE execution_id = '$e' AND step_instance_id = 'onCompletionActions[1]'}),
	'1:RETRYING:401 2:FAILED:401', 'action 1: refused by the receiver, retried, FAILED in the history');
like(q1(qq{SELECT error->>'errorMessage' FROM allma.step_executions
	WHERE execution_id = '$e' AND step_instance_id = 'onCompletionActions[2]'}),
	qr/FAR_SECRET/, 'action 2: the secret may not go to that host (error names the secret)');
is(q1(qq{SELECT status FROM allma.executions WHERE execution_id = '$e'}), 'COMPLETED',
	'failing webhooks do not change the outcome');

# what the mock saw
my $hooks = mock_json($base, '/__webhooks');
my @hook = grep { $_->{name} eq 'hook' } @$hooks;
is(scalar(@hook), 1, 'one delivery of action 0 reached the signature check (the 500s came first)');
ok($hook[0]{verified}, 'and its signature verified') or diag explain $hook[0];
is($hook[0]{idempotency_key}, "$e/onCompletionActions[0]", 'Idempotency-Key names the execution and the action');
is_deeply(decode_json($hook[0]{body}), { name => 'ada', status => 'COMPLETED', id => $e },
	'the payload is the payloadTemplate over the final state');
is($hook[0]{execution_id}, $e, 'X-Allma-Execution-Id');
my @stranger = grep { $_->{name} eq 'stranger' } @$hooks;
is(scalar(@stranger), 2, 'action 1 was sent twice');
is($stranger[0]{reason}, 'no secret set for this webhook', 'and refused by the mock');
is(scalar(grep { $_->{name} eq 'far' } @$hooks), 0, 'action 2 sent nothing');

my $log = mock_json($base, '/__log?path=/webhook/hook');
is(scalar(@$log), 3, 'action 0: three requests');
is(scalar(grep { ($_->{idempotency_key} // '') eq "$e/onCompletionActions[0]" } @$log), 3,
	'all with the same Idempotency-Key');
is(scalar(grep { ($_->{headers}{'x-allma-signature'} // '') =~ /^t=\d+,v1=[0-9a-f]{64}$/ } @$log), 3,
	'all signed');

# the secret and the signatures are in no table and not in the log
my $sig = (split /v1=/, $hook[0]{signature})[1];
is(q1(qq{SELECT count(*) FROM allma.step_executions WHERE step_executions::text LIKE '%$secret%' OR step_executions::text LIKE '%$sig%'}),
	'0', 'neither the secret nor the signature is in the history');

$node->stop;
done_testing();
