/*-------------------------------------------------------------------------
 *
 * worker.c
 *	  The allma worker: the loop that claims runnable paths, advances them
 *	  and commits.
 *
 * Each pass of the loop is one short transaction:
 *
 *	  claim up to allma.batch_size READY paths that are due (store.c, FOR
 *	  UPDATE SKIP LOCKED) -> run each one's steps (engine.c, chaining up to
 *	  allma.max_chain_steps steps that are due at once) -> write the whole
 *	  batch back with set-based statements (store.c) -> commit.
 *
 * So a step's effects, its history row and the path's new position commit
 * atomically, and many executions share one commit.  If the worker dies
 * before the commit, nothing of the batch happened and another pass runs
 * it again; once committed, a step never runs again.
 *
 * When a pass finds nothing to do the worker sleeps on its latch until the
 * earliest due time (durable timers: retry backoff, step delays), at most
 * allma.naptime.  allma_start_flow sets the latch when its transaction
 * commits, so new work starts within milliseconds.
 *
 * Responses to HTTP requests (sent after a pass committed, with no
 * transaction open) are recorded by a completion pass, another short
 * transaction of the same shape.  Both passes run inside one transaction
 * skeleton (run_pass_transaction): start a transaction, take a snapshot,
 * check the schema gate, connect SPI, run the pass's body, commit, then
 * finish the pass after the commit (send new requests, report, wake
 * allma_wait callers).
 *
 * Schema gate: the library may be newer than the extension's SQL objects
 * (binaries upgraded, ALTER EXTENSION allma UPDATE not run yet).  Every
 * pass first reads the installed version from pg_extension (one index
 * lookup, as cheap as looking up the extension's OID) and runs only when
 * it is ALLMA_SCHEMA_VERSION.  Otherwise the worker claims nothing, says
 * once in the log what to run, shows the state in allma_worker_status(),
 * and looks again every second (at once when an ALTER EXTENSION commits:
 * allma.c's utility hook wakes the workers).  If the extension is not
 * installed at all the worker idles likewise.
 *
 * Errors outside steps (which the engine catches itself) abort the pass;
 * the worker logs them, backs off for a second and carries on, instead of
 * exiting into a restart loop.
 *
 * Memory: the loop owns one batch context, reset after every pass.
 *
 * IDENTIFICATION
 *	  src/worker.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <ctype.h>
#include <sys/resource.h>

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/indexing.h"
#include "catalog/pg_type.h"
#include "catalog/pg_extension.h"
#include "commands/dbcommands.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/fd.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lmgr.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "compat.h"
#include "engine.h"
#include "flowcache.h"
#include "http.h"
#include "lifecycle.h"
#include "retention.h"
#include "passmark.h"
#include "pathfail.h"
#include "ratelimit.h"
#include "faultpoint.h"
#include "limit_gucs.h"
#include "retry.h"
#include "shmem.h"
#include "steps/completion.h"
#include "store.h"
#include "listeners.h"
#include "worker.h"
#include "worker_gate.h"
#include "http_limits.h"
#include "spicache.h"

static int	my_slot = -1;

/* how long a gated worker sleeps before it looks again, at most */
#define GATE_RECHECK_MS 1000

/* the HTTP client: long-lived, requests survive commits */
#define MAX_COMPLETIONS 512
#define LEASE_SWEEP_MS 10000
/* the most due waits one pass releases (see claim_pass_body) */
#define RELEASE_WAITS_PER_PASS 50000

typedef struct InflightTag
{
	pg_uuid_t	execution_id;
	int64		path_id;
	int32		attempt;
	int32		seq;			/* the path's history seq when it went INFLIGHT */
} InflightTag;

/* ----------------------------------------------------------------
 * Engine faults: which paths a failing pass held (docs/engine-faults.md)
 *
 * An error that aborts a whole pass cannot be pinned on a path.  So after
 * a claim pass of several paths fails, the next passes claim one path
 * each ("solo"), and after a completion pass of several responses fails,
 * the held responses are recorded one per pass.  A solo pass that fails is
 * its path's fault: counted durably (pathfail.c), and at
 * allma.max_path_failures the path is quarantined.
 * ----------------------------------------------------------------
 */
typedef enum PassKind
{
	PASS_NONE,
	PASS_CLAIM,
	PASS_COMPLETION,
	PASS_COMBINED				/* responses recorded in a claim pass */
} PassKind;

static PassKind running_pass = PASS_NONE;	/* the pass under way, if any */
static int	running_npaths = 0;	/* paths (responses) it holds */
static int	running_nclaimed = 0;	/* of those, claimed READY (combined) */
static pg_uuid_t running_execution; /* its path, when it holds one */
static int64 running_path_id;
static int	solo_claims = 0;	/* claim passes left to run with one path */
static bool failure_pending = false;	/* a solo pass failed: count it */
static pg_uuid_t failed_execution;
static int64 failed_path_id;
static char failed_message[512];

/*
 * The paths of the pass under way when this slot's previous process died
 * (passmark.c): their crash is counted (crashes_pending); from then on they
 * are claimed only alone, by any worker (allma_store_claim_suspect).
 */
static AllmaPassMarkEntry *recovered = NULL;
static int	recovered_n = 0;
static bool crashes_pending = false;

static AllmaHttpClient *http_client = NULL;
static MemoryContext http_cxt = NULL;
static WaitEventSet *wait_set = NULL;
static TimestampTz last_lease_sweep = 0;
/* execution deadlines are looked for this often (ms), see claim_pass_body */
#define TIMEOUT_CHECK_MS 50
static TimestampTz last_timeout_check = 0;
static bool timeouts_pending = false;
static bool released_own_inflight = false;
static bool submitting = false; /* in submit_requests (engine faults) */
static SPIPlanPtr doomed_plan = NULL;	/* requests whose path moved on */

/*
 * reset_caches throws away every cached plan and definition: the
 * extension's objects were dropped, created again or updated, or an error
 * may have left plans pointing at dropped objects.
 */
static void
reset_caches(void)
{
	allma_store_reset();
	if (doomed_plan != NULL)
		SPI_freeplan(doomed_plan);
	doomed_plan = NULL;
	allma_pathfail_reset();
	allma_passmark_reset();
	allma_retry_reset();
	allma_flowcache_reset();
	allma_retention_reset();
	allma_completion_reset();
	allma_ratelimit_reset();
	allma_spi_cache_reset();
}

