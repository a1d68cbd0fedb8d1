/*-------------------------------------------------------------------------
 *
 * retry.c
 *	  Retry decisions: a step's own onError rules, then allma.retry_policies.
 *
 * Allma declares onError.retries but never reads it; allma honours it, with
 * Step Functions' extra fields.  The rules, in order:
 *
 *	1. ContentBasedRetryableError with onError.retryOnContentError: retried
 *	   "count" times (default 1) after intervalSeconds (default 0, i.e. at
 *	   once) times backoffRate^(n-1).  The attempt counter is durable, which
 *	   fixes Allma's counter that reset on every retry.
 *	2. onError.retries whose errorEquals lists the error name (or
 *	   "States.ALL", or has no errorEquals at all): retried "count" times
 *	   after intervalSeconds (default 5) times backoffRate (default 2.0)
 *	   ^(n-1), capped by maxDelaySeconds; jitterStrategy FULL draws the delay
 *	   uniformly from [0, delay].  When this rule matches it alone decides.
 *	3. Otherwise the first row of allma.retry_policies (by priority) whose
 *	   error_equals lists the name or 'States.ALL'.
 *
 * Attempt n is the n-th attempt of the step on this visit, so retry n
 * happens when attempt n (n <= count) fails.
 *
 * IDENTIFICATION
 *	  src/retry.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "catalog/pg_type.h"
#include "common/pg_prng.h"
#include "executor/spi.h"
#include "utils/builtins.h"

#include "jsonb_util.h"
#include "limit_gucs.h"
#include "retry.h"

static SPIPlanPtr policy_plan = NULL;

void
allma_retry_reset(void)
{
	if (policy_plan != NULL)
		SPI_freeplan(policy_plan);
	policy_plan = NULL;
}

static double
get_number(Jsonb *obj, const char *key, double dflt)
{
	double		d;

	return allma_jsonb_get_number(obj, key, &d) ? d : dflt;
}

static bool
name_listed(Jsonb *list, const char *name)
{
	List	   *elems;
	ListCell   *lc;

	if (!allma_jsonb_is_array(list))
		return true;			/* no errorEquals: every error */
	elems = allma_jsonb_array_elements(list);
	foreach(lc, elems)
	{
		JsonbValue	v;

		if (allma_jsonb_scalar(lfirst(lc), &v) && v.type == jbvString &&
			((v.val.string.len == strlen(name) &&
			  strncmp(v.val.string.val, name, v.val.string.len) == 0) ||
			 (v.val.string.len == 10 && strncmp(v.val.string.val, "States.ALL", 10) == 0)))
			return true;
	}
	return false;
}

static int64
compute_delay(double interval_s, double backoff, int retry_no,
			  double max_delay_s, bool full_jitter)
{
	double		delay = interval_s * pow(backoff, retry_no - 1);

	if (max_delay_s > 0 && delay > max_delay_s)
		delay = max_delay_s;
	if (full_jitter)
		delay *= pg_prng_double(&pg_global_prng_state);
	delay *= allma_timer_scale;
	return (int64) (delay * 1000.0);
}

static int64
default_policy_delay(const char *error_name, int attempt)
{
	Datum		arg;
	int64		result = -1;

	SPI_connect();
	if (policy_plan == NULL)
	{
		Oid			type = TEXTOID;

		policy_plan = SPI_prepare("SELECT interval_seconds, backoff_rate, max_retries, "
								  "       coalesce(max_delay_seconds, 0), jitter = 'FULL' "
								  "FROM allma.retry_policies "
								  "WHERE $1 = ANY (error_equals) OR 'States.ALL' = ANY (error_equals) "
								  "ORDER BY priority, policy_name LIMIT 1", 1, &type);
		if (policy_plan == NULL)
			elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
		SPI_keepplan(policy_plan);
	}
	arg = CStringGetTextDatum(error_name);
	if (SPI_execute_plan(policy_plan, &arg, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read allma.retry_policies");
	if (SPI_processed == 1)
	{
		HeapTuple	tup = SPI_tuptable->vals[0];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		double		interval = DatumGetFloat8(SPI_getbinval(tup, desc, 1, &isnull));
		double		backoff = DatumGetFloat8(SPI_getbinval(tup, desc, 2, &isnull));
		int			max_retries = DatumGetInt32(SPI_getbinval(tup, desc, 3, &isnull));
		double		max_delay = DatumGetFloat8(SPI_getbinval(tup, desc, 4, &isnull));
		bool		jitter = DatumGetBool(SPI_getbinval(tup, desc, 5, &isnull));

		if (attempt <= max_retries)
			result = compute_delay(interval, backoff, attempt, max_delay, jitter);
	}
	SPI_finish();
	return result;
}

static int64 rule_delay_ms(AllmaStep *step, const char *error_name, int attempt,
						   const char **policy);

int64
allma_retry_delay_ms(AllmaStep *step, const char *error_name, int attempt,
					 Jsonb *error, const char **policy)
{
	int64		delay = rule_delay_ms(step, error_name, attempt, policy);
	double		retry_after;

	if (delay >= 0 &&
		allma_jsonb_get_number(allma_jsonb_get(error, "errorDetails"), "retryAfterMs", &retry_after))
		delay = Max(delay, (int64) (Min(retry_after, (double) allma_max_retry_after_ms) *
									allma_timer_scale));
	return delay;
}

static int64
rule_delay_ms(AllmaStep *step, const char *error_name, int attempt,
			  const char **policy)
{
	Jsonb	   *on_error = step->on_error;
	Jsonb	   *rule;

	*policy = NULL;

	/* 1. content errors with retryOnContentError */
	rule = on_error ? allma_jsonb_get(on_error, "retryOnContentError") : NULL;
	if (allma_jsonb_is_object(rule) && strcmp(error_name, ALLMA_ERR_CONTENT) == 0)
	{
		int			count = (int) get_number(rule, "count", 1);

		*policy = "onError.retryOnContentError";
		if (attempt > count)
			return -1;
		return compute_delay(get_number(rule, "intervalSeconds", 0),
							 get_number(rule, "backoffRate", 1), attempt,
							 get_number(rule, "maxDelaySeconds", 0), false);
	}

	/* 2. the step's own retries */
	rule = on_error ? allma_jsonb_get(on_error, "retries") : NULL;
	if (allma_jsonb_is_object(rule) &&
		name_listed(allma_jsonb_get(rule, "errorEquals"), error_name))
	{
		int			count = (int) get_number(rule, "count", 0);
		char	   *jitter = allma_jsonb_get_cstring(rule, "jitterStrategy");

		*policy = "onError.retries";
		if (attempt > count)
			return -1;
		return compute_delay(get_number(rule, "intervalSeconds", 5),
							 get_number(rule, "backoffRate", 2), attempt,
							 get_number(rule, "maxDelaySeconds", 0),
							 jitter != NULL && strcmp(jitter, "FULL") == 0);
	}

	/* 3. the defaults */
	*policy = "allma.retry_policies";
	return default_policy_delay(error_name, attempt);
}
