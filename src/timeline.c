/*-------------------------------------------------------------------------
 *
 * timeline.c
 *	  allma_execution_timeline: an execution as a self-contained SVG
 *	  waterfall that a browser opens directly.
 *
 * Layout, top to bottom: a title (execution, flow, status, duration), a
 * time axis with ticks at 1-2-5 steps from the execution's start, one row
 * per attempt of the main path, and for each fork a group of rows: a
 * header row whose light bar spans the fork's branches, one row per branch
 * path with one bar per attempt, and, beyond MAX_BRANCH_ROWS branches, a
 * "... N more branches" row (failed and running branches are shown first).
 * A legend closes the picture.
 *
 * Bars are coloured by the attempt's status in allma.step_executions
 * (COMPLETED, FAILED, RETRYING, POLLING); steps running now (from the
 * execution's live paths) get a "running" bar up to the present.  The
 * time between two attempts of a path is drawn as a dashed line: a retry
 * delay after a RETRYING attempt (its tooltip gives the planned delay,
 * details.retryInMs), a poll interval after a POLLING one, and a wait
 * otherwise (step delays, events, sub-flows, branches, queueing).  Every
 * bar and line has a <title> tooltip: step id, type, attempt, status,
 * duration and error name.
 *
 * Branch paths do not record which fork started them; a branch path is
 * given to the fork step whose parallelBranches has its branch id and first
 * step, and among that fork's (join) attempts to the first one ending after
 * the branch ended, so that a fork run in a loop gets one group per run.
 *
 * Bounds: at most MAX_ATTEMPTS history rows are read, MAX_ROWS rows and
 * MAX_BARS bars drawn, and no more rows are added once the text passes
 * MAX_SVG_BYTES; the picture then says what it left out.  All text from
 * the history is XML-escaped (append_xml_text).
 *
 * The history is read as the calling role (row-level security applies);
 * see picture.c for the lookup of the execution and its live paths.
 *
 * IDENTIFICATION
 *	  src/timeline.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"

#include "jsonb_util.h"
#include "picture.h"

PG_FUNCTION_INFO_V1(allma_execution_timeline);

#define MAX_ATTEMPTS		50000
#define MAX_LIVE_PATHS		10000
#define MAX_ROWS			200
#define MAX_BRANCH_ROWS		10
#define MAX_BARS			5000
#define MAX_SVG_BYTES		(4 * 1024 * 1024)
#define LABEL_CHARS			44

/* geometry, in pixels */
#define WIDTH				1200
#define PLOT_X0				320
#define PLOT_X1				(WIDTH - 24)
#define HEADER_H			64
#define ROW_H				20
#define BAR_H				12

/* one attempt of a step, or a live path's current step */
typedef struct Attempt
{
	int64		path_id;
	char	   *branch_id;
	char	   *step_id;
	char	   *step_type;
	char	   *status;			/* COMPLETED, FAILED, RETRYING, POLLING; live: NULL */
	char	   *error_name;
	char	   *next_step;
	int			attempt;
	int64		retry_in_ms;	/* details.retryInMs, or -1 */
	TimestampTz started_at;
	TimestampTz ended_at;
	const char *live;			/* live paths: "running", "timer" or "waiting" */
} Attempt;

/* the attempts of one path */
typedef struct PathHist
{
	int64		path_id;
	char	   *branch_id;
	List	   *attempts;		/* Attempt *, in order */
	TimestampTz first_start;
	TimestampTz last_end;
	const char *outcome;		/* done, failed, running, waiting, unfinished */
	int			ordinal;		/* its number within its fork group */
} PathHist;

/* the branch paths of one run of a fork step */
typedef struct ForkGroup
{
	char	   *fork_step;		/* NULL when no fork step matches */
	char	   *branch_id;		/* the branch id when fork_step is NULL */
	int			occurrence;		/* which join attempt; -1: not joined yet */
	List	   *paths;
	TimestampTz start;
	TimestampTz end;
	int			counts[5];		/* by outcome, in outcome_names order */
} ForkGroup;

static const char *const outcome_names[] = {"done", "failed", "running", "waiting", "unfinished"};

typedef enum RowKind
{
	ROW_ATTEMPT,				/* one attempt of the main path */
	ROW_FORK,					/* a fork group's header */
	ROW_BRANCH,					/* one branch path */
	ROW_MORE					/* the branches not shown */
} RowKind;

typedef struct Row
{
	RowKind		kind;
	Attempt    *attempt;		/* ROW_ATTEMPT */
	Attempt    *previous;		/* ROW_ATTEMPT: the path's previous attempt */
	PathHist   *path;			/* ROW_BRANCH */
	ForkGroup  *group;			/* ROW_FORK, ROW_MORE */
	List	   *hidden;			/* ROW_MORE: the paths not shown */
} Row;

/* a main-path attempt or a fork group, placed in time order */
typedef struct Block
{
	TimestampTz at;
	int			order;
	Attempt    *attempt;
	Attempt    *previous;
	ForkGroup  *group;
} Block;

typedef struct Timeline
{
	AllmaPictureExecution *ex;
	TimestampTz t0;
	TimestampTz t1;
	StringInfoData svg;
	int			bars;
	bool		bars_truncated;
} Timeline;


