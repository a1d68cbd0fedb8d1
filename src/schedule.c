/*-------------------------------------------------------------------------
 *
 * schedule.c
 *	  Flows on a schedule, through pg_cron: allma_schedule_flow,
 *	  allma_unschedule_flow, the SCHEDULE_START_POINT steps of published
 *	  versions, and the conversion of Allma's (EventBridge) schedule
 *	  expressions to pg_cron's.
 *
 * A schedule is a pg_cron job in this database whose command starts the
 * flow with an execution id derived from the job and the tick
 * (allma_schedule_tick_id: md5 of the job's role, the job's name, a random
 * salt kept in the job's command -- which pg_cron shows only to the job's
 * role, so that nobody else can start an execution with a tick's id first
 * -- and the minute, in UTC), so that a tick run twice -- by hand, or by pg_cron after
 * a restart -- starts one execution: allma_start_flow with a known id is
 * idempotent.  The job runs as the role that scheduled it (pg_cron's
 * username), so every tick's start is checked against that role's START
 * privilege, as if it called allma_start_flow itself.
 *
 * Job names in cron.job: "allma:<job_name>" for allma_schedule_flow, and
 * "allma:flow:<flow id>:<step id>" for SCHEDULE_START_POINT steps; the
 * prefix keeps allma's jobs apart from others' (pg_cron's schedule
 * functions replace a job of the same name and user).
 *
 * SCHEDULE_START_POINT: whenever a flow's published version changes (a
 * trigger on allma.flows.published_version: create with publish, publish,
 * unpublish, delete), the flow's jobs are replaced by those of the new
 * published version's enabled SCHEDULE_START_POINT steps, running as the
 * flow's owner: scheduleExpression and payloadTemplate rendered over the
 * version's flowVariables, the execution starting at startStepInstanceId
 * of that version, triggerSource "ScheduleTrigger:<step>" (as Allma).
 * Without pg_cron a publish succeeds and the server log says the steps
 * were not registered.
 *
 * Expressions: pg_cron 1.4 knows five cron fields, a minute's granularity
 * and UTC only.  cron(min hour dom month dow year) is converted (year "*",
 * "?" as "*", EventBridge's day-of-week 1-7 = SUN-SAT as 0-6); rate(N
 * minutes|hours|days) when N divides an hour or a day evenly; a time zone
 * other than UTC when it has no daylight saving time and a whole-hour
 * offset (the hours are shifted, and may cross midnight only when the day
 * fields are "*").  Everything else is refused with an error naming the
 * step and the field.
 *
 * IDENTIFICATION
 *	  src/schedule.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <ctype.h>

#include "access/htup_details.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "commands/extension.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/syscache.h"

#include "acl.h"
#include "jsonb_util.h"
#include "owner.h"
#include "template.h"

#define JOB_PREFIX		"allma:"
#define FLOW_JOB_PREFIX	"allma:flow:"
#define JOB_NAME_MAX	100

PG_FUNCTION_INFO_V1(allma_schedule_flow);
PG_FUNCTION_INFO_V1(allma_unschedule_flow);
PG_FUNCTION_INFO_V1(allma_schedule_expression);
PG_FUNCTION_INFO_V1(allma_sync_schedules);

/* ----------------------------------------------------------------
 * pg_cron
 * ----------------------------------------------------------------
 */

static bool
cron_installed(void)
{
	return OidIsValid(get_extension_oid("pg_cron", true));
}

static void
require_cron(void)
{
	if (!cron_installed())
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("extension \"pg_cron\" is not installed in database \"%s\"",
						get_database_name(MyDatabaseId)),
				 errdetail("allma's schedules are pg_cron jobs."),
				 errhint("Install postgresql-15-cron, set shared_preload_libraries = 'allma,pg_cron', "
						 "cron.database_name = '%s' and cron.use_background_workers = on, restart, "
						 "then CREATE EXTENSION pg_cron (see docs/operations.md).",
						 get_database_name(MyDatabaseId))));
}

