/*-------------------------------------------------------------------------
 *
 * dynamodb.c
 *	  Allma's system/dynamodb-* modules on PostgreSQL.
 *
 * Each module takes the step's input (rendered customConfig with the step
 * input merged over it), reads the fields Allma's handler reads, and runs
 * the DynamoDB operations Allma's handler sends, against the tables of
 * dynamodb_tables.c, with the expressions of dynamodb_expr.c evaluated by
 * dynamodb_eval.c:
 *
 *	system/dynamodb-data-loader		operation GET, QUERY, SCAN -> {content};
 *		QUERY_BATCH: several queries, each result also written into the
 *		flow's context at the query's outputJsonPath
 *	system/dynamodb-update-item		UpdateItem, ReturnValues UPDATED_NEW
 *		-> {updatedAttributes} ({} when nothing was returned)
 *	system/dynamodb-query-and-update	the "claim jobs" pattern: a query,
 *		then a conditional UpdateItem (ALL_NEW) of each item found; items
 *		whose condition fails are skipped -> {updatedItemCount, items}
 *	system/dynamodb-batch-writer	PutRequest / DeleteRequest items of one
 *		table, as BatchWriteItem takes them -> {writtenItemCount, putCount,
 *		deleteCount, unprocessedItems: []}
 *
 * Field names are Allma's camelCase ones; values are plain JSON, as
 * DynamoDB's DocumentClient takes them.  As in DynamoDB, each request's
 * expressionAttributeNames and expressionAttributeValues must all be used
 * by its expressions, and GET passes only the names.
 *
 * Everything runs in the caller's transaction, as the current user, in
 * one SPI connection per module run; the output is copied out to the
 * caller's memory context.  A query-and-update locks the rows it claims
 * (FOR UPDATE SKIP LOCKED), so that concurrent claimers take different
 * items instead of waiting for each other.
 *
 * Copyright (c) 2026, the allma authors
 *
 * IDENTIFICATION
 *	  src/modules/dynamodb.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"
#include "utils/tuplestore.h"

#include "jsonb_util.h"
#include "path.h"
#include "modules/aws.h"
#include "modules/dynamodb.h"

PG_FUNCTION_INFO_V1(allma_dynamodb_explain);

/* what the error context names while a module works on a table */
typedef struct ModuleContext
{
	const char *module;
	const char *table;
	int			query;			/* QUERY_BATCH: 1-based query number, else 0 */
} ModuleContext;

static void
module_error_context(void *arg)
{
	ModuleContext *mc = arg;

	if (mc->table != NULL && mc->query > 0)
		errcontext("%s, query %d, DynamoDB table \"%s\"", mc->module, mc->query, mc->table);
	else if (mc->table != NULL)
		errcontext("%s, DynamoDB table \"%s\"", mc->module, mc->table);
}


/* ----------------------------------------------------------------
 * Reading the input
 * ----------------------------------------------------------------
 */

static char *
string_field(const char *module, Jsonb *input, const char *name, bool required)
{
	Jsonb	   *v = allma_aws_input_field(input, name);
	JsonbValue	sv;

	if (v == NULL)
	{
		if (required)
			ddb_validation_error(module, NULL, "\"%s\" is required", name);
		return NULL;
	}
	if (!allma_jsonb_scalar(v, &sv) || sv.type != jbvString)
		ddb_validation_error(module, name, "it must be a string");
	if (sv.val.string.len == 0)
		ddb_validation_error(module, name, "it must not be empty");
	return pnstrdup(sv.val.string.val, sv.val.string.len);
}

static Jsonb *
object_field(const char *module, Jsonb *input, const char *name, bool required)
{
	Jsonb	   *v = allma_aws_input_field(input, name);

	if (v == NULL)
	{
		if (required)
			ddb_validation_error(module, NULL, "\"%s\" is required", name);
		return NULL;
	}
	if (!allma_jsonb_is_object(v))
		ddb_validation_error(module, name, "it must be an object");
	return v;
}

static bool
bool_field(const char *module, Jsonb *input, const char *name, bool dflt)
{
	Jsonb	   *v = allma_aws_input_field(input, name);
	JsonbValue	sv;

	if (v == NULL)
		return dflt;
	if (!allma_jsonb_scalar(v, &sv) || sv.type != jbvBool)
		ddb_validation_error(module, name, "it must be true or false");
	return sv.val.boolean;
}

