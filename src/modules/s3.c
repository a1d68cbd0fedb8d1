/*-------------------------------------------------------------------------
 *
 * s3.c
 *	  Allma's system/s3-* modules over buckets kept in PostgreSQL.
 *
 * A bucket is a table of schema allma_s3 named like the bucket, created
 * by allma_create_bucket and owned by the role that created it (who needs
 * the CREATE privilege on allma_s3); its rows are the objects:
 *
 *	key text COLLATE "C" PRIMARY KEY	(1 to 1024 bytes, listed in byte order)
 *	content bytea, content_type text, metadata jsonb,
 *	etag (quoted MD5 of the content, as S3's), size, last_modified,
 *	written_by (the role that wrote it)
 *
 * Objects outlive executions and are shared through PostgreSQL's
 * privileges on the bucket's table: SELECT to read and list, INSERT and
 * UPDATE to write, DELETE to remove.  The modules run as the step's role.
 * Objects are addressed by "s3://bucket/key" as in Allma.
 *
 *	system/s3-data-loader	sourceS3Uri, outputFormat TEXT (default) | JSON
 *		| RAW_BUFFER (base64), encoding (utf-8 default, latin1, ascii,
 *		base64, hex), onMissing FAIL (default) | IGNORE
 *		-> {content, _meta: {found, sourceS3Uri, contentType, contentLength, eTag}}
 *	system/s3-data-saver	destinationS3UriTemplate, contentType (default
 *		application/json), metadataTemplate, contentToSave (a string with
 *		a binary content type is base64-decoded; objects and arrays are
 *		saved as indented JSON) -> {s3Uri, bucket, key, eTag}
 *	system/s3-list-files	bucket, prefix, maxKeys
 *		-> {files: [{key, size, lastModified, eTag, bucket, content:
 *			{_s3_output_pointer: {bucket, key}}}], fileCount}
 *
 * Buckets are not versioned, so the saver returns no versionId.  Objects
 * are at most allma.object_max_bytes (a superuser-only setting).
 *
 * allma_object_read resolves the pointers other steps use to name bytes:
 * FILE_DOWNLOAD's filePointer (allma.files, per execution) and S3
 * pointers into buckets.
 *
 * Copyright (c) 2026, the allma authors
 *
 * IDENTIFICATION
 *	  src/modules/s3.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "common/base64.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/formatting.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/numeric.h"
#include "utils/uuid.h"

#include "compat.h"
#include "jsonb_util.h"
#include "modules/aws.h"
#include "modules/dynamodb.h"
#include "modules/s3.h"

#define BUCKET_SCHEMA		"allma_s3"
#define MAX_KEY_BYTES		1024	/* S3's limit on object keys */
#define MAX_METADATA_BYTES	2048	/* S3's limit on user metadata */
#define MAX_LISTED_FILES	10000	/* allma's: files listed without maxKeys */

PG_FUNCTION_INFO_V1(allma_create_bucket);
PG_FUNCTION_INFO_V1(allma_drop_bucket);
PG_FUNCTION_INFO_V1(allma_object_read_sql);


/* ----------------------------------------------------------------
 * Buckets and keys
 * ----------------------------------------------------------------
 */

/* S3's bucket naming rules: 3 to 63 of a-z 0-9 . -, starting and ending alphanumeric */
static bool
valid_bucket_name(const char *name)
{
	int			len = strlen(name);

	if (len < 3 || len > 63)
		return false;
	for (int i = 0; i < len; i++)
	{
		char		c = name[i];
		bool		alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');

		if (!alnum && ((i == 0 || i == len - 1) || (c != '.' && c != '-')))
			return false;
	}
	return true;
}

static void
check_bucket_name(const char *module, const char *name)
{
	if (!valid_bucket_name(name))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s%sinvalid bucket name \"%s\"", module ? module : "", module ? ": " : "", name),
				 errdetail("A bucket name has 3 to 63 characters: lowercase letters, digits, \".\" and \"-\", starting and ending with a letter or digit.")));
}

/* the bucket's table, quoted; NoSuchBucket when there is none */
static char *
bucket_relation(const char *module, const char *bucket)
{
	Oid			nsp = get_namespace_oid(BUCKET_SCHEMA, false);

	check_bucket_name(module, bucket);
	if (!OidIsValid(get_relname_relid(bucket, nsp)))
		ereport(ERROR,
				(errcode(ERRCODE_ALLMA_NO_SUCH_BUCKET),
				 errmsg("%s: the bucket \"%s\" does not exist", module, bucket),
				 errhint("Create it with allma_create_bucket('%s').", bucket)));
	return quote_qualified_identifier(BUCKET_SCHEMA, bucket);
}