/*
 * check_job_role: pg_cron runs a job in a session of its role, so the role
 * must be allowed to log in (pg_cron refuses the job otherwise); said here
 * naming what would run as it.
 */
static void
check_job_role(Oid role, const char *what)
{
	HeapTuple	tup = SearchSysCache1(AUTHOID, ObjectIdGetDatum(role));

	if (!HeapTupleIsValid(tup))
		return;
	if (!((Form_pg_authid) GETSTRUCT(tup))->rolcanlogin)
	{
		char	   *name = pstrdup(NameStr(((Form_pg_authid) GETSTRUCT(tup))->rolname));

		ReleaseSysCache(tup);
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("%s would run as role \"%s\", which may not log in", what, name),
				 errdetail("pg_cron runs each job in a session of its role."),
				 errhint("ALTER ROLE %s LOGIN, or let a role that may log in own it.",
						 quote_identifier(name))));
	}
	ReleaseSysCache(tup);
}

/*
 * warn_about_setup: pg_cron connecting over the network (cron.host,
 * authentication, cron.job.nodename) instead of running jobs in background
 * workers, which makes registered jobs fail on a server that does not
 * listen where pg_cron looks.
 */
static void
warn_about_setup(const char *job)
{
	const char *bgw = GetConfigOption("cron.use_background_workers", true, false);

	if (bgw != NULL && strcmp(bgw, "off") == 0)
		ereport(WARNING,
				(errmsg("pg_cron runs job \"%s\" over a connection to cron.host", job),
				 errdetail("With cron.use_background_workers = off, pg_cron connects like a client, which needs cron.host, authentication and cron.job.nodename to fit the server."),
				 errhint("Set cron.use_background_workers = on and restart (see docs/operations.md).")));
}

/* ----------------------------------------------------------------
 * Expressions
 * ----------------------------------------------------------------
 */

/* split s on whitespace into at most max fields; returns how many */
static int
split_fields(char *s, char **fields, int max)
{
	int			n = 0;

	while (*s)
	{
		while (isspace((unsigned char) *s))
			*s++ = '\0';
		if (*s == '\0')
			break;
		if (n == max)
			return max + 1;
		fields[n++] = s;
		while (*s && !isspace((unsigned char) *s))
			s++;
	}
	return n;
}

/* is s a number (digits only)? */
static bool
all_digits(const char *s)
{
	if (*s == '\0')
		return false;
	for (; *s; s++)
		if (!isdigit((unsigned char) *s))
			return false;
	return true;
}

/*
 * map_numbers rewrites the numbers of a cron field (lists, ranges and the
 * start of steps; not the step width) with delta, within [lo, hi]; false
 * when one falls out (the caller decides what that means).
 */
static bool
map_numbers(const char *field, int delta, int lo, int hi, StringInfo out)
{
	const char *p = field;

	while (*p)
	{
		if (isdigit((unsigned char) *p))
		{
			char	   *end;
			long		v = strtol(p, &end, 10);

			p = end;
			v += delta;
			if (v < lo || v > hi)
				return false;
			appendStringInfo(out, "%ld", v);
		}
		else if (*p == '/')
		{
			/* a step width: copied as it is */
			appendStringInfoChar(out, *p++);
			while (isdigit((unsigned char) *p))
				appendStringInfoChar(out, *p++);
		}
		else
			appendStringInfoChar(out, *p++);
	}
	return true;
}

/*
 * expand_steps: EventBridge's "a/s" (from a, every s) is "a-max/s" in
 * pg_cron, whose steps need a range or "*".
 */