static AllmaHttpClient *
get_http_client(void)
{
	AllmaHttpLimits limits;
	MemoryContext oldcxt;

	if (http_client != NULL)
		return http_client;
	if (http_cxt == NULL)
		http_cxt = AllocSetContextCreate(TopMemoryContext, "allma http",
										 ALLOCSET_DEFAULT_SIZES);
	allma_http_raise_fd_limit();
	allma_http_limits_from_gucs(&limits);
	allma_http_set_allowlist(allma_http_allowlist ? allma_http_allowlist : "");
	oldcxt = MemoryContextSwitchTo(http_cxt);
	http_client = allma_http_client_create(&limits);
	MemoryContextSwitchTo(oldcxt);
	return http_client;
}

static int
http_pending(void)
{
	if (http_client == NULL)
		return 0;
	return allma_http_in_flight(http_client);	/* queued ones included */
}

/*
 * submit_requests sends the requests of the paths that went INFLIGHT in a
 * pass.  Called after the pass committed, with no transaction open: the
 * INFLIGHT row is durable before anything is sent.
 */
static void
submit_requests(List *paths)
{
	ListCell   *lc;

	submitting = true;
	foreach(lc, paths)
	{
		AllmaPathState *ps = lfirst(lc);
		AllmaHttpRequest r;
		AllmaHttpClient *client;
		InflightTag *tag;

		if (!ps->inflight || ps->io_request == NULL)
			continue;
		client = get_http_client();
		tag = MemoryContextAlloc(http_cxt, sizeof(InflightTag));
		tag->execution_id = ps->execution_id;
		tag->path_id = ps->path_id;
		tag->attempt = ps->attempt;
		tag->seq = ps->seq;
		/* checked by the engine before the path went INFLIGHT */
		allma_engine_http_request(ps, &r);
		r.tag = tag;
		ALLMA_FAULT_POINT("before-http-send");
		allma_http_submit(client, &r);
		ALLMA_FAULT_POINT("after-http-send");
	}
	submitting = false;
}

/*
 * A worker pass: one short transaction run by run_pass_transaction.  The
 * body runs inside the transaction, with SPI connected and batch_cxt
 * current, and leaves the paths it advanced, how many of them ended their
 * execution and how many steps ran; "committed", when set, runs right
 * after the commit, before the pass is finished.
 */
typedef struct WorkerPass
{
	const char *activity;		/* shown in pg_stat_activity while it runs */
	void		(*body) (struct WorkerPass *pass);
	void		(*committed) (struct WorkerPass *pass);
	MemoryContext batch_cxt;

	/* set by the body */
	List	   *paths;
	int			nterminal;
	uint64		nsteps;
} WorkerPass;

/*
 * finish_pass finishes a pass once its transaction committed: sends the
 * requests of the paths that went INFLIGHT (the rows are durable first),
 * frees the pass's memory, reports, and wakes allma_wait callers.
 */
static void
finish_pass(WorkerPass *pass)
{
	MemoryContextSwitchTo(pass->batch_cxt);
	submit_requests(pass->paths);
	MemoryContextSwitchTo(TopMemoryContext);
	MemoryContextReset(pass->batch_cxt);
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
	if (pass->nterminal > 0)
		allma_notify_terminal();
	allma_shmem_set_worker_state(my_slot, ALLMA_WORKER_IDLE, pass->nsteps);
	/* last: a transaction of its own, if a session began to listen */
	allma_events_after_commit();
}

/*
 * run_pass_transaction is the skeleton of every pass: start a transaction
 * and take a snapshot, check the schema gate, connect SPI, run the body,
 * commit, then finish the pass.  When the gate is closed nothing else runs
 * and the gate is returned; ALLMA_GATE_OPEN once the pass committed.  An error
 * anywhere goes to the worker loop's error recovery, which aborts the
 * transaction.
 */
static AllmaSchemaGate
run_pass_transaction(WorkerPass *pass)
{
	AllmaSchemaGate	gate;

	pass->paths = NIL;
	pass->nterminal = 0;
	pass->nsteps = 0;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	gate = allma_worker_check_schema(reset_caches);
	if (gate != ALLMA_GATE_OPEN)
	{
		PopActiveSnapshot();
		CommitTransactionCommand();
		MemoryContextSwitchTo(TopMemoryContext);
		return gate;
	}

	SPI_connect();
	MemoryContextSwitchTo(pass->batch_cxt);
	pgstat_report_activity(STATE_RUNNING, pass->activity);
	pass->body(pass);
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	running_pass = PASS_NONE;
	allma_passmark_clear();

	if (pass->committed)
		pass->committed(pass);
	finish_pass(pass);
	return ALLMA_GATE_OPEN;
}

/*
 * note_running_pass: the pass under way holds these paths; if it fails,
 * pass_failed knows what to blame.
 */
static void
note_running_pass(PassKind kind, List *paths)
{
	running_pass = kind;
	running_npaths = list_length(paths);
	running_nclaimed = 0;
	/* on disk before any step runs: a crash from here on is blamed on them */
	allma_passmark_set(paths);
	if (running_npaths == 1)
	{
		AllmaPathState *ps = linitial(paths);

		running_execution = ps->execution_id;
		running_path_id = ps->path_id;
	}
}

static void held_responses_failed(void);

/*
 * pass_failed: called by the error recovery (TopMemoryContext current)
 * with the error that aborted a pass.  A pass of one path is that path's
 * fault (counted by the next loop turn, record_pending_failure); a pass of
 * several is run again one path at a time.  Errors that are no path's
 * fault (allma_pathfail_is_systemic) just retry.
 */
