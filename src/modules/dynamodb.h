/*-------------------------------------------------------------------------
 *
 * dynamodb.h
 *	  Internal declarations shared by the DynamoDB modules: the syntax
 *	  trees of DynamoDB's expression languages (dynamodb_expr.c), their
 *	  evaluation over items (dynamodb_eval.c), the item store
 *	  (dynamodb_store.c) and the modules themselves (dynamodb.c).
 *
 * Items are kept in memory as trees of JsonbValue: jbvObject with its
 * pairs sorted as jsonb sorts them, jbvArray with its elements, and the
 * scalars.  DynamoDB's types map onto JSON as the DocumentClient maps
 * them: S string, N number, BOOL boolean, NULL null, M object, L array.
 * JSON has no sets and no binary; see dynamodb_eval.c for ADD and DELETE.
 *
 * Copyright (c) 2026, the allma authors
 *
 * IDENTIFICATION
 *	  src/modules/dynamodb.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ALLMA_DYNAMODB_H
#define ALLMA_DYNAMODB_H

#include "allma.h"

#include "nodes/pg_list.h"
#include "utils/jsonb.h"

/* Limits, as DynamoDB has them (its service quotas) unless noted. */
#define DDB_MAX_EXPRESSION_BYTES	4096	/* one expression string */
#define DDB_MAX_PLACEHOLDER_BYTES	255 /* one "#name" or ":value" */
#define DDB_MAX_SUBSTITUTION_BYTES	(2 * 1024 * 1024)	/* all names and values */
#define DDB_MAX_UPDATE_OPERATORS	300 /* operators and functions of an update */
#define DDB_MAX_IN_OPERANDS			100 /* right side of IN */
#define DDB_MAX_DEPTH				32	/* nesting of paths, parentheses, values */
#define DDB_MAX_NODES				2000	/* allma's: syntax nodes of one expression */
#define DDB_MAX_ITEM_BYTES			(400 * 1024)	/* one item, DynamoDB's size rule */
#define DDB_MAX_PARTITION_KEY_BYTES	2048	/* a string partition key */
#define DDB_MAX_SORT_KEY_BYTES		1024	/* a string sort key */
#define DDB_MAX_PAGE_BYTES			(1024 * 1024)	/* read by one QUERY or SCAN */
#define DDB_MAX_BATCH_QUERIES		25	/* allma's: queries of one QUERY_BATCH */
#define DDB_MAX_BATCH_WRITES		1000	/* allma's: requests of one batch write */

/* ----------------------------------------------------------------
 * Syntax trees (dynamodb_expr.c)
 * ----------------------------------------------------------------
 */

/* one step of a document path: a.b[2] is "a", "b", [2] */
typedef struct DdbPathElem
{
	char	   *name;			/* attribute or map key, NULL for an index */
	int			index;			/* list index when name is NULL */
} DdbPathElem;

typedef struct DdbPath
{
	int			nelems;
	DdbPathElem *elems;
	int			pos;			/* 1-based character position in the text */
} DdbPath;

typedef enum DdbNodeKind
{
	/* operands */
	DDB_N_PATH,					/* a document path */
	DDB_N_VALUE,				/* an expression attribute value */
	DDB_N_SIZE,					/* size(path) */
	/* update operands */
	DDB_N_PLUS,					/* a + b */
	DDB_N_MINUS,				/* a - b */
	DDB_N_IF_NOT_EXISTS,		/* if_not_exists(path, operand) */
	DDB_N_LIST_APPEND,			/* list_append(operand, operand) */
	/* conditions */
	DDB_N_COMPARE,				/* a op b */
	DDB_N_BETWEEN,				/* a BETWEEN b AND c */
	DDB_N_IN,					/* a IN (b, c, ...) */
	DDB_N_AND,
	DDB_N_OR,
	DDB_N_NOT,
	DDB_N_ATTRIBUTE_EXISTS,
	DDB_N_ATTRIBUTE_NOT_EXISTS,
	DDB_N_ATTRIBUTE_TYPE,
	DDB_N_BEGINS_WITH,
	DDB_N_CONTAINS
} DdbNodeKind;

typedef enum DdbCompareOp
{
	DDB_EQ,
	DDB_NE,
	DDB_LT,
	DDB_LE,
	DDB_GT,
	DDB_GE
} DdbCompareOp;

