/*-------------------------------------------------------------------------
 *
 * dynamodb_tables.c
 *	  Which PostgreSQL table a DynamoDB table name stands for.
 *
 * allma.dynamodb_tables maps DynamoDB table names to PostgreSQL tables of
 * two kinds:
 *
 * - item stores, created by allma_create_dynamodb_table in schema
 *	 allma_dynamodb and owned by the role that created them:
 *		pk	 text COLLATE "C" (or numeric)	generated from item->>'<partition key>'
 *		sk	 text COLLATE "C" (or numeric)	generated from item->>'<sort key>'
 *		item jsonb							the whole item
 *	 with the primary key (pk, sk).  Each secondary index declared with
 *	 the table is a real, partial PostgreSQL index on the expressions of
 *	 its key attributes (plus pk, sk, so that results come out in order),
 *	 holding only the items that have those attributes with the right type,
 *	 as DynamoDB's sparse indexes do;
 * - a user's own table bound with allma_bind_dynamodb_table: its rows
 *	 are the items (column names are attribute names, NULL means absent),
 *	 its key columns the key attributes.
 *
 * Key attributes are strings ("S", compared in UTF-8 byte order: COLLATE
 * "C") or numbers ("N").  The modules read and write these tables as the
 * role running the step, so PostgreSQL's privileges on each table decide
 * who may read or write it.  This file owns the catalog, the SQL API that
 * fills it (create, bind, drop) and ddb_table_open, which the modules call
 * to turn a name into a DdbTable with the SQL expressions of its keys.
 *
 * A name that was neither created nor bound is DynamoDB's
 * ResourceNotFoundException: allma never creates a table on first use.
 *
 * Copyright (c) 2026, the allma authors
 *
 * IDENTIFICATION
 *	  src/modules/dynamodb_tables.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "parser/parse_coerce.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/regproc.h"

#include "compat.h"
#include "jsonb_util.h"
#include "owner.h"
#include "modules/dynamodb.h"

#define ITEM_SCHEMA "allma_dynamodb"

/* DynamoDB's limits on names; item stores are also bound by NAMEDATALEN */
#define MAX_TABLE_NAME		255
#define MAX_INDEX_NAME		255
#define MAX_ATTRIBUTE_NAME	255
#define MAX_INDEXES			25	/* 20 global and 5 local secondary indexes */

PG_FUNCTION_INFO_V1(allma_create_dynamodb_table);
PG_FUNCTION_INFO_V1(allma_bind_dynamodb_table);
PG_FUNCTION_INFO_V1(allma_drop_dynamodb_table);

static SPIPlanPtr lookup_plan = NULL;
static SPIPlanPtr columns_plan = NULL;


/* ----------------------------------------------------------------
 * SQL of keys
 * ----------------------------------------------------------------
 */

/* the value of attribute "name" of an item store's item, as its key type */
static char *
item_key_sql(const char *name, char type)
{
	if (type == 'N')
		return psprintf("((item OPERATOR(pg_catalog.->>) %s)::pg_catalog.numeric)",
						quote_literal_cstr(name));
	return psprintf("((item OPERATOR(pg_catalog.->>) %s) COLLATE \"C\")",
					quote_literal_cstr(name));
}

/* true when an item store's item has attribute "name" with the key type */
static char *
item_has_key_sql(const char *name, char type)
{
	return psprintf("pg_catalog.jsonb_typeof(item OPERATOR(pg_catalog.->) %s) = '%s'",
					quote_literal_cstr(name), type == 'N' ? "number" : "string");
}

static void
managed_key(DdbKeyAttr *k, const char *name, char type, const char *column)
{
	k->name = pstrdup(name);
	k->type = type;
	k->sql = pstrdup(column);
	k->order_sql = type == 'N' ? pstrdup(column) : psprintf("%s COLLATE \"C\"", column);
	k->coltype = type == 'N' ? NUMERICOID : TEXTOID;
}

static void
managed_index_key(DdbKeyAttr *k, const char *name, char type)
{
	k->name = pstrdup(name);
	k->type = type;
	k->sql = item_key_sql(name, type);
	k->order_sql = k->sql;
	k->coltype = type == 'N' ? NUMERICOID : TEXTOID;
}

