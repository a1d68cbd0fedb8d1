/*-------------------------------------------------------------------------
 *
 * dynamodb_store.c
 *	  Reading and writing DynamoDB items in PostgreSQL tables.
 *
 * Given a DdbTable (dynamodb_tables.c), this file checks keys and items
 * against the table's key schema the way DynamoDB does, and runs the SQL
 * that reads and writes them: GetItem, the pages of Query and Scan (by
 * key condition, on the table or on a secondary index, in key order),
 * and inserts, replacements, upserts and deletes of single items.
 *
 * All SQL goes through SPI as the current user in the caller's
 * transaction; the caller holds the SPI connection.  Reads are not
 * "read-only" for SPI: a step must see what an earlier step of the same
 * transaction wrote.  Statements are built
 * from the table's key expressions and kept as saved plans, keyed by their
 * text and parameter types (a small per-backend cache): a step that runs
 * again reuses its plan.  Values are always parameters.
 *
 * Reads stop where DynamoDB's would: after "limit" rows (DynamoDB counts
 * rows read, before any filter) or after 1 MB of items, in which case the
 * page is truncated and carries the key of its last row (LastEvaluatedKey)
 * so that a caller may go on from there (ExclusiveStartKey).
 *
 * Writes to an item store replace the item document; writes to a bound
 * table set the columns named by the item's attributes, and an attribute
 * that has no column is a ValidationException.  An attribute removed by
 * an update sets its column to NULL.
 *
 * Copyright (c) 2026, the allma authors
 *
 * IDENTIFICATION
 *	  src/modules/dynamodb_store.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/numeric.h"

#include "modules/dynamodb.h"

/* saved plans kept per backend; the cache is emptied when full */
#define PLAN_CACHE_SIZE		128
#define MAX_PARAMS			8

typedef struct PlanEntry
{
	uint32		hash;
	char	   *sql;
	int			nargs;
	Oid			types[MAX_PARAMS];
	SPIPlanPtr	plan;
} PlanEntry;

static PlanEntry plan_cache[PLAN_CACHE_SIZE];
static int	plan_cache_used = 0;

/* the parameters of one statement being built */
typedef struct Params
{
	int			n;
	Oid			types[MAX_PARAMS];
	Datum		values[MAX_PARAMS];
} Params;


/* ----------------------------------------------------------------
 * Saved plans
 * ----------------------------------------------------------------
 */

static SPIPlanPtr
get_plan(const char *sql, Params *p, bool cursor)
{
	uint32		hash = hash_bytes((const unsigned char *) sql, strlen(sql));
	PlanEntry  *e;
	SPIPlanPtr	plan;

	for (int i = 0; i < plan_cache_used; i++)
	{
		e = &plan_cache[i];
		if (e->hash == hash && e->nargs == p->n &&
			memcmp(e->types, p->types, sizeof(Oid) * p->n) == 0 && strcmp(e->sql, sql) == 0)
			return e->plan;
	}
	plan = cursor ? SPI_prepare_cursor(sql, p->n, p->types, 0) : SPI_prepare(sql, p->n, p->types);
	if (plan == NULL)
		elog(ERROR, "allma: SPI_prepare failed (%s): %s", SPI_result_code_string(SPI_result), sql);
	SPI_keepplan(plan);
	if (plan_cache_used == PLAN_CACHE_SIZE)
	{
		for (int i = 0; i < plan_cache_used; i++)
		{
			SPI_freeplan(plan_cache[i].plan);
			pfree(plan_cache[i].sql);
		}
		plan_cache_used = 0;
	}
	e = &plan_cache[plan_cache_used++];
	e->hash = hash;
	e->sql = MemoryContextStrdup(TopMemoryContext, sql);
	e->nargs = p->n;
	memcpy(e->types, p->types, sizeof(Oid) * p->n);
	e->plan = plan;
	return plan;
}

static int
add_param(Params *p, Oid type, Datum value)
{
	Assert(p->n < MAX_PARAMS);
	p->types[p->n] = type;
	p->values[p->n] = value;
	return ++p->n;
}

