/*-------------------------------------------------------------------------
 *
 * http.c
 *	  allma's HTTP client over libcurl's multi interface (which also sends
 *	  the EMAIL steps' mail over SMTP): the client's life cycle, its queue,
 *	  driving the transfers, following redirects, and building completions.
 *	  One transfer's setup and callbacks are in http_transfer.c, the
 *	  destination allow-list in http_allowlist.c, the SQL debug functions
 *	  allma_http_request and allma_http_batch in http_sql.c.
 *
 * Design
 *
 * A client (AllmaHttpClient) owns one curl multi handle, driven with the
 * multi socket API: curl tells us which sockets to watch (socket_cb) and
 * when to call it back (timer_cb); we keep those sockets in one epoll set,
 * together with an eventfd for wakeups.  So a wait costs the same with
 * ten or ten thousand connections, and the whole client is one descriptor
 * that a caller could put into its own WaitEventSet.
 *
 * Glossary
 *	  transfer	 our private state of one submitted request (HttpTransfer)
 *	  queued	 submitted, waiting for room under the in-flight limits
 *	  running	 added to the multi handle
 *	  hop		 one request of a transfer: the first, or one after a
 *				 redirect
 *	  redirecting a hop ended in a redirect we follow; waits for
 *				 follow_redirect to start the next hop (still running for
 *				 the limits)
 *	  finished	 curl is done with it; waits to be returned by poll
 *	  host		 "scheme://host:port" of the request's URL; the unit of the
 *				 per-host limit (HostEntry, one FIFO of queued transfers)
 *	  origin	 the same string, of the original URL: a hop to another
 *				 origin gets only the caller's safe headers (http.h)
 *
 * Queued transfers wait per host; hosts that have queued transfers and
 * room are served round robin (ready_hosts), so one busy host cannot
 * starve the others and starting a transfer costs O(1).
 *
 * Easy handles are reset and kept on a free list (at most max_in_flight),
 * connections stay in the multi handle's cache, so keep-alive connections
 * are reused across requests.
 *
 * curl callbacks (write, header, open socket, pre-request, socket, timer)
 * never palloc and never ereport: a problem is recorded in the transfer
 * (too_large, refused, out_of_memory) and curl is told to stop; the
 * completion reports it.  Response bodies grow in malloc'd buffers bounded
 * by the size cap and are freed when the completion is built.  Transfers
 * are palloc'd in the client's context and pfree'd when returned, host
 * entries are removed when idle, so memory does not grow with the number
 * of requests processed.
 *
 * Destinations are checked in opensocket_cb, on the resolved address,
 * before any connection is made (also for each redirect hop), and again
 * in prereq_cb before every request, which also covers connections reused
 * from the cache after the allow-list changed.
 *
 * Redirects are not left to curl (CURLOPT_FOLLOWLOCATION would send every
 * custom header, credentials included, to whatever host the Location
 * names): a hop whose response is a redirect to follow is taken off the
 * multi handle, and follow_redirect sets the same easy handle up for the
 * next hop (URL from CURLINFO_REDIRECT_URL, method, body, the headers
 * allowed there, the time left until the transfer's deadline) and adds it
 * again.  The rules are in http.h.
 *
 * Copyright (c) 2026, the allma authors
 *
 * IDENTIFICATION
 *	  src/http.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "lib/ilist.h"
#include "miscadmin.h"
#include "utils/hsearch.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/wait_event.h"

#include "http.h"
#include "http_int.h"
#include "jsonb_util.h"
#include "text_valid.h"

#define EPOLL_BATCH		256

static bool curl_initialized = false;

/* a client following the process-wide list takes a copy when it changed */
static void
refresh_allowlist(AllmaHttpClient *client)
{
	uint64		gen = allma_http_allowlist_generation();

	if (client->own_allow || client->allow_gen == gen)
		return;
	if (client->allow)
		pfree(client->allow);
	client->allow = allma_http_allowlist_copy_current(client->cxt);
	client->allow_gen = gen;
}


/* curl tells which sockets to watch: keep the epoll set in step */
static int
socket_cb(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
	AllmaHttpClient *client = (AllmaHttpClient *) userp;
	struct epoll_event ev;

	if (what == CURL_POLL_REMOVE)
	{
		if (socketp != NULL)
			(void) epoll_ctl(client->epfd, EPOLL_CTL_DEL, s, NULL);
		curl_multi_assign(client->multi, s, NULL);
		return 0;
	}

	memset(&ev, 0, sizeof(ev));
	ev.events = ((what & CURL_POLL_IN) ? EPOLLIN : 0) | ((what & CURL_POLL_OUT) ? EPOLLOUT : 0);
	ev.data.fd = s;
	if (socketp == NULL)
	{
		if (epoll_ctl(client->epfd, EPOLL_CTL_ADD, s, &ev) != 0 && errno == EEXIST)
			(void) epoll_ctl(client->epfd, EPOLL_CTL_MOD, s, &ev);
		curl_multi_assign(client->multi, s, client);
	}
	else if (epoll_ctl(client->epfd, EPOLL_CTL_MOD, s, &ev) != 0 && errno == ENOENT)
		(void) epoll_ctl(client->epfd, EPOLL_CTL_ADD, s, &ev);

	/*
	 * If epoll_ctl failed otherwise (out of kernel memory), the transfer's
	 * timeout still ends it.
	 */
	return 0;
}

/* curl asks to be called back after timeout_ms (-1: never) */
static int
timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
	AllmaHttpClient *client = (AllmaHttpClient *) userp;

	client->timer_deadline = timeout_ms < 0 ? -1 : now_ms() + timeout_ms;
	return 0;
}

/* ----------------------------------------------------------------
 * Client life cycle
 * ----------------------------------------------------------------
 */

