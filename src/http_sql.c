/*-------------------------------------------------------------------------
 *
 * http_sql.c
 *	  The SQL debug functions of allma's HTTP client: allma_http_request
 *	  (one request) and allma_http_batch (many, concurrently), run
 *	  synchronously through the same client code the workers use.
 *
 * They run in the caller's session: a new client per call, destroyed when
 * the call ends or fails; cancellable.  The "allow" option (an allow-list
 * for this call only) is for superusers.
 *
 * IDENTIFICATION
 *	  src/http_sql.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "common/base64.h"
#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"

#include "compat.h"
#include "http.h"
#include "jsonb_util.h"

PG_FUNCTION_INFO_V1(allma_http_request);
PG_FUNCTION_INFO_V1(allma_http_batch);

#define MAX_BATCH 100000

static void
bad_option_value(const char *name, const char *want)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid value for option \"%s\"", name),
			 errdetail("The value must be %s.", want)));
}

/* is v absent or a JSON null? */
static bool
absent(Jsonb *v)
{
	JsonbValue	sv;

	return v == NULL || (allma_jsonb_scalar(v, &sv) && sv.type == jbvNull);
}

/* an integer option in [min, max]; false when absent or null */
static bool
get_int_option(Jsonb *opts, const char *name, int64 min, int64 max, int64 *out)
{
	double		d;

	if (absent(allma_jsonb_get(opts, name)))
		return false;
	if (!allma_jsonb_get_number(opts, name, &d) || d != floor(d) || d < min || d > max)
		bad_option_value(name, psprintf("an integer between " INT64_FORMAT " and " INT64_FORMAT, min, max));
	*out = (int64) d;
	return true;
}

/* a string option; NULL when absent or null */
static char *
get_string_option(Jsonb *opts, const char *name)
{
	char	   *s;

	if (absent(allma_jsonb_get(opts, name)))
		return NULL;
	s = allma_jsonb_get_cstring(opts, name);
	if (s == NULL)
		bad_option_value(name, "a string");
	return s;
}

/* rejects keys of opts that are not in the NULL-terminated list known */
static void
check_option_names(Jsonb *opts, const char *what, const char *const *known)
{
	ListCell   *lc;

	if (opts == NULL)
		return;
	if (!allma_jsonb_is_object(opts))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be a JSON object", what)));
	foreach(lc, allma_jsonb_object_keys(opts))
	{
		const char *key = lfirst(lc);
		const char *const *k;

		for (k = known; *k; k++)
			if (strcmp(*k, key) == 0)
				break;
		if (*k == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_ALLMA_INVALID_OPTION),
					 errmsg("unknown option \"%s\" in %s", key, what)));
	}
}

/* headers jsonb object -> AllmaHttpHeader array */
static void
headers_from_jsonb(Jsonb *headers, AllmaHttpRequest *req)
{
	List	   *keys;
	ListCell   *lc;
	AllmaHttpHeader *arr;
	int			n = 0;

	req->headers = NULL;
	req->nheaders = 0;
	if (absent(headers))
		return;
	if (!allma_jsonb_is_object(headers))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("headers must be a JSON object")));
	keys = allma_jsonb_object_keys(headers);
	arr = palloc0(sizeof(AllmaHttpHeader) * Max(list_length(keys), 1));
	foreach(lc, keys)
	{
		char	   *name = lfirst(lc);
		Jsonb	   *v = allma_jsonb_get(headers, name);
		JsonbValue	sv;

		if (!allma_jsonb_scalar(v, &sv) || sv.type == jbvNull)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("value of header \"%s\" must be a string, number or boolean", name)));
		arr[n].name = name;
		arr[n].value = sv.type == jbvString ? pnstrdup(sv.val.string.val, sv.val.string.len)
			: allma_jsonb_to_cstring(v);
		n++;
	}
	req->headers = arr;
	req->nheaders = n;
}

