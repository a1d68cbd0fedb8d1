/*-------------------------------------------------------------------------
 *
 * dynamodb_eval.c
 *	  DynamoDB items in memory: conditions, updates and projections.
 *
 * Items are JsonbValue trees (dynamodb.h).  This file owns what DynamoDB
 * computes on one item: whether a ConditionExpression or FilterExpression
 * holds, the item an UpdateExpression makes of it, its projection, and
 * the size DynamoDB charges for it (the 400 KB item limit).
 *
 * Semantics, as DynamoDB's:
 * - A comparison needs both operands; an attribute that does not exist
 *	 makes =, <, <=, >, >=, BETWEEN, IN and the functions false and <>
 *	 true.  <, <=, >, >= and BETWEEN compare only a string with a string
 *	 (UTF-8 byte order) or a number with a number (numerically); values of
 *	 different types are never less or greater than each other, and equal
 *	 only when of the same type and equal (maps and lists deeply).
 * - size() is the number of characters of a string, of elements of a list
 *	 and of entries of a map; other types have no size (the comparison is
 *	 false).  contains() finds a substring in a string or an element in a
 *	 list.  attribute_type() knows S, N, BOOL, NULL, M and L.
 * - An update computes every value from the item as it was before the
 *	 update, then applies the actions: SET (list indexes past the end
 *	 append, in index order), REMOVE (list elements by their original
 *	 index), ADD and DELETE.  A path whose parent does not exist, or
 *	 arithmetic on something that is not a number, is a ValidationException.
 * - JSON has no sets, so ADD and DELETE treat a JSON array as a set: ADD
 *	 of an array adds the elements not yet present, DELETE removes the
 *	 given elements and removes the attribute when none is left.  ADD of a
 *	 number to a number adds.
 *
 * Updates never modify a tree in place: they copy the containers along
 * the changed paths, so the item before the update stays intact.
 *
 * Copyright (c) 2026, the allma authors
 *
 * IDENTIFICATION
 *	  src/modules/dynamodb_eval.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"

#include "modules/dynamodb.h"


/* ----------------------------------------------------------------
 * Values
 * ----------------------------------------------------------------
 */

JsonbValue *
ddb_value_from_jsonb(Jsonb *jb)
{
	JsonbIterator *it;
	JsonbParseState *st = NULL;
	JsonbValue	v;
	JsonbValue *res = NULL;
	JsonbIteratorToken tok;

	if (jb == NULL)
		return NULL;
	it = JsonbIteratorInit(&jb->root);
	/* scalars and the raw-scalar flag of a top-level scalar's pseudo-array */
	while ((tok = JsonbIteratorNext(&it, &v, false)) != WJB_DONE)
		res = pushJsonbValue(&st, tok, tok <= WJB_BEGIN_ARRAY ? &v : NULL);
	if (res->type == jbvArray && res->val.array.rawScalar)
		return &res->val.array.elems[0];
	return res;
}

static JsonbValue *
push_value(JsonbParseState **st, JsonbIteratorToken tok, JsonbValue *v)
{
	JsonbValue *res;

	check_stack_depth();
	if (v->type == jbvObject)
	{
		pushJsonbValue(st, WJB_BEGIN_OBJECT, NULL);
		for (int i = 0; i < v->val.object.nPairs; i++)
		{
			pushJsonbValue(st, WJB_KEY, &v->val.object.pairs[i].key);
			push_value(st, WJB_VALUE, &v->val.object.pairs[i].value);
		}
		return pushJsonbValue(st, WJB_END_OBJECT, NULL);
	}
	if (v->type == jbvArray)
	{
		pushJsonbValue(st, WJB_BEGIN_ARRAY, NULL);
		for (int i = 0; i < v->val.array.nElems; i++)
			push_value(st, WJB_ELEM, &v->val.array.elems[i]);
		return pushJsonbValue(st, WJB_END_ARRAY, NULL);
	}
	res = pushJsonbValue(st, tok, v);
	return res;
}

