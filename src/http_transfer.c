/*-------------------------------------------------------------------------
 *
 * http_transfer.c
 *	  One transfer of allma's HTTP client: validating a request (URL,
 *	  method, headers, the mail fields of an SMTP send), the caller's
 *	  headers and which of them each hop may send, the options of its curl
 *	  easy handle, and the callbacks curl calls for it.
 *
 * The client (http.c) queues, starts and drives transfers; everything it
 * sets on an easy handle is set here (allma_http_setup_easy), for the
 * first hop, for each redirect hop, and for mail sends.
 *
 * The callbacks (response body, response headers, opening a socket, the
 * check before each request, the mail upload) never palloc and never
 * ereport: a problem is recorded in the transfer (too_large, refused,
 * out_of_memory) and curl is told to stop; the completion reports it.
 * Destinations are checked on the resolved address before a socket is
 * opened and again before every request on a reused connection (see
 * http_allowlist.c); mail sends are not checked (see http.h).
 *
 * IDENTIFICATION
 *	  src/http_transfer.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <curl/curl.h>

#include "utils/memutils.h"

#include "http.h"
#include "http_int.h"

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
bool
allma_http_url_host_key(const char *url, bool mail, char *key, size_t keylen,
						char **error, bool *bad_scheme)
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

	return allma_http_url_host_key(url, false, key, sizeof(key), error, NULL);
}

bool
allma_http_check_mail_url(const char *url, char **error)
{
	char		key[HOST_KEY_LEN];

	return allma_http_url_host_key(url, true, key, sizeof(key), error, NULL);
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
char *
allma_http_redirect_target(HttpTransfer *t)
{
	char	   *target = NULL;

	if (!redirect_response(t))
		return NULL;
	if (curl_easy_getinfo(t->easy, CURLINFO_REDIRECT_URL, &target) != CURLE_OK)
		return NULL;
	return target;
}

/*
 * budget_allows: may t's buffer grow by delta bytes within the client's
 * max_inflight_bytes?  The oldest running transfer always may: it is never
 * paused, so it finishes and frees room, and paused transfers cannot wait
 * for each other (the budget is exceeded by at most its response cap).
 */
static bool
budget_allows(HttpTransfer *t, size_t delta)
{
	AllmaHttpClient *client = t->client;

	if (client->max_inflight_bytes == 0 ||
		client->inflight_bytes + delta <= client->max_inflight_bytes)
		return true;
	return !dlist_is_empty(&client->running) &&
		dlist_head_node(&client->running) == &t->node;
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
		if (!budget_allows(t, newcap - t->cap))
		{
			/* curl keeps this data and delivers it again when resumed */
			t->paused = true;
			t->client->npaused++;
			return CURL_WRITEFUNC_PAUSE;
		}
		nb = realloc(t->buf, newcap);
		if (nb == NULL)
		{
			t->out_of_memory = true;
			return 0;
		}
		t->client->inflight_bytes += newcap - t->cap;
		t->client->peak_inflight_bytes = Max(t->client->peak_inflight_bytes,
											 t->client->inflight_bytes);
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

/*
 * check_destination: may the transfer connect to / talk to this address?
 * On refusal, records the reason in t.  Runs inside curl callbacks.
 */
static bool
check_destination(HttpTransfer *t, int family, const uint8 *a)
{
	const char *why = allma_http_allowlist_refusal(t->client->allow, family, a, t->easy);
	char		text[INET6_ADDRSTRLEN];

	if (why == NULL)
		return true;

	if (inet_ntop(family, a, text, sizeof(text)) == NULL)
		strlcpy(text, "?", sizeof(text));
	snprintf(t->refused_msg, sizeof(t->refused_msg),
			 "destination address %s (%s) is not allowed", text, why);
	t->refused = true;
	return false;
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
	int			family = conn_primary_ip ? allma_http_parse_address(conn_primary_ip, a) : 0;

	if (family == 0)
	{
		snprintf(t->refused_msg, sizeof(t->refused_msg),
				 "destination address \"%s\" is unknown", conn_primary_ip ? conn_primary_ip : "");
		t->refused = true;
		return CURL_PREREQFUNC_ABORT;
	}
	return check_destination(t, family, a) ? CURL_PREREQFUNC_OK : CURL_PREREQFUNC_ABORT;
}

/* ----------------------------------------------------------------
 * Requests: checks, mail fields, headers
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
	if (!allma_http_url_host_key(req->url, req->mail_from != NULL, key, sizeof(key), error, NULL))
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
bool
allma_http_copy_mail_request(AllmaHttpClient *client, HttpTransfer *t,
							 const AllmaHttpRequest *req)
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
uint8
allma_http_header_class(const char *name)
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
struct curl_slist *
allma_http_build_header_list(HttpTransfer *t)
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

/* ----------------------------------------------------------------
 * Easy handle options
 * ----------------------------------------------------------------
 */

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

/*
 * mail_debug_cb keeps the address of the last RCPT TO command curl sent:
 * curl sends them one at a time and stops at the first one refused, so
 * after a refusal it names the recipient the server refused.
 */
static int
mail_debug_cb(CURL *handle, curl_infotype type, char *data, size_t size, void *userdata)
{
	HttpTransfer *t = (HttpTransfer *) userdata;

	if (type == CURLINFO_HEADER_OUT && size > 8 && pg_strncasecmp(data, "RCPT TO:", 8) == 0)
	{
		size_t		n = size - 8;

		while (n > 0 && (data[8 + n - 1] == '\r' || data[8 + n - 1] == '\n'))
			n--;
		n = Min(n, sizeof(t->mail_last_rcpt) - 1);
		memcpy(t->mail_last_rcpt, data + 8, n);
		t->mail_last_rcpt[n] = '\0';
	}
	return 0;
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
	t->mail_last_rcpt[0] = '\0';
	SET(CURLOPT_MAIL_FROM, t->mail_from);
	SET(CURLOPT_MAIL_RCPT, t->mail_rcpt);
	SET(CURLOPT_UPLOAD, 1L);
	SET(CURLOPT_INFILESIZE_LARGE, (curl_off_t) t->body_len);
	SET(CURLOPT_READFUNCTION, mail_read_cb);
	SET(CURLOPT_READDATA, t);
	/* (VERBOSE only makes curl call the debug callback; it prints nothing) */
	SET(CURLOPT_DEBUGFUNCTION, mail_debug_cb);
	SET(CURLOPT_DEBUGDATA, t);
	SET(CURLOPT_VERBOSE, 1L);
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
bool
allma_http_setup_easy(AllmaHttpClient *client, HttpTransfer *t)
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