static char *
expand_steps(const char *field, int max)
{
	StringInfoData out;
	char	   *copy = pstrdup(field);
	char	   *save = NULL;
	bool		first = true;

	initStringInfo(&out);
	for (char *tok = strtok_r(copy, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save))
	{
		char	   *slash = strchr(tok, '/');

		if (!first)
			appendStringInfoChar(&out, ',');
		first = false;
		if (slash != NULL && slash > tok && all_digits(pnstrdup(tok, slash - tok)))
			appendStringInfo(&out, "%.*s-%d%s", (int) (slash - tok), tok, max, slash);
		else
			appendStringInfoString(&out, tok);
	}
	return out.data;
}

/*
 * tz_offset_hours: the whole-hour offset (local - UTC) of a time zone
 * without daylight saving time; false and *why otherwise.
 */
static bool
tz_offset_hours(const char *tz, int *hours, char **why)
{
	Oid			types[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(tz)};
	bool		isnull;
	double		winter,
				summer;
	int			rc;

	if (pg_strcasecmp(tz, "UTC") == 0 || pg_strcasecmp(tz, "Etc/UTC") == 0 ||
		pg_strcasecmp(tz, "GMT") == 0 || pg_strcasecmp(tz, "Etc/GMT") == 0 ||
		strcmp(tz, "Z") == 0)
	{
		*hours = 0;
		return true;
	}
	SPI_connect();
	rc = SPI_execute_with_args("SELECT 1 FROM pg_catalog.pg_timezone_names WHERE name = $1",
							   1, types, values, NULL, true, 1);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "allma: reading pg_timezone_names failed");
	if (SPI_processed != 1)
	{
		SPI_finish();
		*why = psprintf("\"%s\" is not a time zone PostgreSQL knows (pg_timezone_names)", tz);
		return false;
	}
	rc = SPI_execute_with_args("SELECT extract(epoch FROM (timestamp '2025-01-15 12:00' AT TIME ZONE 'UTC') "
							   "                  - (timestamp '2025-01-15 12:00' AT TIME ZONE $1)), "
							   "       extract(epoch FROM (timestamp '2025-07-15 12:00' AT TIME ZONE 'UTC') "
							   "                  - (timestamp '2025-07-15 12:00' AT TIME ZONE $1))",
							   1, types, values, NULL, true, 1);
	if (rc != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "allma: computing the offset of time zone \"%s\" failed", tz);
	winter = DatumGetFloat8(DirectFunctionCall1(numeric_float8,
												SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull)));
	summer = DatumGetFloat8(DirectFunctionCall1(numeric_float8,
												SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull)));
	SPI_finish();
	if (winter != summer)
	{
		*why = psprintf("pg_cron 1.4 runs schedules in UTC, and \"%s\" has daylight saving time", tz);
		return false;
	}
	if (winter != (double) ((int) (winter / 3600)) * 3600)
	{
		*why = psprintf("pg_cron 1.4 runs schedules in UTC, and the offset of \"%s\" is not whole hours", tz);
		return false;
	}
	*hours = (int) (winter / 3600);
	return true;
}

/*
 * convert_expression: pg_cron's five fields for a schedule expression and
 * time zone (NULL: UTC); NULL with *why (and *bad_field "timezone" when the
 * zone is the problem) when it cannot be expressed.
 */
