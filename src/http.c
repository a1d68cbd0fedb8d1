/*-------------------------------------------------------------------------
 *
 * http.c
 *	  allma's HTTP client over libcurl's multi interface (which also sends
 *	  the EMAIL steps' mail over SMTP), the destination allow-list, and the
 *	  SQL debug functions allma_http_request and allma_http_batch.
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

#include <arpa/inet.h>
#include <math.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "common/base64.h"
#include "fmgr.h"
#include "lib/ilist.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/numeric.h"
#include "utils/wait_event.h"

#include "http.h"
#include "jsonb_util.h"

#if LIBCURL_VERSION_NUM < 0x075500
#error "allma needs libcurl 7.85.0 or later (CURLOPT_PROTOCOLS_STR)"
#endif

#define HOST_KEY_LEN	320
#define MAX_URL_LEN		(64 * 1024)
#define MAX_METHOD_LEN	32
#define EPOLL_BATCH		256

/* ----------------------------------------------------------------
 * Allow-list
 * ----------------------------------------------------------------
 */
typedef enum AllowKind
{
	ALLOW_V4,
	ALLOW_V6,
	ALLOW_HOST
} AllowKind;

typedef struct AllowEntry
{
	AllowKind	kind;
	int			prefix;			/* bits, for ALLOW_V4 / ALLOW_V6 */
	uint8		addr[16];
	bool		wildcard;		/* "*.suffix": host holds ".suffix" */
	char		host[256];		/* lower case, for ALLOW_HOST */
} AllowEntry;

typedef struct AllowList
{
	int			nentries;
	bool		has_hosts;
	AllowEntry	entries[FLEXIBLE_ARRAY_MEMBER];
} AllowList;

/* the process-wide list and its generation (bumped on every change) */
static MemoryContext allow_cxt = NULL;
static AllowList *global_allow = NULL;
static uint64 global_allow_gen = 1;

/* ----------------------------------------------------------------
 * Client and transfer state
 * ----------------------------------------------------------------
 */
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

	/* set when finished */
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
	AllowList  *allow;
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
};

static bool curl_initialized = false;

static int64
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ----------------------------------------------------------------
 * Allow-list parsing and address checks (no palloc in the checks: they
 * run inside curl callbacks)
 * ----------------------------------------------------------------
 */

/*
 * parse_address: an IPv4 or IPv6 literal (IPv6 optionally in brackets)
 * into addr; returns AF_INET, AF_INET6 or 0.
 */
static int
parse_address(const char *s, uint8 *addr)
{
	char		tmp[INET6_ADDRSTRLEN + 2];
	size_t		n = strlen(s);

	if (n >= 2 && s[0] == '[' && s[n - 1] == ']')
	{
		if (n - 2 >= sizeof(tmp))
			return 0;
		memcpy(tmp, s + 1, n - 2);
		tmp[n - 2] = '\0';
		return inet_pton(AF_INET6, tmp, addr) == 1 ? AF_INET6 : 0;
	}
	if (inet_pton(AF_INET, s, addr) == 1)
		return AF_INET;
	if (inet_pton(AF_INET6, s, addr) == 1)
		return AF_INET6;
	return 0;
}

static bool
valid_host_name(const char *s)
{
	if (*s == '\0' || strlen(s) > 253)
		return false;
	for (; *s; s++)
	{
		if (!(isalnum((unsigned char) *s) || *s == '-' || *s == '.' || *s == '_'))
			return false;
	}
	return true;
}

/*
 * parse_allowlist parses spec into a new AllowList in cxt.  Returns NULL
 * and a palloc'd message in *error when an entry is invalid.  Throws only
 * on out-of-memory.
 */
static AllowList *
parse_allowlist(const char *spec, MemoryContext cxt, char **error)
{
	char	   *copy = pstrdup(spec ? spec : "");
	int			maxn = 1;
	AllowList  *al;
	char	   *p;
	char	   *tok;

	for (p = copy; *p; p++)
		if (*p == ',')
			maxn++;
	al = MemoryContextAllocZero(cxt, offsetof(AllowList, entries) + maxn * sizeof(AllowEntry));

	for (tok = strtok_r(copy, ",", &p); tok != NULL; tok = strtok_r(NULL, ",", &p))
	{
		char	   *end;
		char	   *slash;
		AllowEntry *e = &al->entries[al->nentries];
		int			family;

		while (isspace((unsigned char) *tok))
			tok++;
		end = tok + strlen(tok);
		while (end > tok && isspace((unsigned char) end[-1]))
			*--end = '\0';
		if (*tok == '\0')
			continue;

		slash = strchr(tok, '/');
		if (slash)
		{
			char	   *endp;
			long		bits;

			*slash = '\0';
			family = parse_address(tok, e->addr);
			errno = 0;
			bits = strtol(slash + 1, &endp, 10);
			if (family == 0 || slash[1] == '\0' || *endp != '\0' || errno != 0 ||
				bits < 0 || bits > (family == AF_INET ? 32 : 128))
			{
				*slash = '/';
				*error = psprintf("invalid CIDR range \"%s\"", tok);
				pfree(al);
				return NULL;
			}
			e->kind = family == AF_INET ? ALLOW_V4 : ALLOW_V6;
			e->prefix = (int) bits;
		}
		else if ((family = parse_address(tok, e->addr)) != 0)
		{
			e->kind = family == AF_INET ? ALLOW_V4 : ALLOW_V6;
			e->prefix = family == AF_INET ? 32 : 128;
		}
		else
		{
			const char *name = tok;
			int			i;

			if (strncmp(name, "*.", 2) == 0)
			{
				e->wildcard = true;
				name++;			/* keep the dot */
			}
			if (!valid_host_name(e->wildcard ? name + 1 : name))
			{
				*error = psprintf("invalid allow-list entry \"%s\"", tok);
				pfree(al);
				return NULL;
			}
			e->kind = ALLOW_HOST;
			for (i = 0; name[i]; i++)
				e->host[i] = pg_ascii_tolower((unsigned char) name[i]);
			e->host[i] = '\0';
			al->has_hosts = true;
		}
		al->nentries++;
	}
	pfree(copy);
	return al;
}

