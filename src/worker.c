/*-------------------------------------------------------------------------
 *
 * worker.c
 *	  The allma worker: the loop that claims runnable paths, advances them
 *	  and commits.
 *
 * Each pass of the loop is one short transaction:
 *
 *	  claim up to allma.batch_size READY paths that are due (store.c, FOR
 *	  UPDATE SKIP LOCKED) -> run each one's steps (engine.c, chaining up to
 *	  allma.max_chain_steps steps that are due at once) -> write the whole
 *	  batch back with set-based statements (store.c) -> commit.
 *
 * So a step's effects, its history row and the path's new position commit
 * atomically, and many executions share one commit.  If the worker dies
 * before the commit, nothing of the batch happened and another pass runs
 * it again; once committed, a step never runs again.
 *
 * When a pass finds nothing to do the worker sleeps on its latch until the
 * earliest due time (durable timers: retry backoff, step delays), at most
 * allma.naptime.  allma_start_flow sets the latch when its transaction
 * commits, so new work starts within milliseconds.
 *
 * Errors outside steps (which the engine catches itself) abort the pass;
 * the worker logs them, backs off for a second and carries on, instead of
 * exiting into a restart loop.  If the extension is not installed in the
 * database the worker idles and checks again every allma.naptime.
 *
 * Memory: the loop owns one batch context, reset after every pass.
 *
 * IDENTIFICATION
 *	  src/worker.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sys/resource.h>

#include "access/xact.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "engine.h"
#include "http.h"
#include "jsonb_util.h"
#include "flowcache.h"
#include "launcher.h"
#include "retry.h"
#include "shmem.h"
#include "store.h"
#include "worker.h"

static int	my_slot = -1;
static Oid	known_extension_oid = InvalidOid;

/* the HTTP client: long-lived, requests survive commits */
#define MAX_COMPLETIONS 512
#define LEASE_SWEEP_MS 10000

typedef struct InflightTag
{
	pg_uuid_t	execution_id;
	int64		path_id;
	int32		attempt;
} InflightTag;

static AllmaHttpClient *http_client = NULL;
static MemoryContext http_cxt = NULL;
static WaitEventSet *wait_set = NULL;
static TimestampTz last_lease_sweep = 0;
static bool released_own_inflight = false;

static void
set_state(AllmaWorkerState state, uint64 steps)
{
	SpinLockAcquire(&allma_shared->mutex);
	allma_shared->workers[my_slot].state = state;
	allma_shared->workers[my_slot].steps_done += steps;
	SpinLockRelease(&allma_shared->mutex);
}

static void
worker_detach(int code, Datum arg)
{
	SpinLockAcquire(&allma_shared->mutex);
	if (allma_shared->workers[my_slot].pid == MyProcPid)
	{
		allma_shared->workers[my_slot].pid = 0;
		allma_shared->workers[my_slot].state = ALLMA_WORKER_FREE;
	}
	SpinLockRelease(&allma_shared->mutex);
	allma_wake_launcher();
}

/*
 * check_extension: is allma installed (and committed) in this database?
 * When its OID changes (dropped and created again) every cached plan and
 * definition is thrown away.
 */
static bool
check_extension(void)
{
	Oid			extoid = get_extension_oid(ALLMA_EXTENSION_NAME, true);

	if (extoid != known_extension_oid)
	{
		allma_store_reset();
		allma_retry_reset();
		allma_flowcache_reset();
		known_extension_oid = extoid;
	}
	return OidIsValid(extoid);
}

/*
 * raise_fd_limit: every HTTP request in flight holds a socket, and the
 * default soft limit (often 1024) would cap a worker far below
 * allma.http_max_in_flight.  Sockets are not PostgreSQL's virtual file
 * descriptors, so raising the soft limit to the hard one is safe.
 */
static void
raise_fd_limit(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max)
	{
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
			ereport(DEBUG1, (errmsg_internal("allma could not raise its file descriptor limit: %m")));
	}
}

/* the HTTP client limits the GUCs ask for */
static void
http_limits_from_gucs(AllmaHttpLimits *limits)
{
	memset(limits, 0, sizeof(*limits));
	limits->max_in_flight = allma_http_max_in_flight;
	limits->max_per_host = allma_http_max_per_host;
	limits->connect_timeout_ms = allma_http_connect_timeout_ms;
	limits->timeout_ms = allma_http_timeout_ms;
	limits->max_response_bytes = allma_http_max_response_bytes;
}