static char *
convert_expression(const char *expr, const char *tz, char **why, const char **bad_field)
{
	char	   *s = pstrdup(expr);
	char	   *fields[7];
	int			n;
	int			offset = 0;
	size_t		len;
	StringInfoData out;

	*bad_field = "scheduleExpression";
	while (isspace((unsigned char) *s))
		s++;
	len = strlen(s);
	while (len > 0 && isspace((unsigned char) s[len - 1]))
		s[--len] = '\0';

	if (pg_strncasecmp(s, "rate(", 5) == 0 && len > 6 && s[len - 1] == ')')
	{
		char	   *body = pnstrdup(s + 5, len - 6);
		char	   *unit;
		long		num;

		n = split_fields(body, fields, 2);
		if (n != 2 || !all_digits(fields[0]) || (num = strtol(fields[0], NULL, 10)) < 1)
		{
			*why = "rate(...) needs a positive number and a unit: rate(5 minutes)";
			return NULL;
		}
		unit = fields[1];
		if (pg_strcasecmp(unit, "minute") == 0 || pg_strcasecmp(unit, "minutes") == 0)
		{
			if (num % 60 == 0)
			{
				unit = "hours";
				num /= 60;
			}
			else if (60 % num == 0)
				return num == 1 ? pstrdup("* * * * *") : psprintf("*/%ld * * * *", num);
			else
			{
				*why = psprintf("rate(%ld minutes) is not a divisor or multiple of an hour, which pg_cron's minute field cannot express", num);
				return NULL;
			}
		}
		if (pg_strcasecmp(unit, "hour") == 0 || pg_strcasecmp(unit, "hours") == 0)
		{
			if (num == 24)
				return pstrdup("0 0 * * *");
			if (24 % num == 0)
				return num == 1 ? pstrdup("0 * * * *") : psprintf("0 */%ld * * *", num);
			*why = psprintf("rate(%ld hours) is not a divisor of a day, which pg_cron's hour field cannot express", num);
			return NULL;
		}
		if (pg_strcasecmp(unit, "day") == 0 || pg_strcasecmp(unit, "days") == 0)
		{
			if (num == 1)
				return pstrdup("0 0 * * *");
			*why = psprintf("rate(%ld days) has no pg_cron equivalent (a day-of-month step restarts every month)", num);
			return NULL;
		}
		*why = psprintf("unknown rate unit \"%s\": use minutes, hours or days", unit);
		return NULL;
	}

	if (pg_strncasecmp(s, "cron(", 5) == 0 && len > 6 && s[len - 1] == ')')
	{
		char	   *body = pnstrdup(s + 5, len - 6);

		n = split_fields(body, fields, 6);
		if (n != 6 && n != 5)
		{
			*why = "cron(...) needs six fields: minutes hours day-of-month month day-of-week year";
			return NULL;
		}
		for (int i = 0; i < 5; i++)
		{
			if (strpbrk(fields[i], "LW#") != NULL)
			{
				*why = psprintf("\"%s\": pg_cron does not know L, W or #", fields[i]);
				return NULL;
			}
		}
		if (n == 6 && strcmp(fields[5], "*") != 0 && strcmp(fields[5], "?") != 0)
		{
			*why = "pg_cron has no year field: the year must be \"*\"";
			return NULL;
		}
		/* EventBridge's day of week is 1-7 (SUN-SAT), cron's 0-6 */
		if (strcmp(fields[4], "?") != 0 && strcmp(fields[4], "*") != 0)
		{
			StringInfoData dow;

			initStringInfo(&dow);
			if (!map_numbers(fields[4], -1, 0, 6, &dow))
			{
				*why = "the day-of-week field must use 1-7 (SUN-SAT)";
				return NULL;
			}
			fields[4] = dow.data;
		}
	}
	else
	{
		n = split_fields(s, fields, 5);
		if (n != 5)
		{
			*why = "the expression must be cron(...), rate(...) or five cron fields";
			return NULL;
		}
	}

	for (int i = 0; i < 5; i++)
	{
		static const int maxima[5] = {59, 23, 31, 12, 6};

		if (strcmp(fields[i], "?") == 0)
			fields[i] = "*";
		if (strpbrk(fields[i], "LW#") != NULL)
		{
			*why = psprintf("\"%s\": pg_cron does not know L, W or #", fields[i]);
			return NULL;
		}
		fields[i] = expand_steps(fields[i], maxima[i]);
	}

	if (tz != NULL && !tz_offset_hours(tz, &offset, why))
	{
		*bad_field = "timezone";
		return NULL;
	}
	if (offset != 0 && strcmp(fields[1], "*") != 0)
	{
		StringInfoData hour;
		bool		day_free = strcmp(fields[2], "*") == 0 && strcmp(fields[4], "*") == 0;

		initStringInfo(&hour);
		if (strchr(fields[1], '/') != NULL || strchr(fields[1], '-') != NULL ||
			!map_numbers(fields[1], -offset, day_free ? -24 : 0, day_free ? 47 : 23, &hour))
		{
			*bad_field = "timezone";
			*why = psprintf("the hours \"%s\" cannot be moved to UTC (offset %+d h) without changing the day",
							fields[1], offset);
			return NULL;
		}
		/* wrap around midnight: only reached when the day fields are "*" */
		{
			StringInfoData wrapped;
			char	   *p = hour.data;

			initStringInfo(&wrapped);
			while (*p)
			{
				if (isdigit((unsigned char) *p) || *p == '-')
				{
					long		v = strtol(p, &p, 10);

					appendStringInfo(&wrapped, "%ld", ((v % 24) + 24) % 24);
				}
				else
					appendStringInfoChar(&wrapped, *p++);
			}
			fields[1] = wrapped.data;
		}
	}

	initStringInfo(&out);
	appendStringInfo(&out, "%s %s %s %s %s", fields[0], fields[1], fields[2], fields[3], fields[4]);
	return out.data;
}