/* a bound table's key column: numeric types are "N", everything else "S" */
static void
bound_key(DdbKeyAttr *k, const char *column, Oid coltype)
{
	const char *q = quote_identifier(column);

	k->name = pstrdup(column);
	k->type = TypeCategory(coltype) == TYPCATEGORY_NUMERIC ? 'N' : 'S';
	k->sql = psprintf("t.%s", q);
	k->order_sql = type_is_collatable(coltype) ? psprintf("t.%s COLLATE \"C\"", q) : k->sql;
	k->coltype = coltype;
}

static Oid
column_type(DdbTable *t, const char *name)
{
	ListCell   *lc;

	foreach(lc, t->columns)
	{
		DdbColumn  *c = lfirst(lc);

		if (strcmp(c->name, name) == 0)
			return c->type;
	}
	return InvalidOid;
}

static char
json_type_char(Jsonb *obj, const char *key)
{
	char	   *t = allma_jsonb_get_cstring(obj, key);

	return t != NULL && strcmp(t, "N") == 0 ? 'N' : 'S';
}


/* ----------------------------------------------------------------
 * Opening a table
 * ----------------------------------------------------------------
 */

static void
not_found(const char *module, const char *name, const char *detail)
{
	ereport(ERROR,
			(errcode(ERRCODE_ALLMA_RESOURCE_NOT_FOUND),
			 errmsg("%s: DynamoDB table \"%s\" does not exist", module, name),
			 errdetail("%s", detail),
			 errhint("Create an item store with allma_create_dynamodb_table('%s', 'PK', 'SK'), or bind a table of yours with allma_bind_dynamodb_table.",
					 name)));
}

static SPIPlanPtr
keep_plan(SPIPlanPtr *slot, const char *sql, int nargs, Oid *types)
{
	if (*slot == NULL)
	{
		SPIPlanPtr	plan = SPI_prepare(sql, nargs, types);

		if (plan == NULL)
			elog(ERROR, "allma: SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
		SPI_keepplan(plan);
		*slot = plan;
	}
	return *slot;
}

static void
load_columns(DdbTable *t)
{
	Oid			types[1] = {OIDOID};
	Datum		args[1] = {ObjectIdGetDatum(t->relid)};
	SPIPlanPtr	plan = keep_plan(&columns_plan,
								 "SELECT attname::pg_catalog.text, atttypid, attgenerated <> '' "
								 "FROM pg_catalog.pg_attribute "
								 "WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
								 1, types);

	if (SPI_execute_plan(plan, args, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "allma: could not read the columns of %s", t->relation);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		DdbColumn  *c = palloc0(sizeof(DdbColumn));
		bool		isnull;

		c->name = SPI_getvalue(tup, desc, 1);
		c->type = DatumGetObjectId(SPI_getbinval(tup, desc, 2, &isnull));
		c->generated = DatumGetBool(SPI_getbinval(tup, desc, 3, &isnull));
		t->columns = lappend(t->columns, c);
	}
}

static void
bound_column_key(DdbTable *t, DdbKeyAttr *k, const char *column)
{
	Oid			type = column_type(t, column);

	if (!OidIsValid(type))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("column \"%s\" of %s, a key of DynamoDB table \"%s\", does not exist",
						column, t->relation, t->name),
				 errhint("Bind the table again with allma_bind_dynamodb_table.")));
	bound_key(k, column, type);
}

/* a secondary index's key attribute "field" (of type "type_field") */
static void
index_key(DdbTable *t, DdbKeyAttr *k, Jsonb *ix, const char *field, const char *type_field)
{
	char	   *name = allma_jsonb_get_cstring(ix, field);

	if (t->managed)
		managed_index_key(k, name, json_type_char(ix, type_field));
	else
		bound_column_key(t, k, name);
}

/* SQL: the row has the key attribute (with its type) */
static char *
key_present_sql(DdbTable *t, DdbKeyAttr *k)
{
	if (t->managed)
		return item_has_key_sql(k->name, k->type);
	return psprintf("%s IS NOT NULL", k->sql);
}

