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
#include "flowcache.h"
#include "launcher.h"
#include "retry.h"
#include "shmem.h"
#include "store.h"
#include "worker.h"

static int	my_slot = -1;
static Oid	known_extension_oid = InvalidOid;

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

	paths = allma_store_claim(allma_batch_size);
	npaths = list_length(paths);

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
	MemoryContextSwitchTo(TopMemoryContext);
	MemoryContextReset(batch_cxt);
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);

	if (nterminal > 0)
		allma_notify_terminal();
	set_state(ALLMA_WORKER_IDLE, nsteps);
	return npaths;
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
		HOLD_INTERRUPTS();
		EmitErrorReport();
		AbortCurrentTransaction();
		MemoryContextSwitchTo(TopMemoryContext);
		FlushErrorState();
		MemoryContextReset(batch_cxt);
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
		}

		if (backoff)
		{
			backoff = false;
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 1000L, PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
			continue;
		}

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

		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 timeout_ms, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}

void
allma_worker_main(Datum main_arg)
{
	Oid			dboid = DatumGetObjectId(main_arg);

	memcpy(&my_slot, MyBgworkerEntry->bgw_extra, sizeof(int));
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
