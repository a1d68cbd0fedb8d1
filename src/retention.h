/*-------------------------------------------------------------------------
 *
 * retention.h
 *	  Purging finished executions: allma.retention (worker 0, one small
 *	  transaction per batch) and allma_purge() for callers.
 *
 * IDENTIFICATION
 *	  src/retention.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ALLMA_RETENTION_H
#define ALLMA_RETENTION_H

#include "allma.h"

/* allma.retention (seconds, 0: keep everything), allma.purge_batch_size, allma.purge_interval (ms) */
extern int	allma_retention_s;
extern int	allma_purge_batch_size;
extern int	allma_purge_interval_ms;

/* defines the GUCs above (called by _PG_init's define_gucs) */
extern void allma_retention_define_gucs(void);

/*
 * allma_retention_purge_batch deletes one batch (allma.purge_batch_size) of
 * executions that finished more than allma.retention ago, with everything
 * keyed by their id (ON DELETE CASCADE).  For the worker: SPI connected,
 * inside the pass's transaction.  Returns how many executions it deleted.
 */
extern int64 allma_retention_purge_batch(void);

/*
 * When worker 0 (slot 0) purges: a pass is due every allma.purge_interval
 * after the last began, at once after a full batch.  purge_wait_ms is -1
 * for a worker that does not purge; purge_overdue says a due pass waited
 * long enough to go before other work.  started/finished frame each pass.
 */
extern int64 allma_retention_purge_wait_ms(int slot);
extern bool allma_retention_purge_due(int slot);
extern bool allma_retention_purge_overdue(int slot);
extern void allma_retention_purge_started(void);
extern void allma_retention_purge_finished(int64 npurged);

/* forgets the worker's saved plan (the extension was re-created) */
extern void allma_retention_reset(void);

#endif							/* ALLMA_RETENTION_H */
