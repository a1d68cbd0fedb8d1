# Allma compatibility at run time, against the mock server: an API_CALL
# without apiHttpMethod sends a GET (the README's default; it used to be a
# required field; the definition-time side is in sql/93_papercuts.sql); and
# the email trigger end to end: a mail gateway role delivers a message,
# the matching flow runs as its owner and answers through the mock SMTP
# server with what it read from triggeringEmail; and the real exported flow
# optiroq-process-incoming-email started by email (routing and parsing are
# tested in sql/92_deliver_email.sql).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use JSON::PP;
use lib 't';
use AllmaTest;

my ($base, $smtp_port) = start_mock(smtp => 1);
my $node = allma_node('compat', "allma.http_allowlist = '127.0.0.1'\nallma.timer_scale = 0.01\n"
	  . "allma.smtp_url = 'smtp://127.0.0.1:$smtp_port'\n");
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

# --- the email trigger ----------------------------------------------------
q1(q{CREATE ROLE support_owner LOGIN; GRANT allma_user TO support_owner;
     CREATE ROLE mail_gateway LOGIN; GRANT allma_admin TO mail_gateway;});
$node->safe_psql('postgres', q{SELECT allma_create_flow('{"id": "support", "startStepInstanceId": "reply",
  "flowVariables": {"FromEmail": "support@example.test"}, "steps": {
  "inbox": {"stepType": "EMAIL_START_POINT", "emailAddress": "{{flow_variables.FromEmail}}",
            "triggerMessagePattern": "order ([A-Z]-[0-9]+)", "defaultNextStepInstanceId": "reply"},
  "reply": {"stepType": "EMAIL", "from": "{{flow_variables.FromEmail}}",
            "to": "{{triggeringEmail.senderFullEmail}}",
            "subject": "Re: {{triggeringEmail.subject}}",
            "body": "Dear {{triggeringEmail.senderName}}, we are looking into order {{triggeringEmail.triggerPattern}}."}}}')},
	extra_params => [ '-U', 'support_owner' ]);
my $message = join("\r\n",
	'From: =?UTF-8?Q?Ada_L=C3=B6velace?= <ada@example.test>',
	'To: Support <support@example.test>',
	'Subject: =?UTF-8?B?V2hlcmUgaXMgbXkgb3JkZXI/?=',
	'Message-ID: <e2e-1@example.test>',
	'Content-Type: multipart/alternative; boundary="b"',
	'',
	'--b',
	'Content-Type: text/plain; charset=utf-8',
	'Content-Transfer-Encoding: quoted-printable',
	'',
	'Hello, where is order A-=',
	'17?',
	'--b',
	'Content-Type: text/html',
	'',
	'<p>Hello, where is order A-17?</p>',
	'--b--', '');
$message =~ s/'/''/g;
my $ids = $node->safe_psql('postgres', "SELECT allma_deliver_email('$message')",
	extra_params => [ '-U', 'mail_gateway' ]);
like($ids, qr/^\{[0-9a-f-]{36}\}$/, 'the gateway delivers the message: one execution');
my ($e2) = $ids =~ /([0-9a-f-]{36})/;
is(q1("SELECT allma_wait('$e2', '60 s')"), 'COMPLETED', 'the flow runs')
  or diag(q1("SELECT error FROM allma.executions WHERE execution_id = '$e2'"));
is(q1("SELECT started_by::text FROM allma.executions WHERE execution_id = '$e2'"), 'support_owner',
	'as the flow\'s owner');
my $reply = (grep { $_->{data} =~ /where is my order/i } @{ mock_json($base, '/__mail') })[-1] // { data => '' };
is_deeply([ map { s/[<>]//gr } @{ $reply->{rcpt_to} // [] } ], [ 'ada@example.test' ], 'the reply goes to the sender');
like($reply->{data}, qr/^Subject: Re: Where is my order\?\r?$/m, 'with the decoded subject');
like($reply->{data}, qr/Dear Ada L\S+velace, we are looking into order A-17\./,
	'with the sender\'s name and the pattern\'s group from the quoted-printable text');
# delivered again (a gateway retry): the same execution, no second reply
is($node->safe_psql('postgres', "SELECT allma_deliver_email('$message')", extra_params => [ '-U', 'mail_gateway' ]),
	$ids, 'a redelivered message starts nothing new');
is(q1("SELECT count(*) FROM allma.executions WHERE flow_id = 'support'"), '1', 'one execution in all');
# not for a role without allma_admin
my ($ret, $out, $err) = $node->psql('postgres', "SELECT allma_deliver_email('$message')",
	extra_params => [ '-U', 'support_owner' ]);
like($err, qr/permission denied for function allma_deliver_email/, 'allma_user may not deliver');

# --- a real Allma flow started by email ---------------------------------------
# optiroq-process-incoming-email (test/fixtures/allma-example-flows/) as
# exported: its EMAIL_START_POINT routes the message, and its first step,
# a Lambda (bound here to a SQL function that keeps what it receives), gets
# $.triggeringEmail in Allma's shape
my $src = $ENV{ALLMA_SRC} // '..';
my $bundle = JSON::PP->new->decode(slurp_file("$src/test/fixtures/allma-example-flows/optiroq-communication.flows.json"));
my ($incoming) = grep { $_->{id} eq 'optiroq-process-incoming-email' } @{ $bundle->{flows} };
my $flow_json = JSON::PP->new->canonical->encode($incoming);
$flow_json =~ s/'/''/g;
q1(q{CREATE ROLE optiroq LOGIN; GRANT allma_user TO optiroq;
     CREATE TABLE lambda_calls (payload jsonb); GRANT INSERT ON lambda_calls TO optiroq;
     CREATE FUNCTION parse_and_correlate(payload jsonb) RETURNS jsonb LANGUAGE sql AS
       $$ INSERT INTO lambda_calls VALUES (payload); SELECT '{"intent": "HUMAN_REVIEW"}'::jsonb $$;
     SELECT allma_bind_module('arn:aws:lambda:%:function:optiroq-parseandcorrelateemail-%',
                              'parse_and_correlate(jsonb)');
     SELECT allma_grant_module_binding('arn:aws:lambda:%:function:optiroq-parseandcorrelateemail-%', 'optiroq');});
$node->safe_psql('postgres', "SELECT allma_create_flow('$flow_json')", extra_params => [ '-U', 'optiroq' ]);
my $rfq = join("\r\n",
	'From: Supplier Sales <sales@supplier.test>',
	'To: agent-rfq@mail-beta.optiroq.com',
	'Subject: Quote for RFQ-2026-001',
	'Message-ID: <quote-1@supplier.test>',
	'',
	'Please find our quote for RFQ-2026-001 below.', '');
$rfq =~ s/'/''/g;
$ids = $node->safe_psql('postgres', "SELECT allma_deliver_email('$rfq')", extra_params => [ '-U', 'mail_gateway' ]);
my ($e3) = $ids =~ /([0-9a-f-]{36})/;
ok($e3, 'the message starts the real flow');
q1("SELECT allma_wait('$e3', '60 s')");
is(q1("SELECT string_agg(step_instance_id || ':' || status, ',' ORDER BY seq) FROM allma.step_executions
        WHERE execution_id = '$e3' AND step_instance_id IN ('email_trigger', 'parse_and_correlate')"),
	'email_trigger:COMPLETED,parse_and_correlate:COMPLETED', 'from its EMAIL_START_POINT through its first Lambda');
my $payload = JSON::PP->new->decode(q1("SELECT payload FROM lambda_calls") || '{}');
my $got = $payload->{stepInput}{triggeringEmail} // {};
is_deeply([ map { $got->{$_} } qw(from senderName senderFullEmail senderEmailPrefix to subject) ],
	[ 'Supplier Sales <sales@supplier.test>', 'Supplier Sales', 'sales@supplier.test', 'sales',
	  'agent-rfq@mail-beta.optiroq.com', 'Quote for RFQ-2026-001' ],
	'the Lambda gets triggeringEmail in Allma\'s shape') or diag(q1("SELECT payload FROM lambda_calls"));
like($got->{body} // '', qr/^Please find our quote for RFQ-2026-001 below\.\n?$/, 'with the text body');

$node->stop;
done_testing();