/* $n of a key value, in the key's SQL type */
static int
key_param(Params *p, DdbKeyAttr *k, JsonbValue *v)
{
	char	   *text;
	Oid			typinput;
	Oid			typioparam;

	if (k->coltype == TEXTOID && v->type == jbvString)
		return add_param(p, TEXTOID, PointerGetDatum(cstring_to_text_with_len(v->val.string.val,
																			   v->val.string.len)));
	if (k->coltype == NUMERICOID && v->type == jbvNumeric)
		return add_param(p, NUMERICOID, NumericGetDatum(v->val.numeric));
	/* a bound table's column of another type: through its input function */
	text = v->type == jbvString ? pnstrdup(v->val.string.val, v->val.string.len) :
		DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(v->val.numeric)));
	getTypeInputInfo(k->coltype, &typinput, &typioparam);
	return add_param(p, k->coltype, OidInputFunctionCall(typinput, text, typioparam, -1));
}

static int
jsonb_param(Params *p, JsonbValue *item)
{
	return add_param(p, JSONBOID, JsonbPGetDatum(ddb_value_to_jsonb(item)));
}

static int
execute(const char *sql, Params *p, bool read_only, long count)
{
	SPIPlanPtr	plan = get_plan(sql, p, false);
	int			rc = SPI_execute_plan(plan, p->values, NULL, read_only, count);

	if (rc < 0)
		elog(ERROR, "allma: statement failed (%s): %s", SPI_result_code_string(rc), sql);
	return rc;
}

/* the item of row i of SPI_tuptable (column 1), copied out of the tuple */
static JsonbValue *
row_item(DdbTable *t, uint64 i)
{
	bool		isnull;
	Datum		d = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull);
	JsonbValue *item;

	if (isnull)
		return NULL;
	item = ddb_value_from_jsonb(DatumGetJsonbPCopy(d));
	if (!t->managed && item->type == jbvObject)
	{
		/* a NULL column is an absent attribute */
		int			n = 0;

		for (int j = 0; j < item->val.object.nPairs; j++)
			if (item->val.object.pairs[j].value.type != jbvNull)
				item->val.object.pairs[n++] = item->val.object.pairs[j];
		item->val.object.nPairs = n;
	}
	return item;
}

static const char *
item_sql(DdbTable *t)
{
	return t->managed ? "item" : "pg_catalog.to_jsonb(t.*)";
}


/* ----------------------------------------------------------------
 * Keys and items
 * ----------------------------------------------------------------
 */

static bool
type_matches(DdbKeyAttr *k, JsonbValue *v)
{
	return (k->type == 'S' && v->type == jbvString) || (k->type == 'N' && v->type == jbvNumeric);
}

static void
check_key_value(DdbKeyAttr *k, const char *module, const char *field, JsonbValue *v,
				const char *index)
{
	if (!type_matches(k, v))
		ddb_validation_error(module, field,
							 "the key attribute %s%s%s must be of type %s, not %s",
							 k->name, index ? " of index " : "", index ? index : "",
							 k->type == 'N' ? "N (a number)" : "S (a string)", ddb_value_type(v));
	if (v->type == jbvString && v->val.string.len == 0)
		ddb_validation_error(module, field, "the key attribute %s must not be an empty string",
							 k->name);
	if (v->type == jbvString && k->max_bytes > 0 && v->val.string.len > k->max_bytes)
		ddb_validation_error(module, field, "the key attribute %s has %d bytes; it may have %d",
							 k->name, v->val.string.len, k->max_bytes);
}

/*
 * ddb_key_from_config checks a "key" object of a request: exactly the
 * table's key attributes, of their types.
 */
JsonbValue *
ddb_key_from_config(DdbTable *t, const char *module, const char *field, JsonbValue *key)
{
	int			expected = t->sk.name ? 2 : 1;
	JsonbValue *v;

	if (key == NULL || key->type != jbvObject)
		ddb_validation_error(module, field, "it must be an object of the key attributes");
	if (key->val.object.nPairs != expected ||
		ddb_object_get(key, t->pk.name) == NULL ||
		(t->sk.name && ddb_object_get(key, t->sk.name) == NULL))
		ddb_validation_error(module, field,
							 "the key does not match the schema of table \"%s\": it must have exactly %s%s%s",
							 t->name, t->pk.name, t->sk.name ? " and " : "",
							 t->sk.name ? t->sk.name : "");
	v = ddb_object_get(key, t->pk.name);
	check_key_value(&t->pk, module, field, v, NULL);
	if (t->sk.name)
		check_key_value(&t->sk, module, field, ddb_object_get(key, t->sk.name), NULL);
	return key;
}

