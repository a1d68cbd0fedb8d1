/*-------------------------------------------------------------------------
 *
 * launcher.c
 *	  The allma launcher: starts, watches and restarts the worker processes.
 *
 * Process topology
 * ----------------
 * _PG_init registers one static background worker, "allma launcher".  The
 * launcher connects to no database (like PostgreSQL's logical replication
 * launcher), so it survives its database being dropped or not existing
 * yet.  Every allma.naptime, and whenever a worker starts or stops, it looks
 * up allma.database_name in pg_database and keeps allma.max_workers dynamic
 * "allma worker" processes connected to it (worker.c holds their loop).
 *
 * Workers are registered with BGW_NEVER_RESTART: the launcher restarts them
 * itself.  A worker that stops after it has run passes (a FATAL error
 * mid-work), or that was terminated (pg_terminate_backend, SIGTERM, even
 * before its first pass: worker.c tells shmem.c on its way out) is replaced
 * at once, while a sleeping worker is woken to take over its work,
 * up to ALLMA_QUICK_RESTARTS times per ALLMA_QUICK_RESTART_WINDOW_MS per
 * slot; otherwise no more than once every ALLMA_WORKER_RESTART_MS, so a
 * worker that cannot start (database gone, extension missing) cannot turn
 * into a crash loop.  Its INFLIGHT requests are released by the new worker
 * of the slot as it starts (worker.c).  Each worker publishes its PID and PGPROC number in its
 * shared slot (shmem.c), which is what allma_start_flow uses to wake it.
 *
 * DROP DATABASE: allma's ProcessUtility hook calls
 * allma_workers_leave_database() before the drop; it tells the launcher to
 * keep away from that database for a while, stops the workers connected to
 * it, and waits for them to leave, so the drop is not refused.
 *
 * Crash semantics: a worker that dies mid-transaction leaves nothing half
 * done, since every step's effects commit together with its state change.
 * After a server crash the launcher simply starts new workers, which find
 * every unfinished path still READY (see worker.c for INFLIGHT leases).
 *
 * IDENTIFICATION
 *	  src/launcher.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <signal.h>

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_database.h"
#include "commands/dbcommands.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "compat.h"
#include "launcher.h"
#include "shmem.h"
#include "worker.h"

#define ALLMA_WORKER_RESTART_MS		2000
#define ALLMA_QUICK_RESTARTS		100
#define ALLMA_QUICK_RESTART_WINDOW_MS 10000
#define ALLMA_DROP_DATABASE_PAUSE_MS 10000

static BackgroundWorkerHandle *worker_handles[ALLMA_MAX_WORKERS];
static TimestampTz worker_last_start[ALLMA_MAX_WORKERS];
static TimestampTz quick_window_start[ALLMA_MAX_WORKERS];
static int	quick_restarts[ALLMA_MAX_WORKERS];

/*
 * quick_restart_allowed: a worker of the slot that had run passes stopped;
 * may it be replaced without waiting ALLMA_WORKER_RESTART_MS?
 */
static bool
quick_restart_allowed(int slot, TimestampTz now)
{
	if (!allma_shmem_worker_served(slot))
		return false;
	if (TimestampDifferenceExceeds(quick_window_start[slot], now,
								   ALLMA_QUICK_RESTART_WINDOW_MS))
	{
		quick_window_start[slot] = now;
		quick_restarts[slot] = 0;
	}
	return ++quick_restarts[slot] <= ALLMA_QUICK_RESTARTS;
}

void
allma_register_launcher(void)
{
	BackgroundWorker worker;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = 5;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "allma");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "allma_launcher_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "allma launcher");
	snprintf(worker.bgw_type, BGW_MAXLEN, "allma launcher");
	worker.bgw_main_arg = (Datum) 0;
	worker.bgw_notify_pid = 0;
	RegisterBackgroundWorker(&worker);
}

static bool
start_worker(int slot, Oid dboid)
{
	BackgroundWorker worker;

	allma_worker_describe(&worker, slot, dboid);
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	worker.bgw_notify_pid = MyProcPid;

	worker_last_start[slot] = GetCurrentTimestamp();
	if (!RegisterDynamicBackgroundWorker(&worker, &worker_handles[slot]))
	{
		worker_handles[slot] = NULL;
		ereport(WARNING,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("allma could not start worker %d", slot),
				 errhint("Raise max_worker_processes, or lower allma.max_workers.")));
		return false;
	}
	return true;
}

static void
stop_worker(int slot)
{
	if (worker_handles[slot] != NULL)
		TerminateBackgroundWorker(worker_handles[slot]);
}

