# Engine faults: a poison path fails alone (docs/engine-faults.md).
#
# A) the work after a step (a catch rule's resultPath whose dynamic segment
#    names an absent path) fails that path with PathError at once, while 20
#    executions started in the same transaction (so claimed in the same
#    batch) complete;
# B) an error that escapes the engine (a trigger on allma.step_executions
#    refusing one step's history row: the batch write fails) quarantines
#    the path after allma.max_path_failures failed solo passes
#    (PathQuarantined), and 20 others complete;
# C) the same in a completion pass: the response of an API_CALL cannot be
#    recorded; the path is quarantined and the mock counts exactly one
#    request -- it is never sent again.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use lib 't';
use AllmaTest;

my $base = start_mock();
my $node = allma_node('poison', "allma.http_allowlist = '127.0.0.1'\nallma.timer_scale = 0.01\n"
	  . "allma.max_path_failures = 3\n");

sub q1 { my ($sql) = @_; return $node->safe_psql('postgres', $sql); }

sub flow
{
	my ($json) = @_;
	q1("SELECT allma_create_flow('$json')");
}

flow(q{{"id": "good", "startStepInstanceId": "a", "steps": {
  "a": {"stepType": "NO_OP", "defaultNextStepInstanceId": "b"}, "b": {"stepType": "NO_OP"}}}});
flow(q{{"id": "catchbomb", "startStepInstanceId": "boom", "steps": {
  "boom": {"stepType": "DATA_LOAD", "moduleIdentifier": "system/sql-query",
           "customConfig": {"sql": "SELECT 1 / 0 AS x"},
           "onError": {"retries": {"count": 0},
                       "catch": [{"errorEquals": ["States.ALL"], "nextStepInstanceId": "handler",
                                  "resultPath": "$.errs[$.no.such.path]"}]}},
  "handler": {"stepType": "NO_OP"}}}});
flow(q{{"id": "savebomb", "startStepInstanceId": "poison", "steps": {
  "poison": {"stepType": "NO_OP"}}}});
flow(qq{{"id": "callbomb", "startStepInstanceId": "poisoncall", "steps": {
  "poisoncall": {"stepType": "API_CALL", "apiUrlTemplate": {"template": "$base/echo/poisoncall"},
                 "apiHttpMethod": "POST", "onError": {"retries": {"count": 0}}}}}});
flow(qq{{"id": "goodcall", "startStepInstanceId": "call", "steps": {
  "call": {"stepType": "API_CALL", "apiUrlTemplate": {"template": "$base/echo/goodcall"},
           "apiHttpMethod": "POST", "defaultNextStepInstanceId": "after"},
  "after": {"stepType": "NO_OP"}}}});

# the history rows of steps named poison* cannot be written
q1(q{CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.step_instance_id LIKE 'poison%' THEN
    RAISE EXCEPTION 'refusing the history row of step %', NEW.step_instance_id;
  END IF;
  RETURN NEW;
END $$});
q1(q{CREATE TRIGGER refuse_poison BEFORE INSERT ON allma.step_executions
     FOR EACH ROW EXECUTE FUNCTION refuse_poison()});

# start a poison execution and 20 good ones in one transaction
sub start_batch
{
	my ($poison_flow, $good_flow) = @_;
	my $out = q1(qq{BEGIN;
SELECT 'P' || allma_start_flow('$poison_flow');
SELECT 'G' || allma_start_flow('$good_flow') FROM generate_series(1, 20);
COMMIT;});
	my ($poison) = $out =~ /^P(\S+)$/m;
	my @good = map { substr($_, 1) } grep { /^G/ } split /\n/, $out;
	return ($poison, @good);
}

sub wait_all
{
	my (@ids) = @_;
	my $list = join(',', map { "'$_'" } @ids);
	return poll_until_true($node,
		"SELECT count(*) = 0 FROM allma.executions WHERE execution_id IN ($list) AND status = 'RUNNING'");
}

sub statuses
{
	my (@ids) = @_;
	my $list = join(',', map { "'$_'" } @ids);
	return q1("SELECT string_agg(DISTINCT status, ',') FROM allma.executions WHERE execution_id IN ($list)");
}

# A) the catch rule's resultPath fails: PathError, the batch goes on
my ($p, @good) = start_batch('catchbomb', 'good');
ok(wait_all($p, @good), 'A: every execution ends');
is(statuses(@good), 'COMPLETED', 'A: the 20 executions claimed with the poison one complete');
is(q1("SELECT status || ' ' || (error->>'errorName') FROM allma.executions WHERE execution_id = '$p'"),
	'FAILED PathError', 'A: the poison execution fails with PathError');
like(q1("SELECT error->>'errorMessage' FROM allma.executions WHERE execution_id = '$p'"),
	qr/the work after step "boom" failed: cannot assign to JSONPath/, 'A: the error names the step and the cause');

# B) the batch write fails: solo passes, counted, quarantined
($p, @good) = start_batch('savebomb', 'good');
ok(wait_all($p, @good), 'B: every execution ends');
is(statuses(@good), 'COMPLETED', 'B: the 20 executions claimed with the poison one complete');
is(q1("SELECT status || ' ' || (error->>'errorName') FROM allma.executions WHERE execution_id = '$p'"),
	'FAILED PathQuarantined', 'B: the poison execution is quarantined');
like(q1("SELECT error->>'errorMessage' FROM allma.executions WHERE execution_id = '$p'"),
	qr/quarantined at step "poison": its worker pass failed 3 times \(allma.max_path_failures = 3\); last error: refusing the history row of step poison/,
	'B: the error says why');
# at least the three that quarantined it (the other worker's solo pass may
# have failed on the same path once more before the quarantine committed)
cmp_ok(q1("SELECT failures FROM allma.path_failures WHERE execution_id = '$p'"), '>=', 3,
	'B: the failed passes were counted durably');
is(q1("SELECT count(*) FROM allma.path_failures WHERE execution_id <> '$p' AND execution_id IN (SELECT execution_id FROM allma.executions WHERE flow_id = 'good')"), '0',
	'B: no other path was counted');

# C) a response that cannot be recorded: quarantined, never sent again
my $out = q1(qq{BEGIN;
SELECT 'P' || allma_start_flow('callbomb');
SELECT 'G' || allma_start_flow('goodcall') FROM generate_series(1, 5);
COMMIT;});
($p) = $out =~ /^P(\S+)$/m;
@good = map { substr($_, 1) } grep { /^G/ } split /\n/, $out;
ok(wait_all($p, @good), 'C: every execution ends');
is(statuses(@good), 'COMPLETED', 'C: the other API calls complete');
is(q1("SELECT status || ' ' || (error->>'errorName') FROM allma.executions WHERE execution_id = '$p'"),
	'FAILED PathQuarantined', 'C: the execution whose response cannot be recorded is quarantined');
is(q1("SELECT count(*) FROM allma.execution_paths WHERE execution_id = '$p'"), '0',
	'C: no path is left in flight to be sent again');
is(q1("SELECT failures FROM allma.path_failures WHERE execution_id = '$p'"), '3',
	'C: its failed completion passes were counted');
is(scalar(@{ mock_json($base, '/__log?path=/echo/poisoncall') }), 1,
	'C: the mock counts exactly one request');

# a reader who may not see the execution does not see its failures
q1("CREATE ROLE stranger LOGIN IN ROLE allma_user");
is($node->safe_psql('postgres', "SET ROLE stranger; SELECT count(*) FROM allma.path_failures"), '0',
	'row security hides other executions\' failures');

$node->stop;
done_testing();