JsonbValue *
ddb_key_of_item(DdbTable *t, JsonbValue *item)
{
	JsonbValue *key = ddb_object_set(ddb_make_object(), t->pk.name,
									 ddb_object_get(item, t->pk.name));

	if (t->sk.name)
		key = ddb_object_set(key, t->sk.name, ddb_object_get(item, t->sk.name));
	return key;
}

static bool
has_column(DdbTable *t, const char *name, bool *generated)
{
	ListCell   *lc;

	foreach(lc, t->columns)
	{
		DdbColumn  *c = lfirst(lc);

		if (strcmp(c->name, name) == 0)
		{
			*generated = c->generated;
			return true;
		}
	}
	return false;
}

/*
 * ddb_check_item: an item about to be written has the key attributes
 * with their types, index key attributes (when present) of the index's
 * types, at most 400 KB, and, for a bound table, a column per attribute.
 */
void
ddb_check_item(DdbTable *t, const char *module, const char *field, JsonbValue *item)
{
	JsonbValue *v;
	int64		size;

	if (item == NULL || item->type != jbvObject)
		ddb_validation_error(module, field, "an item must be an object");
	if ((v = ddb_object_get(item, t->pk.name)) == NULL)
		ddb_validation_error(module, field, "the item lacks the key attribute %s", t->pk.name);
	check_key_value(&t->pk, module, field, v, NULL);
	if (t->sk.name)
	{
		if ((v = ddb_object_get(item, t->sk.name)) == NULL)
			ddb_validation_error(module, field, "the item lacks the key attribute %s", t->sk.name);
		check_key_value(&t->sk, module, field, v, NULL);
	}
	for (int i = 0; i < t->nindexes; i++)
	{
		DdbIndex   *ix = &t->indexes[i];

		if ((v = ddb_object_get(item, ix->pk.name)) != NULL)
			check_key_value(&ix->pk, module, field, v, ix->name);
		if (ix->sk.name && (v = ddb_object_get(item, ix->sk.name)) != NULL)
			check_key_value(&ix->sk, module, field, v, ix->name);
	}
	ddb_check_value_depth(module, field, item);
	size = ddb_item_size(item);
	if (size > DDB_MAX_ITEM_BYTES)
		ddb_validation_error(module, field, "the item has %lld bytes; an item has at most %d",
							 (long long) size, DDB_MAX_ITEM_BYTES);
	if (!t->managed)
	{
		for (int i = 0; i < item->val.object.nPairs; i++)
		{
			JsonbValue *k = &item->val.object.pairs[i].key;
			char	   *name = pnstrdup(k->val.string.val, k->val.string.len);
			bool		generated;

			if (!has_column(t, name, &generated))
				ddb_validation_error(module, field,
									 "table %s, bound to DynamoDB table \"%s\", has no column for attribute %s",
									 t->relation, t->name, name);
		}
	}
}

/*
 * ddb_check_key_condition matches a parsed key condition with the key
 * schema of the table or index, and checks the types of its values.
 */
void
ddb_check_key_condition(DdbTable *t, DdbIndex *index, const char *module, const char *field,
						DdbKeyCondition *kc)
{
	DdbKeyAttr *pk = index ? &index->pk : &t->pk;
	DdbKeyAttr *sk = index ? &index->sk : &t->sk;
	const char *what = index ? psprintf("index \"%s\"", index->name) : psprintf("table \"%s\"", t->name);

	/* "a = :x AND b = :y" may name the keys in either order */
	if (strcmp(kc->pk_name, pk->name) != 0 && kc->sk_name != NULL &&
		strcmp(kc->sk_name, pk->name) == 0 && kc->sk_op == DDB_KEY_EQ && sk->name &&
		strcmp(kc->pk_name, sk->name) == 0)
	{
		char	   *n = kc->pk_name;
		JsonbValue *v = kc->pk_value;

		kc->pk_name = kc->sk_name;
		kc->pk_value = kc->sk_value;
		kc->sk_name = n;
		kc->sk_value = v;
	}
	if (strcmp(kc->pk_name, pk->name) != 0)
		ddb_validation_error(module, field,
							 "the condition misses the partition key %s of %s (it constrains %s)",
							 pk->name, what, kc->pk_name);
	if (kc->sk_name != NULL && (sk->name == NULL || strcmp(kc->sk_name, sk->name) != 0))
		ddb_validation_error(module, field,
							 "%s is not the sort key of %s%s%s", kc->sk_name, what,
							 sk->name ? ", whose sort key is " : ", which has no sort key",
							 sk->name ? sk->name : "");
	check_key_value(pk, module, field, kc->pk_value, index ? index->name : NULL);
	if (kc->sk_name == NULL)
		return;
	if (kc->sk_op == DDB_KEY_BEGINS_WITH && sk->type != 'S')
		ddb_validation_error(module, field, "begins_with needs a string sort key, but %s is a number",
							 sk->name);
	if (!type_matches(sk, kc->sk_value) ||
		(kc->sk_value2 != NULL && !type_matches(sk, kc->sk_value2)))
		ddb_validation_error(module, field, "the values compared with %s must be of type %s",
							 sk->name, sk->type == 'N' ? "N (numbers)" : "S (strings)");
	if (kc->sk_op == DDB_KEY_BETWEEN && ddb_value_compare(kc->sk_value, kc->sk_value2) > 0)
		ddb_validation_error(module, field,
							 "the lower bound of BETWEEN is greater than the upper bound");
}


