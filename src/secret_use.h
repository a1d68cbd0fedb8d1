/*-------------------------------------------------------------------------
 *
 * secret_use.h
 *	  When a step may use a secret, and how secret references in request
 *	  headers are made, checked and resolved.
 *
 * The rule (checked when a step builds its request, before anything is
 * sent): a step may put secret NAME into a request only if
 *	- the role that started the execution holds a grant on NAME
 *	  (allma_grant_secret; superusers hold every grant),
 *	- the role that created the flow version holds one too, and
 *	- the request goes to one of NAME's allowed hosts, when it has any
 *	  (allma_set_secret_allowed_hosts: "api.example.com" matches that host
 *	  only, "*.example.com" any host below example.com).
 * A refused use raises a PermanentStepError naming the secret, never its
 * value.
 *
 * References in headers.  A header value taken from a stored definition
 * (a flow's apiStaticHeaders, a binding's or an MCP connection's headers)
 * may say "{{secrets.NAME}}".  allma_secret_mark_refs turns each such
 * reference into a mark -- a 0x01 byte, "secret:", a random per-process
 * nonce, ":", NAME and a 0x01 byte -- before templates are rendered, so
 * that rendering leaves it alone; allma_secret_resolve_headers turns the
 * marks into "[redacted]" (the request that is stored) or into the values
 * (the headers that are sent).  Data cannot make a mark: it does not know
 * the nonce, and a header value with a 0x01 byte that does not start a
 * complete mark -- or with the nonce outside a mark -- is refused
 * (allma_secret_mark_forbidden), so a context value, an input field or a
 * server's Mcp-Session-Id that imitates a mark fails the step instead of
 * fetching a secret.
 *
 * IDENTIFICATION
 *	  src/secret_use.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ALLMA_SECRET_USE_H
#define ALLMA_SECRET_USE_H

#include "allma.h"

/* how a definition refers to a secret in a header value */
#define ALLMA_SECRET_REF_PREFIX		"{{secrets."
#define ALLMA_SECRET_REF_SUFFIX		"}}"

/* who uses a secret, and where it goes */
typedef struct AllmaSecretUse
{
	Oid			starter;		/* the role that started the execution */
	const char *flow_id;		/* the flow version whose step uses it */
	int32		flow_version;
	const char *url;			/* where the request goes (its host counts) */
} AllmaSecretUse;

/*
 * allma_secret_use_check throws (PermanentStepError, SQLSTATE LM200) unless
 * starter and flow_creator both hold a grant on secret_name and host (NULL:
 * unknown) is one of its allowed hosts, if it has any.  When both are
 * superusers and the secret does not exist, throws
 * ERRCODE_ALLMA_UNKNOWN_SECRET; for other roles a missing secret is simply
 * not granted, so that nobody learns which names exist.  Needs a
 * transaction.
 */
extern void allma_secret_use_check(const char *secret_name, Oid starter, Oid flow_creator,
								   const char *host);

/*
 * allma_secret_get_for checks the use (the flow version's creator and the
 * URL's host are looked up) and returns the secret's value.
 */
extern char *allma_secret_get_for(const char *secret_name, const AllmaSecretUse *use);

/*
 * allma_secret_url_host: the host of url, lower case, without IPv6
 * brackets or a trailing dot; NULL when url does not parse.
 */
extern char *allma_secret_url_host(const char *url);

/* allma_secret_mark_refs: s with each {{secrets.NAME}} turned into a mark */
extern char *allma_secret_mark_refs(const char *s);

/*
 * allma_secret_render_headers renders a stored header object (values may
 * hold {{secrets.NAME}} and templates) over a template context; its string
 * values come back with marks in place of the references.
 */
extern Jsonb *allma_secret_render_headers(Jsonb *headers, Jsonb *tctx);

/*
 * allma_secret_resolve_headers returns headers (an object) with every
 * value as text and every mark replaced: by "[redacted]" when use is NULL,
 * else by the secret's value after allma_secret_get_for's check.  *any is
 * set when a mark was found.  Throws allma_secret_mark_forbidden's error
 * for a value with stray mark bytes.
 */
extern Jsonb *allma_secret_resolve_headers(Jsonb *headers, const AllmaSecretUse *use, bool *any);

/*
 * allma_secret_mark_forbidden throws (PermanentStepError) when rendered
 * contains a 0x01 byte or the mark nonce, naming field (e.g. the header);
 * for values built from data that must not carry secret references.
 */
extern void allma_secret_mark_forbidden(const char *rendered, const char *field);

#endif							/* ALLMA_SECRET_USE_H */