/*
 * lookup_database returns the OID of allma.database_name, InvalidOid if it
 * does not exist (yet).  Runs its own short transaction.
 */
static Oid
lookup_database(void)
{
	Oid			dboid = InvalidOid;
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tup;

	/*
	 * A plain heap scan of the shared catalog, as the autovacuum launcher
	 * does: without a database, catalog indexes are not available.
	 */
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	(void) GetTransactionSnapshot();
	rel = table_open(DatabaseRelationId, AccessShareLock);
	scan = table_beginscan_catalog(rel, 0, NULL);
	while (HeapTupleIsValid(tup = heap_getnext(scan, ForwardScanDirection)))
	{
		Form_pg_database db = (Form_pg_database) GETSTRUCT(tup);

		if (strcmp(NameStr(db->datname), allma_database_name) == 0 &&
			db->datconnlimit != DATCONNLIMIT_INVALID_DB)
		{
			dboid = db->oid;
			break;
		}
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	CommitTransactionCommand();
	return dboid;
}

void
allma_launcher_main(Datum main_arg)
{
	bool		warned_missing = false;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, SignalHandlerForShutdownRequest);
	BackgroundWorkerUnblockSignals();

	allma_shmem_register_launcher();

	/* shared catalogs only: this process never belongs to a database */
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);
	pgstat_report_appname("allma launcher");

	ereport(LOG,
			(errmsg("allma launcher started (version %s, database \"%s\", %d workers)",
					ALLMA_VERSION, allma_database_name, allma_max_workers)));

	while (!ShutdownRequestPending)
	{
		Oid			dboid;
		TimestampTz now;
		bool		paused;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}

		dboid = lookup_database();
		now = GetCurrentTimestamp();

		paused = allma_shmem_database_paused(dboid, now);

		if (!OidIsValid(dboid) && !warned_missing)
		{
			ereport(LOG,
					(errmsg("allma is waiting for database \"%s\" to exist",
							allma_database_name),
					 errhint("Create the database, or set allma.database_name.")));
			warned_missing = true;
		}
		else if (OidIsValid(dboid))
			warned_missing = false;

		for (int i = 0; i < ALLMA_MAX_WORKERS; i++)
		{
			bool		wanted = i < allma_max_workers && OidIsValid(dboid) && !paused;

			if (worker_handles[i] != NULL)
			{
				pid_t		pid;

				if (GetBackgroundWorkerPid(worker_handles[i], &pid) != BGWH_STOPPED)
				{
					if (!wanted)
						stop_worker(i);
					continue;
				}
				pfree(worker_handles[i]);
				worker_handles[i] = NULL;
				if (wanted && quick_restart_allowed(i, now))
				{
					ereport(LOG,
							(errmsg("allma worker %d stopped after running passes: replacing it at once", i)));
					worker_last_start[i] = 0;
				}
			}
			/* a worker left over by an earlier launcher is still running */
			if (allma_shmem_worker_pid(i) != 0)
				continue;
			if (wanted &&
				TimestampDifferenceExceeds(worker_last_start[i], now,
										   ALLMA_WORKER_RESTART_MS))
				start_worker(i, dboid);
		}

		(void) WaitLatch(MyLatch,
						 WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 Min(allma_naptime_ms, ALLMA_WORKER_RESTART_MS),
						 PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}

	for (int i = 0; i < ALLMA_MAX_WORKERS; i++)
		stop_worker(i);
	proc_exit(0);
}

/*
 * allma_workers_leave_database runs in the backend executing DROP DATABASE
 * (from the utility hook), before the drop.  If allma's workers are
 * connected to that database and the user may drop it, it stops them and
 * keeps the launcher from restarting them for a while, then waits (up to 5
 * seconds) for them to exit.
 */
void
allma_workers_leave_database(Oid dboid)
{
	pid_t		pids[ALLMA_MAX_WORKERS];
	int			n;

	if (!allma_database_ownercheck(dboid, GetUserId()))
		return;

	n = allma_shmem_pause_database(dboid,
								   TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
															   ALLMA_DROP_DATABASE_PAUSE_MS),
								   pids);
	if (n == 0)
		return;

	for (int i = 0; i < n; i++)
		kill(pids[i], SIGTERM);

	for (int waited = 0; waited < 5000; waited += 10)
	{
		if (!allma_shmem_database_has_workers(dboid))
			break;
		CHECK_FOR_INTERRUPTS();
		pg_usleep(10000L);
	}
}