static AllmaHttpClient *
get_http_client(void)
{
	AllmaHttpLimits limits;
	MemoryContext oldcxt;

	if (http_client != NULL)
		return http_client;
	if (http_cxt == NULL)
		http_cxt = AllocSetContextCreate(TopMemoryContext, "allma http",
										 ALLOCSET_DEFAULT_SIZES);
	http_limits_from_gucs(&limits);
	allma_http_set_allowlist(allma_http_allowlist ? allma_http_allowlist : "");
	raise_fd_limit();
	oldcxt = MemoryContextSwitchTo(http_cxt);
	http_client = allma_http_client_create(&limits);
	MemoryContextSwitchTo(oldcxt);
	return http_client;
}

static int
http_pending(void)
{
	if (http_client == NULL)
		return 0;
	return allma_http_in_flight(http_client);	/* queued ones included */
}

/*
 * submit_requests sends the requests of the paths that went INFLIGHT in a
 * pass.  Called after the pass committed, with no transaction open: the
 * INFLIGHT row is durable before anything is sent.
 */
static void
submit_requests(List *paths)
{
	ListCell   *lc;

	foreach(lc, paths)
	{
		AllmaPathState *ps = lfirst(lc);
		AllmaHttpRequest r;
		AllmaHttpClient *client;
		InflightTag *tag;

		if (!ps->inflight || ps->io_request == NULL)
			continue;
		client = get_http_client();
		tag = MemoryContextAlloc(http_cxt, sizeof(InflightTag));
		tag->execution_id = ps->execution_id;
		tag->path_id = ps->path_id;
		tag->attempt = ps->attempt;
		/* checked by the engine before the path went INFLIGHT */
		allma_engine_http_request(ps, &r);
		r.tag = tag;
		allma_http_submit(client, &r);
	}
}

/*
 * after_commit finishes a pass once its transaction committed: sends the
 * requests of the paths that went INFLIGHT (the rows are durable first),
 * frees the pass's memory, reports, and wakes allma_wait callers.
 */
static void
after_commit(MemoryContext batch_cxt, List *paths, int nterminal, uint64 nsteps)
{
	MemoryContextSwitchTo(batch_cxt);
	submit_requests(paths);
	MemoryContextSwitchTo(TopMemoryContext);
	MemoryContextReset(batch_cxt);
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
	if (nterminal > 0)
		allma_notify_terminal();
	set_state(ALLMA_WORKER_IDLE, nsteps);
}

/*
 * run_pass runs one transaction: claim, advance, save.  Returns the number
 * of paths it advanced; *next_due gets the earliest future due time when it
 * found less than a full batch.  *no_extension is set when allma is not
 * installed.
 */
static int
run_pass(MemoryContext batch_cxt, TimestampTz *next_due, bool *no_extension)
{
	List	   *paths;
	ListCell   *lc;
	int			npaths;
	int			nterminal;
	uint64		nsteps = 0;

	*next_due = 0;
	*no_extension = false;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());

	if (!check_extension())
	{
		*no_extension = true;
		PopActiveSnapshot();
		CommitTransactionCommand();
		return 0;
	}

	SPI_connect();
	MemoryContextSwitchTo(batch_cxt);
	pgstat_report_activity(STATE_RUNNING, "allma: claiming paths");

	/*
	 * Requests in flight in this slot's previous process were lost with it:
	 * run their steps again.  Expired leases of other slots likewise.
	 */
	if (!released_own_inflight)
	{
		allma_store_release_inflight(my_slot);
		released_own_inflight = true;
	}
	if (TimestampDifferenceExceeds(last_lease_sweep, GetCurrentTimestamp(), LEASE_SWEEP_MS))
	{
		allma_store_release_inflight(-1);
		last_lease_sweep = GetCurrentTimestamp();
	}

	paths = allma_store_claim(allma_batch_size);
	npaths = list_length(paths);
	MemoryContextSwitchTo(batch_cxt);

	if (npaths > 0)
	{
		set_state(ALLMA_WORKER_BUSY, 0);
		pgstat_report_activity(STATE_RUNNING, "allma: running steps");
		foreach(lc, paths)
		{
			AllmaPathState *ps = lfirst(lc);

			if (!ps->ended)
				allma_engine_advance(ps, allma_max_chain_steps);
			nsteps += ps->steps_run;
		}
	}
	nterminal = allma_store_save(paths);

	if (npaths < allma_batch_size)
		*next_due = allma_store_next_due();

	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	after_commit(batch_cxt, paths, nterminal, nsteps);
	return npaths;
}

/*
 * Responses taken from the HTTP client and not recorded yet.  A completion
 * pass that fails (a cancel, a deadlock, a full disk) leaves them here for
 * the next pass instead of losing them, which would leave their steps
 * INFLIGHT until their leases expire and send their requests again.  After
 * HELD_MAX_FAILURES failed passes they are given up on (the lease route).
 */
