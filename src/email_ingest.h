/*-------------------------------------------------------------------------
 *
 * email_ingest.h
 *	  The email trigger (allma_deliver_email): routing inbound messages to
 *	  the EMAIL_START_POINT steps of published flows.
 *
 * IDENTIFICATION
 *	  src/email_ingest.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ALLMA_EMAIL_INGEST_H
#define ALLMA_EMAIL_INGEST_H

#include "postgres.h"

/*
 * allma_email_pattern_check: is pattern a valid triggerMessagePattern (a
 * PostgreSQL advanced regular expression)?  If not, *why says why.
 */
extern bool allma_email_pattern_check(const char *pattern, char **why);

/* allma.email_attachments_bucket, defined by allma_email_ingest_define_gucs (_PG_init) */
extern char *allma_email_attachments_bucket;
extern void allma_email_ingest_define_gucs(void);

#endif							/* ALLMA_EMAIL_INGEST_H */
