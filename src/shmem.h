/*-------------------------------------------------------------------------
 *
 * shmem.h
 *	  allma's shared memory: the table of worker processes, their latches
 *	  (to wake them when work is committed), and a condition variable
 *	  broadcast whenever executions reach a terminal status.
 *
 * IDENTIFICATION
 *	  src/shmem.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ALLMA_SHMEM_H
#define ALLMA_SHMEM_H

#include "allma.h"

#include "port/atomics.h"
#include "storage/condition_variable.h"
#include "storage/spin.h"
#include "utils/timestamp.h"

typedef enum AllmaWorkerState
{
	ALLMA_WORKER_FREE = 0,
	ALLMA_WORKER_STARTING,
	ALLMA_WORKER_IDLE,
	ALLMA_WORKER_BUSY,
	ALLMA_WORKER_NO_EXTENSION
} AllmaWorkerState;

typedef struct AllmaWorkerSlot
{
	pid_t		pid;
	int			procno;			/* PGPROC number, for its latch */
	Oid			dboid;
	AllmaWorkerState state;
	uint64		steps_done;
} AllmaWorkerSlot;

typedef struct AllmaSharedState
{
	slock_t		mutex;			/* protects everything but the atomics/CV */
	pid_t		launcher_pid;
	int			launcher_procno;
	/* DROP DATABASE of the workers' database in progress: keep them away */
	Oid			drop_dboid;
	TimestampTz drop_until;
	AllmaWorkerSlot workers[ALLMA_MAX_WORKERS];
	pg_atomic_uint64 terminal_events;	/* bumped when executions end */
	ConditionVariable terminal_cv;
} AllmaSharedState;

extern AllmaSharedState *allma_shared;

extern void allma_shmem_install_hooks(void);
extern void allma_wake_workers(void);
extern void allma_wake_launcher(void);
extern void allma_notify_terminal(void);
extern void allma_request_wake_at_commit(void);

#endif							/* ALLMA_SHMEM_H */
