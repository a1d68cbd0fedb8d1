# Real flows of the Optiroq export bundle (test/fixtures/allma-example-flows/
# optiroq_allma_flows.json) run unchanged through the workers against an
# item store and a bucket: their system/dynamodb-* steps read and write the
# items, the customer's Lambda is a SQL function bound to its ARN
# (test/fixtures/dynamodb_bundle_lambdas.sql), and the executions run as the
# role that started them, with only that role's privileges on the tables.
#
# The flows are loaded with allma_import, whose parameters fill the deploy
# placeholders ({{stage}}, {{region}}, {{accountId}}); t/040 runs all 14 of
# the bundles.  EMAIL steps have no SMTP server here: where a flow sends
# mail, only its DynamoDB and S3 outcomes are pinned.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use JSON::PP;
use lib 't';
use AllmaTest;

my $src = $ENV{ALLMA_SRC} // '.';
my $node = allma_node('ddbflows', "allma.timer_scale = 0.01\n");

sub q1 { my ($sql) = @_; return $node->safe_psql('postgres', $sql); }

my $json = JSON::PP->new->canonical;
my $bundle = $json->decode(slurp_file("$src/test/fixtures/allma-example-flows/optiroq_allma_flows.json"));
my %flows = map { $_->{id} => $_ } @{ $bundle->{flows} };

# a flow of the bundle, imported with the deploy parameters (allma_import)
sub load_flow
{
	my ($id) = @_;
	my $text = $json->encode({ formatVersion => '1.0', flows => [ $flows{$id} ] });
	$text =~ s/'/''/g;
	q1(qq{SET client_min_messages = error; SELECT allma_import('$text', false,
		'{"stage": "test", "region": "eu-west-1", "accountId": "123456789012"}')});
	# every allma user may start the flows (the tables' privileges decide)
	q1("SELECT allma_grant_flow('$id', 'allma_user', 'START')");
}

# starts a flow as the application role and waits for it
sub run_as_app
{
	my ($flow, $input) = @_;
	my $e = q1("SET ROLE optiroq_app; SELECT allma_start_flow('$flow', '$input')");
	q1("SELECT allma_wait('$e', '120 s')");
	return $e;
}

# the item store and the bucket the flows use, owned by an administrator
# role; the application role that runs the flows gets what they need
q1(q{CREATE ROLE optiroq_admin; CREATE ROLE optiroq_app;
	 GRANT allma_user TO optiroq_admin, optiroq_app;
	 GRANT CREATE ON SCHEMA allma_dynamodb, allma_s3 TO optiroq_admin});
q1(q{SET ROLE optiroq_admin;
	 SELECT allma_create_dynamodb_table('OptiroqEntityGraph-test', 'PK', 'SK',
		'[{"indexName": "GSI1", "partitionKey": "GSI1PK", "sortKey": "GSI1SK"},
		  {"indexName": "FollowUpStatusIndex", "partitionKey": "followUpStatus", "sortKey": "followUpDeadline"}]');
	 SELECT allma_create_bucket('optiroq-artefacts');
	 GRANT SELECT, INSERT, UPDATE ON allma_dynamodb."OptiroqEntityGraph-test" TO optiroq_app;
	 GRANT SELECT, INSERT, UPDATE ON allma_s3."optiroq-artefacts" TO optiroq_app});
my $fixture = slurp_file("$src/test/fixtures/dynamodb_bundle_lambdas.sql");
q1($fixture);
q1(q{SELECT allma_bind_module('arn:aws:lambda:eu-west-1:123456789012:function:optiroq-GenerateComparisonBoardStep-test',
							  'generate_comparison_board(jsonb)')});
# the Lambda's stand-in is bound by the superuser; allma users may use it
q1(q{SELECT allma_grant_module_binding(pattern, 'allma_user') FROM allma.module_bindings});