static void
close_client_resources(AllmaHttpClient *client)
{
	if (client->multi)
		curl_multi_cleanup(client->multi);
	client->multi = NULL;
	if (client->epfd >= 0)
		close(client->epfd);
	client->epfd = -1;
	if (client->wakefd >= 0)
		close(client->wakefd);
	client->wakefd = -1;
}

/*
 * apply_limits sets the client's limits other than max_in_flight from
 * limits, the defaults for zero fields
 */
static void
apply_limits(AllmaHttpClient *client, const AllmaHttpLimits *limits)
{
	client->max_per_host = limits->max_per_host > 0 ? limits->max_per_host : ALLMA_HTTP_DEFAULT_MAX_PER_HOST;
	client->connect_timeout_ms = limits->connect_timeout_ms > 0 ? limits->connect_timeout_ms : ALLMA_HTTP_DEFAULT_CONNECT_TIMEOUT_MS;
	client->timeout_ms = limits->timeout_ms > 0 ? limits->timeout_ms : ALLMA_HTTP_DEFAULT_TIMEOUT_MS;
	client->max_bytes = limits->max_response_bytes > 0 ? limits->max_response_bytes : ALLMA_HTTP_DEFAULT_MAX_RESPONSE_BYTES;
	client->max_bytes = Min(client->max_bytes, ALLMA_HTTP_MAX_RESPONSE_BYTES_LIMIT);
	client->max_redirects = limits->max_redirects != 0 ? limits->max_redirects : ALLMA_HTTP_DEFAULT_MAX_REDIRECTS;
	client->max_inflight_bytes = limits->max_inflight_bytes;
	client->room_changed = true;
}

AllmaHttpClient *
allma_http_client_create(const AllmaHttpLimits *limits)
{
	AllmaHttpLimits def;
	MemoryContext cxt;
	AllmaHttpClient *client;
	HASHCTL		hctl;
	struct epoll_event ev;

	if (limits == NULL)
	{
		memset(&def, 0, sizeof(def));
		limits = &def;
	}

	if (!curl_initialized)
	{
		if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
			ereport(ERROR,
					(errcode(ERRCODE_SYSTEM_ERROR),
					 errmsg("could not initialize libcurl")));
		curl_initialized = true;
	}

	cxt = AllocSetContextCreate(CurrentMemoryContext, "allma http client",
								ALLOCSET_DEFAULT_SIZES);
	client = MemoryContextAllocZero(cxt, sizeof(AllmaHttpClient));
	client->cxt = cxt;
	client->epfd = -1;
	client->wakefd = -1;
	client->timer_deadline = -1;

	client->max_in_flight = limits->max_in_flight > 0 ? limits->max_in_flight : ALLMA_HTTP_DEFAULT_MAX_IN_FLIGHT;
	apply_limits(client, limits);
	client->user_agent = MemoryContextStrdup(cxt, limits->user_agent ? limits->user_agent
											 : "allma/" ALLMA_VERSION);

	if (limits->allowlist != NULL)
	{
		char	   *error = NULL;

		client->own_allow = true;
		client->allow = allma_http_allowlist_parse(limits->allowlist, cxt, &error);
		if (client->allow == NULL)
		{
			MemoryContextDelete(cxt);
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("%s", error),
					 errhint("Entries are host names, \"*.domain\", IP addresses or CIDR ranges, separated by commas.")));
		}
	}
	else
		client->allow_gen = 0;	/* copied on first poll */

	dlist_init(&client->ready_hosts);
	dlist_init(&client->running);
	dlist_init(&client->redirecting);
	dlist_init(&client->finished);

	memset(&hctl, 0, sizeof(hctl));
	hctl.keysize = HOST_KEY_LEN;
	hctl.entrysize = sizeof(HostEntry);
	hctl.hcxt = cxt;
	client->hosts = hash_create("allma http hosts", 64, &hctl,
								HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);

	client->free_handles = MemoryContextAlloc(cxt, sizeof(CURL *) * client->max_in_flight);

	client->epfd = epoll_create1(EPOLL_CLOEXEC);
	client->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	client->multi = curl_multi_init();
	memset(&ev, 0, sizeof(ev));
	ev.events = EPOLLIN;
	ev.data.fd = client->wakefd;
	if (client->epfd < 0 || client->wakefd < 0 || client->multi == NULL ||
		epoll_ctl(client->epfd, EPOLL_CTL_ADD, client->wakefd, &ev) != 0)
	{
		int			save_errno = errno;

		close_client_resources(client);
		MemoryContextDelete(cxt);
		errno = save_errno;
		ereport(ERROR,
				(errcode(ERRCODE_SYSTEM_ERROR),
				 errmsg("could not create HTTP client: %m")));
	}

	curl_multi_setopt(client->multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
	curl_multi_setopt(client->multi, CURLMOPT_SOCKETDATA, client);
	curl_multi_setopt(client->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
	curl_multi_setopt(client->multi, CURLMOPT_TIMERDATA, client);
	curl_multi_setopt(client->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long) client->max_per_host);
	curl_multi_setopt(client->multi, CURLMOPT_MAXCONNECTS, (long) client->max_in_flight);

	return client;
}