static int64
int_field(const char *module, Jsonb *input, const char *name, int64 dflt, int64 max)
{
	Jsonb	   *v = allma_aws_input_field(input, name);
	JsonbValue	sv;
	int64		n;

	if (v == NULL)
		return dflt;
	if (!allma_jsonb_scalar(v, &sv) || sv.type != jbvNumeric)
		ddb_validation_error(module, name, "it must be a positive integer");
	n = DatumGetInt64(DirectFunctionCall1(numeric_int8, NumericGetDatum(sv.val.numeric)));
	if (n < 1 || n > max ||
		!DatumGetBool(DirectFunctionCall2(numeric_eq, NumericGetDatum(sv.val.numeric),
										  NumericGetDatum(int64_to_numeric(n)))))
		ddb_validation_error(module, name, "it must be an integer from 1 to %lld", (long long) max);
	return n;
}

static Jsonb *
items_array(List *items)
{
	JsonbValue	arr;
	ListCell   *lc;
	int			i = 0;

	arr.type = jbvArray;
	arr.val.array.rawScalar = false;
	arr.val.array.nElems = list_length(items);
	arr.val.array.elems = palloc(sizeof(JsonbValue) * Max(list_length(items), 1));
	foreach(lc, items)
		arr.val.array.elems[i++] = *(JsonbValue *) lfirst(lc);
	return ddb_value_to_jsonb(&arr);
}


/* ----------------------------------------------------------------
 * system/dynamodb-data-loader
 * ----------------------------------------------------------------
 */

/* a parsed QUERY or SCAN request */
typedef struct ReadRequest
{
	DdbTable   *table;
	DdbReadSpec spec;
	DdbNode    *filter;
	DdbProjection *projection;
	bool		count;			/* Select COUNT */
} ReadRequest;

static void
parse_read(const char *module, Jsonb *q, bool query, ReadRequest *r, ModuleContext *mc)
{
	char	   *table = string_field(module, q, "tableName", true);
	char	   *index = string_field(module, q, "indexName", false);
	char	   *select = string_field(module, q, "select", false);
	char	   *kce = query ? string_field(module, q, "keyConditionExpression", true) : NULL;
	char	   *fe = string_field(module, q, "filterExpression", false);
	char	   *pe = string_field(module, q, "projectionExpression", false);
	Jsonb	   *start = object_field(module, q, "exclusiveStartKey", false);
	DdbExprContext cx;

	memset(r, 0, sizeof(*r));
	ddb_expr_context_init(&cx, module, object_field(module, q, "expressionAttributeNames", false),
						  object_field(module, q, "expressionAttributeValues", false));
	if (kce)
		r->spec.key = ddb_parse_key_condition(&cx, "keyConditionExpression", kce);
	if (fe)
		r->filter = ddb_parse_condition(&cx, "filterExpression", fe);
	if (pe)
		r->projection = ddb_parse_projection(&cx, "projectionExpression", pe);
	ddb_expr_check_unused(&cx);
	if (select != NULL)
	{
		if (strcmp(select, "COUNT") == 0)
			r->count = true;
		else if (strcmp(select, "ALL_ATTRIBUTES") != 0 && strcmp(select, "SPECIFIC_ATTRIBUTES") != 0 &&
				 strcmp(select, "ALL_PROJECTED_ATTRIBUTES") != 0)
			ddb_validation_error(module, "select",
								 "it must be ALL_ATTRIBUTES, ALL_PROJECTED_ATTRIBUTES, SPECIFIC_ATTRIBUTES or COUNT");
		if ((r->count || strcmp(select, "ALL_ATTRIBUTES") == 0) && pe != NULL)
			ddb_validation_error(module, "select", "%s cannot be combined with a projectionExpression",
								 select);
		if (strcmp(select, "SPECIFIC_ATTRIBUTES") == 0 && pe == NULL)
			ddb_validation_error(module, "select", "SPECIFIC_ATTRIBUTES needs a projectionExpression");
		if (strcmp(select, "ALL_PROJECTED_ATTRIBUTES") == 0 && index == NULL)
			ddb_validation_error(module, "select", "ALL_PROJECTED_ATTRIBUTES needs an indexName");
	}

	mc->table = table;
	r->table = ddb_table_open(module, table);
	if (index)
		r->spec.index = ddb_table_index(r->table, module, index);
	if (r->spec.key)
		ddb_check_key_condition(r->table, r->spec.index, module, "keyConditionExpression",
								r->spec.key);
	r->spec.forward = query ? bool_field(module, q, "scanIndexForward", true) : true;
	r->spec.limit = int_field(module, q, "limit", 0, PG_INT32_MAX);
	if (start)
	{
		r->spec.start_key = ddb_value_from_jsonb(start);
		ddb_check_start_key(r->table, &r->spec, module, "exclusiveStartKey");
	}
}