Jsonb *
ddb_value_to_jsonb(JsonbValue *v)
{
	JsonbParseState *st = NULL;

	if (v->type != jbvObject && v->type != jbvArray)
		return JsonbValueToJsonb(v);
	return JsonbValueToJsonb(push_value(&st, WJB_VALUE, v));
}

const char *
ddb_value_type(JsonbValue *v)
{
	switch (v->type)
	{
		case jbvString:
			return "S";
		case jbvNumeric:
			return "N";
		case jbvBool:
			return "BOOL";
		case jbvNull:
			return "NULL";
		case jbvObject:
			return "M";
		case jbvArray:
			return "L";
		default:
			return "?";
	}
}

static int
string_compare(JsonbValue *a, JsonbValue *b)
{
	int			n = Min(a->val.string.len, b->val.string.len);
	int			c = memcmp(a->val.string.val, b->val.string.val, n);

	if (c != 0)
		return c < 0 ? -1 : 1;
	return a->val.string.len < b->val.string.len ? -1 :
		a->val.string.len > b->val.string.len ? 1 : 0;
}

static int
numeric_compare(Numeric a, Numeric b)
{
	return DatumGetInt32(DirectFunctionCall2(numeric_cmp, NumericGetDatum(a),
											 NumericGetDatum(b)));
}

/* order of two strings or two numbers; 0 for anything else */
int
ddb_value_compare(JsonbValue *a, JsonbValue *b)
{
	if (a->type == jbvString && b->type == jbvString)
		return string_compare(a, b);
	if (a->type == jbvNumeric && b->type == jbvNumeric)
		return numeric_compare(a->val.numeric, b->val.numeric);
	return 0;
}

JsonbValue *
ddb_object_get(JsonbValue *obj, const char *key)
{
	int			len = strlen(key);

	if (obj == NULL || obj->type != jbvObject)
		return NULL;
	for (int i = 0; i < obj->val.object.nPairs; i++)
	{
		JsonbValue *k = &obj->val.object.pairs[i].key;

		if (k->val.string.len == len && memcmp(k->val.string.val, key, len) == 0)
			return &obj->val.object.pairs[i].value;
	}
	return NULL;
}

bool
ddb_value_equal(JsonbValue *a, JsonbValue *b)
{
	check_stack_depth();
	if (a->type != b->type)
		return false;
	switch (a->type)
	{
		case jbvNull:
			return true;
		case jbvBool:
			return a->val.boolean == b->val.boolean;
		case jbvString:
			return string_compare(a, b) == 0;
		case jbvNumeric:
			return numeric_compare(a->val.numeric, b->val.numeric) == 0;
		case jbvArray:
			if (a->val.array.nElems != b->val.array.nElems)
				return false;
			for (int i = 0; i < a->val.array.nElems; i++)
				if (!ddb_value_equal(&a->val.array.elems[i], &b->val.array.elems[i]))
					return false;
			return true;
		case jbvObject:
			if (a->val.object.nPairs != b->val.object.nPairs)
				return false;
			for (int i = 0; i < a->val.object.nPairs; i++)
			{
				JsonbValue *k = &a->val.object.pairs[i].key;
				char	   *key = pnstrdup(k->val.string.val, k->val.string.len);
				JsonbValue *other = ddb_object_get(b, key);

				if (other == NULL || !ddb_value_equal(&a->val.object.pairs[i].value, other))
					return false;
			}
			return true;
		default:
			return false;
	}
}

JsonbValue *
ddb_make_object(void)
{
	JsonbValue *v = palloc0(sizeof(JsonbValue));

	v->type = jbvObject;
	v->val.object.nPairs = 0;
	v->val.object.pairs = NULL;
	return v;
}

JsonbValue *
ddb_make_string(const char *s)
{
	JsonbValue *v = palloc0(sizeof(JsonbValue));

	v->type = jbvString;
	v->val.string.val = pstrdup(s);
	v->val.string.len = strlen(s);
	return v;
}

static JsonbValue *
make_numeric(Numeric n)
{
	JsonbValue *v = palloc0(sizeof(JsonbValue));

	v->type = jbvNumeric;
	v->val.numeric = n;
	return v;
}