static void
pass_failed(ErrorData *edata)
{
	PassKind	kind = running_pass;

	running_pass = PASS_NONE;
	allma_passmark_clear();
	if (kind == PASS_NONE || running_npaths == 0 ||
		allma_pathfail_is_systemic(edata->sqlerrcode))
	{
		held_responses_failed();
		return;
	}
	if (kind == PASS_COMBINED)
	{
		/*
		 * Responses and new paths in one pass: nothing to pin the error on.
		 * The responses are recorded one per pass from now on, the claimed
		 * paths claimed one per pass, each in passes of their own kind,
		 * which count a failure against their path as usual.
		 */
		held_responses_failed();
		if (running_nclaimed > 0)
			solo_claims = running_nclaimed;
		return;
	}
	if (running_npaths == 1)
	{
		failure_pending = true;
		failed_execution = running_execution;
		failed_path_id = running_path_id;
		strlcpy(failed_message, edata->message ? edata->message : "unknown error",
				sizeof(failed_message));
		if (kind == PASS_CLAIM && solo_claims == 0)
			solo_claims = 1;
	}
	else if (kind == PASS_CLAIM)
		solo_claims = running_npaths;
	if (kind == PASS_COMPLETION)
		held_responses_failed();
}

/* record_pending_failure counts the failed solo pass in its own transaction */
static void
record_failure_body(WorkerPass *pass)
{
	allma_pathfail_record(&failed_execution, failed_path_id, failed_message);
}

/* record_crashes counts, in its own transaction, the crash of the dead pass */
static void
record_crashes_body(WorkerPass *pass)
{
	for (int i = 0; i < recovered_n; i++)
		allma_passmark_record_crash(&recovered[i], recovered_n == 1);
}

static void
record_crashes(MemoryContext batch_cxt)
{
	WorkerPass	pass;

	crashes_pending = false;
	memset(&pass, 0, sizeof(pass));
	pass.activity = "allma: counting a crashed pass";
	pass.body = record_crashes_body;
	pass.batch_cxt = batch_cxt;
	(void) run_pass_transaction(&pass);
}

static void
record_pending_failure(MemoryContext batch_cxt)
{
	WorkerPass	pass;

	failure_pending = false;
	memset(&pass, 0, sizeof(pass));
	pass.activity = "allma: counting a failed pass";
	pass.body = record_failure_body;
	pass.batch_cxt = batch_cxt;
	(void) run_pass_transaction(&pass);
}

/* ----------------------------------------------------------------
 * The claim pass: claim, advance, save
 * ----------------------------------------------------------------
 */

typedef struct ClaimPass
{
	WorkerPass	pass;			/* first */
	int			npaths;			/* paths claimed */
	bool		solo;			/* one path after a failed pass (engine faults) */
	bool		quarantined;	/* ... which was quarantined */
	bool		recovering;		/* ... of a dead worker's pass (passmark.c) */
	bool		deadlines_checked;	/* this pass looked for passed deadlines */
	TimestampTz next_due;		/* earliest future due time, when fewer than
								 * a full batch were claimed; 0: none */

	/*
	 * Responses to record in the same pass (run_combined_pass), unless the
	 * claim turned out solo; merged says they were.
	 */
	struct CompletionPass *merge;
	bool		merged;
} ClaimPass;

static bool recording_held;		/* defined with the held responses */
static List *claim_with_responses(struct CompletionPass *cp);
static void advance_with_responses(WorkerPass *pass, List *paths, bool *quarantined);

/*
 * read_as_of_claim: the steps of a pass read as of its claim, not as of the
 * pass's start.  The claim (a statement of its own) sees paths committed
 * after the pass began; the flows, secrets, prompts and grants those paths
 * use were committed before them, and read-only reads (which use the
 * active snapshot) must see them too.  Seen under load: a secret set just
 * before an execution started was "missing" for its step.
 */
static void
read_as_of_claim(void)
{
	PopActiveSnapshot();
	PushActiveSnapshot(GetTransactionSnapshot());
}