/* runs a parsed read: the items (or {Count, ScannedCount}) and the last key */
static Jsonb *
run_read(ReadRequest *r, JsonbValue **last_key)
{
	DdbPage    *page = ddb_store_read(r->table, &r->spec);
	List	   *items = NIL;
	ListCell   *lc;

	foreach(lc, page->items)
	{
		JsonbValue *item = lfirst(lc);

		if (r->filter && !ddb_eval_condition(r->filter, item))
			continue;
		items = lappend(items, r->projection ? ddb_project(item, r->projection) : item);
	}
	*last_key = page->truncated ? page->last_key : NULL;
	if (r->count)
	{
		Jsonb	   *out = allma_jsonb_set_key(NULL, "Count", allma_jsonb_int(list_length(items)));

		return allma_jsonb_set_key(out, "ScannedCount", allma_jsonb_int(page->scanned));
	}
	return items_array(items);
}

static Jsonb *
with_last_key(Jsonb *out, JsonbValue *last_key)
{
	if (last_key == NULL)
		return out;
	return allma_jsonb_set_key(out, "lastEvaluatedKey", ddb_value_to_jsonb(last_key));
}

static Jsonb *
run_get(const char *module, Jsonb *input, ModuleContext *mc)
{
	char	   *table = string_field(module, input, "tableName", true);
	Jsonb	   *key = object_field(module, input, "key", true);
	char	   *pe = string_field(module, input, "projectionExpression", false);
	DdbExprContext cx;
	DdbProjection *proj = NULL;
	DdbTable   *t;
	JsonbValue *item;

	/* Allma's GET sends the names but not the values */
	ddb_expr_context_init(&cx, module, object_field(module, input, "expressionAttributeNames", false),
						  NULL);
	if (pe)
		proj = ddb_parse_projection(&cx, "projectionExpression", pe);
	ddb_expr_check_unused(&cx);
	mc->table = table;
	t = ddb_table_open(module, table);
	item = ddb_store_get(t, ddb_key_from_config(t, module, "key", ddb_value_from_jsonb(key)), false);
	if (item != NULL && proj != NULL)
		item = ddb_project(item, proj);
	return allma_jsonb_set_key(NULL, "content", item ? ddb_value_to_jsonb(item) : allma_jsonb_null());
}

/*
 * QUERY_BATCH runs each query of "queries" and returns {content: [result
 * of each query]}; each query's result also goes into the flow's context
 * at its outputJsonPath.  Target paths come from the unrendered input:
 * rendering would have replaced them by the values at those paths.
 */
