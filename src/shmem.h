/*-------------------------------------------------------------------------
 *
 * shmem.h
 *	  allma's shared memory: the table of worker processes and their states,
 *	  the launcher's and the workers' latches (to wake them when work is
 *	  committed), the DROP DATABASE guard, and the condition variable that
 *	  allma_wait sleeps on until executions reach a terminal status.
 *
 * The shared struct itself is private to shmem.c, which takes its lock;
 * the launcher, the workers and the SQL API go through the functions
 * below.
 *
 * IDENTIFICATION
 *	  src/shmem.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ALLMA_SHMEM_H
#define ALLMA_SHMEM_H

#include "allma.h"

#include "utils/timestamp.h"

/* what a worker slot is doing, as allma_worker_status() shows it */
typedef enum AllmaWorkerState
{
	ALLMA_WORKER_FREE = 0,
	ALLMA_WORKER_STARTING,
	ALLMA_WORKER_IDLE,
	ALLMA_WORKER_BUSY,
	ALLMA_WORKER_WAITING_TURN,	/* work to do, waiting for a turn (shmem.c) */
	ALLMA_WORKER_NO_EXTENSION,	/* allma is not installed in the database */
	ALLMA_WORKER_NEEDS_UPDATE,	/* installed at an older version than this
								 * library's: ALTER EXTENSION allma UPDATE */
	ALLMA_WORKER_VERSION_MISMATCH	/* installed at a version this library
									 * does not know (newer) */
} AllmaWorkerState;

/* a copy of one running worker's slot */
typedef struct AllmaWorkerInfo
{
	int			slot;
	pid_t		pid;
	Oid			dboid;
	AllmaWorkerState state;
	uint64		steps_done;
} AllmaWorkerInfo;

/* set up in _PG_init (postmaster) */
extern void allma_shmem_install_hooks(void);

/* the launcher publishes itself (cleared when it exits) */
extern void allma_shmem_register_launcher(void);

/*
 * a worker publishes itself in its slot (cleared when it exits, which also
 * wakes the launcher); then reports its state and the steps it ran
 */
extern void allma_shmem_register_worker(int slot, Oid dboid);
extern void allma_shmem_set_worker_state(int slot, AllmaWorkerState state,
										 uint64 steps_run);

/* the PID published in slot, 0 if none */
extern pid_t allma_shmem_worker_pid(int slot);

/* copies of the running workers' slots into out[ALLMA_MAX_WORKERS]; returns how many */
extern int	allma_shmem_list_workers(AllmaWorkerInfo *out);

/* the name of a state, as allma_worker_status() shows it */
extern const char *allma_worker_state_name(AllmaWorkerState state);
extern bool allma_shmem_worker_served(int slot);
extern void allma_shmem_worker_terminated(int slot);

/*
 * DROP DATABASE guard.  allma_shmem_pause_database collects the PIDs of the
 * workers connected to dboid into pids[ALLMA_MAX_WORKERS] and, if there
 * are any, keeps the launcher from starting workers there until "until";
 * returns how many.  allma_shmem_database_has_workers tells whether any
 * are still connected; allma_shmem_database_paused whether the launcher
 * must keep away from dboid at time now.
 */
extern int	allma_shmem_pause_database(Oid dboid, TimestampTz until, pid_t *pids);
extern bool allma_shmem_database_has_workers(Oid dboid);
extern bool allma_shmem_database_paused(Oid dboid, TimestampTz now);

/*
 * Schema-version gate notices: allma_shmem_gate_notice returns true for
 * the first worker that finds database dboid's extension at extversion
 * (which does not match the library) since the gate was last open there,
 * so that the advice is logged once, not by every worker on every pass;
 * allma_shmem_gate_open forgets it, returning true for the first worker
 * that finds the gate open again.
 */
extern bool allma_shmem_gate_notice(Oid dboid, const char *extversion);
extern bool allma_shmem_gate_open(Oid dboid);

/* wake-ups */
extern void allma_wake_workers(int wanted, bool sleepers_only);
extern void allma_shmem_set_sleeping(int slot, bool sleeping);
extern void allma_wake_launcher(void);
extern void allma_request_wake_at_commit(void);
extern void allma_request_wake_all_at_commit(void);

/* cancel and timeouts: see lifecycle.h */
extern void allma_request_lifecycle_event_at_commit(void);
extern uint64 allma_shmem_lifecycle_events(void);

/* turns: how many workers run a pass at once (see shmem.c) */
extern bool allma_shmem_take_turn(int slot, int max_turns, long stall_ms, bool force,
								  long *wait_ms);
extern void allma_shmem_end_turn(int slot, bool wake);
extern bool allma_shmem_wait_for_turn(int slot, bool force);

/* sessions listening on allma_execution_events (see listeners.c) */
extern void allma_shmem_count_listener(int delta);
extern uint32 allma_shmem_listeners(void);

/* the workers' shared claim floor (see store.c) */
extern TimestampTz allma_shmem_claim_floor(void);
extern void allma_shmem_set_claim_floor(TimestampTz floor);

/*
 * Terminal executions: workers call allma_notify_terminal after committing
 * some; allma_wait brackets its loop with allma_terminal_wait_prepare and
 * allma_terminal_wait_done and sleeps in allma_terminal_wait.
 */
extern void allma_notify_terminal(void);
extern void allma_terminal_wait_prepare(void);
extern void allma_terminal_wait(long timeout_ms);
extern void allma_terminal_wait_done(void);

#endif							/* ALLMA_SHMEM_H */