void
allma_http_client_set_limits(AllmaHttpClient *client, const AllmaHttpLimits *limits)
{
	int			max_in_flight = limits->max_in_flight > 0 ? limits->max_in_flight : ALLMA_HTTP_DEFAULT_MAX_IN_FLIGHT;
	HASH_SEQ_STATUS seq;
	HostEntry  *h;

	/* room for as many free easy handles as transfers may run */
	if (max_in_flight > client->max_in_flight)
		client->free_handles = repalloc(client->free_handles, sizeof(CURL *) * max_in_flight);
	while (client->nfree > max_in_flight)
		curl_easy_cleanup(client->free_handles[--client->nfree]);
	client->max_in_flight = max_in_flight;
	apply_limits(client, limits);
	curl_multi_setopt(client->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long) client->max_per_host);
	curl_multi_setopt(client->multi, CURLMOPT_MAXCONNECTS, (long) client->max_in_flight);

	/* hosts that may start more transfers now */
	hash_seq_init(&seq, client->hosts);
	while ((h = hash_seq_search(&seq)) != NULL)
	{
		if (h->nwaiting > 0 && !h->in_ready && h->running < client->max_per_host)
		{
			dlist_push_tail(&client->ready_hosts, &h->ready_node);
			h->in_ready = true;
		}
	}
}

/* frees what was malloc'd for t by curl and the callbacks */
static void
free_malloced_state(HttpTransfer *t)
{
	if (t->headers)
		curl_slist_free_all(t->headers);
	if (t->mail_rcpt)
		curl_slist_free_all(t->mail_rcpt);
	if (t->buf)
	{
		free(t->buf);
		t->client->inflight_bytes -= t->cap;
		t->client->room_changed = true;
		t->buf = NULL;
		t->cap = 0;
	}
}

/* frees what a transfer holds (not its easy handle) */
static void
free_transfer(HttpTransfer *t)
{
	int			i;

	free_malloced_state(t);
	if (t->mail_from)
		pfree(t->mail_from);
	if (t->username)
		pfree(t->username);
	if (t->password)
	{
		explicit_bzero(t->password, strlen(t->password));
		pfree(t->password);
	}
	pfree(t->url);
	pfree(t->method);
	if (t->body)
		pfree(t->body);
	for (i = 0; i < t->nhdr; i++)
		pfree(t->hdr_lines[i]);
	if (t->hdr_lines)
		pfree(t->hdr_lines);
	if (t->hdr_class)
		pfree(t->hdr_class);
	if (t->prev_ctype)
		pfree(t->prev_ctype);
	if (t->prev_headers)
		pfree(t->prev_headers);
	pfree(t);
}

void
allma_http_client_destroy(AllmaHttpClient *client)
{
	dlist_mutable_iter it;
	HASH_SEQ_STATUS hs;
	HostEntry  *h;
	int			i;

	if (client == NULL)
		return;

	dlist_foreach_modify(it, &client->running)
	{
		HttpTransfer *t = dlist_container(HttpTransfer, node, it.cur);

		curl_multi_remove_handle(client->multi, t->easy);
		curl_easy_cleanup(t->easy);
		free_malloced_state(t);
	}
	/* finished, or between two hops: their handles are not in the multi */
	dlist_foreach_modify(it, &client->redirecting)
	{
		HttpTransfer *t = dlist_container(HttpTransfer, node, it.cur);

		curl_easy_cleanup(t->easy);
		free_malloced_state(t);
	}
	dlist_foreach_modify(it, &client->finished)
	{
		HttpTransfer *t = dlist_container(HttpTransfer, node, it.cur);

		if (t->easy)
			curl_easy_cleanup(t->easy);
		free_malloced_state(t);
	}
	hash_seq_init(&hs, client->hosts);
	while ((h = hash_seq_search(&hs)) != NULL)
	{
		dlist_foreach_modify(it, &h->waiting)
			free_malloced_state(dlist_container(HttpTransfer, node, it.cur));
	}
	for (i = 0; i < client->nfree; i++)
		curl_easy_cleanup(client->free_handles[i]);

	close_client_resources(client);
	MemoryContextDelete(client->cxt);
}

/* ----------------------------------------------------------------
 * Queue and transfers
 * ----------------------------------------------------------------
 */

void
allma_http_submit(AllmaHttpClient *client, const AllmaHttpRequest *req)
{
	char		key[HOST_KEY_LEN];
	char	   *error = NULL;
	char	   *detail = NULL;
	const char *method = req->method ? req->method : "GET";
	HttpTransfer *t;
	HostEntry  *h;
	bool		found;
	int			i;
	MemoryContext old;

	/* validate everything first, so that an error leaves no trace */
	if (!allma_http_check_request(req, &error, &detail))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s", error),
				 detail ? errdetail("%s", detail) : 0));
	if (!allma_http_url_host_key(req->url, req->mail_from != NULL, key, sizeof(key), &error, NULL))
		elog(ERROR, "URL \"%s\" checked but not usable", req->url);

	old = MemoryContextSwitchTo(client->cxt);
	t = palloc0(sizeof(HttpTransfer));
	t->client = client;
	t->tag = req->tag;
	t->url = pstrdup(req->url);
	t->method = pstrdup(method);
	for (i = 0; t->method[i]; i++)
		t->method[i] = pg_ascii_toupper((unsigned char) t->method[i]);
	if (req->body != NULL)
	{
		t->body = palloc(req->body_len + 1);
		memcpy(t->body, req->body, req->body_len);
		t->body[req->body_len] = '\0';
		t->body_len = req->body_len;
	}
	t->send_body = req->body != NULL || strcmp(t->method, "POST") == 0 ||
		strcmp(t->method, "PUT") == 0 || strcmp(t->method, "PATCH") == 0;
	t->timeout_ms = req->timeout_ms > 0 ? req->timeout_ms : client->timeout_ms;
	t->max_bytes = req->max_response_bytes > 0 ?
		Min(req->max_response_bytes, ALLMA_HTTP_MAX_RESPONSE_BYTES_LIMIT) : client->max_bytes;
	strlcpy(t->origin, key, sizeof(t->origin));

	if (req->mail_from != NULL)
	{
		bool		ok = allma_http_copy_mail_request(client, t, req);

		MemoryContextSwitchTo(old);
		if (!ok)
		{
			free_transfer(t);
			ereport(ERROR,
					(errcode(ERRCODE_OUT_OF_MEMORY),
					 errmsg("out of memory")));
		}
		goto enqueue;
	}

	/* the caller's headers as curl lines, kept to rebuild them on redirects */
	t->hdr_lines = palloc(sizeof(char *) * (req->nheaders + 1));
	t->hdr_class = palloc(sizeof(uint8) * (req->nheaders + 1));
	for (i = 0; i < req->nheaders; i++)
	{
		const AllmaHttpHeader *hd = &req->headers[i];

		if (req->idempotency_key && pg_strcasecmp(hd->name, "Idempotency-Key") == 0)
			continue;
		/* "Name;" is curl's way to send a header with an empty value */
		t->hdr_lines[t->nhdr] = hd->value[0] ?
			psprintf("%s: %s", hd->name, hd->value) : psprintf("%s;", hd->name);
		t->hdr_class[t->nhdr] = allma_http_header_class(hd->name);
		t->nhdr++;
	}
	if (req->idempotency_key)
	{
		t->hdr_lines[t->nhdr] = req->idempotency_key[0] ?
			psprintf("Idempotency-Key: %s", req->idempotency_key) : pstrdup("Idempotency-Key;");
		t->hdr_class[t->nhdr] = HDR_SAFE;
		t->nhdr++;
	}
	MemoryContextSwitchTo(old);

	t->headers = allma_http_build_header_list(t);
	if (t->headers == NULL)
	{
		free_transfer(t);
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory")));
	}