/*
 * ddb_table_open turns a DynamoDB table name into a DdbTable.  Needs an
 * SPI connection; reads the catalog as the current user.
 */
DdbTable *
ddb_table_open(const char *module, const char *name)
{
	Oid			types[1] = {TEXTOID};
	Datum		args[1] = {CStringGetTextDatum(name)};
	SPIPlanPtr	plan = keep_plan(&lookup_plan,
								 "SELECT relation::pg_catalog.oid, managed, partition_key, partition_key_type, "
								 "sort_key, sort_key_type, indexes "
								 "FROM allma.dynamodb_tables WHERE table_name = $1",
								 1, types);
	DdbTable   *t = palloc0(sizeof(DdbTable));
	HeapTuple	tup;
	TupleDesc	desc;
	bool		isnull;
	char	   *pk;
	char	   *sk;
	char	   *relname;
	Jsonb	   *indexes;
	List	   *ixlist;
	ListCell   *lc;
	int			i = 0;

	if (SPI_execute_plan(plan, args, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "allma: could not read allma.dynamodb_tables");
	if (SPI_processed == 0)
		not_found(module, name,
				  "No item store of that name was created and no table is bound to it.");
	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;

	t->name = pstrdup(name);
	t->relid = DatumGetObjectId(SPI_getbinval(tup, desc, 1, &isnull));
	t->managed = DatumGetBool(SPI_getbinval(tup, desc, 2, &isnull));
	pk = SPI_getvalue(tup, desc, 3);
	sk = SPI_getvalue(tup, desc, 5);
	indexes = DatumGetJsonbPCopy(SPI_getbinval(tup, desc, 7, &isnull));
	relname = get_rel_name(t->relid);
	if (relname == NULL)
		not_found(module, name, "The PostgreSQL table it stood for was dropped.");
	t->relation = quote_qualified_identifier(get_namespace_name(get_rel_namespace(t->relid)),
											 relname);
	ixlist = allma_jsonb_array_elements(indexes);
	t->indexes = palloc0(sizeof(DdbIndex) * Max(list_length(ixlist), 1));

	if (t->managed)
	{
		managed_key(&t->pk, pk, SPI_getvalue(tup, desc, 4)[0], "pk");
		if (sk != NULL)
			managed_key(&t->sk, sk, SPI_getvalue(tup, desc, 6)[0], "sk");
	}
	else
	{
		load_columns(t);
		bound_column_key(t, &t->pk, pk);
		if (sk != NULL)
			bound_column_key(t, &t->sk, sk);
	}
	t->pk.max_bytes = DDB_MAX_PARTITION_KEY_BYTES;
	t->sk.max_bytes = DDB_MAX_SORT_KEY_BYTES;
	foreach(lc, ixlist)
	{
		Jsonb	   *ix = lfirst(lc);
		DdbIndex   *d = &t->indexes[i++];

		d->name = allma_jsonb_get_cstring(ix, "indexName");
		index_key(t, &d->pk, ix, "partitionKey", "partitionKeyType");
		d->pk.max_bytes = DDB_MAX_PARTITION_KEY_BYTES;
		d->predicate = key_present_sql(t, &d->pk);
		if (allma_jsonb_get_cstring(ix, "sortKey") != NULL)
		{
			index_key(t, &d->sk, ix, "sortKey", "sortKeyType");
			d->sk.max_bytes = DDB_MAX_SORT_KEY_BYTES;
			d->predicate = psprintf("%s AND %s", d->predicate, key_present_sql(t, &d->sk));
		}
	}
	t->nindexes = i;
	return t;
}

DdbIndex *
ddb_table_index(DdbTable *t, const char *module, const char *index_name)
{
	StringInfoData known;

	for (int i = 0; i < t->nindexes; i++)
		if (strcmp(t->indexes[i].name, index_name) == 0)
			return &t->indexes[i];
	initStringInfo(&known);
	for (int i = 0; i < t->nindexes; i++)
		appendStringInfo(&known, "%s%s", i ? ", " : "", t->indexes[i].name);
	ereport(ERROR,
			(errcode(ERRCODE_ALLMA_VALIDATION_EXCEPTION),
			 errmsg("%s: DynamoDB table \"%s\" has no index \"%s\"", module, t->name, index_name),
			 known.len ? errdetail("Its indexes are: %s.", known.data) :
			 errdetail("It has no secondary indexes."),
			 errhint("Declare indexes when creating the table: allma_create_dynamodb_table(..., indexes => '[{\"indexName\": \"%s\", \"partitionKey\": \"...\", \"sortKey\": \"...\"}]').",
					 index_name)));
	return NULL;				/* keep compiler quiet */
}


/* ----------------------------------------------------------------
 * SQL API
 * ----------------------------------------------------------------
 */

static bool
valid_name(const char *s, int minlen, int maxlen)
{
	int			len = strlen(s);

	if (len < minlen || len > maxlen)
		return false;
	for (const char *c = s; *c; c++)
		if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
			  (*c >= '0' && *c <= '9') || *c == '_' || *c == '-' || *c == '.'))
			return false;
	return true;
}

