/*-------------------------------------------------------------------------
 *
 * ratelimit.c
 *	  Rate limits of outgoing requests: allma.rate_limits (requests per
 *	  minute, tokens per minute, requests in flight, per key), the gate in
 *	  the step dispatch, the parked steps and their release.
 *
 * Keys.  A step that leaves a request for the worker has a key: its
 * rateLimitKey (a template) when it has one, else for an LLM_INVOCATION
 * step "PROVIDER:modelId:SECRET_NAME" (the name of the API-key secret,
 * never its value; "keyless" for a key-less server), else the host[:port]
 * of its http(s) URL.  A row of allma.rate_limits governs the step when
 * the row's key equals the step's, or is a prefix of it followed by ":"
 * (the longest such row): the rest is the step's subkey, e.g. row
 * "openai" and rateLimitKey "openai:{{tenant}}".
 *
 * Budget.  Each row is a group in shared memory with a theoretical
 * arrival time per budget (the generic cell rate algorithm without burst
 * tolerance): a request may go when both are not in the future; taking
 * it moves the request time on by 60 s / requests_per_minute and the
 * token time by its estimated tokens * 60 s / tokens_per_minute (paced at
 * 98 % of the limits, see RL_PACE).  So the requests of a key are spaced
 * evenly, and a provider never sees more than the limit in any window.
 * An LLM step's estimate is its prompt's bytes / 4 plus its
 * maxOutputTokens (256 when it sets none).  It is charged the estimate
 * times the key's used / estimated ratio (a running average over the
 * replies, starting at 1, kept within [0.05, 2]); when the reply comes,
 * the token time is corrected by (used - charged): a reply that used more
 * puts the budget into debt that delays the next grants, one that used
 * less gives the rest back, but never under the grants already handed
 * out (so a second of over-charged grants settled lower does not let a
 * second second's worth go in the same second).  A provider's
 * x-ratelimit-remaining-* / x-ratelimit-reset-* headers tighten the times
 * for every step of the key (at most "remaining" more before the reset;
 * "remaining 0" pauses the key until the reset, granted steps included),
 * a 429 pauses the key for its Retry-After (1 s when it names none).
 * max_concurrent counts the requests of the key in flight.
 *
 * Parking.  A step that cannot go now parks its path: WAITING, holding
 * nothing in any worker (no memory, no connection, no transaction), its
 * request column {"rateLimit": {key, group, subkey, tokens, since}}, its
 * due_at the time it first parked (its place in the queue).  While a key
 * has parked steps, new steps queue behind them.  Workers release the
 * parked steps of a key in their claim passes, at most every 100 ms, one
 * worker at a time per key: the budget of the next second is handed out
 * as slots, each released path READY and due at its slot with a grant in
 * its request; when a worker claims it, the step runs again and its
 * request goes at once.  Fairness: releases take the parked steps round
 * robin over the subkeys: the first parked step of each subkey, in the
 * (C) order of the subkeys' names starting after the subkey served last
 * (a cursor kept per key across releases), then the second of each, ...;
 * so a subkey with 10 steps waits for at most 10 rounds (10 x the number
 * of subkeys with parked steps) whatever the others have queued.  Within
 * a subkey, and for a key without subkeys, steps go in arrival order.
 *
 * Restarts.  The state lives in shared memory; after a restart it is
 * rebuilt conservatively: a group starts as if a request (and a second's
 * worth of tokens) had just been taken, grants made before the restart
 * are void (their steps queue again, keeping their place), parked steps
 * stay parked in the table and are released by the new workers.
 *
 * Memory: the shared state is a fixed array of RL_MAX_GROUPS groups
 * (limits of every database together); a row that finds no free group is
 * not enforced and the worker says so in the log.
 *
 * IDENTIFICATION
 *	  src/ratelimit.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/spin.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "defcheck.h"
#include "jsonb_util.h"
#include "ratelimit.h"
#include "step.h"
#include "store.h"
#include "template.h"

#define RL_MAX_GROUPS		128
#define RL_HORIZON_US		INT64CONST(1000000)	/* slots handed out ahead */
#define RL_RELEASE_EVERY_US	INT64CONST(100000)
#define RL_SWEEP_EVERY_US	INT64CONST(1000000)	/* look even when none queued */
#define RL_RELOAD_EVERY_US	INT64CONST(1000000)
#define RL_RELEASER_STALE_US INT64CONST(5000000)
#define RL_MAX_RELEASE		1000
#define RL_DEFAULT_OUTPUT_TOKENS 256
#define RL_MAX_PAUSE_US		(INT64CONST(3600) * 1000000)

typedef struct RlGroup
{
	bool		used;
	bool		configured;		/* a row of allma.rate_limits */
	bool		seen;			/* mark of a reload */
	bool		queued;			/* steps may be parked on it */
	Oid			dboid;
	char		key[ALLMA_RATE_LIMIT_KEY_MAX + 1];
	int32		rpm;			/* 0: no limit */
	int32		tpm;
	int32		maxc;
	int32		inflight;		/* requests sent, not answered */
	TimestampTz req_tat;		/* the next request may go then */
	TimestampTz tok_tat;		/* the next tokens may be spent then */
	TimestampTz tok_last;		/* where the latest grant's tokens start */
	double		tok_ratio;		/* running average of used / estimated tokens */
	int32		tok_obs;		/* replies with a usage that made it (capped) */
	int32		settled;		/* replies settled since the group was built (capped) */
	TimestampTz paused_until;	/* a 429's Retry-After */
	TimestampTz last_release;
	TimestampTz last_resync;
	pid_t		releaser;		/* a worker releasing its parked steps */
	TimestampTz releasing_since;
	char		cursor[ALLMA_RATE_LIMIT_KEY_MAX + 1];	/* the subkey served last */
} RlGroup;