# the data the flows read, written as the application would (batch writer)
q1(q{SET ROLE optiroq_app;
	 SELECT allma_run_module('system/dynamodb-batch-writer', '{"tableName": "OptiroqEntityGraph-test", "requests": [
	   {"PutRequest": {"Item": {"PK": "RFQ#R-1", "SK": "METADATA", "entityType": "RFQ", "status": "OPEN"}}},
	   {"PutRequest": {"Item": {"PK": "RFQ#R-1", "SK": "REJECTION#B-1", "entityType": "REJECTION_BATCH",
		 "rejectedSuppliers": [
		   {"supplierId": "S-1", "email": "sales@acme.test", "rejectionMessage": "Thank you, Acme."},
		   {"supplierId": "S-2", "email": "quotes@bolt.test", "rejectionMessage": "Thank you, Bolt."}]}}},
	   {"PutRequest": {"Item": {"PK": "RFQ#R-1", "SK": "QUOTE#S-1", "supplierName": "Acme", "totalPrice": 1200, "status": "APPROVED"}}},
	   {"PutRequest": {"Item": {"PK": "RFQ#R-1", "SK": "QUOTE#S-2", "supplierName": "Bolt", "totalPrice": 990.5, "status": "REJECTED"}}},
	   {"PutRequest": {"Item": {"PK": "RFQ#R-1", "SK": "QUOTE#S-3", "supplierName": "Crown", "totalPrice": 1100, "status": "APPROVED"}}},
	   {"PutRequest": {"Item": {"PK": "RFQ#R-1", "SK": "QUOTE#S-4", "supplierName": "Dyn", "totalPrice": 800,
		 "status": "APPROVED", "followUpStatus": "SENT", "followUpDeadline": "2020-01-01T00:00:00.000Z"}}},
	   {"PutRequest": {"Item": {"PK": "RFQ#R-2", "SK": "QUOTE#S-9", "supplierName": "Elsewhere", "status": "APPROVED"}}}]}')});

###########################################################################
# optiroq-send-rejection-notifications: GET the rejection batch, mail each
# supplier (a fork that tolerates failures), log one COMM# item per supplier
# (update-item in a fork), then mark the RFQ COMPLETED.
###########################################################################
load_flow('optiroq-send-rejection-notifications');
my $e = run_as_app('optiroq-send-rejection-notifications', '{"initialContextData": {"rfqId": "R-1", "rejectionBatchId": "B-1"}}');
is(q1("SELECT status FROM allma.executions WHERE execution_id = '$e'"), 'COMPLETED',
	'the rejection flow completes');
is(q1(qq{SELECT output->'steps_output'->'rejection_data'->'rejectedSuppliers'->1->>'supplierId'
		  FROM allma.executions WHERE execution_id = '$e'}),
	'S-2', 'GET put the rejection batch into the context (outputMappings of $.content)');
is(q1(q{SELECT string_agg(item->>'eventType' || ' ' || (item->'details'->>'to'), ', ' ORDER BY sk)
		  FROM allma_dynamodb."OptiroqEntityGraph-test" WHERE pk = 'RFQ#R-1' AND sk LIKE 'COMM#%'}),
	'REJECTION_SENT sales@acme.test, REJECTION_SENT quotes@bolt.test',
	'each branch logged its supplier as a COMM# item');
like(q1(q{SELECT string_agg(sk, ',' ORDER BY sk) FROM allma_dynamodb."OptiroqEntityGraph-test"
		   WHERE pk = 'RFQ#R-1' AND sk LIKE 'COMM#%'}),
	qr/^COMM#[^,]*#SUPPLIER#S-1,COMM#[^,]*#SUPPLIER#S-2$/, 'the sort keys name the supplier');
is(q1(q{SELECT item->>'status' FROM allma_dynamodb."OptiroqEntityGraph-test" WHERE pk = 'RFQ#R-1' AND sk = 'METADATA'}),
	'COMPLETED', 'the RFQ status is finalized');
is(q1(qq{SELECT string_agg(DISTINCT step_instance_id, ',' ORDER BY step_instance_id) FROM allma.step_executions
		  WHERE execution_id = '$e' AND step_type IN ('DATA_LOAD', 'DATA_SAVE') AND status = 'COMPLETED'}),
	'finalize_rfq_status,load_rejection_data,save_comm_log_item', 'every DynamoDB step completed');

###########################################################################
# optiroq-generate-and-email-comparison-board: QUERY the approved quotes
# (key condition with begins_with, filter on #status), the Lambda builds the
# workbook into the bucket and returns its S3 pointer, the EMAIL step
# attaches it by s3Pointer.
###########################################################################
load_flow('optiroq-generate-and-email-comparison-board');
$e = run_as_app('optiroq-generate-and-email-comparison-board', '{"initialContextData": {"rfqId": "R-1", "recipientEmail": "buyer@optiroq.test"}}');
is(q1(q{SELECT string_agg(q->>'supplierName', ',' ORDER BY q->>'SK')
		  FROM lambda_calls, jsonb_array_elements(payload->'stepInput'->'approvedQuotes') q
		 WHERE function = 'GenerateComparisonBoard'}),
	'Acme,Crown,Dyn', 'the Lambda got exactly the approved quotes of the RFQ');
is(q1(q{SELECT count(*) FROM lambda_calls}), '1', 'the Lambda ran once');
my $pointer = q1(qq{SELECT output->'steps_output'->'excel_s3_pointer' FROM allma.executions WHERE execution_id = '$e'});
is(q1(qq{SELECT '$pointer'::jsonb = '{"_s3_output_pointer": {"bucket": "optiroq-artefacts", "key": "comparison-boards/$e.xlsx"}}'}),
	't', 'the Lambda\'s S3 pointer is in the context');
is(q1(qq{SET ROLE optiroq_app; SELECT convert_from(allma_object_read('$pointer'), 'UTF8')}),
	"Acme;1200\nCrown;1100\nDyn;800",
	'the pointer resolves to the workbook the Lambda saved (what EMAIL attaches)');
is(q1(qq{SELECT string_agg(step_instance_id, ',') FROM allma.step_executions
		  WHERE execution_id = '$e' AND status = 'FAILED' AND step_instance_id <> 'send_comparison_board_email'}),
	'', 'no step but the EMAIL step (no SMTP server here) failed');

###########################################################################
# optiroq-scheduled-supplier-reminder: its QUERY on FollowUpStatusIndex
# maps one expression attribute value with inputMappings, which replaces
# the customConfig's expressionAttributeValues (Allma merges step input
# over customConfig shallowly), so one of :status and :now is undefined:
# a ValidationException, as Allma and DynamoDB end it.
###########################################################################
load_flow('optiroq-scheduled-supplier-reminder');
$e = run_as_app('optiroq-scheduled-supplier-reminder', '{}');
is(q1("SELECT status || ' ' || (error->>'errorName') FROM allma.executions WHERE execution_id = '$e'"),
	'FAILED ValidationException', 'the reminder flow fails with a ValidationException');
like(q1("SELECT error->>'errorMessage' FROM allma.executions WHERE execution_id = '$e'"),
	qr/^system\/dynamodb-data-loader: invalid keyConditionExpression at position \d+: expression attribute value :(status|now) is not defined$/,
	'the error names the field, the position and the undefined value');
is(q1("SELECT error->'errorDetails'->>'failedStepInstanceId' FROM allma.executions WHERE execution_id = '$e'"),
	'query_overdue_follow_ups', 'the query step failed');

###########################################################################
# The same flow started by a role without privileges on the item store
# fails on its first DynamoDB step, and writes nothing.
###########################################################################
q1(q{CREATE ROLE optiroq_intruder IN ROLE allma_user});
$e = q1(q{SET ROLE optiroq_intruder; SELECT allma_start_flow('optiroq-send-rejection-notifications',
		   '{"initialContextData": {"rfqId": "R-1", "rejectionBatchId": "B-1"}}')});
q1("SELECT allma_wait('$e', '120 s')");
is(q1("SELECT status || ' ' || (error->>'errorMessage') FROM allma.executions WHERE execution_id = '$e'"),
	'FAILED permission denied for table OptiroqEntityGraph-test',
	'a role without privileges on the table cannot run its DynamoDB steps');
is(q1(q{SELECT count(*) FROM allma_dynamodb."OptiroqEntityGraph-test" WHERE sk LIKE 'COMM#%'}), '2',
	'and nothing more was written');

$node->stop;
done_testing();
