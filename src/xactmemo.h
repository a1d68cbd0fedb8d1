/*-------------------------------------------------------------------------
 *
 * xactmemo.h
 *	  Per-transaction memos: values read once per transaction and kept for
 *	  the rest of it (prompts, secrets: a worker pass renders the same
 *	  prompt and sends the same API key for many steps).
 *
 * Usage:
 *
 *	  static AllmaXactMemo memo = ALLMA_XACTMEMO_INIT("allma prompt memo");
 *
 *	  const Thing *t = allma_xactmemo_get(&memo, key);
 *	  if (t == NULL)
 *		  t = allma_xactmemo_put(&memo, key, &thing, sizeof(thing));
 *
 * A memo forgets everything when its transaction ends (commit, abort or
 * prepare) and when a subtransaction aborts, since what was read there may
 * have been its own, rolled-back, writes; a backend that changes what a
 * memo holds calls allma_xactmemo_forget.  Outside a transaction a memo
 * is always empty.  Values are copied in and out of its own memory
 * context, so callers may use what they pass and get freely.
 *
 * IDENTIFICATION
 *	  src/xactmemo.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ALLMA_XACTMEMO_H
#define ALLMA_XACTMEMO_H

#include "postgres.h"

struct XactMemoEntry;

typedef struct AllmaXactMemo
{
	const char *name;			/* identifies its memory context (a constant) */

	/* private to xactmemo.c */
	MemoryContext cxt;
	struct XactMemoEntry *entries;
	bool		registered;
	struct AllmaXactMemo *next_memo;
} AllmaXactMemo;

#define ALLMA_XACTMEMO_INIT(name) {(name), NULL, NULL, false, NULL}

/*
 * allma_xactmemo_get returns the value stored under key in this
 * transaction (in the memo's memory: do not change or free it, and copy
 * what must outlive the transaction), or NULL.
 */
extern const void *allma_xactmemo_get(AllmaXactMemo *memo, const char *key);

/*
 * allma_xactmemo_put stores a copy of size bytes at value under key, for
 * the rest of the current transaction, and returns the copy.  Needs a
 * transaction.
 */
extern const void *allma_xactmemo_put(AllmaXactMemo *memo, const char *key,
									  const void *value, Size size);

/* allma_xactmemo_forget drops everything the memo holds */
extern void allma_xactmemo_forget(AllmaXactMemo *memo);

#endif							/* ALLMA_XACTMEMO_H */
