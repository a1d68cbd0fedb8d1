/*-------------------------------------------------------------------------
 *
 * launcher.h
 *	  The allma launcher: the background process that keeps the workers
 *	  (worker.h) running.
 *
 * IDENTIFICATION
 *	  src/launcher.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ALLMA_LAUNCHER_H
#define ALLMA_LAUNCHER_H

#include "allma.h"

extern void allma_register_launcher(void);
extern void allma_workers_leave_database(Oid dboid);

/* the launcher's entry point (named in bgw_function_name) */
extern PGDLLEXPORT void allma_launcher_main(Datum main_arg);

#endif							/* ALLMA_LAUNCHER_H */