static void
claim_pass_body(WorkerPass *pass)
{
	ClaimPass  *cp = (ClaimPass *) pass;
	ListCell   *lc;
	bool		woke;
	bool		branches = false;
	List	   *responded = NIL;

	/*
	 * Requests in flight in this slot's previous process were lost with it:
	 * run their steps again.  Expired leases of other slots likewise.
	 */
	if (!released_own_inflight)
	{
		allma_store_release_inflight(my_slot);
		released_own_inflight = true;
	}
	if (TimestampDifferenceExceeds(last_lease_sweep, GetCurrentTimestamp(), LEASE_SWEEP_MS))
	{
		allma_store_release_inflight(-1);
		last_lease_sweep = GetCurrentTimestamp();
	}

	/*
	 * Executions past their deadline: TIMED_OUT (waiters told at commit);
	 * waits past their deadline: their steps fail with StepTimeoutError,
	 * all that are due in one statement (up to a bound: released a batch a
	 * pass, each pass walked the index entries the previous passes left
	 * behind, and 10,000 waits with one deadline took seconds).  Looked for
	 * every TIMEOUT_CHECK_MS, or at once again while a full batch came
	 * back: claim passes follow each other closely under load, and with the
	 * statistics of a table that just filled up the planner may read every
	 * running execution or path for them.
	 */
	cp->deadlines_checked = false;
	if (timeouts_pending ||
		TimestampDifferenceExceeds(last_timeout_check, GetCurrentTimestamp(), TIMEOUT_CHECK_MS))
	{
		cp->deadlines_checked = true;
		last_timeout_check = GetCurrentTimestamp();
		timeouts_pending = allma_lifecycle_time_out_executions(allma_batch_size) >= allma_batch_size;
		if (allma_store_release_due_waits(RELEASE_WAITS_PER_PASS) >= RELEASE_WAITS_PER_PASS)
			timeouts_pending = true;
	}
	/* steps parked on rate limits whose budget has come: READY at their slots */
	allma_ratelimit_pass();
	/* (SPI leaves its own context current: the claimed paths outlive it) */
	MemoryContextSwitchTo(pass->batch_cxt);
	/* a dead worker's paths first, alone (passmark.c) */
	pass->paths = allma_store_claim_suspect();
	MemoryContextSwitchTo(pass->batch_cxt);
	cp->recovering = pass->paths != NIL;
	if (pass->paths == NIL)
		pass->paths = allma_store_claim(solo_claims > 0 ? 1 : allma_batch_size);
	cp->npaths = list_length(pass->paths);
	MemoryContextSwitchTo(pass->batch_cxt);
	cp->solo = (solo_claims > 0 || cp->recovering) && cp->npaths == 1;

	/*
	 * Responses that arrived, recorded in this pass too (one commit for
	 * both), unless a path must run alone.
	 */
	if (cp->merge != NULL && !cp->solo && !cp->recovering)
	{
		recording_held = true;
		cp->merged = true;
		responded = claim_with_responses(cp->merge);
		MemoryContextSwitchTo(pass->batch_cxt);
	}
	if (cp->npaths > 0 || responded != NIL)
		read_as_of_claim();
	if (cp->merged)
	{
		note_running_pass(PASS_COMBINED, list_concat_copy(pass->paths, responded));
		running_nclaimed = cp->npaths;
	}
	else
		note_running_pass(PASS_CLAIM, pass->paths);
	if (cp->npaths > 0)
		ALLMA_FAULT_POINT("after-claim");
	if (cp->npaths == 0)
		solo_claims = 0;

	if (cp->npaths > 0)
	{
		allma_shmem_set_worker_state(my_slot, ALLMA_WORKER_BUSY, 0);
		pgstat_report_activity(STATE_RUNNING, "allma: running steps");
		foreach(lc, pass->paths)
		{
			AllmaPathState *ps = lfirst(lc);

			if (cp->solo && allma_pathfail_quarantine(ps))
				cp->quarantined = true; /* failed: saved as such */
			else if (!ps->ended)
				allma_engine_advance_guarded(ps, allma_max_chain_steps);
			pass->nsteps += ps->steps_run;
		}
	}
	if (responded != NIL)
	{
		bool		quarantined = false;

		advance_with_responses(pass, responded, &quarantined);
		pass->paths = list_concat(pass->paths, responded);
	}
	/*
	 * A pass that finished fork branches reads the next due time between
	 * the two halves of the save: after the paths are written, before the
	 * statements whose row locks (the fork's counters, the execution's row)
	 * the other workers running the fork's branches wait for until this pass
	 * commits.  What the second half makes due (a joining parent, released
	 * branches, a sync parent or queued executions of an execution that
	 * ended) is then due now.  Other passes save first, as always.
	 */
	foreach(lc, pass->paths)
	{
		AllmaPathState *ps = lfirst(lc);

		if (ps->ended && ps->is_branch)
			branches = true;
	}
	if (branches)
	{
		allma_store_save_paths(pass->paths);
		if (cp->npaths < allma_batch_size)
			cp->next_due = allma_store_next_due(cp->deadlines_checked);
		pass->nterminal = allma_store_save_counts(pass->paths, &woke);
		if ((woke || pass->nterminal > 0) && cp->npaths < allma_batch_size)
			cp->next_due = GetCurrentTimestamp();
	}
	else
	{
		pass->nterminal = allma_store_save(pass->paths);
		if (cp->npaths < allma_batch_size)
			cp->next_due = allma_store_next_due(cp->deadlines_checked);
	}
	if (cp->solo && !cp->quarantined)
	{
		AllmaPathState *ps = linitial(pass->paths);

		allma_pathfail_forget(&ps->execution_id, ps->path_id);
	}
	if (cp->npaths > 0)
		ALLMA_FAULT_POINT("before-claim-commit");
}

/* a solo pass that committed: one path fewer to run alone */
static void
claim_pass_committed(WorkerPass *pass)
{
	if (((ClaimPass *) pass)->solo && !((ClaimPass *) pass)->recovering && solo_claims > 0)
		solo_claims--;
}

/*
 * run_claim_pass runs one claim pass.  Returns the number of paths it
 * advanced; *next_due gets the earliest future due time when it found less
 * than a full batch.  *gate says whether the schema gate let it run.
 */
static int
run_claim_pass(MemoryContext batch_cxt, TimestampTz *next_due, AllmaSchemaGate *gate)
{
	ClaimPass	cp;

	memset(&cp, 0, sizeof(cp));
	cp.pass.activity = "allma: claiming paths";
	cp.pass.body = claim_pass_body;
	cp.pass.committed = claim_pass_committed;
	cp.pass.batch_cxt = batch_cxt;
	*gate = run_pass_transaction(&cp.pass);
	*next_due = cp.next_due;
	return cp.npaths;
}

/* ----------------------------------------------------------------
 * The completion pass: record the responses that arrived
 * ----------------------------------------------------------------
 */

/*
 * Responses taken from the HTTP client and not recorded yet.  A completion
 * pass that fails (a cancel, a deadlock, a full disk, a response that
 * cannot be recorded) leaves them here for the next pass instead of losing
 * them, which would leave their steps INFLIGHT until their leases expire
 * and send their requests again.  After a failure they are recorded one
 * per pass ("solo", held_next the next one): a response whose solo pass
 * fails is its path's fault, counted, and at allma.max_path_failures its
 * path is quarantined (engine faults) -- never sent again.
 */
static MemoryContext held_cxt = NULL;
static AllmaHttpCompletion *held = NULL;
static int	held_count = 0;
static int	held_next = 0;
static bool held_solo = false;
static int	held_attempts = 0;	/* failed solo passes of held[held_next] */
static bool recording_held = false;

/* forget_held_responses: they were recorded (or given up on) */
static void
forget_held_responses(void)
{
	for (int i = held_next; i < held_count; i++)
		pfree(held[i].tag);
	held = NULL;
	held_count = 0;
	held_next = 0;
	held_solo = false;
	held_attempts = 0;
	recording_held = false;
	if (held_cxt != NULL)
		MemoryContextReset(held_cxt);
}

/*
 * held_responses_failed: called by the error recovery; the pass that was
 * recording the held responses failed.
 */
static void
held_responses_failed(void)
{
	if (!recording_held)
		return;
	recording_held = false;
	if (!held_solo)
	{
		ereport(LOG,
				(errmsg("allma will record %d responses again, one at a time",
						held_count - held_next)));
		held_solo = true;
		return;
	}
	if (++held_attempts <= allma_max_path_failures)
		return;

	/*
	 * Its path could not even be quarantined (the failing write is the
	 * path's own row): holding the response longer would stop this worker
	 * from recording any other.
	 */
	ereport(LOG,
			(errmsg("allma gives up recording a response after %d failed attempts: its path could not be quarantined either",
					held_attempts + 1),
			 errdetail("Its step runs again when its lease expires.")));
	pfree(held[held_next].tag);
	held_next++;
	held_attempts = 0;
	if (held_next >= held_count)
		forget_held_responses();
}