static void
check_table_name(const char *name, int maxlen)
{
	if (!valid_name(name, 3, maxlen))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid DynamoDB table name \"%s\"", name),
				 errdetail("A table name has 3 to %d characters: letters, digits, \"_\", \"-\" and \".\".",
						   maxlen)));
}

static void
check_attribute_name(const char *what, const char *name)
{
	int			len = strlen(name);

	if (len == 0 || len > MAX_ATTRIBUTE_NAME)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must have 1 to %d bytes", what, MAX_ATTRIBUTE_NAME)));
}

/* the type of key attribute "name" from attribute_types: S (default) or N */
static char
declared_type(Jsonb *types, const char *name)
{
	char	   *t = allma_jsonb_get_cstring(types, name);

	if (t == NULL || strcmp(t, "S") == 0)
		return 'S';
	if (strcmp(t, "N") == 0)
		return 'N';
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("attribute type \"%s\" of key attribute \"%s\" is not supported", t, name),
			 errdetail("Key attributes are strings (\"S\") or numbers (\"N\"); JSON has no binary type.")));
	return 'S';					/* keep compiler quiet */
}

/* the live catalog entry's relation, or InvalidOid; removes a dangling one */
static Oid
existing_entry(const char *name, Oid *owner)
{
	AllmaAsOwner st;
	Oid			types[1] = {TEXTOID};
	Datum		args[1] = {CStringGetTextDatum(name)};
	Oid			relid = InvalidOid;

	allma_owner_begin(&st);
	allma_owner_exec("SELECT relation::pg_catalog.oid, owner::pg_catalog.oid FROM allma.dynamodb_tables "
					 "WHERE table_name = $1 FOR UPDATE",
					 1, types, args, NULL, SPI_OK_SELECT);
	if (SPI_processed > 0)
	{
		bool		isnull;

		relid = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
		if (owner)
			*owner = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
		if (get_rel_name(relid) == NULL)
		{
			allma_owner_exec("DELETE FROM allma.dynamodb_tables WHERE table_name = $1",
							 1, types, args, NULL, SPI_OK_DELETE);
			relid = InvalidOid;
		}
	}
	allma_owner_end(&st);
	return relid;
}

static void
already_exists(const char *name, Oid relid)
{
	ereport(ERROR,
			(errcode(ERRCODE_DUPLICATE_TABLE),
			 errmsg("DynamoDB table \"%s\" already exists", name),
			 errdetail("It stands for %s.", get_rel_name(relid)),
			 errhint("Drop it first with allma_drop_dynamodb_table('%s').", name)));
}