enqueue:
	h = hash_search(client->hosts, key, HASH_ENTER, &found);
	if (!found)
	{
		h->running = 0;
		h->nwaiting = 0;
		dlist_init(&h->waiting);
		h->in_ready = false;
	}
	t->host = h;
	t->queued_at = now_ms();
	dlist_push_tail(&h->waiting, &t->node);
	h->nwaiting++;
	client->nqueued++;
	client->ntotal++;
	if (!h->in_ready && h->running < client->max_per_host)
	{
		dlist_push_tail(&client->ready_hosts, &h->ready_node);
		h->in_ready = true;
	}
}

/* host accounting when a transfer stops running */
static void
host_release(AllmaHttpClient *client, HostEntry *h)
{
	h->running--;
	if (h->nwaiting > 0 && !h->in_ready && h->running < client->max_per_host)
	{
		dlist_push_tail(&client->ready_hosts, &h->ready_node);
		h->in_ready = true;
	}
	if (h->running == 0 && h->nwaiting == 0 && !h->in_ready)
		hash_search(client->hosts, h->key, HASH_REMOVE, NULL);
}

/* moves t to the finished list */
static void
mark_finished(AllmaHttpClient *client, HttpTransfer *t, CURLcode result)
{
	t->done = true;
	t->result = result;
	dlist_push_tail(&client->finished, &t->node);
}

/* starts t: easy handle from the free list, options, add to the multi */
static void
start_transfer(AllmaHttpClient *client, HttpTransfer *t)
{
	CURLMcode	mrc;

	t->started_at = now_ms();

	/*
	 * The deadline counts from the submission, not from the start: a
	 * request queued behind allma.http_max_per_host must not outlive the
	 * lease of its INFLIGHT path (commit + timeout + 60 s), after which its
	 * step may run again (engine faults, docs/engine-faults.md).
	 */
	t->deadline = t->queued_at + t->timeout_ms;
	if (t->deadline - t->started_at <= 0)
	{
		snprintf(t->start_error, sizeof(t->start_error),
				 "request timed out after %ld ms waiting in the queue for %s (allma.http_max_per_host, allma.http_max_in_flight)",
				 t->timeout_ms, t->origin);
		mark_finished(client, t, CURLE_OPERATION_TIMEDOUT);
		return;
	}
	t->easy = client->nfree > 0 ? client->free_handles[--client->nfree] : curl_easy_init();
	if (t->easy == NULL)
	{
		strlcpy(t->start_error, "out of memory", sizeof(t->start_error));
		t->out_of_memory = true;
		mark_finished(client, t, CURLE_OUT_OF_MEMORY);
		return;
	}
	t->errbuf[0] = '\0';
	if (!allma_http_setup_easy(client, t))
	{
		mark_finished(client, t, CURLE_FAILED_INIT);
		return;
	}
	mrc = curl_multi_add_handle(client->multi, t->easy);
	if (mrc != CURLM_OK)
	{
		snprintf(t->start_error, sizeof(t->start_error),
				 "could not start the transfer: %s", curl_multi_strerror(mrc));
		mark_finished(client, t, CURLE_FAILED_INIT);
		return;
	}
	dlist_push_tail(&client->running, &t->node);
	client->nrunning++;
}

/* starts queued transfers while there is room, hosts round robin */
static void
dispatch(AllmaHttpClient *client)
{
	while (client->nrunning < client->max_in_flight &&
		   !dlist_is_empty(&client->ready_hosts))
	{
		HostEntry  *h = dlist_container(HostEntry, ready_node,
										dlist_pop_head_node(&client->ready_hosts));
		HttpTransfer *t;

		h->in_ready = false;
		Assert(h->nwaiting > 0);
		t = dlist_container(HttpTransfer, node, dlist_pop_head_node(&h->waiting));
		h->nwaiting--;
		client->nqueued--;
		h->running++;
		start_transfer(client, t);
		if (t->done)
			host_release(client, h);
		else if (h->nwaiting > 0 && h->running < client->max_per_host)
		{
			dlist_push_tail(&client->ready_hosts, &h->ready_node);
			h->in_ready = true;
		}
	}
}

/*
 * finish_running: t, running or between two hops (its handle not in the
 * multi any more), is finished with result
 */
