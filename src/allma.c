/*-------------------------------------------------------------------------
 *
 * allma.c
 *	  Entry point of the allma extension: module magic, _PG_init (GUCs,
 *	  shared memory hooks, the launcher background worker) and the utility
 *	  hook that lets DROP DATABASE through while workers are connected.
 *
 * allma must be loaded through shared_preload_libraries, because it
 * registers a background worker and reserves shared memory.
 *
 * Copyright (c) 2026, the allma authors
 *
 * IDENTIFICATION
 *	  src/allma.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>

#include "commands/dbcommands.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "postmaster/bgworker.h"
#include "tcop/utility.h"
#include "utils/guc.h"

#include "allma.h"
#include "email_ingest.h"
#include "passmark.h"
#include "pathfail.h"
#include "faultpoint.h"
#include "limit_gucs.h"
#include "drop_guard.h"
#include "http.h"
#include "launcher.h"
#include "lifecycle.h"
#include "retention.h"
#include "large_value.h"
#include "listeners.h"
#include "shmem.h"
#include "steps/steps.h"

PG_MODULE_MAGIC;

/* GUC variables */
char	   *allma_database_name = NULL;
int			allma_max_workers = 2;
int			allma_batch_size = 64;
int			allma_max_concurrent_passes = 0;
int			allma_pass_stall_ms = 100;
int			allma_max_chain_steps = 16;
int			allma_naptime_ms = 1000;
double		allma_timer_scale = 1.0;
int			allma_max_context_bytes = 16 * 1024 * 1024;
int			allma_max_fork_branches = 1000000;
int			allma_sql_step_timeout_ms = 60000;
char	   *allma_http_allowlist = NULL;
int			allma_http_max_in_flight = 2500;
int			allma_http_max_per_host = 2500;
int			allma_http_timeout_ms = 30000;
int			allma_http_connect_timeout_ms = 10000;
int			allma_http_max_response_bytes = 10 * 1024 * 1024;
int			allma_file_download_max_bytes = 50 * 1024 * 1024;
int			allma_object_max_bytes = 10 * 1024 * 1024;
char	   *allma_openai_base_url = NULL;
char	   *allma_anthropic_base_url = NULL;
char	   *allma_gemini_base_url = NULL;
char	   *allma_smtp_url = NULL;
char	   *allma_smtp_username = NULL;
char	   *allma_smtp_password_secret = NULL;
bool		allma_allow_superuser_sql_steps = false;

static ProcessUtility_hook_type prev_process_utility_hook = NULL;

void		_PG_init(void);

static void allma_process_utility(PlannedStmt *pstmt, const char *queryString,
								  bool readOnlyTree, ProcessUtilityContext context,
								  ParamListInfo params, QueryEnvironment *queryEnv,
								  DestReceiver *dest, QueryCompletion *qc);

static bool
check_http_allowlist(char **newval, void **extra, GucSource source)
{
	char	   *error = NULL;

	if (*newval == NULL || allma_http_check_allowlist(*newval, &error))
		return true;
	GUC_check_errdetail("%s", error ? error : "invalid allow-list");
	return false;
}

static bool
check_smtp_url(char **newval, void **extra, GucSource source)
{
	char	   *error = NULL;

	if (*newval == NULL || **newval == '\0' || allma_http_check_mail_url(*newval, &error))
		return true;
	GUC_check_errdetail("An smtp:// or smtps:// URL is required (%s).", error ? error : "invalid URL");
	return false;
}