/* per-request options: timeoutMs, maxBytes, idempotencyKey */
static void
request_options(Jsonb *opts, AllmaHttpRequest *req)
{
	int64		v;

	if (get_int_option(opts, "timeoutMs", 1, INT_MAX, &v))
		req->timeout_ms = (long) v;
	if (get_int_option(opts, "maxBytes", 1, ALLMA_HTTP_MAX_RESPONSE_BYTES_LIMIT, &v))
		req->max_response_bytes = (size_t) v;
	req->idempotency_key = get_string_option(opts, "idempotencyKey");
}

/* client options common to both functions: allow, maxRedirects */
static void
client_options(Jsonb *opts, AllmaHttpLimits *limits)
{
	int64		v;

	limits->allowlist = get_string_option(opts, "allow");
	if (limits->allowlist != NULL && !superuser())
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to use option \"allow\""),
				 errdetail("Only superusers may allow destinations that are refused by default.")));
	if (get_int_option(opts, "maxRedirects", 0, 100, &v))
		limits->max_redirects = v == 0 ? -1 : (int) v;
}

/*
 * run_requests submits reqs through a new client and waits for all of
 * them; returns their completions in order.  Cancellable; the client is
 * destroyed on any error.
 */
static AllmaHttpCompletion *
run_requests(const AllmaHttpLimits *limits, AllmaHttpRequest *reqs, int n)
{
	AllmaHttpCompletion *results = palloc0(sizeof(AllmaHttpCompletion) * Max(n, 1));
	AllmaHttpCompletion buf[64];
	AllmaHttpClient *volatile client = allma_http_client_create(limits);

	PG_TRY();
	{
		int			remaining = n;
		int			i;

		for (i = 0; i < n; i++)
		{
			reqs[i].tag = (void *) (intptr_t) i;
			allma_http_submit(client, &reqs[i]);
		}
		while (remaining > 0)
		{
			int			k;

			CHECK_FOR_INTERRUPTS();
			k = allma_http_poll(client, 100, buf, lengthof(buf));
			for (i = 0; i < k; i++)
			{
				results[(intptr_t) buf[i].tag] = buf[i];
				remaining--;
			}
		}
	}
	PG_FINALLY();
	{
		allma_http_client_destroy(client);
	}
	PG_END_TRY();
	return results;
}

static void
put_key(JsonbParseState **st, const char *key)
{
	JsonbValue	v;

	v.type = jbvString;
	v.val.string.val = (char *) key;
	v.val.string.len = strlen(key);
	pushJsonbValue(st, WJB_KEY, &v);
}

static void
put_string(JsonbParseState **st, const char *key, const char *s, size_t len)
{
	JsonbValue	v;

	put_key(st, key);
	if (s == NULL)
		v.type = jbvNull;
	else
	{
		v.type = jbvString;
		v.val.string.val = (char *) s;
		v.val.string.len = len;
	}
	pushJsonbValue(st, WJB_VALUE, &v);
}

static void
put_number(JsonbParseState **st, const char *key, double d, bool is_null)
{
	JsonbValue	v;

	put_key(st, key);
	if (is_null)
		v.type = jbvNull;
	else
	{
		v.type = jbvNumeric;
		if (d == floor(d) && fabs(d) < 1e15)
			v.val.numeric = int64_to_numeric((int64) d);
		else
			v.val.numeric = DatumGetNumeric(DirectFunctionCall1(float8_numeric,
																Float8GetDatum(round(d * 1000.0) / 1000.0)));
	}
	pushJsonbValue(st, WJB_VALUE, &v);
}

static void
put_bool(JsonbParseState **st, const char *key, bool b)
{
	JsonbValue	v;

	put_key(st, key);
	v.type = jbvBool;
	v.val.boolean = b;
	pushJsonbValue(st, WJB_VALUE, &v);
}

static void
put_jsonb(JsonbParseState **st, const char *key, Jsonb *jb)
{
	put_key(st, key);
	allma_jsonb_push(st, WJB_VALUE, jb);
}