/* ---------------------------------------------------------------------
 * Text
 * ---------------------------------------------------------------------
 */

/*
 * XML text and attribute values: the five markup characters become
 * references; characters XML 1.0 does not allow (controls, U+FFFE, U+FFFF)
 * become spaces.
 */
static void
append_xml_text(StringInfo buf, const char *s)
{
	const unsigned char *p;

	for (p = (const unsigned char *) s; *p; p++)
	{
		switch (*p)
		{
			case '&':
				appendStringInfoString(buf, "&amp;");
				break;
			case '<':
				appendStringInfoString(buf, "&lt;");
				break;
			case '>':
				appendStringInfoString(buf, "&gt;");
				break;
			case '"':
				appendStringInfoString(buf, "&quot;");
				break;
			case '\'':
				appendStringInfoString(buf, "&#39;");
				break;
			default:
				if (*p < 0x20 || *p == 0x7f)
					appendStringInfoChar(buf, ' ');
				else if (GetDatabaseEncoding() == PG_UTF8 && p[0] == 0xEF && p[1] == 0xBF &&
						 (p[2] == 0xBE || p[2] == 0xBF))
				{
					appendStringInfoChar(buf, ' ');
					p += 2;
				}
				else
					appendStringInfoChar(buf, (char) *p);
		}
	}
}

static char *
duration_text(int64 usecs)
{
	StringInfoData buf;

	initStringInfo(&buf);
	allma_picture_append_duration(&buf, usecs);
	return buf.data;
}

/* a tick label: an offset from the start in the unit of the tick step */
static char *
tick_text(int64 offset, int64 step)
{
	if (offset == 0)
		return pstrdup("0");
	if (step < INT64CONST(1000000))
		return psprintf("%g ms", (double) offset / 1000.0);
	if (step < INT64CONST(60000000))
		return psprintf("%g s", (double) offset / 1000000.0);
	if (step < INT64CONST(3600000000))
		return psprintf("%g min", (double) offset / 60000000.0);
	return psprintf("%g h", (double) offset / 3600000000.0);
}

/* "step (TYPE), attempt 2: FAILED, 12.3 ms, error X" */
static char *
attempt_tooltip(Attempt *a, const char *prefix, TimestampTz now)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfo(&buf, "%s%s (%s), attempt %d: ", prefix ? prefix : "",
					 a->step_id ? a->step_id : "?", a->step_type ? a->step_type : "?", a->attempt);
	if (a->live == NULL)
		appendStringInfoString(&buf, a->status);
	else if (strcmp(a->live, "running") == 0)
		appendStringInfoString(&buf, "running now");
	else if (strcmp(a->live, "timer") == 0)
		appendStringInfoString(&buf, "due later");
	else
		appendStringInfoString(&buf, "waiting");
	appendStringInfoString(&buf, ", ");
	allma_picture_append_duration(&buf, a->ended_at - a->started_at);
	if (a->live != NULL && strcmp(a->live, "timer") == 0)
		appendStringInfoString(&buf, " from now");
	else if (a->live != NULL)
		appendStringInfoString(&buf, " so far");
	if (a->error_name != NULL)
		appendStringInfo(&buf, ", error %s", a->error_name);
	return buf.data;
}


/* ---------------------------------------------------------------------
 * Reading the history
 * ---------------------------------------------------------------------
 */

/* the history, by path (PathHist *, the main path first when it has any) */
static List *
read_history(AllmaPictureExecution *ex, bool *truncated)
{
	Oid			types[2] = {UUIDOID, INT4OID};
	Datum		values[2];
	List	   *paths = NIL;
	PathHist   *cur = NULL;
	uint64		i;

	values[0] = UUIDPGetDatum(&ex->id);
	values[1] = Int32GetDatum(MAX_ATTEMPTS + 1);
	allma_picture_select("SELECT path_id, branch_id, step_instance_id, step_type, attempt, status, "
							   "       error->>'errorName', next_step_instance_id, "
							   "       CASE WHEN jsonb_typeof(details->'retryInMs') = 'number' "
							   "            THEN (details->>'retryInMs')::numeric::bigint END, "
							   "       started_at, ended_at "
							   "  FROM allma.step_executions WHERE execution_id = $1 "
							   " ORDER BY path_id, seq LIMIT $2",
							   2, types, values, NULL, 0);
	*truncated = SPI_processed > MAX_ATTEMPTS;
	for (i = 0; i < SPI_processed && i < MAX_ATTEMPTS; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		Attempt    *a = palloc0(sizeof(Attempt));
		bool		isnull;
		Datum		d;

		a->path_id = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
		a->branch_id = SPI_getvalue(tup, desc, 2);
		a->step_id = SPI_getvalue(tup, desc, 3);
		a->step_type = SPI_getvalue(tup, desc, 4);
		a->attempt = DatumGetInt32(SPI_getbinval(tup, desc, 5, &isnull));
		a->status = SPI_getvalue(tup, desc, 6);
		a->error_name = SPI_getvalue(tup, desc, 7);
		a->next_step = SPI_getvalue(tup, desc, 8);
		d = SPI_getbinval(tup, desc, 9, &isnull);
		a->retry_in_ms = isnull ? -1 : DatumGetInt64(d);
		a->started_at = DatumGetTimestampTz(SPI_getbinval(tup, desc, 10, &isnull));
		a->ended_at = DatumGetTimestampTz(SPI_getbinval(tup, desc, 11, &isnull));

		if (cur == NULL || cur->path_id != a->path_id)
		{
			cur = palloc0(sizeof(PathHist));
			cur->path_id = a->path_id;
			cur->branch_id = a->branch_id;
			cur->first_start = a->started_at;
			paths = lappend(paths, cur);
		}
		cur->attempts = lappend(cur->attempts, a);
		cur->last_end = Max(cur->last_end, a->ended_at);
	}
	return paths;
}