typedef struct RlShared
{
	slock_t		mutex;			/* a few loads and stores, never a call
								 * that could throw */
	int64		epoch;			/* when this state was built: grants of
								 * another epoch are void */
	int			nconfigured;	/* groups of rows, all databases: while it is
								 * 0 no step needs the gate */
	RlGroup		groups[RL_MAX_GROUPS];
} RlShared;

static RlShared *rl = NULL;

static TimestampTz last_reload = 0;
static bool has_limits = false; /* this database has rows (as last loaded) */
static SPIPlanPtr reload_plan = NULL;
static SPIPlanPtr pick_plan = NULL;
static SPIPlanPtr grant_plan = NULL;
static SPIPlanPtr resync_plan = NULL;
static SPIPlanPtr orphan_plan = NULL;
static bool swept_orphans = false;	/* this process looked for orphans */

Size
allma_ratelimit_shmem_size(void)
{
	return MAXALIGN(sizeof(RlShared));
}

void
allma_ratelimit_shmem_init(void *area, bool found)
{
	rl = (RlShared *) area;
	if (!found)
	{
		memset(rl, 0, sizeof(RlShared));
		SpinLockInit(&rl->mutex);
		rl->epoch = (int64) GetCurrentTimestamp();
	}
}

void
allma_ratelimit_reset(void)
{
	SPIPlanPtr *plans[] = {&reload_plan, &pick_plan, &grant_plan, &resync_plan, &orphan_plan};

	for (int i = 0; i < lengthof(plans); i++)
	{
		if (*plans[i] != NULL)
			SPI_freeplan(*plans[i]);
		*plans[i] = NULL;
	}
	last_reload = 0;
}

/*
 * has_limits_hint: may a step of this database need the gate?  Each worker
 * reloads the rows once a second (has_limits), but a row one worker has
 * loaded into shared memory governs every worker's steps at once: the
 * shared count says so without waiting for this worker's next reload (an
 * unlocked read of an int; a stale answer only costs a lookup).
 */
static inline bool
has_limits_hint(void)
{
	return has_limits || ((volatile RlShared *) rl)->nconfigured > 0;
}

/*
 * The spacing of requests and tokens: 60 s / limit, paced at 98 % of the
 * limit (RL_PACE) so that a request a worker sends a few milliseconds late
 * followed by one sent on time does not put one request too many into a
 * provider's one-second window.
 */
#define RL_PACE 0.98

static inline double
req_interval(RlGroup *g)
{
	return g->rpm > 0 ? 60000000.0 / (g->rpm * RL_PACE) : 0.0;
}

static inline double
tok_interval(RlGroup *g)
{
	return g->tpm > 0 ? 60000000.0 / (g->tpm * RL_PACE) : 0.0;
}

/* the time before which the group lets no request go (lock held) */
static TimestampTz
next_slot(RlGroup *g, TimestampTz now)
{
	TimestampTz slot = now;

	if (g->rpm > 0 && g->req_tat > slot)
		slot = g->req_tat;
	if (g->tpm > 0 && g->tok_tat > slot)
		slot = g->tok_tat;
	if (g->paused_until > slot)
		slot = g->paused_until;
	return slot;
}

/*
 * The tokens charged for a request estimated at "tokens": the estimate
 * scaled by the key's observed used / estimated ratio (a running average
 * kept by the settlements, starting at 1 and bounded by RL_RATIO_MIN and
 * RL_RATIO_MAX), at least 1.  The settlement corrects the charge to the
 * usage the reply reports, up or down.  Lock held.
 */
#define RL_RATIO_MIN 0.05
#define RL_RATIO_MAX 2.0
#define RL_RATIO_WEIGHT 0.2		/* weight of a new observation (after the first 5) */

static int64
charge_of(RlGroup *g, int64 tokens)
{
	double		r = g->tok_ratio;

	if (tokens <= 0)
		return 0;
	if (!(r >= RL_RATIO_MIN))	/* also NaN and a group not yet set */
		r = r > 0 ? RL_RATIO_MIN : 1.0;
	r = Min(r, RL_RATIO_MAX);
	return Max((int64) 1, (int64) ceil(tokens * r));
}

/* takes the budget of one request charged "charged" tokens at slot (lock held) */
static void
take_slot(RlGroup *g, TimestampTz slot, int64 charged)
{
	if (g->rpm > 0)
		g->req_tat = Max(g->req_tat, slot) + (int64) ceil(req_interval(g));
	if (g->tpm > 0)
	{
		g->tok_last = Max(g->tok_tat, slot);
		g->tok_tat = g->tok_last + (int64) ceil(charged * tok_interval(g));
	}
}

/*
 * find_group: the configured group of this database governing "key" (the
 * longest row key equal to it or followed by ':' in it); *subkey_at gets
 * where its subkey starts (or -1).  Lock held.
 */
