# The statement timeout of SQL steps run by workers: allma.sql_step_timeout
# and customConfig.timeoutMs cancel a step's SQL (sql-query, bound
# functions); the error names the step and the timeout and is a
# TransientStepError; the worker is never stuck and no cancel leaks into
# its own work afterwards; pg_cancel_backend() on a worker fails at most
# the step it was running, and the worker carries on with the same PID.
#
# The node runs a single worker, so every execution goes through the
# process whose step is being canceled: if that worker were stuck, or a
# stray cancel aborted its passes, the other executions would not complete.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use lib 't';
use AllmaTest;

my $node = PostgreSQL::Test::Cluster->new('sqltimeout');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'allma'
allma.database_name = 'postgres'
allma.max_workers = 1
max_worker_processes = 16
log_min_messages = warning
allma.timer_scale = 0.01
allma.sql_step_timeout = 200ms
# the SQL steps here are started by the bootstrap superuser (since 1.1 they
# run only with this on; see docs/security.md)
allma.allow_superuser_sql_steps = on
});
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION allma');
wait_for_workers($node, 1);

my $worker_sql = "SELECT pid FROM pg_stat_activity WHERE backend_type = 'allma worker'";
my $pid = $node->safe_psql('postgres', $worker_sql);
like($pid, qr/^\d+$/, 'one worker runs');