/*
 * add_live appends each live path's current step to its path as an
 * attempt that has not ended: running now, due later (a timer), or
 * waiting (for branches, a queue slot or an event).
 */
static List *
add_live(List *paths, List *live, AllmaPictureExecution *ex)
{
	ListCell   *lc;
	ListCell   *cur = list_head(paths);
	List	   *added = NIL;

	/* both lists are in path_id order */
	foreach(lc, live)
	{
		AllmaLivePath *lp = lfirst(lc);
		PathHist   *p = NULL;
		Attempt    *a;

		if (lp->step_id == NULL)
			continue;
		while (cur != NULL && ((PathHist *) lfirst(cur))->path_id < lp->path_id)
			cur = lnext(paths, cur);
		if (cur != NULL && ((PathHist *) lfirst(cur))->path_id == lp->path_id)
			p = lfirst(cur);
		if (p == NULL)
		{
			p = palloc0(sizeof(PathHist));
			p->path_id = lp->path_id;
			p->branch_id = lp->branch_id;
			p->first_start = p->last_end = lp->path_id == 0 ? ex->started_at : ex->now;
			added = lappend(added, p);
		}
		a = palloc0(sizeof(Attempt));
		a->path_id = lp->path_id;
		a->branch_id = lp->branch_id;
		a->step_id = lp->step_id;
		if (ex->definition != NULL)
			a->step_type = allma_picture_step_type(allma_jsonb_get(allma_jsonb_get(ex->definition, "steps"),
																	lp->step_id));
		a->attempt = lp->attempt;
		a->retry_in_ms = -1;
		a->started_at = p->attempts ? p->last_end : p->first_start;
		if (allma_picture_path_running(lp, ex->now))
		{
			a->live = "running";
			a->ended_at = ex->now;
		}
		else if (strcmp(lp->status, "READY") == 0)
		{
			a->live = "timer";
			a->ended_at = lp->due_at;
		}
		else
		{
			a->live = "waiting";
			a->ended_at = ex->now;
		}
		a->started_at = Min(a->started_at, a->ended_at);
		p->attempts = lappend(p->attempts, a);
		p->last_end = Max(p->last_end, a->ended_at);
	}
	return list_concat(paths, added);
}

/* the outcome of a branch path, from its last attempt */
static int
path_outcome(PathHist *p)
{
	Attempt    *last = llast(p->attempts);

	if (last->live != NULL)
		return strcmp(last->live, "waiting") == 0 ? 3 : 2;
	if (last->next_step == NULL && strcmp(last->status, "COMPLETED") == 0)
		return 0;
	if (last->next_step == NULL && strcmp(last->status, "FAILED") == 0)
		return 1;
	return 4;
}

/* the fork step whose parallelBranches has this branch id and first step */
static char *
fork_of(Jsonb *definition, const char *branch_id, const char *first_step)
{
	Jsonb	   *steps = allma_jsonb_get(definition, "steps");
	ListCell   *lc;

	if (branch_id == NULL || first_step == NULL)
		return NULL;
	foreach(lc, allma_jsonb_object_keys(steps))
	{
		Jsonb	   *step = allma_jsonb_get(steps, lfirst(lc));
		ListCell   *lc2;

		foreach(lc2, allma_jsonb_array_elements(allma_jsonb_get(step, "parallelBranches")))
		{
			char	   *b = allma_jsonb_get_cstring(lfirst(lc2), "branchId");
			char	   *s = allma_jsonb_get_cstring(lfirst(lc2), "stepInstanceId");

			if (b && s && strcmp(b, branch_id) == 0 && strcmp(s, first_step) == 0)
				return lfirst(lc);
		}
	}
	return NULL;
}

/* the finished attempts of a fork step, by end time (join_occurrence) */
typedef struct ForkJoins
{
	char	   *fork_step;
	TimestampTz *ends;
	int			n;
} ForkJoins;

/* the branch paths of one branch id and first step, and their fork step */
typedef struct BranchFork
{
	char	   *branch_id;
	char	   *first_step;
	char	   *fork_step;
} BranchFork;

static int
tstz_cmp(const void *a, const void *b)
{
	TimestampTz x = *(const TimestampTz *) a;
	TimestampTz y = *(const TimestampTz *) b;

	return x < y ? -1 : (x > y);
}