/* splits "s3://bucket/key" (Allma's pattern: s3://([^/]+)/(.*)) */
static void
parse_s3_uri(const char *module, const char *field, const char *uri, char **bucket, char **key)
{
	const char *rest;
	const char *slash;

	if (strncmp(uri, "s3://", 5) != 0 || (slash = strchr(uri + 5, '/')) == NULL || slash == uri + 5)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s: invalid S3 URI format in %s: \"%s\"", module, field, uri),
				 errdetail("An S3 URI is s3://bucket/key.")));
	rest = uri + 5;
	*bucket = pnstrdup(rest, slash - rest);
	*key = pstrdup(slash + 1);
	if (strlen(*key) == 0 || strlen(*key) > MAX_KEY_BYTES)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s: the object key of %s must have 1 to %d bytes", module, field, MAX_KEY_BYTES)));
}

static void
check_object_size(const char *module, int64 size)
{
	if (size > allma_object_max_bytes)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("%s: the object has %lld bytes, more than allma.object_max_bytes (%d bytes)",
						module, (long long) size, allma_object_max_bytes)));
}


/* ----------------------------------------------------------------
 * Input helpers
 * ----------------------------------------------------------------
 */

static char *
string_field(const char *module, Jsonb *input, const char *name, const char *dflt)
{
	Jsonb	   *v = allma_aws_input_field(input, name);
	JsonbValue	sv;

	if (v == NULL)
	{
		if (dflt == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("%s: \"%s\" is required", module, name)));
		return pstrdup(dflt);
	}
	if (!allma_jsonb_scalar(v, &sv) || sv.type != jbvString)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s: \"%s\" must be a string", module, name)));
	return pnstrdup(sv.val.string.val, sv.val.string.len);
}

static bool
one_of(const char *module, const char *name, const char *value, const char *const *allowed)
{
	StringInfoData list;

	for (int i = 0; allowed[i] != NULL; i++)
		if (strcmp(value, allowed[i]) == 0)
			return true;
	initStringInfo(&list);
	for (int i = 0; allowed[i] != NULL; i++)
		appendStringInfo(&list, "%s%s", i ? ", " : "", allowed[i]);
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("%s: \"%s\" must be one of %s, not \"%s\"", module, name, list.data, value)));
	return false;
}

/* ----------------------------------------------------------------
 * Encodings
 * ----------------------------------------------------------------
 */

static char *
to_base64(const char *data, int len)
{
	char	   *out = palloc(pg_b64_enc_len(len) + 1);
	int			n = allma_b64_encode(data, len, out, pg_b64_enc_len(len));

	if (n < 0)
		elog(ERROR, "allma: base64 encoding failed");
	out[n] = '\0';
	return out;
}

static bytea *
from_base64(const char *module, const char *s, int len)
{
	StringInfoData clean;
	bytea	   *out;
	int			n;

	initStringInfo(&clean);
	for (int i = 0; i < len; i++)
		if (s[i] != ' ' && s[i] != '\n' && s[i] != '\r' && s[i] != '\t')
			appendStringInfoChar(&clean, s[i]);
	while (clean.len % 4 != 0)
		appendStringInfoChar(&clean, '=');
	out = palloc(VARHDRSZ + pg_b64_dec_len(clean.len));
	n = pg_b64_decode(clean.data, clean.len, VARDATA(out), pg_b64_dec_len(clean.len));
	if (n < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s: contentToSave is not valid base64, which a binary content type needs",
						module)));
	SET_VARSIZE(out, VARHDRSZ + n);
	return out;
}

/* bytes of an encoding as a NUL-terminated string of the server encoding */
static char *
converted(const char *data, int len, int encoding)
{
	char	   *s = pg_any_to_server(data, len, encoding);

	return s == data ? pnstrdup(data, len) : s;
}

