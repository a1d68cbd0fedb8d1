/*-------------------------------------------------------------------------
 *
 * store.h
 *	  The worker's SQL: claiming runnable paths and writing back a batch.
 *
 * IDENTIFICATION
 *	  src/store.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ALLMA_STORE_H
#define ALLMA_STORE_H

#include "allma.h"

#include "executor/spi.h"
#include "nodes/pg_list.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

extern int	allma_store_owner_slot;

extern List *allma_store_claim_suspect(void);
extern List *allma_store_claim(int limit);
extern List *allma_store_claim_inflight(int n, pg_uuid_t *executions, int64 *path_ids,
										int32 *attempts, int32 *seqs);
extern int	allma_store_release_inflight(int slot);
extern int	allma_store_save(List *paths);
extern void allma_store_save_paths(List *paths);
extern int	allma_store_save_counts(List *paths, bool *woke);
extern TimestampTz allma_store_next_due(bool deadlines);
extern void allma_store_reset(void);

/*
 * allma_store_prepare makes a saved plan (SPI connected; the caller's
 * memory context stays current); throws when the statement does not
 * prepare
 */
extern SPIPlanPtr allma_store_prepare(const char *sql, int nargs, Oid *types);
/* the same, always generic, for a statement taking a batch of keys as arrays */
extern SPIPlanPtr allma_store_keyed_prepare(const char *sql, int nargs, Oid *types);

struct AllmaForkSpec;
extern void allma_store_insert_branches(pg_uuid_t *execution_id, int64 parent_path_id,
										struct AllmaForkSpec *spec);

/*
 * allma_store_release_due_waits makes up to "limit" parked paths whose
 * deadline passed READY (their waits TIMED_OUT); returns how many.  SPI
 * connected.
 */
extern int	allma_store_release_due_waits(int limit);

#endif							/* ALLMA_STORE_H */