static int
find_group(const char *key, int *subkey_at)
{
	int			best = -1;
	size_t		best_len = 0;
	size_t		klen = strlen(key);

	for (int i = 0; i < RL_MAX_GROUPS; i++)
	{
		RlGroup    *g = &rl->groups[i];
		size_t		glen;

		if (!g->used || !g->configured || g->dboid != MyDatabaseId)
			continue;
		glen = strlen(g->key);
		if (glen > klen || (best >= 0 && glen <= best_len))
			continue;
		if (strncmp(key, g->key, glen) != 0 || (glen < klen && key[glen] != ':'))
			continue;
		best = i;
		best_len = glen;
	}
	*subkey_at = (best >= 0 && best_len < klen) ? (int) best_len + 1 : -1;
	return best;
}

/* the configured group named exactly "key" in this database (lock held) */
static int
find_group_exact(const char *key)
{
	for (int i = 0; i < RL_MAX_GROUPS; i++)
	{
		RlGroup    *g = &rl->groups[i];

		if (g->used && g->configured && g->dboid == MyDatabaseId && strcmp(g->key, key) == 0)
			return i;
	}
	return -1;
}

/* ----------------------------------------------------------------
 * Keys
 * ----------------------------------------------------------------
 */

/* host[:port] of an http(s) URL, lower-cased; NULL for another URL */
static char *
url_host(const char *url)
{
	const char *p;
	const char *end;
	const char *at;
	char	   *host;

	if (url == NULL)
		return NULL;
	if (pg_strncasecmp(url, "http://", 7) == 0)
		p = url + 7;
	else if (pg_strncasecmp(url, "https://", 8) == 0)
		p = url + 8;
	else
		return NULL;
	end = p + strcspn(p, "/?#");
	at = memchr(p, '@', end - p);
	if (at != NULL)
		p = at + 1;
	if (end == p || end - p > ALLMA_RATE_LIMIT_KEY_MAX)
		return NULL;
	host = pnstrdup(p, end - p);
	for (char *c = host; *c; c++)
		*c = pg_ascii_tolower((unsigned char) *c);
	return host;
}

/* the step's rate-limit key (see the header comment); NULL: none */
static char *
step_key(StepRun *run)
{
	char	   *tmpl = allma_jsonb_get_cstring(run->step->def, "rateLimitKey");
	char	   *key;

	if (tmpl != NULL)
	{
		key = allma_template_render(tmpl, allma_step_template_context(run));
		if (key == NULL || key[0] == '\0')
			ereport(ERROR,
					(errcode(ERRCODE_ALLMA_PERMANENT_STEP_ERROR),
					 errmsg("step \"%s\" field \"rateLimitKey\" rendered to an empty key",
							run->step->id),
					 errhint("Make the template render a non-empty text for every execution.")));
		if (strlen(key) > ALLMA_RATE_LIMIT_KEY_MAX)
			ereport(ERROR,
					(errcode(ERRCODE_ALLMA_PERMANENT_STEP_ERROR),
					 errmsg("step \"%s\" field \"rateLimitKey\" rendered to a key of %zu bytes, more than %d",
							run->step->id, strlen(key), ALLMA_RATE_LIMIT_KEY_MAX)));
		return key;
	}
	if (run->rl_key != NULL)
		return run->rl_key;
	return url_host(allma_jsonb_get_cstring(run->ps->io_request, "url"));
}

/* ----------------------------------------------------------------
 * The gate
 * ----------------------------------------------------------------
 */

typedef enum RlDecision
{
	RL_UNGATED,
	RL_SEND,
	RL_PARK
} RlDecision;

