/*-------------------------------------------------------------------------
 *
 * xactmemo.c
 *	  Per-transaction memos (see xactmemo.h): values read once per
 *	  transaction, dropped by transaction callbacks when it ends.
 *
 * Every memo that ever stored something is on a process-wide list; one
 * transaction callback and one subtransaction callback, registered with
 * the first memo, empty them all.  A memo's entries are a short list (a
 * transaction reads a handful of prompts or secrets) in its own small
 * memory context, which emptying resets.
 *
 * IDENTIFICATION
 *	  src/xactmemo.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "utils/memutils.h"

#include "xactmemo.h"

typedef struct XactMemoEntry
{
	struct XactMemoEntry *next;
	char	   *key;
	void	   *value;
} XactMemoEntry;

/* every memo that has been used, for the callbacks */
static AllmaXactMemo *all_memos = NULL;
static bool callbacks_registered = false;

void
allma_xactmemo_forget(AllmaXactMemo *memo)
{
	if (memo->entries == NULL)
		return;
	memo->entries = NULL;
	MemoryContextReset(memo->cxt);
}

static void
forget_all(void)
{
	for (AllmaXactMemo *m = all_memos; m != NULL; m = m->next_memo)
		allma_xactmemo_forget(m);
}

static void
memo_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			forget_all();
			break;
		default:
			break;
	}
}

static void
memo_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
					  SubTransactionId parentSubid, void *arg)
{
	if (event == SUBXACT_EVENT_ABORT_SUB)
		forget_all();
}

const void *
allma_xactmemo_get(AllmaXactMemo *memo, const char *key)
{
	if (!IsTransactionState())
		return NULL;
	for (XactMemoEntry *e = memo->entries; e != NULL; e = e->next)
	{
		if (strcmp(e->key, key) == 0)
			return e->value;
	}
	return NULL;
}

const void *
allma_xactmemo_put(AllmaXactMemo *memo, const char *key, const void *value,
				   Size size)
{
	XactMemoEntry *e;

	Assert(IsTransactionState());
	if (!callbacks_registered)
	{
		RegisterXactCallback(memo_xact_callback, NULL);
		RegisterSubXactCallback(memo_subxact_callback, NULL);
		callbacks_registered = true;
	}
	if (!memo->registered)
	{
		memo->cxt = AllocSetContextCreate(TopMemoryContext, "allma transaction memo",
										  ALLOCSET_SMALL_SIZES);
		MemoryContextSetIdentifier(memo->cxt, memo->name);
		memo->next_memo = all_memos;
		all_memos = memo;
		memo->registered = true;
	}
	e = MemoryContextAlloc(memo->cxt, sizeof(XactMemoEntry));
	e->key = MemoryContextStrdup(memo->cxt, key);
	e->value = MemoryContextAlloc(memo->cxt, size);
	memcpy(e->value, value, size);
	e->next = memo->entries;
	memo->entries = e;
	return e->value;
}
