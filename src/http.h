/*-------------------------------------------------------------------------
 *
 * http.h
 *	  allma's HTTP client: many concurrent requests (and SMTP sends, see
 *	  AllmaHttpRequest.mail_from) through libcurl's multi interface, with no
 *	  transaction involved.
 *
 * Usage (a worker's I/O phase):
 *
 *	  client = allma_http_client_create(&limits);	-- once, long-lived context
 *	  ...
 *	  allma_http_submit(client, &req);				-- any number; copied
 *	  while (allma_http_in_flight(client) > 0)
 *	  {
 *		  n = allma_http_poll(client, 1000, done, lengthof(done));
 *		  for (i = 0; i < n; i++)
 *			  record(done[i].tag, &done[i]);		-- status, body, flags
 *	  }
 *
 * The client never opens or needs a transaction; it palloc's only in its
 * own memory context (a child of the context current at creation, so for a
 * worker create it in a long-lived one) and in the caller's context for the
 * completions it returns.  libcurl callbacks never palloc or ereport: a
 * problem is recorded in the request's private state and curl is told to
 * stop, and it shows up in the completion.
 *
 * Requests beyond the in-flight limits wait in the client's queue (one FIFO
 * per host, served round robin), so a large burst costs memory for the
 * queued requests only and their timeouts start when they are started.
 *
 * Destinations: every connection's resolved address is checked before the
 * socket is opened (so also for redirects and after DNS changes), and again
 * before each request on a reused connection.  Loopback, private,
 * link-local, carrier-grade NAT, multicast, reserved and unspecified
 * addresses (IPv4 and IPv6, also embedded in IPv4-mapped, NAT64 and 6to4
 * IPv6 addresses) are refused unless the allow-list names them.  Public
 * addresses are always allowed.  Proxies from the environment are not used.
 *
 * Waiting: allma_http_poll waits on one epoll descriptor that covers every
 * socket of the client and a wakeup eventfd.  A process that must also
 * wait for its latch can either call allma_http_wakeup (async-signal-safe)
 * from wherever it would set the latch, or put allma_http_wait_fd into its
 * own WaitEventSet (WL_SOCKET_READABLE) with allma_http_next_timeout as the
 * timeout, and call allma_http_poll with timeout 0 when it fires.
 *
 * Linux only (epoll, eventfd), libcurl 7.85 or later.
 *
 * IDENTIFICATION
 *	  src/http.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ALLMA_HTTP_H
#define ALLMA_HTTP_H

#include "allma.h"

/* defaults used for a zero field of AllmaHttpLimits */
#define ALLMA_HTTP_DEFAULT_MAX_IN_FLIGHT		512
#define ALLMA_HTTP_DEFAULT_MAX_PER_HOST			128
#define ALLMA_HTTP_DEFAULT_CONNECT_TIMEOUT_MS	10000
#define ALLMA_HTTP_DEFAULT_TIMEOUT_MS			30000
#define ALLMA_HTTP_DEFAULT_MAX_RESPONSE_BYTES	(10 * 1024 * 1024)
#define ALLMA_HTTP_DEFAULT_MAX_REDIRECTS		5
/* upper bound of max_response_bytes (a palloc'able body plus NUL) */
#define ALLMA_HTTP_MAX_RESPONSE_BYTES_LIMIT		((size_t) MaxAllocSize - 1)
/* all response header lines of one request, redirects included */
#define ALLMA_HTTP_MAX_HEADER_BYTES				(256 * 1024)

/*
 * Limits of one client.  Zero (or NULL) fields take the defaults above;
 * max_redirects < 0 means "do not follow redirects".
 */
typedef struct AllmaHttpLimits
{
	int			max_in_flight;	/* transfers running at once */
	int			max_per_host;	/* of those, to one scheme://host:port */
	long		connect_timeout_ms;
	long		timeout_ms;		/* whole transfer, unless the request says */
	size_t		max_response_bytes; /* body, after content decoding */
	int			max_redirects;
	const char *user_agent;		/* NULL: "allma/<version>" */

	/*
	 * Allow-list spec (see allma_http_set_allowlist) for this client only;
	 * NULL: follow the process-wide list.
	 */
	const char *allowlist;

	/*
	 * Response buffers of running transfers, together (0: no limit): a
	 * transfer whose buffer would grow past it pauses until room is freed
	 * (the oldest running transfer never pauses, so one always advances),
	 * and one allma_http_poll returns bodies of at most this much together
	 * (at least one).  See allma_http_inflight_bytes.
	 */
	size_t		max_inflight_bytes;
} AllmaHttpLimits;

typedef struct AllmaHttpHeader
{
	const char *name;
	const char *value;
} AllmaHttpHeader;

/*
 * One request.  allma_http_submit copies everything, so the caller may
 * free or reset its memory right after submitting.
 *
 * A body is sent when body is not NULL (body_len bytes, may be 0), and for
 * POST, PUT and PATCH always (empty if NULL).  No Content-Type is sent
 * unless headers has one.  Header names and values must not contain CR, LF
 * or NUL.  An Idempotency-Key header in headers is replaced by
 * idempotency_key when that is set.
 */