typedef struct CompletionPass
{
	WorkerPass	pass;			/* first */
	AllmaHttpCompletion *done;	/* the held responses */
	int			n;
	pg_uuid_t  *executions;		/* their tags, unpacked */
	int64	   *path_ids;
	int32	   *attempts;
	int32	   *seqs;
} CompletionPass;

/*
 * claim_with_responses locks the INFLIGHT paths the held responses cp->done
 * answer and gives each its response (a late response matches no path).
 * In the caller's context (SPI may leave its own current).
 */
static List *
claim_with_responses(CompletionPass *cp)
{
	MemoryContext cxt = CurrentMemoryContext;
	List	   *paths;
	ListCell   *lc;
	int			next = 0;

	paths = allma_store_claim_inflight(cp->n, cp->executions, cp->path_ids,
									   cp->attempts, cp->seqs);
	MemoryContextSwitchTo(cxt);
	foreach(lc, paths)
	{
		AllmaPathState *ps = lfirst(lc);

		/* usually in the order of the keys: look from the last match on */
		for (int k = 0; k < cp->n; k++)
		{
			int			i = (next + k) % cp->n;

			if (cp->path_ids[i] == ps->path_id && cp->attempts[i] == ps->attempt &&
				cp->seqs[i] == ps->seq &&
				memcmp(&cp->executions[i], &ps->execution_id, sizeof(pg_uuid_t)) == 0)
			{
				ps->response = &cp->done[i];
				next = i + 1;
				break;
			}
		}
	}
	return paths;
}

/* advance_with_responses completes the steps of paths from their responses */
static void
advance_with_responses(WorkerPass *pass, List *paths, bool *quarantined)
{
	ListCell   *lc;

	foreach(lc, paths)
	{
		AllmaPathState *ps = lfirst(lc);

		if (held_solo && allma_pathfail_quarantine(ps))
			*quarantined = true;	/* failed: saved as such, never sent again */
		else if (!ps->ended && ps->response != NULL)
			allma_engine_advance_guarded(ps, allma_max_chain_steps);
		pass->nsteps += ps->steps_run;
	}
}

static void
completion_pass_body(WorkerPass *pass)
{
	CompletionPass *cp = (CompletionPass *) pass;
	bool		quarantined = false;

	pass->paths = claim_with_responses(cp);
	if (pass->paths != NIL)
		read_as_of_claim();
	note_running_pass(PASS_COMPLETION, pass->paths);
	advance_with_responses(pass, pass->paths, &quarantined);
	pass->nterminal = allma_store_save(pass->paths);
	if (held_solo && !quarantined && list_length(pass->paths) == 1)
	{
		AllmaPathState *ps = linitial(pass->paths);

		allma_pathfail_forget(&ps->execution_id, ps->path_id);
	}
}

/* recorded: whatever happens from here on does not concern them */
static void
completion_pass_committed(WorkerPass *pass)
{
	CompletionPass *cp = (CompletionPass *) pass;

	if (held_solo && held_next + cp->n < held_count)
	{
		/* one down, the next one in the next pass */
		pfree(held[held_next].tag);
		held_next += cp->n;
		held_attempts = 0;
		recording_held = false;
		return;
	}
	forget_held_responses();
}

/*
 * run_completion_pass takes the responses that have arrived and, in one
 * short transaction, completes the steps waiting for them.  Returns how
 * many responses it handled.
 */
/*
 * take_responses: the responses held (not recorded yet), after taking
 * those that arrived from the HTTP client when none were held.
 */
static int
take_responses(void)
{
	AllmaHttpCompletion *done;
	int			n;

	if (held_count > 0)
		return held_count - held_next;
	if (http_pending() == 0)
		return 0;

	/*
	 * The responses live in their own context until the pass that records
	 * them commits: if it fails, they are recorded by the next one.
	 */
	if (held_cxt == NULL)
		held_cxt = AllocSetContextCreate(TopMemoryContext, "allma held responses",
										 ALLOCSET_DEFAULT_SIZES);
	MemoryContextSwitchTo(held_cxt);
	done = palloc(sizeof(AllmaHttpCompletion) * MAX_COMPLETIONS);
	n = allma_http_poll(http_client, 0, done, MAX_COMPLETIONS);
	MemoryContextSwitchTo(TopMemoryContext);
	if (n == 0)
	{
		MemoryContextReset(held_cxt);
		return 0;
	}
	held = done;
	held_count = n;
	return n;
}

/*
 * prepare_completion sets cp up to record the held responses (one when
 * they are recorded one at a time); returns how many.
 */
static int
prepare_completion(CompletionPass *cp, MemoryContext batch_cxt)
{
	int			n = held_solo ? 1 : held_count - held_next;

	recording_held = true;
	memset(cp, 0, sizeof(*cp));
	cp->pass.activity = "allma: recording responses";
	cp->pass.body = completion_pass_body;
	cp->pass.committed = completion_pass_committed;
	cp->pass.batch_cxt = batch_cxt;
	cp->done = held + held_next;
	cp->n = n;
	cp->executions = MemoryContextAlloc(batch_cxt, sizeof(pg_uuid_t) * n);
	cp->path_ids = MemoryContextAlloc(batch_cxt, sizeof(int64) * n);
	cp->attempts = MemoryContextAlloc(batch_cxt, sizeof(int32) * n);
	cp->seqs = MemoryContextAlloc(batch_cxt, sizeof(int32) * n);
	for (int i = 0; i < n; i++)
	{
		InflightTag *tag = cp->done[i].tag;

		cp->executions[i] = tag->execution_id;
		cp->path_ids[i] = tag->path_id;
		cp->attempts[i] = tag->attempt;
		cp->seqs[i] = tag->seq;
	}
	return n;
}

static int
run_completion_pass(MemoryContext batch_cxt)
{
	CompletionPass cp;
	int			n;

	if (take_responses() == 0)
		return 0;
	n = prepare_completion(&cp, batch_cxt);

	if (run_pass_transaction(&cp.pass) != ALLMA_GATE_OPEN)
	{
		/*
		 * The extension is gone (or at another version): its rows cannot be
		 * completed here.  Their steps run again when their leases expire.
		 */
		forget_held_responses();
		MemoryContextReset(batch_cxt);
	}
	return n;
}