/* ----------------------------------------------------------------
 * Reads
 * ----------------------------------------------------------------
 */

/* WHERE clause of a key equality on the table's own key */
static void
key_where(StringInfo sql, Params *p, DdbTable *t, JsonbValue *key)
{
	appendStringInfo(sql, " WHERE %s = $%d", t->pk.sql,
					 key_param(p, &t->pk, ddb_object_get(key, t->pk.name)));
	if (t->sk.name)
		appendStringInfo(sql, " AND %s = $%d", t->sk.sql,
						 key_param(p, &t->sk, ddb_object_get(key, t->sk.name)));
}

JsonbValue *
ddb_store_get(DdbTable *t, JsonbValue *key, bool for_update)
{
	StringInfoData sql;
	Params		p = {0};

	initStringInfo(&sql);
	appendStringInfo(&sql, "SELECT %s FROM %s t", item_sql(t), t->relation);
	key_where(&sql, &p, t, key);
	if (for_update)
		appendStringInfoString(&sql, " FOR UPDATE OF t");
	execute(sql.data, &p, false, 1);
	if (SPI_processed == 0)
		return NULL;
	return row_item(t, 0);
}

/*
 * prefix_upper_bound: the least string greater than every string that
 * starts with the prefix (UTF-8: the last code point that can be
 * incremented, incremented), or NULL when there is none.
 */
static text *
prefix_upper_bound(JsonbValue *prefix)
{
	const unsigned char *s = (const unsigned char *) prefix->val.string.val;
	int			len = prefix->val.string.len;

	if (GetDatabaseEncoding() != PG_UTF8)
		return NULL;
	while (len > 0)
	{
		int			start = len - 1;
		pg_wchar	c;
		unsigned char buf[8];
		char	   *out;
		int			clen;

		while (start > 0 && (s[start] & 0xC0) == 0x80)
			start--;
		c = utf8_to_unicode(s + start);
		if (c < 0x10FFFF)
		{
			c = (c == 0xD7FF) ? 0xE000 : c + 1;
			unicode_to_utf8(c, buf);
			clen = pg_utf_mblen(buf);
			out = palloc(start + clen);
			memcpy(out, s, start);
			memcpy(out + start, buf, clen);
			return cstring_to_text_with_len(out, start + clen);
		}
		len = start;
	}
	return NULL;
}

/* the columns a read is ordered by, in order */
static int
order_keys(DdbTable *t, DdbReadSpec *spec, DdbKeyAttr **keys)
{
	int			n = 0;

	if (spec->index)
	{
		if (spec->key == NULL)
			keys[n++] = &spec->index->pk;
		if (spec->index->sk.name)
			keys[n++] = &spec->index->sk;
		keys[n++] = &t->pk;
		if (t->sk.name)
			keys[n++] = &t->sk;
		return n;
	}
	if (spec->key == NULL)
		keys[n++] = &t->pk;
	if (t->sk.name)
		keys[n++] = &t->sk;
	return n;
}

static const char *
op_sql(DdbKeyOp op)
{
	switch (op)
	{
		case DDB_KEY_EQ:
			return "=";
		case DDB_KEY_LT:
			return "<";
		case DDB_KEY_LE:
			return "<=";
		case DDB_KEY_GT:
			return ">";
		case DDB_KEY_GE:
			return ">=";
		default:
			return NULL;
	}
}