/* the object's bytes as text of the server encoding, decoded per "encoding" */
static char *
decode_text(const char *module, const char *data, int len, const char *encoding)
{
	char	   *s;

	if (pg_strcasecmp(encoding, "base64") == 0)
		return to_base64(data, len);
	if (pg_strcasecmp(encoding, "hex") == 0)
	{
		static const char hexdigits[] = "0123456789abcdef";

		s = palloc(len * 2 + 1);
		for (int i = 0; i < len; i++)
		{
			s[2 * i] = hexdigits[(unsigned char) data[i] >> 4];
			s[2 * i + 1] = hexdigits[(unsigned char) data[i] & 15];
		}
		s[2 * len] = '\0';
		return s;
	}
	if (memchr(data, '\0', len) != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_CHARACTER_NOT_IN_REPERTOIRE),
				 errmsg("%s: the object contains NUL bytes, which text cannot hold", module),
				 errhint("Read it with outputFormat RAW_BUFFER (base64).")));
	if (pg_strcasecmp(encoding, "ascii") == 0)
	{
		s = palloc(len + 1);
		for (int i = 0; i < len; i++)
			s[i] = data[i] & 0x7F;
		s[len] = '\0';
		return s;
	}
	if (pg_strcasecmp(encoding, "latin1") == 0 || pg_strcasecmp(encoding, "binary") == 0)
		return converted(data, len, PG_LATIN1);
	if (pg_strcasecmp(encoding, "utf-8") == 0 || pg_strcasecmp(encoding, "utf8") == 0)
	{
		if (!pg_verify_mbstr(PG_UTF8, data, len, true))
			ereport(ERROR,
					(errcode(ERRCODE_CHARACTER_NOT_IN_REPERTOIRE),
					 errmsg("%s: the object is not valid UTF-8", module),
					 errhint("Give its encoding, or read it with outputFormat RAW_BUFFER (base64).")));
		return converted(data, len, PG_UTF8);
	}
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("%s: encoding \"%s\" is not supported", module, encoding),
			 errdetail("The encodings are utf-8, latin1 (binary), ascii, base64 and hex.")));
	return NULL;				/* keep compiler quiet */
}

/* JSON.stringify(value, null, 2): two-space indentation */
static void
append_pretty(StringInfo buf, JsonbValue *v, int indent)
{
	check_stack_depth();
	if (v->type == jbvObject || v->type == jbvArray)
	{
		bool		obj = v->type == jbvObject;
		int			n = obj ? v->val.object.nPairs : v->val.array.nElems;

		if (n == 0)
		{
			appendStringInfoString(buf, obj ? "{}" : "[]");
			return;
		}
		appendStringInfoChar(buf, obj ? '{' : '[');
		for (int i = 0; i < n; i++)
		{
			appendStringInfo(buf, "%s\n%*s", i ? "," : "", indent + 2, "");
			if (obj)
			{
				JsonbValue *k = &v->val.object.pairs[i].key;

				escape_json(buf, pnstrdup(k->val.string.val, k->val.string.len));
				appendStringInfoString(buf, ": ");
				append_pretty(buf, &v->val.object.pairs[i].value, indent + 2);
			}
			else
				append_pretty(buf, &v->val.array.elems[i], indent + 2);
		}
		appendStringInfo(buf, "\n%*s%c", indent, "", obj ? '}' : ']');
		return;
	}
	switch (v->type)
	{
		case jbvNull:
			appendStringInfoString(buf, "null");
			break;
		case jbvBool:
			appendStringInfoString(buf, v->val.boolean ? "true" : "false");
			break;
		case jbvString:
			escape_json(buf, pnstrdup(v->val.string.val, v->val.string.len));
			break;
		case jbvNumeric:
			appendStringInfoString(buf, DatumGetCString(DirectFunctionCall1(numeric_out,
																			NumericGetDatum(v->val.numeric))));
			break;
		default:
			break;
	}
}

/* text types, as Allma decides: text/..., application|text/json|javascript|xml, or +json/+xml */
static bool
is_text_type(const char *content_type)
{
	static const char *const families[] = {"application/", "text/", NULL};
	char	   *t = asc_tolower(content_type, strlen(content_type));
	int			len = strlen(t);

	if (strncmp(t, "text/", 5) == 0)
		return true;
	for (int i = 0; families[i] != NULL; i++)
	{
		const char *sub = t;

		while ((sub = strstr(sub, families[i])) != NULL)
		{
			sub += strlen(families[i]);
			if (strncmp(sub, "json", 4) == 0 || strncmp(sub, "javascript", 10) == 0 ||
				strncmp(sub, "xml", 3) == 0)
				return true;
		}
	}
	return (len >= 5 && (strcmp(t + len - 5, "+json") == 0)) ||
		(len >= 4 && strcmp(t + len - 4, "+xml") == 0);
}