static void
define_gucs(void)
{
	DefineCustomStringVariable("allma.database_name",
							   "Sets the database in which allma's workers run flows.",
							   NULL,
							   &allma_database_name,
							   "postgres",
							   PGC_POSTMASTER,
							   GUC_SUPERUSER_ONLY,
							   NULL, NULL, NULL);

	DefineCustomIntVariable("allma.max_workers",
							"Sets the number of worker processes that run steps.",
							"Each worker uses one background worker slot (max_worker_processes).",
							&allma_max_workers,
							2, 1, ALLMA_MAX_WORKERS,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("allma.batch_size",
							"Sets how many runnable paths a worker claims in one transaction.",
							NULL,
							&allma_batch_size,
							64, 1, 10000,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("allma.max_concurrent_passes",
							"Sets the most workers that run a pass at the same time.",
							"The others wait on their latches for a turn.  0 means twice the number "
							"of CPUs.  A pass running user SQL (SQL steps, bound functions) gives its "
							"turn back, and one running longer than allma.pass_stall_timeout stops counting.",
							&allma_max_concurrent_passes,
							0, 0, ALLMA_MAX_WORKERS,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("allma.pass_stall_timeout",
							"Sets how long a pass may hold its turn before it stops counting against allma.max_concurrent_passes.",
							"Such a pass is taken to be waiting on a lock rather than using a CPU, "
							"and another worker may run meanwhile.",
							&allma_pass_stall_ms,
							100, 1, 3600 * 1000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("allma.max_chain_steps",
							"Sets how many consecutive steps of one path a worker runs in one transaction.",
							"Only steps that are due at once and need no network I/O are chained; "
							"1 commits after every step.",
							&allma_max_chain_steps,
							16, 1, 1000,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("allma.naptime",
							"Sets the longest time an idle worker sleeps before looking for work.",
							"Workers are woken at once when work is committed; this is a safety net.",
							&allma_naptime_ms,
							1000, 10, 60 * 1000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomRealVariable("allma.timer_scale",
							 "Multiplies every retry interval and step delay.",
							 "Meant for tests, which set it below 1 to make backoff fast.",
							 &allma_timer_scale,
							 1.0, 0.0, 1000.0,
							 PGC_SIGHUP,
							 0,
							 NULL, NULL, NULL);

	DefineCustomIntVariable("allma.max_context_size",
							"Sets the largest execution context a step may produce.",
							"A step whose output makes the context larger fails with a PermanentStepError.",
							&allma_max_context_bytes,
							16 * 1024 * 1024, 1024, INT_MAX / 4,
							PGC_SIGHUP,
							GUC_UNIT_BYTE,
							NULL, NULL, NULL);

	DefineCustomIntVariable("allma.max_fork_branches",
							"Sets the most branches one PARALLEL_FORK_MANAGER step may start.",
							"A wider fork fails with a PermanentStepError that catch rules can handle.",
							&allma_max_fork_branches,
							1000000, 1, 10000000,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("allma.out_of_line_threshold",
							"Sets the size above which a step output or context value is stored out of line.",
							"Such a value goes to allma.large_values once and the context and history hold a pointer to it; 0 keeps every value inline.",
							&allma_out_of_line_threshold,
							1024 * 1024, 0, INT_MAX / 4,
							PGC_SIGHUP,
							GUC_UNIT_BYTE,
							NULL, NULL, NULL);

	/*
	 * PGC_SIGHUP like the other worker settings: the bound protects the
	 * workers, so it is the administrator's (postgresql.conf or ALTER
	 * SYSTEM), it reaches running workers on reload, and a SET in a session
	 * could not reach them anyway.  A step may only lower it.
	 */
	DefineCustomIntVariable("allma.sql_step_timeout",
							"Sets the longest time the SQL of one step may run in a worker.",
							"Applies to SQL steps and to functions bound to modules; a step's "
							"customConfig.timeoutMs may lower it.  0 turns the default off.",
							&allma_sql_step_timeout_ms,
							60000, 0, INT_MAX,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomStringVariable("allma.http_allowlist",
							   "Sets the non-public destinations HTTP steps may reach.",
							   "A comma-separated list of host names, IP addresses and CIDRs. "
							   "Loopback, private, link-local and metadata addresses are refused unless listed.",
							   &allma_http_allowlist,
							   "",
							   PGC_SIGHUP,
							   GUC_SUPERUSER_ONLY,
							   check_http_allowlist, NULL, NULL);

	DefineCustomIntVariable("allma.http_max_in_flight",
							"Sets how many HTTP requests one worker keeps in flight.",
							"Each holds a socket: a worker keeps fewer when its open-files limit leaves no room for more.",
							&allma_http_max_in_flight,
							2500, 1, 100000,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("allma.http_max_per_host",
							"Sets how many HTTP requests one worker sends to one host at once.",
							"The default equals allma.http_max_in_flight: with one provider host a lower "
							"per-host limit only caps throughput; lower it for hosts that cannot take that many connections.",
							&allma_http_max_per_host,
							2500, 1, 100000,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("allma.http_timeout",
							"Sets the default total timeout of an HTTP request.",
							"A step's customConfig.timeoutMs overrides it.",
							&allma_http_timeout_ms,
							30000, 1, 3600 * 1000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("allma.http_connect_timeout",
							"Sets the connect timeout of HTTP requests.",
							NULL,
							&allma_http_connect_timeout_ms,
							10000, 1, 600 * 1000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("allma.http_max_response_size",
							"Sets the largest HTTP response body a step accepts.",
							"A larger response fails the step with a PermanentStepError.",
							&allma_http_max_response_bytes,
							10 * 1024 * 1024, 1024, 1024 * 1024 * 1024,
							PGC_SIGHUP,
							GUC_UNIT_BYTE,
							NULL, NULL, NULL);

	DefineCustomIntVariable("allma.file_download_max_bytes",
							"Sets the largest file a FILE_DOWNLOAD step stores.",
							"A larger body fails the step with a PermanentStepError.",
							&allma_file_download_max_bytes,
							50 * 1024 * 1024, 1024, 1024 * 1024 * 1024,
							PGC_SIGHUP,
							GUC_UNIT_BYTE,
							NULL, NULL, NULL);

	DefineCustomIntVariable("allma.object_max_bytes",
							"Sets the largest object the system/s3-* modules write or read.",
							"A larger object fails the step.",
							&allma_object_max_bytes,
							10 * 1024 * 1024, 1024, 1024 * 1024 * 1024,
							PGC_SUSET,
							GUC_UNIT_BYTE,
							NULL, NULL, NULL);

	allma_email_ingest_define_gucs();
	allma_pathfail_define_gucs();
	allma_passmark_define_gucs();
	allma_faultpoint_define_gucs();

	DefineCustomStringVariable("allma.openai_base_url",
							   "Sets the base URL of OPENAI LLM steps (any OpenAI-compatible server).",
							   "Empty means the provider's own; a step's customConfig.baseUrl wins.",
							   &allma_openai_base_url, "", PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomStringVariable("allma.anthropic_base_url",
							   "Sets the base URL of ANTHROPIC LLM steps.",
							   "Empty means the provider's own; a step's customConfig.baseUrl wins.",
							   &allma_anthropic_base_url, "", PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomStringVariable("allma.gemini_base_url",
							   "Sets the base URL of GEMINI LLM steps.",
							   "Empty means the provider's own; a step's customConfig.baseUrl wins.",
							   &allma_gemini_base_url, "", PGC_SIGHUP, 0, NULL, NULL, NULL);

	DefineCustomStringVariable("allma.smtp_url",
							   "Sets the SMTP server EMAIL steps send through (smtp:// or smtps://).",
							   NULL,
							   &allma_smtp_url, "", PGC_SIGHUP, GUC_SUPERUSER_ONLY,
							   check_smtp_url, NULL, NULL);
	DefineCustomStringVariable("allma.smtp_username",
							   "Sets the user name EMAIL steps log in to the SMTP server with.",
							   "Empty means no authentication.",
							   &allma_smtp_username, "", PGC_SIGHUP, GUC_SUPERUSER_ONLY, NULL, NULL, NULL);
	DefineCustomStringVariable("allma.smtp_password_secret",
							   "Sets the name of the secret that holds the SMTP password.",
							   NULL,
							   &allma_smtp_password_secret, "SMTP_PASSWORD", PGC_SIGHUP, GUC_SUPERUSER_ONLY,
							   NULL, NULL, NULL);

	DefineCustomBoolVariable("allma.allow_superuser_sql_steps",
							 "Lets SQL steps and SQL-bound functions of executions started by a superuser run.",
							 "They run as the role that started the execution; off makes such a step fail.",
							 &allma_allow_superuser_sql_steps, false, PGC_SIGHUP, 0, NULL, NULL, NULL);

	allma_lifecycle_define_gucs();
	allma_subflow_define_gucs();
	allma_retention_define_gucs();
	allma_define_limit_gucs();

	MarkGUCPrefixReserved("allma");
}

void
_PG_init(void)
{
	if (IsBinaryUpgrade)
		return;

	if (!process_shared_preload_libraries_in_progress)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("allma can only be loaded via shared_preload_libraries"),
				 errhint("Add allma to the shared_preload_libraries configuration "
						 "variable in postgresql.conf and restart the server.")));

	define_gucs();
	allma_shmem_install_hooks();
	allma_register_launcher();

	prev_process_utility_hook = ProcessUtility_hook;
	ProcessUtility_hook = allma_process_utility;
}

/*
 * allma_process_utility: before DROP DATABASE of the database the workers
 * are connected to, ask them to leave so that the drop does not fail with
 * "database is being accessed by other users".  CREATE EXTENSION allma and
 * ALTER EXTENSION allma (UPDATE) wake the workers when they commit, so
 * that workers waiting for the extension, or for it to reach the version
 * this library needs, start at once.
 */
static void
allma_process_utility(PlannedStmt *pstmt, const char *queryString,
					  bool readOnlyTree, ProcessUtilityContext context,
					  ParamListInfo params, QueryEnvironment *queryEnv,
					  DestReceiver *dest, QueryCompletion *qc)
{
	Node	   *parsetree = pstmt->utilityStmt;

	allma_drop_guard_check(parsetree);	/* DROP EXTENSION allma, see drop_guard.c */
	allma_listeners_utility(parsetree); /* LISTEN allma_execution_events */
	if (IsA(parsetree, DropdbStmt))
	{
		DropdbStmt *stmt = (DropdbStmt *) parsetree;
		Oid			dboid = get_database_oid(stmt->dbname, true);

		if (OidIsValid(dboid))
			allma_workers_leave_database(dboid);
	}
	else if (IsA(parsetree, CreateExtensionStmt) &&
			 strcmp(((CreateExtensionStmt *) parsetree)->extname, ALLMA_EXTENSION_NAME) == 0)
		allma_request_wake_all_at_commit();
	else if (IsA(parsetree, AlterExtensionStmt) &&
			 strcmp(((AlterExtensionStmt *) parsetree)->extname, ALLMA_EXTENSION_NAME) == 0)
		allma_request_wake_all_at_commit();

	if (prev_process_utility_hook)
		prev_process_utility_hook(pstmt, queryString, readOnlyTree, context,
								  params, queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context,
								params, queryEnv, dest, qc);
}