/* allma_schedule_expression(expression text, timezone text DEFAULT 'UTC') RETURNS text */
Datum
allma_schedule_expression(PG_FUNCTION_ARGS)
{
	char	   *expr;
	char	   *tz = PG_ARGISNULL(1) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(1));
	char	   *why = NULL;
	const char *field;
	char	   *result;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("schedule expression must not be null")));
	expr = text_to_cstring(PG_GETARG_TEXT_PP(0));
	result = convert_expression(expr, tz, &why, &field);
	if (result == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s \"%s\" cannot be scheduled with pg_cron: %s",
						strcmp(field, "timezone") == 0 ? "time zone" : "schedule expression",
						strcmp(field, "timezone") == 0 ? (tz ? tz : "") : expr, why)));
	PG_RETURN_TEXT_P(cstring_to_text(result));
}

/* ----------------------------------------------------------------
 * Jobs
 * ----------------------------------------------------------------
 */

/*
 * job_command: the SQL a job runs: start the flow with the tick's
 * execution id (version 0: the published one).
 */
static char *
job_command(const char *job, const char *flow_id, int32 version, Jsonb *input,
			const char *trigger)
{
	StringInfoData cmd;
	uint8		salt[8];
	char		salt_hex[sizeof(salt) * 2 + 1];

	/* the tick ids of this job cannot be guessed by roles that cannot read its command */
	if (!pg_strong_random(salt, sizeof(salt)))
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not generate a random salt for schedule \"%s\"", job)));
	salt_hex[hex_encode((const char *) salt, sizeof(salt), salt_hex)] = '\0';

	initStringInfo(&cmd);
	appendStringInfo(&cmd,
					 "SELECT allma_start_flow(%s, %s::jsonb, jsonb_build_object('executionId', "
					 "allma_schedule_tick_id(%s, now(), '%s'), 'triggerSource', %s",
					 quote_literal_cstr(flow_id),
					 quote_literal_cstr(allma_jsonb_to_cstring(input)),
					 quote_literal_cstr(job), salt_hex, quote_literal_cstr(trigger));
	if (version > 0)
		appendStringInfo(&cmd, ", 'version', %d", version);
	appendStringInfoString(&cmd, "))");
	return cmd.data;
}

/* schedules job (as the bootstrap superuser, SPI connected) to run as role; returns its id */
static int64
cron_schedule(const char *job, const char *schedule, const char *command, Oid role)
{
	Oid			types[4] = {TEXTOID, TEXTOID, TEXTOID, TEXTOID};
	Datum		values[4];
	bool		isnull;

	values[0] = CStringGetTextDatum(job);
	values[1] = CStringGetTextDatum(schedule);
	values[2] = CStringGetTextDatum(command);
	values[3] = CStringGetTextDatum(GetUserNameFromId(role, false));
	allma_owner_exec("SELECT cron.schedule_in_database($1, $2, $3, pg_catalog.current_database(), $4)",
					 4, types, values, NULL, SPI_OK_SELECT);
	return DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
}

