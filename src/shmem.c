/*-------------------------------------------------------------------------
 *
 * shmem.c
 *	  allma's shared memory and the wake-ups that travel through it.
 *
 * One small struct (AllmaSharedState) lives in the main shared memory
 * segment.  It holds the launcher's and the workers' PGPROC numbers so that
 * any backend can set their latches, and a condition variable that workers
 * broadcast after committing terminal executions (allma_wait sleeps on it).
 *
 * Wake on commit: a backend that creates work (allma_start_flow) calls
 * allma_request_wake_at_commit(); a transaction callback, registered once
 * per backend, sets the workers' latches only if the transaction commits.
 * Nothing polls.
 *
 * All PostgreSQL shared-memory API calls of the extension are in this file.
 *
 * IDENTIFICATION
 *	  src/shmem.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/shmem.h"

#include "shmem.h"

AllmaSharedState *allma_shared = NULL;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static bool wake_at_commit = false;
static bool xact_callback_registered = false;

static void
allma_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(MAXALIGN(sizeof(AllmaSharedState)));
}

static void
allma_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	allma_shared = ShmemInitStruct("allma shared state",
								   sizeof(AllmaSharedState), &found);
	if (!found)
	{
		memset(allma_shared, 0, sizeof(AllmaSharedState));
		SpinLockInit(&allma_shared->mutex);
		pg_atomic_init_u64(&allma_shared->terminal_events, 0);
		ConditionVariableInit(&allma_shared->terminal_cv);
	}
	LWLockRelease(AddinShmemInitLock);
}

/* allma_shmem_install_hooks is called from _PG_init in the postmaster */
void
allma_shmem_install_hooks(void)
{
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = allma_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = allma_shmem_startup;
}

/*
 * allma_wake_workers sets the latch of every running worker.  A stale
 * procno only causes a spurious wake-up of some other process, which every
 * latch user tolerates.
 */
void
allma_wake_workers(void)
{
	int			procnos[ALLMA_MAX_WORKERS];
	int			n = 0;

	if (allma_shared == NULL)
		return;
	SpinLockAcquire(&allma_shared->mutex);
	for (int i = 0; i < ALLMA_MAX_WORKERS; i++)
	{
		if (allma_shared->workers[i].pid != 0)
			procnos[n++] = allma_shared->workers[i].procno;
	}
	SpinLockRelease(&allma_shared->mutex);

	for (int i = 0; i < n; i++)
		SetLatch(&ProcGlobal->allProcs[procnos[i]].procLatch);
}

void
allma_wake_launcher(void)
{
	int			procno = -1;

	if (allma_shared == NULL)
		return;
	SpinLockAcquire(&allma_shared->mutex);
	if (allma_shared->launcher_pid != 0)
		procno = allma_shared->launcher_procno;
	SpinLockRelease(&allma_shared->mutex);
	if (procno >= 0)
		SetLatch(&ProcGlobal->allProcs[procno].procLatch);
}

/* allma_notify_terminal tells allma_wait callers to look again */
void
allma_notify_terminal(void)
{
	if (allma_shared == NULL)
		return;
	pg_atomic_fetch_add_u64(&allma_shared->terminal_events, 1);
	ConditionVariableBroadcast(&allma_shared->terminal_cv);
}

static void
wake_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			if (wake_at_commit)
				allma_wake_workers();
			wake_at_commit = false;
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			wake_at_commit = false;
			break;
		default:
			break;
	}
}

/*
 * allma_request_wake_at_commit arranges for the workers to be woken when the
 * current transaction commits.  The callback is registered once per backend.
 */
void
allma_request_wake_at_commit(void)
{
	if (!xact_callback_registered)
	{
		RegisterXactCallback(wake_xact_callback, NULL);
		xact_callback_registered = true;
	}
	wake_at_commit = true;
}
