/*-------------------------------------------------------------------------
 *
 * concurrency.h
 *	  Concurrency keys: at most N executions with the same key run at once;
 *	  the others wait QUEUED, in arrival order, and are admitted when one
 *	  of their key ends (defined in concurrency.c).
 *
 * IDENTIFICATION
 *	  src/concurrency.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ALLMA_CONCURRENCY_H
#define ALLMA_CONCURRENCY_H

#include "allma.h"

#include "utils/jsonb.h"
#include "utils/uuid.h"

/* SQLSTATEs: a bad concurrency key, a bad limit (LM34x) */
#define ERRCODE_ALLMA_INVALID_CONCURRENCY_KEY	MAKE_SQLSTATE('L','M','3','4','0')
#define ERRCODE_ALLMA_INVALID_CONCURRENCY_LIMIT	MAKE_SQLSTATE('L','M','3','4','1')

/* bounds of a key (bytes) and of a limit */
#define ALLMA_CONCURRENCY_KEY_MAX		256
#define ALLMA_CONCURRENCY_LIMIT_MAX		10000

/*
 * allma_concurrency_check_option validates the start option "key"
 * (concurrencyKey or maxConcurrent) alone; true when key is one of them.
 */
extern bool allma_concurrency_check_option(const char *key, Jsonb *value);

/* validates the flow's "concurrency" field (validate.c) */
struct AllmaChecker;
extern void allma_concurrency_check_definition(struct AllmaChecker *ck, JsonbContainer *flow);

/*
 * allma_concurrency_resolve: the key and limit of a new execution, from
 * its start options (concurrencyKey, maxConcurrent) over the flow's
 * "concurrency" ({keyTemplate, limit}, the template rendered against the
 * input).  false (and *key NULL) when it has no key; an error when a key
 * has no limit or either is invalid.
 */
extern bool allma_concurrency_resolve(Jsonb *definition, Jsonb *options, Jsonb *input,
									  char **key, int32 *limit);

/*
 * allma_concurrency_enqueue queues the new (QUEUED) execution under its
 * key with the main path it starts with; when the transaction commits,
 * the key's limit decides whether it starts at once (it does when a slot
 * is free and nothing waits before it).  SPI connected, as a role that may
 * write allma's tables.
 */
extern void allma_concurrency_enqueue(pg_uuid_t *execution_id, pg_uuid_t *root_execution_id,
									  const char *key, int32 limit, const char *step_id,
									  Jsonb *context, int64 delay_ms);

/*
 * allma_concurrency_release: n executions of the given keys ended (running
 * true: they held a slot; false: they were queued and leave the queue
 * now).  When the transaction commits, their keys' slots are counted again
 * and the next queued executions admitted, for all the keys the
 * transaction touched at once, slot rows locked in key order.  SPI
 * connected, as a role that may write allma's tables.
 */
extern void allma_concurrency_release(int n, pg_uuid_t *execution_ids, char **keys,
									  bool *running);

#endif							/* ALLMA_CONCURRENCY_H */