static JsonbValue *
make_array(int n)
{
	JsonbValue *v = palloc0(sizeof(JsonbValue));

	v->type = jbvArray;
	v->val.array.nElems = 0;
	v->val.array.elems = palloc(sizeof(JsonbValue) * Max(n, 1));
	v->val.array.rawScalar = false;
	return v;
}

/* a copy of obj with key set to value (obj itself is left alone) */
JsonbValue *
ddb_object_set(JsonbValue *obj, const char *key, JsonbValue *value)
{
	JsonbValue *copy = ddb_make_object();
	int			n = obj ? obj->val.object.nPairs : 0;
	int			len = strlen(key);
	bool		replaced = false;

	copy->val.object.pairs = palloc(sizeof(JsonbPair) * (n + 1));
	for (int i = 0; i < n; i++)
	{
		JsonbPair  *pair = &copy->val.object.pairs[copy->val.object.nPairs++];

		*pair = obj->val.object.pairs[i];
		if (pair->key.val.string.len == len &&
			memcmp(pair->key.val.string.val, key, len) == 0)
		{
			pair->value = *value;
			replaced = true;
		}
	}
	if (!replaced)
	{
		JsonbPair  *pair = &copy->val.object.pairs[copy->val.object.nPairs++];

		pair->key.type = jbvString;
		pair->key.val.string.val = pstrdup(key);
		pair->key.val.string.len = len;
		pair->value = *value;
		pair->order = n;
	}
	return copy;
}

/* a copy of obj without key */
static JsonbValue *
object_remove(JsonbValue *obj, const char *key)
{
	JsonbValue *copy = ddb_make_object();
	int			len = strlen(key);

	copy->val.object.pairs = palloc(sizeof(JsonbPair) * Max(obj->val.object.nPairs, 1));
	for (int i = 0; i < obj->val.object.nPairs; i++)
	{
		JsonbPair  *pair = &obj->val.object.pairs[i];

		if (pair->key.val.string.len == len && memcmp(pair->key.val.string.val, key, len) == 0)
			continue;
		copy->val.object.pairs[copy->val.object.nPairs++] = *pair;
	}
	return copy;
}

/* a copy of arr with element index replaced, or value appended when past the end */
static JsonbValue *
array_with_element(JsonbValue *arr, int index, JsonbValue *value)
{
	int			n = arr->val.array.nElems;
	JsonbValue *copy = make_array(n + 1);

	memcpy(copy->val.array.elems, arr->val.array.elems, sizeof(JsonbValue) * n);
	copy->val.array.nElems = n;
	if (index < n)
		copy->val.array.elems[index] = *value;
	else
		copy->val.array.elems[copy->val.array.nElems++] = *value;
	return copy;
}

static JsonbValue *
array_without_element(JsonbValue *arr, int index)
{
	int			n = arr->val.array.nElems;
	JsonbValue *copy = make_array(n);

	for (int i = 0; i < n; i++)
		if (i != index)
			copy->val.array.elems[copy->val.array.nElems++] = arr->val.array.elems[i];
	return copy;
}

/* DynamoDB's size of a number: about one byte per two significant digits, plus one */
static int64
number_size(Numeric n)
{
	char	   *s = DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(n)));
	int			digits = 0;
	bool		leading = true;

	for (char *c = s; *c; c++)
	{
		if (*c < '0' || *c > '9')
			continue;
		if (leading && *c == '0')
			continue;
		leading = false;
		digits++;
	}
	return (digits + 1) / 2 + 1;
}

static int64
value_size(JsonbValue *v)
{
	int64		size = 0;

	check_stack_depth();
	switch (v->type)
	{
		case jbvString:
			return v->val.string.len;
		case jbvNumeric:
			return number_size(v->val.numeric);
		case jbvBool:
		case jbvNull:
			return 1;
		case jbvArray:
			size = 3;
			for (int i = 0; i < v->val.array.nElems; i++)
				size += 1 + value_size(&v->val.array.elems[i]);
			return size;
		case jbvObject:
			size = 3;
			for (int i = 0; i < v->val.object.nPairs; i++)
				size += 1 + v->val.object.pairs[i].key.val.string.len +
					value_size(&v->val.object.pairs[i].value);
			return size;
		default:
			return 0;
	}
}