#define HELD_MAX_FAILURES 3
static MemoryContext held_cxt = NULL;
static AllmaHttpCompletion *held = NULL;
static int	held_count = 0;
static int	held_failures = 0;
static bool recording_held = false;

/* forget_held_responses: they were recorded (or given up on) */
static void
forget_held_responses(void)
{
	for (int i = 0; i < held_count; i++)
		pfree(held[i].tag);
	held = NULL;
	held_count = 0;
	held_failures = 0;
	recording_held = false;
	if (held_cxt != NULL)
		MemoryContextReset(held_cxt);
}

/*
 * held_responses_failed: called by the error recovery; the pass that was
 * recording the held responses failed.
 */
static void
held_responses_failed(void)
{
	if (!recording_held)
		return;
	recording_held = false;
	if (++held_failures < HELD_MAX_FAILURES)
	{
		ereport(LOG,
				(errmsg("allma will record %d responses again", held_count)));
		return;
	}
	ereport(LOG,
			(errmsg("allma gives up recording %d responses after %d failed attempts",
					held_count, held_failures),
			 errdetail("Their steps run again, and send their requests again, when their leases expire.")));
	forget_held_responses();
}

/*
 * run_completion_pass takes the responses that have arrived and, in one
 * short transaction, completes the steps waiting for them.  Returns how
 * many responses it handled.
 */
static int
run_completion_pass(MemoryContext batch_cxt)
{
	AllmaHttpCompletion *done;
	int			n;
	pg_uuid_t  *executions;
	int64	   *path_ids;
	int32	   *attempts;
	List	   *paths;
	ListCell   *lc;
	int			nterminal;
	uint64		nsteps = 0;

	if (held_count == 0 && http_pending() == 0)
		return 0;

	/*
	 * The responses live in their own context until the pass that records
	 * them commits: if it fails, they are recorded by the next one.
	 */
	if (held_cxt == NULL)
		held_cxt = AllocSetContextCreate(TopMemoryContext, "allma held responses",
										 ALLOCSET_DEFAULT_SIZES);
	if (held_count > 0)
	{
		done = held;
		n = held_count;
	}
	else
	{
		MemoryContextSwitchTo(held_cxt);
		done = palloc(sizeof(AllmaHttpCompletion) * MAX_COMPLETIONS);
		n = allma_http_poll(http_client, 0, done, MAX_COMPLETIONS);
		if (n == 0)
		{
			MemoryContextSwitchTo(TopMemoryContext);
			MemoryContextReset(held_cxt);
			return 0;
		}
		held = done;
		held_count = n;
	}
	recording_held = true;

	MemoryContextSwitchTo(batch_cxt);
	executions = palloc(sizeof(pg_uuid_t) * n);
	path_ids = palloc(sizeof(int64) * n);
	attempts = palloc(sizeof(int32) * n);
	for (int i = 0; i < n; i++)
	{
		InflightTag *tag = done[i].tag;

		executions[i] = tag->execution_id;
		path_ids[i] = tag->path_id;
		attempts[i] = tag->attempt;
	}

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	if (!check_extension())
	{
		PopActiveSnapshot();
		CommitTransactionCommand();
		forget_held_responses();
		MemoryContextSwitchTo(TopMemoryContext);
		MemoryContextReset(batch_cxt);
		return n;
	}
	SPI_connect();
	MemoryContextSwitchTo(batch_cxt);
	pgstat_report_activity(STATE_RUNNING, "allma: recording responses");

	paths = allma_store_claim_inflight(n, executions, path_ids, attempts);
	MemoryContextSwitchTo(batch_cxt);
	foreach(lc, paths)
	{
		AllmaPathState *ps = lfirst(lc);

		for (int i = 0; i < n; i++)
		{
			if (path_ids[i] == ps->path_id && attempts[i] == ps->attempt &&
				memcmp(&executions[i], &ps->execution_id, sizeof(pg_uuid_t)) == 0)
				ps->response = &done[i];
		}
		if (!ps->ended && ps->response != NULL)
			allma_engine_advance(ps, allma_max_chain_steps);
		nsteps += ps->steps_run;
	}
	nterminal = allma_store_save(paths);

	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	/* recorded: whatever happens from here on does not concern them */
	forget_held_responses();
	after_commit(batch_cxt, paths, nterminal, nsteps);
	return n;
}

/*
 * wait_for_work sleeps until the latch is set, a response arrives, or
 * timeout_ms passes.
 */