/* a combined pass that committed: its responses are recorded */
static void
combined_pass_committed(WorkerPass *pass)
{
	claim_pass_committed(pass);
	if (((ClaimPass *) pass)->merged)
		forget_held_responses();
}

/*
 * run_combined_pass records the held responses in a claim pass: one
 * transaction and one commit instead of two (under a steady stream of
 * responses every turn of the loop has both).  A claim that must run alone
 * (a solo or a dead worker's path) leaves the responses held for the next
 * completion pass.  Returns the paths claimed; *ncompleted: the responses
 * recorded.
 */
static int
run_combined_pass(MemoryContext batch_cxt, TimestampTz *next_due, AllmaSchemaGate *gate,
				  int *ncompleted)
{
	ClaimPass	cp;
	CompletionPass resp;

	*ncompleted = prepare_completion(&resp, batch_cxt);
	recording_held = false;		/* set once the claim pass takes them */
	memset(&cp, 0, sizeof(cp));
	cp.pass.activity = "allma: claiming paths and recording responses";
	cp.pass.body = claim_pass_body;
	cp.pass.committed = combined_pass_committed;
	cp.pass.batch_cxt = batch_cxt;
	cp.merge = &resp;
	*gate = run_pass_transaction(&cp.pass);
	if (*gate != ALLMA_GATE_OPEN)
	{
		/* as in run_completion_pass: their steps run again after the lease */
		forget_held_responses();
		MemoryContextReset(batch_cxt);
		*ncompleted = 0;
	}
	else if (!cp.merged)
	{
		recording_held = false;
		*ncompleted = 0;
	}
	*next_due = cp.next_due;
	return cp.npaths;
}

/* ----------------------------------------------------------------
 * The abort pass: drop the requests of executions that ended
 * ----------------------------------------------------------------
 */

/* the lifecycle counter (shmem.c) when the last abort pass looked */
static uint64 seen_lifecycle_events = 0;

typedef struct AbortPass
{
	WorkerPass	pass;			/* first */
	List	   *tags;			/* InflightTag * of every request */
	bool	   *doomed;			/* per tag, in list order */
	int			cursor;			/* where tag_doomed expects the next tag */
	int			naborted;
} AbortPass;

static bool
collect_tag(void *tag, void *arg)
{
	AbortPass  *ap = arg;

	ap->tags = lappend(ap->tags, tag);
	return false;
}

static bool
tag_doomed(void *tag, void *arg)
{
	AbortPass  *ap = arg;
	int			n = list_length(ap->tags);
	int			i = ap->cursor;

	/* the client is walked in the same order as by collect_tag */
	if (i >= n || list_nth(ap->tags, i) != tag)
	{
		for (i = 0; i < n && list_nth(ap->tags, i) != tag; i++)
			;
		if (i == n)
			return false;
	}
	ap->cursor = i + 1;
	if (!ap->doomed[i])
		return false;
	pfree(tag);
	return true;
}

/*
 * abort_pass_body: which of this worker's requests belong to paths that
 * are gone or to executions that are no longer RUNNING (cancelled, timed
 * out)?  Those are dropped from the HTTP client, and the paths of ended
 * executions deleted; a response that was already taken is discarded by
 * the completion pass, which finds no INFLIGHT row for it.
 */
