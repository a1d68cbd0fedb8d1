-- The email trigger: allma_parse_email (the message as flows see it) and
-- allma_deliver_email (routing to the EMAIL_START_POINT steps of published
-- flows, started as each flow's owner), its errors and who may call it.

CREATE ROLE regress_mail_owner;
CREATE ROLE regress_mail_other;
CREATE ROLE regress_mail_gateway;
CREATE ROLE regress_mail_gone_user;
GRANT allma_user TO regress_mail_owner, regress_mail_other, regress_mail_gone_user;
GRANT allma_admin TO regress_mail_gateway;

CREATE FUNCTION pg_temp.try(sql text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE sql;
	RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE || ': ' || SQLERRM;
END $$;

-- messages are written with \n line ends here; CRLF below
CREATE FUNCTION pg_temp.crlf(m text) RETURNS text LANGUAGE sql AS $$
	SELECT replace(m, E'\n', E'\r\n')
$$;

------------------------------------------------------------------------------
-- Parsing
------------------------------------------------------------------------------

-- header fields: folding, RFC 2047 encoded words (UTF-8 B, ISO-8859-1 Q,
-- adjacent words joined), display names, address lists with quoted commas
-- and groups, Message-ID and Date; a plain body with CRLF line ends
SELECT jsonb_pretty(allma_parse_email(pg_temp.crlf(
'Return-Path: <ada@example.test>
From: =?UTF-8?B?QWRhIEzDtnZlbGFjZQ==?= <ada@example.test>
To: "Support, Team" <Support@Regress.Test>, bob@example.test,
 undisclosed: carol@example.test;
Cc: =?ISO-8859-1?Q?Andr=E9?= <andre@example.test>
Subject: =?UTF-8?Q?Caf=C3=A9?= =?UTF-8?Q?_order?= is
	late
Message-ID: <m1@example.test>
Date: Sun, 6 Dec 2026 09:00:00 +0000

Hello,
the order is late.
')));

-- no display name; a name in a comment; LF line ends; no Subject
SELECT allma_parse_email(E'From: plain@example.test\nTo: x@example.test (X Person)\n\nbody') #>> '{}';
SELECT allma_parse_email(E'From: "Doe, \\"J\\"" <j@example.test>\nTo: x@example.test\n\nb')->>'from';

-- multipart/alternative: quoted-printable text (soft breaks, =XX), base64 HTML
SELECT m->>'body' AS body, m->>'htmlBody' AS html, m->'attachments' AS attachments
  FROM allma_parse_email(pg_temp.crlf(
'From: a@example.test
To: b@example.test
Subject: alt
MIME-Version: 1.0
Content-Type: multipart/alternative; boundary="b1"

This is the preamble.
--b1
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: quoted-printable

Caf=C3=A9 is a long line that was wrapped by the qu=
oted-printable encoder; a literal =3D sign.
--b1
Content-Type: text/html; charset="UTF-8"
Content-Transfer-Encoding: base64

PHA+Q2Fmw6k8L3A+
--b1--
epilogue
')) m;

-- multipart/mixed with a nested alternative, an ISO-8859-1 text part and
-- two attachments (RFC 2231 and RFC 2047 file names, inline with a Content-ID)
SELECT m->>'body' AS body, m->>'htmlBody' AS html, jsonb_pretty(m->'attachments') AS attachments
  FROM allma_parse_email(pg_temp.crlf(
'From: a@example.test
To: b@example.test
Content-Type: multipart/mixed; boundary=outer

--outer
Content-Type: multipart/alternative; boundary="inner"

--inner
Content-Type: text/plain; charset=iso-8859-1
Content-Transfer-Encoding: quoted-printable

Gr=FC=DFe
--inner
Content-Type: text/html

<p>Gr&uuml;&szlig;e</p>
--inner--
--outer
Content-Type: application/vnd.ms-excel
Content-Disposition: attachment; filename*=UTF-8''''Bill%20of%20Materials%20%C3%A9.xlsx
Content-Transfer-Encoding: base64

AAECAwQFBgcICQ==
--outer
Content-Type: image/png; name="=?UTF-8?B?bG9nby5wbmc=?="
Content-Disposition: inline
Content-ID: <logo@x>
Content-Transfer-Encoding: base64

iVBORw0K
--outer--
')) m;

-- an HTML-only message: the body is a plain text made from the HTML (tags,
-- scripts and styles dropped, line breaks at <br> and block ends, entities
-- decoded)
SELECT m->>'body' AS body, m->>'htmlBody' AS html
  FROM allma_parse_email(E'From: a@example.test\nContent-Type: text/html; charset=utf-8\n\n<b>hi</b>') m;
SELECT allma_parse_email(E'From: a@example.test\nContent-Type: text/html\n\n<html><head><style>p {color: red}</style></head>' ||
	E'<body><p>Dear&nbsp;Ada,</p>\n<p>order <b>A&amp;B</b>\nis &lt;late&gt; &#8364;5 &#x2014; sorry.<br>Bob</p>' ||
	E'<script>alert(1)</script></body></html>')->>'body' AS body;

-- errors: each says what is wrong where
SELECT pg_temp.try($$SELECT allma_parse_email('')$$);
SELECT pg_temp.try($$SELECT allma_parse_email(E'\nbody only')$$);
SELECT pg_temp.try($$SELECT allma_parse_email(E'From: a@example.test\nthis is not a header\n\nbody')$$);
SELECT pg_temp.try($$SELECT allma_parse_email(E' folded\nFrom: a@example.test\n\nbody')$$);
SELECT pg_temp.try($$SELECT allma_parse_email(E'From: a@example.test\nContent-Transfer-Encoding: uuencode\n\nbody')$$);
SELECT pg_temp.try($$SELECT allma_parse_email(E'From: a@example.test\nContent-Transfer-Encoding: base64\n\n!!!not base64!!!')$$);
SELECT pg_temp.try($$SELECT allma_parse_email(E'From: a@example.test\nContent-Type: multipart/mixed\n\nbody')$$);
SELECT pg_temp.try($$SELECT allma_parse_email(E'From: a@example.test\nContent-Type: multipart/mixed; boundary=zz\n\nno parts here')$$);
SELECT pg_temp.try($$SELECT allma_parse_email(E'From: a@example.test\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: quoted-printable\n\nbad =FF byte')$$);
SELECT pg_temp.try($$SELECT allma_parse_email(E'From: a@example.test\nContent-Transfer-Encoding: base64\n\nAAEC')$$);
SELECT pg_temp.try($$SELECT allma_parse_email('From: a@example.test' || repeat(E'\nX-Filler: 0123456789', 1001) || E'\n\nb')$$);
SELECT pg_temp.try($$SELECT allma_parse_email('From: a@example.test' || repeat(E'\nX-Filler: ' || repeat('x', 1000), 300) || E'\n\nb')$$);
SELECT pg_temp.try($$SELECT allma_parse_email(E'From: a@example.test\n\n' || repeat('x', 16 * 1024 * 1024))$$);
SELECT pg_temp.try($$SELECT allma_parse_email('From: a@example.test' || string_agg(
	format(E'\nContent-Type: multipart/mixed; boundary=b%s\n\n--b%s', i, i), '' ORDER BY i))
	FROM generate_series(1, 10) i$$);

------------------------------------------------------------------------------
-- Routing
------------------------------------------------------------------------------
SET ROLE regress_mail_owner;
-- the default flow of support@ and a keyword flow of the same address with
-- a pattern; a flow whose address is a flow variable; an unpublished one
SELECT allma_create_flow('{"id": "mail_default", "startStepInstanceId": "work", "steps": {
  "inbox": {"stepType": "EMAIL_START_POINT", "emailAddress": "support@regress.test", "defaultNextStepInstanceId": "work"},
  "work": {"stepType": "NO_OP"}}}');
SELECT allma_create_flow('{"id": "mail_keyword", "startStepInstanceId": "work", "steps": {
  "urgent": {"stepType": "EMAIL_START_POINT", "emailAddress": "Support <SUPPORT@regress.test>", "keyword": "URGENT",
             "triggerMessagePattern": "ticket #([0-9]+)", "defaultNextStepInstanceId": "work"},
  "work": {"stepType": "NO_OP"}}}');
SELECT allma_create_flow('{"id": "mail_vars", "startStepInstanceId": "work",
  "flowVariables": {"inbox": "sales@regress.test"}, "steps": {
  "inbox": {"stepType": "EMAIL_START_POINT", "emailAddress": "{{flow_variables.inbox}}", "defaultNextStepInstanceId": "work"},
  "work": {"stepType": "NO_OP"}}}');
SELECT allma_create_flow('{"id": "mail_unpublished", "startStepInstanceId": "work", "steps": {
  "inbox": {"stepType": "EMAIL_START_POINT", "emailAddress": "support@regress.test", "defaultNextStepInstanceId": "work"},
  "work": {"stepType": "NO_OP"}}}', false);
-- an invalid pattern is a definition error
SELECT pg_temp.try($$SELECT allma_create_flow('{"id": "mail_bad_pattern", "startStepInstanceId": "inbox", "steps": {
  "inbox": {"stepType": "EMAIL_START_POINT", "emailAddress": "x@regress.test", "triggerMessagePattern": "ticket (#"}}}')$$);
RESET ROLE;

CREATE TEMP TABLE delivered (label text, ids uuid[]);
GRANT ALL ON delivered TO regress_mail_gateway;
CREATE FUNCTION pg_temp.deliver(label text, m text) RETURNS int LANGUAGE sql AS $$
	INSERT INTO delivered SELECT label, allma_deliver_email(m) RETURNING cardinality(ids)
$$;
CREATE FUNCTION pg_temp.started(lbl text,
	OUT flow_id text, OUT started_by regrole, OUT trigger_source text, OUT start_step text, OUT logs boolean)
RETURNS SETOF record LANGUAGE sql AS $$
	SELECT e.flow_id, e.started_by, e.trigger_source, e.options->>'startStepInstanceId', e.enable_execution_logs
	  FROM delivered d, unnest(d.ids) WITH ORDINALITY AS u(id, n)
	  JOIN allma.executions e ON e.execution_id = u.id
	 WHERE d.label = lbl ORDER BY u.n
$$;

SET ROLE regress_mail_gateway;
-- no keyword in the body: the default flow of the address (not the
-- unpublished one), as its owner, at the EMAIL_START_POINT step
SELECT pg_temp.deliver('default', pg_temp.crlf(
'From: Ada <ada@example.test>
To: support@regress.test
Subject: hello
Message-ID: <default-1@example.test>

Please help.
'));
RESET ROLE;
SELECT * FROM pg_temp.started('default');
SELECT jsonb_pretty(e.input) FROM delivered d JOIN allma.executions e ON e.execution_id = d.ids[1]
 WHERE d.label = 'default';

-- the keyword (case matters, as in Allma) picks the keyword flow only;
-- the pattern's group 1 is triggerPattern
SET ROLE regress_mail_gateway;
SELECT pg_temp.deliver('keyword', pg_temp.crlf(
'From: ada@example.test
To: support@regress.test
Subject: help

URGENT: see ticket #4711 please
'));
SELECT pg_temp.deliver('keyword-lower', pg_temp.crlf(
'From: ada@example.test
To: support@regress.test

urgent: see ticket #4712 please
'));
RESET ROLE;
SELECT * FROM pg_temp.started('keyword');
SELECT e.input->'triggeringEmail'->>'triggerPattern' AS pattern, e.input->'triggeringEmail'->>'to' AS "to"
  FROM delivered d JOIN allma.executions e ON e.execution_id = d.ids[1] WHERE d.label = 'keyword';
SELECT * FROM pg_temp.started('keyword-lower');

-- several recipients (To, Cc, Delivered-To): every matching flow starts,
-- each once, with the recipient it matched as "to"
SET ROLE regress_mail_gateway;
SELECT pg_temp.deliver('multi', pg_temp.crlf(
'Delivered-To: support@regress.test
From: ada@example.test
To: Sales@Regress.Test
Cc: support@regress.test, nobody@regress.test
Subject: both

hi
'));
RESET ROLE;
SELECT s.*, e.input->'triggeringEmail'->>'to' AS "to"
  FROM pg_temp.started('multi') s
  JOIN delivered d ON d.label = 'multi'
  JOIN allma.executions e ON e.execution_id = ANY (d.ids) AND e.flow_id = s.flow_id;

-- no flow for the address: nothing starts
SET ROLE regress_mail_gateway;
SELECT allma_deliver_email(E'From: a@example.test\nTo: nobody@regress.test\n\nhi') AS no_match;
-- the same message again (same Message-ID): the same execution, nothing new
SELECT (SELECT count(*) FROM allma.executions WHERE flow_id LIKE 'mail\_%') AS before;
SELECT allma_deliver_email(pg_temp.crlf(
'From: Ada <ada@example.test>
To: support@regress.test
Subject: hello
Message-ID: <default-1@example.test>

Please help.
')) = (SELECT ids FROM delivered WHERE label = 'default') AS same_ids;
SELECT (SELECT count(*) FROM allma.executions WHERE flow_id LIKE 'mail\_%') AS after;
RESET ROLE;

-- attachments are files of the started execution, given as filePointer
SET ROLE regress_mail_gateway;
SELECT pg_temp.deliver('attachment', pg_temp.crlf(
'From: ada@example.test
To: sales@regress.test
Content-Type: multipart/mixed; boundary=x

--x
Content-Type: text/plain

see the BOM
--x
Content-Type: text/csv; name=bom.csv
Content-Transfer-Encoding: base64

YSxiCjEsMgo=
--x--
'));
RESET ROLE;
SELECT a->>'filename' AS filename, a->>'contentType' AS content_type, a->>'size' AS size,
	   convert_from(f.content, 'UTF8') AS content, f.execution_id = d.ids[1] AS of_the_execution
  FROM delivered d
  JOIN allma.executions e ON e.execution_id = d.ids[1]
  CROSS JOIN LATERAL jsonb_array_elements(e.input->'triggeringEmail'->'attachments') a
  JOIN allma.files f ON f.file_id = (a->'filePointer'->>'fileId')::uuid
 WHERE d.label = 'attachment';

-- with allma.email_attachments_bucket set (superuser), the attachments are
-- also objects of that bucket, written by the caller, given as Allma's
-- s3Location at Allma's keys
SELECT allma_create_bucket('regress-mail-in');
GRANT INSERT, SELECT ON allma_s3."regress-mail-in" TO regress_mail_gateway;
GRANT SELECT ON allma_s3."regress-mail-in" TO regress_mail_owner;
SET allma.email_attachments_bucket = 'regress-mail-in';
SET ROLE regress_mail_gateway;
SELECT pg_temp.deliver('bucket', pg_temp.crlf(
'From: ada@example.test
To: sales@regress.test
Message-ID: <bom/1@example.test>
Content-Type: multipart/mixed; boundary=x

--x
Content-Type: text/plain

see the BOM
--x
Content-Type: text/csv; name="Bill of Materials.csv"
Content-Transfer-Encoding: base64

YSxiCjEsMgo=
--x--
'));
RESET ROLE;
SELECT a->'s3Location' AS s3_location, a ? 'filePointer' AS has_file
  FROM delivered d
  JOIN allma.executions e ON e.execution_id = d.ids[1]
  CROSS JOIN LATERAL jsonb_array_elements(e.input->'triggeringEmail'->'attachments') a
 WHERE d.label = 'bucket';
SELECT key, convert_from(content, 'UTF8') AS content, content_type, metadata, written_by
  FROM allma_s3."regress-mail-in";
-- the flow's owner reads it with its own privilege on the bucket
SET ROLE regress_mail_owner;
SELECT convert_from(allma_object_read(to_jsonb('s3://regress-mail-in/attachments/bom_1@example.test/0/Bill_of_Materials.csv'::text)), 'UTF8') AS owner_reads;
RESET ROLE;
-- a bucket that does not exist, a caller without INSERT: errors, nothing starts
SET allma.email_attachments_bucket = 'no-such-bucket';
SET ROLE regress_mail_gateway;
SELECT pg_temp.try($$SELECT allma_deliver_email(E'From: a@example.test\nTo: sales@regress.test\nContent-Type: multipart/mixed; boundary=x\n\n--x\nContent-Type: image/png\n\nPNG\n--x--\n')$$);
RESET ROLE;
SET allma.email_attachments_bucket = 'regress-mail-in';
REVOKE INSERT ON allma_s3."regress-mail-in" FROM regress_mail_gateway;
SET ROLE regress_mail_gateway;
SELECT pg_temp.try($$SELECT allma_deliver_email(E'From: a@example.test\nTo: sales@regress.test\nContent-Type: multipart/mixed; boundary=x\n\n--x\nContent-Type: image/png\n\nPNG\n--x--\n')$$);
RESET ROLE;
RESET allma.email_attachments_bucket;
-- only a superuser sets it
SET ROLE regress_mail_gateway;
SELECT pg_temp.try($$SET allma.email_attachments_bucket = 'regress-mail-in'$$);
RESET ROLE;

-- the executions run (their start step is the EMAIL_START_POINT marker)
SELECT DISTINCT allma_wait(u.id) FROM delivered d, unnest(d.ids) u(id);

------------------------------------------------------------------------------
-- Permissions
------------------------------------------------------------------------------
-- only allma_admin may deliver (and parse)
SET ROLE regress_mail_other;
SELECT pg_temp.try($$SELECT allma_deliver_email(E'From: a@example.test\nTo: support@regress.test\n\nhi')$$);
SELECT pg_temp.try($$SELECT allma_parse_email(E'From: a@example.test\n\nhi')$$);
RESET ROLE;
SELECT r AS role, has_function_privilege(r, 'allma_deliver_email(text)', 'EXECUTE') AS deliver,
	   has_function_privilege(r, 'allma_parse_email(text)', 'EXECUTE') AS parse
  FROM unnest(ARRAY['allma_admin', 'regress_mail_gateway', 'allma_user', 'regress_mail_other']) r;
SELECT count(*) AS public_grants
  FROM pg_proc p, aclexplode(p.proacl) a
 WHERE p.proname IN ('allma_deliver_email', 'allma_parse_email') AND a.grantee = 0;

-- the executions are the owner's: another allma_user does not see them
SET ROLE regress_mail_other;
SELECT count(*) AS other_sees FROM allma.executions WHERE flow_id LIKE 'mail\_%';
RESET ROLE;
SET ROLE regress_mail_owner;
SELECT count(*) > 0 AS owner_sees FROM allma.executions WHERE flow_id LIKE 'mail\_%';
RESET ROLE;

-- a flow whose owner may no longer start flows is skipped, with a WARNING
SET ROLE regress_mail_gone_user;
SELECT allma_create_flow('{"id": "mail_gone", "startStepInstanceId": "work", "steps": {
  "inbox": {"stepType": "EMAIL_START_POINT", "emailAddress": "gone@regress.test", "defaultNextStepInstanceId": "work"},
  "work": {"stepType": "NO_OP"}}}');
RESET ROLE;
REVOKE allma_user FROM regress_mail_gone_user;
SET ROLE regress_mail_gateway;
SELECT allma_deliver_email(E'From: a@example.test\nTo: gone@regress.test\n\nhi') AS skipped;
RESET ROLE;

-- clean up
DELETE FROM allma.step_executions WHERE execution_id IN
	(SELECT execution_id FROM allma.executions WHERE flow_id LIKE 'mail\_%');
DELETE FROM allma.executions WHERE flow_id LIKE 'mail\_%';
DELETE FROM allma.flows WHERE flow_id LIKE 'mail\_%';
SELECT allma_drop_bucket('regress-mail-in', true);
DROP ROLE regress_mail_owner, regress_mail_other, regress_mail_gateway, regress_mail_gone_user;