void
allma_ratelimit_gate(StepRun *run)
{
	AllmaPathState *ps = run->ps;
	Jsonb	   *prev = ps->prev_request ? allma_jsonb_get(ps->prev_request, "rateLimit") : NULL;
	Jsonb	   *grant = prev ? allma_jsonb_get(prev, "grant") : NULL;
	char	   *key;
	char		group[ALLMA_RATE_LIMIT_KEY_MAX + 1];
	char	   *subkey = "";
	int			subkey_at;
	int			gi;
	int64		tokens = run->rl_key != NULL ? run->rl_tokens : 0;
	int64		charged = tokens;
	TimestampTz now = GetCurrentTimestamp();
	RlDecision	decision = RL_UNGATED;
	bool		granted = false;
	Jsonb	   *rec;
	MemoryContext oldcxt;

	/* a fallback model's request (sent from "complete") is not gated */
	if (rl == NULL || ps->response != NULL || !has_limits_hint())
		return;
	key = step_key(run);
	if (key == NULL)
		return;

	if (grant != NULL)
	{
		double		epoch;

		granted = allma_jsonb_get_number(grant, "epoch", &epoch) &&
			(int64) epoch == rl->epoch;
		if (granted)
		{
			double		c;

			/* the release charged the grant (a grant of an older build: its estimate) */
			if (allma_jsonb_get_number(grant, "charged", &c))
				charged = (int64) Max(0, Min(c, 1e12));
		}
	}

	SpinLockAcquire(&rl->mutex);
	gi = find_group(key, &subkey_at);
	if (gi >= 0)
	{
		RlGroup    *g = &rl->groups[gi];

		strlcpy(group, g->key, sizeof(group));
		if (g->paused_until > now)
			decision = RL_PARK;
		else if (g->maxc > 0 && g->inflight >= g->maxc)
			decision = RL_PARK;
		else if (granted)
			decision = RL_SEND;
		else if (g->queued)
			decision = RL_PARK;
		else if (next_slot(g, now) <= now)
		{
			charged = g->tpm > 0 ? charge_of(g, tokens) : tokens;
			take_slot(g, now, charged);
			decision = RL_SEND;
		}
		else
			decision = RL_PARK;
		if (decision == RL_SEND)
			g->inflight++;
		else
			g->queued = true;
	}
	SpinLockRelease(&rl->mutex);

	if (decision == RL_UNGATED)
		return;
	if (subkey_at > 0)
		subkey = key + subkey_at;

	oldcxt = MemoryContextSwitchTo(run->pathcxt);
	rec = allma_jsonb_set_key(NULL, "key", allma_jsonb_string(key));
	rec = allma_jsonb_set_key(rec, "group", allma_jsonb_string(group));
	rec = allma_jsonb_set_key(rec, "subkey", allma_jsonb_string(subkey));
	rec = allma_jsonb_set_key(rec, "tokens", allma_jsonb_int(tokens));
	if (decision == RL_SEND)
	{
		/* what the budget was charged: the settlement corrects it to the usage */
		rec = allma_jsonb_set_key(rec, "charged", allma_jsonb_int(charged));
		ps->io_request = allma_jsonb_set_key(ps->io_request, "rateLimit", rec);
	}
	else
	{
		char	   *since = prev ? allma_jsonb_get_cstring(prev, "since") : NULL;
		TimestampTz since_ts = now;

		if (since != NULL)
			since_ts = DatumGetTimestampTz(DirectFunctionCall3(timestamptz_in,
															   CStringGetDatum(since),
															   ObjectIdGetDatum(InvalidOid),
															   Int32GetDatum(-1)));
		rec = allma_jsonb_set_key(rec, "since",
								  allma_jsonb_string(allma_timestamp_iso(since_ts, true)));
		ps->wait_record = allma_jsonb_set_key(NULL, "rateLimit", rec);
		ps->io_request = NULL;
		ps->io_send_headers = NULL;
		ps->io_send_url = NULL;
		ps->io_send_password = NULL;
		ps->io_send_body = NULL;
		run->io = false;
		run->parked = true;
		run->park_until = since_ts;
	}
	MemoryContextSwitchTo(oldcxt);
}

/* ----------------------------------------------------------------
 * Settlement: what the response says
 * ----------------------------------------------------------------
 */

/*
 * a reset time as providers write it: seconds ("1.5"), or a duration of
 * h/m/s/ms parts ("6m0s", "20ms"); microseconds, or -1
 */
static int64
parse_reset(const char *s)
{
	double		total = 0;
	const char *p = s;
	bool		any = false;

	if (s == NULL)
		return -1;
	while (*p == ' ')
		p++;
	while (*p)
	{
		char	   *end;
		double		v = strtod(p, &end);

		if (end == p || v < 0 || isnan(v))
			return -1;
		p = end;
		any = true;
		if (strncmp(p, "ms", 2) == 0)
		{
			total += v / 1000.0;
			p += 2;
		}
		else if (*p == 'h')
		{
			total += v * 3600;
			p++;
		}
		else if (*p == 'm')
		{
			total += v * 60;
			p++;
		}
		else if (*p == 's')
		{
			total += v;
			p++;
		}
		else if (*p == '\0' || *p == ' ')
		{
			total += v;
			while (*p == ' ')
				p++;
			if (*p != '\0')
				return -1;
		}
		else
			return -1;
	}
	if (!any)
		return -1;
	total = Min(total, (double) RL_MAX_PAUSE_US / 1000000.0);
	return (int64) (total * 1000000.0);
}

/* a non-negative integer header, or -1 */
static int64
header_int(Jsonb *headers, const char *name)
{
	char	   *v = allma_jsonb_get_cstring(headers, name);
	char	   *end;
	double		d;

	if (v == NULL)
		return -1;
	d = strtod(v, &end);
	if (end == v || d < 0 || isnan(d))
		return -1;
	return (int64) Min(d, 1e12);
}

/* "remaining" more allowed before now + reset_us: tighten a time (lock held) */
static void
tighten(TimestampTz *tat, double interval, int64 remaining, int64 reset_us, TimestampTz now)
{
	TimestampTz t;

	if (remaining < 0 || reset_us < 0)
		return;
	if (remaining == 0)
		t = now + reset_us;
	else if (interval > 0)
		t = now + reset_us - (int64) Min((double) reset_us, remaining * interval);
	else
		return;
	if (t > *tat)
		*tat = t;
}