/*
 * completion_to_jsonb: {status, headers, body | bodyBase64, contentType,
 * url, redirects, retryAfterMs, durationMs, error}.  A body that is not
 * valid text in the database encoding comes as bodyBase64.
 */
static Jsonb *
completion_to_jsonb(AllmaHttpCompletion *c)
{
	JsonbParseState *st = NULL;
	JsonbValue *res;
	bool		ok = c->error == NULL;

	pushJsonbValue(&st, WJB_BEGIN_OBJECT, NULL);
	put_number(&st, "status", c->status, c->status == 0);
	put_jsonb(&st, "headers", c->headers);
	if (!ok)
		put_string(&st, "body", NULL, 0);
	else if (memchr(c->body, '\0', c->body_len) == NULL &&
			 pg_verify_mbstr(GetDatabaseEncoding(), c->body, c->body_len, true))
		put_string(&st, "body", c->body, c->body_len);
	else
	{
		int			enclen = pg_b64_enc_len(c->body_len);
		char	   *enc = palloc(enclen + 1);
		int			n = allma_b64_encode(c->body, c->body_len, enc, enclen);

		if (n < 0)
			elog(ERROR, "could not encode response body");
		put_string(&st, "bodyBase64", enc, n);
	}
	put_number(&st, "bodyBytes", (double) c->body_len, false);
	put_string(&st, "contentType", c->content_type,
			   c->content_type ? strlen(c->content_type) : 0);
	put_string(&st, "url", c->effective_url, strlen(c->effective_url));
	put_number(&st, "redirects", c->redirects, false);
	put_number(&st, "retryAfterMs", (double) c->retry_after_ms, c->retry_after_ms < 0);
	put_number(&st, "durationMs", c->total_ms, false);
	put_key(&st, "error");
	if (ok)
	{
		JsonbValue	v;

		v.type = jbvNull;
		pushJsonbValue(&st, WJB_VALUE, &v);
	}
	else
	{
		pushJsonbValue(&st, WJB_BEGIN_OBJECT, NULL);
		put_number(&st, "code", c->curl_code, false);
		put_string(&st, "message", c->error, strlen(c->error));
		put_bool(&st, "timedOut", c->timed_out);
		put_bool(&st, "tooLarge", c->too_large);
		put_bool(&st, "refused", c->refused_destination);
		pushJsonbValue(&st, WJB_END_OBJECT, NULL);
	}
	res = pushJsonbValue(&st, WJB_END_OBJECT, NULL);
	return JsonbValueToJsonb(res);
}

/*
 * allma_http_request(method text, url text, headers jsonb, body text,
 * options jsonb) RETURNS jsonb: one request, synchronously, through the
 * same client code the workers use.  Options: timeoutMs, maxBytes,
 * idempotencyKey, maxRedirects, allow (superuser only).  Transport
 * failures are reported in the result's "error", not raised; invalid
 * arguments raise.
 */
Datum
allma_http_request(PG_FUNCTION_ARGS)
{
	static const char *const known[] = {"timeoutMs", "maxBytes", "idempotencyKey",
	"maxRedirects", "allow", NULL};
	Jsonb	   *headers = PG_ARGISNULL(2) ? NULL : PG_GETARG_JSONB_P(2);
	Jsonb	   *opts = PG_ARGISNULL(4) ? NULL : PG_GETARG_JSONB_P(4);
	AllmaHttpRequest req;
	AllmaHttpLimits limits;
	AllmaHttpCompletion *c;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("method and url must not be null")));

	check_option_names(opts, "options", known);
	memset(&req, 0, sizeof(req));
	memset(&limits, 0, sizeof(limits));
	req.method = text_to_cstring(PG_GETARG_TEXT_PP(0));
	req.url = text_to_cstring(PG_GETARG_TEXT_PP(1));
	headers_from_jsonb(headers, &req);
	if (!PG_ARGISNULL(3))
	{
		text	   *b = PG_GETARG_TEXT_PP(3);

		req.body = VARDATA_ANY(b);
		req.body_len = VARSIZE_ANY_EXHDR(b);
	}
	request_options(opts, &req);
	client_options(opts, &limits);

	c = run_requests(&limits, &req, 1);
	PG_RETURN_JSONB_P(completion_to_jsonb(&c[0]));
}

