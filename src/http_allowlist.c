/*-------------------------------------------------------------------------
 *
 * http_allowlist.c
 *	  The destination allow-list of allma's HTTP client, and the
 *	  classification of addresses that are refused unless it names them.
 *
 * Loopback, private, link-local, carrier-grade NAT, benchmarking,
 * multicast, reserved and unspecified addresses, IPv4 and IPv6 (also
 * embedded in IPv4-mapped, IPv4-compatible, NAT64 and 6to4 IPv6
 * addresses), NAT64 local-use (64:ff9b:1::/48), Teredo (2001::/32),
 * documentation (2001:db8::/32) and discard-only (100::/64) addresses are
 * not public (a well-known-prefix NAT64 address, 64:ff9b::/96, is as
 * public as the IPv4 address it embeds): a request may reach one only when the
 * allow-list names it by address, CIDR range or host name.  Public
 * addresses are always allowed.  The client (http.c, http_transfer.c)
 * asks allma_http_allowlist_refusal about the resolved address of every
 * connection and of every reused connection before each request.
 *
 * The process-wide list (allma.http_allowlist) lives in its own memory
 * context; each change bumps a generation number, and a client that
 * follows the process-wide list takes a copy when the number changed.  The
 * checks run inside curl callbacks, so they never palloc or ereport.
 *
 * IDENTIFICATION
 *	  src/http_allowlist.c
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

struct AllmaAllowList
{
	int			nentries;
	bool		has_hosts;
	AllowEntry	entries[FLEXIBLE_ARRAY_MEMBER];
};

/* the process-wide list and its generation (bumped on every change) */
static MemoryContext allow_cxt = NULL;
static AllmaAllowList *global_allow = NULL;
static uint64 global_allow_gen = 1;


/*
 * parse_address: an IPv4 or IPv6 literal (IPv6 optionally in brackets)
 * into addr; returns AF_INET, AF_INET6 or 0.
 */
int
allma_http_parse_address(const char *s, uint8 *addr)
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

/* allma_http_allowlist_parse: see http_int.h */
AllmaAllowList *
allma_http_allowlist_parse(const char *spec, MemoryContext cxt, char **error)
{
	char	   *copy = pstrdup(spec ? spec : "");
	int			maxn = 1;
	AllmaAllowList  *al;
	char	   *p;
	char	   *tok;

	for (p = copy; *p; p++)
		if (*p == ',')
			maxn++;
	al = MemoryContextAllocZero(cxt, offsetof(AllmaAllowList, entries) + maxn * sizeof(AllowEntry));

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
			family = allma_http_parse_address(tok, e->addr);
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
		else if ((family = allma_http_parse_address(tok, e->addr)) != 0)
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
	/* NAT64 local-use (RFC 8215): translated into a local IPv4 network */
	if (a[0] == 0 && a[1] == 0x64 && a[2] == 0xFF && a[3] == 0x9B && a[4] == 0 && a[5] == 1)
		return "NAT64 local-use";
	/* Teredo (RFC 4380): tunnelled to an IPv4 address allma cannot check */
	if (a[0] == 0x20 && a[1] == 0x01 && a[2] == 0 && a[3] == 0)
		return "Teredo";
	if (a[0] == 0x20 && a[1] == 0x01 && a[2] == 0x0D && a[3] == 0xB8)
		return "documentation";
	if (a[0] == 0x01 && memcmp(a + 1, zero, 7) == 0)
		return "discard-only";
	v4 = embedded_v4(a);
	if (v4)
		return special_v4(v4);
	return NULL;
}

/* does the allow-list contain an address range covering a? */
static bool
allowed_by_range(const AllmaAllowList *al, int family, const uint8 *a)
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
allowed_by_host(const AllmaAllowList *al, CURL *easy)
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

/* allma_http_allowlist_refusal: see http_int.h */
const char *
allma_http_allowlist_refusal(const AllmaAllowList *al, int family,
							 const uint8 *a, CURL *easy)
{
	const char *why = family == AF_INET ? special_v4(a) : special_v6(a);

	if (why == NULL || allowed_by_range(al, family, a) || allowed_by_host(al, easy))
		return NULL;
	return why;
}

bool
allma_http_check_allowlist(const char *spec, char **error)
{
	AllmaAllowList  *al = allma_http_allowlist_parse(spec, CurrentMemoryContext, error);

	if (al == NULL)
		return false;
	pfree(al);
	return true;
}

void
allma_http_set_allowlist(const char *spec)
{
	char	   *error = NULL;
	AllmaAllowList  *al;

	if (allow_cxt == NULL)
		allow_cxt = AllocSetContextCreate(TopMemoryContext, "allma http allow-list",
										  ALLOCSET_SMALL_SIZES);
	al = allma_http_allowlist_parse(spec, allow_cxt, &error);
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


/* allma_http_allowlist_generation: see http_int.h */
uint64
allma_http_allowlist_generation(void)
{
	return global_allow_gen;
}

/* allma_http_allowlist_copy_current: see http_int.h */
AllmaAllowList *
allma_http_allowlist_copy_current(MemoryContext cxt)
{
	Size		sz;
	AllmaAllowList *copy;

	if (global_allow == NULL)
		return NULL;
	sz = offsetof(AllmaAllowList, entries) + global_allow->nentries * sizeof(AllowEntry);
	copy = MemoryContextAlloc(cxt, sz);
	memcpy(copy, global_allow, sz);
	return copy;
}
