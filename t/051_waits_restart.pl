# Waits are rows: parked paths survive an immediate shutdown (no process or
# memory holds them), are resumed afterwards with their payloads, a resume
# committed before the crash is not lost, and a deadline that passed while
# the server was down fails its step with StepTimeoutError after the start.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use lib 't';
use AllmaTest;

my $n = 50;
my $node = allma_node('waits', "allma.timer_scale = 0.01\n");
sub q1 { my ($sql) = @_; return $node->safe_psql('postgres', $sql); }

# a day (864 s scaled) to wait for "k-<i>"; "short" waits 3 s
q1(q{SELECT allma_create_flow('{"id": "approval", "startStepInstanceId": "wait", "steps": {
  "wait": {"stepType": "WAIT_FOR_EXTERNAL_EVENT", "correlationKeyTemplate": "k-{{i}}",
           "maxWaitTimeSeconds": 86400, "outputMappings": {"$.answer": "$.answer"},
           "defaultNextStepInstanceId": "done"},
  "done": {"stepType": "NO_OP"}}}')});
q1(q{SELECT allma_create_flow('{"id": "short", "startStepInstanceId": "wait", "steps": {
  "wait": {"stepType": "WAIT_FOR_EXTERNAL_EVENT", "correlationKeyTemplate": "short",
           "maxWaitTimeSeconds": 300}}}')});
q1(qq{SELECT allma_start_flow('approval', jsonb_build_object('i', i)) FROM generate_series(0, $n) i});
my $short = q1(q{SELECT allma_start_flow('short')});
ok(poll_until_true($node, qq{SELECT count(*) = @{[$n + 2]} FROM allma.execution_paths
  WHERE status = 'WAITING' AND request ? 'wait'}), 'every execution is parked');
is(q1(q{SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid)
  WHERE a.backend_type = 'allma worker' AND l.locktype IN ('tuple', 'transactionid') AND l.mode LIKE '%Exclusive%'}),
	'0', 'no worker holds a lock for a parked path');

# k-0 is resumed before the crash (committed), the rest after it
my $e0 = q1(q{SELECT allma_resume_flow('k-0', '{"answer": 0}')});
$node->stop('immediate');
$node->start;
wait_for_workers($node, 2);

is(q1(qq{SELECT count(*) FROM allma.waits WHERE status = 'OPEN' AND correlation_key LIKE 'k-%'}), $n,
	"$n waits are still open after the immediate shutdown");
is(q1(qq{SELECT count(*) FROM (SELECT allma_resume_flow('k-' || i, jsonb_build_object('answer', i))
                                 FROM generate_series(1, $n) i) r}), $n, 'all of them resume after the restart');
ok(poll_until_true($node, q{SELECT count(*) = 0 FROM allma.executions x
  WHERE x.flow_id = 'approval' AND x.status = 'RUNNING'}), 'and complete');
is(q1(q{SELECT count(*) FROM allma.executions WHERE flow_id = 'approval' AND status = 'COMPLETED'
  AND output->'answer' = input->'i'}), $n + 1, 'each with its own payload mapped, the one resumed before the crash too');
is(q1(qq{SELECT status FROM allma.executions WHERE execution_id = '$e0'}), 'COMPLETED',
	'the resume committed before the crash was not lost');
my ($ret, $out, $err) = $node->psql('postgres', q{SELECT allma_resume_flow('k-1')});
like($err, qr/already resumed/, 'a key resumes once, across restarts too');

# the short wait's deadline passes (while down, or since): StepTimeoutError
ok(poll_until_true($node, qq{SELECT status = 'FAILED' FROM allma.executions WHERE execution_id = '$short'}),
	'a deadline that passed fails its step after the restart');
is(q1(qq{SELECT error->>'errorName' || ' ' || (SELECT status FROM allma.waits w WHERE w.execution_id = x.execution_id)
  FROM allma.executions x WHERE execution_id = '$short'}), 'StepTimeoutError TIMED_OUT', 'with StepTimeoutError');
is(q1(q{SELECT count(*) FROM allma.execution_paths}), '0', 'no path is left');

done_testing();