/* the size DynamoDB counts against its 400 KB item limit: names and values */
int64
ddb_item_size(JsonbValue *item)
{
	int64		size = 0;

	if (item->type != jbvObject)
		return value_size(item);
	for (int i = 0; i < item->val.object.nPairs; i++)
		size += item->val.object.pairs[i].key.val.string.len +
			value_size(&item->val.object.pairs[i].value);
	return size;
}

static int
value_depth(JsonbValue *v)
{
	int			deepest = 0;

	check_stack_depth();
	if (v->type == jbvArray)
		for (int i = 0; i < v->val.array.nElems; i++)
			deepest = Max(deepest, value_depth(&v->val.array.elems[i]));
	else if (v->type == jbvObject)
		for (int i = 0; i < v->val.object.nPairs; i++)
			deepest = Max(deepest, value_depth(&v->val.object.pairs[i].value));
	else
		return 0;
	return deepest + 1;
}

/* maps and lists nest at most 32 levels below an item's attributes */
void
ddb_check_value_depth(const char *module, const char *field, JsonbValue *v)
{
	if (value_depth(v) > DDB_MAX_DEPTH + 1)
		ddb_validation_error(module, field, "maps and lists nest deeper than %d levels",
							 DDB_MAX_DEPTH);
}


/* ----------------------------------------------------------------
 * Paths and conditions
 * ----------------------------------------------------------------
 */

static bool array_contains(JsonbValue *arr, JsonbValue *v);

JsonbValue *
ddb_path_get(JsonbValue *item, DdbPath *path)
{
	JsonbValue *cur = item;

	for (int i = 0; i < path->nelems && cur != NULL; i++)
	{
		DdbPathElem *e = &path->elems[i];

		if (e->name != NULL)
			cur = ddb_object_get(cur, e->name);
		else if (cur->type == jbvArray && e->index < cur->val.array.nElems)
			cur = &cur->val.array.elems[e->index];
		else
			cur = NULL;
	}
	return cur;
}

static JsonbValue *
eval_operand(DdbNode *n, JsonbValue *item)
{
	JsonbValue *v;
	int64		size;

	switch (n->kind)
	{
		case DDB_N_PATH:
			return ddb_path_get(item, n->path);
		case DDB_N_VALUE:
			return n->value;
		case DDB_N_SIZE:
			v = ddb_path_get(item, n->path);
			if (v == NULL)
				return NULL;
			if (v->type == jbvString)
				size = pg_mbstrlen_with_len(v->val.string.val, v->val.string.len);
			else if (v->type == jbvArray)
				size = v->val.array.nElems;
			else if (v->type == jbvObject)
				size = v->val.object.nPairs;
			else
				return NULL;
			return make_numeric(int64_to_numeric(size));
		default:
			elog(ERROR, "allma: unexpected DynamoDB operand %d", (int) n->kind);
	}
	return NULL;				/* keep compiler quiet */
}

/* a op b for two present values */
static bool
compare_values(DdbCompareOp op, JsonbValue *a, JsonbValue *b)
{
	int			c;

	if (op == DDB_EQ)
		return ddb_value_equal(a, b);
	if (op == DDB_NE)
		return !ddb_value_equal(a, b);
	if (!((a->type == jbvString && b->type == jbvString) ||
		  (a->type == jbvNumeric && b->type == jbvNumeric)))
		return false;
	c = ddb_value_compare(a, b);
	switch (op)
	{
		case DDB_LT:
			return c < 0;
		case DDB_LE:
			return c <= 0;
		case DDB_GT:
			return c > 0;
		case DDB_GE:
			return c >= 0;
		default:
			return false;
	}
}

static bool
string_contains(JsonbValue *hay, JsonbValue *needle)
{
	int			n = needle->val.string.len;
	int			h = hay->val.string.len;

	if (n == 0)
		return true;
	for (int i = 0; i + n <= h; i++)
		if (memcmp(hay->val.string.val + i, needle->val.string.val, n) == 0)
			return true;
	return false;
}