static bool
prefix_match(const uint8 *a, const uint8 *b, int bits)
{
	int			whole = bits / 8;
	int			rest = bits % 8;

	if (memcmp(a, b, whole) != 0)
		return false;
	if (rest == 0)
		return true;
	return ((a[whole] ^ b[whole]) & (0xFF << (8 - rest)) & 0xFF) == 0;
}

/*
 * special_v4: why an IPv4 address is not public ("loopback", ...), or NULL
 * for a public address.
 */
static const char *
special_v4(const uint8 *a)
{
	if (a[0] == 0)
		return "unspecified";
	if (a[0] == 127)
		return "loopback";
	if (a[0] == 10 || (a[0] == 172 && (a[1] & 0xF0) == 16) ||
		(a[0] == 192 && a[1] == 168))
		return "private";
	if (a[0] == 169 && a[1] == 254)
		return "link-local";
	if (a[0] == 100 && (a[1] & 0xC0) == 64)
		return "shared address space";
	if (a[0] == 192 && a[1] == 0 && a[2] == 0)
		return "reserved";
	if (a[0] == 198 && (a[1] & 0xFE) == 18)
		return "benchmarking";
	if (a[0] >= 224 && a[0] <= 239)
		return "multicast";
	if (a[0] >= 240)
		return "reserved";
	return NULL;
}

/*
 * embedded_v4: the IPv4 address inside an IPv4-mapped (::ffff:0:0/96),
 * IPv4-compatible (::/96), NAT64 (64:ff9b::/96) or 6to4 (2002::/16)
 * address, or NULL.
 */
static const uint8 *
embedded_v4(const uint8 *a)
{
	static const uint8 mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF};
	static const uint8 zero[12] = {0};
	static const uint8 nat64[12] = {0, 0x64, 0xFF, 0x9B, 0, 0, 0, 0, 0, 0, 0, 0};

	if (memcmp(a, mapped, 12) == 0 || memcmp(a, nat64, 12) == 0)
		return a + 12;
	if (memcmp(a, zero, 12) == 0 && !(a[12] == 0 && a[13] == 0 && a[14] == 0 && a[15] <= 1))
		return a + 12;
	if (a[0] == 0x20 && a[1] == 0x02)
		return a + 2;
	return NULL;
}

static const char *
special_v6(const uint8 *a)
{
	static const uint8 zero[16] = {0};
	const uint8 *v4;

	if (memcmp(a, zero, 15) == 0 && a[15] == 0)
		return "unspecified";
	if (memcmp(a, zero, 15) == 0 && a[15] == 1)
		return "loopback";
	if ((a[0] & 0xFE) == 0xFC)
		return "private";
	if (a[0] == 0xFE && (a[1] & 0xC0) == 0x80)
		return "link-local";
	if (a[0] == 0xFE && (a[1] & 0xC0) == 0xC0)
		return "site-local";
	if (a[0] == 0xFF)
		return "multicast";
	v4 = embedded_v4(a);
	if (v4)
		return special_v4(v4);
	return NULL;
}

/* does the allow-list contain an address range covering a? */
static bool
allowed_by_range(const AllowList *al, int family, const uint8 *a)
{
	const uint8 *v4 = family == AF_INET ? a : embedded_v4(a);
	int			i;

	for (i = 0; al && i < al->nentries; i++)
	{
		const AllowEntry *e = &al->entries[i];

		if (e->kind == ALLOW_V6 && family == AF_INET6 && prefix_match(a, e->addr, e->prefix))
			return true;
		if (e->kind == ALLOW_V4 && v4 != NULL && prefix_match(v4, e->addr, e->prefix))
			return true;
	}
	return false;
}

/*
 * allowed_by_host: does the allow-list name the host of the transfer's
 * current URL (redirects included)?  Uses curl's URL parser (malloc).
 */
