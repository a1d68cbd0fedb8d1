/*-------------------------------------------------------------------------
 *
 * http_int.h
 *	  The private state of allma's HTTP client, shared by its files: the
 *	  client and its queue (http.c), one transfer's setup and callbacks
 *	  (http_transfer.c), and the destination allow-list
 *	  (http_allowlist.c).  Everything else uses http.h.
 *
 * IDENTIFICATION
 *	  src/http_int.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ALLMA_HTTP_INT_H
#define ALLMA_HTTP_INT_H

#include "allma.h"

#include <time.h>

#include <curl/curl.h>

#include "lib/ilist.h"
#include "utils/hsearch.h"

#include "http.h"

#if LIBCURL_VERSION_NUM < 0x075500
#error "allma needs libcurl 7.85.0 or later (CURLOPT_PROTOCOLS_STR)"
#endif

#define HOST_KEY_LEN	320
#define MAX_URL_LEN		(64 * 1024)
#define MAX_METHOD_LEN	32

/* an allow-list (http_allowlist.c) */
typedef struct AllmaAllowList AllmaAllowList;

typedef struct HostEntry
{
	char		key[HOST_KEY_LEN];	/* hash key */
	int			running;
	int			nwaiting;
	dlist_head	waiting;		/* HttpTransfer.node, FIFO */
	bool		in_ready;
	dlist_node	ready_node;		/* in client->ready_hosts */
} HostEntry;

/*
 * Classes of the caller's header lines, for the headers sent after a
 * redirect (build_header_list).
 */
#define HDR_OTHER			0	/* not sent to another origin */
#define HDR_SAFE			1	/* Accept, User-Agent, Idempotency-Key */
#define HDR_CONTENT_TYPE	2	/* sent while the body is */
#define HDR_BODY			3	/* other Content-*: same origin, with the body */

typedef struct HttpTransfer
{
	dlist_node	node;			/* host->waiting, client->running or
								 * client->finished */
	struct AllmaHttpClient *client;
	HostEntry  *host;
	CURL	   *easy;
	void	   *tag;

	/* the request, copied; method, url and body change on redirects */
	char	   *method;
	char	   *url;
	char	   *body;
	size_t		body_len;
	bool		send_body;
	bool		body_dropped;	/* a redirect turned the request into GET */
	char	  **hdr_lines;		/* the caller's headers as curl lines */
	uint8	   *hdr_class;		/* HDR_xxx of each line */
	int			nhdr;
	struct curl_slist *headers; /* the current hop's, malloc'd by curl */
	long		timeout_ms;
	long		connect_timeout_ms; /* the current hop's, when it ends before
									 * the total timeout; else 0 */
	bool		is_mail;		/* an SMTP send (see AllmaHttpRequest) */
	char	   *mail_from;
	struct curl_slist *mail_rcpt;	/* malloc'd by curl_slist_append */
	char	   *username;
	char	   *password;		/* zeroed when freed */
	size_t		upload_pos;		/* mail: how much of body curl has read */
	size_t		max_bytes;
	int64		queued_at;		/* monotonic ms */
	int64		started_at;
	int64		deadline;		/* started_at + timeout_ms */

	/* redirects (followed here, not by curl) */
	char		origin[HOST_KEY_LEN];	/* "scheme://host:port" of the
										 * original URL */
	bool		cross_origin;	/* a hop has left the original origin */
	int			redirects;		/* hops followed */
	curl_off_t	prev_total_us;	/* curl's total time of earlier hops */
	long		prev_status;	/* the last redirect response, for a hop */
	char	   *prev_ctype;		/* that failed without a response of its */
	Jsonb	   *prev_headers;	/* own; in the client's context */
	bool		redirect_timed_out; /* deadline passed between hops */

	/* written by callbacks: no palloc, no ereport there */
	char	   *buf;			/* malloc'd response body */
	size_t		len;
	size_t		cap;
	size_t		header_bytes;
	bool		too_large;
	bool		headers_too_large;
	bool		out_of_memory;
	bool		refused;
	char		refused_msg[256];
	char		mail_last_rcpt[256];	/* mail: the last RCPT TO address sent */

	/* set when finished */
	bool		paused;			/* waiting for room in max_inflight_bytes */
	bool		done;
	CURLcode	result;
	char		start_error[256];	/* could not even start */
	char		errbuf[CURL_ERROR_SIZE];
} HttpTransfer;