void
allma_ratelimit_settle(Jsonb *request, AllmaHttpCompletion *c, Jsonb *details)
{
	Jsonb	   *rec = request ? allma_jsonb_get(request, "rateLimit") : NULL;
	char	   *group;
	double		est = 0;
	double		charged;
	double		in = 0,
				out = 0;
	bool		have_usage = false;
	int64		rem_req,
				rem_tok,
				reset_req,
				reset_tok;
	int64		pause_us = -1;
	TimestampTz now = GetCurrentTimestamp();
	int			gi;

	if (rl == NULL || rec == NULL || (group = allma_jsonb_get_cstring(rec, "group")) == NULL)
		return;
	(void) allma_jsonb_get_number(rec, "tokens", &est);
	est = Max(0, Min(est, 1e12));
	/* a request gated by an older build was charged its estimate */
	if (!allma_jsonb_get_number(rec, "charged", &charged))
		charged = est;
	charged = Max(0, Min(charged, 1e12));
	if (details != NULL)
	{
		Jsonb	   *usage = allma_jsonb_get(details, "tokenUsage");

		if (usage != NULL)
		{
			bool		a = allma_jsonb_get_number(usage, "inputTokens", &in);
			bool		b = allma_jsonb_get_number(usage, "outputTokens", &out);

			have_usage = (a || b) && in >= 0 && out >= 0 && in + out < 1e12;
		}
	}
	rem_req = header_int(c->headers, "x-ratelimit-remaining-requests");
	rem_tok = header_int(c->headers, "x-ratelimit-remaining-tokens");
	reset_req = parse_reset(allma_jsonb_get_cstring(c->headers, "x-ratelimit-reset-requests"));
	reset_tok = parse_reset(allma_jsonb_get_cstring(c->headers, "x-ratelimit-reset-tokens"));
	if (c->status == 429)
		pause_us = c->retry_after_ms >= 0 ?
			Min((int64) c->retry_after_ms * 1000, RL_MAX_PAUSE_US) : INT64CONST(1000000);

	SpinLockAcquire(&rl->mutex);
	gi = find_group_exact(group);
	if (gi >= 0)
	{
		RlGroup    *g = &rl->groups[gi];

		if (g->inflight > 0)
			g->inflight--;
		if (have_usage && est > 0)
		{
			/* the key's used / estimated ratio: what the next requests are charged */
			double		r = Max(RL_RATIO_MIN, Min((in + out) / est, RL_RATIO_MAX));
			double		old = g->tok_ratio > 0 ? g->tok_ratio : 1.0;
			double		weight = g->tok_obs < 5 ? 1.0 / (g->tok_obs + 1) : RL_RATIO_WEIGHT;

			g->tok_ratio = old + weight * (r - old);
			if (g->tok_obs < PG_INT32_MAX)
				g->tok_obs++;
		}
		if (g->settled < PG_INT32_MAX)
			g->settled++;

		/*
		 * settle the charge against the usage: a reply that used less gives
		 * the rest back, one that used more puts the budget into debt that
		 * delays the next grants
		 */
		if (g->tpm > 0 && have_usage)
		{
			int64		delta = (int64) ((in + out - charged) * tok_interval(g));

			if (delta >= 0)
				g->tok_tat += delta;
			else
			{
				/*
				 * tokens given back free the budget after the grants already
				 * handed out, never under them: a second of grants made at
				 * the estimate and then settled lower must not let another
				 * second's worth go in the same second
				 */
				TimestampTz floor = Min(g->tok_tat, Max(now, g->tok_last));

				g->tok_tat = Max(g->tok_tat + delta, floor);
			}
		}
		tighten(&g->req_tat, req_interval(g), rem_req, reset_req, now);
		tighten(&g->tok_tat, tok_interval(g), rem_tok, reset_tok, now);

		/*
		 * none left before the reset: no step of the key may go before it,
		 * granted or not, whatever this row limits
		 */
		if ((rem_req == 0 && reset_req > 0) || (rem_tok == 0 && reset_tok > 0))
			pause_us = Max(pause_us, Max(rem_req == 0 ? reset_req : -1,
										 rem_tok == 0 ? reset_tok : -1));
		if (pause_us >= 0 && now + pause_us > g->paused_until)
		{
			g->paused_until = now + pause_us;
			g->queued = true;
		}
	}
	SpinLockRelease(&rl->mutex);
}

/* ----------------------------------------------------------------
 * The workers' part: reload the limits, release parked steps
 * ----------------------------------------------------------------
 */

/* a free group for a new row (lock held): unused, or no longer configured */
static int
free_group(void)
{
	for (int i = 0; i < RL_MAX_GROUPS; i++)
		if (!rl->groups[i].used)
			return i;
	return -1;
}