/* ----------------------------------------------------------------
 * The modules
 * ----------------------------------------------------------------
 */

static Jsonb *
s3_loader(const char *module, Jsonb *input)
{
	static const char *const formats[] = {"JSON", "TEXT", "RAW_BUFFER", NULL};
	static const char *const on_missing_values[] = {"FAIL", "IGNORE", NULL};
	char	   *uri = string_field(module, input, "sourceS3Uri", NULL);
	char	   *format = string_field(module, input, "outputFormat", "TEXT");
	char	   *encoding = string_field(module, input, "encoding", "utf-8");
	char	   *on_missing = string_field(module, input, "onMissing", "FAIL");
	char	   *bucket;
	char	   *key;
	Oid			types[1] = {TEXTOID};
	Datum		args[1];
	bytea	   *content;
	char	   *ctype;
	char	   *etag;
	bool		isnull;
	Jsonb	   *value;
	Jsonb	   *meta;
	int64		size;

	one_of(module, "outputFormat", format, formats);
	one_of(module, "onMissing", on_missing, on_missing_values);
	parse_s3_uri(module, "sourceS3Uri", uri, &bucket, &key);
	args[0] = CStringGetTextDatum(key);
	if (SPI_execute_with_args(psprintf("SELECT content, content_type, etag, size FROM %s WHERE key = $1",
									   bucket_relation(module, bucket)),
							  1, types, args, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "allma: could not read bucket %s", bucket);
	if (SPI_processed == 0)
	{
		if (strcmp(on_missing, "IGNORE") == 0)
			return allma_jsonb_set_key(allma_jsonb_set_key(NULL, "content", allma_jsonb_null()),
									   "_meta", allma_jsonb_set_key(NULL, "found", allma_jsonb_bool(false)));
		ereport(ERROR,
				(errcode(ERRCODE_ALLMA_NO_SUCH_KEY),
				 errmsg("%s: the object %s does not exist", module, uri),
				 errhint("Set onMissing to IGNORE to get {\"content\": null} instead.")));
	}
	size = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 4, &isnull));
	check_object_size(module, size);
	content = DatumGetByteaPP(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	ctype = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);
	etag = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3);

	if (strcmp(format, "RAW_BUFFER") == 0)
		value = allma_jsonb_string(to_base64(VARDATA_ANY(content), VARSIZE_ANY_EXHDR(content)));
	else
	{
		char	   *text = decode_text(module, VARDATA_ANY(content), VARSIZE_ANY_EXHDR(content), encoding);

		if (strcmp(format, "TEXT") == 0)
			value = allma_jsonb_string(text);
		else
		{
			MemoryContext cxt = CurrentMemoryContext;

			PG_TRY();
			{
				value = allma_jsonb_parse(text);
			}
			PG_CATCH();
			{
				ErrorData  *edata;

				MemoryContextSwitchTo(cxt);
				edata = CopyErrorData();
				FlushErrorState();
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
						 errmsg("InvalidOutputFormat: Failed to parse S3 object content as JSON. Error: %s",
								edata->message),
						 errcontext("%s reading %s", module, uri)));
			}
			PG_END_TRY();
		}
	}
	meta = allma_jsonb_set_key(NULL, "found", allma_jsonb_bool(true));
	meta = allma_jsonb_set_key(meta, "sourceS3Uri", allma_jsonb_string(uri));
	meta = allma_jsonb_set_key(meta, "contentType", allma_jsonb_string(ctype));
	meta = allma_jsonb_set_key(meta, "contentLength", allma_jsonb_int(size));
	meta = allma_jsonb_set_key(meta, "eTag", allma_jsonb_string(etag));
	return allma_jsonb_set_key(allma_jsonb_set_key(NULL, "content", value), "_meta", meta);
}