static char *
read_sql(DdbTable *t, DdbReadSpec *spec, Params *p)
{
	StringInfoData sql;
	DdbKeyAttr *pk = spec->index ? &spec->index->pk : &t->pk;
	DdbKeyAttr *sk = spec->index ? &spec->index->sk : &t->sk;
	DdbKeyAttr *order[4];
	int			norder = order_keys(t, spec, order);
	const char *and = " WHERE ";

	initStringInfo(&sql);
	appendStringInfo(&sql, "SELECT %s FROM %s t", item_sql(t), t->relation);
	if (spec->index)
	{
		appendStringInfo(&sql, " WHERE %s", spec->index->predicate);
		and = " AND ";
	}
	if (spec->key)
	{
		DdbKeyCondition *kc = spec->key;

		appendStringInfo(&sql, "%s%s = $%d", and, pk->sql, key_param(p, pk, kc->pk_value));
		and = " AND ";
		switch (kc->sk_op)
		{
			case DDB_KEY_NONE:
				break;
			case DDB_KEY_BETWEEN:
				appendStringInfo(&sql, " AND %s >= $%d", sk->order_sql, key_param(p, sk, kc->sk_value));
				appendStringInfo(&sql, " AND %s <= $%d", sk->order_sql, key_param(p, sk, kc->sk_value2));
				break;
			case DDB_KEY_BEGINS_WITH:
				if (sk->coltype == TEXTOID || t->managed)
				{
					text	   *upper = prefix_upper_bound(kc->sk_value);

					appendStringInfo(&sql, " AND %s >= $%d", sk->order_sql, key_param(p, sk, kc->sk_value));
					if (upper != NULL)
						appendStringInfo(&sql, " AND %s < $%d", sk->order_sql,
										 add_param(p, TEXTOID, PointerGetDatum(upper)));
					else
						appendStringInfo(&sql, " AND pg_catalog.starts_with(%s, $%d)", sk->sql, p->n);
				}
				else
					appendStringInfo(&sql, " AND pg_catalog.starts_with(%s::pg_catalog.text, $%d)", sk->sql,
									 add_param(p, TEXTOID,
											   PointerGetDatum(cstring_to_text_with_len(kc->sk_value->val.string.val,
																						kc->sk_value->val.string.len))));
				break;
			default:
				appendStringInfo(&sql, " AND %s %s $%d", sk->order_sql, op_sql(kc->sk_op),
								 key_param(p, sk, kc->sk_value));
				break;
		}
	}
	if (spec->start_key != NULL)
	{
		appendStringInfo(&sql, "%s(", and);
		if (norder == 0)
			appendStringInfoString(&sql, "false");
		for (int i = 0; i < norder; i++)
			appendStringInfo(&sql, "%s%s", i ? ", " : "", order[i]->order_sql);
		if (norder > 0)
		{
			appendStringInfo(&sql, ") %s (", spec->forward ? ">" : "<");
			for (int i = 0; i < norder; i++)
				appendStringInfo(&sql, "%s$%d", i ? ", " : "",
								 key_param(p, order[i], ddb_object_get(spec->start_key, order[i]->name)));
		}
		appendStringInfoString(&sql, ")");
	}
	if (norder > 0)
	{
		appendStringInfoString(&sql, " ORDER BY ");
		for (int i = 0; i < norder; i++)
			appendStringInfo(&sql, "%s%s%s", i ? ", " : "", order[i]->order_sql,
							 spec->forward ? "" : " DESC");
	}
	if (spec->lock)
		appendStringInfoString(&sql, " FOR UPDATE OF t SKIP LOCKED");
	return sql.data;
}

/* the last evaluated key of a row: the table's key, plus the index's */
static JsonbValue *
read_position(DdbTable *t, DdbReadSpec *spec, JsonbValue *item)
{
	JsonbValue *key = ddb_key_of_item(t, item);

	if (spec->index)
	{
		key = ddb_object_set(key, spec->index->pk.name, ddb_object_get(item, spec->index->pk.name));
		if (spec->index->sk.name)
			key = ddb_object_set(key, spec->index->sk.name,
								 ddb_object_get(item, spec->index->sk.name));
	}
	return key;
}

