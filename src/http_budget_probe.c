/*-------------------------------------------------------------------------
 *
 * http_budget_probe.c
 *	  A test hook that shows the HTTP client's byte budget at work.
 *
 * allma_test_http_budget(urls text[], max_inflight_bytes bigint,
 * max_response_bytes bigint) RETURNS jsonb sends a GET to every URL through
 * a private client (the workers' code, allow-list 127.0.0.1 only) with
 * that budget (0: none) and reports {completed, ok, bytes, peakInflightBytes,
 * maxPollBytes}: how many requests completed, how many with status 200,
 * the body bytes received, the most bytes of response buffers the client
 * held at once, and the most body bytes one poll handed out.  Not declared
 * by the extension script: the tests declare it (CREATE FUNCTION ... AS
 * 'MODULE_PATHNAME'), as superuser.
 *
 * IDENTIFICATION
 *	  src/http_budget_probe.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "http.h"
#include "jsonb_util.h"

#define PROBE_POLL_BATCH	64
#define PROBE_TIMEOUT_MS	(120 * 1000)

PG_FUNCTION_INFO_V1(allma_test_http_budget);

Datum
allma_test_http_budget(PG_FUNCTION_ARGS)
{
	ArrayType  *arr = PG_GETARG_ARRAYTYPE_P(0);
	int64		budget = PG_GETARG_INT64(1);
	int64		max_response = PG_GETARG_INT64(2);
	Datum	   *urls;
	bool	   *nulls;
	int			n;
	AllmaHttpLimits limits;
	AllmaHttpClient *client;
	MemoryContext pollcxt;
	MemoryContext oldcxt;
	int64		completed = 0,
				ok = 0,
				bytes = 0,
				max_poll = 0;
	size_t		peak = 0;
	TimestampTz deadline = GetCurrentTimestamp() + (TimestampTz) PROBE_TIMEOUT_MS * 1000;
	Jsonb	   *out;

	if (!superuser())
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("allma_test_http_budget is a test hook for superusers")));
	deconstruct_array(arr, TEXTOID, -1, false, TYPALIGN_INT, &urls, &nulls, &n);

	memset(&limits, 0, sizeof(limits));
	limits.max_in_flight = 1000;
	limits.max_per_host = 1000;
	limits.max_response_bytes = (size_t) max_response;
	limits.max_inflight_bytes = (size_t) budget;
	limits.allowlist = "127.0.0.1";
	client = allma_http_client_create(&limits);
	for (int i = 0; i < n; i++)
	{
		AllmaHttpRequest req;

		if (nulls[i])
			continue;
		memset(&req, 0, sizeof(req));
		req.method = "GET";
		req.url = TextDatumGetCString(urls[i]);
		allma_http_submit(client, &req);
	}

	pollcxt = AllocSetContextCreate(CurrentMemoryContext, "allma budget probe",
									ALLOCSET_DEFAULT_SIZES);
	while (allma_http_in_flight(client) > 0 || allma_http_queued(client) > 0)
	{
		AllmaHttpCompletion done[PROBE_POLL_BATCH];
		int			got;
		int64		poll_bytes = 0;

		CHECK_FOR_INTERRUPTS();
		if (GetCurrentTimestamp() > deadline)
			break;
		oldcxt = MemoryContextSwitchTo(pollcxt);
		got = allma_http_poll(client, 100, done, PROBE_POLL_BATCH);
		MemoryContextSwitchTo(oldcxt);
		for (int i = 0; i < got; i++)
		{
			completed++;
			if (done[i].error == NULL && done[i].status == 200)
				ok++;
			bytes += done[i].body_len;
			poll_bytes += done[i].body_len;
		}
		max_poll = Max(max_poll, poll_bytes);
		MemoryContextReset(pollcxt);
	}
	(void) allma_http_inflight_bytes(client, &peak);
	allma_http_client_destroy(client);
	MemoryContextDelete(pollcxt);

	out = allma_jsonb_set_key(NULL, "completed", allma_jsonb_int(completed));
	out = allma_jsonb_set_key(out, "ok", allma_jsonb_int(ok));
	out = allma_jsonb_set_key(out, "bytes", allma_jsonb_int(bytes));
	out = allma_jsonb_set_key(out, "peakInflightBytes", allma_jsonb_int((int64) peak));
	out = allma_jsonb_set_key(out, "maxPollBytes", allma_jsonb_int(max_poll));
	PG_RETURN_JSONB_P(out);
}