bool
ddb_eval_condition(DdbNode *n, JsonbValue *item)
{
	JsonbValue *a;
	JsonbValue *b;

	check_stack_depth();
	switch (n->kind)
	{
		case DDB_N_AND:
			return ddb_eval_condition(n->args[0], item) && ddb_eval_condition(n->args[1], item);
		case DDB_N_OR:
			return ddb_eval_condition(n->args[0], item) || ddb_eval_condition(n->args[1], item);
		case DDB_N_NOT:
			return !ddb_eval_condition(n->args[0], item);
		case DDB_N_COMPARE:
			a = eval_operand(n->args[0], item);
			b = eval_operand(n->args[1], item);
			if (a == NULL || b == NULL)
				return n->op == DDB_NE;
			return compare_values(n->op, a, b);
		case DDB_N_BETWEEN:
			{
				JsonbValue *lo = eval_operand(n->args[1], item);
				JsonbValue *hi = eval_operand(n->args[2], item);

				a = eval_operand(n->args[0], item);
				if (a == NULL || lo == NULL || hi == NULL)
					return false;
				return compare_values(DDB_GE, a, lo) && compare_values(DDB_LE, a, hi);
			}
		case DDB_N_IN:
			a = eval_operand(n->args[0], item);
			if (a == NULL)
				return false;
			for (int i = 1; i < n->nargs; i++)
			{
				b = eval_operand(n->args[i], item);
				if (b != NULL && ddb_value_equal(a, b))
					return true;
			}
			return false;
		case DDB_N_ATTRIBUTE_EXISTS:
			return ddb_path_get(item, n->args[0]->path) != NULL;
		case DDB_N_ATTRIBUTE_NOT_EXISTS:
			return ddb_path_get(item, n->args[0]->path) == NULL;
		case DDB_N_ATTRIBUTE_TYPE:
			{
				JsonbValue *t = n->args[1]->value;
				const char *type;

				a = ddb_path_get(item, n->args[0]->path);
				if (a == NULL)
					return false;
				type = ddb_value_type(a);
				return t->val.string.len == (int) strlen(type) &&
					memcmp(t->val.string.val, type, t->val.string.len) == 0;
			}
		case DDB_N_BEGINS_WITH:
			a = eval_operand(n->args[0], item);
			b = eval_operand(n->args[1], item);
			if (a == NULL || b == NULL || a->type != jbvString || b->type != jbvString)
				return false;
			return a->val.string.len >= b->val.string.len &&
				memcmp(a->val.string.val, b->val.string.val, b->val.string.len) == 0;
		case DDB_N_CONTAINS:
			a = eval_operand(n->args[0], item);
			b = eval_operand(n->args[1], item);
			if (a == NULL || b == NULL)
				return false;
			if (a->type == jbvString)
				return b->type == jbvString && string_contains(a, b);
			return a->type == jbvArray && array_contains(a, b);
		default:
			elog(ERROR, "allma: unexpected DynamoDB condition node %d", (int) n->kind);
	}
	return false;				/* keep compiler quiet */
}


/* ----------------------------------------------------------------
 * Updates
 * ----------------------------------------------------------------
 */

static void update_error(const char *module, int pos, const char *fmt,...)
			pg_attribute_printf(3, 4) pg_attribute_noreturn();

/* an update that cannot apply to this item: a ValidationException at pos */
static void
update_error(const char *module, int pos, const char *fmt,...)
{
	va_list		args;
	char	   *what;

	va_start(args, fmt);
	what = ddb_vformat(fmt, args);
	va_end(args);
	ddb_validation_error(module, psprintf("updateExpression at position %d", pos), "%s", what);
}

