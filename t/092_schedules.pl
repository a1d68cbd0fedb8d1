# Schedules on pg_cron (Debian's postgresql-15-cron, preloaded with
# cron.use_background_workers = on: no cron.host or cron.job.nodename
# edits): allma_schedule_flow registers a job that runs as the caller;
# running the job's command twice in one minute (as pg_cron would after a
# restart) starts one execution; pg_cron itself starts the flow on a
# one-minute schedule; SCHEDULE_START_POINT steps of the published version
# become jobs on publish and go away on unpublish or when a new published
# version drops them; expressions pg_cron cannot run are refused naming
# the step and the field.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use lib 't';
use AllmaTest;

my $node = allma_node('schedules', qq{
shared_preload_libraries = 'allma,pg_cron'
cron.database_name = 'postgres'
cron.use_background_workers = on
max_worker_processes = 20
}, create => 'CREATE EXTENSION pg_cron; CREATE EXTENSION allma');

sub q1 { return $node->safe_psql('postgres', $_[0]); }

q1(q{SELECT allma_create_flow('{"id": "tock", "startStepInstanceId": "s",
  "steps": {"s": {"stepType": "NO_OP"}}}')});

# ---------------------------------------------------------------------------
# allma_schedule_flow: a job, run as the caller, one execution per tick
# ---------------------------------------------------------------------------
my $jobid = q1(q{SELECT allma_schedule_flow('hourly', '0 * * * *', 'tock', '{"n": 1}')});
like($jobid, qr/^\d+$/, 'allma_schedule_flow returns the job id');
is(q1(qq{SELECT jobname || '|' || schedule || '|' || username || '|' || database FROM cron.job WHERE jobid = $jobid}),
	'allma:hourly|0 * * * *|' . q1('SELECT current_user') . '|postgres', 'the pg_cron job');
my $command = q1(qq{SELECT command FROM cron.job WHERE jobid = $jobid});
my ($salt) = $command =~ /allma_schedule_tick_id\('allma:hourly', now\(\), '([0-9a-f]{16})'\)/;
ok(defined $salt, "the job's command has a random salt") or diag $command;
# (in one transaction, so that both runs and the check are certainly in the same minute)
is((split /\n/, q1(qq{BEGIN; $command; $command;
	SELECT count(*) || '|' || min(input->>'n') || '|' || min(trigger_source) || '|'
		|| bool_and(execution_id = allma_schedule_tick_id('allma:hourly', now(), '$salt'))
		|| '|' || bool_and(execution_id <> allma_schedule_tick_id('allma:hourly'))
	  FROM allma.executions WHERE flow_id = 'tock';
	COMMIT;}))[-1],
	'1|1|schedule:hourly|true|true', "the job's command run twice in one minute started one execution, with the tick's (salted) id");
# rescheduling a name replaces the job; Allma's expressions are converted
is(q1(q{SELECT allma_schedule_flow('hourly', 'rate(15 minutes)', 'tock')}), $jobid, 'same name: same job');
is(q1(qq{SELECT schedule FROM cron.job WHERE jobid = $jobid}), '*/15 * * * *', 'rate(15 minutes) converted');
my ($rc, $out, $err) = $node->psql('postgres', q{SELECT allma_schedule_flow('odd', 'rate(7 minutes)', 'tock')});
like($err, qr/cannot be scheduled with pg_cron: rate\(7 minutes\)/, 'an expression pg_cron cannot run is refused');
($rc, $out, $err) = $node->psql('postgres', q{SELECT allma_schedule_flow('bad', 'every day', 'tock')});
like($err, qr/invalid schedule|syntax/i, "pg_cron's own check of its syntax");
($rc, $out, $err) = $node->psql('postgres', q{SELECT allma_schedule_flow('nope', '* * * * *', 'no_such_flow')});
like($err, qr/no_such_flow/, 'an unknown flow is refused');
is(q1(q{SELECT allma_unschedule_flow('hourly')}), 't', 'allma_unschedule_flow');
is(q1(q{SELECT allma_unschedule_flow('hourly')}), 'f', '... false the second time');
is(q1(qq{SELECT count(*) FROM cron.job WHERE jobid = $jobid}), '0', 'the job is gone');

# the job runs as the caller, with the caller's START privilege
q1(q{CREATE ROLE sched_alice LOGIN; GRANT allma_user TO sched_alice});
q1(q{SELECT allma_grant_flow('tock', 'sched_alice', 'START')});
q1(q{SET ROLE sched_alice; SELECT allma_schedule_flow('mine', '0 4 * * *', 'tock')});
is(q1(q{SELECT username FROM cron.job WHERE jobname = 'allma:mine'}), 'sched_alice', "a user's job runs as that user");
is(q1(q{SET ROLE sched_alice; SELECT allma_unschedule_flow('mine')}), 't', 'and is removed by that user');

# a role that may not log in: pg_cron could not run its jobs; refused, naming what
q1(q{CREATE ROLE sched_nologin NOLOGIN; GRANT allma_user TO sched_nologin});
q1(q{SELECT allma_grant_flow('tock', 'sched_nologin', 'START')});
($rc, $out, $err) = $node->psql('postgres', q{SET ROLE sched_nologin; SELECT allma_schedule_flow('nl', '0 4 * * *', 'tock')});
like($err, qr/ERROR:  schedule "nl" would run as role "sched_nologin", which may not log in/,
	'scheduling as a role that may not log in is refused');
($rc, $out, $err) = $node->psql('postgres', q{SET ROLE sched_nologin; SELECT allma_create_flow('{"id": "nl_flow", "startStepInstanceId": "s",
  "steps": {"s": {"stepType": "NO_OP"}, "t": {"stepType": "SCHEDULE_START_POINT", "scheduleExpression": "rate(1 hour)"}}}')});
like($err, qr/ERROR:  the schedule of step "t" of flow "nl_flow" \(its owner's job\) would run as role "sched_nologin", which may not log in/,
	'so is publishing a schedule step of a flow such a role owns');

# ---------------------------------------------------------------------------
# pg_cron itself starts the flow: a one-minute schedule (waits for the next
# minute boundary: up to ~60 s)
# ---------------------------------------------------------------------------
q1(q{SELECT allma_schedule_flow('every-minute', '* * * * *', 'tock', '{"n": 2}')});
$node->poll_query_until('postgres',
	q{SELECT count(*) > 0 FROM allma.executions WHERE trigger_source = 'schedule:every-minute' AND status = 'COMPLETED'},
	't')
  or die 'pg_cron did not start the flow';
pass('pg_cron started the scheduled flow');
is(q1(q{SELECT count(*) FROM cron.job_run_details d JOIN cron.job j USING (jobid)
	WHERE j.jobname = 'allma:every-minute' AND d.status = 'failed'}), '0', 'no failed run');
q1(q{SELECT allma_unschedule_flow('every-minute')});

# ---------------------------------------------------------------------------
# SCHEDULE_START_POINT steps follow the published version
# ---------------------------------------------------------------------------
sub jobs { return q1(q{SELECT coalesce(string_agg(jobname || ' ' || schedule || ' ' || username, ', ' ORDER BY jobname), '')
	FROM cron.job WHERE jobname LIKE 'allma:flow:%'}); }

q1(q{SELECT allma_create_flow('{"id": "sf", "startStepInstanceId": "go",
  "flowVariables": {"who": "cron", "every": "rate(5 minutes)"},
  "steps": {"go": {"stepType": "NO_OP"},
            "tick": {"stepType": "SCHEDULE_START_POINT", "scheduleExpression": "{{flow_variables.every}}",
                     "payloadTemplate": {"who": "{{flow_variables.who}}"}},
            "morning": {"stepType": "SCHEDULE_START_POINT", "scheduleExpression": "cron(0 9 ? * MON-FRI *)",
                        "timezone": "Asia/Tokyo"},
            "off": {"stepType": "SCHEDULE_START_POINT", "scheduleExpression": "rate(1 hour)", "enabled": false}}}')});
my $me = q1('SELECT current_user');
is(jobs(), "allma:flow:sf:morning 0 0 * * MON-FRI $me, allma:flow:sf:tick */5 * * * * $me",
	'publish: the enabled schedule steps are jobs, converted, running as the owner');
q1(q1(q{SELECT command FROM cron.job WHERE jobname = 'allma:flow:sf:tick'}));
is(q1(q{SELECT input->>'who' || '|' || trigger_source || '|' || flow_version FROM allma.executions WHERE flow_id = 'sf'}),
	'cron|ScheduleTrigger:tick|1', "the tick's execution: payloadTemplate over flowVariables, Allma's triggerSource, the published version");

# a new published version without "morning" drops it
q1(q{SELECT allma_create_flow('{"id": "sf", "startStepInstanceId": "go",
  "steps": {"go": {"stepType": "NO_OP"},
            "tick": {"stepType": "SCHEDULE_START_POINT", "scheduleExpression": "rate(10 minutes)"}}}')});
is(jobs(), "allma:flow:sf:tick */10 * * * * $me", 'a new published version replaces the jobs');
q1(q{SELECT allma_create_flow('{"id": "sf", "startStepInstanceId": "go",
  "steps": {"go": {"stepType": "NO_OP"},
            "tick": {"stepType": "SCHEDULE_START_POINT", "scheduleExpression": "rate(1 minute)"}}}', false)});
is(jobs(), "allma:flow:sf:tick */10 * * * * $me", 'an unpublished new version changes nothing');
q1(q{SELECT allma_unpublish_flow('sf')});
is(jobs(), '', 'unpublish removes them');
q1(q{SELECT allma_publish_flow('sf', 1)});
is(jobs(), "allma:flow:sf:morning 0 0 * * MON-FRI $me, allma:flow:sf:tick */5 * * * * $me", 'publishing version 1 again');

# what pg_cron 1.4 cannot run is refused, naming the step and the field;
# the publish does not happen
($rc, $out, $err) = $node->psql('postgres', q{SELECT allma_create_flow('{"id": "sf", "startStepInstanceId": "go",
  "steps": {"go": {"stepType": "NO_OP"},
            "berlin": {"stepType": "SCHEDULE_START_POINT", "scheduleExpression": "cron(0 9 * * ? *)", "timezone": "Europe/Berlin"}}}')});
like($err, qr/step "berlin" field "timezone" cannot be scheduled with pg_cron: .*daylight saving time/, 'a time zone with DST is refused');
($rc, $out, $err) = $node->psql('postgres', q{SELECT allma_create_flow('{"id": "sf", "startStepInstanceId": "go",
  "steps": {"go": {"stepType": "NO_OP"},
            "odd": {"stepType": "SCHEDULE_START_POINT", "scheduleExpression": "rate(7 minutes)"}}}')});
like($err, qr/step "odd" field "scheduleExpression" cannot be scheduled with pg_cron/, 'rate(7 minutes) is refused');
is(q1(q{SELECT published_version FROM allma.flows WHERE flow_id = 'sf'}), '1', 'the refused versions were not published');
is(jobs(), "allma:flow:sf:morning 0 0 * * MON-FRI $me, allma:flow:sf:tick */5 * * * * $me", 'and the jobs are unchanged');

# deleting the flow's versions unpublishes it: its jobs go
q1(q{DELETE FROM allma.executions WHERE flow_id = 'sf'});
q1(q{SELECT allma_delete_flow('sf')});
is(jobs(), '', 'deleting the flow removes its jobs');

# pg_cron without background workers connects like a client (cron.host...):
# allma says so when it registers a job
$node->append_conf('postgresql.conf', "cron.use_background_workers = off\n");
$node->restart;
($rc, $out, $err) = $node->psql('postgres', q{SELECT allma_schedule_flow('conn', '0 5 * * *', 'tock')});
like($err, qr/WARNING:  pg_cron runs job "allma:conn" over a connection to cron.host/,
	'a warning when cron.use_background_workers is off');
is($rc, 0, 'the job is registered all the same');

$node->stop;
done_testing();