static void
finish_running(AllmaHttpClient *client, HttpTransfer *t, CURLcode result)
{
	if (t->paused)
	{
		t->paused = false;
		client->npaused--;
	}
	client->room_changed = true;
	dlist_delete(&t->node);
	client->nrunning--;
	host_release(client, t->host);
	t->host = NULL;
	mark_finished(client, t, result);
}

/*
 * collect_finished takes curl's finished hops off the multi handle: a
 * transfer whose response is a redirect to follow goes to the redirecting
 * list (still counted as running), any other is finished.
 */
static void
collect_finished(AllmaHttpClient *client)
{
	CURLMsg    *msg;
	int			left;

	while ((msg = curl_multi_info_read(client->multi, &left)) != NULL)
	{
		HttpTransfer *t = NULL;
		CURL	   *easy = msg->easy_handle;
		CURLcode	result = msg->data.result;

		if (msg->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **) &t);
		curl_multi_remove_handle(client->multi, easy);
		if (result == CURLE_OK && allma_http_redirect_target(t) != NULL)
		{
			dlist_delete(&t->node);
			dlist_push_tail(&client->redirecting, &t->node);
		}
		else
			finish_running(client, t, result);
	}
}

/* ----------------------------------------------------------------
 * Completions
 * ----------------------------------------------------------------
 */

/* Retry-After: delay-seconds or an HTTP date; -1 when absent or invalid */
static long
parse_retry_after(const char *v)
{
	const char *p = v;
	time_t		when;
	time_t		now;

	while (isspace((unsigned char) *p))
		p++;
	if (isdigit((unsigned char) *p))
	{
		int64		secs = 0;

		for (; isdigit((unsigned char) *p); p++)
		{
			secs = secs * 10 + (*p - '0');
			if (secs > INT_MAX)
				secs = INT_MAX;
		}
		while (isspace((unsigned char) *p))
			p++;
		if (*p != '\0')
			return -1;
		return (long) Min(secs * 1000, (int64) LONG_MAX);
	}
	when = curl_getdate(v, NULL);
	if (when == (time_t) -1)
		return -1;
	now = time(NULL);
	return when <= now ? 0 : (long) Min((int64) (when - now) * 1000, (int64) LONG_MAX);
}

typedef struct HeaderPair
{
	char	   *name;
	StringInfoData value;
} HeaderPair;

/* the final response's headers as a jsonb object with lower-cased names */
static Jsonb *
response_headers(CURL *easy)
{
	struct curl_header *prev = NULL;
	struct curl_header *h;
	HeaderPair *pairs = NULL;
	int			npairs = 0;
	int			maxpairs = 0;
	JsonbParseState *st = NULL;
	JsonbValue *res;
	int			i;

	while ((h = curl_easy_nextheader(easy, CURLH_HEADER, -1, prev)) != NULL)
	{
		/* a server's bytes: valid text before they become jsonb */
		char	   *lname = pstrdup(allma_cstring_make_valid(h->name));
		char	   *value = allma_cstring_make_valid(h->value);
		char	   *p;

		prev = h;
		for (p = lname; *p; p++)
			*p = pg_ascii_tolower((unsigned char) *p);
		for (i = 0; i < npairs; i++)
			if (strcmp(pairs[i].name, lname) == 0)
				break;
		if (i < npairs)
		{
			appendStringInfoString(&pairs[i].value, ", ");
			appendStringInfoString(&pairs[i].value, value);
			pfree(lname);
			continue;
		}
		if (npairs == maxpairs)
		{
			maxpairs = maxpairs ? maxpairs * 2 : 16;
			pairs = pairs ? repalloc(pairs, maxpairs * sizeof(HeaderPair))
				: palloc(maxpairs * sizeof(HeaderPair));
		}
		pairs[npairs].name = lname;
		initStringInfo(&pairs[npairs].value);
		appendStringInfoString(&pairs[npairs].value, value);
		npairs++;
	}

	pushJsonbValue(&st, WJB_BEGIN_OBJECT, NULL);
	for (i = 0; i < npairs; i++)
	{
		JsonbValue	k;
		JsonbValue	v;

		k.type = jbvString;
		k.val.string.val = pairs[i].name;
		k.val.string.len = strlen(pairs[i].name);
		pushJsonbValue(&st, WJB_KEY, &k);
		v.type = jbvString;
		v.val.string.val = pairs[i].value.data;
		v.val.string.len = pairs[i].value.len;
		pushJsonbValue(&st, WJB_VALUE, &v);
	}
	res = pushJsonbValue(&st, WJB_END_OBJECT, NULL);
	return JsonbValueToJsonb(res);
}

/*
 * describes where a timed-out transfer was (curl's phase timings of the
 * last hop; on a reused connection the connect time is 0 but the
 * pre-transfer time is not)
 */
static char *
timeout_message(HttpTransfer *t)
{
	curl_off_t	connect = 0;
	curl_off_t	pretransfer = 0;
	curl_off_t	start = 0;
	char	   *msg;

	if (t->redirect_timed_out)
		return psprintf("request timed out after %ld ms while following redirects (%d followed)",
						t->timeout_ms, t->redirects);
	curl_easy_getinfo(t->easy, CURLINFO_CONNECT_TIME_T, &connect);
	curl_easy_getinfo(t->easy, CURLINFO_PRETRANSFER_TIME_T, &pretransfer);
	curl_easy_getinfo(t->easy, CURLINFO_STARTTRANSFER_TIME_T, &start);
	if (connect == 0 && pretransfer == 0 && t->connect_timeout_ms > 0)
		msg = psprintf("request timed out while connecting: no connection within %ld ms (allma.http_connect_timeout)",
					   t->connect_timeout_ms);
	else if (connect == 0 && pretransfer == 0)
		msg = psprintf("request timed out after %ld ms while connecting", t->timeout_ms);
	else if (start == 0)
		msg = psprintf("request timed out after %ld ms waiting for the response (connected after %.1f ms)",
					   t->timeout_ms, connect / 1000.0);
	else
		msg = psprintf("request timed out after %ld ms while receiving the response (first byte after %.1f ms, %zu bytes received)",
					   t->timeout_ms, start / 1000.0, t->len);
	if (t->redirects > 0)
		msg = psprintf("%s, after %d redirect%s", msg, t->redirects,
					   t->redirects == 1 ? "" : "s");
	return msg;
}