static void
insert_entry(const char *name, Oid relid, bool managed, const char *pk, char pktype,
			 const char *sk, char sktype, Jsonb *indexes)
{
	AllmaAsOwner st;
	Oid			types[9] = {TEXTOID, OIDOID, BOOLOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID,
	JSONBOID, OIDOID};
	Datum		args[9];
	char		nulls[9] = "         ";

	args[0] = CStringGetTextDatum(name);
	args[1] = ObjectIdGetDatum(relid);
	args[2] = BoolGetDatum(managed);
	args[3] = CStringGetTextDatum(pk);
	args[4] = CStringGetTextDatum(pktype == 'N' ? "N" : "S");
	if (sk != NULL)
	{
		args[5] = CStringGetTextDatum(sk);
		args[6] = CStringGetTextDatum(sktype == 'N' ? "N" : "S");
	}
	else
		nulls[5] = nulls[6] = 'n';
	args[7] = JsonbPGetDatum(indexes);
	args[8] = ObjectIdGetDatum(GetUserId());

	allma_owner_begin(&st);
	allma_owner_exec("INSERT INTO allma.dynamodb_tables (table_name, relation, managed, partition_key, "
					 "partition_key_type, sort_key, sort_key_type, indexes, owner) "
					 "VALUES ($1, $2::pg_catalog.oid::pg_catalog.regclass, $3, $4, $5, $6, $7, $8, "
					 "$9::pg_catalog.oid::pg_catalog.regrole)",
					 9, types, args, nulls, SPI_OK_INSERT);
	allma_owner_end(&st);
}

/* "S" or "N": an index key's type, declared or (bound tables) its column's */
static Jsonb *
index_key_type(const char *attr, Jsonb *types_of, DdbTable *bound)
{
	char		type;

	if (bound != NULL)
	{
		DdbKeyAttr	k;

		bound_column_key(bound, &k, attr);
		type = k.type;
	}
	else
		type = declared_type(types_of, attr);
	return allma_jsonb_string(type == 'N' ? "N" : "S");
}

/*
 * normalize_indexes checks the "indexes" argument, an array of
 * {indexName, partitionKey, sortKey?}, and returns it with the key types
 * added (from types_of: attribute_types for item stores, NULL for bound
 * tables whose columns decide).
 */
static Jsonb *
normalize_indexes(Jsonb *indexes, Jsonb *types_of, DdbTable *bound)
{
	List	   *list;
	ListCell   *lc;
	Jsonb	   *out = allma_jsonb_empty_array();
	List	   *names = NIL;

	if (indexes == NULL)
		return out;
	if (!allma_jsonb_is_array(indexes))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("indexes must be a JSON array of {\"indexName\", \"partitionKey\", \"sortKey\"}")));
	list = allma_jsonb_array_elements(indexes);
	if (list_length(list) > MAX_INDEXES)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("a DynamoDB table has at most %d secondary indexes", MAX_INDEXES)));
	foreach(lc, list)
	{
		Jsonb	   *ix = lfirst(lc);
		char	   *name = allma_jsonb_is_object(ix) ? allma_jsonb_get_cstring(ix, "indexName") : NULL;
		char	   *pk = allma_jsonb_is_object(ix) ? allma_jsonb_get_cstring(ix, "partitionKey") : NULL;
		char	   *sk = allma_jsonb_is_object(ix) ? allma_jsonb_get_cstring(ix, "sortKey") : NULL;
		Jsonb	   *norm;
		ListCell   *lc2;

		if (name == NULL || pk == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("every index needs \"indexName\" and \"partitionKey\" (and may have \"sortKey\")")));
		if (!valid_name(name, 3, MAX_INDEX_NAME))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid index name \"%s\"", name),
					 errdetail("An index name has 3 to %d characters: letters, digits, \"_\", \"-\" and \".\".",
							   MAX_INDEX_NAME)));
		foreach(lc2, names)
			if (strcmp(lfirst(lc2), name) == 0)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("index \"%s\" is declared twice", name)));
		names = lappend(names, name);
		check_attribute_name("an index's partitionKey", pk);
		norm = allma_jsonb_set_key(NULL, "indexName", allma_jsonb_string(name));
		norm = allma_jsonb_set_key(norm, "partitionKey", allma_jsonb_string(pk));
		norm = allma_jsonb_set_key(norm, "partitionKeyType", index_key_type(pk, types_of, bound));
		if (sk != NULL)
		{
			check_attribute_name("an index's sortKey", sk);
			if (strcmp(sk, pk) == 0)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("index \"%s\" has the same partition and sort key", name)));
			norm = allma_jsonb_set_key(norm, "sortKey", allma_jsonb_string(sk));
			norm = allma_jsonb_set_key(norm, "sortKeyType", index_key_type(sk, types_of, bound));
		}
		out = allma_jsonb_array_append(out, norm);
	}
	return out;
}