typedef struct AllmaHttpRequest
{
	const char *method;			/* NULL: GET; upper-cased */
	const char *url;			/* absolute http:// or https:// URL */
	const AllmaHttpHeader *headers;
	int			nheaders;
	const char *body;
	size_t		body_len;
	long		timeout_ms;		/* 0: the client's timeout_ms */
	size_t		max_response_bytes; /* 0: the client's limit */
	const char *idempotency_key;	/* sent as Idempotency-Key when set */
	void	   *tag;			/* returned untouched in the completion */

	/*
	 * Mail: when mail_from is set the request is an SMTP send instead.  url
	 * is then an smtp:// or smtps:// URL, body (body_len bytes) a complete
	 * RFC 5322 message with CRLF line ends, mail_rcpt the envelope
	 * recipients, and username/password (both or neither) the AUTH login.
	 * method, headers and idempotency_key are ignored.  Mail destinations
	 * come from superuser-only settings, so they are not checked against
	 * the allow-list.  The completion's status is the server's last reply
	 * code (250 on success); a refused recipient or sender fails the send
	 * with the reply code in status.
	 */
	const char *mail_from;
	const char *const *mail_rcpt;
	int			nmail_rcpt;
	const char *username;
	const char *password;
} AllmaHttpRequest;

/*
 * A finished request.  All pointers are palloc'd in the memory context that
 * was current when allma_http_poll returned it.
 *
 * A transfer that got a complete response has curl_code 0 and error NULL,
 * whatever its HTTP status.  Otherwise curl_code is libcurl's CURLcode and
 * error says what happened; status, headers and content_type then describe
 * the last response received, if any (the response that was too large, or
 * the redirect that led to a refused destination), and the body is empty.
 *
 * Redirects are followed by the client itself, not by libcurl (which would
 * send every header of the request to any host):
 *
 *	  - Followed: 301, 302, 303, 307 and 308 with a Location header, at most
 *		max_redirects of them; one more ends the request with curl_code
 *		CURLE_TOO_MANY_REDIRECTS (47).  Other statuses (300, 304, ...) and
 *		every 3xx when max_redirects < 0 are returned as the response.  The
 *		body of a followed redirect is discarded (not counted in
 *		max_response_bytes).
 *	  - Target: a relative Location is resolved against the current URL.
 *		A target that is not a valid http:// or https:// URL ends the
 *		request with refused_destination; every hop's address is checked
 *		against the allow-list like the first one's.
 *	  - Method: 303 turns every method but HEAD into GET; 301 and 302 turn
 *		POST into GET; 307 and 308 keep method and body, as do 301 and 302
 *		for other methods.  When a redirect turns the request into GET the
 *		body is no longer sent, nor are the caller's Content-Type,
 *		Content-Length, Content-Encoding, Content-Language and
 *		Content-Location headers.
 *	  - Headers: the origin of a URL is its scheme, host and port (default
 *		port filled in, compared case-insensitively).  From the first hop
 *		whose origin differs from the original URL's on, for the rest of
 *		the chain (also if a later hop returns to the original origin), of
 *		the caller's headers only these are sent: Accept, User-Agent,
 *		Idempotency-Key (also the one from idempotency_key) and
 *		Content-Type while the body is still sent.  All others, such as
 *		Authorization, X-Api-Key or Cookie, never reach another origin.
 *		Hops on the original origin get all of them.
 *	  - Limits: the request's timeout covers the whole chain; the per-host
 *		limit counts the original URL's host for the whole chain, and
 *		CURLMOPT_MAX_HOST_CONNECTIONS bounds connections to redirect
 *		targets.
 *
 * effective_url is the URL of the last hop (also when that hop failed),
 * redirects the number of redirects followed, total_ms the sum over hops.
 */
typedef struct AllmaHttpCompletion
{
	void	   *tag;
	int			status;			/* HTTP status of the last response, or 0 */
	Jsonb	   *headers;		/* object; lower-cased names, repeats joined
								 * with ", "; {} when there was no response */
	char	   *content_type;	/* NULL when absent */
	char	   *body;			/* body_len bytes plus a NUL; "" on failure */
	size_t		body_len;
	char	   *effective_url;	/* the last hop's URL, after redirects */
	int			redirects;		/* redirects followed */
	long		retry_after_ms; /* parsed Retry-After (seconds or HTTP
								 * date, >= 0); -1 when absent or invalid */
	double		total_ms;		/* transfer time (curl's total time, all
								 * hops) */
	double		queued_ms;		/* time spent waiting in the client queue */

	int			curl_code;
	char	   *error;			/* NULL on success */
	bool		timed_out;
	bool		too_large;		/* body or headers over the limits */
	bool		refused_destination;	/* allow-list, or a redirect to a
										 * target that is not an http(s)
										 * URL */
} AllmaHttpCompletion;

typedef struct AllmaHttpClient AllmaHttpClient;

