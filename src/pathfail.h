/*-------------------------------------------------------------------------
 *
 * pathfail.h
 *	  Engine faults: durable per-path failure counts and quarantine.
 *
 * IDENTIFICATION
 *	  src/pathfail.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ALLMA_PATHFAIL_H
#define ALLMA_PATHFAIL_H

#include "pathstate.h"

/* allma.max_path_failures */
extern int	allma_max_path_failures;

extern void allma_pathfail_define_gucs(void);
extern void allma_pathfail_reset(void);
extern bool allma_pathfail_is_systemic(int sqlerrcode);
extern void allma_pathfail_record(const pg_uuid_t *execution_id, int64 path_id,
								  const char *message);
extern bool allma_pathfail_quarantine(AllmaPathState *ps);
extern void allma_pathfail_forget(const pg_uuid_t *execution_id, int64 path_id);

#endif							/* ALLMA_PATHFAIL_H */