static JsonbValue *
eval_update_value(const char *module, DdbNode *n, JsonbValue *item)
{
	JsonbValue *a;
	JsonbValue *b;

	check_stack_depth();
	switch (n->kind)
	{
		case DDB_N_VALUE:
			return n->value;
		case DDB_N_PATH:
			a = ddb_path_get(item, n->path);
			if (a == NULL)
				update_error(module, n->pos, "the attribute %s does not exist in the item",
							 ddb_path_to_string(n->path));
			return a;
		case DDB_N_IF_NOT_EXISTS:
			a = ddb_path_get(item, n->args[0]->path);
			return a != NULL ? a : eval_update_value(module, n->args[1], item);
		case DDB_N_LIST_APPEND:
			{
				JsonbValue *res;

				a = eval_update_value(module, n->args[0], item);
				b = eval_update_value(module, n->args[1], item);
				if (a->type != jbvArray || b->type != jbvArray)
					update_error(module, n->pos, "list_append needs two lists, not %s and %s",
								 ddb_value_type(a), ddb_value_type(b));
				res = make_array(a->val.array.nElems + b->val.array.nElems);
				memcpy(res->val.array.elems, a->val.array.elems,
					   sizeof(JsonbValue) * a->val.array.nElems);
				memcpy(res->val.array.elems + a->val.array.nElems, b->val.array.elems,
					   sizeof(JsonbValue) * b->val.array.nElems);
				res->val.array.nElems = a->val.array.nElems + b->val.array.nElems;
				return res;
			}
		case DDB_N_PLUS:
		case DDB_N_MINUS:
			a = eval_update_value(module, n->args[0], item);
			b = eval_update_value(module, n->args[1], item);
			if (a->type != jbvNumeric || b->type != jbvNumeric)
				update_error(module, n->pos, "%s needs two numbers, not %s and %s",
							 n->kind == DDB_N_PLUS ? "+" : "-",
							 ddb_value_type(a), ddb_value_type(b));
			return make_numeric(DatumGetNumeric(DirectFunctionCall2(n->kind == DDB_N_PLUS ? numeric_add : numeric_sub,
																	NumericGetDatum(a->val.numeric),
																	NumericGetDatum(b->val.numeric))));
		default:
			elog(ERROR, "allma: unexpected DynamoDB update operand %d", (int) n->kind);
	}
	return NULL;				/* keep compiler quiet */
}

/*
 * set_path: a copy of cur (the container at level i of path) with the
 * value at the end of the path set (value != NULL) or removed (NULL).
 * Removing something that is not there changes nothing; a missing or
 * mistyped parent is an error.
 */
static JsonbValue *
set_path(const char *module, JsonbValue *cur, DdbPath *path, int i, JsonbValue *value)
{
	DdbPathElem *e = &path->elems[i];
	bool		last = i == path->nelems - 1;
	JsonbValue *child;

	check_stack_depth();
	if (e->name != NULL)
	{
		if (cur == NULL || cur->type != jbvObject)
			update_error(module, path->pos, "the document path %s is invalid for update: its parent is not a map",
						 ddb_path_to_string(path));
		child = ddb_object_get(cur, e->name);
		if (last)
		{
			if (value == NULL)
				return child ? object_remove(cur, e->name) : cur;
			return ddb_object_set(cur, e->name, value);
		}
		if (child == NULL)
			update_error(module, path->pos, "the document path %s is invalid for update: %s does not exist",
						 ddb_path_to_string(path), e->name);
		return ddb_object_set(cur, e->name, set_path(module, child, path, i + 1, value));
	}
	if (cur == NULL || cur->type != jbvArray)
		update_error(module, path->pos, "the document path %s is invalid for update: its parent is not a list",
					 ddb_path_to_string(path));
	if (last)
	{
		if (value == NULL)
			return e->index < cur->val.array.nElems ? array_without_element(cur, e->index) : cur;
		return array_with_element(cur, e->index, value);
	}
	if (e->index >= cur->val.array.nElems)
		update_error(module, path->pos, "the document path %s is invalid for update: index %d is past the end",
					 ddb_path_to_string(path), e->index);
	child = &cur->val.array.elems[e->index];
	return array_with_element(cur, e->index, set_path(module, child, path, i + 1, value));
}

static int
last_index(DdbPath *p)
{
	DdbPathElem *e = &p->elems[p->nelems - 1];

	return e->name == NULL ? e->index : -1;
}

/* SETs by ascending list index (appends in index order), REMOVEs descending */
static int
action_order(const void *a, const void *b)
{
	const DdbUpdateAction *x = a;
	const DdbUpdateAction *y = b;
	int			ix = last_index(x->path);
	int			iy = last_index(y->path);

	if (x->kind != y->kind)
		return (int) x->kind - (int) y->kind;
	if (x->kind == DDB_UPDATE_REMOVE)
		return iy - ix;
	return ix - iy;
}