static Jsonb *
s3_saver(const char *module, Jsonb *input)
{
	char	   *uri = string_field(module, input, "destinationS3UriTemplate", NULL);
	char	   *ctype = string_field(module, input, "contentType", "application/json");
	Jsonb	   *metadata = allma_aws_input_field(input, "metadataTemplate");
	Jsonb	   *content = allma_jsonb_get(input, "contentToSave");
	char	   *bucket;
	char	   *key;
	bytea	   *body;
	JsonbValue	sv;
	Oid			types[4] = {TEXTOID, BYTEAOID, TEXTOID, JSONBOID};
	Datum		args[4];
	char	   *etag;
	Jsonb	   *out;

	if (strncmp(uri, "s3://", 5) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s: destinationS3UriTemplate must start with s3://", module)));
	parse_s3_uri(module, "destinationS3UriTemplate", uri, &bucket, &key);
	if (content == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s: the 'contentToSave' input was undefined. Nothing to save.", module),
				 errhint("Map the content into the step input: \"inputMappings\": {\"contentToSave\": \"$.path\"}.")));
	if (metadata == NULL)
		metadata = allma_jsonb_empty_object();
	else
	{
		List	   *keys = allma_jsonb_object_keys(metadata);
		ListCell   *lc;

		if (!allma_jsonb_is_object(metadata))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("%s: metadataTemplate must be an object of strings", module)));
		foreach(lc, keys)
			if (!allma_jsonb_scalar(allma_jsonb_get(metadata, lfirst(lc)), &sv) || sv.type != jbvString)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("%s: metadataTemplate.%s must be a string", module, (char *) lfirst(lc))));
		if (VARSIZE(metadata) > MAX_METADATA_BYTES)
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("%s: metadataTemplate exceeds %d bytes", module, MAX_METADATA_BYTES)));
	}

	if (allma_jsonb_scalar(content, &sv) && sv.type == jbvString)
	{
		if (!is_text_type(ctype))
			body = from_base64(module, sv.val.string.val, sv.val.string.len);
		else
		{
			char	   *utf8 = pg_server_to_any(sv.val.string.val, sv.val.string.len, PG_UTF8);
			int			len = utf8 == sv.val.string.val ? sv.val.string.len : strlen(utf8);

			body = palloc(VARHDRSZ + len);
			memcpy(VARDATA(body), utf8, len);
			SET_VARSIZE(body, VARHDRSZ + len);
		}
	}
	else
	{
		StringInfoData buf;

		initStringInfo(&buf);
		append_pretty(&buf, ddb_value_from_jsonb(content), 0);
		body = palloc(VARHDRSZ + buf.len);
		memcpy(VARDATA(body), buf.data, buf.len);
		SET_VARSIZE(body, VARHDRSZ + buf.len);
	}
	check_object_size(module, VARSIZE(body) - VARHDRSZ);

	args[0] = CStringGetTextDatum(key);
	args[1] = PointerGetDatum(body);
	args[2] = CStringGetTextDatum(ctype);
	args[3] = JsonbPGetDatum(metadata);
	if (SPI_execute_with_args(psprintf("INSERT INTO %s AS o (key, content, content_type, metadata) "
									   "VALUES ($1, $2, $3, $4) ON CONFLICT (key) DO UPDATE SET "
									   "content = EXCLUDED.content, content_type = EXCLUDED.content_type, "
									   "metadata = EXCLUDED.metadata, last_modified = pg_catalog.clock_timestamp(), "
									   "written_by = CURRENT_USER::pg_catalog.regrole RETURNING etag",
									   bucket_relation(module, bucket)),
							  4, types, args, NULL, false, 0) != SPI_OK_INSERT_RETURNING)
		elog(ERROR, "allma: could not write to bucket %s", bucket);
	etag = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);

	out = allma_jsonb_set_key(NULL, "s3Uri", allma_jsonb_string(uri));
	out = allma_jsonb_set_key(out, "bucket", allma_jsonb_string(bucket));
	out = allma_jsonb_set_key(out, "key", allma_jsonb_string(key));
	return allma_jsonb_set_key(out, "eTag", allma_jsonb_string(etag));
}