static void
check_job_name(const char *name)
{
	bool		ok = *name != '\0' && strlen(name) <= JOB_NAME_MAX;

	for (const char *p = name; ok && *p; p++)
		ok = isalnum((unsigned char) *p) || *p == '_' || *p == '-' || *p == '.';
	if (!ok)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid schedule job name \"%s\"", name),
				 errdetail("A job name is 1 to %d ASCII letters, digits, \"_\", \"-\" and \".\".",
						   JOB_NAME_MAX)));
}

/*
 * allma_schedule_flow(job_name text, schedule text, flow_id text, input
 * jsonb DEFAULT '{}') RETURNS bigint: the pg_cron job id.  Needs START on
 * the flow; the job runs as the caller.
 */
Datum
allma_schedule_flow(PG_FUNCTION_ARGS)
{
	char	   *job;
	char	   *schedule;
	char	   *flow_id;
	Jsonb	   *input;
	Oid			caller = GetUserId();
	AllmaAsOwner st;
	int64		jobid;
	char	   *cron_job;

	for (int i = 0; i < 3; i++)
		if (PG_ARGISNULL(i))
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("%s must not be null", i == 0 ? "job_name" : i == 1 ? "schedule" : "flow_id")));
	job = text_to_cstring(PG_GETARG_TEXT_PP(0));
	schedule = text_to_cstring(PG_GETARG_TEXT_PP(1));
	flow_id = text_to_cstring(PG_GETARG_TEXT_PP(2));
	input = PG_ARGISNULL(3) ? allma_jsonb_empty_object() : PG_GETARG_JSONB_P(3);
	check_job_name(job);
	if (!allma_jsonb_is_object(input))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("input of a schedule must be a JSON object")));
	require_cron();
	allma_acl_check(ALLMA_OBJ_FLOW, flow_id, caller, ALLMA_PRIV_START, false);

	/* Allma's cron(...) and rate(...) are converted, pg_cron's own syntax is kept */
	if (pg_strncasecmp(schedule, "cron(", 5) == 0 || pg_strncasecmp(schedule, "rate(", 5) == 0)
	{
		char	   *why = NULL;
		const char *field;
		char	   *converted = convert_expression(schedule, NULL, &why, &field);

		if (converted == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("schedule \"%s\" cannot be scheduled with pg_cron: %s", schedule, why)));
		schedule = converted;
	}

	cron_job = psprintf(JOB_PREFIX "%s", job);
	check_job_role(caller, psprintf("schedule \"%s\"", job));
	allma_owner_begin(&st);
	jobid = cron_schedule(cron_job, schedule,
						  job_command(cron_job, flow_id, 0, input, psprintf("schedule:%s", job)),
						  caller);
	allma_owner_end(&st);
	warn_about_setup(cron_job);
	PG_RETURN_INT64(jobid);
}

/*
 * allma_unschedule_flow(job_name text) RETURNS boolean: removes the
 * caller's job of that name; false when it has none.
 */
Datum
allma_unschedule_flow(PG_FUNCTION_ARGS)
{
	char	   *job;
	AllmaAsOwner st;
	Oid			types[2] = {TEXTOID, TEXTOID};
	Datum		values[2];
	bool		found;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("job_name must not be null")));
	job = text_to_cstring(PG_GETARG_TEXT_PP(0));
	check_job_name(job);
	require_cron();
	values[0] = CStringGetTextDatum(psprintf(JOB_PREFIX "%s", job));
	values[1] = CStringGetTextDatum(GetUserNameFromId(GetUserId(), false));
	allma_owner_begin(&st);
	allma_owner_exec("SELECT cron.unschedule(jobid) FROM cron.job WHERE jobname = $1 AND username = $2",
					 2, types, values, NULL, SPI_OK_SELECT);
	found = SPI_processed > 0;
	allma_owner_end(&st);
	PG_RETURN_BOOL(found);
}

