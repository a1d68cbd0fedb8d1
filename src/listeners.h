/*-------------------------------------------------------------------------
 *
 * listeners.h
 *	  NOTIFY allma_execution_events only while some session listens
 *	  (see listeners.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef ALLMA_LISTENERS_H
#define ALLMA_LISTENERS_H

#include "nodes/nodes.h"

extern void allma_listeners_utility(Node *parsetree);
extern void allma_events_defer(void);
extern void allma_event_notify(const char *execution_id);
extern void allma_events_after_commit(void);

#endif							/* ALLMA_LISTENERS_H */