static void
wait_for_work(long timeout_ms)
{
	WaitEvent	event;

	if (http_client == NULL)
	{
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 timeout_ms, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		return;
	}
	if (wait_set == NULL)
	{
		wait_set = CreateWaitEventSet(TopMemoryContext, 3);
		AddWaitEventToSet(wait_set, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
		AddWaitEventToSet(wait_set, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
		AddWaitEventToSet(wait_set, WL_SOCKET_READABLE, allma_http_wait_fd(http_client),
						  NULL, NULL);
	}
	if (http_pending() > 0)
	{
		long		curl_timeout = allma_http_next_timeout(http_client);

		if (curl_timeout >= 0 && curl_timeout < timeout_ms)
			timeout_ms = curl_timeout;
	}
	if (WaitEventSetWait(wait_set, timeout_ms, &event, 1, PG_WAIT_EXTENSION) > 0 &&
		(event.events & WL_LATCH_SET))
		ResetLatch(MyLatch);
}

static void
worker_loop(void)
{
	MemoryContext batch_cxt = AllocSetContextCreate(TopMemoryContext,
													"allma worker batch",
													ALLOCSET_DEFAULT_SIZES);
	sigjmp_buf	local_sigjmp_buf;
	bool		backoff = false;

	/*
	 * Error recovery: an error outside the engine's own subtransactions
	 * aborts the pass; log it, clean up and retry after a pause.
	 */
	if (sigsetjmp(local_sigjmp_buf, 1) != 0)
	{
		/* the callbacks that were on the stack belong to frames now gone */
		error_context_stack = NULL;
		HOLD_INTERRUPTS();
		EmitErrorReport();
		AbortCurrentTransaction();
		MemoryContextSwitchTo(TopMemoryContext);
		FlushErrorState();
		MemoryContextReset(batch_cxt);
		held_responses_failed();
		/* plans may point at dropped objects */
		allma_store_reset();
		allma_retry_reset();
		allma_flowcache_reset();
		known_extension_oid = InvalidOid;
		RESUME_INTERRUPTS();
		backoff = true;
	}
	PG_exception_stack = &local_sigjmp_buf;

	for (;;)
	{
		TimestampTz next_due = 0;
		bool		no_extension = false;
		long		timeout_ms;
		int			npaths;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			allma_http_set_allowlist(allma_http_allowlist ? allma_http_allowlist : "");
			if (http_client != NULL)
			{
				AllmaHttpLimits limits;

				http_limits_from_gucs(&limits);
				allma_http_client_set_limits(http_client, &limits);
			}
		}

		if (backoff)
		{
			backoff = false;
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 1000L, PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
			continue;
		}

		if (run_completion_pass(batch_cxt) > 0)
			continue;
		npaths = run_pass(batch_cxt, &next_due, &no_extension);
		if (npaths > 0 && npaths >= allma_batch_size)
			continue;			/* likely more work: go on at once */
		if (npaths > 0 && next_due != 0 && next_due <= GetCurrentTimestamp())
			continue;

		if (no_extension)
		{
			set_state(ALLMA_WORKER_NO_EXTENSION, 0);
			timeout_ms = allma_naptime_ms;
		}
		else if (next_due == 0)
			timeout_ms = allma_naptime_ms;
		else
		{
			long		secs;
			int			usecs;

			TimestampDifference(GetCurrentTimestamp(), next_due, &secs, &usecs);
			timeout_ms = Min((long) allma_naptime_ms, secs * 1000 + usecs / 1000);
			if (timeout_ms <= 0)
				continue;
		}

		wait_for_work(timeout_ms);
	}
}

void
allma_worker_main(Datum main_arg)
{
	Oid			dboid = DatumGetObjectId(main_arg);

	memcpy(&my_slot, MyBgworkerEntry->bgw_extra, sizeof(int));
	allma_store_owner_slot = my_slot;
	if (my_slot < 0 || my_slot >= ALLMA_MAX_WORKERS)
		elog(FATAL, "allma worker started with invalid slot %d", my_slot);

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	SpinLockAcquire(&allma_shared->mutex);
	allma_shared->workers[my_slot].pid = MyProcPid;
	allma_shared->workers[my_slot].procno = MyProc->pgprocno;
	allma_shared->workers[my_slot].dboid = dboid;
	allma_shared->workers[my_slot].state = ALLMA_WORKER_STARTING;
	allma_shared->workers[my_slot].steps_done = 0;
	SpinLockRelease(&allma_shared->mutex);
	before_shmem_exit(worker_detach, (Datum) 0);

	BackgroundWorkerInitializeConnectionByOid(dboid, InvalidOid, 0);
	pgstat_report_appname("allma worker");

	worker_loop();
}