/*
 * allma_http_client_create: a new client (curl multi handle, epoll set,
 * queue) with the given limits (NULL: all defaults).  Its memory lives in
 * a child of CurrentMemoryContext.  Throws on an invalid allow-list spec or
 * when libcurl cannot be initialized.
 */
extern AllmaHttpClient *allma_http_client_create(const AllmaHttpLimits *limits);

/*
 * allma_http_client_set_limits: applies new limits (zero fields: the
 * defaults; the allowlist field is ignored) to a client.  Transfers that
 * run keep the timeouts and size cap they started with; queued ones and
 * later ones get the new values, and a higher in-flight or per-host limit
 * lets queued requests start on the next poll.
 */
extern void allma_http_client_set_limits(AllmaHttpClient *client, const AllmaHttpLimits *limits);

/*
 * allma_http_client_destroy: aborts every queued and running request
 * (their completions are never returned) and frees everything.  Never
 * throws; NULL is allowed.
 */
extern void allma_http_client_destroy(AllmaHttpClient *client);

/*
 * allma_http_submit: validates and queues a request; it starts on the next
 * allma_http_poll once the limits allow.  Throws (ERRCODE_INVALID_PARAMETER_VALUE)
 * for a URL that does not parse or is not http/https, a bad method, or a
 * header with forbidden characters; the client is unchanged then.
 */
extern void allma_http_submit(AllmaHttpClient *client, const AllmaHttpRequest *req);

/*
 * allma_http_check_request: would allma_http_submit accept req?  false, with
 * a palloc'd message in *error (and a sentence in *detail, or NULL), if not.
 * Never throws.
 */
extern bool allma_http_check_request(const AllmaHttpRequest *req, char **error, char **detail);

/*
 * allma_http_poll: starts queued requests, waits up to timeout_ms for
 * network activity (0: do not wait, -1: until something completes or a
 * wakeup), drives the transfers and fills done[] with up to max_done
 * finished requests; returns how many.  Returns early, possibly with 0,
 * when allma_http_wakeup is called or a signal arrives, so the caller can
 * check its latch / CHECK_FOR_INTERRUPTS.  Reports wait event "Extension"
 * while waiting.  Throws only on out-of-memory; completions not returned
 * yet stay in the client.
 */
extern int	allma_http_poll(AllmaHttpClient *client, long timeout_ms,
							AllmaHttpCompletion *done, int max_done);

/* allma_http_wakeup: makes a waiting allma_http_poll return; async-signal-safe */
extern void allma_http_wakeup(AllmaHttpClient *client);

/*
 * allma_http_abort: drops the requests whose tag doomed(tag, arg) says
 * true for (queued, running, or finished and not returned yet); their
 * completions are never returned.  Returns how many.  Never throws.
 */
extern int	allma_http_abort(AllmaHttpClient *client,
							 bool (*doomed) (void *tag, void *arg), void *arg);

/* requests submitted and not yet returned by allma_http_poll (queued included) */
extern int	allma_http_in_flight(AllmaHttpClient *client);

/* bytes of response buffers held now; *peak (optional): the most ever held */
extern size_t allma_http_inflight_bytes(AllmaHttpClient *client, size_t *peak);

/* of those, how many wait in the queue */
extern int	allma_http_queued(AllmaHttpClient *client);

/*
 * For a caller's own WaitEventSet: a descriptor that becomes readable on
 * activity or wakeup, and the longest the caller may wait before calling
 * allma_http_poll (ms; -1 when nothing is in flight).
 */
extern int	allma_http_wait_fd(AllmaHttpClient *client);
extern long allma_http_next_timeout(AllmaHttpClient *client);

/*
 * Allow-list of destinations that would otherwise be refused: a comma
 * separated list of
 *	  - IPv4 or IPv6 addresses ("127.0.0.1", "::1", "[::1]"),
 *	  - CIDR ranges ("10.0.0.0/8", "fd00::/8"),
 *	  - host names, matched against the URL's host ("mock.internal"), or
 *		"*.example.com" for any name below example.com.
 * Whitespace around entries is ignored; "" means none.
 *
 * allma_http_check_allowlist validates a spec without throwing (for GUC
 * check hooks): false and a palloc'd message in *error when invalid.
 * allma_http_set_allowlist replaces the process-wide list (used by clients
 * created without their own); throws ERRCODE_INVALID_PARAMETER_VALUE on an
 * invalid spec.  Connections already open are checked again before their
 * next request.
 */
extern bool allma_http_check_allowlist(const char *spec, char **error);
extern void allma_http_set_allowlist(const char *spec);

/*
 * allma_http_check_url: is url an absolute http:// or https:// URL that
 * libcurl can parse?  false and a palloc'd message in *error if not.
 * Never throws.
 */
extern bool allma_http_check_url(const char *url, char **error);

/* allma_http_check_mail_url: the same for an smtp:// or smtps:// URL */
extern bool allma_http_check_mail_url(const char *url, char **error);

#endif							/* ALLMA_HTTP_H */