typedef struct DdbNode
{
	DdbNodeKind kind;
	int			pos;			/* 1-based character position */
	DdbCompareOp op;			/* DDB_N_COMPARE */
	DdbPath    *path;			/* DDB_N_PATH, DDB_N_SIZE */
	JsonbValue *value;			/* DDB_N_VALUE: the substituted value */
	char	   *placeholder;	/* DDB_N_VALUE: ":name" */
	int			nargs;
	struct DdbNode **args;
} DdbNode;

typedef enum DdbUpdateKind
{
	DDB_UPDATE_SET,
	DDB_UPDATE_REMOVE,
	DDB_UPDATE_ADD,
	DDB_UPDATE_DELETE
} DdbUpdateKind;

typedef struct DdbUpdateAction
{
	DdbUpdateKind kind;
	DdbPath    *path;
	DdbNode    *value;			/* NULL for REMOVE */
} DdbUpdateAction;

typedef struct DdbUpdate
{
	int			nactions;
	DdbUpdateAction *actions;
} DdbUpdate;

typedef struct DdbProjection
{
	int			npaths;
	DdbPath   **paths;
} DdbProjection;

/* the sort-key part of a key condition */
typedef enum DdbKeyOp
{
	DDB_KEY_NONE,
	DDB_KEY_EQ,
	DDB_KEY_LT,
	DDB_KEY_LE,
	DDB_KEY_GT,
	DDB_KEY_GE,
	DDB_KEY_BETWEEN,
	DDB_KEY_BEGINS_WITH
} DdbKeyOp;

typedef struct DdbKeyCondition
{
	char	   *pk_name;
	JsonbValue *pk_value;
	char	   *sk_name;		/* NULL when the sort key is not constrained */
	DdbKeyOp	sk_op;
	JsonbValue *sk_value;
	JsonbValue *sk_value2;		/* BETWEEN's upper bound */
} DdbKeyCondition;

/*
 * Everything one request's expressions share: the substitution maps, and
 * which of their entries the expressions used (DynamoDB rejects unused
 * ones).  "module" prefixes messages.
 */
typedef struct DdbExprContext
{
	const char *module;
	Jsonb	   *names;			/* expressionAttributeNames, or NULL */
	Jsonb	   *values;			/* expressionAttributeValues, or NULL */
	List	   *used_names;		/* char * */
	List	   *used_values;	/* char * */
} DdbExprContext;

extern void ddb_expr_context_init(DdbExprContext *cx, const char *module,
								  Jsonb *names, Jsonb *values);
extern void ddb_expr_check_unused(DdbExprContext *cx);

extern DdbNode *ddb_parse_condition(DdbExprContext *cx, const char *field,
									const char *text);
extern DdbUpdate *ddb_parse_update(DdbExprContext *cx, const char *field,
								   const char *text);
extern DdbProjection *ddb_parse_projection(DdbExprContext *cx, const char *field,
										   const char *text);
extern DdbKeyCondition *ddb_parse_key_condition(DdbExprContext *cx, const char *field,
												const char *text);

extern char *ddb_path_to_string(DdbPath *path);

/* ----------------------------------------------------------------
 * Errors
 * ----------------------------------------------------------------
 */

extern char *ddb_vformat(const char *fmt, va_list args) pg_attribute_printf(1, 0);

/* ValidationException naming a field of the request */
extern void ddb_validation_error(const char *module, const char *field,
								 const char *fmt,...) pg_attribute_printf(3, 4) pg_attribute_noreturn();

/* ----------------------------------------------------------------
 * Values and evaluation (dynamodb_eval.c)
 * ----------------------------------------------------------------
 */

extern JsonbValue *ddb_value_from_jsonb(Jsonb *jb);
extern Jsonb *ddb_value_to_jsonb(JsonbValue *v);
extern const char *ddb_value_type(JsonbValue *v);
extern bool ddb_value_equal(JsonbValue *a, JsonbValue *b);
extern int	ddb_value_compare(JsonbValue *a, JsonbValue *b);
extern JsonbValue *ddb_object_get(JsonbValue *obj, const char *key);
extern JsonbValue *ddb_object_set(JsonbValue *obj, const char *key, JsonbValue *value);
extern JsonbValue *ddb_make_object(void);
extern JsonbValue *ddb_make_string(const char *s);
extern int64 ddb_item_size(JsonbValue *item);
extern void ddb_check_value_depth(const char *module, const char *field, JsonbValue *v);

