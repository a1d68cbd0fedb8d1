/*-------------------------------------------------------------------------
 *
 * claimfloor.c
 *	  Keyset claims: where a worker's claim starts reading the claim index.
 *
 * While a long transaction holds the xmin horizon, vacuum removes nothing
 * and index scans cannot mark entries dead, so every path that ran leaves
 * its entry in execution_paths_claim_idx, in the past part of the key
 * order.  A claim reading from the start walks all of them (at hundreds of
 * executions per second, hundreds of thousands after a few minutes) before
 * the first live path, and so does the search for the next due time.
 *
 * So a claim starts at a floor: the lowest key a runnable path it has not
 * seen yet can have.  After each claim the floor is the lower of
 *   - the key of the first path the claim took (what lies below was taken
 *     or is locked by other workers, who move it on), and
 *   - the claim's time minus CLAIM_SLACK_MS and the highest priority among
 *     the paths this worker claimed lately: new paths are written due at
 *     about the time they are written (starts, resumes, the next steps of
 *     this worker's own paths, which keep their priority), and commit
 *     within the slack.
 * What falls below the floor anyway (a transaction that committed later
 * than the slack, a worker that died holding paths, a released wait whose
 * deadline is older) is found by a full claim, from the start of the
 * index, every allma.claim_rescan_interval; executions started with a
 * positive priority request one at commit (shmem.c), as their paths sort
 * up to their priority before now.  allma.claim_rescan_interval = 0 makes
 * every claim a full one (1.0's claim).
 *
 * The state is the worker process's own: each worker keeps its floor.
 *
 * IDENTIFICATION
 *	  src/claimfloor.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/timestamp.h"

#include "claimfloor.h"
#include "shmem.h"

/* how late after its due time a new path may commit and still be seen */
#define CLAIM_SLACK_MS		2000
/* how long a priority seen in a claim is remembered */
#define PRIORITY_MEMORY_MS	60000

int			allma_claim_rescan_ms = 5000;

static TimestampTz floor_key = DT_NOBEGIN;	/* the next claim's lower bound */
static TimestampTz last_full = 0;	/* when the last full claim ran */
static uint64 rescans_seen = 0; /* allma_shmem_claim_rescans() then */
static int32 recent_priority = 0;	/* highest priority claimed lately */
static TimestampTz recent_priority_at = 0;
static TimestampTz floor_due = DT_NOBEGIN;	/* lower bound for next_due */

/*
 * allma_claim_floor_begin: the lower bound of the claim about to run at
 * "now" (DT_NOBEGIN, with *full set, for a full claim).
 */
TimestampTz
allma_claim_floor_begin(TimestampTz now, bool *full)
{
	uint64		rescans = allma_shmem_claim_rescans();

	*full = allma_claim_rescan_ms <= 0 || floor_key == DT_NOBEGIN ||
		rescans != rescans_seen ||
		TimestampDifferenceExceeds(last_full, now, allma_claim_rescan_ms);
	if (*full)
	{
		rescans_seen = rescans;
		return DT_NOBEGIN;
	}
	return floor_key;
}

/*
 * allma_claim_floor_end: the claim that began at "now" took nclaimed paths,
 * the first of key first_key, the highest priority max_priority.
 */
void
allma_claim_floor_end(TimestampTz now, bool full, int nclaimed,
					  TimestampTz first_key, int32 max_priority)
{
	TimestampTz recent;

	if (full)
		last_full = now;
	if (nclaimed > 0 && max_priority >= recent_priority)
	{
		recent_priority = max_priority;
		recent_priority_at = now;
	}
	else if (recent_priority > 0 &&
			 TimestampDifferenceExceeds(recent_priority_at, now, PRIORITY_MEMORY_MS))
		recent_priority = 0;

	if (allma_claim_rescan_ms <= 0)
	{
		floor_key = DT_NOBEGIN;
		floor_due = DT_NOBEGIN;
		return;
	}
	recent = now - (int64) CLAIM_SLACK_MS * 1000 -
		(int64) Max(recent_priority, 0) * USECS_PER_SEC;
	floor_key = (nclaimed > 0 && first_key < recent) ? first_key : recent;
	/* the pass's own next steps are due from now on */
	floor_due = now - (int64) CLAIM_SLACK_MS * 1000;
}

/*
 * allma_claim_floor_due: the lowest due time of a READY path the worker's
 * next-due search must consider (DT_NOBEGIN: all).  Its own next steps
 * are due after its claim; paths due earlier that it did not claim are
 * locked by other workers or below its floor (for the next full claim).
 */
TimestampTz
allma_claim_floor_due(void)
{
	return floor_due;
}