static bool
allowed_by_host(const AllowList *al, CURL *easy)
{
	char	   *url = NULL;
	char	   *host = NULL;
	CURLU	   *u;
	bool		found = false;
	int			i;

	if (al == NULL || !al->has_hosts)
		return false;
	if (curl_easy_getinfo(easy, CURLINFO_EFFECTIVE_URL, &url) != CURLE_OK || url == NULL)
		return false;
	u = curl_url();
	if (u == NULL)
		return false;
	if (curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
		curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK)
	{
		size_t		hl = strlen(host);

		for (i = 0; i < hl; i++)
			host[i] = pg_ascii_tolower((unsigned char) host[i]);
		for (i = 0; i < al->nentries && !found; i++)
		{
			const AllowEntry *e = &al->entries[i];
			size_t		el = strlen(e->host);

			if (e->kind != ALLOW_HOST)
				continue;
			if (e->wildcard)
				found = hl > el && strcmp(host + hl - el, e->host) == 0;
			else
				found = strcmp(host, e->host) == 0;
		}
		curl_free(host);
	}
	curl_url_cleanup(u);
	return found;
}

/*
 * check_destination: may the transfer connect to / talk to this address?
 * On refusal, records the reason in t.  Runs inside curl callbacks.
 */
static bool
check_destination(HttpTransfer *t, int family, const uint8 *a)
{
	const AllowList *al = t->client->allow;
	const char *why;
	char		text[INET6_ADDRSTRLEN];

	why = family == AF_INET ? special_v4(a) : special_v6(a);
	if (why == NULL || allowed_by_range(al, family, a) || allowed_by_host(al, t->easy))
		return true;

	if (inet_ntop(family, a, text, sizeof(text)) == NULL)
		strlcpy(text, "?", sizeof(text));
	snprintf(t->refused_msg, sizeof(t->refused_msg),
			 "destination address %s (%s) is not allowed", text, why);
	t->refused = true;
	return false;
}

bool
allma_http_check_allowlist(const char *spec, char **error)
{
	AllowList  *al = parse_allowlist(spec, CurrentMemoryContext, error);

	if (al == NULL)
		return false;
	pfree(al);
	return true;
}

void
allma_http_set_allowlist(const char *spec)
{
	char	   *error = NULL;
	AllowList  *al;

	if (allow_cxt == NULL)
		allow_cxt = AllocSetContextCreate(TopMemoryContext, "allma http allow-list",
										  ALLOCSET_SMALL_SIZES);
	al = parse_allowlist(spec, allow_cxt, &error);
	if (al == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s", error),
				 errhint("Entries are host names, \"*.domain\", IP addresses or CIDR ranges, separated by commas.")));
	if (global_allow)
		pfree(global_allow);
	global_allow = al;
	global_allow_gen++;
}

/* a client following the process-wide list takes a copy when it changed */
static void
refresh_allowlist(AllmaHttpClient *client)
{
	Size		sz;

	if (client->own_allow || client->allow_gen == global_allow_gen)
		return;
	if (client->allow)
		pfree(client->allow);
	client->allow = NULL;
	if (global_allow)
	{
		sz = offsetof(AllowList, entries) + global_allow->nentries * sizeof(AllowEntry);
		client->allow = MemoryContextAlloc(client->cxt, sz);
		memcpy(client->allow, global_allow, sz);
	}
	client->allow_gen = global_allow_gen;
}

/* ----------------------------------------------------------------
 * URL and request validation
 * ----------------------------------------------------------------
 */

/*
 * url_host_key: "scheme://host:port" of url into key; false and a
 * palloc'd message in *error when the URL is not acceptable.  If bad_scheme
 * is not NULL, it tells whether the URL parsed but its scheme is not http
 * or https.
 */
static bool
url_host_key(const char *url, bool mail, char *key, size_t keylen, char **error,
			 bool *bad_scheme)
{
	CURLU	   *u;
	CURLUcode	rc;
	char	   *scheme = NULL;
	char	   *host = NULL;
	char	   *port = NULL;
	bool		ok = false;

	if (bad_scheme)
		*bad_scheme = false;
	if (url == NULL || *url == '\0')
	{
		*error = pstrdup("URL is empty");
		return false;
	}
	if (strlen(url) > MAX_URL_LEN)
	{
		*error = psprintf("URL is longer than %d bytes", MAX_URL_LEN);
		return false;
	}
	u = curl_url();
	if (u == NULL)
	{
		*error = pstrdup("out of memory");
		return false;
	}
	rc = curl_url_set(u, CURLUPART_URL, url, CURLU_NON_SUPPORT_SCHEME);
	if (rc != CURLUE_OK)
		*error = psprintf("invalid URL \"%s\": %s", url, curl_url_strerror(rc));
	else if (curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK)
		*error = psprintf("invalid URL \"%s\": no scheme", url);
	else if (!mail && pg_strcasecmp(scheme, "http") != 0 && pg_strcasecmp(scheme, "https") != 0)
	{
		*error = psprintf("unsupported URL scheme \"%s\": only http and https are allowed", scheme);
		if (bad_scheme)
			*bad_scheme = true;
	}
	else if (mail && pg_strcasecmp(scheme, "smtp") != 0 && pg_strcasecmp(scheme, "smtps") != 0)
		*error = psprintf("unsupported mail URL scheme \"%s\": only smtp and smtps are allowed", scheme);
	else if (curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK || *host == '\0')
		*error = psprintf("invalid URL \"%s\": no host", url);
	else if (curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) != CURLUE_OK)
		*error = psprintf("invalid URL \"%s\": no port", url);
	else
	{
		char	   *p;

		snprintf(key, keylen, "%s://%s:%s", scheme, host, port);
		for (p = key; *p; p++)
			*p = pg_ascii_tolower((unsigned char) *p);
		ok = true;
	}
	curl_free(scheme);
	curl_free(host);
	curl_free(port);
	curl_url_cleanup(u);
	return ok;
}