struct AllmaHttpClient
{
	MemoryContext cxt;
	CURLM	   *multi;
	int			epfd;
	int			wakefd;

	int			max_in_flight;
	int			max_per_host;
	long		connect_timeout_ms;
	long		timeout_ms;
	size_t		max_bytes;
	int			max_redirects;
	char	   *user_agent;

	bool		own_allow;		/* else follows the process-wide list */
	AllmaAllowList *allow;
	uint64		allow_gen;

	HTAB	   *hosts;
	dlist_head	ready_hosts;
	dlist_head	running;
	dlist_head	redirecting;	/* a hop ended in a redirect to follow */
	dlist_head	finished;
	int			nrunning;
	int			nqueued;
	int			ntotal;			/* submitted and not yet returned */

	CURL	  **free_handles;
	int			nfree;

	int64		timer_deadline; /* monotonic ms; -1: no timer */

	/* the byte budget of response buffers (AllmaHttpLimits) */
	size_t		max_inflight_bytes; /* 0: none */
	size_t		inflight_bytes; /* malloc'd buffers of unreleased transfers */
	size_t		peak_inflight_bytes;
	int			npaused;		/* transfers paused for room */
	bool		room_changed;	/* bytes freed or a transfer left running
								 * since paused ones were last resumed */
};

/* monotonic milliseconds */
static inline int64
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ----------------------------------------------------------------
 * http_allowlist.c
 * ----------------------------------------------------------------
 */

/*
 * allma_http_allowlist_parse parses spec into a new allow-list in cxt.
 * NULL and a palloc'd message in *error when an entry is invalid.  Throws
 * only on out-of-memory.
 */
extern AllmaAllowList *allma_http_allowlist_parse(const char *spec, MemoryContext cxt,
												  char **error);

/*
 * allma_http_allowlist_refusal: why a connection to address a (4 or 16
 * bytes, by family) is refused under al ("loopback", "private", ...), or
 * NULL when it is allowed.  Host names are matched against the easy
 * handle's current URL.  Safe in curl callbacks.
 */
extern const char *allma_http_allowlist_refusal(const AllmaAllowList *al, int family,
												const uint8 *a, CURL *easy);

/*
 * The process-wide list: its generation (bumped on every change) and a
 * copy of it in cxt (NULL when none was set).
 */
extern uint64 allma_http_allowlist_generation(void);
extern AllmaAllowList *allma_http_allowlist_copy_current(MemoryContext cxt);

/*
 * allma_http_parse_address: an IPv4 or IPv6 literal (IPv6 optionally in
 * brackets) into addr; returns AF_INET, AF_INET6 or 0.
 */
extern int	allma_http_parse_address(const char *s, uint8 *addr);

/* ----------------------------------------------------------------
 * http_transfer.c
 * ----------------------------------------------------------------
 */

/*
 * allma_http_url_host_key: "scheme://host:port" of url into key; false and
 * a palloc'd message in *error when the URL is not acceptable (http or
 * https, or smtp or smtps with mail).  If bad_scheme is not NULL, it tells
 * whether the URL parsed but its scheme is not allowed.
 */
extern bool allma_http_url_host_key(const char *url, bool mail, char *key, size_t keylen,
									char **error, bool *bad_scheme);

/* the class (HDR_xxx) of a header by its name */
extern uint8 allma_http_header_class(const char *name);

/*
 * allma_http_build_header_list: the header list for t's next request
 * (malloc'd by curl), or NULL when out of memory; see http_transfer.c.
 */
extern struct curl_slist *allma_http_build_header_list(HttpTransfer *t);

/*
 * allma_http_copy_mail_request fills the mail fields of t (allocated in
 * the client's context); false when curl is out of memory.
 */
extern bool allma_http_copy_mail_request(AllmaHttpClient *client, HttpTransfer *t,
										 const AllmaHttpRequest *req);

/*
 * allma_http_setup_easy sets every option of t's (fresh or reset) easy
 * handle for its next hop or mail send; false with t->start_error set
 * when curl refuses one.
 */
extern bool allma_http_setup_easy(AllmaHttpClient *client, HttpTransfer *t);

/*
 * allma_http_redirect_target: for a finished hop whose response is a
 * redirect the client follows, the absolute URL it points to (curl's
 * string, valid until the handle is reset), else NULL.
 */
extern char *allma_http_redirect_target(HttpTransfer *t);

#endif							/* ALLMA_HTTP_INT_H */
