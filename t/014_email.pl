# EMAIL steps through the HTTP client's SMTP support (libcurl's multi
# interface) against the mock SMTP server: rendered fields, recipients (bcc
# only in the envelope), headers, customHeaders, HTML detection, SMTP login
# with the password from a secret (never stored), attachments (listed in the
# step or at attachmentsPath), a resend after a crash, a refused recipient,
# an unreachable server (transient, retried) and no SMTP server configured.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use JSON::PP;
use lib 't';
use AllmaTest;

my ($base, $smtp_port) = start_mock(smtp => 1);
ok($smtp_port, 'the mock SMTP server runs');
my $node = allma_node('email', "allma.smtp_url = 'smtp://127.0.0.1:$smtp_port'\nallma.timer_scale = 0.01\n"
	  . "allma.http_allowlist = '127.0.0.1'\n");

sub q1 { return $node->safe_psql('postgres', $_[0]); }

sub error_text
{
	my ($e) = @_;
	return q1("SELECT error->>'errorName' || ': ' || (error->>'errorMessage') FROM allma.executions WHERE execution_id = '$e'");
}

sub mail_log
{
	my $json = `python3 -c "import urllib.request; print(urllib.request.urlopen('$base/__mail').read().decode())"`;
	return JSON::PP->new->decode($json);
}

