# The 7 real Allma export bundles of test/fixtures/allma-example-flows/ (14
# flows) imported with allma_import and run unchanged: deploy parameters
# fill {{stage}}, {{region}}, {{accountId}} and {{optiroqApiDomain}}; only
# the customer's Lambda ARNs (and system/jsonata-transformer, which allma
# cannot build in) are bound, to small SQL functions
# (test/fixtures/bundle_lambdas.sql, dynamodb_bundle_lambdas.sql); the
# DynamoDB-shaped data the flows read is seeded through the built-in item
# store (the batch writer); LLM steps go to the mock's Gemini endpoint and
# EMAIL steps to its SMTP server.  Each flow's outcome is pinned, with the
# reason of every failure (docs/from-allma.md, "The 14 real flows").
#
# The bundles are imported, and the flows started, by a plain allma_user
# member ("optiroq"): it owns the flows and prompts; an administrator made
# the item stores, the bucket, the bindings and the Gemini key and granted
# them to it.  t/070 runs three of these flows with finer table privileges.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use JSON::PP;
use lib 't';
use AllmaTest;

my $src = $ENV{ALLMA_SRC} // '.';
my ($base, $smtp_port) = start_mock(smtp => 1);

# The bundles' LLM steps name Gemini models (gemini-flash-latest, ...) and
# ask for JSON; the mock answers JSON for its model "mock-json".  The base
# URL ends in a query, so that the request goes to mock-json whatever model
# the step names (the model lands in the query string).  When the mock
# answers JSON mode for any model name (the email issue), this goes.
my $node = allma_node('bundles', "allma.timer_scale = 0.01\n"
	  . "allma.smtp_url = 'smtp://127.0.0.1:$smtp_port'\n"
	  . "allma.http_allowlist = '127.0.0.1'\n"
	  . "allma.gemini_base_url = '$base/v1beta/models/mock-json:generateContent?model='\n");

sub q1 { my ($sql) = @_; return $node->safe_psql('postgres', $sql); }
# as the importing, starting role
sub qo { my ($sql) = @_; return $node->safe_psql('postgres', "SET ROLE optiroq; $sql"); }

my $json = JSON::PP->new->canonical;

