# Engine faults: a path whose step kills its worker is quarantined
# (src/passmark.c, docs/engine-faults.md).  Needs a test build (make
# FAULT_INJECTION=1); skipped otherwise.  The fault point
# allma.fault_point = 'step=<id>:<action>' makes every attempt of step <id>
# kill its worker, each time it runs:
#   A. SIGKILL (the whole server restarts after each): one poison execution
#      started in the same transaction as 20 others; the poison one ends
#      FAILED with PathQuarantined once allma.max_path_crashes (3) kills
#      were counted against it (only the death of a pass that ran it alone
#      counts; the pass of 21 that died first only makes its paths
#      suspects, run alone from then on), the 20 others complete, each step
#      once, and no other path has a crash counted at the step it is at.
#   B. FATAL (only the worker goes): the same with allma.max_path_crashes = 2.
# Without the pass mark the poison path would kill a worker forever: the
# test would time out on the poison execution never ending.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use lib 't';
use AllmaTest;

my $node = allma_node('crashq', "allma.timer_scale = 0.01\n");

sub q1 { my ($sql) = @_; return $node->safe_psql('postgres', $sql); }

if (q1("SELECT current_setting('allma.fault_point', true) IS NULL") eq 't')
{
	$node->stop;
	plan skip_all => 'this allma build has no fault points (build it with make FAULT_INJECTION=1)';
}

q1(q{SELECT allma_create_flow('{"id": "ok", "startStepInstanceId": "a", "steps": {
  "a": {"stepType": "NO_OP", "defaultNextStepInstanceId": "b"},
  "b": {"stepType": "NO_OP", "defaultNextStepInstanceId": "c"}, "c": {"stepType": "NO_OP"}}}')});
for my $boom ('boom_kill', 'boom_fatal')
{
	q1(qq{SELECT allma_create_flow('{"id": "$boom", "startStepInstanceId": "a", "steps": {
  "a": {"stepType": "NO_OP", "defaultNextStepInstanceId": "$boom"}, "$boom": {"stepType": "NO_OP"}}}')});
}

# run_case(label, step, action, max): 20 good executions and the poison one
# started together; returns the poison execution's id
sub run_case
{
	my ($label, $step, $action, $max) = @_;
	my $log_offset = -s $node->logfile;

	$node->append_conf('postgresql.conf',
		"allma.fault_point = 'step=$step:$action'\nallma.max_path_crashes = $max\n");
	$node->reload;
	wait_for_setting($node, 'allma.max_path_crashes', $max);
	# One transaction: the poison execution's id is read before anything is
	# visible to the workers.  Once it commits a worker may run the poison
	# step at once and (SIGKILL) restart the whole server, which can cut
	# this session before COMMIT's reply arrives: the start has committed by
	# then, so a lost reply is not an error here (seen in CI).
	my ($out, $err) = ('', '');
	$node->psql('postgres', qq{
		BEGIN;
		CREATE TEMP TABLE started AS
		  SELECT allma_start_flow('ok') AS id FROM generate_series(1, 20);
		INSERT INTO started SELECT allma_start_flow('$step');
		SELECT id FROM started WHERE id IN (SELECT execution_id FROM allma.executions WHERE flow_id = '$step');
		COMMIT;
	}, stdout => \$out, stderr => \$err);
	my ($p) = $out =~ /([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})/
		or die "$label: starting the executions failed: $err";
	ok(poll_until_true($node,
			"SELECT count(*) = 21 FROM allma.executions WHERE flow_id IN ('ok', '$step')", 240),
		"$label: the 21 executions were started (committed)");
	ok(poll_until_true($node,
			"SELECT status <> 'RUNNING' FROM allma.executions WHERE execution_id = '$p'", 240),
		"$label: the poison execution ends");
	is(q1("SELECT status || ' ' || (error->>'errorName') FROM allma.executions WHERE execution_id = '$p'"),
		'FAILED PathQuarantined', "$label: the poison execution is quarantined");
	like(q1("SELECT error->>'errorMessage' FROM allma.executions WHERE execution_id = '$p'"),
		qr/quarantined at step "a": the worker running it from this step on died \d+ times \(allma\.max_path_crashes = $max\)/,
		"$label: the error says why");
	my $kind = $action eq 'sigkill' ? 'SIGKILL' : 'FATAL';
	my $kills = count_in_log($node, qr/allma fault point step "$step": $kind/, $log_offset);
	my $crashes = q1("SELECT crashes FROM allma.path_failures WHERE execution_id = '$p'");
	ok($crashes >= $max && $kills >= $crashes,
		"$label: the poison path's crashes are counted durably ($crashes counted, $kills kills)");
	ok(poll_until_true($node,
			"SELECT count(*) = 20 FROM allma.executions WHERE flow_id = 'ok' AND status = 'COMPLETED'", 240),
		"$label: the 20 other executions complete");
	is(q1("SELECT count(*) FROM (SELECT execution_id, path_id, seq FROM allma.step_executions s
	        WHERE s.execution_id IN (SELECT execution_id FROM allma.executions WHERE flow_id = 'ok')
	        GROUP BY 1, 2, 3 HAVING count(*) > 1) d"), '0', "$label: no step recorded twice");
	is(q1("SELECT count(*) FROM allma.path_failures f JOIN allma.execution_paths x USING (execution_id, path_id)
	        WHERE f.execution_id <> '$p' AND f.crashes > 0 AND f.crash_seq = x.seq"), '0',
		"$label: no other path has a crash counted at the step it is at");
	q1("DELETE FROM allma.executions");
	return $p;
}

run_case('A (SIGKILL)', 'boom_kill', 'sigkill', 3);
wait_for_workers($node, 2);
run_case('B (FATAL)', 'boom_fatal', 'fatal', 2);

done_testing();