/*
 * build_completion fills c from finished transfer t, in the caller's
 * memory context.  Throws only on out-of-memory (t is untouched then).
 */
static void
build_completion(HttpTransfer *t, AllmaHttpCompletion *c)
{
	CURL	   *e = t->easy;
	long		status = 0;
	char	   *ctype = NULL;
	char	   *eurl = NULL;
	curl_off_t	total = 0;
	struct curl_header *h;

	memset(c, 0, sizeof(*c));
	c->tag = t->tag;
	c->curl_code = (int) t->result;
	c->retry_after_ms = -1;
	c->queued_ms = (double) (t->started_at - t->queued_at);

	if (e != NULL && t->start_error[0] == '\0')
	{
		curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
		curl_easy_getinfo(e, CURLINFO_CONTENT_TYPE, &ctype);
		curl_easy_getinfo(e, CURLINFO_EFFECTIVE_URL, &eurl);
		curl_easy_getinfo(e, CURLINFO_TOTAL_TIME_T, &total);
	}
	c->redirects = t->redirects;
	c->total_ms = (t->prev_total_us + total) / 1000.0;
	c->effective_url = pstrdup(allma_cstring_make_valid(eurl ? eurl : t->url));
	if (status > 0)
	{
		c->status = (int) status;
		c->content_type = ctype ? pstrdup(allma_cstring_make_valid(ctype)) : NULL;
		c->headers = response_headers(e);
		if (curl_easy_header(e, "Retry-After", 0, CURLH_HEADER, -1, &h) == CURLHE_OK)
			c->retry_after_ms = parse_retry_after(h->value);
	}
	else if (t->prev_status > 0)
	{
		/* a hop after a redirect failed without a response: the redirect */
		c->status = (int) t->prev_status;
		c->content_type = t->prev_ctype ? pstrdup(allma_cstring_make_valid(t->prev_ctype)) : NULL;
		c->headers = palloc(VARSIZE(t->prev_headers));
		memcpy(c->headers, t->prev_headers, VARSIZE(t->prev_headers));
	}
	else
		c->headers = allma_jsonb_empty_object();

	if (t->result == CURLE_OK)
	{
		c->body = palloc(t->len + 1);
		if (t->len > 0)
			memcpy(c->body, t->buf, t->len);
		c->body[t->len] = '\0';
		c->body_len = t->len;
		return;
	}

	c->body = pstrdup("");
	if (t->start_error[0] != '\0')
	{
		c->error = pstrdup(t->start_error);
		c->timed_out = t->result == CURLE_OPERATION_TIMEDOUT;
	}
	else if (t->too_large)
	{
		c->curl_code = CURLE_FILESIZE_EXCEEDED;
		c->too_large = true;
		c->error = psprintf("response body exceeds the limit of %zu bytes", t->max_bytes);
	}
	else if (t->headers_too_large)
	{
		c->too_large = true;
		c->error = psprintf("response headers exceed the limit of %d bytes",
							ALLMA_HTTP_MAX_HEADER_BYTES);
	}
	else if (t->refused)
	{
		c->refused_destination = true;
		c->error = pstrdup(t->refused_msg);
	}
	else if (t->result == CURLE_OPERATION_TIMEDOUT)
	{
		c->timed_out = true;
		c->error = timeout_message(t);
	}
	else if (t->out_of_memory)
		c->error = pstrdup("out of memory while receiving the response");
	else if (t->is_mail && t->mail_last_rcpt[0] != '\0' && strstr(t->errbuf, "RCPT") != NULL)
		c->error = psprintf("%s (recipient %s refused)", t->errbuf, t->mail_last_rcpt);
	else
		c->error = pstrdup(allma_cstring_make_valid(t->errbuf[0] ? t->errbuf : curl_easy_strerror(t->result)));
}

/* ----------------------------------------------------------------
 * Redirects
 *
 * curl follows no redirect itself: it would send every custom header to
 * any host.  A hop that ends in a redirect to follow waits in the
 * redirecting list (still running for the limits) until follow_redirects
 * turns it into the next hop on the same easy handle, back in the multi
 * handle, so keep-alive connections in the multi's cache are reused.
 * ----------------------------------------------------------------
 */

/*
 * follow_redirect: t's last response is a redirect to follow.  Starts the
 * next hop (rules in http.h: method and body, headers, deadline) or
 * finishes t when the redirect must not be followed: too many redirects,
 * a target that is not a valid http(s) URL (refused), no time left.
 * Throws only on out-of-memory, and then before it has changed t, which
 * stays in the redirecting list for the next poll.
 */
