/*-------------------------------------------------------------------------
 *
 * shmem.c
 *	  allma's shared memory and the wake-ups that travel through it.
 *
 * One small struct (AllmaSharedState) lives in the main shared memory
 * segment.  It holds the launcher's and the workers' PGPROC numbers so that
 * any backend can set their latches, each worker's state for
 * allma_worker_status(), the DROP DATABASE guard, and a condition variable
 * that workers broadcast after committing terminal executions (allma_wait
 * sleeps on it).  The struct is private to this file: its spinlock is taken
 * here only, around a few loads and stores, never across a call that could
 * throw.
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

#include <unistd.h>

#include "access/xact.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "port/atomics.h"
#include "storage/condition_variable.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "storage/spin.h"

#include "allma.h"
#include "compat.h"
#include "ratelimit.h"
#include "shmem.h"

typedef struct AllmaWorkerSlot
{
	pid_t		pid;			/* 0: free */
	int			procno;			/* PGPROC number, for its latch */
	Oid			dboid;
	AllmaWorkerState state;
	uint64		steps_done;
	bool		served;			/* ran a pass with the gate open; kept after
								 * the worker exits, for the launcher */
	bool		sleeping;		/* waiting for work on its latch */
	TimestampTz turn_since;		/* running a pass on a turn since (0: none) */
	bool		waiting_turn;	/* waiting on its latch for a turn */
} AllmaWorkerSlot;

typedef struct AllmaSharedState
{
	slock_t		mutex;			/* protects everything but the atomics/CV */
	pid_t		launcher_pid;
	int			launcher_procno;
	/* DROP DATABASE of the workers' database in progress: keep them away */
	Oid			drop_dboid;
	TimestampTz drop_until;
	/* the schema-version mismatch already logged (see allma_shmem_gate_notice) */
	Oid			gate_dboid;
	char		gate_version[NAMEDATALEN];
	AllmaWorkerSlot workers[ALLMA_MAX_WORKERS];
	uint32		wake_cursor;	/* where the next wake-up starts looking */
	uint32		turn_cursor;	/* where the next freed turn starts looking */
	pg_atomic_uint64 terminal_events;	/* bumped when executions end */
	ConditionVariable terminal_cv;
	pg_atomic_uint64 lifecycle_events;	/* bumped when executions are
										 * cancelled or time out */
	pg_atomic_uint64 claim_floor;	/* TimestampTz: where claims start (store.c) */
	pg_atomic_uint32 event_listeners;	/* sessions that LISTEN on
										 * allma_execution_events */
} AllmaSharedState;

static AllmaSharedState *allma_shared = NULL;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

/* units of new work the current transaction made (0: wake nobody) */
static int	wake_units = 0;
#define WAKE_ALL_UNITS	(INT_MAX / 2)
/* the current transaction cancelled or timed out executions */
static bool lifecycle_at_commit = false;
static bool xact_callback_registered = false;