static Jsonb *
s3_list(const char *module, Jsonb *input)
{
	char	   *bucket = string_field(module, input, "bucket", NULL);
	char	   *prefix = string_field(module, input, "prefix", "");
	Jsonb	   *max = allma_aws_input_field(input, "maxKeys");
	int64		max_keys = 0;
	Oid			types[1] = {TEXTOID};
	Datum		args[1];
	Jsonb	   *files = allma_jsonb_empty_array();
	JsonbValue	sv;
	char	   *rel;

	if (max != NULL)
	{
		if (!allma_jsonb_scalar(max, &sv) || sv.type != jbvNumeric ||
			(max_keys = DatumGetInt64(DirectFunctionCall1(numeric_int8, NumericGetDatum(sv.val.numeric)))) < 1)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("%s: \"maxKeys\" must be a positive integer", module)));
	}
	rel = bucket_relation(module, bucket);
	args[0] = CStringGetTextDatum(prefix);
	/* objects of size 0 (S3's "directories") are left out, as Allma does */
	if (SPI_execute_with_args(psprintf("SELECT key, size, pg_catalog.to_char(last_modified AT TIME ZONE 'UTC', "
									   "'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), etag FROM %s "
									   "WHERE key >= $1 AND pg_catalog.starts_with(key, $1) AND size > 0 "
									   "ORDER BY key LIMIT %lld",
									   rel, (long long) (max_keys > 0 ? max_keys : MAX_LISTED_FILES + 1)),
							  1, types, args, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "allma: could not list bucket %s", bucket);
	if (max_keys == 0 && SPI_processed > MAX_LISTED_FILES)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("%s: bucket \"%s\" has more than %d files under prefix \"%s\"", module,
						bucket, MAX_LISTED_FILES, prefix),
				 errhint("Give maxKeys or a longer prefix.")));
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		char	   *key = SPI_getvalue(tup, desc, 1);
		bool		isnull;
		Jsonb	   *file;
		Jsonb	   *pointer;

		pointer = allma_jsonb_set_key(NULL, "bucket", allma_jsonb_string(bucket));
		pointer = allma_jsonb_set_key(pointer, "key", allma_jsonb_string(key));
		file = allma_jsonb_set_key(NULL, "key", allma_jsonb_string(key));
		file = allma_jsonb_set_key(file, "size",
								   allma_jsonb_int(DatumGetInt64(SPI_getbinval(tup, desc, 2, &isnull))));
		file = allma_jsonb_set_key(file, "lastModified", allma_jsonb_string(SPI_getvalue(tup, desc, 3)));
		file = allma_jsonb_set_key(file, "eTag", allma_jsonb_string(SPI_getvalue(tup, desc, 4)));
		file = allma_jsonb_set_key(file, "bucket", allma_jsonb_string(bucket));
		file = allma_jsonb_set_key(file, "content",
								   allma_jsonb_set_key(NULL, "_s3_output_pointer", pointer));
		files = allma_jsonb_array_append(files, file);
	}
	return allma_jsonb_set_key(allma_jsonb_set_key(NULL, "files", files), "fileCount",
							   allma_jsonb_int(allma_jsonb_array_length(files)));
}

Jsonb *
s3_module_run(const char *module, Jsonb *input)
{
	MemoryContext outer = CurrentMemoryContext;
	Jsonb	   *out;

	if (!allma_jsonb_is_object(input))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s: the module input must be a JSON object", module)));
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "allma: SPI_connect failed");
	if (strcmp(module, S3_MODULE_LOADER) == 0)
		out = s3_loader(module, input);
	else if (strcmp(module, S3_MODULE_SAVER) == 0)
		out = s3_saver(module, input);
	else
		out = s3_list(module, input);
	out = allma_aws_copy_jsonb(out, outer);
	SPI_finish();
	return out;
}


/* ----------------------------------------------------------------
 * Pointers
 * ----------------------------------------------------------------
 */

/* unwraps {filePointer: p}, {s3Pointer: p} and {_s3_output_pointer: p} */
static Jsonb *
unwrap_pointer(Jsonb *pointer)
{
	for (int depth = 0; depth < 3 && allma_jsonb_is_object(pointer); depth++)
	{
		Jsonb	   *inner = allma_jsonb_get(pointer, "filePointer");

		if (inner == NULL)
			inner = allma_jsonb_get(pointer, "s3Pointer");
		if (inner == NULL)
			inner = allma_jsonb_get(pointer, "_s3_output_pointer");
		if (inner == NULL)
			break;
		pointer = inner;
	}
	return pointer;
}