sub sql_literal { my ($s) = @_; $s =~ s/'/''/g; return "'$s'"; }

# the item stores and the bucket the flows name (deployed as -test by the
# parameters; two bundles hold a deployed "-Beta" name)
q1(q{SELECT allma_set_secret('GEMINI_API_KEY', 'mock-gemini-key')});
for my $t ('OptiroqEntityGraph-test', 'OptiroqEntityGraph-Beta')
{
	q1(qq{SELECT allma_create_dynamodb_table('$t', 'PK', 'SK',
		'[{"indexName": "GSI1", "partitionKey": "GSI1PK", "sortKey": "GSI1SK"},
		  {"indexName": "FollowUpStatusIndex", "partitionKey": "followUpStatus", "sortKey": "followUpDeadline"}]')});
}
q1(q{SELECT allma_create_bucket('optiroq-artefacts')});
q1(slurp_file("$src/test/fixtures/dynamodb_bundle_lambdas.sql"));
q1(slurp_file("$src/test/fixtures/bundle_lambdas.sql"));
q1(q{CREATE ROLE optiroq; GRANT allma_user TO optiroq;
	 GRANT SELECT, INSERT, UPDATE, DELETE ON allma_dynamodb."OptiroqEntityGraph-test",
		allma_dynamodb."OptiroqEntityGraph-Beta", allma_s3."optiroq-artefacts" TO optiroq;
	 SELECT allma_grant_secret('GEMINI_API_KEY', 'optiroq');
	 SELECT allma_grant_module_binding(pattern, 'optiroq') FROM allma.module_bindings;
	 CREATE TABLE import_reports (n serial, r jsonb);
	 GRANT INSERT ON import_reports TO optiroq; GRANT USAGE ON SEQUENCE import_reports_n_seq TO optiroq});

###########################################################################
# Import: all 7 bundles in one transaction, with the deploy parameters
###########################################################################
my @files = map { "$src/test/fixtures/allma-example-flows/$_" } qw(
  optiroq-communication.flows.json optiroq-process-bom-upload.flow.json
  optiroq-process-rfq-upload.flow.json optiroq-process-supplier-import.flow.json
  optiroq-process-supplier-quote.flow.json optiroq-send-rfq-emails.flow.json
  optiroq_allma_flows.json);
my $params = '{"stage": "test", "region": "eu-west-1", "accountId": "123456789012", '
  . '"optiroqApiDomain": "api.optiroq.test"}';
my $imports = join(",\n", map { "(allma_import(" . sql_literal(slurp_file($_)) . ", false, '$params'))" } @files);
qo(qq{INSERT INTO import_reports (r) VALUES $imports});

is(q1(q{SELECT count(*) FROM import_reports, jsonb_array_elements(r->'flows')}), '14', '14 flows imported');
is(q1(q{SELECT count(*) FROM allma.flows WHERE published_version = 1 AND owner = 'optiroq'::regrole}), '14',
	'each published at its version 1, owned by the importer');
is(q1(q{SELECT count(*) FROM import_reports, jsonb_array_elements(r->'promptTemplates')}), '12',
	'12 prompt templates imported');
is(q1(q{SELECT count(*) FROM import_reports, jsonb_array_elements(r->'unresolvedPlaceholders')}), '0',
	'every deploy placeholder was given');
is(q1(q{SELECT count(*) FROM allma.flow_versions WHERE definition::text ~ '\{\{(stage|region|accountId|optiroqApiDomain)\}\}'}),
	'0', 'no placeholder is left in a stored flow');
is(q1(q{SELECT string_agg(u->>'flowId' || '/' || (u->>'stepId'), ', ' ORDER BY u->>'stepId')
		  FROM import_reports, jsonb_array_elements(r->'unboundModules') u}),
	'optiroq-process-rfq-upload/sanitize_ocr, optiroq-process-rfq-upload/sanitize_ppt',
	'only the two Lambdas the runs below do not reach are unbound');
is(q1(q{SELECT count(*) FROM import_reports, jsonb_array_elements(r->'unsupportedSteps') u}),
	'0', 'no step of the bundles is unsupported (sub-flows and waits run)');
is(q1(q{SELECT string_agg(d->>'flowId' || '/' || (d->>'stepId') || ' ' || (d->>'field'), ', '
				ORDER BY d->>'flowId', d->>'stepId', d->>'field')
		  FROM import_reports, jsonb_array_elements(r->'deadMappings') d}),
	'optiroq-initiate-follow-up/calculate_initial_deadline inputMappings.offsetSeconds, '
	  . 'optiroq-initiate-follow-up/update_quote_status_in_db inputMappings.key.PK, '
	  . 'optiroq-initiate-follow-up/update_quote_status_in_db inputMappings.key.SK, '
	  . 'optiroq-send-rfq-emails/log_communication_event inputMappings.key.SK',
	'the four mappings with Liquid filters are reported as dead');

###########################################################################
# The data the flows read, written through the built-in item store
###########################################################################
sub batch_write
{
	my ($table, @items) = @_;
	my $req = $json->encode({ tableName => $table, requests => [ map { { PutRequest => { Item => $_ } } } @items ] });
	qo("SELECT allma_run_module('system/dynamodb-batch-writer', " . sql_literal($req) . ")");
}
my @config = (
	{ PK => 'CONFIG#MASTER_FIELD_LIST', SK => 'FIELD#unitPrice', group => 'Quote', label => 'Unit price' },
	{ PK => 'CONFIG#MASTER_FIELD_LIST', SK => 'FIELD#projectName', group => 'Project', label => 'Project name' },
	{ PK => 'CONFIG#COMMODITIES', SK => 'COMMODITY#STEEL', name => 'Steel' },
	{ PK => 'CONFIG#ANOMALY_RULES', SK => 'RULE#1', rule => 'unit price must be positive' },
	{ PK => 'CONFIG#SUPPLIER_FIELD_LIST', SK => 'FIELD#supplierName', label => 'Supplier name' });
batch_write('OptiroqEntityGraph-Beta', @config,
	{ PK => 'BOM_PART#OLD-1', SK => 'METADATA', entityType => 'BOM_PART', partStatus => 'EXISTING',
	  partName => 'OLD-1', material => 'Steel' },
	{ PK => 'PROJECT#P-7', SK => 'METADATA', status => 'BOM_PROCESSING', bomProcessingFlowId => 'x' });
batch_write('OptiroqEntityGraph-test', @config,
	{ PK => 'RFQ#R-1', SK => 'METADATA', entityType => 'RFQ', status => 'OPEN' },
	{ PK => 'RFQ#R-1', SK => 'REJECTION#B-1', entityType => 'REJECTION_BATCH', rejectedSuppliers => [
		{ supplierId => 'S-1', email => 'sales@acme.test', rejectionMessage => 'Thank you, Acme.' },
		{ supplierId => 'S-2', email => 'quotes@bolt.test', rejectionMessage => 'Thank you, Bolt.' } ] },
	{ PK => 'RFQ#R-1', SK => 'QUOTE#S-1', supplierName => 'Acme', totalPrice => 1200, status => 'APPROVED' },
	{ PK => 'RFQ#R-1', SK => 'QUOTE#S-2', supplierName => 'Bolt', totalPrice => 990.5, status => 'REJECTED' },
	{ PK => 'RFQ#R-2', SK => 'METADATA', rfqId => 'R-2', projectId => 'P-7', responseDeadline => '2026-12-31',
	  parts => [ 'P-1', 'P-2' ], partDescriptions => { 'P-1' => 'Steel bracket', 'P-2' => 'Aluminium cover' },
	  volumeScenarios => [ { volume => 1000, unit => 'pcs/year' } ],
	  requirements => { material => JSON::PP::true, tooling => JSON::PP::true },
	  suppliers => [ { name => 'Acme', email => 'sales@acme.test', selected => JSON::PP::true },
					 { name => 'Bolt', email => 'quotes@bolt.test', selected => JSON::PP::false },
					 { name => 'Crown', email => 'rfq@crown.test', selected => JSON::PP::true } ] },
	{ PK => 'PROJECT#P-7', SK => 'BOM_PART#P-1', partName => 'P-1', material => 'Steel', quantity => 2 },
	{ PK => 'SUPPLIER#S-1', SK => 'METADATA', GSI1PK => 'USER#U-1', GSI1SK => 'SUPPLIER#S-1',
	  supplierName => 'Acme', contactEmail => 'sales@acme.test' });

###########################################################################
# Running the flows
###########################################################################
sub run_flow
{
	my ($flow, $input) = @_;
	my $e = qo("SELECT allma_start_flow('$flow', " . sql_literal($json->encode($input)) . ")");
	q1("SELECT allma_wait('$e', '120 s')");
	return $e;
}

sub outcome
{
	my ($e) = @_;
	return q1(qq{SELECT status || coalesce(' ' || (error->'errorDetails'->>'failedStepInstanceId') || ': '
						|| (error->>'errorName') || ': ' || (error->>'errorMessage'), '')
				  FROM allma.executions WHERE execution_id = '$e'});
}

sub item
{
	my ($table, $pk, $sk) = @_;
	return q1(qq{SELECT item FROM allma_dynamodb."$table" WHERE pk = '$pk' AND sk LIKE '$sk'});
}

my %outcomes;

# communication: the inbound email router starts one of three flows with
# START_FLOW_EXECUTION (asynchronously: the router completes at once)
my $e = run_flow('optiroq-process-incoming-email',
	{ triggeringEmail => { from => 'sales@acme.test', subject => 'Re: RFQ R-1', body => 'We can deliver in May.' } });
$outcomes{'optiroq-process-incoming-email'} = outcome($e);
is($outcomes{'optiroq-process-incoming-email'}, 'COMPLETED',
	'incoming email: routed to the supplier-response flow');
is(q1(qq{SELECT string_agg(flow_id, ',') FROM allma.executions WHERE parent_execution_id = '$e'}),
	'optiroq-process-supplier-response', 'incoming email: START_FLOW_EXECUTION started the supplier-response flow');

$e = run_flow('optiroq-process-supplier-response',
	{ initialContextData => { rfqId => 'R-1', supplierName => 'Acme', emailSubject => 'Re: RFQ R-1',
							  emailBody => 'We can deliver in May.', buyerEmail => 'buyer@optiroq.test' } });
$outcomes{'optiroq-process-supplier-response'} = outcome($e);
like(item('OptiroqEntityGraph-test', 'RFQ#R-1', 'COMMENT#%'), qr/"commentText": "Subject: Re: RFQ R-1\\n\\nWe can deliver in May."/,
	'supplier response: the reply is logged as a COMMENT item');

$e = run_flow('optiroq-send-buyer-email',
	{ initialContextData => { rfqId => 'R-1', subject => 'Tooling question', body => 'Is tooling included?',
							  buyerEmail => 'buyer@optiroq.test',
							  supplier => { supplierId => 'S-1', email => 'sales@acme.test' },
							  attachments => [ { filename => 'spec.pdf', key => 'rfq/R-1/spec.pdf' } ] } });
$outcomes{'optiroq-send-buyer-email'} = outcome($e);
like(item('OptiroqEntityGraph-test', 'RFQ#R-1', 'COMM#%#SUPPLIER#S-1'), qr/"eventType": "BUYER_QUESTION"/,
	'buyer email: the outbound email is logged');

$e = run_flow('optiroq-notify-human-review',
	{ initialContextData => { triggeringEmail => { from => 'someone@else.test', subject => 'Hello' },
							  error => 'no RFQ id in the subject' } });
$outcomes{'optiroq-notify-human-review'} = outcome($e);

# BOM upload: Lambdas, three LLM calls, a fork classifying each part
$e = run_flow('optiroq-process-bom-upload',
	{ s3Bucket => 'optiroq-uploads', s3Key => 'bom/P-7.xlsx', projectId => 'P-7', userId => 'U-1',
	  userEmail => 'user@optiroq.test', bomFileName => 'P-7.xlsx' });
$outcomes{'optiroq-process-bom-upload'} = outcome($e);
like(item('OptiroqEntityGraph-Beta', 'PROJECT#P-7', 'METADATA'), qr/"status": "DRAFT_AWAITING_REVIEW"/,
	'BOM upload: the project awaits review');
is(q1(q{SELECT count(*) FROM lambda_calls WHERE function = 'persistclassifiedpart'}), '2',
	'BOM upload: each part was classified and persisted');

# RFQ upload: routed by file type, Lambdas, a QUERY_BATCH, an LLM call
$e = run_flow('optiroq-process-rfq-upload',
	{ s3Bucket => 'optiroq-uploads', s3Key => 'rfq/R-9.xlsx', projectId => 'P-7', userId => 'U-1',
	  userEmail => 'user@optiroq.test', rfqId => 'R-9' });
$outcomes{'optiroq-process-rfq-upload'} = outcome($e);
is(q1(qq{SELECT output->'steps_output'->'project_context'->'suppliers'->0->>'supplierName'
		  FROM allma.executions WHERE execution_id = '$e'}), 'Acme',
	'RFQ upload: QUERY_BATCH read the user\'s suppliers through GSI1');

# supplier import: two LLM calls, a fork persisting each supplier
$e = run_flow('optiroq-process-supplier-import',
	{ s3Bucket => 'optiroq-uploads', s3Key => 'suppliers.xlsx', userId => 'U-1', userEmail => 'user@optiroq.test' });
$outcomes{'optiroq-process-supplier-import'} = outcome($e);
is(q1(q{SELECT count(*) FROM lambda_calls WHERE function = 'persistsupplier'}), '2',
	'supplier import: each supplier was persisted');

# supplier quote: a quote with a negative price has a high-severity anomaly
# and ends with the rejection email; a clean quote ends by starting the
# comparison-board flow with START_FLOW_EXECUTION (lifecycle issue)
my %quote = (s3Bucket => 'optiroq-uploads', rfqId => 'R-3', supplierName => 'Acme', round => 1,
			 projectId => 'P-7', buyerEmail => 'buyer@optiroq.test');
$e = run_flow('optiroq-process-supplier-quote', { initialContextData => { %quote, s3Key => 'quotes/bad.pdf' } });
$outcomes{'optiroq-process-supplier-quote'} = outcome($e);
is(q1(qq{SELECT string_agg(step_instance_id, ',') FROM allma.step_executions
		  WHERE execution_id = '$e' AND status = 'COMPLETED' AND step_instance_id IN
				('send_rejection_notification', 'send_follow_up_notification', 'send_success_notification')}),
	'send_rejection_notification', 'supplier quote: the high-severity anomaly sends the rejection email');
like(item('OptiroqEntityGraph-test', 'RFQ#R-3', 'QUOTE#Acme#ROUND#1'), qr/"anomalyCount": 1/,
	'supplier quote: the batch writer saved the quote with its anomaly');
$e = run_flow('optiroq-process-supplier-quote', { initialContextData => { %quote, s3Key => 'quotes/good.pdf' } });
is(outcome($e), 'COMPLETED', 'supplier quote, clean: notifies, then starts the comparison-board flow');
is(q1(qq{SELECT string_agg(flow_id, ',') FROM allma.executions WHERE parent_execution_id = '$e'}),
	'optiroq-generate-and-email-comparison-board', 'supplier quote, clean: the comparison-board flow was started');

# send RFQ emails: the JSONata transform (bound), an email per selected supplier
$e = run_flow('optiroq-send-rfq-emails', { rfqId => 'R-2', userEmail => 'buyer@optiroq.test' });
$outcomes{'optiroq-send-rfq-emails'} = outcome($e);
is(q1(qq{SELECT string_agg(status, ',' ORDER BY path_id) FROM allma.step_executions
		  WHERE execution_id = '$e' AND step_instance_id = 'send_single_email'}),
	'COMPLETED,COMPLETED', 'send RFQ emails: one email per selected supplier');
my $log_errors = q1(qq{SELECT string_agg(DISTINCT (error->>'errorName') || ': ' || (error->>'errorMessage'), ',')
		  FROM allma.step_executions
		  WHERE execution_id = '$e' AND step_instance_id = 'log_communication_event' AND status = 'FAILED'});
note("send RFQ emails, log_communication_event: $log_errors");
like($log_errors, qr/^ValidationException: .*SK/,
	'send RFQ emails: logging fails in each branch (its sort key mapping is a Liquid filter), tolerated');

# optiroq_allma_flows.json
$e = run_flow('optiroq-generate-and-email-comparison-board',
	{ initialContextData => { rfqId => 'R-1', recipientEmail => 'buyer@optiroq.test' } });
$outcomes{'optiroq-generate-and-email-comparison-board'} = outcome($e);

# the approval flow parks at its wait until the approvers' answer resumes it
$e = qo("SELECT allma_start_flow('optiroq-request-rfq-approval', "
	  . sql_literal($json->encode({ initialContextData => { rfqId => 'R-1', decisionId => 'D-1' } })) . ")");
$node->poll_query_until('postgres', qq{SELECT EXISTS (SELECT FROM allma.waits WHERE execution_id = '$e'
		AND correlation_key = 'rfq-approval:R-1')}) or die 'the approval flow did not park at its wait';
is(q1(qq{SELECT status FROM allma.executions WHERE execution_id = '$e'}), 'RUNNING',
	'RFQ approval: the approval emails go out, then the flow waits for the approvers');
is(qo(qq{SELECT allma_resume_flow('rfq-approval:R-1', '{"decision": "APPROVED"}')}), $e,
	'RFQ approval: the approvers\' answer resumes it by its correlation key');
q1("SELECT allma_wait('$e', '120 s')");
$outcomes{'optiroq-request-rfq-approval'} = outcome($e);

$e = run_flow('optiroq-initiate-follow-up',
	{ initialContextData => { recipientEmail => 'sales@acme.test', subject => 'Follow-up on RFQ R-1',
							  body => 'Please confirm your tooling cost.', rfqId => 'R-1', quoteId => 'S-1',
							  reminderDelaySeconds => 3600 } });
$outcomes{'optiroq-initiate-follow-up'} = outcome($e);

$e = run_flow('optiroq-scheduled-supplier-reminder', {});
$outcomes{'optiroq-scheduled-supplier-reminder'} = outcome($e);

$e = run_flow('optiroq-send-rejection-notifications', { initialContextData => { rfqId => 'R-1', rejectionBatchId => 'B-1' } });
$outcomes{'optiroq-send-rejection-notifications'} = outcome($e);
like(item('OptiroqEntityGraph-test', 'RFQ#R-1', 'METADATA'), qr/"status": "COMPLETED"/,
	'rejections: the RFQ is finalized');
note("rejection emails: " . q1(qq{SELECT string_agg(status || coalesce(' ' || (error->>'errorName') || ': ' || (error->>'errorMessage'), ''), ', ' ORDER BY path_id)
		  FROM allma.step_executions WHERE execution_id = '$e' AND step_instance_id = 'send_single_rejection_email'}));

###########################################################################
# The outcome of every flow
###########################################################################
my %expected = (
	'optiroq-process-incoming-email' => qr/^COMPLETED$/,
	'optiroq-process-supplier-response' => qr/^COMPLETED$/,
	'optiroq-send-buyer-email' => qr/^COMPLETED$/,
	'optiroq-notify-human-review' => qr/^COMPLETED$/,
	'optiroq-process-bom-upload' => qr/^COMPLETED$/,
	'optiroq-process-rfq-upload' => qr/^COMPLETED$/,
	'optiroq-process-supplier-import' => qr/^COMPLETED$/,
	'optiroq-process-supplier-quote' => qr/^COMPLETED$/,
	'optiroq-send-rfq-emails' => qr/^COMPLETED$/,
	'optiroq-generate-and-email-comparison-board' => qr/^COMPLETED$/,
	'optiroq-request-rfq-approval' => qr/^COMPLETED$/,
	'optiroq-initiate-follow-up' =>
	  qr/^FAILED calculate_initial_deadline: PermanentStepError: system\/date-time-calculator: "offsetSeconds" is required$/,
	'optiroq-scheduled-supplier-reminder' =>
	  qr/^FAILED query_overdue_follow_ups: ValidationException: .*expression attribute value :(status|now) is not defined$/,
	'optiroq-send-rejection-notifications' => qr/^COMPLETED$/);
for my $flow (sort keys %expected)
{
	like($outcomes{$flow}, $expected{$flow}, "outcome of $flow");
}
my $completed = grep { $_ eq 'COMPLETED' } values %outcomes;
cmp_ok($completed, '>=', 12, "$completed of the 14 flows complete");
note("outcomes:\n" . join("\n", map { "$_: $outcomes{$_}" } sort keys %outcomes));

# what reached the mock: the emails the flows sent
my $mail = mock_json($base, '/__mail');
my %subjects = map { ($_->{data} =~ /^Subject: ([^\r\n]*)/m ? $1 : '') => 1 } @$mail;
ok($subjects{'Comparison Board Update for RFQ R-1'}, 'the comparison board was mailed');
ok($subjects{'Request for Quotation (RFQ) R-2 for Project P-7'}, 'the RFQ was mailed');
ok($subjects{'Approval Requested for RFQ R-1'}, 'the approval request was mailed');
unlike(join("\n", map { $_->{data} } @$mail), qr/\{\{(stage|region|accountId|optiroqApiDomain)\}\}/,
	'no deploy placeholder reached a mail');
like(join("\n", map { $_->{data} } @$mail), qr{https://api\.optiroq\.test/approve/tok-1\?decision=approved},
	'the customer\'s own placeholder was filled in the approval links');

$node->stop;
done_testing();