static void
allma_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(MAXALIGN(sizeof(AllmaSharedState)));
	RequestAddinShmemSpace(allma_ratelimit_shmem_size());
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
		pg_atomic_init_u64(&allma_shared->lifecycle_events, 0);
		pg_atomic_init_u32(&allma_shared->event_listeners, 0);
		pg_atomic_init_u64(&allma_shared->claim_floor, (uint64) DT_NOBEGIN);
	}
	/* the rate limits' state (ratelimit.c) */
	{
		void	   *rl_area = ShmemInitStruct("allma rate limits",
											  allma_ratelimit_shmem_size(), &found);

		allma_ratelimit_shmem_init(rl_area, found);
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

/* ----------------------------------------------------------------
 * Launcher and worker slots
 * ----------------------------------------------------------------
 */

static void
launcher_detach(int code, Datum arg)
{
	SpinLockAcquire(&allma_shared->mutex);
	if (allma_shared->launcher_pid == MyProcPid)
		allma_shared->launcher_pid = 0;
	SpinLockRelease(&allma_shared->mutex);
}

void
allma_shmem_register_launcher(void)
{
	SpinLockAcquire(&allma_shared->mutex);
	allma_shared->launcher_pid = MyProcPid;
	allma_shared->launcher_procno = ALLMA_MY_PROCNO;
	SpinLockRelease(&allma_shared->mutex);
	before_shmem_exit(launcher_detach, (Datum) 0);
}

/* frees the exiting worker's slot (arg: the slot) and tells the launcher */
static void
worker_detach(int code, Datum arg)
{
	int			slot = DatumGetInt32(arg);

	/* a turn held by a pass that died is another worker's now */
	allma_shmem_end_turn(slot, true);
	SpinLockAcquire(&allma_shared->mutex);
	if (allma_shared->workers[slot].pid == MyProcPid)
	{
		allma_shared->workers[slot].pid = 0;
		allma_shared->workers[slot].waiting_turn = false;
		allma_shared->workers[slot].state = ALLMA_WORKER_FREE;
	}
	SpinLockRelease(&allma_shared->mutex);
	allma_wake_launcher();

	/*
	 * What this worker held is free again once it is gone (its pass was
	 * rolled back): a sleeping worker takes over at once, instead of at its
	 * next naptime, while the launcher replaces this one.  If none sleeps,
	 * a busy one's latch is set: one that found nothing to claim only
	 * because this worker still held it, and is on its way to sleep, then
	 * claims again at once instead of sleeping through allma.naptime.
	 */
	allma_wake_workers(1, false);
}

/*
 * allma_shmem_worker_terminated: the worker of this slot is exiting because
 * it was asked to (SIGTERM: pg_terminate_backend, a shutdown), not because
 * it failed to start: the launcher may replace it at once even if it ran no
 * pass yet.  Called on the way out, before worker_detach.
 */
void
allma_shmem_worker_terminated(int slot)
{
	SpinLockAcquire(&allma_shared->mutex);
	if (allma_shared->workers[slot].pid == MyProcPid)
		allma_shared->workers[slot].served = true;
	SpinLockRelease(&allma_shared->mutex);
}

void
allma_shmem_register_worker(int slot, Oid dboid)
{
	Assert(slot >= 0 && slot < ALLMA_MAX_WORKERS);
	SpinLockAcquire(&allma_shared->mutex);
	allma_shared->workers[slot].pid = MyProcPid;
	allma_shared->workers[slot].procno = ALLMA_MY_PROCNO;
	allma_shared->workers[slot].dboid = dboid;
	allma_shared->workers[slot].state = ALLMA_WORKER_STARTING;
	allma_shared->workers[slot].steps_done = 0;
	allma_shared->workers[slot].served = false;
	allma_shared->workers[slot].sleeping = false;
	allma_shared->workers[slot].turn_since = 0;
	allma_shared->workers[slot].waiting_turn = false;
	SpinLockRelease(&allma_shared->mutex);
	before_shmem_exit(worker_detach, Int32GetDatum(slot));
}

void
allma_shmem_set_worker_state(int slot, AllmaWorkerState state, uint64 steps_run)
{
	SpinLockAcquire(&allma_shared->mutex);
	allma_shared->workers[slot].state = state;
	allma_shared->workers[slot].steps_done += steps_run;
	if (state == ALLMA_WORKER_IDLE || state == ALLMA_WORKER_BUSY)
		allma_shared->workers[slot].served = true;
	SpinLockRelease(&allma_shared->mutex);
}

/*
 * allma_shmem_worker_served: whether the last worker of the slot got as far
 * as running passes (so its exit was not a failure to start)
 */
bool
allma_shmem_worker_served(int slot)
{
	bool		served;

	SpinLockAcquire(&allma_shared->mutex);
	served = allma_shared->workers[slot].served;
	SpinLockRelease(&allma_shared->mutex);
	return served;
}

pid_t
allma_shmem_worker_pid(int slot)
{
	pid_t		pid;

	SpinLockAcquire(&allma_shared->mutex);
	pid = allma_shared->workers[slot].pid;
	SpinLockRelease(&allma_shared->mutex);
	return pid;
}

int
allma_shmem_list_workers(AllmaWorkerInfo *out)
{
	AllmaWorkerSlot slots[ALLMA_MAX_WORKERS];
	int			n = 0;

	SpinLockAcquire(&allma_shared->mutex);
	memcpy(slots, allma_shared->workers, sizeof(slots));
	SpinLockRelease(&allma_shared->mutex);

	for (int i = 0; i < ALLMA_MAX_WORKERS; i++)
	{
		if (slots[i].pid == 0)
			continue;
		out[n].slot = i;
		out[n].pid = slots[i].pid;
		out[n].dboid = slots[i].dboid;
		out[n].state = slots[i].state;
		out[n].steps_done = slots[i].steps_done;
		n++;
	}
	return n;
}

const char *
allma_worker_state_name(AllmaWorkerState state)
{
	switch (state)
	{
		case ALLMA_WORKER_FREE:
			return "free";
		case ALLMA_WORKER_STARTING:
			return "starting";
		case ALLMA_WORKER_IDLE:
			return "idle";
		case ALLMA_WORKER_WAITING_TURN:
			return "waiting for a turn";
		case ALLMA_WORKER_BUSY:
			return "busy";
		case ALLMA_WORKER_NO_EXTENSION:
			return "no extension";
		case ALLMA_WORKER_NEEDS_UPDATE:
			return "waiting for ALTER EXTENSION UPDATE";
		case ALLMA_WORKER_VERSION_MISMATCH:
			return "extension version mismatch";
	}
	return "unknown";
}

/* ----------------------------------------------------------------
 * DROP DATABASE guard
 * ----------------------------------------------------------------
 */

int
allma_shmem_pause_database(Oid dboid, TimestampTz until, pid_t *pids)
{
	int			n = 0;

	SpinLockAcquire(&allma_shared->mutex);
	for (int i = 0; i < ALLMA_MAX_WORKERS; i++)
	{
		if (allma_shared->workers[i].pid != 0 &&
			allma_shared->workers[i].dboid == dboid)
			pids[n++] = allma_shared->workers[i].pid;
	}
	if (n > 0)
	{
		allma_shared->drop_dboid = dboid;
		allma_shared->drop_until = until;
	}
	SpinLockRelease(&allma_shared->mutex);
	return n;
}

bool
allma_shmem_database_has_workers(Oid dboid)
{
	bool		any = false;

	SpinLockAcquire(&allma_shared->mutex);
	for (int i = 0; i < ALLMA_MAX_WORKERS; i++)
	{
		if (allma_shared->workers[i].pid != 0 &&
			allma_shared->workers[i].dboid == dboid)
			any = true;
	}
	SpinLockRelease(&allma_shared->mutex);
	return any;
}

bool
allma_shmem_database_paused(Oid dboid, TimestampTz now)
{
	bool		paused;

	SpinLockAcquire(&allma_shared->mutex);
	paused = OidIsValid(dboid) && allma_shared->drop_dboid == dboid &&
		now < allma_shared->drop_until;
	SpinLockRelease(&allma_shared->mutex);
	return paused;
}

/* ----------------------------------------------------------------
 * Schema-version gate notices
 * ----------------------------------------------------------------
 */

bool
allma_shmem_gate_notice(Oid dboid, const char *extversion)
{
	bool		first;

	SpinLockAcquire(&allma_shared->mutex);
	first = allma_shared->gate_dboid != dboid ||
		strncmp(allma_shared->gate_version, extversion, NAMEDATALEN) != 0;
	if (first)
	{
		allma_shared->gate_dboid = dboid;
		strlcpy(allma_shared->gate_version, extversion, NAMEDATALEN);
	}
	SpinLockRelease(&allma_shared->mutex);
	return first;
}

bool
allma_shmem_gate_open(Oid dboid)
{
	bool		was_closed;

	SpinLockAcquire(&allma_shared->mutex);
	was_closed = allma_shared->gate_dboid == dboid;
	if (was_closed)
	{
		allma_shared->gate_dboid = InvalidOid;
		allma_shared->gate_version[0] = '\0';
	}
	SpinLockRelease(&allma_shared->mutex);
	return was_closed;
}

/* ----------------------------------------------------------------
 * Wake-ups
 * ----------------------------------------------------------------
 */

/*
 * allma_wake_workers sets the latches of up to "wanted" running workers
 * (all of them when wanted <= 0), sleeping ones first, starting where the
 * last wake-up left off so that the work spreads over the workers.  Only as
 * many workers are woken as there is new work for: waking every worker on
 * every commit makes many workers slower than few (they all claim at once
 * and steal each other's CPU).  When fewer workers sleep than wanted, busy
 * ones are set too, unless sleepers_only: a busy worker whose latch is set
 * claims again right after its pass, so no wake-up is lost to a worker that
 * was just going to sleep.  A stale procno only causes a spurious wake-up
 * of some other process, which every latch user tolerates.
 */
void
allma_wake_workers(int wanted, bool sleepers_only)
{
	int			procnos[ALLMA_MAX_WORKERS];
	bool		chosen[ALLMA_MAX_WORKERS] = {false};
	int			n = 0;
	uint32		start;

	if (allma_shared == NULL)
		return;
	if (wanted <= 0)
		wanted = ALLMA_MAX_WORKERS;
	SpinLockAcquire(&allma_shared->mutex);
	start = allma_shared->wake_cursor++;
	for (int pass = 0; pass < 2 && n < wanted; pass++)
	{
		if (pass == 1 && sleepers_only)
			break;
		for (int k = 0; k < ALLMA_MAX_WORKERS && n < wanted; k++)
		{
			int			i = (start + k) % ALLMA_MAX_WORKERS;
			AllmaWorkerSlot *w = &allma_shared->workers[i];

			if (w->pid == 0 || chosen[i] || (pass == 0 && !w->sleeping))
				continue;
			chosen[i] = true;
			w->sleeping = false;	/* not chosen again before it wakes */
			procnos[n++] = w->procno;
		}
	}
	SpinLockRelease(&allma_shared->mutex);

	for (int i = 0; i < n; i++)
		SetLatch(ALLMA_PROC_LATCH(procnos[i]));
}

/* a worker marks the time it waits on its latch for work */
void
allma_shmem_set_sleeping(int slot, bool sleeping)
{
	SpinLockAcquire(&allma_shared->mutex);
	allma_shared->workers[slot].sleeping = sleeping;
	SpinLockRelease(&allma_shared->mutex);
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
		SetLatch(ALLMA_PROC_LATCH(procno));
}

/*
 * Turns: the most workers that run a pass at the same time.  On a machine
 * with few CPUs, thirty-two workers running passes at once are slower than
 * a few: they preempt each other while holding buffer and lock-manager
 * locks, and each claim skips the rows the others hold.  A worker takes a
 * turn before a claim pass and keeps it while its claims come back full
 * (handing turns around costs a process switch per pass, and thirty-two
 * processes taking turns run out of the CPU caches); it gives it back when
 * it goes to sleep, and when its pass starts user code, which may wait on
 * locks (that wakes a waiting worker).  The others wait on their latches.
 * A turn held longer than stall_ms no longer counts: its pass is waiting
 * on a lock (a user's transaction, say) rather than using a CPU, and must
 * not stop the other workers.  (Given back after the commit, not before:
 * passes committing while the next ones claimed left more rows locked for
 * every claim to step over.)
 *
 * allma_shmem_take_turn takes one for the slot if fewer than max_turns
 * fresh ones are held, or whatever the count if force (a worker with
 * requests in flight records their responses without waiting).  Otherwise
 * it marks the slot waiting, sets *wait_ms to the time until the oldest
 * turn turns stale, and returns false.
 */
bool
allma_shmem_take_turn(int slot, int max_turns, long stall_ms, bool force, long *wait_ms)
{
	TimestampTz now = GetCurrentTimestamp();
	TimestampTz oldest = 0;
	int			held = 0;
	bool		taken;

	SpinLockAcquire(&allma_shared->mutex);
	for (int i = 0; i < ALLMA_MAX_WORKERS && !force; i++)
	{
		AllmaWorkerSlot *w = &allma_shared->workers[i];

		if (i == slot || w->pid == 0 || w->turn_since == 0 ||
			TimestampDifferenceExceeds(w->turn_since, now, (int) stall_ms))
			continue;
		held++;
		if (oldest == 0 || w->turn_since < oldest)
			oldest = w->turn_since;
	}
	taken = force || held < max_turns;
	/*
	 * One that cannot take a turn holds none: a worker whose turn was still
	 * fresh (others took turns past the count: force, stale turns) must not
	 * be counted by the others while it waits.
	 */
	allma_shared->workers[slot].turn_since = taken ? now : 0;
	allma_shared->workers[slot].waiting_turn = !taken;
	SpinLockRelease(&allma_shared->mutex);

	if (!taken)
	{
		long		secs;
		int			usecs;

		TimestampDifference(now, TimestampTzPlusMilliseconds(oldest, stall_ms), &secs, &usecs);
		*wait_ms = Max(secs * 1000 + usecs / 1000, 1);
	}
	return taken;
}

/*
 * allma_shmem_wait_for_turn: a worker's turn to run a claim pass, or false
 * after waiting on its latch for one (its state then shows it).  The count
 * is allma.max_concurrent_passes, by default twice the CPUs; a turn is
 * stale after allma.pass_stall_timeout.
 */
bool
allma_shmem_wait_for_turn(int slot, bool force)
{
	static int	default_turns = 0;
	int			max_turns = allma_max_concurrent_passes;
	long		wait_ms;

	if (max_turns <= 0)
	{
		/* asked once: it reads a file under /sys */
		if (default_turns == 0)
			default_turns = 2 * (int) Max(sysconf(_SC_NPROCESSORS_ONLN), 1);
		max_turns = default_turns;
	}
	if (allma_shmem_take_turn(slot, max_turns, allma_pass_stall_ms, force, &wait_ms))
		return true;
	allma_shmem_set_worker_state(slot, ALLMA_WORKER_WAITING_TURN, 0);
	pgstat_report_activity(STATE_IDLE, "allma: waiting for a turn");
	(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
					 Min(wait_ms, allma_pass_stall_ms), PG_WAIT_EXTENSION);
	ResetLatch(MyLatch);
	return false;
}

/*
 * allma_shmem_end_turn gives the slot's turn back (if it holds one) and,
 * if wake, wakes one worker waiting for a turn: a pass that runs user code
 * leaves the CPU to another worker.  A worker going to sleep does not wake
 * one (it found nothing to do); waiters look again when the oldest turn
 * would turn stale, at the latest after stall_ms.
 */
void
allma_shmem_end_turn(int slot, bool wake)
{
	int			procno = -1;

	if (allma_shared == NULL || slot < 0)
		return;
	SpinLockAcquire(&allma_shared->mutex);
	if (allma_shared->workers[slot].turn_since != 0)
	{
		uint32		start = allma_shared->turn_cursor++;

		allma_shared->workers[slot].turn_since = 0;
		for (int k = 0; k < ALLMA_MAX_WORKERS && wake; k++)
		{
			AllmaWorkerSlot *w = &allma_shared->workers[(start + k) % ALLMA_MAX_WORKERS];

			if (w->pid != 0 && w->waiting_turn)
			{
				w->waiting_turn = false;
				procno = w->procno;
				break;
			}
		}
	}
	SpinLockRelease(&allma_shared->mutex);
	if (procno >= 0)
		SetLatch(ALLMA_PROC_LATCH(procno));
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

void
allma_terminal_wait_prepare(void)
{
	ConditionVariablePrepareToSleep(&allma_shared->terminal_cv);
}

/* sleeps until a terminal event is broadcast or timeout_ms pass */
void
allma_terminal_wait(long timeout_ms)
{
	(void) ConditionVariableTimedSleep(&allma_shared->terminal_cv, timeout_ms,
									   PG_WAIT_EXTENSION);
}

void
allma_terminal_wait_done(void)
{
	ConditionVariableCancelSleep();
}

static void
wake_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			if (lifecycle_at_commit && allma_shared != NULL)
			{
				pg_atomic_fetch_add_u64(&allma_shared->lifecycle_events, 1);
				allma_notify_terminal();
			}
			lifecycle_at_commit = false;
			if (wake_units > 0)
			{
				int			batch = Max(allma_batch_size, 1);

				/* a worker per batch of new work */
				allma_wake_workers(wake_units >= WAKE_ALL_UNITS ? 0 :
								   (wake_units + batch - 1) / batch, false);
			}
			wake_units = 0;
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			wake_units = 0;
			lifecycle_at_commit = false;
			break;
		default:
			break;
	}
}