static ForkJoins *
fork_joins(List **cache, List *paths, char *fork_step)
{
	ListCell   *lc;
	ForkJoins  *fj;

	foreach(lc, *cache)
	{
		fj = lfirst(lc);
		if (strcmp(fj->fork_step, fork_step) == 0)
			return fj;
	}
	fj = palloc0(sizeof(ForkJoins));
	fj->fork_step = fork_step;
	foreach(lc, paths)
	{
		PathHist   *p = lfirst(lc);
		ListCell   *lc2;

		foreach(lc2, p->attempts)
		{
			Attempt    *a = lfirst(lc2);

			if (a->live == NULL && strcmp(a->step_id, fork_step) == 0 &&
				(strcmp(a->status, "COMPLETED") == 0 || strcmp(a->status, "FAILED") == 0))
			{
				fj->ends = fj->ends ? repalloc(fj->ends, sizeof(TimestampTz) * (fj->n + 1))
					: palloc(sizeof(TimestampTz));
				fj->ends[fj->n++] = a->ended_at;
			}
		}
	}
	if (fj->n > 1)
		qsort(fj->ends, fj->n, sizeof(TimestampTz), tstz_cmp);
	*cache = lappend(*cache, fj);
	return fj;
}

/*
 * join_occurrence: which of the fork step's finished attempts (in time
 * order) a branch that ended at "end" belongs to: the first one ending at
 * or after it; -1 when the fork has not joined since.
 */
