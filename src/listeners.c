/*-------------------------------------------------------------------------
 *
 * listeners.c
 *	  NOTIFY allma_execution_events only while some session listens.
 *
 * PostgreSQL serializes the commits of the transactions that send a
 * NOTIFY: PreCommit_Notify takes one lock for the whole database and holds
 * it until the commit record is flushed.  Workers ending executions in
 * every pass queued on that lock one behind the other, each waiting for the
 * flush of the one before (29 of 32 workers in bench/scenarios/workers.sh),
 * so more workers meant fewer completions per second.  Workers therefore
 * send the notification only while some session listens on the channel.
 *
 * Counting: allma is preloaded, so its utility hook sees every session's
 * LISTEN, UNLISTEN and DISCARD ALL (allma_listeners_utility).  A session is
 * counted from its LISTEN allma_execution_events statement on, before that
 * commits, and uncounted once an UNLISTEN of the channel or of '*', or a
 * DISCARD ALL, commits, or when it exits.  Where it cannot be sure (a
 * subtransaction that rolled back an UNLISTEN) it stays counted: an extra
 * NOTIFY costs time, a missing one a wake-up.  LISTEN issued by C code that
 * calls Async_Listen directly is not seen (README, Guarantees).
 *
 * The race this leaves: a worker reads the count before it commits; a
 * session that LISTENs after that read and then reads the execution's status
 * before the worker's commit would wait for a notification that does not
 * come.  So a worker keeps the ids it did not notify until its pass has
 * committed and, if the count is no longer 0 by then, sends them in a
 * transaction of their own (allma_events_after_commit).  A session counted
 * before the read is notified in the pass's own transaction, as always.
 *
 * Outside the workers (allma_events_defer not called) every notification
 * is sent in the caller's transaction.
 *
 * IDENTIFICATION
 *	  src/listeners.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "commands/async.h"
#include "nodes/parsenodes.h"
#include "storage/ipc.h"
#include "utils/memutils.h"

#include "allma.h"
#include "listeners.h"
#include "shmem.h"

/* this session, as the shared count has it */
static bool counted = false;
/* what its last committed LISTEN/UNLISTEN left it */
static bool committed_listening = false;
/* a LISTEN or UNLISTEN of the current transaction: the state it wants */
static bool pending = false;
static bool pending_listening = false;
static bool callbacks_registered = false;

/* workers: the ids their pass ended without a NOTIFY */
static bool deferring = false;
static MemoryContext unsent_cxt = NULL;
static List *unsent = NIL;

static void
set_counted(bool listening)
{
	if (listening == counted)
		return;
	allma_shmem_count_listener(listening ? 1 : -1);
	counted = listening;
}

static void
listeners_at_exit(int code, Datum arg)
{
	set_counted(false);
}

static void
listeners_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			if (pending)
			{
				committed_listening = pending_listening;
				set_counted(pending_listening);
				pending = false;
			}
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			if (pending)
			{
				set_counted(committed_listening);
				pending = false;
			}
			/* the executions of a pass that rolled back did not end */
			if (unsent_cxt != NULL)
				MemoryContextReset(unsent_cxt);
			unsent = NIL;
			break;
		default:
			break;
	}
}

static void
listeners_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
						   SubTransactionId parentSubid, void *arg)
{
	/* an UNLISTEN that may have been rolled back: keep counting */
	if (event == SUBXACT_EVENT_ABORT_SUB && pending && !pending_listening && counted)
		pending_listening = true;
}

static void
register_callbacks(void)
{
	if (callbacks_registered)
		return;
	RegisterXactCallback(listeners_xact_callback, NULL);
	RegisterSubXactCallback(listeners_subxact_callback, NULL);
	before_shmem_exit(listeners_at_exit, (Datum) 0);
	callbacks_registered = true;
}

/*
 * allma_listeners_utility: called by allma's utility hook for every
 * utility statement, before it runs.
 */
void
allma_listeners_utility(Node *parsetree)
{
	bool		listen = false;
	bool		unlisten = false;

	if (IsA(parsetree, ListenStmt))
		listen = strcmp(((ListenStmt *) parsetree)->conditionname, ALLMA_NOTIFY_CHANNEL) == 0;
	else if (IsA(parsetree, UnlistenStmt))
	{
		const char *name = ((UnlistenStmt *) parsetree)->conditionname;

		unlisten = name == NULL || strcmp(name, ALLMA_NOTIFY_CHANNEL) == 0;
	}
	else if (IsA(parsetree, DiscardStmt))
		unlisten = ((DiscardStmt *) parsetree)->target == DISCARD_ALL;

	if (!listen && !unlisten)
		return;
	register_callbacks();
	pending = true;
	pending_listening = listen;
	/* counted before the LISTEN commits; uncounted only after the UNLISTEN */
	if (listen)
		set_counted(true);
}

/* allma_events_defer: this process (a worker) calls allma_events_after_commit */
void
allma_events_defer(void)
{
	register_callbacks();
	unsent_cxt = AllocSetContextCreate(TopMemoryContext, "allma unsent events",
									   ALLOCSET_SMALL_SIZES);
	deferring = true;
}

/*
 * allma_event_notify: NOTIFY allma_execution_events with the execution id,
 * in the current transaction if some session listens (or the caller is
 * not a worker); otherwise the id waits for allma_events_after_commit.
 */
void
allma_event_notify(const char *execution_id)
{
	MemoryContext old;

	if (!deferring || allma_shmem_listeners() > 0)
	{
		Async_Notify(ALLMA_NOTIFY_CHANNEL, execution_id);
		return;
	}
	old = MemoryContextSwitchTo(unsent_cxt);
	unsent = lappend(unsent, pstrdup(execution_id));
	MemoryContextSwitchTo(old);
}

/*
 * allma_events_after_commit: after a worker's pass committed, the ids it
 * did not notify are sent in a transaction of their own if a session began
 * to listen meanwhile, and forgotten otherwise.
 */
void
allma_events_after_commit(void)
{
	ListCell   *lc;

	if (unsent == NIL)
		return;
	if (allma_shmem_listeners() > 0)
	{
		StartTransactionCommand();
		foreach(lc, unsent)
			Async_Notify(ALLMA_NOTIFY_CHANNEL, (const char *) lfirst(lc));
		CommitTransactionCommand();
	}
	MemoryContextReset(unsent_cxt);
	unsent = NIL;
}