/*
 * allma_request_wake_at_commit counts one unit of new work (an execution
 * started, a path made runnable) for the workers to be woken for when the
 * current transaction commits: one worker per allma.batch_size units.
 * allma_request_wake_all_at_commit wakes every worker (the extension was
 * created or updated).  The callback is registered once per backend.
 */
static void
register_wake_callback(void)
{
	if (!xact_callback_registered)
	{
		RegisterXactCallback(wake_xact_callback, NULL);
		xact_callback_registered = true;
	}
}

void
allma_request_wake_at_commit(void)
{
	register_wake_callback();
	if (wake_units < WAKE_ALL_UNITS)
		wake_units++;
}

void
allma_request_wake_all_at_commit(void)
{
	register_wake_callback();
	wake_units = WAKE_ALL_UNITS;
}

/*
 * allma_request_lifecycle_event_at_commit: executions were cancelled or
 * timed out by the current transaction.  When it commits, the lifecycle
 * counter is bumped (workers then drop the requests of executions that
 * ended), the workers are woken and allma_wait callers look again.
 */
void
allma_request_lifecycle_event_at_commit(void)
{
	/* every worker: each drops its own requests */
	allma_request_wake_all_at_commit();
	lifecycle_at_commit = true;
}

/* the lifecycle counter (0 before shared memory exists) */
uint64
allma_shmem_lifecycle_events(void)
{
	if (allma_shared == NULL)
		return 0;
	return pg_atomic_read_u64(&allma_shared->lifecycle_events);
}

/*
 * Listeners of allma_execution_events (listeners.c counts them): a session
 * adds itself before its LISTEN commits and takes itself away after its
 * UNLISTEN commits or when it exits.
 */
void
allma_shmem_count_listener(int delta)
{
	if (allma_shared == NULL)
		return;
	if (delta > 0)
		pg_atomic_fetch_add_u32(&allma_shared->event_listeners, delta);
	else
		pg_atomic_fetch_sub_u32(&allma_shared->event_listeners, -delta);
}

uint32
allma_shmem_listeners(void)
{
	if (allma_shared == NULL)
		return 1;				/* not known: as if somebody listened */
	pg_memory_barrier();
	return pg_atomic_read_u32(&allma_shared->event_listeners);
}

/* the workers' claim floor (see store.c); DT_NOBEGIN: claim from the start */
TimestampTz
allma_shmem_claim_floor(void)
{
	if (allma_shared == NULL)
		return DT_NOBEGIN;
	return (TimestampTz) pg_atomic_read_u64(&allma_shared->claim_floor);
}

void
allma_shmem_set_claim_floor(TimestampTz floor)
{
	if (allma_shared != NULL)
		pg_atomic_write_u64(&allma_shared->claim_floor, (uint64) floor);
}