$node->safe_psql('postgres', q{
CREATE FUNCTION slow_handler(input jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
	PERFORM pg_sleep((input->>'secs')::float8);
	RETURN jsonb_build_object('slept', true);
END
$$;
SELECT allma_bind_module('test/slow', 'slow_handler(jsonb)');
});

# flow(id, step): a flow whose start step "s" is the given JSON
sub flow
{
	my ($id, $step) = @_;
	$node->safe_psql('postgres',
		"SELECT allma_create_flow('{\"id\": \"$id\", \"startStepInstanceId\": \"s\", \"steps\": {\"s\": $step}}')");
}

# a sql-query step sleeping input.secs seconds; extra fields of customConfig
# and of the step can be added
sub sleep_step
{
	my ($config_extra, $step_extra) = @_;
	$config_extra //= '';
	$step_extra //= '';
	return qq{{"stepType": "DATA_LOAD", "moduleIdentifier": "system/sql-query",
		"customConfig": {"sql": "SELECT true AS done FROM pg_sleep(\$1)", "parameters": ["\$.secs"]$config_extra}$step_extra}};
}

flow('sleep', sleep_step());
flow('sleep_capped', sleep_step(', "timeoutMs": 60000'));
flow('sleep_own100', sleep_step(', "timeoutMs": 100', ', "onError": {"retries": {"count": 0}}'));
flow('sleep_own', sleep_step(', "timeoutMs": 300', ', "onError": {"retries": {"count": 0}}'));
flow('sleep_5s', sleep_step(', "timeoutMs": 5000', ', "onError": {"retries": {"count": 0}}'));
flow('sleep_once', sleep_step('', ', "onError": {"retries": {"count": 0}}'));
flow('quick', q{{"stepType": "DATA_LOAD", "moduleIdentifier": "system/sql-query",
	"customConfig": {"sql": "SELECT 1 AS one"}}});
flow('boom', q{{"stepType": "DATA_LOAD", "moduleIdentifier": "system/sql-query",
	"customConfig": {"sql": "SELECT 1 / 0 AS x"}, "onError": {"retries": {"count": 0}}}});
flow('logic', q{{"stepType": "CUSTOM_LOGIC", "moduleIdentifier": "test/slow",
	"inputMappings": {"secs": "$.secs"}}});
# the timeout error becomes the output of "s"; two more SQL steps follow
# in the same pass.  Only "s" has a timeout of its own: the flow runs once
# allma.sql_step_timeout is 0, so nothing but a leaked timer or cancel could
# stop "t" and "u", however slowly a loaded machine runs them.
$node->safe_psql('postgres', q{SELECT allma_create_flow('{"id": "after", "startStepInstanceId": "s", "steps": {
	"s": {"stepType": "DATA_LOAD", "moduleIdentifier": "system/sql-query",
		"customConfig": {"sql": "SELECT true AS done FROM pg_sleep(30)", "timeoutMs": 300},
		"onError": {"continueOnFailure": true}, "defaultNextStepInstanceId": "t"},
	"t": {"stepType": "DATA_SAVE", "moduleIdentifier": "system/sql-execute",
		"customConfig": {"sql": "SELECT pg_sleep(0.05)"}, "defaultNextStepInstanceId": "u"},
	"u": {"stepType": "DATA_LOAD", "moduleIdentifier": "system/sql-query",
		"customConfig": {"sql": "SELECT 2 AS two"}}}}')});

# start(flow, input): a new execution's id
sub start
{
	my ($flow, $input) = @_;
	$input //= '{}';
	return $node->safe_psql('postgres', "SELECT allma_start_flow('$flow', '$input')");
}

# finish(execution): its status once terminal (waits at most 60 s)
sub finish
{
	my ($e) = @_;
	return $node->safe_psql('postgres', "SELECT allma_wait('$e', '60 s')");
}

# outcome(execution): status|errorName|sqlstate|errorMessage
sub outcome
{
	my ($e) = @_;
	finish($e);
	return $node->safe_psql('postgres', qq{
		SELECT concat_ws('|', status, error->>'errorName', error->'errorDetails'->>'sqlstate',
			error->>'errorMessage')
		  FROM allma.executions WHERE execution_id = '$e'});
}

# quick_batch(n, label): n executions of a quick SQL flow all complete
sub quick_batch
{
	my ($n, $label) = @_;
	my @ids = split /\n/, $node->safe_psql('postgres',
		"SELECT allma_start_flow('quick') FROM generate_series(1, $n)");
	my $done = 0;
	$done++ for grep { finish($_) eq 'COMPLETED' } @ids;
	is($done, $n, "$label: $n new executions complete");
}

# ---------------------------------------------------------------------------
# allma.sql_step_timeout (200 ms): a sql-query sleeping 120 s is canceled,
# while executions started in the same transaction complete on the same,
# only, worker.
# ---------------------------------------------------------------------------
my @ids = split /\n/, $node->safe_psql('postgres', q{
BEGIN;
SELECT allma_start_flow('sleep', '{"secs": 120}');
SELECT allma_start_flow('quick') FROM generate_series(1, 5);
COMMIT;
});
my $slow = shift @ids;
my $done = 0;
$done++ for grep { finish($_) eq 'COMPLETED' } @ids;
is($done, 5, 'executions started with the sleeping one complete');
is(outcome($slow),
	'FAILED|TransientStepError|57014|canceling SQL of step "s" due to its timeout of 200 ms',
	'a sql-query step running longer than allma.sql_step_timeout fails with the timeout error');
is($node->safe_psql('postgres', qq{
	SELECT error->'errorDetails'->>'detail' FROM allma.executions WHERE execution_id = '$slow'}),
	'allma.sql_step_timeout set the timeout.', 'the detail names the GUC');
# a TransientStepError: the default policy retried it 5 times, each attempt
# canceled the same way
is($node->safe_psql('postgres', qq{
	SELECT string_agg(status || ':' || (error->>'errorMessage' LIKE '%timeout of 200 ms'), ',' ORDER BY seq)
	  FROM allma.step_executions WHERE execution_id = '$slow'}),
	join(',', ('RETRYING:true') x 5, 'FAILED:true'),
	'the timeout is retried like any TransientStepError');

# the step's own timeoutMs lowers the GUC, but cannot raise it
is(outcome(start('sleep_own100', '{"secs": 30}')),
	'FAILED|TransientStepError|57014|canceling SQL of step "s" due to its timeout of 100 ms',
	'customConfig.timeoutMs below allma.sql_step_timeout applies');
is(outcome(start('sleep_capped', '{"secs": 30}')),
	'FAILED|TransientStepError|57014|canceling SQL of step "s" due to its timeout of 200 ms',
	'customConfig.timeoutMs above allma.sql_step_timeout is capped by it');

# a function bound to a module is bounded too
is(outcome(start('logic', '{"secs": 30}')),
	'FAILED|TransientStepError|57014|canceling SQL of step "s" due to its timeout of 200 ms',
	'a bound function running too long is canceled');
is(outcome(start('logic', '{"secs": 0}')), 'COMPLETED', 'a bound function finishing in time completes');

# a step failing otherwise disarms its timer too: nothing cancels the
# worker 200 ms later (the log check below)
is(outcome(start('boom')), 'FAILED|PermanentStepError|22012|division by zero',
	'a SQL step failing before its timeout fails with its own error');

quick_batch(20, 'after the timeouts');
is($node->safe_psql('postgres', $worker_sql), $pid, 'the worker is the same process');
# errors outside steps abort the worker's pass and are logged
unlike(slurp_file($node->logfile), qr/ERROR/,
	'no cancel reached the worker outside a step (no pass was aborted)');

# ---------------------------------------------------------------------------
# allma.sql_step_timeout = 0: no default, a step's own timeoutMs applies
# ---------------------------------------------------------------------------
$node->safe_psql('postgres', "ALTER SYSTEM SET allma.sql_step_timeout = 0");
$node->reload;
# the worker applies the reload at its next loop: until then 0.5 s exceeds
# the old 200 ms
my $ok = 0;
for (my $i = 0; $i < 60 && !$ok; $i++)
{
	$ok = outcome(start('sleep_once', '{"secs": 0.5}')) eq 'COMPLETED';
}
ok($ok, 'with allma.sql_step_timeout = 0 a step without timeoutMs is not bounded');

my $own = start('sleep_own', '{"secs": 30}');
is(outcome($own),
	'FAILED|TransientStepError|57014|canceling SQL of step "s" due to its timeout of 300 ms',
	'with allma.sql_step_timeout = 0 a step\'s own timeoutMs applies');
is($node->safe_psql('postgres', qq{
	SELECT error->'errorDetails'->>'detail' FROM allma.executions WHERE execution_id = '$own'}),
	"The step's customConfig.timeoutMs set the timeout; allma.sql_step_timeout caps it.",
	'the detail names customConfig.timeoutMs');
is(outcome(start('sleep_5s', '{"secs": 0.2}')), 'COMPLETED',
	'a step finishing under its timeoutMs completes');

# the timed out step's error is its output (after the retries); the next
# SQL steps run in the same pass, uncanceled
my $after = start('after');
is(outcome($after), 'COMPLETED', 'steps after a timed out step run');
is($node->safe_psql('postgres', qq{
	SELECT concat_ws('|', output->'steps_output'->'s'->>'errorName',
		output->'steps_output'->'u'->'rows'->0->>'two')
	  FROM allma.executions WHERE execution_id = '$after'}),
	'TransientStepError|2', 'their outputs are there');
is($node->safe_psql('postgres', qq{
	SELECT string_agg(step_instance_id || ':' || status, ',' ORDER BY seq)
	  FROM allma.step_executions WHERE execution_id = '$after'}),
	join(',', ('s:RETRYING') x 5, 's:COMPLETED', 't:COMPLETED', 'u:COMPLETED'),
	'the history shows the retries, then every step completed');

$node->safe_psql('postgres', q{SELECT allma_create_flow('{"id": "bad", "startStepInstanceId": "s", "steps": {"s":
	{"stepType": "DATA_LOAD", "moduleIdentifier": "system/sql-query",
	 "customConfig": {"sql": "SELECT 1 AS one", "timeoutMs": 0}}}}')});
is(outcome(start('bad')),
	'FAILED|PermanentStepError|LM100|customConfig.timeoutMs of step "s" must be a positive integer',
	'a bad customConfig.timeoutMs fails the step');

# ---------------------------------------------------------------------------
# pg_cancel_backend() on the worker
# ---------------------------------------------------------------------------
# while it runs a step's SQL (allma.sql_step_timeout is 0 now, so only the
# cancel can end it): that step fails (57014, a TransientStepError; here
# without retries), the worker goes on
my $long = start('sleep_once', '{"secs": 600}');
$node->poll_query_until('postgres',
	"SELECT wait_event = 'PgSleep' FROM pg_stat_activity WHERE backend_type = 'allma worker'")
  or die 'the worker does not run the long step';
is($node->safe_psql('postgres', "SELECT pg_cancel_backend($pid)"), 't', 'cancel sent');
is(outcome($long),
	'FAILED|TransientStepError|57014|canceling statement due to user request',
	'pg_cancel_backend() fails the step the worker was running');
quick_batch(10, 'after a cancel during a step');
is($node->safe_psql('postgres', $worker_sql), $pid,
	'the worker survives a cancel during a step (same process)');

unlike(slurp_file($node->logfile), qr/ERROR/, 'that cancel stayed inside the step');

# outside a step (here while it idles): the cancel aborts the worker's pass
# like any error outside steps (logged; nothing of the pass is kept, it
# runs again), the worker pauses a second and goes on
$node->poll_query_until('postgres',
	"SELECT state = 'idle' FROM pg_stat_activity WHERE backend_type = 'allma worker'")
  or die 'the worker does not idle';
is($node->safe_psql('postgres', "SELECT pg_cancel_backend($pid)"), 't', 'cancel sent to the idle worker');
quick_batch(10, 'after a cancel while idle');
like(slurp_file($node->logfile), qr/ERROR:  canceling statement due to user request/,
	'the cancel outside a step is logged');
is($node->safe_psql('postgres', $worker_sql), $pid,
	'the worker survives a cancel while idle (same process)');

$node->stop;
done_testing();