/* ----------------------------------------------------------------
 * SCHEDULE_START_POINT steps of the published version
 * ----------------------------------------------------------------
 */

typedef struct FlowSchedule
{
	char	   *job;
	char	   *schedule;
	char	   *command;
} FlowSchedule;

/*
 * flow_schedules: the jobs of the enabled SCHEDULE_START_POINT steps of a
 * version (throws, naming the step and field, for an expression that
 * cannot be converted).  SPI connected.
 */
static List *
flow_schedules(const char *flow_id, int32 version, Jsonb *def)
{
	Jsonb	   *steps = allma_jsonb_get(def, "steps");
	Jsonb	   *vars = allma_jsonb_get(def, "flowVariables");
	Jsonb	   *doc;
	List	   *result = NIL;
	ListCell   *lc;

	if (!allma_jsonb_is_object(vars))
		vars = allma_jsonb_empty_object();
	doc = allma_jsonb_set_key(vars, "flow_variables", vars);
	if (!allma_jsonb_is_object(steps))
		return NIL;
	foreach(lc, allma_jsonb_object_keys(steps))
	{
		char	   *step_id = lfirst(lc);
		Jsonb	   *step = allma_jsonb_get(steps, step_id);
		char	   *type = allma_jsonb_get_cstring(step, "stepType");
		char	   *expr;
		char	   *tz;
		bool		enabled = true;
		Jsonb	   *payload;
		char	   *why = NULL;
		const char *field;
		char	   *schedule;
		FlowSchedule *fs;

		if (type == NULL || strcmp(type, "SCHEDULE_START_POINT") != 0)
			continue;
		if (allma_jsonb_get_bool(step, "enabled", &enabled) && !enabled)
			continue;
		expr = allma_jsonb_get_cstring(step, "scheduleExpression");
		if (expr == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_ALLMA_INVALID_DEFINITION),
					 errmsg("step \"%s\" field \"scheduleExpression\" is required to publish flow \"%s\" version %d with pg_cron",
							step_id, flow_id, version),
					 errhint("Set \"enabled\": false on the step to publish it without a schedule.")));
		expr = allma_template_render(expr, doc);
		tz = allma_jsonb_get_cstring(step, "timezone");
		schedule = convert_expression(expr, tz, &why, &field);
		if (schedule == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_ALLMA_INVALID_DEFINITION),
					 errmsg("step \"%s\" field \"%s\" cannot be scheduled with pg_cron: %s",
							step_id, field, why),
					 errdetail("The value is \"%s\"; flow \"%s\" version %d was not published.",
							   strcmp(field, "timezone") == 0 ? tz : expr, flow_id, version),
					 errhint("pg_cron 1.4 has a minute's granularity and runs in UTC.")));
		payload = allma_jsonb_get(step, "payloadTemplate");
		payload = allma_jsonb_is_object(payload) ? allma_template_render_value(payload, doc) :
			allma_jsonb_empty_object();

		fs = palloc(sizeof(FlowSchedule));
		fs->job = psprintf(FLOW_JOB_PREFIX "%s:%s", flow_id, step_id);
		fs->schedule = schedule;
		fs->command = job_command(fs->job, flow_id, version, payload,
								  psprintf("ScheduleTrigger:%s", step_id));
		result = lappend(result, fs);
	}
	return result;
}

/*
 * allma_sync_schedules(): trigger AFTER INSERT OR UPDATE OF
 * published_version ON allma.flows.  Replaces the flow's pg_cron jobs by
 * those of its new published version.
 */