static void
run_ddl(const char *sql)
{
	int			rc = SPI_execute(sql, false, 0);

	if (rc != SPI_OK_UTILITY)
		elog(ERROR, "allma: DDL failed (%s): %s", SPI_result_code_string(rc), sql);
}

/*
 * allma_create_dynamodb_table(table_name, partition_key, sort_key, indexes,
 * attribute_types) RETURNS regclass
 *
 * Creates an item store in schema allma_dynamodb, owned by the calling
 * role, who needs the CREATE privilege on that schema.  The DDL runs as
 * the caller; only the catalog row is written as allma.
 */
Datum
allma_create_dynamodb_table(PG_FUNCTION_ARGS)
{
	char	   *name;
	char	   *pk;
	char	   *sk = PG_ARGISNULL(2) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(2));
	Jsonb	   *indexes = PG_ARGISNULL(3) ? NULL : PG_GETARG_JSONB_P(3);
	Jsonb	   *types = PG_ARGISNULL(4) ? NULL : PG_GETARG_JSONB_P(4);
	char		pktype;
	char		sktype = 'S';
	Oid			relid;
	char	   *rel;
	StringInfoData sql;
	List	   *ixlist;
	ListCell   *lc;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("table_name and partition_key must not be NULL")));
	name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	pk = text_to_cstring(PG_GETARG_TEXT_PP(1));
	check_table_name(name, NAMEDATALEN - 1);
	check_attribute_name("partition_key", pk);
	if (types != NULL && !allma_jsonb_is_object(types))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("attribute_types must be a JSON object such as {\"score\": \"N\"}")));
	pktype = declared_type(types, pk);
	if (sk != NULL)
	{
		check_attribute_name("sort_key", sk);
		if (strcmp(sk, pk) == 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("partition_key and sort_key must differ")));
		sktype = declared_type(types, sk);
	}
	indexes = normalize_indexes(indexes, types, NULL);

	if (allma_namespace_aclcheck(get_namespace_oid(ITEM_SCHEMA, false), GetUserId(),
							  ACL_CREATE) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to create DynamoDB table \"%s\"", name),
				 errdetail("Item stores are tables of schema %s, and creating one needs the CREATE privilege on it.",
						   ITEM_SCHEMA),
				 errhint("A superuser can grant it: GRANT CREATE ON SCHEMA %s TO %s;",
						 ITEM_SCHEMA, quote_identifier(GetUserNameFromId(GetUserId(), false)))));
	relid = existing_entry(name, NULL);
	if (OidIsValid(relid))
		already_exists(name, relid);

	rel = quote_qualified_identifier(ITEM_SCHEMA, name);
	initStringInfo(&sql);
	appendStringInfo(&sql, "CREATE TABLE %s (", rel);
	appendStringInfo(&sql, "pk %s GENERATED ALWAYS AS %s STORED NOT NULL, ",
					 pktype == 'N' ? "pg_catalog.numeric" : "pg_catalog.text COLLATE \"C\"",
					 item_key_sql(pk, pktype));
	if (sk != NULL)
		appendStringInfo(&sql, "sk %s GENERATED ALWAYS AS %s STORED NOT NULL, ",
						 sktype == 'N' ? "pg_catalog.numeric" : "pg_catalog.text COLLATE \"C\"",
						 item_key_sql(sk, sktype));
	appendStringInfoString(&sql, "item pg_catalog.jsonb NOT NULL, "
						   "CONSTRAINT item_is_a_map CHECK (pg_catalog.jsonb_typeof(item) = 'object'), ");
	appendStringInfo(&sql, "CONSTRAINT partition_key_type CHECK (%s%s), ",
					 item_has_key_sql(pk, pktype),
					 pktype == 'S' ? psprintf(" AND (item OPERATOR(pg_catalog.->>) %s) <> ''",
											  quote_literal_cstr(pk)) : "");
	if (sk != NULL)
		appendStringInfo(&sql, "CONSTRAINT sort_key_type CHECK (%s%s), ",
						 item_has_key_sql(sk, sktype),
						 sktype == 'S' ? psprintf(" AND (item OPERATOR(pg_catalog.->>) %s) <> ''",
												  quote_literal_cstr(sk)) : "");
	appendStringInfo(&sql, "PRIMARY KEY (pk%s))", sk ? ", sk" : "");

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "allma: SPI_connect failed");
	run_ddl(sql.data);
	ixlist = allma_jsonb_array_elements(indexes);
	foreach(lc, ixlist)
	{
		Jsonb	   *ix = lfirst(lc);
		char	   *ixname = allma_jsonb_get_cstring(ix, "indexName");
		char	   *ipk = allma_jsonb_get_cstring(ix, "partitionKey");
		char	   *isk = allma_jsonb_get_cstring(ix, "sortKey");
		char		ipkt = json_type_char(ix, "partitionKeyType");
		char		iskt = json_type_char(ix, "sortKeyType");
		char	   *pgname = psprintf("%s/%s", name, ixname);

		resetStringInfo(&sql);
		appendStringInfo(&sql, "CREATE INDEX %s ON %s (%s, ",
						 strlen(pgname) < NAMEDATALEN ? quote_identifier(pgname) : "",
						 rel, item_key_sql(ipk, ipkt));
		if (isk != NULL)
			appendStringInfo(&sql, "%s, ", item_key_sql(isk, iskt));
		appendStringInfo(&sql, "pk%s) WHERE %s", sk ? ", sk" : "", item_has_key_sql(ipk, ipkt));
		if (isk != NULL)
			appendStringInfo(&sql, " AND %s", item_has_key_sql(isk, iskt));
		run_ddl(sql.data);
	}
	resetStringInfo(&sql);
	appendStringInfo(&sql, "COMMENT ON TABLE %s IS %s", rel,
					 quote_literal_cstr(psprintf("allma item store of DynamoDB table %s", name)));
	run_ddl(sql.data);
	SPI_finish();

	relid = get_relname_relid(name, get_namespace_oid(ITEM_SCHEMA, false));
	insert_entry(name, relid, true, pk, pktype, sk, sktype, indexes);
	PG_RETURN_OID(relid);
}