static Jsonb *
run_query_batch(const char *module, Jsonb *input, Jsonb *unrendered, ModuleContext *mc,
				Jsonb **context_writes)
{
	Jsonb	   *queries = allma_aws_input_field(input, "queries");
	Jsonb	   *raw_queries = allma_aws_input_field(unrendered, "queries");
	List	   *list;
	ListCell   *lc;
	Jsonb	   *results = allma_jsonb_empty_array();
	Jsonb	   *writes = allma_jsonb_empty_array();
	char	   *default_table = string_field(module, input, "tableName", false);

	if (queries == NULL || !allma_jsonb_is_array(queries))
		ddb_validation_error(module, "queries", "QUERY_BATCH needs an array of queries");
	list = allma_jsonb_array_elements(queries);
	if (list_length(list) == 0 || list_length(list) > DDB_MAX_BATCH_QUERIES)
		ddb_validation_error(module, "queries", "QUERY_BATCH takes 1 to %d queries",
							 DDB_MAX_BATCH_QUERIES);
	foreach(lc, list)
	{
		Jsonb	   *q = lfirst(lc);
		char	   *target;
		ReadRequest r;
		JsonbValue *last_key;
		Jsonb	   *result;
		char	   *err = NULL;

		mc->query = foreach_current_index(lc) + 1;
		if (!allma_jsonb_is_object(q))
			ddb_validation_error(module, psprintf("queries[%d]", mc->query - 1), "a query must be an object");
		if (default_table != NULL && allma_aws_input_field(q, "tableName") == NULL)
			q = allma_jsonb_set_key(q, "tableName", allma_jsonb_string(default_table));
		target = NULL;
		if (allma_jsonb_array_length(raw_queries) == list_length(list))
			target = string_field(module, allma_jsonb_array_element(raw_queries, mc->query - 1),
								  "outputJsonPath", false);
		if (target != NULL && !allma_path_check_settable(target, &err))
			ddb_validation_error(module, psprintf("queries[%d].outputJsonPath", mc->query - 1), "%s", err);
		parse_read(module, q, true, &r, mc);
		result = run_read(&r, &last_key);
		if (last_key != NULL)
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("%s: query %d of QUERY_BATCH reads more than %d bytes", module,
							mc->query, DDB_MAX_PAGE_BYTES),
					 errhint("Narrow its key condition or give it a limit.")));
		results = allma_jsonb_array_append(results, result);
		if (target != NULL)
		{
			Jsonb	   *pair = allma_jsonb_array_append(allma_jsonb_array_append(allma_jsonb_empty_array(),
																				 allma_jsonb_string(target)),
														result);

			writes = allma_jsonb_array_append(writes, pair);
		}
		mc->table = NULL;
	}
	mc->query = 0;
	if (context_writes != NULL && allma_jsonb_array_length(writes) > 0)
		*context_writes = writes;
	return allma_jsonb_set_key(NULL, "content", results);
}

static Jsonb *
data_loader(const char *module, Jsonb *input, Jsonb *unrendered, ModuleContext *mc,
			Jsonb **context_writes)
{
	char	   *op = string_field(module, input, "operation", true);
	ReadRequest r;
	JsonbValue *last_key;
	Jsonb	   *out;

	if (strcmp(op, "GET") == 0)
		return run_get(module, input, mc);
	if (strcmp(op, "QUERY_BATCH") == 0)
		return run_query_batch(module, input, unrendered, mc, context_writes);
	if (strcmp(op, "QUERY") != 0 && strcmp(op, "SCAN") != 0)
		ddb_validation_error(module, "operation", "it must be GET, QUERY, SCAN or QUERY_BATCH, not \"%s\"",
							 op);
	parse_read(module, input, strcmp(op, "QUERY") == 0, &r, mc);
	out = allma_jsonb_set_key(NULL, "content", run_read(&r, &last_key));
	return with_last_key(out, last_key);
}


/* ----------------------------------------------------------------
 * Updates: system/dynamodb-update-item, system/dynamodb-query-and-update
 * ----------------------------------------------------------------
 */

typedef struct UpdateRequest
{
	DdbUpdate  *update;
	DdbNode    *condition;
} UpdateRequest;

static void
parse_update_request(const char *module, Jsonb *u, UpdateRequest *r)
{
	char	   *ue = string_field(module, u, "updateExpression", true);
	char	   *ce = string_field(module, u, "conditionExpression", false);
	DdbExprContext cx;

	ddb_expr_context_init(&cx, module, object_field(module, u, "expressionAttributeNames", false),
						  object_field(module, u, "expressionAttributeValues", false));
	r->update = ddb_parse_update(&cx, "updateExpression", ue);
	r->condition = ce ? ddb_parse_condition(&cx, "conditionExpression", ce) : NULL;
	ddb_expr_check_unused(&cx);
}

static void
check_no_key_update(DdbTable *t, const char *module, DdbUpdate *u)
{
	for (int i = 0; i < u->nactions; i++)
	{
		const char *top = u->actions[i].path->elems[0].name;

		if (strcmp(top, t->pk.name) == 0 || (t->sk.name && strcmp(top, t->sk.name) == 0))
			ddb_validation_error(module, psprintf("updateExpression at position %d",
												  u->actions[i].path->pos),
								 "cannot update attribute %s: it is part of the key of table \"%s\"",
								 top, t->name);
	}
}