bool
allma_http_check_url(const char *url, char **error)
{
	char		key[HOST_KEY_LEN];

	return url_host_key(url, false, key, sizeof(key), error, NULL);
}

bool
allma_http_check_mail_url(const char *url, char **error)
{
	char		key[HOST_KEY_LEN];

	return url_host_key(url, true, key, sizeof(key), error, NULL);
}

/* RFC 9110 token characters */
static bool
is_token(const char *s)
{
	if (*s == '\0')
		return false;
	for (; *s; s++)
	{
		if (!(isalnum((unsigned char) *s) || strchr("!#$%&'*+-.^_`|~", *s)))
			return false;
	}
	return true;
}

static bool
valid_header_value(const char *s)
{
	for (; *s; s++)
		if (*s == '\r' || *s == '\n')
			return false;
	return true;
}

/* ----------------------------------------------------------------
 * curl callbacks: no palloc, no ereport
 * ----------------------------------------------------------------
 */

/*
 * redirect_response: is the current response (headers received) one the
 * client follows: 301, 302, 303, 307 or 308 with a Location, and following
 * enabled?  Safe in callbacks.
 */
static bool
redirect_response(HttpTransfer *t)
{
	long		status = 0;
	struct curl_header *h;

	if (t->client->max_redirects <= 0 || t->is_mail)
		return false;
	if (curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &status) != CURLE_OK)
		return false;
	if (status != 301 && status != 302 && status != 303 &&
		status != 307 && status != 308)
		return false;
	return curl_easy_header(t->easy, "Location", 0, CURLH_HEADER, -1, &h) == CURLHE_OK &&
		h->value[0] != '\0';
}

/*
 * redirect_target: for a finished hop whose response is a redirect to
 * follow, the absolute URL it points to, else NULL.  curl resolves a
 * relative Location against the current URL when the hop is done and
 * offers the result as CURLINFO_REDIRECT_URL, although it follows nothing
 * itself; the string belongs to curl and lives until the handle is reset.
 */
static char *
redirect_target(HttpTransfer *t)
{
	char	   *target = NULL;

	if (!redirect_response(t))
		return NULL;
	if (curl_easy_getinfo(t->easy, CURLINFO_REDIRECT_URL, &target) != CURLE_OK)
		return NULL;
	return target;
}

/*
 * the response body, bounded by the transfer's cap; the body of a redirect
 * that will be followed is discarded.  (Not CURLOPT_MAXFILESIZE: curl
 * would apply it to a redirect's Content-Length too, before it has seen
 * the Location.)
 */
static size_t
write_cb(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	HttpTransfer *t = (HttpTransfer *) userdata;
	size_t		n = size * nmemb;
	curl_off_t	cl = -1;

	if (redirect_response(t))
		return n;
	/* a Content-Length over the cap fails at once */
	if (t->len == 0 &&
		curl_easy_getinfo(t->easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl) == CURLE_OK &&
		cl > 0 && (uint64) cl > (uint64) t->max_bytes)
	{
		t->too_large = true;
		return 0;
	}
	if (n > t->max_bytes - t->len)
	{
		t->too_large = true;
		return 0;
	}
	if (t->len + n + 1 > t->cap)
	{
		size_t		newcap = t->cap ? t->cap * 2 : 16384;
		char	   *nb;

		/* size the first buffer by Content-Length when it is known */
		if (t->buf == NULL && cl > 0)
			newcap = Max(newcap, (size_t) cl + 1);
		while (newcap < t->len + n + 1)
			newcap *= 2;
		newcap = Min(newcap, t->max_bytes + 1);
		nb = realloc(t->buf, newcap);
		if (nb == NULL)
		{
			t->out_of_memory = true;
			return 0;
		}
		t->buf = nb;
		t->cap = newcap;
	}
	memcpy(t->buf + t->len, ptr, n);
	t->len += n;
	return n;
}

/* counts header bytes; curl keeps the headers itself (curl_easy_header) */
static size_t
header_cb(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	HttpTransfer *t = (HttpTransfer *) userdata;
	size_t		n = size * nmemb;

	t->header_bytes += n;
	if (t->header_bytes > ALLMA_HTTP_MAX_HEADER_BYTES)
	{
		t->headers_too_large = true;
		return 0;
	}
	return n;
}