bytea *
allma_object_read(Jsonb *pointer, const pg_uuid_t *execution_id, Oid as_role,
				  char **content_type)
{
	const char *module = "allma_object_read";
	MemoryContext outer = CurrentMemoryContext;
	char	   *file_id = NULL;
	char	   *bucket = NULL;
	char	   *key = NULL;
	JsonbValue	sv;
	bytea	   *content;
	bool		isnull;
	int			rc;

	pointer = unwrap_pointer(pointer);
	if (allma_jsonb_scalar(pointer, &sv) && sv.type == jbvString)
		parse_s3_uri(module, "the pointer", pnstrdup(sv.val.string.val, sv.val.string.len), &bucket, &key);
	else if (allma_jsonb_is_object(pointer) && allma_jsonb_get_cstring(pointer, "fileId") != NULL)
		file_id = allma_jsonb_get_cstring(pointer, "fileId");
	else if (allma_jsonb_is_object(pointer) && allma_jsonb_get_cstring(pointer, "bucket") != NULL &&
			 allma_jsonb_get_cstring(pointer, "key") != NULL)
	{
		bucket = allma_jsonb_get_cstring(pointer, "bucket");
		key = allma_jsonb_get_cstring(pointer, "key");
	}
	else
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s: not a file or S3 pointer: %s", module,
						pointer ? allma_jsonb_to_cstring(pointer) : "null"),
				 errdetail("A pointer is \"s3://bucket/key\", {\"bucket\", \"key\"}, {\"_s3_output_pointer\": {...}} or FILE_DOWNLOAD's {\"fileId\"}.")));

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "allma: SPI_connect failed");
	if (file_id != NULL)
	{
		Oid			types[2] = {UUIDOID, UUIDOID};
		Datum		args[2];

		args[0] = DirectFunctionCall1(uuid_in, CStringGetDatum(file_id));
		args[1] = execution_id ? UUIDPGetDatum(execution_id) : (Datum) 0;
		/* not read-only: a file stored earlier in the same transaction must be seen */
		rc = SPI_execute_with_args(execution_id ?
								   "SELECT content, coalesce(content_type, 'application/octet-stream') "
								   "FROM allma.files WHERE file_id = $1 AND execution_id = $2" :
								   "SELECT content, coalesce(content_type, 'application/octet-stream') "
								   "FROM allma.files WHERE file_id = $1",
								   execution_id ? 2 : 1, types, args, NULL, false, 1);
		if (rc != SPI_OK_SELECT)
			elog(ERROR, "allma: could not read allma.files");
		if (SPI_processed == 0)
			ereport(ERROR,
					(errcode(ERRCODE_ALLMA_NO_SUCH_KEY),
					 errmsg("%s: file %s does not exist%s", module, file_id,
							execution_id ? " in this execution" : "")));
	}
	else
	{
		Oid			types[1] = {TEXTOID};
		Datum		args[1] = {CStringGetTextDatum(key)};
		Oid			save_userid;
		int			save_sec;

		GetUserIdAndSecContext(&save_userid, &save_sec);
		if (OidIsValid(as_role))
			SetUserIdAndSecContext(as_role, save_sec | SECURITY_LOCAL_USERID_CHANGE |
								   SECURITY_RESTRICTED_OPERATION);
		rc = SPI_execute_with_args(psprintf("SELECT content, content_type FROM %s WHERE key = $1",
											bucket_relation(module, bucket)),
								   1, types, args, NULL, false, 1);
		SetUserIdAndSecContext(save_userid, save_sec);
		if (rc != SPI_OK_SELECT)
			elog(ERROR, "allma: could not read bucket %s", bucket);
		if (SPI_processed == 0)
			ereport(ERROR,
					(errcode(ERRCODE_ALLMA_NO_SUCH_KEY),
					 errmsg("%s: the object s3://%s/%s does not exist", module, bucket, key)));
	}
	content = DatumGetByteaPP(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	check_object_size(module, VARSIZE_ANY_EXHDR(content));
	{
		MemoryContext spicxt = MemoryContextSwitchTo(outer);
		bytea	   *copy = palloc(VARSIZE_ANY(content));

		memcpy(copy, content, VARSIZE_ANY(content));
		if (content_type)
			*content_type = pstrdup(SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2));
		MemoryContextSwitchTo(spicxt);
		content = copy;
	}
	SPI_finish();
	return content;
}


/* ----------------------------------------------------------------
 * SQL API
 * ----------------------------------------------------------------
 */

/*
 * allma_create_bucket(bucket text) RETURNS regclass: the bucket's table,
 * created as (and owned by) the caller, who needs CREATE on allma_s3.
 */