/*
 * allma_http_batch(requests jsonb, options jsonb) RETURNS jsonb: runs an
 * array of requests {method, url, headers, body, options} concurrently
 * through one client and returns their results in the same order.
 * Options: maxInFlight, maxPerHost, maxRedirects, allow (superuser only).
 */
Datum
allma_http_batch(PG_FUNCTION_ARGS)
{
	static const char *const known[] = {"maxInFlight", "maxPerHost", "maxRedirects",
	"allow", NULL};
	static const char *const known_req[] = {"method", "url", "headers", "body",
	"options", NULL};
	static const char *const known_req_opts[] = {"timeoutMs", "maxBytes",
	"idempotencyKey", NULL};
	Jsonb	   *requests = PG_GETARG_JSONB_P(0);
	Jsonb	   *opts = PG_ARGISNULL(1) ? NULL : PG_GETARG_JSONB_P(1);
	AllmaHttpLimits limits;
	AllmaHttpRequest *reqs;
	AllmaHttpCompletion *cs;
	List	   *elems;
	ListCell   *lc;
	int			n;
	int			i = 0;
	int64		v;
	JsonbParseState *st = NULL;
	JsonbValue *res;

	if (!allma_jsonb_is_array(requests))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("requests must be a JSON array")));
	check_option_names(opts, "options", known);
	memset(&limits, 0, sizeof(limits));
	client_options(opts, &limits);
	if (get_int_option(opts, "maxInFlight", 1, 10000, &v))
		limits.max_in_flight = (int) v;
	if (get_int_option(opts, "maxPerHost", 1, 10000, &v))
		limits.max_per_host = (int) v;

	elems = allma_jsonb_array_elements(requests);
	n = list_length(elems);
	if (n > MAX_BATCH)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("too many requests in one batch"),
				 errdetail("A batch may have at most %d requests.", MAX_BATCH)));
	reqs = palloc0(sizeof(AllmaHttpRequest) * Max(n, 1));
	foreach(lc, elems)
	{
		Jsonb	   *e = lfirst(lc);
		Jsonb	   *ro;
		Jsonb	   *body;

		if (!allma_jsonb_is_object(e))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("request %d of the batch is not a JSON object", i + 1)));
		check_option_names(e, psprintf("request %d", i + 1), known_req);
		reqs[i].method = get_string_option(e, "method");
		reqs[i].url = get_string_option(e, "url");
		if (reqs[i].url == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("request %d of the batch has no \"url\"", i + 1)));
		headers_from_jsonb(allma_jsonb_get(e, "headers"), &reqs[i]);
		body = allma_jsonb_get(e, "body");
		if (!absent(body))
		{
			char	   *b = get_string_option(e, "body");

			reqs[i].body = b;
			reqs[i].body_len = strlen(b);
		}
		ro = allma_jsonb_get(e, "options");
		check_option_names(ro, psprintf("options of request %d", i + 1), known_req_opts);
		request_options(ro, &reqs[i]);
		i++;
	}

	cs = run_requests(&limits, reqs, n);

	pushJsonbValue(&st, WJB_BEGIN_ARRAY, NULL);
	for (i = 0; i < n; i++)
		allma_jsonb_push(&st, WJB_ELEM, completion_to_jsonb(&cs[i]));
	res = pushJsonbValue(&st, WJB_END_ARRAY, NULL);
	PG_RETURN_JSONB_P(JsonbValueToJsonb(res));
}