/* true when relid has a unique index on exactly the given columns */
static bool
has_unique_key(Oid relid, List *columns)
{
	StringInfoData sql;
	ListCell   *lc;
	List	   *attnums = NIL;
	bool		found;

	foreach(lc, columns)
		attnums = lappend_int(attnums, get_attnum(relid, lfirst(lc)));
	list_sort(attnums, list_int_cmp);
	initStringInfo(&sql);
	appendStringInfo(&sql,
					 "SELECT 1 FROM pg_catalog.pg_index i WHERE i.indrelid = %u AND i.indisunique "
					 "AND i.indimmediate AND i.indpred IS NULL AND i.indexprs IS NULL "
					 "AND i.indnkeyatts = %d AND (SELECT pg_catalog.array_agg(k ORDER BY k) "
					 "FROM pg_catalog.unnest((i.indkey::pg_catalog.int2[])[0:i.indnkeyatts - 1]) k) = "
					 "ARRAY[",
					 relid, list_length(attnums));
	foreach(lc, attnums)
		appendStringInfo(&sql, "%s%d", foreach_current_index(lc) ? ", " : "", lfirst_int(lc));
	appendStringInfoString(&sql, "]::pg_catalog.int2[]");
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "allma: SPI_connect failed");
	if (SPI_execute(sql.data, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "allma: could not read pg_index");
	found = SPI_processed > 0;
	SPI_finish();
	return found;
}

/*
 * allma_bind_dynamodb_table(table_name, target, partition_key, sort_key,
 * indexes) RETURNS void
 *
 * Makes a DynamoDB table name stand for the caller's own table.  Only its
 * owner may bind it; the key columns need a unique index (items are
 * written with INSERT ... ON CONFLICT).
 */