static void
follow_redirect(AllmaHttpClient *client, HttpTransfer *t)
{
	CURL	   *e = t->easy;
	char	   *target = allma_http_redirect_target(t);
	char		key[HOST_KEY_LEN];
	char	   *error = NULL;
	bool		bad_scheme = false;
	long		status = 0;
	char	   *ctype = NULL;
	curl_off_t	hop_us = 0;
	bool		drop_body;
	char	   *new_url;
	char	   *new_method = NULL;
	char	   *new_ctype = NULL;
	Jsonb	   *new_headers;
	struct curl_slist *list;
	MemoryContext old;
	CURLMcode	mrc;

	Assert(target != NULL);
	if (t->redirects >= client->max_redirects)
	{
		snprintf(t->errbuf, sizeof(t->errbuf),
				 "too many redirects: more than %d", client->max_redirects);
		finish_running(client, t, CURLE_TOO_MANY_REDIRECTS);
		return;
	}
	if (!allma_http_url_host_key(target, false, key, sizeof(key), &error, &bad_scheme))
	{
		snprintf(t->refused_msg, sizeof(t->refused_msg),
				 "redirect refused: %s", error);
		t->refused = true;
		pfree(error);
		finish_running(client, t, bad_scheme ? CURLE_UNSUPPORTED_PROTOCOL : CURLE_URL_MALFORMAT);
		return;
	}
	if (t->deadline - now_ms() <= 0)
	{
		t->redirect_timed_out = true;
		finish_running(client, t, CURLE_OPERATION_TIMEDOUT);
		return;
	}

	/* 303: GET (HEAD stays); 301 and 302: POST becomes GET; 307, 308 keep */
	curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
	if (status == 303)
		drop_body = strcmp(t->method, "HEAD") != 0;
	else
		drop_body = (status == 301 || status == 302) && strcmp(t->method, "POST") == 0;

	/* allocate everything first: an error here leaves t as it was */
	old = MemoryContextSwitchTo(client->cxt);
	new_url = pstrdup(target);
	if (drop_body)
		new_method = pstrdup("GET");
	curl_easy_getinfo(e, CURLINFO_CONTENT_TYPE, &ctype);
	if (ctype)
		new_ctype = pstrdup(ctype);
	new_headers = response_headers(e);
	MemoryContextSwitchTo(old);

	/* the redirect response, in case the next hop gets none */
	t->prev_status = status;
	if (t->prev_ctype)
		pfree(t->prev_ctype);
	t->prev_ctype = new_ctype;
	if (t->prev_headers)
		pfree(t->prev_headers);
	t->prev_headers = new_headers;

	/* the next request */
	pfree(t->url);
	t->url = new_url;
	if (drop_body)
	{
		pfree(t->method);
		t->method = new_method;
		if (t->body)
			pfree(t->body);
		t->body = NULL;
		t->body_len = 0;
		t->send_body = false;
		t->body_dropped = true;
	}
	if (strcmp(key, t->origin) != 0)
		t->cross_origin = true;
	t->redirects++;

	list = allma_http_build_header_list(t);
	if (list == NULL)
	{
		t->out_of_memory = true;
		finish_running(client, t, CURLE_OUT_OF_MEMORY);
		return;
	}
	curl_easy_getinfo(e, CURLINFO_TOTAL_TIME_T, &hop_us);
	t->prev_total_us += hop_us;
	curl_easy_reset(e);
	curl_slist_free_all(t->headers);
	t->headers = list;
	t->len = 0;
	t->refused = false;
	t->refused_msg[0] = '\0';
	t->errbuf[0] = '\0';
	if (!allma_http_setup_easy(client, t))
	{
		finish_running(client, t, CURLE_FAILED_INIT);
		return;
	}
	mrc = curl_multi_add_handle(client->multi, e);
	if (mrc != CURLM_OK)
	{
		snprintf(t->start_error, sizeof(t->start_error),
				 "could not start the transfer: %s", curl_multi_strerror(mrc));
		finish_running(client, t, CURLE_FAILED_INIT);
		return;
	}
	dlist_delete(&t->node);
	dlist_push_tail(&client->running, &t->node);
}

/* follows (or ends) every transfer waiting in the redirecting list */
static void
follow_redirects(AllmaHttpClient *client)
{
	dlist_mutable_iter it;

	dlist_foreach_modify(it, &client->redirecting)
		follow_redirect(client, dlist_container(HttpTransfer, node, it.cur));
}

/*
 * resume_paused: after room was freed (or the oldest transfer changed),
 * paused transfers try again, oldest first; write_cb pauses one again if
 * its buffer still does not fit.  Only then: resuming makes curl call
 * back at once, so resuming without new room would spin.
 */
static void
resume_paused(AllmaHttpClient *client)
{
	dlist_iter	it;

	if (client->npaused == 0 || !client->room_changed)
		return;
	client->room_changed = false;
	dlist_foreach(it, &client->running)
	{
		HttpTransfer *t = dlist_container(HttpTransfer, node, it.cur);

		if (!t->paused)
			continue;
		if (client->inflight_bytes >= client->max_inflight_bytes &&
			dlist_head_node(&client->running) != &t->node)
			continue;
		t->paused = false;
		client->npaused--;
		curl_easy_pause(t->easy, CURLPAUSE_CONT);
	}
}

size_t
allma_http_inflight_bytes(AllmaHttpClient *client, size_t *peak)
{
	if (peak)
		*peak = client->peak_inflight_bytes;
	return client->inflight_bytes;
}

/* gives a finished transfer's handle back and frees the transfer */
static void
release_transfer(AllmaHttpClient *client, HttpTransfer *t)
{
	if (t->easy)
	{
		if (client->nfree < client->max_in_flight)
		{
			curl_easy_reset(t->easy);
			client->free_handles[client->nfree++] = t->easy;
		}
		else
			curl_easy_cleanup(t->easy);
		t->easy = NULL;
	}
	free_transfer(t);
	client->ntotal--;
}

/* ----------------------------------------------------------------
 * Driving
 * ----------------------------------------------------------------
 */

