/*-------------------------------------------------------------------------
 *
 * worker.h
 *	  The allma worker: the background process that claims runnable paths,
 *	  advances them and commits (worker.c).
 *
 * The launcher starts workers through allma_worker_describe, which fills
 * in the entry point and how the worker learns its slot and database, so
 * that this protocol lives in worker.c alone.
 *
 * IDENTIFICATION
 *	  src/worker.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ALLMA_WORKER_H
#define ALLMA_WORKER_H

#include "allma.h"

#include "postmaster/bgworker.h"

/*
 * allma_worker_describe fills *worker (zeroing it first) to start the worker
 * of shared slot "slot" in database dboid: library, entry point, names,
 * flags, start time and arguments.  The caller sets bgw_restart_time and
 * bgw_notify_pid.
 */
extern void allma_worker_describe(BackgroundWorker *worker, int slot, Oid dboid);

/* the worker's entry point (named in bgw_function_name) */
extern PGDLLEXPORT void allma_worker_main(Datum main_arg);
extern void allma_worker_give_back_turn(void);

#endif							/* ALLMA_WORKER_H */