static void
condition_failed(const char *module, DdbTable *t, JsonbValue *key)
{
	ereport(ERROR,
			(errcode(ERRCODE_ALLMA_CONDITIONAL_CHECK_FAILED),
			 errmsg("%s: the conditional request failed", module),
			 errdetail("conditionExpression is false for the item %s of DynamoDB table \"%s\".",
					   allma_jsonb_to_cstring(ddb_value_to_jsonb(key)), t->name)));
}

/*
 * update_one applies an update to the item with "key" (read and locked
 * here unless "locked" is the current item), after its condition; returns
 * the new item, or NULL when the condition failed and fail_on_condition
 * is false.  A new item is inserted (UpdateItem creates missing items);
 * a concurrent insert of the same key makes it read again.
 */
static JsonbValue *
update_one(const char *module, DdbTable *t, JsonbValue *key, JsonbValue *locked,
		   UpdateRequest *r, bool fail_on_condition, DdbProjection **updated)
{
	for (int attempt = 0; attempt < 3; attempt++)
	{
		JsonbValue *old = locked ? locked : ddb_store_get(t, key, true);
		JsonbValue *new_item;

		if (r->condition && !ddb_eval_condition(r->condition, old ? old : ddb_make_object()))
		{
			if (fail_on_condition)
				condition_failed(module, t, key);
			return NULL;
		}
		new_item = ddb_apply_update(module, r->update, old ? old : key, updated);
		ddb_check_item(t, module, "updateExpression", new_item);
		if (old != NULL)
		{
			ddb_store_replace(t, old, new_item);
			return new_item;
		}
		if (ddb_store_insert(t, new_item))
			return new_item;
		locked = NULL;
	}
	ereport(ERROR,
			(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
			 errmsg("%s: the item kept changing concurrently", module)));
	return NULL;				/* keep compiler quiet */
}

static Jsonb *
update_item(const char *module, Jsonb *input, ModuleContext *mc)
{
	char	   *table = string_field(module, input, "tableName", true);
	Jsonb	   *keyjb = object_field(module, input, "key", true);
	UpdateRequest r;
	DdbTable   *t;
	JsonbValue *key;
	JsonbValue *new_item;
	DdbProjection *updated = NULL;
	JsonbValue *attrs;

	parse_update_request(module, input, &r);
	mc->table = table;
	t = ddb_table_open(module, table);
	key = ddb_key_from_config(t, module, "key", ddb_value_from_jsonb(keyjb));
	check_no_key_update(t, module, r.update);
	new_item = update_one(module, t, key, NULL, &r, true, &updated);

	/* ReturnValues UPDATED_NEW: the attributes written, as they are now */
	if (updated == NULL || updated->npaths == 0)
		return allma_jsonb_empty_object();
	attrs = ddb_project(new_item, updated);
	if (attrs->val.object.nPairs == 0)
		return allma_jsonb_empty_object();
	return allma_jsonb_set_key(NULL, "updatedAttributes", ddb_value_to_jsonb(attrs));
}