int
allma_http_poll(AllmaHttpClient *client, long timeout_ms,
				AllmaHttpCompletion *done, int max_done)
{
	struct epoll_event events[EPOLL_BATCH];
	int			nev;
	int			i;
	int			running;
	int			ndone = 0;
	size_t		bodies = 0;
	long		wait_ms = timeout_ms;

	refresh_allowlist(client);
	dispatch(client);

	/* never sleep past curl's timer, or while results or redirects wait */
	if (!dlist_is_empty(&client->finished) || !dlist_is_empty(&client->redirecting))
		wait_ms = 0;
	if (client->timer_deadline >= 0)
	{
		int64		left = client->timer_deadline - now_ms();

		left = Max(left, 0);
		if (wait_ms < 0 || left < wait_ms)
			wait_ms = (long) left;
	}
	wait_ms = Min(wait_ms, (long) INT_MAX);

	pgstat_report_wait_start(PG_WAIT_EXTENSION);
	nev = epoll_wait(client->epfd, events, EPOLL_BATCH, (int) wait_ms);
	pgstat_report_wait_end();

	for (i = 0; i < nev; i++)
	{
		int			fd = events[i].data.fd;
		int			flags = 0;

		if (fd == client->wakefd)
		{
			uint64		v;
			ssize_t		rc pg_attribute_unused();

			rc = read(client->wakefd, &v, sizeof(v));
			continue;
		}
		if (events[i].events & EPOLLIN)
			flags |= CURL_CSELECT_IN;
		if (events[i].events & EPOLLOUT)
			flags |= CURL_CSELECT_OUT;
		if (events[i].events & (EPOLLERR | EPOLLHUP))
			flags |= CURL_CSELECT_ERR;
		curl_multi_socket_action(client->multi, fd, flags, &running);
	}
	if (client->timer_deadline >= 0 && client->timer_deadline <= now_ms())
	{
		client->timer_deadline = -1;
		curl_multi_socket_action(client->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	}

	collect_finished(client);
	follow_redirects(client);
	dispatch(client);

	while (ndone < max_done && !dlist_is_empty(&client->finished))
	{
		HttpTransfer *t = dlist_container(HttpTransfer, node,
										  dlist_head_node(&client->finished));

		/* the bodies handed out at once stay within the byte budget too */
		if (ndone > 0 && client->max_inflight_bytes > 0 &&
			bodies + t->len > client->max_inflight_bytes)
			break;
		bodies += t->len;
		build_completion(t, &done[ndone]);
		dlist_delete(&t->node);
		release_transfer(client, t);
		ndone++;
	}
	resume_paused(client);
	return ndone;
}

void
allma_http_wakeup(AllmaHttpClient *client)
{
	uint64		one = 1;
	int			save_errno = errno;
	ssize_t		rc pg_attribute_unused();

	rc = write(client->wakefd, &one, sizeof(one));
	errno = save_errno;
}

int
allma_http_in_flight(AllmaHttpClient *client)
{
	return client->ntotal;
}

int
allma_http_queued(AllmaHttpClient *client)
{
	return client->nqueued;
}

int
allma_http_wait_fd(AllmaHttpClient *client)
{
	return client->epfd;
}

long
allma_http_next_timeout(AllmaHttpClient *client)
{
	int64		left;

	if (!dlist_is_empty(&client->finished) || !dlist_is_empty(&client->redirecting) ||
		(!dlist_is_empty(&client->ready_hosts) && client->nrunning < client->max_in_flight))
		return 0;
	if (client->timer_deadline < 0)
		return -1;
	left = client->timer_deadline - now_ms();
	return (long) Max(left, 0);
}


/* ----------------------------------------------------------------
 * Aborting requests
 * ----------------------------------------------------------------
 */

/*
 * allma_http_abort drops every queued, running or finished-but-unreturned
 * request whose tag "doomed" says true for: its connection is closed (or
 * given back to the pool) and its completion is never returned.  "doomed"
 * may also just look at every tag and return false.  Returns how many were
 * dropped.  Never throws.
 */
int
allma_http_abort(AllmaHttpClient *client, bool (*doomed) (void *tag, void *arg), void *arg)
{
	dlist_mutable_iter it;
	HASH_SEQ_STATUS hs;
	HostEntry  *h;
	int			n = 0;

	if (client == NULL)
		return 0;

	/* running, and between two hops (their handles are not in the multi) */
	for (int list = 0; list < 2; list++)
	{
		dlist_head *head = list == 0 ? &client->running : &client->redirecting;

		dlist_foreach_modify(it, head)
		{
			HttpTransfer *t = dlist_container(HttpTransfer, node, it.cur);

			if (!doomed(t->tag, arg))
				continue;
			if (list == 0)
				curl_multi_remove_handle(client->multi, t->easy);
			dlist_delete(&t->node);
			client->nrunning--;
			host_release(client, t->host);
			t->host = NULL;
			release_transfer(client, t);
			n++;
		}
	}
	dlist_foreach_modify(it, &client->finished)
	{
		HttpTransfer *t = dlist_container(HttpTransfer, node, it.cur);

		if (!doomed(t->tag, arg))
			continue;
		dlist_delete(&t->node);
		release_transfer(client, t);
		n++;
	}
	hash_seq_init(&hs, client->hosts);
	while ((h = hash_seq_search(&hs)) != NULL)
	{
		dlist_foreach_modify(it, &h->waiting)
		{
			HttpTransfer *t = dlist_container(HttpTransfer, node, it.cur);

			if (!doomed(t->tag, arg))
				continue;
			dlist_delete(&t->node);
			h->nwaiting--;
			client->nqueued--;
			release_transfer(client, t);
			n++;
		}
		if (h->nwaiting == 0 && h->in_ready)
		{
			dlist_delete(&h->ready_node);
			h->in_ready = false;
		}
		if (h->running == 0 && h->nwaiting == 0)
			hash_search(client->hosts, h->key, HASH_REMOVE, NULL);
	}
	return n;
}