static int
join_occurrence(ForkJoins *fj, TimestampTz end)
{
	int			lo = 0;
	int			hi = fj->n;

	while (lo < hi)
	{
		int			mid = (lo + hi) / 2;

		if (fj->ends[mid] < end)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < fj->n ? lo : -1;
}

static char *
cached_fork_of(List **cache, Jsonb *definition, char *branch_id, char *first_step)
{
	ListCell   *lc;
	BranchFork *bf;

	if (definition == NULL || branch_id == NULL || first_step == NULL)
		return NULL;
	foreach(lc, *cache)
	{
		bf = lfirst(lc);
		if (strcmp(bf->branch_id, branch_id) == 0 && strcmp(bf->first_step, first_step) == 0)
			return bf->fork_step;
	}
	bf = palloc(sizeof(BranchFork));
	bf->branch_id = branch_id;
	bf->first_step = first_step;
	bf->fork_step = fork_of(definition, branch_id, first_step);
	*cache = lappend(*cache, bf);
	return bf->fork_step;
}

/* the fork groups of the branch paths */
static List *
group_branches(List *paths, AllmaPictureExecution *ex)
{
	List	   *groups = NIL;
	List	   *forks = NIL;
	List	   *joins = NIL;
	ListCell   *lc;

	foreach(lc, paths)
	{
		PathHist   *p = lfirst(lc);
		Attempt    *first;
		char	   *fork;
		int			occurrence;
		ForkGroup  *g = NULL;
		ListCell   *lc2;
		int			outcome;

		if (p->path_id == 0 || p->attempts == NIL)
			continue;
		first = linitial(p->attempts);
		fork = cached_fork_of(&forks, ex->definition, p->branch_id, first->step_id);
		occurrence = fork ? join_occurrence(fork_joins(&joins, paths, fork), p->last_end) : -1;
		foreach(lc2, groups)
		{
			ForkGroup  *cand = lfirst(lc2);

			if (cand->occurrence == occurrence &&
				(fork ? cand->fork_step && strcmp(cand->fork_step, fork) == 0
				 : cand->fork_step == NULL && strcmp(cand->branch_id, p->branch_id ? p->branch_id : "") == 0))
			{
				g = cand;
				break;
			}
		}
		if (g == NULL)
		{
			g = palloc0(sizeof(ForkGroup));
			g->fork_step = fork;
			g->branch_id = pstrdup(p->branch_id ? p->branch_id : "");
			g->occurrence = occurrence;
			g->start = p->first_start;
			g->end = p->last_end;
			groups = lappend(groups, g);
		}
		g->paths = lappend(g->paths, p);
		g->start = Min(g->start, p->first_start);
		g->end = Max(g->end, p->last_end);
		outcome = path_outcome(p);
		p->outcome = outcome_names[outcome];
		g->counts[outcome]++;
		p->ordinal = list_length(g->paths);
	}
	return groups;
}


/* ---------------------------------------------------------------------
 * Layout
 * ---------------------------------------------------------------------
 */

static int
block_cmp(const ListCell *a, const ListCell *b)
{
	Block	   *x = lfirst(a);
	Block	   *y = lfirst(b);

	if (x->at != y->at)
		return x->at < y->at ? -1 : 1;
	return x->order - y->order;
}

/* failed, running and waiting branches first, then by start */
static int
interest_cmp(const ListCell *a, const ListCell *b)
{
	PathHist   *x = lfirst(a);
	PathHist   *y = lfirst(b);
	static const int rank[] = {3, 0, 1, 2, 3};
	int			rx = 3;
	int			ry = 3;
	int			k;

	for (k = 0; k < 5; k++)
	{
		if (x->outcome == outcome_names[k])
			rx = rank[k];
		if (y->outcome == outcome_names[k])
			ry = rank[k];
	}
	if (rx != ry)
		return rx - ry;
	if (x->first_start != y->first_start)
		return x->first_start < y->first_start ? -1 : 1;
	return x->path_id < y->path_id ? -1 : (x->path_id > y->path_id);
}

static int
start_cmp(const ListCell *a, const ListCell *b)
{
	PathHist   *x = lfirst(a);
	PathHist   *y = lfirst(b);

	if (x->first_start != y->first_start)
		return x->first_start < y->first_start ? -1 : 1;
	return x->path_id < y->path_id ? -1 : (x->path_id > y->path_id);
}

/* the rows, in order; *omitted counts what MAX_ROWS left out */
static List *
layout_rows(List *paths, List *groups, int *omitted)
{
	List	   *blocks = NIL;
	List	   *rows = NIL;
	PathHist   *main = NULL;
	ListCell   *lc;
	int			order = 0;

	*omitted = 0;
	foreach(lc, paths)
	{
		if (((PathHist *) lfirst(lc))->path_id == 0)
			main = lfirst(lc);
	}
	if (main != NULL)
	{
		Attempt    *previous = NULL;

		foreach(lc, main->attempts)
		{
			Block	   *b = palloc0(sizeof(Block));

			b->attempt = lfirst(lc);
			b->previous = previous;
			b->at = b->attempt->started_at;
			b->order = order++;
			blocks = lappend(blocks, b);
			previous = b->attempt;
		}
	}
	foreach(lc, groups)
	{
		Block	   *b = palloc0(sizeof(Block));

		b->group = lfirst(lc);
		b->at = b->group->start;
		b->order = order++;
		blocks = lappend(blocks, b);
	}
	list_sort(blocks, block_cmp);

	foreach(lc, blocks)
	{
		Block	   *b = lfirst(lc);
		Row		   *r;

		if (b->attempt != NULL)
		{
			r = palloc0(sizeof(Row));
			r->kind = ROW_ATTEMPT;
			r->attempt = b->attempt;
			r->previous = b->previous;
			rows = lappend(rows, r);
		}
		else
		{
			List	   *shown = list_copy(b->group->paths);
			List	   *hidden = NIL;
			ListCell   *lc2;

			r = palloc0(sizeof(Row));
			r->kind = ROW_FORK;
			r->group = b->group;
			rows = lappend(rows, r);

			if (list_length(shown) > MAX_BRANCH_ROWS)
			{
				list_sort(shown, interest_cmp);
				hidden = list_copy_tail(shown, MAX_BRANCH_ROWS);
				shown = list_truncate(shown, MAX_BRANCH_ROWS);
			}
			list_sort(shown, start_cmp);
			foreach(lc2, shown)
			{
				r = palloc0(sizeof(Row));
				r->kind = ROW_BRANCH;
				r->path = lfirst(lc2);
				rows = lappend(rows, r);
			}
			if (hidden != NIL)
			{
				r = palloc0(sizeof(Row));
				r->kind = ROW_MORE;
				r->group = b->group;
				r->hidden = hidden;
				rows = lappend(rows, r);
			}
		}
	}
	if (list_length(rows) > MAX_ROWS)
	{
		*omitted = list_length(rows) - MAX_ROWS;
		rows = list_truncate(rows, MAX_ROWS);
	}
	return rows;
}


/* ---------------------------------------------------------------------
 * Drawing
 * ---------------------------------------------------------------------
 */

static double
x_of(Timeline *tl, TimestampTz t)
{
	double		span = (double) (tl->t1 - tl->t0);
	double		x;

	if (t < tl->t0)
		t = tl->t0;
	if (t > tl->t1)
		t = tl->t1;
	x = PLOT_X0 + (double) (t - tl->t0) * (PLOT_X1 - PLOT_X0) / span;
	return x;
}

static void
draw_label(Timeline *tl, double y, int indent, const char *cls, const char *text)
{
	appendStringInfo(&tl->svg, "<text class=\"%s\" x=\"%d\" y=\"%.1f\">", cls, 10 + indent, y + BAR_H - 2);
	append_xml_text(&tl->svg, allma_picture_clip(text, LABEL_CHARS - indent / 6));
	appendStringInfoString(&tl->svg, "</text>\n");
}

/* a bar for an attempt (class "bar <status>"), at least one pixel wide */
static void
draw_bar(Timeline *tl, Attempt *a, double y, const char *prefix)
{
	double		x0 = x_of(tl, a->started_at);
	double		x1 = x_of(tl, a->ended_at);
	const char *cls;

	if (tl->bars >= MAX_BARS)
	{
		tl->bars_truncated = true;
		return;
	}
	tl->bars++;
	if (a->live != NULL && strcmp(a->live, "running") == 0)
		cls = "running";
	else if (a->live != NULL)
	{
		/* not running: a dashed line up to when it is due, or to now */
		appendStringInfo(&tl->svg,
						 "<line class=\"gap %s\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"><title>",
						 strcmp(a->live, "timer") == 0 ? "timer" : "wait",
						 x0, y + BAR_H / 2.0, Max(x1, x0 + 1), y + BAR_H / 2.0);
		append_xml_text(&tl->svg, attempt_tooltip(a, prefix, tl->ex->now));
		appendStringInfoString(&tl->svg, "</title></line>\n");
		return;
	}
	else if (strcmp(a->status, "COMPLETED") == 0)
		cls = "completed";
	else if (strcmp(a->status, "FAILED") == 0)
		cls = "failed";
	else if (strcmp(a->status, "RETRYING") == 0)
		cls = "retrying";
	else if (strcmp(a->status, "POLLING") == 0)
		cls = "polling";
	else
		cls = "other";
	appendStringInfo(&tl->svg,
					 "<rect class=\"bar %s\" x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%d\" rx=\"2\"><title>",
					 cls, x0, y, Max(x1 - x0, 1.0), BAR_H);
	append_xml_text(&tl->svg, attempt_tooltip(a, prefix, tl->ex->now));
	appendStringInfoString(&tl->svg, "</title></rect>\n");
}

/*
 * draw_gap: the time between a path's previous attempt (or the start of
 * the execution) and this one: a retry delay, a poll interval or a wait.
 */
static void
draw_gap(Timeline *tl, Attempt *previous, Attempt *a, double y)
{
	TimestampTz from = previous ? previous->ended_at : tl->ex->started_at;
	const char *cls = "wait";
	StringInfoData tip;

	if (a->live != NULL || a->started_at <= from)
		return;
	initStringInfo(&tip);
	if (previous != NULL && previous->live == NULL && strcmp(previous->status, "RETRYING") == 0)
	{
		cls = "retry";
		appendStringInfoString(&tip, "retry delay ");
		allma_picture_append_duration(&tip, a->started_at - from);
		if (previous->retry_in_ms >= 0)
			appendStringInfo(&tip, " (planned " INT64_FORMAT " ms)", previous->retry_in_ms);
	}
	else if (previous != NULL && previous->live == NULL && strcmp(previous->status, "POLLING") == 0)
	{
		cls = "poll";
		appendStringInfoString(&tip, "poll interval ");
		allma_picture_append_duration(&tip, a->started_at - from);
	}
	else
	{
		appendStringInfoString(&tip, previous ? "waited " : "waited from the start ");
		allma_picture_append_duration(&tip, a->started_at - from);
	}
	appendStringInfo(&tip, " before %s", a->step_id);
	appendStringInfo(&tl->svg,
					 "<line class=\"gap %s\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"><title>",
					 cls, x_of(tl, from), y + BAR_H / 2.0, x_of(tl, a->started_at), y + BAR_H / 2.0);
	append_xml_text(&tl->svg, tip.data);
	appendStringInfoString(&tl->svg, "</title></line>\n");
}

/* a light bar spanning a group of branches */
static void
draw_span(Timeline *tl, TimestampTz from, TimestampTz to, double y, const char *cls,
		  const char *tooltip)
{
	double		x0 = x_of(tl, from);
	double		x1 = x_of(tl, to);

	appendStringInfo(&tl->svg,
					 "<rect class=\"%s\" x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%d\" rx=\"2\"><title>",
					 cls, x0, y, Max(x1 - x0, 1.0), BAR_H);
	append_xml_text(&tl->svg, tooltip);
	appendStringInfoString(&tl->svg, "</title></rect>\n");
}

static char *
counts_text(int *counts)
{
	StringInfoData buf;
	int			k;

	initStringInfo(&buf);
	for (k = 0; k < 5; k++)
	{
		if (counts[k] > 0 || k < 2)
			appendStringInfo(&buf, "%s%d %s", buf.len ? ", " : "", counts[k], outcome_names[k]);
	}
	return buf.data;
}

static void
draw_row(Timeline *tl, Row *r, double y)
{
	ListCell   *lc;

	switch (r->kind)
	{
		case ROW_ATTEMPT:
			{
				Attempt    *a = r->attempt;
				char	   *label = a->attempt > 1
					? psprintf("%s (attempt %d)", a->step_id, a->attempt) : a->step_id;

				draw_label(tl, y, 0, "label", label);
				draw_gap(tl, r->previous, a, y);
				draw_bar(tl, a, y, NULL);
				break;
			}
		case ROW_FORK:
			{
				ForkGroup  *g = r->group;
				int			n = list_length(g->paths);
				char	   *what = g->fork_step
					? psprintf("fork %s", g->fork_step) : psprintf("branch %s", g->branch_id);
				char	   *counts = counts_text(g->counts);

				draw_label(tl, y, 0, "label fork",
						   psprintf("%s: %d branch%s", what, n, n == 1 ? "" : "es"));
				draw_span(tl, g->start, g->end, y, "span",
						  psprintf("%s: %d branch%s (%s), %s", what, n, n == 1 ? "" : "es",
								   counts, duration_text(g->end - g->start)));
				break;
			}
		case ROW_BRANCH:
			{
				PathHist   *p = r->path;
				char	   *name = psprintf("branch %s #%d", p->branch_id ? p->branch_id : "?", p->ordinal);
				char	   *prefix = psprintf("%s: ", name);
				Attempt    *previous = NULL;

				draw_label(tl, y, 18, "label", name);
				foreach(lc, p->attempts)
				{
					Attempt    *a = lfirst(lc);

					if (previous != NULL)
						draw_gap(tl, previous, a, y);
					draw_bar(tl, a, y, prefix);
					previous = a;
				}
				break;
			}
		case ROW_MORE:
			{
				int			counts[5] = {0};
				TimestampTz from = DT_NOEND;
				TimestampTz to = DT_NOBEGIN;
				int			n = list_length(r->hidden);
				char	   *text;

				foreach(lc, r->hidden)
				{
					PathHist   *p = lfirst(lc);
					int			k;

					for (k = 0; k < 5; k++)
						if (p->outcome == outcome_names[k])
							counts[k]++;
					from = Min(from, p->first_start);
					to = Max(to, p->last_end);
				}
				text = psprintf("... %d more branch%s (%s)", n, n == 1 ? "" : "es", counts_text(counts));
				draw_label(tl, y, 18, "label more", text);
				draw_span(tl, from, to, y, "span more", text);
				break;
			}
	}
}

/* a tick step from 1-2-5 times a power of ten microseconds, about 8 ticks */
static int64
tick_step(int64 span)
{
	int64		step = 1;

	for (;;)
	{
		if (span / step <= 8)
			return step;
		if (span / (step * 2) <= 8)
			return step * 2;
		if (span / (step * 5) <= 8)
			return step * 5;
		step *= 10;
	}
}

static void
draw_axis(Timeline *tl, double top, double bottom)
{
	int64		span = tl->t1 - tl->t0;
	int64		step = tick_step(span);
	int64		off;

	for (off = 0; off <= span; off += step)
	{
		double		x = x_of(tl, tl->t0 + off);

		appendStringInfo(&tl->svg,
						 "<line class=\"grid\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>\n"
						 "<text class=\"axis\" x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">",
						 x, top, x, bottom, x, top - 4);
		append_xml_text(&tl->svg, tick_text(off, step));
		appendStringInfoString(&tl->svg, "</text>\n");
	}
	if (!tl->ex->has_ended)
	{
		double		x = x_of(tl, tl->ex->now);

		appendStringInfo(&tl->svg,
						 "<line class=\"now\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"><title>now</title></line>\n",
						 x, top, x, bottom);
	}
}

static void
draw_legend(Timeline *tl, double y)
{
	static const char *const bars[][2] = {
		{"completed", "COMPLETED"}, {"failed", "FAILED"}, {"retrying", "RETRYING"},
		{"polling", "POLLING"}, {"running", "running now"}, {"span", "fork branches"}
	};
	static const char *const gaps[][2] = {
		{"retry", "retry delay"}, {"poll", "poll interval"}, {"wait", "wait"}, {"timer", "due later"}
	};
	int			x = 10;
	int			i;

	for (i = 0; i < lengthof(bars); i++)
	{
		appendStringInfo(&tl->svg,
						 "<rect class=\"key %s\" x=\"%d\" y=\"%.1f\" width=\"14\" height=\"%d\" rx=\"2\"/>"
						 "<text class=\"label\" x=\"%d\" y=\"%.1f\">%s</text>\n",
						 bars[i][0], x, y, BAR_H, x + 18, y + BAR_H - 2, bars[i][1]);
		x += 36 + 7 * strlen(bars[i][1]);
	}
	for (i = 0; i < lengthof(gaps); i++)
	{
		appendStringInfo(&tl->svg,
						 "<line class=\"key gap %s\" x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\"/>"
						 "<text class=\"label\" x=\"%d\" y=\"%.1f\">%s</text>\n",
						 gaps[i][0], x, y + BAR_H / 2.0, x + 24, y + BAR_H / 2.0,
						 x + 30, y + BAR_H - 2, gaps[i][1]);
		x += 40 + 7 * strlen(gaps[i][1]);
	}
}

static const char *const svg_style =
"<style>\n"
".label{fill:#263238} .fork{font-weight:bold} .more{fill:#607d8b;font-style:italic}\n"
".title{font-size:15px;font-weight:bold;fill:#263238} .sub{fill:#546e7a} .note{fill:#c62828}\n"
".axis{fill:#607d8b;font-size:10px} .grid{stroke:#eceff1;stroke-width:1}\n"
".now{stroke:#1565c0;stroke-width:1;stroke-dasharray:4 2}\n"
".completed{fill:#43a047} .failed{fill:#e53935} .retrying{fill:#fb8c00}\n"
".polling{fill:#8e24aa} .running{fill:#1e88e5} .span{fill:#cfd8dc} .span.more{fill:#eceff1}\n"
".gap{stroke-width:2;fill:none} .wait{stroke:#90a4ae;stroke-dasharray:2 3}\n"
".retry{stroke:#fb8c00;stroke-dasharray:5 3} .poll{stroke:#8e24aa;stroke-dasharray:2 2}\n"
".timer{stroke:#1e88e5;stroke-dasharray:5 3}\n"
"</style>\n";

static void
draw(Timeline *tl, List *rows, int omitted, bool history_truncated, int attempts)
{
	AllmaPictureExecution *ex = tl->ex;
	int			nrows = list_length(rows);
	double		top = HEADER_H;
	double		bottom;
	double		height;
	ListCell   *lc;
	int			drawn = 0;
	int			i;
	StringInfoData sub;

	bottom = top + 6 + nrows * ROW_H;
	height = bottom + 70;

	appendStringInfo(&tl->svg,
					 "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%.0f\" "
					 "viewBox=\"0 0 %d %.0f\" font-family=\"Helvetica, Arial, sans-serif\" font-size=\"11\">\n",
					 WIDTH, height, WIDTH, height);
	appendStringInfoString(&tl->svg, svg_style);
	appendStringInfo(&tl->svg, "<rect x=\"0\" y=\"0\" width=\"%d\" height=\"%.0f\" fill=\"#ffffff\"/>\n",
					 WIDTH, height);

	appendStringInfoString(&tl->svg, "<text class=\"title\" x=\"10\" y=\"20\">");
	append_xml_text(&tl->svg,
					psprintf("execution %s",
							 DatumGetCString(DirectFunctionCall1(uuid_out, UUIDPGetDatum(&ex->id)))));
	appendStringInfoString(&tl->svg, "</text>\n<text class=\"sub\" x=\"10\" y=\"38\">");
	initStringInfo(&sub);
	appendStringInfo(&sub, "flow %s version %d, %s", ex->flow_id, ex->version, ex->status);
	if (ex->error_name != NULL)
		appendStringInfo(&sub, " (%s)", ex->error_name);
	appendStringInfoString(&sub, ex->has_ended ? ", took " : ", running for ");
	allma_picture_append_duration(&sub, (ex->has_ended ? ex->ended_at : ex->now) - ex->started_at);
	appendStringInfo(&sub, ", %d step attempt%s", attempts, attempts == 1 ? "" : "s");
	append_xml_text(&tl->svg, sub.data);
	appendStringInfoString(&tl->svg, "</text>\n");

	draw_axis(tl, top, bottom);

	i = 0;
	foreach(lc, rows)
	{
		static const char *const kinds[] = {"attempt", "fork", "branch", "more"};
		Row		   *r = lfirst(lc);

		if (tl->svg.len > MAX_SVG_BYTES)
			break;
		appendStringInfo(&tl->svg, "<g class=\"row %s\">\n", kinds[r->kind]);
		draw_row(tl, r, top + 6 + i * ROW_H + (ROW_H - BAR_H) / 2.0);
		appendStringInfoString(&tl->svg, "</g>\n");
		drawn++;
		i++;
	}
	omitted += nrows - drawn;

	if (omitted > 0 || history_truncated || tl->bars_truncated)
	{
		StringInfoData note;

		initStringInfo(&note);
		appendStringInfoString(&note, "not shown:");
		if (omitted > 0)
			appendStringInfo(&note, " %d more row%s;", omitted, omitted == 1 ? "" : "s");
		if (tl->bars_truncated)
			appendStringInfo(&note, " bars beyond the first %d;", MAX_BARS);
		if (history_truncated)
			appendStringInfo(&note, " attempts beyond the first %d;", MAX_ATTEMPTS);
		note.data[note.len - 1] = '\0';
		appendStringInfo(&tl->svg, "<text class=\"note\" x=\"10\" y=\"%.1f\">", bottom + 18);
		append_xml_text(&tl->svg, note.data);
		appendStringInfoString(&tl->svg, "</text>\n");
	}
	draw_legend(tl, bottom + 34);
	appendStringInfoString(&tl->svg, "</svg>\n");
}


/* ---------------------------------------------------------------------
 * SQL function
 * ---------------------------------------------------------------------
 */

/*
 * allma_execution_timeline(execution_id uuid) returns text: the SVG
 * waterfall of an execution the caller may see.
 */
Datum
allma_execution_timeline(PG_FUNCTION_ARGS)
{
	MemoryContext outer = CurrentMemoryContext;
	AllmaPictureExecution ex;
	Timeline	tl;
	List	   *paths;
	List	   *live = NIL;
	List	   *groups;
	List	   *rows;
	ListCell   *lc;
	bool		history_truncated;
	bool		live_truncated = false;
	int			omitted;
	int			attempts = 0;
	text	   *result;

	SPI_connect();
	allma_picture_execution(PG_GETARG_UUID_P(0), &ex);
	paths = read_history(&ex, &history_truncated);
	if (strcmp(ex.status, "RUNNING") == 0)
		live = allma_picture_live_paths(&ex, MAX_LIVE_PATHS, &live_truncated);
	paths = add_live(paths, live, &ex);
	groups = group_branches(paths, &ex);

	memset(&tl, 0, sizeof(tl));
	tl.ex = &ex;
	tl.t0 = ex.started_at;
	tl.t1 = ex.has_ended ? ex.ended_at : ex.now;
	foreach(lc, paths)
	{
		PathHist   *p = lfirst(lc);
		ListCell   *lc2;

		tl.t1 = Max(tl.t1, p->last_end);
		foreach(lc2, p->attempts)
		{
			Attempt    *a = lfirst(lc2);

			tl.t0 = Min(tl.t0, a->started_at);
			if (a->live == NULL)
				attempts++;
		}
	}
	/* at least a millisecond, so that every offset has a place */
	tl.t1 = Max(tl.t1, tl.t0 + 1000);

	rows = layout_rows(paths, groups, &omitted);
	initStringInfo(&tl.svg);
	draw(&tl, rows, omitted, history_truncated || live_truncated, attempts);

	MemoryContextSwitchTo(outer);
	result = cstring_to_text_with_len(tl.svg.data, tl.svg.len);
	SPI_finish();
	PG_RETURN_TEXT_P(result);
}