/*
 * ddb_check_start_key: an exclusive start key holds the keys a read is
 * ordered by (the table's key, and the index's), of their types.
 */
void
ddb_check_start_key(DdbTable *t, DdbReadSpec *spec, const char *module, const char *field)
{
	DdbKeyAttr *order[4];
	int			norder = order_keys(t, spec, order);

	if (spec->start_key->type != jbvObject)
		ddb_validation_error(module, field, "it must be an object of key attributes");
	for (int i = 0; i < norder; i++)
	{
		JsonbValue *v = ddb_object_get(spec->start_key, order[i]->name);

		if (v == NULL)
			ddb_validation_error(module, field, "the start key lacks the key attribute %s",
								 order[i]->name);
		check_key_value(order[i], module, field, v, NULL);
	}
}

/*
 * ddb_store_read reads one page of a query (spec->key) or a scan.  The
 * start key, when given, must have passed ddb_check_start_key.
 */
DdbPage *
ddb_store_read(DdbTable *t, DdbReadSpec *spec)
{
	Params		p = {0};
	char	   *sql = read_sql(t, spec, &p);
	SPIPlanPtr	plan = get_plan(sql, &p, true);
	Portal		portal;
	DdbPage    *page = palloc0(sizeof(DdbPage));
	int64		bytes = 0;
	bool		done = false;

	portal = SPI_cursor_open(NULL, plan, p.values, NULL, false);
	while (!done)
	{
		long		want = 100;

		if (spec->limit > 0)
			want = Min(want, (long) (spec->limit - page->scanned));
		SPI_cursor_fetch(portal, true, want);
		if (SPI_processed == 0)
			break;
		for (uint64 i = 0; i < SPI_processed; i++)
		{
			JsonbValue *item = row_item(t, i);

			page->items = lappend(page->items, item);
			page->scanned++;
			bytes += ddb_item_size(item);
			if (spec->limit > 0 && page->scanned >= spec->limit)
			{
				done = true;
				break;
			}
			if (bytes >= DDB_MAX_PAGE_BYTES)
			{
				page->truncated = true;
				page->last_key = read_position(t, spec, item);
				done = true;
				break;
			}
		}
		SPI_freetuptable(SPI_tuptable);
	}
	SPI_cursor_close(portal);
	return page;
}


/* ----------------------------------------------------------------
 * Writes
 * ----------------------------------------------------------------
 */

/* the columns of a bound table a write sets: every attribute of the new item
 * and, on an existing row, every attribute the old one had that changed */
static List *
changed_columns(DdbTable *t, JsonbValue *old_item, JsonbValue *new_item)
{
	List	   *cols = NIL;

	for (int i = 0; i < new_item->val.object.nPairs; i++)
	{
		JsonbPair  *pair = &new_item->val.object.pairs[i];
		char	   *name = pnstrdup(pair->key.val.string.val, pair->key.val.string.len);
		JsonbValue *before = old_item ? ddb_object_get(old_item, name) : NULL;

		if (before == NULL || !ddb_value_equal(before, &pair->value))
			cols = lappend(cols, name);
	}
	if (old_item != NULL)
		for (int i = 0; i < old_item->val.object.nPairs; i++)
		{
			JsonbPair  *pair = &old_item->val.object.pairs[i];
			char	   *name = pnstrdup(pair->key.val.string.val, pair->key.val.string.len);

			if (ddb_object_get(new_item, name) == NULL)
				cols = lappend(cols, name);
		}
	return cols;
}

/* the new item with JSON nulls for removed attributes (NULL columns) */
static JsonbValue *
row_image(JsonbValue *new_item, List *cols)
{
	JsonbValue *row = new_item;
	ListCell   *lc;
	JsonbValue	null;

	null.type = jbvNull;
	foreach(lc, cols)
		if (ddb_object_get(new_item, lfirst(lc)) == NULL)
			row = ddb_object_set(row, lfirst(lc), &null);
	return row;
}