static void
reload_limits(TimestampTz now)
{
	int			rc;
	int			nrows;
	int			lost = 0;
	bool		dropped = false;

	if (reload_plan == NULL)
		reload_plan = allma_store_prepare("SELECT key, coalesce(requests_per_minute, 0), "
										  "       coalesce(tokens_per_minute, 0), "
										  "       coalesce(max_concurrent, 0) "
										  "  FROM allma.rate_limits ORDER BY key", 0, NULL);
	rc = SPI_execute_plan(reload_plan, NULL, NULL, true, 0);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "allma: reading allma.rate_limits failed: %s", SPI_result_code_string(rc));
	nrows = (int) SPI_processed;

	SpinLockAcquire(&rl->mutex);
	for (int i = 0; i < RL_MAX_GROUPS; i++)
		if (rl->groups[i].dboid == MyDatabaseId)
			rl->groups[i].seen = false;
	for (int r = 0; r < nrows; r++)
	{
		HeapTuple	tup = SPI_tuptable->vals[r];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		text	   *kt = DatumGetTextPP(SPI_getbinval(tup, desc, 1, &isnull));
		int32		rpm = DatumGetInt32(SPI_getbinval(tup, desc, 2, &isnull));
		int32		tpm = DatumGetInt32(SPI_getbinval(tup, desc, 3, &isnull));
		int32		maxc = DatumGetInt32(SPI_getbinval(tup, desc, 4, &isnull));
		int			len = VARSIZE_ANY_EXHDR(kt);
		char		key[ALLMA_RATE_LIMIT_KEY_MAX + 1];
		int			gi;
		RlGroup    *g;

		if (len > ALLMA_RATE_LIMIT_KEY_MAX)
			continue;			/* the table's check forbids it */
		memcpy(key, VARDATA_ANY(kt), len);
		key[len] = '\0';
		gi = find_group_exact(key);
		if (gi < 0)
		{
			gi = free_group();
			if (gi < 0)
			{
				lost++;
				continue;
			}
			g = &rl->groups[gi];
			memset(g, 0, sizeof(RlGroup));
			g->used = true;
			g->configured = true;
			rl->nconfigured++;
			g->dboid = MyDatabaseId;
			g->tok_ratio = 1.0;
			strlcpy(g->key, key, sizeof(g->key));
			g->rpm = rpm;
			g->tpm = tpm;
			/* conservative: as if a request and a second of tokens had just gone */
			g->req_tat = now + (int64) ceil(req_interval(g));
			g->tok_tat = now + (tpm > 0 ? INT64CONST(1000000) : 0);
			/* parked steps of an earlier life may be waiting */
			g->queued = true;
		}
		g = &rl->groups[gi];
		if (g->rpm != rpm || g->tpm != tpm)
		{
			/* a changed limit counts from now: no slot later than its own spacing */
			g->rpm = rpm;
			g->tpm = tpm;
			g->req_tat = Min(g->req_tat, now + (int64) ceil(req_interval(g)));
			g->tok_tat = Min(g->tok_tat, now + (tpm > 0 ? INT64CONST(1000000) : 0));
		}
		g->maxc = maxc;
		g->seen = true;
	}
	for (int i = 0; i < RL_MAX_GROUPS; i++)
	{
		RlGroup    *g = &rl->groups[i];

		if (g->used && g->dboid == MyDatabaseId && !g->seen)
		{
			g->used = g->configured = false;
			rl->nconfigured--;
			dropped = true;
		}
	}
	SpinLockRelease(&rl->mutex);
	has_limits = nrows > 0;

	/*
	 * Steps parked on a limit that is gone (dropped now, or while no worker
	 * ran: looked for once per worker process) run again, and pass the
	 * gate of whatever governs them now.
	 */
	if (dropped || !swept_orphans)
	{
		if (orphan_plan == NULL)
			orphan_plan = allma_store_prepare("UPDATE allma.execution_paths p "
											  "   SET status = 'READY', due_at = clock_timestamp() "
											  " WHERE p.status = 'WAITING' AND p.request ? 'rateLimit' "
											  "   AND NOT EXISTS (SELECT FROM allma.rate_limits r "
											  "                    WHERE r.key = p.request->'rateLimit'->>'group')",
											  0, NULL);
		rc = SPI_execute_plan(orphan_plan, NULL, NULL, false, 0);
		if (rc != SPI_OK_UPDATE)
			elog(ERROR, "allma: releasing steps parked on dropped rate limits failed: %s",
				 SPI_result_code_string(rc));
		swept_orphans = true;
	}
	if (lost > 0)
		ereport(WARNING,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("allma: %d rate limits are not enforced: at most %d keys fit in shared memory",
						lost, RL_MAX_GROUPS),
				 errhint("Use fewer rows in allma.rate_limits (subkeys share their group's row).")));
}

/* the in-flight requests of a group, counted again from the table */
static void
resync_inflight(int gi, const char *group)
{
	Datum		arg = CStringGetTextDatum(group);
	Oid			types[1] = {TEXTOID};
	int			rc;
	bool		isnull;
	int64		n;

	if (resync_plan == NULL)
		resync_plan = allma_store_prepare("SELECT count(*) FROM allma.execution_paths "
										  " WHERE status = 'INFLIGHT' "
										  "   AND request->'rateLimit'->>'group' = $1", 1, types);
	rc = SPI_execute_plan(resync_plan, &arg, NULL, true, 1);
	if (rc != SPI_OK_SELECT || SPI_processed != 1)
		return;
	n = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	SpinLockAcquire(&rl->mutex);
	if (rl->groups[gi].used && strcmp(rl->groups[gi].key, group) == 0)
		rl->groups[gi].inflight = (int32) Min(n, PG_INT32_MAX);
	SpinLockRelease(&rl->mutex);
}

/*
 * release_group hands the budget of the next second of group gi to its
 * parked steps, round robin over their subkeys.  The caller made this
 * backend the group's releaser.
 */