/* is v an element of the array? */
static bool
array_contains(JsonbValue *arr, JsonbValue *v)
{
	for (int i = 0; i < arr->val.array.nElems; i++)
		if (ddb_value_equal(&arr->val.array.elems[i], v))
			return true;
	return false;
}

/* cur with the elements of add it lacks appended; or without those of del */
static JsonbValue *
set_union(JsonbValue *cur, JsonbValue *add)
{
	JsonbValue *res = make_array(cur->val.array.nElems + add->val.array.nElems);

	memcpy(res->val.array.elems, cur->val.array.elems, sizeof(JsonbValue) * cur->val.array.nElems);
	res->val.array.nElems = cur->val.array.nElems;
	for (int i = 0; i < add->val.array.nElems; i++)
		if (!array_contains(res, &add->val.array.elems[i]))
			res->val.array.elems[res->val.array.nElems++] = add->val.array.elems[i];
	return res;
}

static JsonbValue *
set_difference(JsonbValue *cur, JsonbValue *del)
{
	JsonbValue *res = make_array(cur->val.array.nElems);

	for (int i = 0; i < cur->val.array.nElems; i++)
		if (!array_contains(del, &cur->val.array.elems[i]))
			res->val.array.elems[res->val.array.nElems++] = cur->val.array.elems[i];
	return res;
}

/*
 * ddb_apply_update returns the item the update makes of "item" (which is
 * left intact).  *updated_paths receives the paths SET, ADD and DELETE
 * wrote, for ReturnValues UPDATED_NEW.
 */
JsonbValue *
ddb_apply_update(const char *module, DdbUpdate *u, JsonbValue *item,
				 DdbProjection **updated_paths)
{
	DdbUpdateAction *actions = palloc(sizeof(DdbUpdateAction) * Max(u->nactions, 1));
	JsonbValue **values = palloc0(sizeof(JsonbValue *) * Max(u->nactions, 1));
	JsonbValue *result = item;
	DdbProjection *updated = palloc0(sizeof(DdbProjection));

	memcpy(actions, u->actions, sizeof(DdbUpdateAction) * u->nactions);
	qsort(actions, u->nactions, sizeof(DdbUpdateAction), action_order);
	updated->paths = palloc(sizeof(DdbPath *) * Max(u->nactions, 1));

	/* every value from the item as it was */
	for (int i = 0; i < u->nactions; i++)
	{
		DdbUpdateAction *a = &actions[i];
		JsonbValue *cur = ddb_path_get(item, a->path);
		char	   *where = ddb_path_to_string(a->path);

		switch (a->kind)
		{
			case DDB_UPDATE_SET:
				values[i] = eval_update_value(module, a->value, item);
				break;
			case DDB_UPDATE_REMOVE:
				break;
			case DDB_UPDATE_ADD:
				{
					JsonbValue *v = a->value->value;

					if (v->type != jbvNumeric && v->type != jbvArray)
						update_error(module, a->value->pos, "ADD takes a number or a set (array), but %s is of type %s",
									 a->value->placeholder, ddb_value_type(v));
					if (cur == NULL)
						values[i] = v;
					else if (cur->type == jbvNumeric && v->type == jbvNumeric)
						values[i] = make_numeric(DatumGetNumeric(DirectFunctionCall2(numeric_add,
																					 NumericGetDatum(cur->val.numeric),
																					 NumericGetDatum(v->val.numeric))));
					else if (cur->type == jbvArray && v->type == jbvArray)
						values[i] = set_union(cur, v);
					else
						update_error(module, a->path->pos, "ADD cannot add %s to the attribute %s of type %s",
									 ddb_value_type(v), where, ddb_value_type(cur));
					break;
				}
			case DDB_UPDATE_DELETE:
				{
					JsonbValue *v = a->value->value;

					if (v->type != jbvArray)
						update_error(module, a->value->pos, "DELETE takes a set (array), but %s is of type %s",
									 a->value->placeholder, ddb_value_type(v));
					if (cur == NULL)
						break;
					if (cur->type != jbvArray)
						update_error(module, a->path->pos, "DELETE cannot delete from the attribute %s of type %s",
									 where, ddb_value_type(cur));
					values[i] = set_difference(cur, v);
					if (values[i]->val.array.nElems == 0)
						values[i] = NULL;	/* an empty set is removed */
					break;
				}
		}
	}

	/* then the actions */
	for (int i = 0; i < u->nactions; i++)
	{
		DdbUpdateAction *a = &actions[i];

		if (a->kind == DDB_UPDATE_DELETE && values[i] == NULL &&
			ddb_path_get(result, a->path) == NULL)
			continue;			/* nothing to delete from */
		result = set_path(module, result, a->path, 0, values[i]);
		if (a->kind != DDB_UPDATE_REMOVE && values[i] != NULL)
			updated->paths[updated->npaths++] = a->path;
	}
	if (updated_paths)
		*updated_paths = updated;
	return result;
}