Datum
allma_bind_dynamodb_table(PG_FUNCTION_ARGS)
{
	char	   *name;
	Oid			relid;
	char	   *pk;
	char	   *sk = PG_ARGISNULL(3) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(3));
	Jsonb	   *indexes = PG_ARGISNULL(4) ? NULL : PG_GETARG_JSONB_P(4);
	DdbTable	t;
	char		relkind;
	Oid			existing;
	List	   *keycols;
	MemoryContext outer = CurrentMemoryContext;
	MemoryContext oldcxt;
	char		pktype;
	char		sktype;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("table_name, target and partition_key must not be NULL")));
	name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	relid = PG_GETARG_OID(1);
	pk = text_to_cstring(PG_GETARG_TEXT_PP(2));
	check_table_name(name, MAX_TABLE_NAME);

	relkind = get_rel_relkind(relid);
	if (relkind != RELKIND_RELATION && relkind != RELKIND_PARTITIONED_TABLE)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("\"%s\" is not a table", get_rel_name(relid))));
	if (!pg_class_ownercheck(relid, GetUserId()))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("must be owner of table %s to bind it to a DynamoDB table name",
						get_rel_name(relid))));

	memset(&t, 0, sizeof(t));
	t.name = name;
	t.relid = relid;
	t.relation = quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)),
											get_rel_name(relid));
	keycols = list_make1(pk);
	if (sk != NULL)
		keycols = lappend(keycols, sk);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "allma: SPI_connect failed");
	load_columns(&t);
	bound_column_key(&t, &t.pk, pk);
	if (sk != NULL)
		bound_column_key(&t, &t.sk, sk);
	/* what outlives the SPI connection is allocated outside it */
	oldcxt = MemoryContextSwitchTo(outer);
	indexes = normalize_indexes(indexes, NULL, &t);
	pktype = t.pk.type;
	sktype = sk ? t.sk.type : 'S';
	MemoryContextSwitchTo(oldcxt);
	SPI_finish();
	if ((sk != NULL && strcmp(pk, sk) == 0) || !has_unique_key(relid, keycols))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_OBJECT_DEFINITION),
				 errmsg("table %s has no unique index on exactly its key columns", t.relation),
				 errhint("Add one: ALTER TABLE %s ADD PRIMARY KEY (%s%s%s).", t.relation,
						 quote_identifier(pk), sk ? ", " : "", sk ? quote_identifier(sk) : "")));

	existing = existing_entry(name, NULL);
	if (OidIsValid(existing))
		already_exists(name, existing);
	insert_entry(name, relid, false, pk, pktype, sk, sktype, indexes);
	PG_RETURN_VOID();
}

/*
 * allma_drop_dynamodb_table(table_name) RETURNS boolean
 *
 * Drops an item store (with its items) or removes a binding (the bound
 * table stays).  Only the role that created or bound the name (or a
 * member of it) may; false when the name does not exist.
 */
Datum
allma_drop_dynamodb_table(PG_FUNCTION_ARGS)
{
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	Oid			owner = InvalidOid;
	Oid			relid;
	AllmaAsOwner st;
	Oid			types[1] = {TEXTOID};
	Datum		args[1];
	bool		managed = false;

	relid = existing_entry(name, &owner);
	if (!OidIsValid(relid))
		PG_RETURN_BOOL(false);
	if (!has_privs_of_role(GetUserId(), owner))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("must be a member of role %s to drop DynamoDB table \"%s\"",
						GetUserNameFromId(owner, false), name)));

	args[0] = CStringGetTextDatum(name);
	allma_owner_begin(&st);
	allma_owner_exec("DELETE FROM allma.dynamodb_tables WHERE table_name = $1 RETURNING managed",
					 1, types, args, NULL, SPI_OK_DELETE_RETURNING);
	if (SPI_processed > 0)
	{
		bool		isnull;

		managed = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	}
	allma_owner_end(&st);

	if (managed)
	{
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "allma: SPI_connect failed");
		run_ddl(psprintf("DROP TABLE %s",
						 quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)),
													get_rel_name(relid))));
		SPI_finish();
	}
	PG_RETURN_BOOL(true);
}