static void
abort_pass_body(WorkerPass *pass)
{
	AbortPass  *ap = (AbortPass *) pass;
	int			n;
	Datum	   *e;
	Datum	   *p;
	Datum	   *a;
	Datum		args[3];
	Oid			types[3] = {UUIDARRAYOID, INT8ARRAYOID, INT4ARRAYOID};
	ListCell   *lc;
	int			i = 0;
	pg_uuid_t  *dead;
	int			ndead = 0;

	(void) allma_http_abort(http_client, collect_tag, ap);
	n = list_length(ap->tags);
	if (n == 0)
		return;
	e = palloc(sizeof(Datum) * n);
	p = palloc(sizeof(Datum) * n);
	a = palloc(sizeof(Datum) * n);
	foreach(lc, ap->tags)
	{
		InflightTag *tag = lfirst(lc);

		e[i] = UUIDPGetDatum(&tag->execution_id);
		p[i] = Int64GetDatum(tag->path_id);
		a[i] = Int32GetDatum(tag->attempt);
		i++;
	}
	args[0] = PointerGetDatum(construct_array(e, n, UUIDOID, UUID_LEN, false, TYPALIGN_CHAR));
	args[1] = PointerGetDatum(construct_array(p, n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	args[2] = PointerGetDatum(construct_array(a, n, INT4OID, 4, true, TYPALIGN_INT));
	if (doomed_plan == NULL)
		doomed_plan = allma_store_keyed_prepare("SELECT u.i::int4 FROM unnest($1, $2, $3) WITH ORDINALITY AS u(e, p, a, i) "
												"WHERE NOT EXISTS (SELECT FROM allma.execution_paths x "
												"  JOIN allma.executions y ON y.execution_id = x.execution_id "
												"  WHERE x.execution_id = u.e AND x.path_id = u.p AND x.attempt = u.a "
												"    AND x.execution_id = ANY ($1) AND x.path_id = ANY ($2) "
												"    AND x.status = 'INFLIGHT' AND y.status = 'RUNNING')",
												3, types);
	if (SPI_execute_plan(doomed_plan, args, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "allma: could not look up requests in flight");
	MemoryContextSwitchTo(pass->batch_cxt);
	ap->doomed = palloc0(sizeof(bool) * n);
	dead = palloc(sizeof(pg_uuid_t) * Max(SPI_processed, 1));
	for (uint64 r = 0; r < SPI_processed; r++)
	{
		bool		isnull;
		int			k = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[r],
													SPI_tuptable->tupdesc, 1, &isnull)) - 1;
		InflightTag *tag = list_nth(ap->tags, k);

		ap->doomed[k] = true;
		dead[ndead++] = tag->execution_id;
	}
	if (ndead == 0)
		return;
	allma_lifecycle_drop_paths(ndead, dead);
	MemoryContextSwitchTo(pass->batch_cxt);
	ap->naborted = allma_http_abort(http_client, tag_doomed, ap);
}

/*
 * run_abort_pass: executions were cancelled or timed out since the last
 * look; drop this worker's requests that belong to them.
 */
static void
run_abort_pass(MemoryContext batch_cxt)
{
	AbortPass	ap;
	uint64		events = allma_shmem_lifecycle_events();

	if (events == seen_lifecycle_events)
		return;
	seen_lifecycle_events = events;
	if (http_pending() == 0)
		return;

	memset(&ap, 0, sizeof(ap));
	ap.pass.activity = "allma: dropping requests of ended executions";
	ap.pass.body = abort_pass_body;
	ap.pass.batch_cxt = batch_cxt;
	(void) run_pass_transaction(&ap.pass);
	if (ap.naborted > 0)
		ereport(LOG,
				(errmsg("allma dropped %d request%s of cancelled or timed-out executions",
						ap.naborted, ap.naborted == 1 ? "" : "s")));
}

/* ----------------------------------------------------------------
 * The purge pass (worker 0 only): one batch of allma.retention
 * ----------------------------------------------------------------
 */

typedef struct PurgePass
{
	WorkerPass	pass;			/* first */
	int64		npurged;
} PurgePass;

static void
purge_pass_body(WorkerPass *pass)
{
	((PurgePass *) pass)->npurged = allma_retention_purge_batch();
}

/*
 * run_purge_pass: worker 0 deletes one batch of expired executions (see
 * retention.c).  Each batch is its own short transaction, between the
 * worker's other passes.  Called when a pass is due (allma_retention_purge_due).
 */
static void
run_purge_pass(MemoryContext batch_cxt)
{
	PurgePass	pp;

	allma_retention_purge_started();
	memset(&pp, 0, sizeof(pp));
	pp.pass.activity = "allma: purging expired executions";
	pp.pass.body = purge_pass_body;
	pp.pass.batch_cxt = batch_cxt;
	if (run_pass_transaction(&pp.pass) == ALLMA_GATE_OPEN)
		allma_retention_purge_finished(pp.npurged);
}

/*
 * wait_for_work sleeps until the latch is set, a response arrives, or
 * timeout_ms passes.
 */
static void
wait_for_work(long timeout_ms)
{
	WaitEvent	event;

	if (http_client == NULL)
	{
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 timeout_ms, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		return;
	}
	if (wait_set == NULL)
	{
		wait_set = allma_create_session_wait_set(3);
		AddWaitEventToSet(wait_set, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
		AddWaitEventToSet(wait_set, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
		AddWaitEventToSet(wait_set, WL_SOCKET_READABLE, allma_http_wait_fd(http_client),
						  NULL, NULL);
	}
	if (http_pending() > 0)
	{
		long		curl_timeout = allma_http_next_timeout(http_client);

		if (curl_timeout >= 0 && curl_timeout < timeout_ms)
			timeout_ms = curl_timeout;
	}
	if (WaitEventSetWait(wait_set, timeout_ms, &event, 1, PG_WAIT_EXTENSION) > 0 &&
		(event.events & WL_LATCH_SET))
		ResetLatch(MyLatch);
}

/*
 * take_turn: a turn to run a claim pass (shmem.c), or false after waiting
 * on the latch for one.  A worker with requests in flight takes one
 * whatever the count: its responses are recorded by nobody else.
 */
static bool
take_turn(void)
{
	return allma_shmem_wait_for_turn(my_slot, held_count > 0 || http_pending() > 0);
}

/*
 * allma_worker_give_back_turn: the pass under way runs user code (a SQL
 * step, a bound function), which may wait on locks for long: its turn goes
 * to a waiting worker.  Nothing outside a worker.
 */
void
allma_worker_give_back_turn(void)
{
	if (my_slot >= 0)
		allma_shmem_end_turn(my_slot, true);
}

static void
worker_loop(void)
{
	MemoryContext batch_cxt = AllocSetContextCreate(TopMemoryContext,
													"allma worker batch",
													ALLOCSET_DEFAULT_SIZES);
	sigjmp_buf	local_sigjmp_buf;
	bool		backoff = false;

	/*
	 * Error recovery: an error outside the engine's own subtransactions
	 * aborts the pass; log it, clean up and retry after a pause.
	 */
	if (sigsetjmp(local_sigjmp_buf, 1) != 0)
	{
		ErrorData  *edata;

		/* the callbacks that were on the stack belong to frames now gone */
		error_context_stack = NULL;
		HOLD_INTERRUPTS();
		EmitErrorReport();
		MemoryContextSwitchTo(TopMemoryContext);
		edata = CopyErrorData();
		AbortCurrentTransaction();
		allma_shmem_end_turn(my_slot, true);
		MemoryContextSwitchTo(TopMemoryContext);
		FlushErrorState();
		MemoryContextReset(batch_cxt);
		pass_failed(edata);
		FreeErrorData(edata);

		/*
		 * An error while sending a committed pass's requests: which went out
		 * is not known.  Run every INFLIGHT step of this worker again (they
		 * resend with the same Idempotency-Key), as after a restart, instead
		 * of leaving the unsent ones until their leases expire.
		 */
		if (submitting)
		{
			submitting = false;
			released_own_inflight = false;
		}
		/* plans may point at dropped objects */
		reset_caches();
		allma_worker_gate_forget();
		RESUME_INTERRUPTS();
		backoff = true;
	}
	PG_exception_stack = &local_sigjmp_buf;

	for (;;)
	{
		TimestampTz next_due = 0;
		AllmaSchemaGate	gate;
		long		timeout_ms;
		int			npaths;
		int			ncompleted;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			allma_http_set_allowlist(allma_http_allowlist ? allma_http_allowlist : "");
			if (http_client != NULL)
			{
				AllmaHttpLimits limits;

				allma_http_limits_from_gucs(&limits);
				allma_http_client_set_limits(http_client, &limits);
			}
		}

		if (backoff)
		{
			backoff = false;
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 1000L, PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
			continue;
		}

		if (failure_pending)
			record_pending_failure(batch_cxt);
		if (crashes_pending)
			record_crashes(batch_cxt);
		run_abort_pass(batch_cxt);
		if (allma_retention_purge_overdue(my_slot))
			run_purge_pass(batch_cxt);
		/*
		 * Responses and new work in any case: under a steady stream of
		 * responses, skipping the claim whenever some had arrived would let
		 * the requests in flight drain instead of being replaced.  Both in
		 * one pass (one commit) unless paths run alone after a failure.
		 */
		if (!take_turn())
			continue;
		if (solo_claims == 0 && !held_solo && take_responses() > 0)
			npaths = run_combined_pass(batch_cxt, &next_due, &gate, &ncompleted);
		else
		{
			ncompleted = run_completion_pass(batch_cxt);
			npaths = run_claim_pass(batch_cxt, &next_due, &gate);
		}
		if (npaths > 0 && npaths >= allma_batch_size)
		{
			/* likely more work: go on at once, and bring in a sleeper */
			allma_wake_workers(1, true);
			continue;
		}
		if (ncompleted > 0 && gate == ALLMA_GATE_OPEN)
			continue;
		if (npaths > 0 && next_due != 0 && next_due <= GetCurrentTimestamp())
			continue;

		/* nothing due right now: worker 0's purge, if due, then look again */
		if (gate == ALLMA_GATE_OPEN && allma_retention_purge_due(my_slot))
		{
			run_purge_pass(batch_cxt);
			continue;
		}

		if (gate != ALLMA_GATE_OPEN)
		{
			allma_shmem_set_worker_state(my_slot, allma_worker_gate_state(gate), 0);
			timeout_ms = gate == ALLMA_GATE_NO_EXTENSION ? allma_naptime_ms :
				Min(allma_naptime_ms, GATE_RECHECK_MS);
		}
		else if (next_due == 0)
			timeout_ms = allma_naptime_ms;
		else
		{
			long		secs;
			int			usecs;

			TimestampDifference(GetCurrentTimestamp(), next_due, &secs, &usecs);
			timeout_ms = Min((long) allma_naptime_ms, secs * 1000 + usecs / 1000);
			if (timeout_ms <= 0)
			{
				/*
				 * Due now: at once, unless what is due is a deadline that
				 * the next check (TIMEOUT_CHECK_MS) looks for.
				 */
				TimestampDifference(GetCurrentTimestamp(),
									TimestampTzPlusMilliseconds(last_timeout_check, TIMEOUT_CHECK_MS),
									&secs, &usecs);
				timeout_ms = secs * 1000 + usecs / 1000;
				if (timeout_ms <= 0)
					continue;
			}
		}
		if (gate == ALLMA_GATE_OPEN)
		{
			/* parked on rate limits: release them when their budget comes */
			long		rl_ms = allma_ratelimit_wake_ms();
			/* worker 0: awake when its next purge pass is due */
			int64		purge_ms = allma_retention_purge_wait_ms(my_slot);

			if (rl_ms >= 0 && rl_ms < timeout_ms)
				timeout_ms = rl_ms;
			if (purge_ms >= 0 && purge_ms < timeout_ms)
				timeout_ms = Max((long) purge_ms, 1);
		}

		/* nothing to do: the turn is free (the waiters look again soon) */
		allma_shmem_end_turn(my_slot, false);
		allma_shmem_set_sleeping(my_slot, true);
		wait_for_work(timeout_ms);
		allma_shmem_set_sleeping(my_slot, false);
	}
}

void
allma_worker_describe(BackgroundWorker *worker, int slot, Oid dboid)
{
	memset(worker, 0, sizeof(*worker));
	worker->bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker->bgw_start_time = BgWorkerStart_RecoveryFinished;
	snprintf(worker->bgw_library_name, BGW_MAXLEN, "allma");
	snprintf(worker->bgw_function_name, BGW_MAXLEN, "allma_worker_main");
	snprintf(worker->bgw_name, BGW_MAXLEN, "allma worker %d", slot);
	snprintf(worker->bgw_type, BGW_MAXLEN, "allma worker");
	worker->bgw_main_arg = ObjectIdGetDatum(dboid);
	memcpy(worker->bgw_extra, &slot, sizeof(int));
}

static volatile sig_atomic_t got_sigterm = false;

/* SIGTERM: exiting now is no path's fault (passmark.c), then as die() */
static void
worker_die(SIGNAL_ARGS)
{
	got_sigterm = true;
	allma_passmark_terminating();
	die(postgres_signal_arg);
}

/*
 * On the way out: a worker that was terminated (pg_terminate_backend) is
 * replaced at once by the launcher, even if it was killed before it ran its
 * first pass (issue: kills twice a second kept slots empty for the 2 s
 * restart delay of a worker that failed to start).
 */
static void
worker_exit_note(int code, Datum arg)
{
	if (got_sigterm)
		allma_shmem_worker_terminated(my_slot);
}

/*
 * allma_worker_main: the database is the main argument, the shared slot is
 * in bgw_extra (see allma_worker_describe).
 */
void
allma_worker_main(Datum main_arg)
{
	Oid			dboid = DatumGetObjectId(main_arg);

	memcpy(&my_slot, MyBgworkerEntry->bgw_extra, sizeof(int));
	allma_store_owner_slot = my_slot;
	if (my_slot < 0 || my_slot >= ALLMA_MAX_WORKERS)
		elog(FATAL, "allma worker started with invalid slot %d", my_slot);

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, worker_die);
	BackgroundWorkerUnblockSignals();

	allma_shmem_register_worker(my_slot, dboid);
	before_shmem_exit(worker_exit_note, (Datum) 0);	/* runs before its detach */

	BackgroundWorkerInitializeConnectionByOid(dboid, InvalidOid, 0);
	pgstat_report_appname("allma worker");

	/*
	 * No JIT: a worker runs millisecond statements over and over, and a plan
	 * that looks costly (statistics taken while a table was nearly empty)
	 * paid tens of milliseconds of compilation on every pass.
	 */
	SetConfigOption("jit", "off", PGC_SUSET, PGC_S_OVERRIDE);
	/* NOTIFY allma_execution_events only while a session listens */
	allma_events_defer();
	recovered_n = allma_passmark_open(my_slot, &recovered);
	crashes_pending = recovered_n > 0;
	if (recovered_n > 0)
		ereport(LOG,
				(errmsg("allma worker %d: its previous process died during a pass of %d path(s); "
						"they are counted and run again one at a time", my_slot, recovered_n)));

	worker_loop();
}
