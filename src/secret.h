/*-------------------------------------------------------------------------
 *
 * secret.h
 *	  Named secrets (API keys and the like) for flows, kept in table
 *	  allma.secrets, which only superusers can read.
 *
 * Intended use (the engine's side is not written yet): a flow names a
 * secret, never its value, e.g. an LLM step's apiKey "{{secrets.OPENAI}}"
 * or an API_CALL header "Bearer {{secrets.CRM_TOKEN}}".  The engine
 * resolves such references with allma_secret_get right before building the
 * request (so values never enter the execution context), and passes every
 * text or jsonb it stores or logs (step history input/output, errors,
 * request previews, log lines) through allma_secret_redact /
 * allma_secret_redact_jsonb first.
 *
 * Secret names are 1..128 characters of [A-Za-z0-9_-], so that they can
 * be written as a template path segment.
 *
 * IDENTIFICATION
 *	  src/secret.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ALLMA_SECRET_H
#define ALLMA_SECRET_H

#include "allma.h"

/* a secret that does not exist (class LM3xx, API errors) */
#define ERRCODE_ALLMA_UNKNOWN_SECRET		MAKE_SQLSTATE('L','M','3','0','5')

/* values shorter than this are not redacted (they would mangle any text) */
#define ALLMA_SECRET_MIN_REDACT_LEN		4

#define ALLMA_SECRET_REDACTED			"[redacted]"

/*
 * allma_secret_get returns the value of secret "name" (palloc'd in the
 * caller's context), read as the bootstrap superuser whoever the current
 * user is; read once per transaction (and again after allma_set_secret /
 * allma_delete_secret in this backend).  Needs a transaction.  Throws
 * ERRCODE_ALLMA_UNKNOWN_SECRET naming the secret when it does not exist.
 */
extern char *allma_secret_get(const char *name);

/*
 * allma_secret_redact returns a copy of text in which every occurrence of
 * every secret value (of at least ALLMA_SECRET_MIN_REDACT_LEN bytes), and of
 * its JSON-escaped form, is replaced by "[redacted]"; longer values are
 * replaced first.  The values are loaded once per transaction (and again
 * after allma_set_secret / allma_delete_secret in this backend); called
 * outside a transaction it uses the values of the last transaction that
 * loaded them, and throws if none ever did.
 */
extern char *allma_secret_redact(const char *text);

/*
 * allma_secret_redact_jsonb applies allma_secret_redact to every string
 * (keys included) of a jsonb value; returns value itself when nothing
 * changed.  NULL stays NULL.
 */
extern Jsonb *allma_secret_redact_jsonb(Jsonb *value);

#endif							/* ALLMA_SECRET_H */