/* checks the resolved address before a socket is even created */
static curl_socket_t
opensocket_cb(void *clientp, curlsocktype purpose, struct curl_sockaddr *address)
{
	HttpTransfer *t = (HttpTransfer *) clientp;
	bool		ok;

	if (address->family == AF_INET)
		ok = check_destination(t, AF_INET,
							   (const uint8 *) &((struct sockaddr_in *) &address->addr)->sin_addr);
	else if (address->family == AF_INET6)
		ok = check_destination(t, AF_INET6,
							   (const uint8 *) &((struct sockaddr_in6 *) &address->addr)->sin6_addr);
	else
	{
		snprintf(t->refused_msg, sizeof(t->refused_msg),
				 "destination address family %d is not allowed", address->family);
		t->refused = true;
		ok = false;
	}
	if (!ok)
		return CURL_SOCKET_BAD;
	return socket(address->family, address->socktype | SOCK_CLOEXEC, address->protocol);
}

/* checks the connection (new or reused) before each request is sent */
static int
prereq_cb(void *clientp, char *conn_primary_ip, char *conn_local_ip,
		  int conn_primary_port, int conn_local_port)
{
	HttpTransfer *t = (HttpTransfer *) clientp;
	uint8		a[16];
	int			family = conn_primary_ip ? parse_address(conn_primary_ip, a) : 0;

	if (family == 0)
	{
		snprintf(t->refused_msg, sizeof(t->refused_msg),
				 "destination address \"%s\" is unknown", conn_primary_ip ? conn_primary_ip : "");
		t->refused = true;
		return CURL_PREREQFUNC_ABORT;
	}
	return check_destination(t, family, a) ? CURL_PREREQFUNC_OK : CURL_PREREQFUNC_ABORT;
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
	client->max_per_host = limits->max_per_host > 0 ? limits->max_per_host : ALLMA_HTTP_DEFAULT_MAX_PER_HOST;
	client->connect_timeout_ms = limits->connect_timeout_ms > 0 ? limits->connect_timeout_ms : ALLMA_HTTP_DEFAULT_CONNECT_TIMEOUT_MS;
	client->timeout_ms = limits->timeout_ms > 0 ? limits->timeout_ms : ALLMA_HTTP_DEFAULT_TIMEOUT_MS;
	client->max_bytes = limits->max_response_bytes > 0 ? limits->max_response_bytes : ALLMA_HTTP_DEFAULT_MAX_RESPONSE_BYTES;
	client->max_bytes = Min(client->max_bytes, ALLMA_HTTP_MAX_RESPONSE_BYTES_LIMIT);
	client->max_redirects = limits->max_redirects != 0 ? limits->max_redirects : ALLMA_HTTP_DEFAULT_MAX_REDIRECTS;
	client->user_agent = MemoryContextStrdup(cxt, limits->user_agent ? limits->user_agent
											 : "allma/" ALLMA_VERSION);

	if (limits->allowlist != NULL)
	{
		char	   *error = NULL;

		client->own_allow = true;
		client->allow = parse_allowlist(limits->allowlist, cxt, &error);
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
	client->max_per_host = limits->max_per_host > 0 ? limits->max_per_host : ALLMA_HTTP_DEFAULT_MAX_PER_HOST;
	client->connect_timeout_ms = limits->connect_timeout_ms > 0 ? limits->connect_timeout_ms : ALLMA_HTTP_DEFAULT_CONNECT_TIMEOUT_MS;
	client->timeout_ms = limits->timeout_ms > 0 ? limits->timeout_ms : ALLMA_HTTP_DEFAULT_TIMEOUT_MS;
	client->max_bytes = limits->max_response_bytes > 0 ? limits->max_response_bytes : ALLMA_HTTP_DEFAULT_MAX_RESPONSE_BYTES;
	client->max_bytes = Min(client->max_bytes, ALLMA_HTTP_MAX_RESPONSE_BYTES_LIMIT);
	client->max_redirects = limits->max_redirects != 0 ? limits->max_redirects : ALLMA_HTTP_DEFAULT_MAX_REDIRECTS;
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

/* frees what a transfer holds (not its easy handle) */
static void
free_transfer(HttpTransfer *t)
{
	int			i;

	if (t->headers)
		curl_slist_free_all(t->headers);
	if (t->mail_rcpt)
		curl_slist_free_all(t->mail_rcpt);
	if (t->mail_from)
		pfree(t->mail_from);
	if (t->username)
		pfree(t->username);
	if (t->password)
	{
		explicit_bzero(t->password, strlen(t->password));
		pfree(t->password);
	}
	if (t->buf)
		free(t->buf);
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
	}
	/* finished, or between two hops: their handles are not in the multi */
	dlist_foreach_modify(it, &client->redirecting)
	{
		HttpTransfer *t = dlist_container(HttpTransfer, node, it.cur);

		curl_easy_cleanup(t->easy);
		if (t->headers)
			curl_slist_free_all(t->headers);
		if (t->buf)
			free(t->buf);
	}
	dlist_foreach_modify(it, &client->finished)
	{
		HttpTransfer *t = dlist_container(HttpTransfer, node, it.cur);

		if (t->easy)
			curl_easy_cleanup(t->easy);
		if (t->headers)
			curl_slist_free_all(t->headers);
		if (t->buf)
			free(t->buf);
	}
	hash_seq_init(&hs, client->hosts);
	while ((h = hash_seq_search(&hs)) != NULL)
	{
		dlist_foreach_modify(it, &h->waiting)
		{
			HttpTransfer *t = dlist_container(HttpTransfer, node, it.cur);

			if (t->headers)
				curl_slist_free_all(t->headers);
		}
	}
	/* running transfers' malloc'd state */
	dlist_foreach_modify(it, &client->running)
	{
		HttpTransfer *t = dlist_container(HttpTransfer, node, it.cur);

		if (t->headers)
			curl_slist_free_all(t->headers);
		if (t->buf)
			free(t->buf);
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

/* an SMTP address or login field: no line breaks, no NUL */
static bool
valid_mail_text(const char *s)
{
	return s != NULL && valid_header_value(s);
}

/* the mail part of a request: see allma_http_check_request */
static bool
check_mail_request(const AllmaHttpRequest *req, char **error, char **detail)
{
	if (!valid_mail_text(req->mail_from))
	{
		*error = pstrdup("invalid mail sender address");
		*detail = pstrdup("Addresses must not contain line breaks.");
		return false;
	}
	if (req->nmail_rcpt <= 0)
	{
		*error = pstrdup("a mail needs at least one recipient");
		return false;
	}
	for (int i = 0; i < req->nmail_rcpt; i++)
	{
		if (!valid_mail_text(req->mail_rcpt[i]) || req->mail_rcpt[i][0] == '\0')
		{
			*error = psprintf("invalid mail recipient address \"%s\"",
							  req->mail_rcpt[i] ? req->mail_rcpt[i] : "");
			*detail = pstrdup("Addresses must be non-empty and must not contain line breaks.");
			return false;
		}
	}
	if ((req->username == NULL) != (req->password == NULL) ||
		(req->username && (!valid_mail_text(req->username) || !valid_mail_text(req->password))))
	{
		*error = pstrdup("invalid mail login");
		*detail = pstrdup("A user name and a password are both given or both omitted, without line breaks.");
		return false;
	}
	return true;
}

bool
allma_http_check_request(const AllmaHttpRequest *req, char **error, char **detail)
{
	char		key[HOST_KEY_LEN];
	const char *method = req->method ? req->method : "GET";

	*error = NULL;
	*detail = NULL;
	if (!url_host_key(req->url, req->mail_from != NULL, key, sizeof(key), error, NULL))
		return false;
	if (req->mail_from != NULL)
		return check_mail_request(req, error, detail);
	if (strlen(method) > MAX_METHOD_LEN || !is_token(method))
	{
		*error = psprintf("invalid HTTP method \"%s\"", method);
		return false;
	}
	for (int i = 0; i < req->nheaders; i++)
	{
		const AllmaHttpHeader *hd = &req->headers[i];

		if (hd->name == NULL || !is_token(hd->name))
		{
			*error = psprintf("invalid HTTP header name \"%s\"", hd->name ? hd->name : "");
			return false;
		}
		if (hd->value == NULL || !valid_header_value(hd->value))
		{
			*error = psprintf("invalid value of HTTP header \"%s\"", hd->name);
			*detail = pstrdup("Header values must not contain line breaks.");
			return false;
		}
	}
	if (req->idempotency_key && !valid_header_value(req->idempotency_key))
	{
		*error = pstrdup("invalid idempotency key");
		*detail = pstrdup("Header values must not contain line breaks.");
		return false;
	}
	return true;
}

/*
 * copy_mail_request fills the mail fields of t (allocated in the client's
 * context); false when curl is out of memory.
 */
static bool
copy_mail_request(AllmaHttpClient *client, HttpTransfer *t, const AllmaHttpRequest *req)
{
	MemoryContext old = MemoryContextSwitchTo(client->cxt);

	t->is_mail = true;
	t->send_body = true;
	t->mail_from = pstrdup(req->mail_from);
	if (req->username)
	{
		t->username = pstrdup(req->username);
		t->password = pstrdup(req->password);
	}
	if (t->body == NULL)
		t->body = pstrdup("");
	MemoryContextSwitchTo(old);
	for (int i = 0; i < req->nmail_rcpt; i++)
	{
		struct curl_slist *nl = curl_slist_append(t->mail_rcpt, req->mail_rcpt[i]);

		if (nl == NULL)
			return false;
		t->mail_rcpt = nl;
	}
	return true;
}

/* the class (HDR_xxx) of a header by its name */
static uint8
header_class(const char *name)
{
	if (pg_strcasecmp(name, "Accept") == 0 ||
		pg_strcasecmp(name, "User-Agent") == 0 ||
		pg_strcasecmp(name, "Idempotency-Key") == 0)
		return HDR_SAFE;
	if (pg_strcasecmp(name, "Content-Type") == 0)
		return HDR_CONTENT_TYPE;
	if (pg_strcasecmp(name, "Content-Length") == 0 ||
		pg_strcasecmp(name, "Content-Encoding") == 0 ||
		pg_strcasecmp(name, "Content-Language") == 0 ||
		pg_strcasecmp(name, "Content-Location") == 0)
		return HDR_BODY;
	return HDR_OTHER;
}

/*
 * build_header_list: the header list for t's next request (malloc'd by
 * curl_slist_append), or NULL when out of memory.  Of the caller's headers
 * it has those the rule in http.h lets through after the redirects so far:
 * after a redirect dropped the body, none describing the body; once a hop
 * has left the original origin, only HDR_SAFE ones and Content-Type while
 * the body is sent.  Then an empty "Content-Type:" if a body goes without
 * one (no curl form default) and "Expect:" (no 100-continue stall).  Never
 * pallocs or throws.
 */
static struct curl_slist *
build_header_list(HttpTransfer *t)
{
	struct curl_slist *list = NULL;
	struct curl_slist *nl;
	bool		has_ctype = false;
	int			i;

	for (i = 0; i < t->nhdr; i++)
	{
		uint8		cls = t->hdr_class[i];

		if (t->body_dropped && (cls == HDR_CONTENT_TYPE || cls == HDR_BODY))
			continue;
		if (t->cross_origin && cls != HDR_SAFE &&
			!(cls == HDR_CONTENT_TYPE && t->send_body))
			continue;
		if (cls == HDR_CONTENT_TYPE)
			has_ctype = true;
		nl = curl_slist_append(list, t->hdr_lines[i]);
		if (nl == NULL)
			goto oom;
		list = nl;
	}
	if (t->send_body && !has_ctype)
	{
		nl = curl_slist_append(list, "Content-Type:");
		if (nl == NULL)
			goto oom;
		list = nl;
	}
	nl = curl_slist_append(list, "Expect:");
	if (nl == NULL)
		goto oom;
	return nl;

oom:
	if (list)
		curl_slist_free_all(list);
	return NULL;
}

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
	if (!url_host_key(req->url, req->mail_from != NULL, key, sizeof(key), &error, NULL))
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
		bool		ok = copy_mail_request(client, t, req);

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
		t->hdr_class[t->nhdr] = header_class(hd->name);
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

	t->headers = build_header_list(t);
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

/* mail: curl reads the message to upload from here */
static size_t
mail_read_cb(char *buffer, size_t size, size_t nitems, void *userdata)
{
	HttpTransfer *t = (HttpTransfer *) userdata;
	size_t		n = Min(size * nitems, t->body_len - t->upload_pos);

	memcpy(buffer, t->body + t->upload_pos, n);
	t->upload_pos += n;
	return n;
}

#define SET(opt, val) do { if (rc == CURLE_OK) rc = curl_easy_setopt(e, opt, val); } while (0)

/*
 * set_common_options: what every transfer sets, HTTP or mail: t as the
 * handle's private data, the URL and allowed protocols, no signals, no
 * proxy, the time left until t's deadline, the error and body buffers.
 */
static CURLcode
set_common_options(AllmaHttpClient *client, HttpTransfer *t, const char *protocols)
{
	CURL	   *e = t->easy;
	CURLcode	rc = CURLE_OK;
	long		left = (long) Max(t->deadline - now_ms(), 1);

	SET(CURLOPT_PRIVATE, t);
	SET(CURLOPT_URL, t->url);
	SET(CURLOPT_PROTOCOLS_STR, protocols);
	SET(CURLOPT_NOSIGNAL, 1L);
	SET(CURLOPT_PROXY, "");
	SET(CURLOPT_TIMEOUT_MS, left);
	SET(CURLOPT_CONNECTTIMEOUT_MS, Min(client->connect_timeout_ms, left));
	t->connect_timeout_ms = client->connect_timeout_ms < left ? client->connect_timeout_ms : 0;
	SET(CURLOPT_ERRORBUFFER, t->errbuf);
	SET(CURLOPT_WRITEFUNCTION, write_cb);
	SET(CURLOPT_WRITEDATA, t);
	return rc;
}

/* the options of an SMTP send (see AllmaHttpRequest) */
static CURLcode
set_mail_options(HttpTransfer *t)
{
	CURL	   *e = t->easy;
	CURLcode	rc = CURLE_OK;

	t->upload_pos = 0;
	SET(CURLOPT_MAIL_FROM, t->mail_from);
	SET(CURLOPT_MAIL_RCPT, t->mail_rcpt);
	SET(CURLOPT_UPLOAD, 1L);
	SET(CURLOPT_INFILESIZE_LARGE, (curl_off_t) t->body_len);
	SET(CURLOPT_READFUNCTION, mail_read_cb);
	SET(CURLOPT_READDATA, t);
	if (t->username)
	{
		SET(CURLOPT_USERNAME, t->username);
		SET(CURLOPT_PASSWORD, t->password);
	}
	return rc;
}

/* the options of an HTTP request's next hop */
static CURLcode
set_http_options(AllmaHttpClient *client, HttpTransfer *t)
{
	CURL	   *e = t->easy;
	CURLcode	rc = CURLE_OK;

	/* redirects are followed in follow_redirect, never by curl */
	SET(CURLOPT_FOLLOWLOCATION, 0L);
	SET(CURLOPT_USERAGENT, client->user_agent);
	SET(CURLOPT_ACCEPT_ENCODING, "");
	SET(CURLOPT_TCP_KEEPALIVE, 1L);
	SET(CURLOPT_HEADERFUNCTION, header_cb);
	SET(CURLOPT_HEADERDATA, t);
	SET(CURLOPT_OPENSOCKETFUNCTION, opensocket_cb);
	SET(CURLOPT_OPENSOCKETDATA, t);
	SET(CURLOPT_PREREQFUNCTION, prereq_cb);
	SET(CURLOPT_PREREQDATA, t);
	SET(CURLOPT_HTTPHEADER, t->headers);

	if (t->send_body)
	{
		SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) t->body_len);
		SET(CURLOPT_POSTFIELDS, t->body ? t->body : "");
		if (strcmp(t->method, "POST") != 0)
			SET(CURLOPT_CUSTOMREQUEST, t->method);
	}
	else if (strcmp(t->method, "GET") == 0)
		SET(CURLOPT_HTTPGET, 1L);
	else if (strcmp(t->method, "HEAD") == 0)
		SET(CURLOPT_NOBODY, 1L);
	else
		SET(CURLOPT_CUSTOMREQUEST, t->method);
	return rc;
}

#undef SET

/*
 * setup_easy sets every option of a (fresh or reset) easy handle for t's
 * next hop (or its mail send); its timeouts are what is left until t's
 * deadline.  false, with t->start_error set, when curl refuses an option.
 * Mail sends are not checked against the allow-list (see http.h).
 */
static bool
setup_easy(AllmaHttpClient *client, HttpTransfer *t)
{
	CURLcode	rc;

	rc = set_common_options(client, t, t->is_mail ? "smtp,smtps" : "http,https");
	if (rc == CURLE_OK)
		rc = t->is_mail ? set_mail_options(t) : set_http_options(client, t);
	if (rc != CURLE_OK)
		snprintf(t->start_error, sizeof(t->start_error),
				 "could not set up the transfer: %s", curl_easy_strerror(rc));
	return rc == CURLE_OK;
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
	t->deadline = t->started_at + t->timeout_ms;
	t->easy = client->nfree > 0 ? client->free_handles[--client->nfree] : curl_easy_init();
	if (t->easy == NULL)
	{
		strlcpy(t->start_error, "out of memory", sizeof(t->start_error));
		t->out_of_memory = true;
		mark_finished(client, t, CURLE_OUT_OF_MEMORY);
		return;
	}
	t->errbuf[0] = '\0';
	if (!setup_easy(client, t))
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
		if (result == CURLE_OK && redirect_target(t) != NULL)
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
		char	   *lname = pstrdup(h->name);
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
			appendStringInfoString(&pairs[i].value, h->value);
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
		appendStringInfoString(&pairs[npairs].value, h->value);
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
	c->effective_url = pstrdup(eurl ? eurl : t->url);
	if (status > 0)
	{
		c->status = (int) status;
		c->content_type = ctype ? pstrdup(ctype) : NULL;
		c->headers = response_headers(e);
		if (curl_easy_header(e, "Retry-After", 0, CURLH_HEADER, -1, &h) == CURLHE_OK)
			c->retry_after_ms = parse_retry_after(h->value);
	}
	else if (t->prev_status > 0)
	{
		/* a hop after a redirect failed without a response: the redirect */
		c->status = (int) t->prev_status;
		c->content_type = t->prev_ctype ? pstrdup(t->prev_ctype) : NULL;
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
		c->error = pstrdup(t->start_error);
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
	else
		c->error = pstrdup(t->errbuf[0] ? t->errbuf : curl_easy_strerror(t->result));
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
	char	   *target = redirect_target(t);
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
	if (!url_host_key(target, false, key, sizeof(key), &error, &bad_scheme))
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

	list = build_header_list(t);
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
	if (!setup_easy(client, t))
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

		build_completion(t, &done[ndone]);
		dlist_delete(&t->node);
		release_transfer(client, t);
		ndone++;
	}
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
 * SQL debug functions: the same client, run synchronously
 * ----------------------------------------------------------------
 */

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
	JsonbValue	v;

	put_key(st, key);
	v.type = jbvBinary;
	v.val.binary.data = &jb->root;
	v.val.binary.len = VARSIZE(jb) - VARHDRSZ;
	pushJsonbValue(st, WJB_VALUE, &v);
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
		int			n = pg_b64_encode(c->body, c->body_len, enc, enclen);

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
	{
		Jsonb	   *r = completion_to_jsonb(&cs[i]);
		JsonbValue	jv;

		jv.type = jbvBinary;
		jv.val.binary.data = &r->root;
		jv.val.binary.len = VARSIZE(r) - VARHDRSZ;
		pushJsonbValue(&st, WJB_ELEM, &jv);
	}
	res = pushJsonbValue(&st, WJB_END_ARRAY, NULL);
	PG_RETURN_JSONB_P(JsonbValueToJsonb(res));
}