extern JsonbValue *ddb_path_get(JsonbValue *item, DdbPath *path);
extern bool ddb_eval_condition(DdbNode *cond, JsonbValue *item);
extern JsonbValue *ddb_apply_update(const char *module, DdbUpdate *update,
									JsonbValue *item, DdbProjection **updated_paths);
extern JsonbValue *ddb_project(JsonbValue *item, DdbProjection *projection);

/* ----------------------------------------------------------------
 * The item store (dynamodb_store.c)
 * ----------------------------------------------------------------
 */

typedef struct DdbKeyAttr
{
	char	   *name;			/* attribute name; NULL when there is none */
	char		type;			/* 'S' or 'N' */
	char	   *sql;			/* SQL expression of the key in queries */
	char	   *order_sql;		/* the same, for ORDER BY and ranges */
	Oid			coltype;		/* bound tables: the column's type */
	int			max_bytes;		/* longest string value (DynamoDB's key limits) */
} DdbKeyAttr;

typedef struct DdbIndex
{
	char	   *name;
	DdbKeyAttr	pk;
	DdbKeyAttr	sk;
	char	   *predicate;		/* SQL: rows that belong to the index */
} DdbIndex;

/* a column of a bound table */
typedef struct DdbColumn
{
	char	   *name;
	Oid			type;
	bool		generated;
} DdbColumn;

typedef struct DdbTable
{
	char	   *name;			/* the DynamoDB table name */
	Oid			relid;
	char	   *relation;		/* quoted, qualified */
	bool		managed;		/* allma's layout (item jsonb) or a bound table */
	DdbKeyAttr	pk;
	DdbKeyAttr	sk;
	int			nindexes;
	DdbIndex   *indexes;
	List	   *columns;		/* bound tables: DdbColumn */
} DdbTable;

/* one page read by a query or a scan */
typedef struct DdbPage
{
	List	   *items;			/* JsonbValue * trees */
	int64		scanned;		/* rows read */
	bool		truncated;		/* stopped by the page's byte limit */
	JsonbValue *last_key;		/* key of the last row read, when truncated */
} DdbPage;

typedef struct DdbReadSpec
{
	DdbIndex   *index;			/* NULL: the table itself */
	DdbKeyCondition *key;		/* NULL: a scan */
	bool		forward;
	int64		limit;			/* 0: none */
	JsonbValue *start_key;		/* exclusive start key, or NULL */
	bool		lock;			/* FOR UPDATE SKIP LOCKED */
} DdbReadSpec;

extern DdbTable *ddb_table_open(const char *module, const char *name);
extern DdbIndex *ddb_table_index(DdbTable *t, const char *module, const char *index_name);
extern JsonbValue *ddb_key_from_config(DdbTable *t, const char *module, const char *field,
									   JsonbValue *key);
extern JsonbValue *ddb_key_of_item(DdbTable *t, JsonbValue *item);
extern void ddb_check_item(DdbTable *t, const char *module, const char *field,
						   JsonbValue *item);
extern void ddb_check_key_condition(DdbTable *t, DdbIndex *index, const char *module,
									const char *field, DdbKeyCondition *kc);

extern void ddb_check_start_key(DdbTable *t, DdbReadSpec *spec, const char *module,
								const char *field);
extern JsonbValue *ddb_store_get(DdbTable *t, JsonbValue *key, bool for_update);
extern DdbPage *ddb_store_read(DdbTable *t, DdbReadSpec *spec);
extern bool ddb_store_insert(DdbTable *t, JsonbValue *item);
extern void ddb_store_replace(DdbTable *t, JsonbValue *old_item, JsonbValue *new_item);
extern void ddb_store_put(DdbTable *t, JsonbValue *item);
extern void ddb_store_delete(DdbTable *t, JsonbValue *key);
extern List *ddb_store_explain(DdbTable *t, DdbReadSpec *spec);

/* ----------------------------------------------------------------
 * The modules (dynamodb.c)
 * ----------------------------------------------------------------
 */

#define DDB_MODULE_DATA_LOADER		"system/dynamodb-data-loader"
#define DDB_MODULE_UPDATE_ITEM		"system/dynamodb-update-item"
#define DDB_MODULE_QUERY_AND_UPDATE	"system/dynamodb-query-and-update"
#define DDB_MODULE_BATCH_WRITER		"system/dynamodb-batch-writer"

extern Jsonb *ddb_module_run(const char *module, Jsonb *input, Jsonb *unrendered,
							 Jsonb **context_writes);

#endif							/* ALLMA_DYNAMODB_H */