Datum
allma_create_bucket(PG_FUNCTION_ARGS)
{
	char	   *bucket = text_to_cstring(PG_GETARG_TEXT_PP(0));
	char	   *rel;
	StringInfoData sql;

	check_bucket_name(NULL, bucket);
	if (OidIsValid(get_relname_relid(bucket, get_namespace_oid(BUCKET_SCHEMA, false))))
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_TABLE),
				 errmsg("bucket \"%s\" already exists", bucket)));
	if (allma_namespace_aclcheck(get_namespace_oid(BUCKET_SCHEMA, false), GetUserId(),
							  ACL_CREATE) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to create bucket \"%s\"", bucket),
				 errdetail("Buckets are tables of schema %s, and creating one needs the CREATE privilege on it.",
						   BUCKET_SCHEMA),
				 errhint("A superuser can grant it: GRANT CREATE ON SCHEMA %s TO %s;",
						 BUCKET_SCHEMA, quote_identifier(GetUserNameFromId(GetUserId(), false)))));
	rel = quote_qualified_identifier(BUCKET_SCHEMA, bucket);
	initStringInfo(&sql);
	appendStringInfo(&sql,
					 "CREATE TABLE %s ("
					 "key pg_catalog.text COLLATE \"C\" PRIMARY KEY "
					 "CHECK (pg_catalog.octet_length(key) BETWEEN 1 AND %d), "
					 "content pg_catalog.bytea NOT NULL, "
					 "content_type pg_catalog.text NOT NULL DEFAULT 'application/octet-stream', "
					 "metadata pg_catalog.jsonb NOT NULL DEFAULT '{}' "
					 "CHECK (pg_catalog.jsonb_typeof(metadata) = 'object'), "
					 "etag pg_catalog.text GENERATED ALWAYS AS "
					 "('\"' OPERATOR(pg_catalog.||) pg_catalog.md5(content) OPERATOR(pg_catalog.||) '\"') STORED, "
					 "size pg_catalog.int8 GENERATED ALWAYS AS (pg_catalog.octet_length(content)) STORED, "
					 "last_modified pg_catalog.timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(), "
					 "written_by pg_catalog.regrole NOT NULL DEFAULT CURRENT_USER::pg_catalog.regrole)",
					 rel, MAX_KEY_BYTES);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "allma: SPI_connect failed");
	if (SPI_execute(sql.data, false, 0) != SPI_OK_UTILITY)
		elog(ERROR, "allma: could not create bucket %s", bucket);
	if (SPI_execute(psprintf("COMMENT ON TABLE %s IS %s", rel,
							 quote_literal_cstr(psprintf("allma bucket s3://%s", bucket))),
					false, 0) != SPI_OK_UTILITY)
		elog(ERROR, "allma: could not comment bucket %s", bucket);
	SPI_finish();
	PG_RETURN_OID(get_relname_relid(bucket, get_namespace_oid(BUCKET_SCHEMA, false)));
}

/*
 * allma_drop_bucket(bucket text, force boolean) RETURNS boolean: drops the
 * bucket's table (as the caller, who must own it); a bucket that still
 * has objects needs force.  False when there is no such bucket.
 */
Datum
allma_drop_bucket(PG_FUNCTION_ARGS)
{
	char	   *bucket = text_to_cstring(PG_GETARG_TEXT_PP(0));
	bool		force = PG_ARGISNULL(1) ? false : PG_GETARG_BOOL(1);
	char	   *rel;

	check_bucket_name(NULL, bucket);
	if (!OidIsValid(get_relname_relid(bucket, get_namespace_oid(BUCKET_SCHEMA, false))))
		PG_RETURN_BOOL(false);
	rel = quote_qualified_identifier(BUCKET_SCHEMA, bucket);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "allma: SPI_connect failed");
	if (!force)
	{
		if (SPI_execute(psprintf("SELECT 1 FROM %s LIMIT 1", rel), false, 1) != SPI_OK_SELECT)
			elog(ERROR, "allma: could not read bucket %s", bucket);
		if (SPI_processed > 0)
			ereport(ERROR,
					(errcode(ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST),
					 errmsg("the bucket \"%s\" is not empty", bucket),
					 errhint("Delete its objects first, or drop it with force => true.")));
	}
	if (SPI_execute(psprintf("DROP TABLE %s", rel), false, 0) != SPI_OK_UTILITY)
		elog(ERROR, "allma: could not drop bucket %s", bucket);
	SPI_finish();
	PG_RETURN_BOOL(true);
}

/*
 * allma_object_read(pointer jsonb) RETURNS bytea: the bytes a file or S3
 * pointer names, read as the caller (files of the executions it may see).
 */
Datum
allma_object_read_sql(PG_FUNCTION_ARGS)
{
	PG_RETURN_BYTEA_P(allma_object_read(PG_GETARG_JSONB_P(0), NULL, InvalidOid, NULL));
}
