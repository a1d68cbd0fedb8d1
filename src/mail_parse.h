/*-------------------------------------------------------------------------
 *
 * mail_parse.h
 *	  Parsing an inbound RFC 5322 message (the email trigger's input).
 *
 * allma_mail_parse reads a whole message as a mail server received it:
 * header fields (folded lines unfolded), From, To, Cc, Delivered-To,
 * Subject, Message-ID and Date, RFC 2047 encoded words in Subject and in
 * display names, and a MIME body: single part or multipart (nested), with
 * 7bit/8bit/binary, quoted-printable and base64 transfer encodings and the
 * parts' charsets converted to the database encoding.  The first text/plain
 * part is the text, the first text/html part the HTML (and, without a
 * text part, a plain text made from it is the text); other parts (and
 * parts marked as attachments) are attachments.  Every size and count is
 * bounded; a malformed message is an error (SQLSTATE 22P02 or 54000) that
 * says what is wrong.  Pure parsing: no catalog access.
 *
 * IDENTIFICATION
 *	  src/mail_parse.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ALLMA_MAIL_PARSE_H
#define ALLMA_MAIL_PARSE_H

#include "postgres.h"

#include "nodes/pg_list.h"

/* the largest message accepted (bytes) */
#define ALLMA_MAIL_MAX_BYTES		(16 * 1024 * 1024)
/* the largest header section of the message or of one MIME part */
#define ALLMA_MAIL_MAX_HEADER_BYTES	(256 * 1024)
/* header fields of the message or of one part */
#define ALLMA_MAIL_MAX_HEADERS		1000
/* MIME parts in all, and nesting depth of multiparts */
#define ALLMA_MAIL_MAX_PARTS		256
#define ALLMA_MAIL_MAX_DEPTH		8

typedef struct AllmaMailInAttachment
{
	char	   *filename;		/* or NULL */
	char	   *content_type;	/* "type/subtype", lower case */
	char	   *content_id;		/* without <>, or NULL */
	char	   *disposition;	/* "attachment" or "inline" */
	char	   *data;			/* decoded bytes */
	int			len;
} AllmaMailInAttachment;

typedef struct AllmaParsedMail
{
	char	   *from;			/* "Name <addr>" or "addr", or NULL */
	char	   *sender_name;	/* the display name, decoded, or NULL */
	char	   *sender_address; /* or NULL */
	List	   *to;				/* of char *: bare addresses */
	List	   *cc;
	List	   *delivered_to;	/* Delivered-To and X-Original-To */
	char	   *subject;		/* decoded, or NULL */
	char	   *message_id;		/* as in the header, or NULL */
	char	   *date;			/* as in the header, or NULL */
	char	   *text;			/* the text/plain body (else text made from
								 * the HTML body), or NULL */
	char	   *html;			/* the text/html body, or NULL */
	List	   *attachments;	/* of AllmaMailInAttachment * */
} AllmaParsedMail;

extern AllmaParsedMail *allma_mail_parse(const char *msg, size_t len);

#endif							/* ALLMA_MAIL_PARSE_H */
