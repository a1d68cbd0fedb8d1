/*-------------------------------------------------------------------------
 *
 * launcher.h
 *	  The allma launcher and worker background processes.
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

/* background worker entry points (named in bgw_function_name) */
extern PGDLLEXPORT void allma_launcher_main(Datum main_arg);
extern PGDLLEXPORT void allma_worker_main(Datum main_arg);

#endif							/* ALLMA_LAUNCHER_H */