static Jsonb *
query_and_update(const char *module, Jsonb *input, ModuleContext *mc)
{
	Jsonb	   *query = object_field(module, input, "query", true);
	Jsonb	   *update = object_field(module, input, "update", true);
	Jsonb	   *keyattrs = allma_aws_input_field(query, "keyAttributes");
	ReadRequest rr;
	UpdateRequest ur;
	DdbPage    *page;
	List	   *claimed = NIL;
	ListCell   *lc;
	Jsonb	   *out;

	if (allma_aws_input_field(query, "expressionAttributeValues") == NULL)
		ddb_validation_error(module, NULL, "\"query.expressionAttributeValues\" is required");
	if (keyattrs != NULL && (!allma_jsonb_is_array(keyattrs) || allma_jsonb_array_length(keyattrs) == 0))
		ddb_validation_error(module, "query.keyAttributes", "it must be a non-empty array of attribute names");
	/* Allma's query sends neither a projection nor ScanIndexForward nor Select */
	query = allma_jsonb_delete_key(query, "projectionExpression");
	query = allma_jsonb_delete_key(query, "scanIndexForward");
	query = allma_jsonb_delete_key(query, "select");
	query = allma_jsonb_delete_key(query, "exclusiveStartKey");
	if (allma_aws_input_field(query, "limit") == NULL)
		query = allma_jsonb_set_key(query, "limit", allma_jsonb_int(100));
	parse_update_request(module, update, &ur);
	parse_read(module, query, true, &rr, mc);
	if (rr.spec.limit > 1000000)
		ddb_validation_error(module, "query.limit", "it must be at most 1000000");
	check_no_key_update(rr.table, module, ur.update);
	rr.spec.lock = true;

	page = ddb_store_read(rr.table, &rr.spec);
	foreach(lc, page->items)
	{
		JsonbValue *item = lfirst(lc);
		JsonbValue *key;
		JsonbValue *new_item;

		if (rr.filter && !ddb_eval_condition(rr.filter, item))
			continue;
		if (keyattrs != NULL)
		{
			List	   *names = allma_jsonb_array_elements(keyattrs);
			ListCell   *lc2;

			key = ddb_make_object();
			foreach(lc2, names)
			{
				char	   *name = allma_jsonb_to_display_text(lfirst(lc2));
				JsonbValue *v = ddb_object_get(item, name);

				if (v == NULL)
					ddb_validation_error(module, "query.keyAttributes",
										 "key attribute %s is missing from an item the query returned",
										 name);
				key = ddb_object_set(key, name, v);
			}
			ddb_key_from_config(rr.table, module, "query.keyAttributes", key);
		}
		else
			key = ddb_key_of_item(rr.table, item);
		new_item = update_one(module, rr.table, key, item, &ur, false, NULL);
		if (new_item != NULL)
			claimed = lappend(claimed, new_item);
	}
	out = allma_jsonb_set_key(NULL, "updatedItemCount", allma_jsonb_int(list_length(claimed)));
	return allma_jsonb_set_key(out, "items", items_array(claimed));
}


/* ----------------------------------------------------------------
 * system/dynamodb-batch-writer
 * ----------------------------------------------------------------
 */

typedef struct WriteRequest
{
	bool		put;
	JsonbValue *item;			/* put: the item; delete: the key */
	JsonbValue *key;
} WriteRequest;

static Jsonb *
either(Jsonb *obj, const char *a, const char *b)
{
	Jsonb	   *v = allma_aws_input_field(obj, a);

	return v ? v : allma_aws_input_field(obj, b);
}

static Jsonb *
batch_writer(const char *module, Jsonb *input, ModuleContext *mc)
{
	char	   *table = string_field(module, input, "tableName", true);
	Jsonb	   *requests = allma_aws_input_field(input, "requests");
	List	   *list;
	WriteRequest *writes;
	DdbTable   *t;
	ListCell   *lc;
	int			n = 0;
	int			puts = 0;
	Jsonb	   *out;

	if (requests == NULL || !allma_jsonb_is_array(requests))
		ddb_validation_error(module, "requests",
							 "it must be an array of {\"PutRequest\": {\"Item\": ...}} and {\"DeleteRequest\": {\"Key\": ...}}");
	list = allma_jsonb_array_elements(requests);
	if (list_length(list) > DDB_MAX_BATCH_WRITES)
		ddb_validation_error(module, "requests", "a batch has at most %d requests",
							 DDB_MAX_BATCH_WRITES);
	mc->table = table;
	t = ddb_table_open(module, table);
	writes = palloc0(sizeof(WriteRequest) * Max(list_length(list), 1));

	/* check everything before writing anything */
	foreach(lc, list)
	{
		Jsonb	   *req = lfirst(lc);
		Jsonb	   *put = allma_jsonb_is_object(req) ? either(req, "PutRequest", "putRequest") : NULL;
		Jsonb	   *del = allma_jsonb_is_object(req) ? either(req, "DeleteRequest", "deleteRequest") : NULL;
		char	   *where = psprintf("requests[%d]", n);
		WriteRequest *w = &writes[n];

		if ((put == NULL) == (del == NULL))
			ddb_validation_error(module, where, "a request is either a PutRequest or a DeleteRequest");
		if (put != NULL)
		{
			Jsonb	   *item = allma_jsonb_is_object(put) ? either(put, "Item", "item") : NULL;

			if (item == NULL)
				ddb_validation_error(module, where, "a PutRequest needs an Item");
			w->put = true;
			w->item = ddb_value_from_jsonb(item);
			ddb_check_item(t, module, where, w->item);
			w->key = ddb_key_of_item(t, w->item);
			puts++;
		}
		else
		{
			Jsonb	   *key = allma_jsonb_is_object(del) ? either(del, "Key", "key") : NULL;

			if (key == NULL)
				ddb_validation_error(module, where, "a DeleteRequest needs a Key");
			w->key = ddb_key_from_config(t, module, where, ddb_value_from_jsonb(key));
		}
		for (int i = 0; i < n; i++)
			if (ddb_value_equal(writes[i].key, w->key))
				ddb_validation_error(module, where,
									 "the batch writes the item %s twice (also requests[%d])",
									 allma_jsonb_to_cstring(ddb_value_to_jsonb(w->key)), i);
		n++;
	}
	for (int i = 0; i < n; i++)
	{
		if (writes[i].put)
			ddb_store_put(t, writes[i].item);
		else
			ddb_store_delete(t, writes[i].key);
	}
	out = allma_jsonb_set_key(NULL, "writtenItemCount", allma_jsonb_int(n));
	out = allma_jsonb_set_key(out, "putCount", allma_jsonb_int(puts));
	out = allma_jsonb_set_key(out, "deleteCount", allma_jsonb_int(n - puts));
	return allma_jsonb_set_key(out, "unprocessedItems", allma_jsonb_empty_array());
}