/* INSERT of a new item; false when an item with its key exists */
bool
ddb_store_insert(DdbTable *t, JsonbValue *item)
{
	StringInfoData sql;
	Params		p = {0};

	initStringInfo(&sql);
	if (t->managed)
		appendStringInfo(&sql, "INSERT INTO %s (item) VALUES ($%d) ON CONFLICT DO NOTHING",
						 t->relation, jsonb_param(&p, item));
	else
	{
		List	   *cols = changed_columns(t, NULL, item);
		ListCell   *lc;
		int			n = jsonb_param(&p, item);

		appendStringInfo(&sql, "INSERT INTO %s AS t (", t->relation);
		foreach(lc, cols)
			appendStringInfo(&sql, "%s%s", foreach_current_index(lc) ? ", " : "",
							 quote_identifier(lfirst(lc)));
		appendStringInfoString(&sql, ") SELECT ");
		foreach(lc, cols)
			appendStringInfo(&sql, "%sr.%s", foreach_current_index(lc) ? ", " : "",
							 quote_identifier(lfirst(lc)));
		appendStringInfo(&sql, " FROM pg_catalog.jsonb_populate_record(NULL::%s, $%d) r "
						 "ON CONFLICT DO NOTHING", t->relation, n);
	}
	execute(sql.data, &p, false, 0);
	return SPI_processed > 0;
}

/* UPDATE of an existing item (the caller holds its row lock) */
void
ddb_store_replace(DdbTable *t, JsonbValue *old_item, JsonbValue *new_item)
{
	StringInfoData sql;
	Params		p = {0};
	JsonbValue *key = ddb_key_of_item(t, new_item);

	initStringInfo(&sql);
	if (t->managed)
		appendStringInfo(&sql, "UPDATE %s t SET item = $%d", t->relation,
						 jsonb_param(&p, new_item));
	else
	{
		List	   *cols = changed_columns(t, old_item, new_item);
		ListCell   *lc;
		int			n;

		if (cols == NIL)
			return;
		n = jsonb_param(&p, row_image(new_item, cols));
		appendStringInfo(&sql, "UPDATE %s t SET ", t->relation);
		foreach(lc, cols)
			appendStringInfo(&sql, "%s%s = r.%s", foreach_current_index(lc) ? ", " : "",
							 quote_identifier(lfirst(lc)), quote_identifier(lfirst(lc)));
		appendStringInfo(&sql, " FROM pg_catalog.jsonb_populate_record(NULL::%s, $%d) r",
						 t->relation, n);
	}
	key_where(&sql, &p, t, key);
	execute(sql.data, &p, false, 0);
}

/* PutItem: the item replaces any item with its key */
void
ddb_store_put(DdbTable *t, JsonbValue *item)
{
	if (t->managed)
	{
		StringInfoData sql;
		Params		p = {0};

		initStringInfo(&sql);
		appendStringInfo(&sql, "INSERT INTO %s (item) VALUES ($%d) ON CONFLICT (pk%s) "
						 "DO UPDATE SET item = EXCLUDED.item",
						 t->relation, jsonb_param(&p, item), t->sk.name ? ", sk" : "");
		execute(sql.data, &p, false, 0);
		return;
	}
	/* a bound table: replace the row's attributes, or insert (retrying a race) */
	for (int attempt = 0; attempt < 3; attempt++)
	{
		JsonbValue *old = ddb_store_get(t, ddb_key_of_item(t, item), true);

		if (old != NULL)
		{
			ddb_store_replace(t, old, item);
			return;
		}
		if (ddb_store_insert(t, item))
			return;
	}
	ereport(ERROR,
			(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
			 errmsg("could not write an item of DynamoDB table \"%s\": it kept changing concurrently",
					t->name)));
}

void
ddb_store_delete(DdbTable *t, JsonbValue *key)
{
	StringInfoData sql;
	Params		p = {0};

	initStringInfo(&sql);
	appendStringInfo(&sql, "DELETE FROM %s t", t->relation);
	key_where(&sql, &p, t, key);
	execute(sql.data, &p, false, 0);
}

/* EXPLAIN (COSTS OFF) of the statement ddb_store_read runs for spec */
List *
ddb_store_explain(DdbTable *t, DdbReadSpec *spec)
{
	Params		p = {0};
	char	   *sql = psprintf("EXPLAIN (COSTS OFF) %s", read_sql(t, spec, &p));
	List	   *lines = NIL;

	if (SPI_execute_with_args(sql, p.n, p.types, p.values, NULL, false, 0) != SPI_OK_UTILITY)
		elog(ERROR, "allma: EXPLAIN failed: %s", sql);
	for (uint64 i = 0; i < SPI_processed; i++)
		lines = lappend(lines, SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1));
	return lines;
}
