-- Schedules without pg_cron (the pg_regress servers do not preload it;
-- t/092_schedules.pl runs them with pg_cron): the functions name the
-- missing extension, publishing a flow with SCHEDULE_START_POINT steps still
-- works, and the conversion of Allma's schedule expressions to pg_cron's.

SELECT allma_create_flow('{"id": "sched_a", "startStepInstanceId": "s",
  "steps": {"s": {"stepType": "NO_OP"},
            "tick": {"stepType": "SCHEDULE_START_POINT", "scheduleExpression": "rate(5 minutes)",
                     "payloadTemplate": {"who": "{{flow_variables.who}}"}}},
  "flowVariables": {"who": "cron"}}') AS version;

-- no pg_cron: clear errors naming it
SELECT allma_schedule_flow('nightly', '0 3 * * *', 'sched_a');
SELECT allma_unschedule_flow('nightly');
-- argument checks come first
SELECT allma_schedule_flow('bad name!', '0 3 * * *', 'sched_a');
SELECT allma_schedule_flow('nightly', '0 3 * * *', 'sched_a', '[1]');
SELECT allma_schedule_flow(NULL, '0 3 * * *', 'sched_a');

-- the tick's execution id: the same within a minute, another the next minute
SELECT allma_schedule_tick_id('allma:nightly', '2026-01-01 10:00:05+00')
	 = allma_schedule_tick_id('allma:nightly', '2026-01-01 10:00:59+00') AS same_minute,
	   allma_schedule_tick_id('allma:nightly', '2026-01-01 10:00:59+00')
	<> allma_schedule_tick_id('allma:nightly', '2026-01-01 10:01:00+00') AS next_minute,
	   allma_schedule_tick_id('allma:nightly', '2026-01-01 10:00:05+00')
	<> allma_schedule_tick_id('allma:other', '2026-01-01 10:00:05+00') AS other_job,
	   allma_schedule_tick_id('allma:nightly', '2026-01-01 11:00:05+01')
	 = allma_schedule_tick_id('allma:nightly', '2026-01-01 10:00:05+00') AS in_utc,
	   allma_schedule_tick_id('allma:nightly', '2026-01-01 10:00:05+00', 'a1b2')
	<> allma_schedule_tick_id('allma:nightly', '2026-01-01 10:00:05+00', 'c3d4') AS salted;

-- expressions pg_cron 1.4 can run
SELECT e, tz, allma_schedule_expression(e, tz) AS pg_cron
  FROM (VALUES ('rate(1 minute)', 'UTC'), ('rate(5 minutes)', 'Europe/Berlin'),
			   ('rate(120 minutes)', NULL), ('rate(1 hour)', 'UTC'), ('rate(6 hours)', 'UTC'),
			   ('rate(24 hours)', 'UTC'), ('rate(1 day)', 'UTC'),
			   ('cron(0 9 * * ? *)', 'UTC'), ('cron(15 10 ? * 2-6 *)', 'UTC'),
			   ('cron(0/15 * * * ? *)', 'UTC'), ('cron(0 12 1 * ? *)', 'Etc/UTC'),
			   ('cron(0 9 * * ? *)', 'Asia/Tokyo'), ('cron(30 1,13 * * ? *)', 'Asia/Tokyo'),
			   ('cron(0 22 * * ? *)', 'Etc/GMT+5'),
			   ('cron(0 8 ? * MON-FRI *)', 'UTC'), ('*/10 * * * *', 'UTC')) AS t(e, tz);
-- and those it cannot
SELECT allma_schedule_expression('rate(7 minutes)');
SELECT allma_schedule_expression('rate(5 hours)');
SELECT allma_schedule_expression('rate(3 days)');
SELECT allma_schedule_expression('rate(5 fortnights)');
SELECT allma_schedule_expression('rate(minutes)');
SELECT allma_schedule_expression('cron(0 9 * * ? 2027)');
SELECT allma_schedule_expression('cron(0 9 L * ? *)');
SELECT allma_schedule_expression('cron(0 9 ? * 6#3 *)');
SELECT allma_schedule_expression('cron(0 9 * *)');
SELECT allma_schedule_expression('at(2026-01-01T00:00:00)');
SELECT allma_schedule_expression('cron(0 9 * * ? *)', 'Europe/Berlin');
SELECT allma_schedule_expression('cron(0 9 * * ? *)', 'Asia/Kolkata');
SELECT allma_schedule_expression('cron(0 9 * * ? *)', 'Mars/Olympus');
SELECT allma_schedule_expression('cron(0 2 * * MON *)', 'Asia/Tokyo');
SELECT allma_schedule_expression('cron(0 2-5 * * ? *)', 'Asia/Tokyo');
SELECT allma_schedule_expression(NULL);

-- publishing, unpublishing and deleting flows with schedule steps works
-- without pg_cron (the server log says the steps were not registered)
SELECT allma_unpublish_flow('sched_a');
SELECT allma_publish_flow('sched_a', 1);
SELECT published_version FROM allma.flows WHERE flow_id = 'sched_a';

-- who may call what
SELECT p.proname, has_function_privilege('allma_user', p.oid, 'EXECUTE') AS allma_user,
	   has_function_privilege('public', p.oid, 'EXECUTE') AS public
  FROM pg_proc p WHERE p.proname IN ('allma_schedule_flow', 'allma_unschedule_flow',
	'allma_schedule_tick_id', 'allma_schedule_expression', 'allma_sync_schedules', 'allma_purge')
 ORDER BY 1;