q1(q{SELECT allma_create_flow('{"id": "mail", "startStepInstanceId": "send", "flowVariables": {"FromEmail": "agent@example.test"}, "steps": {
  "send": {"stepType": "EMAIL", "from": "{{flow_variables.FromEmail}}", "fromName": "Allma Agent",
           "to": "{{user}}", "cc": ["boss@example.test"], "bcc": "audit@example.test",
           "replyTo": ["{{flow_variables.FromEmail}}"],
           "customHeaders": [{"name": "X-Project", "value": "{{project}}"}],
           "subject": "Report for {{project}}", "body": "Hello {{user}},\nthe report for {{project}} is ready.",
           "defaultNextStepInstanceId": "done"},
  "done": {"stepType": "NO_OP"}}}')});

my $e = q1(q{SELECT allma_start_flow('mail', '{"user": "ada@example.test", "project": "P-7"}')});
is(q1("SELECT allma_wait('$e', '60 s')"), 'COMPLETED', 'the EMAIL step completes');
is(q1("SELECT output->'steps_output'->'send'->'renderedEmail'->>'subject' FROM allma.executions WHERE execution_id = '$e'"),
	'Report for P-7', 'the output has the rendered email');
is(q1("SELECT (o->>'messageId') = (o->>'sesMessageId') AND o->>'messageId' LIKE '<$e.send.%\@allma>'
	   FROM (SELECT output->'steps_output'->'send' AS o FROM allma.executions WHERE execution_id = '$e') s"),
	't', 'messageId (also under Allma\'s name sesMessageId) derives from execution and step');

my $mail = mail_log();
is(scalar(@$mail), 1, 'one message reached the SMTP server');
my $m = $mail->[0];
like($m->{mail_from}, qr/agent\@example\.test/, 'envelope sender');
is_deeply([ sort map { s/[<>]//gr } @{ $m->{rcpt_to} } ],
	[ 'ada@example.test', 'audit@example.test', 'boss@example.test' ], 'to, cc and bcc are recipients');
like($m->{data}, qr/^Subject: Report for P-7\r?$/m, 'subject header');
like($m->{data}, qr/^From: Allma Agent <agent\@example\.test>\r?$/m, 'from header with name');
like($m->{data}, qr/^Cc: boss\@example\.test\r?$/m, 'cc header');
like($m->{data}, qr/^Reply-To: agent\@example\.test\r?$/m, 'reply-to header');
like($m->{data}, qr/^X-Project: P-7\r?$/m, 'custom header, rendered');
like($m->{data}, qr/^Date: \w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d \+0000\r?$/m, 'RFC 5322 date');
like($m->{data}, qr{^Content-Type: text/plain; charset=UTF-8\r?$}m, 'plain text body');
unlike($m->{data}, qr/audit\@example\.test/, 'bcc is not in the headers');
like($m->{data}, qr/Hello ada\@example\.test,\r\nthe report for P-7 is ready\./, 'rendered body with CRLF lines');
like($m->{data}, qr/^Message-ID: <$e\.send\.1\@allma>\r?$/m, 'Message-ID from execution, step and attempt');
is($m->{auth_user}, undef, 'no login without allma.smtp_username');

# HTML body, a dot at the start of a line (SMTP dot-stuffing), non-ASCII subject
q1(q{SELECT allma_create_flow('{"id": "html", "startStepInstanceId": "send", "steps": {
  "send": {"stepType": "EMAIL", "from": "a@example.test", "to": "b@example.test",
           "subject": "Grüße", "body": "<p>Hi</p>\n.\n.dot"}}}')});
$e = q1(q{SELECT allma_start_flow('html', '{}')});
is(q1("SELECT allma_wait('$e', '60 s')"), 'COMPLETED', 'an HTML email is sent');
$m = mail_log()->[-1];
like($m->{data}, qr{^Content-Type: text/html; charset=UTF-8\r?$}m, 'HTML body detected');
like($m->{data}, qr/<p>Hi<\/p>\r\n\.\r\n\.dot/, 'lines starting with a dot arrive intact');
like($m->{data}, qr/^Subject: =\?UTF-8\?B\?R3LDvMOfZQ==\?=\r?$/m, 'non-ASCII subject is RFC 2047 encoded');

# attachments: a file stored by FILE_DOWNLOAD goes along, byte for byte
# (100,000 bytes: the message is too large to be copied into the stored
# request and is sent from memory)
q1(qq{SELECT allma_create_flow('{"id": "attach", "startStepInstanceId": "dl", "steps": {
  "dl": {"stepType": "FILE_DOWNLOAD", "sourceUrlTemplate": "$base/bytes/100000", "defaultNextStepInstanceId": "send"},
  "send": {"stepType": "EMAIL", "from": "a\@example.test", "to": "b\@example.test", "subject": "data",
           "body": "see the file",
           "attachments": [{"filename": "data.bin", "filePointer": {"fileId": "{{steps_output.dl.filePointer.fileId}}"}}]}}}')});
$e = q1(q{SELECT allma_start_flow('attach', '{}')});
is(q1("SELECT allma_wait('$e', '60 s')"), 'COMPLETED', 'an email with an attachment is sent') or diag(q1("SELECT error FROM allma.executions WHERE execution_id = '$e'"));
$m = mail_log()->[-1];
like($m->{data}, qr{^Content-Type: multipart/mixed; boundary="([^"]+)"\r?$}m, 'a multipart message');
my ($part) = $m->{data} =~ m{Content-Disposition: attachment; filename="data\.bin"\r\nContent-Transfer-Encoding: base64\r\n\r\n([A-Za-z0-9+/=\r\n]+)};
require MIME::Base64;
my $bytes = MIME::Base64::decode_base64($part // '');
is(length($bytes), 100000, 'the attachment has all the bytes');
is($bytes, join('', map { chr($_ % 256) } 0 .. 99999), 'byte for byte');
like($m->{data}, qr/see the file/, 'and the body');

# attachmentsPath: the attachments are an array in the context, here built
# by two downloads' output mappings (filename from the step's literals)
q1(qq{SELECT allma_create_flow('{"id": "attach-path", "startStepInstanceId": "dl1", "steps": {
  "dl1": {"stepType": "FILE_DOWNLOAD", "sourceUrlTemplate": "$base/files/300.pdf", "literals": {"name": "report.pdf"},
          "outputMappings": {"\$.files[0].filePointer": "\$.filePointer", "\$.files[0].filename": "\$.name"},
          "defaultNextStepInstanceId": "dl2"},
  "dl2": {"stepType": "FILE_DOWNLOAD", "sourceUrlTemplate": "$base/bytes/70", "literals": {"name": "raw.bin"},
          "outputMappings": {"\$.files[1].filePointer": "\$.filePointer", "\$.files[1].filename": "\$.name"},
          "defaultNextStepInstanceId": "send"},
  "send": {"stepType": "EMAIL", "from": "a\@example.test", "to": "b\@example.test", "subject": "two files",
           "body": "see attached", "attachmentsPath": "\$.files"}}}')});
$e = q1(q{SELECT allma_start_flow('attach-path', '{}')});
is(q1("SELECT allma_wait('$e', '60 s')"), 'COMPLETED', 'an email with attachments at attachmentsPath is sent')
  or diag(q1("SELECT error FROM allma.executions WHERE execution_id = '$e'"));
$m = (grep { $_->{data} =~ /^Subject: two files\r?$/m } @{ mail_log() })[-1] // { data => '' };
my %parts = $m->{data} =~ m{Content-Disposition: attachment; filename="([^"]+)"\r\nContent-Transfer-Encoding: base64\r\n\r\n([A-Za-z0-9+/=\r\n]+)}g;
is_deeply([ sort keys %parts ], [ 'raw.bin', 'report.pdf' ], 'both files are attached, with their filenames');
is(MIME::Base64::decode_base64($parts{'report.pdf'} // ''),
	join('', map { substr('0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ', $_ % 62, 1) } 0 .. 299),
	'the first file byte for byte');
is(MIME::Base64::decode_base64($parts{'raw.bin'} // ''), join('', map { chr($_) } 0 .. 69),
	'the second file byte for byte');
like($m->{data}, qr{Content-Type: application/pdf}, 'with the type the download stored');
# attachmentsPath naming something that is not an array: a configuration error
q1(q{SELECT allma_create_flow('{"id": "attach-path-bad", "startStepInstanceId": "send", "steps": {
  "send": {"stepType": "EMAIL", "from": "a@example.test", "to": "b@example.test", "subject": "s", "body": "b",
           "attachmentsPath": "$.files"}}}')});
$e = q1(q{SELECT allma_start_flow('attach-path-bad', '{"files": {"filename": "x"}}')});
is(q1("SELECT allma_wait('$e', '60 s')"), 'FAILED', 'attachmentsPath naming an object fails the step');
is(error_text($e), 'ConfigurationError: EMAIL step "send": attachmentsPath $.files is not an array',
	'naming the step and the path');

# an S3 pointer (Allma's) names an object of a bucket (docs/aws-modules.md;
# t/040 mails one): a bucket that does not exist fails the step, naming it
q1(q{SELECT allma_create_flow('{"id": "s3attach", "startStepInstanceId": "send", "steps": {
  "send": {"stepType": "EMAIL", "from": "a@example.test", "to": "b@example.test", "subject": "s", "body": "b",
           "attachments": [{"filename": "x.xlsx", "s3Pointer": {"bucket": "nobucket", "key": "k"}}]}}}')});
$e = q1(q{SELECT allma_start_flow('s3attach', '{}')});
is(q1("SELECT allma_wait('$e', '60 s')"), 'FAILED', 'an S3 attachment of a missing bucket fails the step');
like(q1("SELECT error->>'errorName' || ': ' || (error->>'errorMessage') FROM allma.executions WHERE execution_id = '$e'"),
	qr/nobucket/, 'naming the bucket');

# a crash while a send is in flight: after the restart the message is sent
# again, with the same Message-ID (at-least-once), and the step is recorded
# once.  The mock never acknowledges the first message to a "hold" address,
# and the server is crashed once the mock has it: the message was certainly
# sent, and certainly not acknowledged, before the crash.
$e = q1(q{SELECT allma_start_flow('mail', '{"user": "hold-p11@example.test", "project": "P-11"}')});
poll_effect(sub { grep { $_->{data} =~ /Report for P-11/ } @{ mail_log() } })
  or die 'the message did not reach the SMTP server';
is(q1("SELECT status FROM allma.execution_paths WHERE execution_id = '$e'"), 'INFLIGHT',
	'the send is in flight when the server crashes');
$node->stop('immediate');
$node->start;
is(q1("SELECT allma_wait('$e', '60 s')"), 'COMPLETED', 'the email step completes after a crash');
my @copies = grep { $_->{data} =~ /Report for P-11/ } @{ mail_log() };
cmp_ok(scalar(@copies), '>=', 2, 'the message was sent again');
my %ids = map { ($_->{data} =~ /^Message-ID: (\S+)\r?$/m)[0] => 1 } @copies;
is_deeply([ keys %ids ], [ "<$e.send.1\@allma>" ], 'with the same Message-ID');
is(q1("SELECT count(*) FROM allma.step_executions WHERE execution_id = '$e' AND step_instance_id = 'send'"),
	'1', 'and the step is recorded once');

# configuration errors found when the step runs: they name the step and the field
q1(q{SELECT allma_create_flow('{"id": "mail-bad", "startStepInstanceId": "send", "steps": {
  "send": {"stepType": "EMAIL", "from": "a@example.test", "to": "{{nobody}}", "subject": "s", "body": "b",
           "attachments": [{"filename": "f.bin", "filePointer": {"fileId": "{{fileId}}"}}]}}}')});
$e = q1(q{SELECT allma_start_flow('mail-bad', '{"fileId": "00000000-0000-4000-8000-000000000001"}')});
is(q1("SELECT allma_wait('$e', '60 s')"), 'FAILED', 'an email without recipients fails');
is(error_text($e), 'ConfigurationError: EMAIL step "send": "to" has no address after rendering', 'saying what is missing');
$e = q1(q{SELECT allma_start_flow('mail-bad', '{"nobody": "b@example.test", "fileId": "00000000-0000-4000-8000-000000000001"}')});
is(q1("SELECT allma_wait('$e', '60 s')"), 'FAILED', 'an attachment that is not a file of the execution fails');
is(error_text($e), 'ConfigurationError: EMAIL step "send": attachment "f.bin": file 00000000-0000-4000-8000-000000000001 is not a file of this execution',
	'naming the attachment and the file');

# a recipient the server refuses: permanent, no retries, the recipient named
$e = q1(q{SELECT allma_start_flow('mail', '{"user": "reject-me@example.test", "project": "P-8"}')});
is(q1("SELECT allma_wait('$e', '60 s')"), 'FAILED', 'a refused recipient fails the step');
like(q1("SELECT error->>'errorName' || ': ' || (error->>'errorMessage') FROM allma.executions WHERE execution_id = '$e'"),
	qr/PermanentStepError: sending email failed: .*550.*\(recipient <reject-me\@example\.test> refused\)/,
	'as a permanent error naming the refused recipient');

# the rendered fields are checked as Allma checks them (before anything is
# sent): an empty "from" (an undefined flow variable) and an invalid
# address fail the step, naming the step and the field
my $sent_before = scalar(@{ mail_log() });
q1(q{SELECT allma_create_flow('{"id": "mail-fields", "startStepInstanceId": "send", "flowVariables": {"recipients": ["list-a@example.test", "list-b@example.test"]}, "steps": {
  "send": {"stepType": "EMAIL", "from": "{{from}}", "to": "{{to}}", "cc": "{{flow_variables.recipients}}",
           "subject": "fields", "body": "b"}}}')});
$e = q1(q{SELECT allma_start_flow('mail-fields', '{"to": "ada@example.test"}')});
is(q1("SELECT allma_wait('$e', '60 s')"), 'FAILED', 'an empty "from" fails the step');
is(error_text($e), 'ConfigurationError: EMAIL step "send": "from" is empty after rendering',
	'naming the step and the field');
$e = q1(q{SELECT allma_start_flow('mail-fields', '{"from": "not-an-address", "to": "ada@example.test"}')});
is(q1("SELECT allma_wait('$e', '60 s')"), 'FAILED', 'an invalid "from" fails the step');
is(error_text($e), 'ConfigurationError: EMAIL step "send": "from" is not a valid email address: "not-an-address"',
	'naming the field and the value');
$e = q1(q{SELECT allma_start_flow('mail-fields', '{"from": "a@example.test", "to": "ada@example.test, bob@"}')});
is(q1("SELECT allma_wait('$e', '60 s')"), 'FAILED', 'an invalid recipient fails the step');
is(error_text($e), 'ConfigurationError: EMAIL step "send": "to" has an invalid email address "bob@"',
	'naming the field and the address');
is(scalar(@{ mail_log() }), $sent_before, 'none of them reached the SMTP server');

# an array rendered into a field ("{{flow_variables.recipients}}") is a
# recipient list, not the fragments of its JSON text; a quoted display name
# with a comma is one address
$e = q1(q{SELECT allma_start_flow('mail-fields', '{"from": "Sender <a@example.test>", "to": "\"Doe, Jane\" <jane@example.test>; Roe, Rick <rick@example.test>, Jürgen Groß <jg@example.test>"}')});
is(q1("SELECT allma_wait('$e', '60 s')"), 'COMPLETED', 'an array rendered into cc is sent')
  or diag(error_text($e));
$m = (grep { $_->{data} =~ /^Subject: fields\r?$/m } @{ mail_log() })[-1] // { rcpt_to => [], data => '' };
is_deeply([ sort map { s/[<>]//gr } @{ $m->{rcpt_to} } ],
	[ 'jane@example.test', 'jg@example.test', 'list-a@example.test', 'list-b@example.test', 'rick@example.test' ],
	'each element is a recipient');
like($m->{data}, qr/^Cc: list-a\@example\.test, list-b\@example\.test\r?$/m, 'and the Cc header lists them');
like($m->{data}, qr/^To: "Doe, Jane" <jane\@example\.test>, "Roe, Rick" <rick\@example\.test>, =\?UTF-8\?B\?SsO8cmdlbiBHcm\/Dnw==\?= <jg\@example\.test>\r?$/m,
	'a name with a comma, quoted or not (as Allma splits), stays one address, quoted in the header; a non-ASCII name is encoded, its address not');
like($m->{mail_from}, qr/^<?a\@example\.test>?$/, 'the envelope sender of "Name <addr>" is the address');

# login: the password comes from a secret and is never stored
my $canary = 'smtp-canary-' . int(rand(1e9));
q1("SELECT allma_set_secret('SMTP_PASSWORD', '$canary')");
$node->append_conf('postgresql.conf', "allma.smtp_username = 'mailer'\n");
$node->reload;
wait_for_setting($node, 'allma.smtp_username', 'mailer');
$e = q1(q{SELECT allma_start_flow('mail', '{"user": "ada@example.test", "project": "P-10"}')});
is(q1("SELECT allma_wait('$e', '60 s')"), 'COMPLETED', 'the EMAIL step completes with a login');
$m = mail_log()->[-1];
is($m->{auth_user}, 'mailer', 'logged in as allma.smtp_username');
# (compared here, in the test: the value reaches neither the server's log
# nor a query)
ok(defined $m->{auth_password} && $m->{auth_password} eq $canary,
	'with the password from the secret allma.smtp_password_secret names');
is(q1("SELECT count(*) FROM allma.step_executions WHERE execution_id = '$e' AND (coalesce(details::text, '') || coalesce(input::text, '') || coalesce(output::text, '')) LIKE '%$canary%'")
	 + q1("SELECT count(*) FROM allma.executions WHERE execution_id = '$e' AND (output::text LIKE '%$canary%' OR coalesce(error::text, '') LIKE '%$canary%')")
	 + q1("SELECT count(*) FROM allma.execution_paths WHERE execution_id = '$e' AND coalesce(request::text, '') LIKE '%$canary%'"),
	0, 'the password is in no allma table');
# (allma_set_secret's own statement is logged with log_statement = all,
# as the README says; nothing else may show the value)
unlike(join("\n", grep { !/statement: / } split(/\n/, slurp_file($node->logfile))),
	qr/$canary/, 'nor in the server log');

# an unreachable SMTP server: transient, retried, then failed
$node->append_conf('postgresql.conf', "allma.smtp_url = 'smtp://127.0.0.1:1'\nallma.smtp_username = ''\n");
$node->reload;
wait_for_setting($node, 'allma.smtp_url', 'smtp://127.0.0.1:1');
q1(q{SELECT allma_create_flow('{"id": "mail-retry", "startStepInstanceId": "send", "steps": {
  "send": {"stepType": "EMAIL", "from": "a@example.test", "to": "b@example.test", "subject": "s", "body": "b",
           "onError": {"retries": {"count": 2, "intervalSeconds": 1}}}}}')});
$e = q1(q{SELECT allma_start_flow('mail-retry', '{}')});
is(q1("SELECT allma_wait('$e', '60 s')"), 'FAILED', 'an unreachable SMTP server fails the step');
like(q1("SELECT error->>'errorName' FROM allma.executions WHERE execution_id = '$e'"),
	qr/TransientStepError/, 'as a transient error');
is(q1("SELECT count(*) FROM allma.step_executions WHERE execution_id = '$e' AND step_instance_id = 'send'"),
	'3', 'after the configured retries');

# no SMTP server configured
$node->append_conf('postgresql.conf', "allma.smtp_url = ''\n");
$node->reload;
wait_for_setting($node, 'allma.smtp_url', '');
$e = q1(q{SELECT allma_start_flow('mail', '{"user": "ada@example.test", "project": "P-9"}')});
is(q1("SELECT allma_wait('$e', '60 s')"), 'FAILED', 'without allma.smtp_url the step fails');
like(q1("SELECT error->>'errorName' || ': ' || (error->>'errorMessage') FROM allma.executions WHERE execution_id = '$e'"),
	qr/ConfigurationError: .*allma.smtp_url is not set/, 'and says why');

$node->stop;
done_testing();
