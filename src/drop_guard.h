/*-------------------------------------------------------------------------
 *
 * drop_guard.h
 *	  DROP EXTENSION allma is refused while executions are running.
 *
 * IDENTIFICATION
 *	  src/drop_guard.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ALLMA_DROP_GUARD_H
#define ALLMA_DROP_GUARD_H

#include "nodes/nodes.h"

extern bool allma_allow_drop_with_running;

/* called by the utility hook before a statement runs; throws to refuse it */
extern void allma_drop_guard_check(Node *parsetree);

#endif							/* ALLMA_DROP_GUARD_H */