Datum
allma_sync_schedules(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	TupleDesc	desc;
	HeapTuple	newtup;
	bool		isnull;
	bool		oldnull = true;
	int			attno;
	int32		version = 0;
	int32		oldversion = 0;
	char	   *flow_id;
	Oid			owner;
	Jsonb	   *def = NULL;
	List	   *schedules = NIL;
	AllmaAsOwner st;
	ListCell   *lc;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_FOR_ROW(trigdata->tg_event))
		elog(ERROR, "allma_sync_schedules must be called as a row trigger");
	desc = RelationGetDescr(trigdata->tg_relation);
	newtup = trigdata->tg_newtuple ? trigdata->tg_newtuple : trigdata->tg_trigtuple;
	attno = SPI_fnumber(desc, "published_version");
	{
		Datum		d = heap_getattr(newtup, attno, desc, &isnull);

		if (!isnull)
			version = DatumGetInt32(d);
	}
	if (TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event))
	{
		Datum		d = heap_getattr(trigdata->tg_trigtuple, attno, desc, &oldnull);

		if (!oldnull)
			oldversion = DatumGetInt32(d);
		if (oldnull == isnull && oldversion == version)
			return PointerGetDatum(newtup);
	}
	else if (isnull)
		return PointerGetDatum(newtup);
	flow_id = SPI_getvalue(newtup, desc, SPI_fnumber(desc, "flow_id"));
	owner = DatumGetObjectId(heap_getattr(newtup, SPI_fnumber(desc, "owner"), desc, &isnull));

	allma_owner_begin(&st);
	if (version > 0)
	{
		Oid			types[2] = {TEXTOID, INT4OID};
		Datum		values[2] = {CStringGetTextDatum(flow_id), Int32GetDatum(version)};

		allma_owner_exec("SELECT definition FROM allma.flow_versions WHERE flow_id = $1 AND version = $2",
						 2, types, values, NULL, SPI_OK_SELECT);
		if (SPI_processed == 1)
			def = DatumGetJsonbPCopy(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	}

	if (!cron_installed())
	{
		/* nothing to replace; say what was not registered */
		if (def != NULL)
		{
			Jsonb	   *steps = allma_jsonb_get(def, "steps");

			foreach(lc, allma_jsonb_is_object(steps) ? allma_jsonb_object_keys(steps) : NIL)
			{
				char	   *type = allma_jsonb_get_cstring(allma_jsonb_get(steps, lfirst(lc)), "stepType");

				if (type != NULL && strcmp(type, "SCHEDULE_START_POINT") == 0)
					ereport(LOG,
							(errmsg("allma: schedule step \"%s\" of flow \"%s\" version %d is not registered: extension \"pg_cron\" is not installed",
									(char *) lfirst(lc), flow_id, version)));
			}
		}
		allma_owner_end(&st);
		return PointerGetDatum(newtup);
	}

	if (def != NULL)
		schedules = flow_schedules(flow_id, version, def);
	foreach(lc, schedules)
		check_job_role(owner, psprintf("the schedule of step \"%s\" of flow \"%s\" (its owner's job)",
									   strrchr(((FlowSchedule *) lfirst(lc))->job, ':') + 1, flow_id));
	{
		Oid			types[1] = {TEXTOID};
		Datum		values[1] = {CStringGetTextDatum(psprintf(FLOW_JOB_PREFIX "%s:", flow_id))};

		/* the flow's jobs, whoever they run as (the owner may have changed) */
		allma_owner_exec("SELECT cron.unschedule(jobid) FROM cron.job "
						 "WHERE starts_with(jobname, $1) AND database = pg_catalog.current_database()",
						 1, types, values, NULL, SPI_OK_SELECT);
	}
	foreach(lc, schedules)
	{
		FlowSchedule *fs = lfirst(lc);

		(void) cron_schedule(fs->job, fs->schedule, fs->command, owner);
		warn_about_setup(fs->job);
	}
	allma_owner_end(&st);
	return PointerGetDatum(newtup);
}
