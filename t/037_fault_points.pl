# Engine faults: fault points (docs/engine-faults.md, src/faultpoint.h).
# Needs a test build (make FAULT_INJECTION=1; scripts/test.sh builds one);
# skipped otherwise.  For each point and each action (ERROR, FATAL,
# SIGKILL of the worker itself) the server is started with
# allma.fault_point = '<point>:<action>', one execution reaches the point,
# and the test checks the fault fired (its marker file exists) and the
# execution ended in the documented state:
#   after-claim        any action: COMPLETED, each step once
#   before-http-send,  any action: COMPLETED; every request the mock saw
#   after-http-send    carries the same Idempotency-Key
#   mid-fan-out,       ERROR: the step fails like any step error (FAILED);
#   before-join        FATAL, SIGKILL: COMPLETED, each branch once
#   during-resume      (in the resuming session, between making the path
#                      runnable and marking its wait resumed) any action:
#                      the resume fails and changes nothing, the wait stays
#                      OPEN; resumed again, the execution COMPLETES with the
#                      payload
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use lib 't';
use AllmaTest;

my $base = start_mock();
my $node = allma_node('faults', "allma.http_allowlist = '127.0.0.1'\nallma.timer_scale = 0.01\n");

sub q1 { my ($sql) = @_; return $node->safe_psql('postgres', $sql); }

if (q1("SELECT current_setting('allma.fault_point', true) IS NULL") eq 't')
{
	$node->stop;
	plan skip_all => 'this allma build has no fault points (build it with make FAULT_INJECTION=1)';
}

q1(q{SELECT allma_create_flow('{"id": "plain", "startStepInstanceId": "a", "steps": {
  "a": {"stepType": "NO_OP", "defaultNextStepInstanceId": "b"}, "b": {"stepType": "NO_OP"}}}')});
q1(qq{SELECT allma_create_flow('{"id": "call", "startStepInstanceId": "call", "steps": {
  "call": {"stepType": "API_CALL", "apiUrlTemplate": {"template": "$base/echo/fp/{{case}}"},
           "apiHttpMethod": "POST", "inputMappings": {"case": "\$.case"}}}}')});
q1(q{SELECT allma_create_flow('{"id": "fork", "startStepInstanceId": "fork", "steps": {
  "fork": {"stepType": "PARALLEL_FORK_MANAGER", "onError": {"retries": {"count": 0}}, "itemsPath": "$.items",
           "parallelBranches": [{"branchId": "left", "stepInstanceId": "ba"},
                                {"branchId": "right", "stepInstanceId": "bb"}],
           "defaultNextStepInstanceId": "after"},
  "ba": {"stepType": "NO_OP"}, "bb": {"stepType": "NO_OP"}, "after": {"stepType": "NO_OP"}}}')});

# start_once(flow, input): starts an execution with an id of its own; a
# fault may crash the server while the starting session is still open, so
# it starts again (the same id) until the execution exists
sub start_once
{
	my ($flow, $input) = @_;
	my $id = q1("SELECT gen_random_uuid()");
	for (my $try = 0; $try < 60; $try++)
	{
		$node->psql('postgres',
			"SELECT allma_start_flow('$flow', '$input', '{\"executionId\": \"$id\"}')");
		return $id if poll_until_true($node,
			"SELECT EXISTS (SELECT FROM allma.executions WHERE execution_id = '$id')", 5);
	}
	die "could not start $flow";
}

my $pgdata = $node->data_dir;
my %flow_of = ('after-claim' => 'plain', 'before-http-send' => 'call', 'after-http-send' => 'call',
	'mid-fan-out' => 'fork', 'before-join' => 'fork');

for my $point ('after-claim', 'before-http-send', 'after-http-send', 'mid-fan-out', 'before-join')
{
	for my $action ('error', 'fatal', 'sigkill')
	{
		my $case = "$point-$action";
		my $flow = $flow_of{$point};
		$node->stop;
		unlink glob("$pgdata/allma_fault_fired.*");
		$node->append_conf('postgresql.conf', "allma.fault_point = '$point:$action'\n");
		$node->start;
		wait_for_workers($node, 2);
		my $e = start_once($flow, "{\"case\": \"$case\", \"items\": [1]}");
		ok(poll_until_true($node,
			"SELECT status <> 'RUNNING' FROM allma.executions WHERE execution_id = '$e'"),
			"$case: the execution ends");
		ok(-e "$pgdata/allma_fault_fired.$point", "$case: the fault fired");
		my $status = q1("SELECT status FROM allma.executions WHERE execution_id = '$e'");
		if ($action eq 'error' && $flow eq 'fork')
		{
			is($status, 'FAILED', "$case: the step fails like any step error");
			like(q1("SELECT error->>'errorMessage' FROM allma.executions WHERE execution_id = '$e'"),
				qr/allma fault point "$point": ERROR/, "$case: with the fault's error");
			next;
		}
		is($status, 'COMPLETED', "$case: the execution completes");
		is(q1("SELECT count(*) - count(DISTINCT step_instance_id) FROM allma.step_executions
		        WHERE execution_id = '$e' AND status = 'COMPLETED'"), '0',
			"$case: no step completed twice");
		if ($flow eq 'call')
		{
			my $log = mock_json($base, "/__log?path=/echo/fp/$case");
			my %keys = map { ($_->{headers}{'idempotency-key'} // '') => 1 } @$log;
			ok(@$log >= 1 && keys(%keys) == 1 && !exists $keys{''},
				"$case: every request carries the same Idempotency-Key (" . scalar(@$log) . " sent)");
		}
		if ($flow eq 'fork')
		{
			is(q1("SELECT count(*) FROM allma.step_executions WHERE execution_id = '$e'
			        AND step_instance_id IN ('ba', 'bb') AND status = 'COMPLETED'"), '2',
				"$case: each branch ran once");
		}
	}
}

# during-resume: the fault hits the session calling allma_resume_flow
q1(q{SELECT allma_create_flow('{"id": "waiter", "startStepInstanceId": "w", "steps": {
  "w": {"stepType": "WAIT_FOR_EXTERNAL_EVENT", "correlationKeyTemplate": "fp-{{case}}",
        "outputMappings": {"$.answer": "$.answer"}}}}')});
for my $action ('error', 'fatal', 'sigkill')
{
	my $case = "during-resume-$action";
	$node->stop;
	unlink glob("$pgdata/allma_fault_fired.*");
	$node->append_conf('postgresql.conf', "allma.fault_point = 'during-resume:$action'\n");
	$node->start;
	wait_for_workers($node, 2);
	my $e = start_once('waiter', "{\"case\": \"$case\"}");
	ok(poll_until_true($node, "SELECT EXISTS (SELECT FROM allma.waits WHERE execution_id = '$e' AND status = 'OPEN')"),
		"$case: the execution waits");
	my ($ret) = $node->psql('postgres', "SELECT allma_resume_flow('fp-$case', '{\"answer\": 42}')");
	isnt($ret, 0, "$case: the resume fails");
	ok(-e "$pgdata/allma_fault_fired.during-resume", "$case: the fault fired");
	ok(poll_until_true($node, "SELECT status = 'OPEN' FROM allma.waits WHERE execution_id = '$e'"),
		"$case: the wait is still open");
	is(q1("SELECT allma_resume_flow('fp-$case', '{\"answer\": 42}')"), $e, "$case: a second resume succeeds");
	ok(poll_until_true($node, "SELECT status = 'COMPLETED' AND output->>'answer' = '42' FROM allma.executions WHERE execution_id = '$e'"),
		"$case: the execution completes with the payload");
}

$node->stop;
done_testing();