static void
release_group(int gi, const char *group, int want, TimestampTz now)
{
	Oid			pick_types[3] = {TEXTOID, INT4OID, TEXTOID};
	Datum		pick_args[3];
	char		cursor[ALLMA_RATE_LIMIT_KEY_MAX + 1];
	int			rc;
	int			nrows;
	Datum	   *execs;
	Datum	   *paths;
	Datum	   *slots;
	Datum	   *charges;
	int			n = 0;
	bool		drained;
	int64		epoch = rl->epoch;

	if (pick_plan == NULL)
		pick_plan = allma_store_prepare(
										"SELECT execution_id, path_id, "
										"       coalesce((request->'rateLimit'->>'tokens')::bigint, 0), sk "
										"  FROM (SELECT execution_id, path_id, due_at, "
										"               coalesce(request->'rateLimit'->>'subkey', '') AS sk, "
										"               row_number() OVER (PARTITION BY request->'rateLimit'->>'subkey' "
										"                                  ORDER BY due_at, execution_id, path_id) AS rn, "
										"               request "
										"          FROM allma.execution_paths "
										"         WHERE status = 'WAITING' AND request ? 'rateLimit' "
										"           AND request->'rateLimit'->>'group' = $1) q "
										" ORDER BY rn, sk COLLATE \"C\" <= $3, sk COLLATE \"C\", due_at, execution_id, path_id "
										" LIMIT $2",
										3, pick_types);
	SpinLockAcquire(&rl->mutex);
	strlcpy(cursor, rl->groups[gi].cursor, sizeof(cursor));
	SpinLockRelease(&rl->mutex);
	pick_args[0] = CStringGetTextDatum(group);
	pick_args[1] = Int32GetDatum(want);
	pick_args[2] = CStringGetTextDatum(cursor);
	rc = SPI_execute_plan(pick_plan, pick_args, NULL, true, want);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "allma: picking parked steps failed: %s", SPI_result_code_string(rc));
	nrows = (int) SPI_processed;
	execs = palloc(sizeof(Datum) * Max(nrows, 1));
	paths = palloc(sizeof(Datum) * Max(nrows, 1));
	slots = palloc(sizeof(Datum) * Max(nrows, 1));
	charges = palloc(sizeof(Datum) * Max(nrows, 1));

	SpinLockAcquire(&rl->mutex);
	{
		RlGroup    *g = &rl->groups[gi];

		for (int r = 0; r < nrows; r++)
		{
			bool		isnull;
			int64		tokens;
			TimestampTz slot = next_slot(g, now);

			if (slot >= now + RL_HORIZON_US)
				break;

			/*
			 * until the first reply taught the ratio, one grant at a time: a
			 * second of grants charged the whole estimate would leave most
			 * of that second's tokens unused
			 */
			if (g->tpm > 0 && g->settled == 0 && (n > 0 || g->inflight > 0))
				break;
			tokens = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[r],
												 SPI_tuptable->tupdesc, 3, &isnull));
			tokens = g->tpm > 0 ? charge_of(g, Max(tokens, 0)) : tokens;
			take_slot(g, slot, tokens);
			slots[n] = TimestampTzGetDatum(slot);
			charges[n] = Int64GetDatum(tokens);
			n++;
		}
		drained = n == nrows && nrows < want;
		if (drained)
			g->queued = false;
	}
	SpinLockRelease(&rl->mutex);

	/* the next release goes on with the subkey after the last one served */
	if (n > 0)
	{
		char	   *sk = SPI_getvalue(SPI_tuptable->vals[n - 1], SPI_tuptable->tupdesc, 4);

		SpinLockAcquire(&rl->mutex);
		strlcpy(rl->groups[gi].cursor, sk ? sk : "", sizeof(rl->groups[gi].cursor));
		SpinLockRelease(&rl->mutex);
	}

	for (int r = 0; r < n; r++)
	{
		bool		isnull;

		execs[r] = SPI_getbinval(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, 1, &isnull);
		paths[r] = SPI_getbinval(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, 2, &isnull);
	}
	if (n > 0)
	{
		Oid			types[5] = {UUIDARRAYOID, INT8ARRAYOID, TIMESTAMPTZARRAYOID, INT8OID, INT8ARRAYOID};
		Datum		args[5];

		if (grant_plan == NULL)
			grant_plan = allma_store_prepare(
											 "UPDATE allma.execution_paths p "
											 "   SET status = 'READY', due_at = u.slot, "
											 "       request = jsonb_set(p.request, '{rateLimit,grant}', "
											 "                 jsonb_build_object('epoch', $4, 'slot', u.slot, "
											 "                                    'charged', u.charged)) "
											 "  FROM unnest($1, $2, $3, $5) AS u(e, pid, slot, charged) "
											 " WHERE p.execution_id = u.e AND p.path_id = u.pid "
											 "   AND p.status = 'WAITING' AND p.request ? 'rateLimit'",
											 5, types);
		args[0] = PointerGetDatum(construct_array(execs, n, UUIDOID, UUID_LEN, false, TYPALIGN_CHAR));
		args[1] = PointerGetDatum(construct_array(paths, n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
		args[2] = PointerGetDatum(construct_array(slots, n, TIMESTAMPTZOID, 8, FLOAT8PASSBYVAL,
												  TYPALIGN_DOUBLE));
		args[3] = Int64GetDatum(epoch);
		args[4] = PointerGetDatum(construct_array(charges, n, INT8OID, 8, FLOAT8PASSBYVAL,
												  TYPALIGN_DOUBLE));
		rc = SPI_execute_plan(grant_plan, args, NULL, false, 0);
		if (rc != SPI_OK_UPDATE)
			elog(ERROR, "allma: releasing parked steps failed: %s", SPI_result_code_string(rc));
	}
}

void
allma_ratelimit_pass(void)
{
	TimestampTz now = GetCurrentTimestamp();

	if (rl == NULL)
		return;
	if (last_reload == 0 || now - last_reload >= RL_RELOAD_EVERY_US)
	{
		reload_limits(now);
		last_reload = now;
	}
	if (!has_limits_hint())
		return;

	for (int gi = 0; gi < RL_MAX_GROUPS; gi++)
	{
		RlGroup    *g = &rl->groups[gi];
		char		group[ALLMA_RATE_LIMIT_KEY_MAX + 1];
		int			want = 0;
		bool		mine = false;
		bool		resync = false;

		SpinLockAcquire(&rl->mutex);
		if (g->used && g->configured && g->dboid == MyDatabaseId &&
			g->paused_until <= now &&
			now - g->last_release >= (g->queued ? RL_RELEASE_EVERY_US : RL_SWEEP_EVERY_US) &&
			(g->releaser == 0 || g->releaser == MyProcPid ||
			 now - g->releasing_since >= RL_RELEASER_STALE_US))
		{
			double		interval = req_interval(g);

			want = interval > 0 ? (int) Min((double) RL_MAX_RELEASE,
											(double) RL_HORIZON_US / interval + 1) : RL_MAX_RELEASE;
			if (g->maxc > 0)
				want = Min(want, g->maxc - g->inflight);
			resync = g->maxc > 0 && now - g->last_resync >= RL_SWEEP_EVERY_US;
			if (resync)
				g->last_resync = now;
			g->releaser = MyProcPid;
			g->releasing_since = now;
			g->last_release = now;
			strlcpy(group, g->key, sizeof(group));
			mine = true;
		}
		SpinLockRelease(&rl->mutex);
		if (!mine)
			continue;

		PG_TRY();
		{
			if (resync)
			{
				resync_inflight(gi, group);
				SpinLockAcquire(&rl->mutex);
				want = g->maxc > 0 ? Min(want, g->maxc - g->inflight) : want;
				SpinLockRelease(&rl->mutex);
			}
			if (want > 0)
				release_group(gi, group, want, now);
		}
		PG_FINALLY();
		{
			SpinLockAcquire(&rl->mutex);
			if (g->releaser == MyProcPid)
				g->releaser = 0;
			SpinLockRelease(&rl->mutex);
		}
		PG_END_TRY();
	}
}

long
allma_ratelimit_wake_ms(void)
{
	long		ms = -1;

	if (rl == NULL || !has_limits_hint())
		return -1;
	SpinLockAcquire(&rl->mutex);
	for (int i = 0; i < RL_MAX_GROUPS; i++)
	{
		RlGroup    *g = &rl->groups[i];

		if (!g->used || !g->configured || g->dboid != MyDatabaseId)
			continue;
		ms = g->queued ? RL_RELEASE_EVERY_US / 1000 : (ms < 0 ? RL_SWEEP_EVERY_US / 1000 : ms);
		if (g->queued && g->paused_until > GetCurrentTimestamp())
			ms = Max(ms, (long) ((g->paused_until - GetCurrentTimestamp()) / 1000) + 1);
	}
	SpinLockRelease(&rl->mutex);
	return ms;
}

/* ----------------------------------------------------------------
 * Definitions
 * ----------------------------------------------------------------
 */

void
allma_ratelimit_check_step(AllmaChecker *ck, JsonbContainer *step)
{
	char	   *s = allma_def_get_template_string(ck, step, NULL, "rateLimitKey", false);

	if (s != NULL && strlen(s) > ALLMA_RATE_LIMIT_KEY_MAX * 4)
		ereport(ERROR,
				(errcode(ERRCODE_ALLMA_INVALID_DEFINITION),
				 errmsg("%s is %zu bytes long, more than %d",
						allma_def_where(ck, "rateLimitKey"), strlen(s), ALLMA_RATE_LIMIT_KEY_MAX * 4),
				 errhint("A rendered key may have at most %d bytes.", ALLMA_RATE_LIMIT_KEY_MAX)));
}

/* ----------------------------------------------------------------
 * allma_rate_limit_status(): the shared state of this database's limits
 * ----------------------------------------------------------------
 */

PG_FUNCTION_INFO_V1(allma_rate_limit_status);

Datum
allma_rate_limit_status(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	RlGroup    *copy;
	int			n = 0;

	InitMaterializedSRF(fcinfo, 0);
	if (rl == NULL)
		PG_RETURN_VOID();
	copy = palloc(sizeof(RlGroup) * RL_MAX_GROUPS);
	SpinLockAcquire(&rl->mutex);
	for (int i = 0; i < RL_MAX_GROUPS; i++)
		if (rl->groups[i].used && rl->groups[i].configured &&
			rl->groups[i].dboid == MyDatabaseId)
			copy[n++] = rl->groups[i];
	SpinLockRelease(&rl->mutex);

	for (int i = 0; i < n; i++)
	{
		RlGroup    *g = &copy[i];
		Datum		values[9];
		bool		nulls[9];

		memset(nulls, 0, sizeof(nulls));
		values[0] = CStringGetTextDatum(g->key);
		values[1] = Int32GetDatum(g->rpm);
		nulls[1] = g->rpm == 0;
		values[2] = Int32GetDatum(g->tpm);
		nulls[2] = g->tpm == 0;
		values[3] = Int32GetDatum(g->maxc);
		nulls[3] = g->maxc == 0;
		values[4] = Int32GetDatum(g->inflight);
		values[5] = BoolGetDatum(g->queued);
		values[6] = TimestampTzGetDatum(g->req_tat);
		nulls[6] = g->rpm == 0;
		values[7] = TimestampTzGetDatum(g->tok_tat);
		nulls[7] = g->tpm == 0;
		values[8] = TimestampTzGetDatum(g->paused_until);
		nulls[8] = g->paused_until == 0;
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	PG_RETURN_VOID();
}