/* ----------------------------------------------------------------
 * Projections
 * ----------------------------------------------------------------
 */

/* what a projection keeps below one value */
typedef struct ProjNode
{
	bool		whole;
	List	   *children;		/* ProjChild */
} ProjNode;

typedef struct ProjChild
{
	DdbPathElem elem;
	ProjNode   *node;
} ProjChild;

static ProjNode *
proj_child(ProjNode *node, DdbPathElem *e)
{
	ListCell   *lc;
	ProjChild  *c;

	foreach(lc, node->children)
	{
		c = lfirst(lc);
		if ((c->elem.name == NULL) == (e->name == NULL) &&
			(e->name ? strcmp(c->elem.name, e->name) == 0 : c->elem.index == e->index))
			return c->node;
	}
	c = palloc0(sizeof(ProjChild));
	c->elem = *e;
	c->node = palloc0(sizeof(ProjNode));
	node->children = lappend(node->children, c);
	return c->node;
}

static int
child_index_order(const ListCell *a, const ListCell *b)
{
	ProjChild  *x = lfirst(a);
	ProjChild  *y = lfirst(b);

	return x->elem.index - y->elem.index;
}

static JsonbValue *
project_value(JsonbValue *v, ProjNode *node)
{
	ListCell   *lc;

	check_stack_depth();
	if (node->whole)
		return v;
	if (v->type == jbvObject)
	{
		JsonbValue *res = NULL;

		foreach(lc, node->children)
		{
			ProjChild  *c = lfirst(lc);
			JsonbValue *child;

			if (c->elem.name == NULL || (child = ddb_object_get(v, c->elem.name)) == NULL)
				continue;
			child = project_value(child, c->node);
			if (child != NULL)
				res = ddb_object_set(res ? res : ddb_make_object(), c->elem.name, child);
		}
		return res;
	}
	if (v->type == jbvArray)
	{
		JsonbValue *res = make_array(list_length(node->children));
		List	   *sorted = list_copy(node->children);

		list_sort(sorted, child_index_order);
		foreach(lc, sorted)
		{
			ProjChild  *c = lfirst(lc);
			JsonbValue *child;

			if (c->elem.name != NULL || c->elem.index >= v->val.array.nElems)
				continue;
			child = project_value(&v->val.array.elems[c->elem.index], c->node);
			if (child != NULL)
				res->val.array.elems[res->val.array.nElems++] = *child;
		}
		return res->val.array.nElems > 0 ? res : NULL;
	}
	return NULL;
}

/* the item with only the projection's paths (an empty map when none exists) */
JsonbValue *
ddb_project(JsonbValue *item, DdbProjection *projection)
{
	ProjNode   *root = palloc0(sizeof(ProjNode));
	JsonbValue *res;

	for (int i = 0; i < projection->npaths; i++)
	{
		DdbPath    *p = projection->paths[i];
		ProjNode   *node = root;

		for (int j = 0; j < p->nelems; j++)
			node = proj_child(node, &p->elems[j]);
		node->whole = true;
	}
	res = project_value(item, root);
	return res ? res : ddb_make_object();
}