/* ----------------------------------------------------------------
 * Entry points
 * ----------------------------------------------------------------
 */

Jsonb *
ddb_module_run(const char *module, Jsonb *input, Jsonb *unrendered, Jsonb **context_writes)
{
	MemoryContext outer = CurrentMemoryContext;
	ErrorContextCallback callback;
	ModuleContext mc = {module, NULL, 0};
	Jsonb	   *out;
	Jsonb	   *writes = NULL;

	if (!allma_jsonb_is_object(input))
		ddb_validation_error(module, NULL, "the module input must be a JSON object");
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "allma: SPI_connect failed");
	callback.callback = module_error_context;
	callback.arg = &mc;
	callback.previous = error_context_stack;
	error_context_stack = &callback;

	if (strcmp(module, DDB_MODULE_DATA_LOADER) == 0)
		out = data_loader(module, input, unrendered, &mc, &writes);
	else if (strcmp(module, DDB_MODULE_UPDATE_ITEM) == 0)
		out = update_item(module, input, &mc);
	else if (strcmp(module, DDB_MODULE_QUERY_AND_UPDATE) == 0)
		out = query_and_update(module, input, &mc);
	else
		out = batch_writer(module, input, &mc);

	error_context_stack = callback.previous;
	out = allma_aws_copy_jsonb(out, outer);
	if (context_writes != NULL)
		*context_writes = writes ? allma_aws_copy_jsonb(writes, outer) : NULL;
	SPI_finish();
	return out;
}

/*
 * allma_dynamodb_explain(input jsonb) RETURNS SETOF text
 *
 * EXPLAIN (COSTS OFF) of the statement a system/dynamodb-data-loader
 * QUERY or SCAN with this input runs, with its parameters: shows which
 * index serves it.  Runs as the caller, who needs SELECT on the table.
 */
Datum
allma_dynamodb_explain(PG_FUNCTION_ARGS)
{
	Jsonb	   *input = PG_GETARG_JSONB_P(0);
	const char *module = DDB_MODULE_DATA_LOADER;
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	ModuleContext mc = {module, NULL, 0};
	char	   *op;
	ReadRequest r;
	List	   *lines;
	ListCell   *lc;

	InitMaterializedSRF(fcinfo, MAT_SRF_USE_EXPECTED_DESC);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "allma: SPI_connect failed");
	op = string_field(module, input, "operation", true);
	if (strcmp(op, "QUERY") != 0 && strcmp(op, "SCAN") != 0)
		ddb_validation_error(module, "operation", "only QUERY and SCAN can be explained");
	parse_read(module, input, strcmp(op, "QUERY") == 0, &r, &mc);
	lines = ddb_store_explain(r.table, &r.spec);
	foreach(lc, lines)
	{
		Datum		value = CStringGetTextDatum(lfirst(lc));
		bool		isnull = false;

		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, &value, &isnull);
	}
	SPI_finish();
	return (Datum) 0;
}
