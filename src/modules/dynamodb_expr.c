/*-------------------------------------------------------------------------
 *
 * dynamodb_expr.c
 *	  Lexer and parser of DynamoDB's expression languages.
 *
 * DynamoDB requests carry small expressions that this file turns into the
 * syntax trees of dynamodb.h:
 *
 *	condition	(ConditionExpression, FilterExpression)
 *		cond := cond OR cond | cond AND cond | NOT cond | ( cond )
 *			  | operand comparator operand		(= <> < <= > >=)
 *			  | operand BETWEEN operand AND operand
 *			  | operand IN ( operand, ... )		(at most 100)
 *			  | attribute_exists(path) | attribute_not_exists(path)
 *			  | attribute_type(path, :type) | begins_with(path, operand)
 *			  | contains(path, operand)
 *		operand := path | :value | size(path)
 *	key condition (KeyConditionExpression): a condition of the shape
 *		pk = :v [AND sk op :v | sk BETWEEN :a AND :b | begins_with(sk, :p)]
 *	update (UpdateExpression)
 *		SET path = value [, ...]	value := operand [(+|-) operand ...]
 *			operand := path | :value | if_not_exists(path, operand)
 *					 | list_append(operand, operand)
 *		REMOVE path [, ...]   ADD path :value [, ...]   DELETE path :value [, ...]
 *		each clause at most once, in any order
 *	projection (ProjectionExpression): path [, path ...]
 *	path := name ( .name | [index] )*, where a name is an identifier or a
 *		#placeholder of ExpressionAttributeNames
 *
 * Keywords (AND OR NOT BETWEEN IN SET REMOVE ADD DELETE) are case
 * insensitive and never attribute names; function names are case
 * sensitive, as in DynamoDB.  Placeholders are substituted while parsing:
 * "#n" by its name, ":v" by its value (a JsonbValue tree); an undefined
 * one is a ValidationException at its position.  The DdbExprContext
 * records which placeholders the request's expressions used, so that
 * ddb_expr_check_unused can reject the unused ones as DynamoDB does.
 *
 * Errors are ValidationExceptions whose message names the module, the
 * request field and the 1-based character position, with the expression
 * and a caret in the DETAIL.  Every input is bounded (dynamodb.h): the
 * length of an expression and of a placeholder, the nesting depth, the
 * number of syntax nodes, IN operands and update operators.
 *
 * Copyright (c) 2026, the allma authors
 *
 * IDENTIFICATION
 *	  src/modules/dynamodb_expr.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/jsonb.h"

#include "jsonb_util.h"
#include "modules/dynamodb.h"

typedef enum TokKind
{
	TOK_EOF,
	TOK_NAME,					/* identifier or keyword */
	TOK_ATTR_NAME,				/* #placeholder */
	TOK_ATTR_VALUE,				/* :placeholder */
	TOK_NUMBER,					/* digits (list indexes only) */
	TOK_LPAREN,
	TOK_RPAREN,
	TOK_LBRACKET,
	TOK_RBRACKET,
	TOK_COMMA,
	TOK_DOT,
	TOK_EQ,
	TOK_NE,
	TOK_LT,
	TOK_LE,
	TOK_GT,
	TOK_GE,
	TOK_PLUS,
	TOK_MINUS
} TokKind;

typedef struct Token
{
	TokKind		kind;
	int			off;			/* byte offset in the text */
	int			len;
} Token;

typedef struct Parser
{
	DdbExprContext *cx;
	const char *field;			/* e.g. "updateExpression" */
	const char *text;
	int			len;
	int			scan;			/* where the next token starts */
	Token		tok;			/* the current token */
	int			depth;
	int			nodes;
	int			operators;		/* update expressions: operators and functions */
} Parser;

static void next_token(Parser *p);


/* ----------------------------------------------------------------
 * Errors
 * ----------------------------------------------------------------
 */

/* 1-based character position of a byte offset */
static int
char_position(Parser *p, int off)
{
	return pg_mbstrlen_with_len(p->text, off) + 1;
}

/*
 * expression_with_caret: the expression (a window of it around the
 * position when it is long) and a caret line under the position.
 */
static char *
expression_with_caret(Parser *p, int off)
{
	StringInfoData buf;
	int			start = 0;
	int			end = p->len;
	int			caret;

	if (off > 60)
		start = off - 60;
	if (end - off > 60)
		end = off + 60;
	/* whole characters only */
	while (start > 0 && start < p->len && (p->text[start] & 0xC0) == 0x80)
		start--;
	while (end < p->len && (p->text[end] & 0xC0) == 0x80)
		end++;
	initStringInfo(&buf);
	if (start > 0)
		appendStringInfoString(&buf, "...");
	caret = buf.len + pg_mbstrlen_with_len(p->text + start, off - start);
	appendBinaryStringInfo(&buf, p->text + start, end - start);
	if (end < p->len)
		appendStringInfoString(&buf, "...");
	appendStringInfoChar(&buf, '\n');
	for (int i = 0; i < caret; i++)
		appendStringInfoChar(&buf, ' ');
	appendStringInfoChar(&buf, '^');
	return buf.data;
}

/* a formatted message (printf of fmt with args) */
char *
ddb_vformat(const char *fmt, va_list args)
{
	StringInfoData buf;

	initStringInfo(&buf);
	for (;;)
	{
		va_list		copy;
		int			needed;

		va_copy(copy, args);
		needed = appendStringInfoVA(&buf, fmt, copy);
		va_end(copy);
		if (needed == 0)
			return buf.data;
		enlargeStringInfo(&buf, needed);
	}
}

static void error_at_va(Parser *p, int off, const char *hint, const char *fmt, va_list args)
			pg_attribute_printf(4, 0) pg_attribute_noreturn();
static void error_at(Parser *p, int off, const char *hint, const char *fmt,...)
			pg_attribute_printf(4, 5) pg_attribute_noreturn();

static void
error_at_va(Parser *p, int off, const char *hint, const char *fmt, va_list args)
{
	char	   *what = ddb_vformat(fmt, args);

	ereport(ERROR,
			(errcode(ERRCODE_ALLMA_VALIDATION_EXCEPTION),
			 errmsg("%s: invalid %s at position %d: %s",
					p->cx->module, p->field, char_position(p, off), what),
			 errdetail("%s", expression_with_caret(p, off)),
			 hint ? errhint("%s", hint) : 0));
}

/* a ValidationException at byte offset "off" of the expression */
static void
error_at(Parser *p, int off, const char *hint, const char *fmt,...)
{
	va_list		args;

	va_start(args, fmt);
	error_at_va(p, off, hint, fmt, args);
	va_end(args);
}

void
ddb_validation_error(const char *module, const char *field, const char *fmt,...)
{
	va_list		args;
	char	   *what;

	va_start(args, fmt);
	what = ddb_vformat(fmt, args);
	va_end(args);
	ereport(ERROR,
			(errcode(ERRCODE_ALLMA_VALIDATION_EXCEPTION),
			 field ? errmsg("%s: invalid %s: %s", module, field, what) :
			 errmsg("%s: %s", module, what)));
}

/* how a token reads in a message */
static char *
token_text(Parser *p, Token *t)
{
	if (t->kind == TOK_EOF)
		return pstrdup("end of expression");
	return psprintf("\"%.*s\"", Min(t->len, 64), p->text + t->off);
}

static void unexpected(Parser *p, const char *expected) pg_attribute_noreturn();

static void
unexpected(Parser *p, const char *expected)
{
	error_at(p, p->tok.off, NULL, "syntax error: unexpected %s, expected %s",
			 token_text(p, &p->tok), expected);
}


/* ----------------------------------------------------------------
 * Lexer
 * ----------------------------------------------------------------
 */

static bool
is_ident_start(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static bool
is_ident_char(char c)
{
	return is_ident_start(c) || (c >= '0' && c <= '9');
}

static void
next_token(Parser *p)
{
	const char *s = p->text;
	int			i = p->scan;
	Token	   *t = &p->tok;

	while (i < p->len && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r'))
		i++;
	t->off = i;
	t->len = 1;
	if (i >= p->len)
	{
		t->kind = TOK_EOF;
		t->len = 0;
		p->scan = i;
		return;
	}
	switch (s[i])
	{
		case '(':
			t->kind = TOK_LPAREN;
			break;
		case ')':
			t->kind = TOK_RPAREN;
			break;
		case '[':
			t->kind = TOK_LBRACKET;
			break;
		case ']':
			t->kind = TOK_RBRACKET;
			break;
		case ',':
			t->kind = TOK_COMMA;
			break;
		case '.':
			t->kind = TOK_DOT;
			break;
		case '=':
			t->kind = TOK_EQ;
			break;
		case '+':
			t->kind = TOK_PLUS;
			break;
		case '-':
			t->kind = TOK_MINUS;
			break;
		case '<':
			t->kind = TOK_LT;
			if (i + 1 < p->len && s[i + 1] == '=')
				t->kind = TOK_LE, t->len = 2;
			else if (i + 1 < p->len && s[i + 1] == '>')
				t->kind = TOK_NE, t->len = 2;
			break;
		case '>':
			t->kind = TOK_GT;
			if (i + 1 < p->len && s[i + 1] == '=')
				t->kind = TOK_GE, t->len = 2;
			break;
		case '#':
		case ':':
			{
				int			j = i + 1;

				while (j < p->len && is_ident_char(s[j]))
					j++;
				if (j == i + 1)
					error_at(p, i, NULL, "syntax error: \"%c\" must be followed by a placeholder name",
							 s[i]);
				t->kind = s[i] == '#' ? TOK_ATTR_NAME : TOK_ATTR_VALUE;
				t->len = j - i;
				if (t->len > DDB_MAX_PLACEHOLDER_BYTES)
					error_at(p, i, NULL, "placeholder is longer than %d bytes",
							 DDB_MAX_PLACEHOLDER_BYTES);
				break;
			}
		default:
			if (s[i] >= '0' && s[i] <= '9')
			{
				int			j = i;

				while (j < p->len && s[j] >= '0' && s[j] <= '9')
					j++;
				t->kind = TOK_NUMBER;
				t->len = j - i;
			}
			else if (is_ident_start(s[i]))
			{
				int			j = i;

				while (j < p->len && is_ident_char(s[j]))
					j++;
				t->kind = TOK_NAME;
				t->len = j - i;
			}
			else
			{
				t->len = pg_mblen(s + i);
				error_at(p, i, "Write attribute names that are not plain identifiers as #placeholders of expressionAttributeNames.",
						 "syntax error: invalid character \"%.*s\"", t->len, s + i);
			}
			break;
	}
	p->scan = i + t->len;
}

/* the token after the current one, without consuming anything */
static Token
peek_token(Parser *p)
{
	Token		save = p->tok;
	int			save_scan = p->scan;
	Token		next;

	next_token(p);
	next = p->tok;
	p->tok = save;
	p->scan = save_scan;
	return next;
}

static bool
token_is(Parser *p, Token *t, const char *word)
{
	return t->kind == TOK_NAME && t->len == (int) strlen(word) &&
		pg_strncasecmp(p->text + t->off, word, t->len) == 0;
}

static bool
is_keyword(Parser *p, const char *word)
{
	return token_is(p, &p->tok, word);
}

static const char *const keywords[] = {
	"AND", "OR", "NOT", "BETWEEN", "IN", "SET", "REMOVE", "ADD", "DELETE", NULL
};

static bool
is_any_keyword(Parser *p, Token *t)
{
	for (int i = 0; keywords[i] != NULL; i++)
		if (token_is(p, t, keywords[i]))
			return true;
	return false;
}

/* the current token's text (a function or attribute name) */
static char *
token_string(Parser *p)
{
	return pnstrdup(p->text + p->tok.off, p->tok.len);
}

static void
expect(Parser *p, TokKind kind, const char *what)
{
	if (p->tok.kind != kind)
		unexpected(p, what);
	next_token(p);
}

static void
enter(Parser *p)
{
	check_stack_depth();
	if (++p->depth > DDB_MAX_DEPTH)
		error_at(p, p->tok.off, NULL, "nesting is deeper than %d levels", DDB_MAX_DEPTH);
}

static DdbNode *
make_node(Parser *p, DdbNodeKind kind, int off, int nargs)
{
	DdbNode    *n = palloc0(sizeof(DdbNode));

	if (++p->nodes > DDB_MAX_NODES)
		error_at(p, off, NULL, "the expression has more than %d terms", DDB_MAX_NODES);
	n->kind = kind;
	n->pos = char_position(p, off);
	n->nargs = nargs;
	if (nargs > 0)
		n->args = palloc0(sizeof(DdbNode *) * nargs);
	return n;
}


/* ----------------------------------------------------------------
 * Placeholders
 * ----------------------------------------------------------------
 */

static void
note_used(List **used, const char *key)
{
	ListCell   *lc;

	foreach(lc, *used)
		if (strcmp(lfirst(lc), key) == 0)
			return;
	*used = lappend(*used, pstrdup(key));
}

/* "#n" at the current token: the attribute name it stands for */
static char *
substitute_name(Parser *p)
{
	char	   *key = token_string(p);
	Jsonb	   *v = p->cx->names ? allma_jsonb_get(p->cx->names, key) : NULL;
	JsonbValue	sv;

	if (v == NULL)
		error_at(p, p->tok.off,
				 psprintf("Define \"%s\" in expressionAttributeNames.", key),
				 "expression attribute name %s is not defined", key);
	if (!allma_jsonb_scalar(v, &sv) || sv.type != jbvString || sv.val.string.len == 0)
		error_at(p, p->tok.off, NULL,
				 "expression attribute name %s must stand for a non-empty string", key);
	note_used(&p->cx->used_names, key);
	return pnstrdup(sv.val.string.val, sv.val.string.len);
}

/* ":v" at the current token: a DDB_N_VALUE node with its value */
static DdbNode *
substitute_value(Parser *p)
{
	char	   *key = token_string(p);
	Jsonb	   *v = p->cx->values ? allma_jsonb_get(p->cx->values, key) : NULL;
	DdbNode    *n;

	if (v == NULL)
		error_at(p, p->tok.off,
				 psprintf("Define \"%s\" in expressionAttributeValues.", key),
				 "expression attribute value %s is not defined", key);
	note_used(&p->cx->used_values, key);
	n = make_node(p, DDB_N_VALUE, p->tok.off, 0);
	n->placeholder = key;
	n->value = ddb_value_from_jsonb(v);
	next_token(p);
	return n;
}

void
ddb_expr_context_init(DdbExprContext *cx, const char *module, Jsonb *names, Jsonb *values)
{
	memset(cx, 0, sizeof(*cx));
	cx->module = module;
	cx->names = names;
	cx->values = values;
	if (names != NULL && !allma_jsonb_is_object(names))
		ddb_validation_error(module, "expressionAttributeNames", "it must be an object");
	if (values != NULL && !allma_jsonb_is_object(values))
		ddb_validation_error(module, "expressionAttributeValues", "it must be an object");
	if ((names ? VARSIZE(names) : 0) + (values ? VARSIZE(values) : 0) > DDB_MAX_SUBSTITUTION_BYTES)
		ddb_validation_error(module, NULL,
							 "expressionAttributeNames and expressionAttributeValues exceed %d bytes",
							 DDB_MAX_SUBSTITUTION_BYTES);
}

static void
check_map(DdbExprContext *cx, Jsonb *map, const char *field, char prefix, List *used)
{
	List	   *keys = allma_jsonb_object_keys(map);
	StringInfoData unused;
	ListCell   *lc;

	if (map == NULL)
		return;
	if (keys == NIL)
		ddb_validation_error(cx->module, field, "it must not be empty");
	initStringInfo(&unused);
	foreach(lc, keys)
	{
		char	   *key = lfirst(lc);
		bool		found = false;
		ListCell   *lc2;

		if (key[0] != prefix || key[1] == '\0')
			ddb_validation_error(cx->module, field, "key \"%s\" must start with \"%c\"",
								 key, prefix);
		foreach(lc2, used)
			if (strcmp(lfirst(lc2), key) == 0)
				found = true;
		if (!found)
			appendStringInfo(&unused, "%s%s", unused.len ? ", " : "", key);
	}
	if (unused.len > 0)
		ereport(ERROR,
				(errcode(ERRCODE_ALLMA_VALIDATION_EXCEPTION),
				 errmsg("%s: %s has entries that no expression uses: %s",
						cx->module, field, unused.data),
				 errhint("DynamoDB rejects unused entries; remove them.")));
}

/*
 * ddb_expr_check_unused: after all expressions of a request are parsed,
 * every entry of the substitution maps must have been used.
 */
void
ddb_expr_check_unused(DdbExprContext *cx)
{
	check_map(cx, cx->names, "expressionAttributeNames", '#', cx->used_names);
	check_map(cx, cx->values, "expressionAttributeValues", ':', cx->used_values);
}


/* ----------------------------------------------------------------
 * Paths
 * ----------------------------------------------------------------
 */

static DdbPath *
parse_path(Parser *p)
{
	DdbPath    *path = palloc0(sizeof(DdbPath));
	int			cap = 4;

	path->elems = palloc(sizeof(DdbPathElem) * cap);
	path->pos = char_position(p, p->tok.off);
	for (;;)
	{
		DdbPathElem *e;

		if (path->nelems >= DDB_MAX_DEPTH)
			error_at(p, p->tok.off, NULL, "document path is deeper than %d levels",
					 DDB_MAX_DEPTH);
		if (path->nelems == cap)
		{
			cap *= 2;
			path->elems = repalloc(path->elems, sizeof(DdbPathElem) * cap);
		}
		e = &path->elems[path->nelems];
		if (path->nelems > 0 && p->tok.kind == TOK_LBRACKET)
		{
			int64		index = 0;

			next_token(p);
			if (p->tok.kind != TOK_NUMBER)
				unexpected(p, "a list index");
			for (int i = 0; i < p->tok.len; i++)
			{
				index = index * 10 + (p->text[p->tok.off + i] - '0');
				if (index > PG_INT32_MAX)
					error_at(p, p->tok.off, NULL, "list index is too large");
			}
			next_token(p);
			expect(p, TOK_RBRACKET, "\"]\"");
			e->name = NULL;
			e->index = (int) index;
			path->nelems++;
		}
		else
		{
			if (path->nelems > 0)
			{
				if (p->tok.kind != TOK_DOT)
					break;
				next_token(p);
			}
			if (p->tok.kind == TOK_ATTR_NAME)
				e->name = substitute_name(p);
			else if (p->tok.kind == TOK_NAME && !is_any_keyword(p, &p->tok))
				e->name = token_string(p);
			else
				unexpected(p, "an attribute name");
			next_token(p);
			path->nelems++;
		}
		if (p->tok.kind != TOK_DOT && p->tok.kind != TOK_LBRACKET)
			break;
	}
	return path;
}

char *
ddb_path_to_string(DdbPath *path)
{
	StringInfoData buf;

	initStringInfo(&buf);
	for (int i = 0; i < path->nelems; i++)
	{
		if (path->elems[i].name == NULL)
			appendStringInfo(&buf, "[%d]", path->elems[i].index);
		else
			appendStringInfo(&buf, "%s%s", i > 0 ? "." : "", path->elems[i].name);
	}
	return buf.data;
}


/* ----------------------------------------------------------------
 * Conditions
 * ----------------------------------------------------------------
 */

static DdbNode *parse_or(Parser *p);

static bool
at_function(Parser *p)
{
	Token		next;

	if (p->tok.kind != TOK_NAME || is_any_keyword(p, &p->tok))
		return false;
	next = peek_token(p);
	return next.kind == TOK_LPAREN;
}

static DdbNode *
path_node(Parser *p)
{
	int			off = p->tok.off;
	DdbNode    *n = make_node(p, DDB_N_PATH, off, 0);

	n->path = parse_path(p);
	return n;
}

/* operand of a condition: path | :value | size(path) */
static DdbNode *
parse_operand(Parser *p)
{
	if (p->tok.kind == TOK_ATTR_VALUE)
		return substitute_value(p);
	if (at_function(p))
	{
		int			off = p->tok.off;
		char	   *fn = token_string(p);
		DdbNode    *n;

		if (strcmp(fn, "size") != 0)
			error_at(p, off, NULL, "function %s cannot be used as an operand", fn);
		next_token(p);
		expect(p, TOK_LPAREN, "\"(\"");
		n = make_node(p, DDB_N_SIZE, off, 0);
		if (p->tok.kind != TOK_NAME && p->tok.kind != TOK_ATTR_NAME)
			unexpected(p, "a document path (size takes an attribute)");
		n->path = parse_path(p);
		expect(p, TOK_RPAREN, "\")\"");
		return n;
	}
	if (p->tok.kind == TOK_NAME || p->tok.kind == TOK_ATTR_NAME)
	{
		if (is_any_keyword(p, &p->tok))
			unexpected(p, "an operand");
		return path_node(p);
	}
	unexpected(p, "an operand (a path, a :value or size(path))");
	return NULL;				/* keep compiler quiet */
}

/* a boolean function call at the current token */
static DdbNode *
parse_condition_function(Parser *p)
{
	int			off = p->tok.off;
	char	   *fn = token_string(p);
	DdbNode    *n;

	if (strcmp(fn, "attribute_exists") == 0 || strcmp(fn, "attribute_not_exists") == 0)
		n = make_node(p, fn[10] == 'e' ? DDB_N_ATTRIBUTE_EXISTS : DDB_N_ATTRIBUTE_NOT_EXISTS,
					  off, 1);
	else if (strcmp(fn, "attribute_type") == 0)
		n = make_node(p, DDB_N_ATTRIBUTE_TYPE, off, 2);
	else if (strcmp(fn, "begins_with") == 0)
		n = make_node(p, DDB_N_BEGINS_WITH, off, 2);
	else if (strcmp(fn, "contains") == 0)
		n = make_node(p, DDB_N_CONTAINS, off, 2);
	else if (strcmp(fn, "size") == 0)
		return NULL;			/* an operand: the caller compares it */
	else if (strcmp(fn, "if_not_exists") == 0 || strcmp(fn, "list_append") == 0)
		error_at(p, off, NULL, "function %s is only allowed in an update expression", fn);
	else
		error_at(p, off,
				 "The functions are attribute_exists, attribute_not_exists, attribute_type, begins_with, contains and size (names are case sensitive).",
				 "unknown function %s", fn);

	enter(p);
	next_token(p);
	expect(p, TOK_LPAREN, "\"(\"");
	for (int i = 0; i < n->nargs; i++)
	{
		if (i > 0)
			expect(p, TOK_COMMA, "\",\"");
		n->args[i] = parse_operand(p);
	}
	expect(p, TOK_RPAREN, "\")\"");
	p->depth--;

	/* the first argument names an attribute */
	if (n->args[0]->kind != DDB_N_PATH)
		error_at(p, off, NULL, "the first argument of %s must be a document path", fn);
	if (n->kind == DDB_N_ATTRIBUTE_TYPE)
	{
		static const char *const types[] = {
			"S", "SS", "N", "NS", "B", "BS", "BOOL", "NULL", "L", "M", NULL
		};
		JsonbValue *t = n->args[1]->value;
		bool		ok = false;

		if (n->args[1]->kind != DDB_N_VALUE)
			error_at(p, off, NULL, "the second argument of attribute_type must be a :value");
		for (int i = 0; t->type == jbvString && types[i] != NULL; i++)
			if (t->val.string.len == (int) strlen(types[i]) &&
				memcmp(t->val.string.val, types[i], t->val.string.len) == 0)
				ok = true;
		if (!ok)
			error_at(p, off, NULL,
					 "attribute_type's type %s must be one of S, SS, N, NS, B, BS, BOOL, NULL, L, M",
					 n->args[1]->placeholder);
	}
	if (n->kind == DDB_N_BEGINS_WITH && n->args[1]->kind == DDB_N_VALUE &&
		n->args[1]->value->type != jbvString)
		error_at(p, off, NULL, "begins_with needs a string, but %s is of type %s",
				 n->args[1]->placeholder, ddb_value_type(n->args[1]->value));
	if (n->kind == DDB_N_CONTAINS && n->args[1]->kind == DDB_N_PATH &&
		strcmp(ddb_path_to_string(n->args[0]->path), ddb_path_to_string(n->args[1]->path)) == 0)
		error_at(p, off, NULL, "the two arguments of contains must be different");
	return n;
}

static DdbNode *
parse_primary(Parser *p)
{
	int			off = p->tok.off;
	DdbNode    *left;
	DdbNode    *n;

	if (p->tok.kind == TOK_LPAREN)
	{
		enter(p);
		next_token(p);
		n = parse_or(p);
		expect(p, TOK_RPAREN, "\")\"");
		p->depth--;
		return n;
	}
	if (at_function(p) && (n = parse_condition_function(p)) != NULL)
		return n;

	left = parse_operand(p);
	switch (p->tok.kind)
	{
		case TOK_EQ:
		case TOK_NE:
		case TOK_LT:
		case TOK_LE:
		case TOK_GT:
		case TOK_GE:
			n = make_node(p, DDB_N_COMPARE, p->tok.off, 2);
			n->op = p->tok.kind == TOK_EQ ? DDB_EQ :
				p->tok.kind == TOK_NE ? DDB_NE :
				p->tok.kind == TOK_LT ? DDB_LT :
				p->tok.kind == TOK_LE ? DDB_LE :
				p->tok.kind == TOK_GT ? DDB_GT : DDB_GE;
			next_token(p);
			n->args[0] = left;
			n->args[1] = parse_operand(p);
			return n;
		default:
			break;
	}
	if (is_keyword(p, "BETWEEN"))
	{
		n = make_node(p, DDB_N_BETWEEN, p->tok.off, 3);
		next_token(p);
		n->args[0] = left;
		n->args[1] = parse_operand(p);
		if (!is_keyword(p, "AND"))
			unexpected(p, "AND of BETWEEN");
		next_token(p);
		n->args[2] = parse_operand(p);
		if (n->args[1]->kind == DDB_N_VALUE && n->args[2]->kind == DDB_N_VALUE &&
			strcmp(ddb_value_type(n->args[1]->value), ddb_value_type(n->args[2]->value)) == 0 &&
			ddb_value_compare(n->args[1]->value, n->args[2]->value) > 0)
			error_at(p, off, NULL, "the lower bound %s of BETWEEN is greater than the upper bound %s",
					 n->args[1]->placeholder, n->args[2]->placeholder);
		return n;
	}
	if (is_keyword(p, "IN"))
	{
		int			in_off = p->tok.off;
		List	   *list = NIL;
		ListCell   *lc;
		int			i = 1;

		next_token(p);
		expect(p, TOK_LPAREN, "\"(\" after IN");
		for (;;)
		{
			if (list_length(list) >= DDB_MAX_IN_OPERANDS)
				error_at(p, p->tok.off, NULL, "IN takes at most %d operands",
						 DDB_MAX_IN_OPERANDS);
			list = lappend(list, parse_operand(p));
			if (p->tok.kind != TOK_COMMA)
				break;
			next_token(p);
		}
		expect(p, TOK_RPAREN, "\",\" or \")\"");
		n = make_node(p, DDB_N_IN, in_off, list_length(list) + 1);
		n->args[0] = left;
		foreach(lc, list)
			n->args[i++] = lfirst(lc);
		return n;
	}
	if (left->kind == DDB_N_SIZE)
		unexpected(p, "a comparison of size()");
	unexpected(p, "a comparator, BETWEEN or IN");
	return NULL;				/* keep compiler quiet */
}

static DdbNode *
parse_not(Parser *p)
{
	if (is_keyword(p, "NOT"))
	{
		DdbNode    *n = make_node(p, DDB_N_NOT, p->tok.off, 1);

		enter(p);
		next_token(p);
		n->args[0] = parse_not(p);
		p->depth--;
		return n;
	}
	return parse_primary(p);
}

static DdbNode *
parse_and(Parser *p)
{
	DdbNode    *left = parse_not(p);

	while (is_keyword(p, "AND"))
	{
		DdbNode    *n = make_node(p, DDB_N_AND, p->tok.off, 2);

		next_token(p);
		n->args[0] = left;
		n->args[1] = parse_not(p);
		left = n;
	}
	return left;
}

static DdbNode *
parse_or(Parser *p)
{
	DdbNode    *left = parse_and(p);

	while (is_keyword(p, "OR"))
	{
		DdbNode    *n = make_node(p, DDB_N_OR, p->tok.off, 2);

		next_token(p);
		n->args[0] = left;
		n->args[1] = parse_and(p);
		left = n;
	}
	return left;
}

static void
parser_init(Parser *p, DdbExprContext *cx, const char *field, const char *text)
{
	memset(p, 0, sizeof(*p));
	p->cx = cx;
	p->field = field;
	p->text = text;
	p->len = strlen(text);
	if (p->len > DDB_MAX_EXPRESSION_BYTES)
		ddb_validation_error(cx->module, field, "the expression is longer than %d bytes",
							 DDB_MAX_EXPRESSION_BYTES);
	next_token(p);
	if (p->tok.kind == TOK_EOF)
		ddb_validation_error(cx->module, field, "the expression is empty");
}

DdbNode *
ddb_parse_condition(DdbExprContext *cx, const char *field, const char *text)
{
	Parser		p;
	DdbNode    *n;

	parser_init(&p, cx, field, text);
	n = parse_or(&p);
	if (p.tok.kind != TOK_EOF)
		unexpected(&p, "AND, OR or the end of the expression");
	return n;
}


/* ----------------------------------------------------------------
 * Key conditions
 * ----------------------------------------------------------------
 */

static void key_error(Parser *p, int pos_off, const char *fmt,...)
			pg_attribute_printf(3, 4) pg_attribute_noreturn();

static void
key_error(Parser *p, int off, const char *fmt,...)
{
	va_list		args;

	va_start(args, fmt);
	error_at_va(p, off,
				"A key condition is \"pk = :v\", optionally AND one condition on the sort key: =, <, <=, >, >=, BETWEEN or begins_with.",
				fmt, args);
	va_end(args);
}

/* byte offset of a node's position (for errors) */
static int
node_off(Parser *p, DdbNode *n)
{
	int			chars = n->pos - 1;
	int			off = 0;

	while (chars-- > 0 && off < p->len)
		off += pg_mblen(p->text + off);
	return off;
}

/* the attribute a key condition term constrains; its value side in *val */
static char *
key_term(Parser *p, DdbNode *n, DdbKeyCondition *kc, bool *is_sort)
{
	DdbNode    *attr = NULL;
	DdbKeyOp	op = DDB_KEY_NONE;

	*is_sort = false;
	switch (n->kind)
	{
		case DDB_N_COMPARE:
			{
				bool		swapped = false;

				if (n->args[0]->kind == DDB_N_PATH && n->args[1]->kind == DDB_N_VALUE)
					attr = n->args[0];
				else if (n->args[1]->kind == DDB_N_PATH && n->args[0]->kind == DDB_N_VALUE)
					attr = n->args[1], swapped = true;
				else
					key_error(p, node_off(p, n),
							  "a key condition compares a key attribute with a :value");
				switch (n->op)
				{
					case DDB_EQ:
						op = DDB_KEY_EQ;
						break;
					case DDB_LT:
						op = swapped ? DDB_KEY_GT : DDB_KEY_LT;
						break;
					case DDB_LE:
						op = swapped ? DDB_KEY_GE : DDB_KEY_LE;
						break;
					case DDB_GT:
						op = swapped ? DDB_KEY_LT : DDB_KEY_GT;
						break;
					case DDB_GE:
						op = swapped ? DDB_KEY_LE : DDB_KEY_GE;
						break;
					case DDB_NE:
						key_error(p, node_off(p, n), "<> is not supported in a key condition");
				}
				kc->sk_value = swapped ? n->args[0]->value : n->args[1]->value;
				break;
			}
		case DDB_N_BETWEEN:
			if (n->args[0]->kind != DDB_N_PATH || n->args[1]->kind != DDB_N_VALUE ||
				n->args[2]->kind != DDB_N_VALUE)
				key_error(p, node_off(p, n),
						  "BETWEEN in a key condition needs a key attribute and two :values");
			attr = n->args[0];
			op = DDB_KEY_BETWEEN;
			kc->sk_value = n->args[1]->value;
			kc->sk_value2 = n->args[2]->value;
			break;
		case DDB_N_BEGINS_WITH:
			if (n->args[1]->kind != DDB_N_VALUE)
				key_error(p, node_off(p, n), "begins_with in a key condition needs a :value prefix");
			attr = n->args[0];
			op = DDB_KEY_BEGINS_WITH;
			kc->sk_value = n->args[1]->value;
			break;
		default:
			key_error(p, node_off(p, n), "this operator or function is not supported in a key condition");
	}
	if (attr->path->nelems != 1 || attr->path->elems[0].name == NULL)
		key_error(p, node_off(p, attr), "key attributes are top-level attributes, not nested paths");
	kc->sk_op = op;
	*is_sort = op != DDB_KEY_EQ;
	return attr->path->elems[0].name;
}

/*
 * ddb_parse_key_condition parses a KeyConditionExpression into the
 * partition key's equality and at most one sort key condition.  Which
 * attribute is which is only known from the table: a term "a = :v" may
 * constrain either, so both "=" terms are returned in the order written
 * when there are two, and ddb_check_key_condition (dynamodb_store.c)
 * sorts them out against the key schema.
 */
DdbKeyCondition *
ddb_parse_key_condition(DdbExprContext *cx, const char *field, const char *text)
{
	Parser		p;
	DdbNode    *root;
	DdbKeyCondition *kc = palloc0(sizeof(DdbKeyCondition));
	DdbNode    *terms[2];
	int			nterms = 1;
	bool		sort[2];
	char	   *names[2];
	DdbKeyCondition tmp[2];

	parser_init(&p, cx, field, text);
	root = parse_or(&p);
	if (p.tok.kind != TOK_EOF)
		unexpected(&p, "AND or the end of the expression");

	terms[0] = root;
	if (root->kind == DDB_N_AND)
	{
		terms[0] = root->args[0];
		terms[1] = root->args[1];
		nterms = 2;
		if (terms[0]->kind == DDB_N_AND || terms[1]->kind == DDB_N_AND)
			key_error(&p, node_off(&p, root), "a key condition has at most two terms");
	}
	for (int i = 0; i < nterms; i++)
	{
		memset(&tmp[i], 0, sizeof(DdbKeyCondition));
		if (terms[i]->kind == DDB_N_OR || terms[i]->kind == DDB_N_NOT)
			key_error(&p, node_off(&p, terms[i]), "OR and NOT are not supported in a key condition");
		names[i] = key_term(&p, terms[i], &tmp[i], &sort[i]);
	}
	if (nterms == 2 && strcmp(names[0], names[1]) == 0)
		key_error(&p, node_off(&p, terms[1]),
				  "a key condition has one condition per key attribute, but %s has two",
				  names[0]);

	/* the partition key's term is an equality; prefer the first one */
	if (nterms == 1)
	{
		if (sort[0])
			key_error(&p, node_off(&p, terms[0]),
					  "the partition key needs an equality condition");
		kc->pk_name = names[0];
		kc->pk_value = tmp[0].sk_value;
		return kc;
	}
	if (sort[0] && sort[1])
		key_error(&p, node_off(&p, root), "the partition key needs an equality condition");
	{
		int			pki = sort[0] ? 1 : 0;
		int			ski = 1 - pki;

		kc->pk_name = names[pki];
		kc->pk_value = tmp[pki].sk_value;
		kc->sk_name = names[ski];
		kc->sk_op = tmp[ski].sk_op;
		kc->sk_value = tmp[ski].sk_value;
		kc->sk_value2 = tmp[ski].sk_value2;
	}
	return kc;
}


/* ----------------------------------------------------------------
 * Update expressions
 * ----------------------------------------------------------------
 */

static DdbNode *parse_update_value(Parser *p);

static void
count_operator(Parser *p)
{
	if (++p->operators > DDB_MAX_UPDATE_OPERATORS)
		error_at(p, p->tok.off, NULL, "an update expression has at most %d operators and functions",
				 DDB_MAX_UPDATE_OPERATORS);
}

/* operand of SET: path | :value | if_not_exists(path, x) | list_append(x, y) */
static DdbNode *
parse_update_operand(Parser *p)
{
	if (at_function(p))
	{
		int			off = p->tok.off;
		char	   *fn = token_string(p);
		DdbNode    *n;

		if (strcmp(fn, "if_not_exists") == 0)
			n = make_node(p, DDB_N_IF_NOT_EXISTS, off, 2);
		else if (strcmp(fn, "list_append") == 0)
			n = make_node(p, DDB_N_LIST_APPEND, off, 2);
		else
			error_at(p, off,
					 "The functions of SET are if_not_exists and list_append (names are case sensitive).",
					 "function %s is not allowed in an update expression", fn);
		count_operator(p);
		enter(p);
		next_token(p);
		expect(p, TOK_LPAREN, "\"(\"");
		n->args[0] = parse_update_operand(p);
		expect(p, TOK_COMMA, "\",\"");
		n->args[1] = parse_update_operand(p);
		expect(p, TOK_RPAREN, "\")\"");
		p->depth--;
		if (n->kind == DDB_N_IF_NOT_EXISTS && n->args[0]->kind != DDB_N_PATH)
			error_at(p, off, NULL, "the first argument of if_not_exists must be a document path");
		return n;
	}
	if (p->tok.kind == TOK_ATTR_VALUE)
		return substitute_value(p);
	if ((p->tok.kind == TOK_NAME && !is_any_keyword(p, &p->tok)) || p->tok.kind == TOK_ATTR_NAME)
		return path_node(p);
	unexpected(p, "a path, a :value, if_not_exists or list_append");
	return NULL;				/* keep compiler quiet */
}

static DdbNode *
parse_update_value(Parser *p)
{
	DdbNode    *left = parse_update_operand(p);

	while (p->tok.kind == TOK_PLUS || p->tok.kind == TOK_MINUS)
	{
		DdbNode    *n = make_node(p, p->tok.kind == TOK_PLUS ? DDB_N_PLUS : DDB_N_MINUS,
								  p->tok.off, 2);

		count_operator(p);
		next_token(p);
		n->args[0] = left;
		n->args[1] = parse_update_operand(p);
		left = n;
	}
	return left;
}

/* are the paths the same or is one inside the other? */
static bool
paths_overlap(DdbPath *a, DdbPath *b)
{
	int			n = Min(a->nelems, b->nelems);

	for (int i = 0; i < n; i++)
	{
		DdbPathElem *x = &a->elems[i];
		DdbPathElem *y = &b->elems[i];

		if ((x->name == NULL) != (y->name == NULL))
			return false;
		if (x->name != NULL ? strcmp(x->name, y->name) != 0 : x->index != y->index)
			return false;
	}
	return true;
}

DdbUpdate *
ddb_parse_update(DdbExprContext *cx, const char *field, const char *text)
{
	static const char *const clauses[] = {"SET", "REMOVE", "ADD", "DELETE"};
	Parser		p;
	DdbUpdate  *u = palloc0(sizeof(DdbUpdate));
	List	   *actions = NIL;
	bool		seen[4] = {false, false, false, false};
	ListCell   *lc;
	int			i = 0;

	parser_init(&p, cx, field, text);
	while (p.tok.kind != TOK_EOF)
	{
		int			kind = -1;

		for (int k = 0; k < 4; k++)
			if (is_keyword(&p, clauses[k]))
				kind = k;
		if (kind < 0)
			unexpected(&p, "SET, REMOVE, ADD or DELETE");
		if (seen[kind])
			error_at(&p, p.tok.off, NULL, "the %s clause may appear only once", clauses[kind]);
		seen[kind] = true;
		next_token(&p);
		for (;;)
		{
			DdbUpdateAction *a = palloc0(sizeof(DdbUpdateAction));
			int			off = p.tok.off;

			a->kind = (DdbUpdateKind) kind;
			if (p.tok.kind != TOK_NAME && p.tok.kind != TOK_ATTR_NAME)
				unexpected(&p, "a document path");
			if (is_any_keyword(&p, &p.tok))
				unexpected(&p, "a document path");
			a->path = parse_path(&p);
			switch (a->kind)
			{
				case DDB_UPDATE_SET:
					expect(&p, TOK_EQ, "\"=\"");
					a->value = parse_update_value(&p);
					break;
				case DDB_UPDATE_REMOVE:
					break;
				case DDB_UPDATE_ADD:
				case DDB_UPDATE_DELETE:
					if (p.tok.kind != TOK_ATTR_VALUE)
						unexpected(&p, psprintf("a :value to %s", clauses[kind]));
					a->value = substitute_value(&p);
					break;
			}
			foreach(lc, actions)
			{
				DdbUpdateAction *other = lfirst(lc);

				if (paths_overlap(other->path, a->path))
					error_at(&p, off, NULL, "the paths %s and %s overlap; update each attribute once",
							 ddb_path_to_string(other->path), ddb_path_to_string(a->path));
			}
			actions = lappend(actions, a);
			if (p.tok.kind != TOK_COMMA)
				break;
			next_token(&p);
		}
	}
	u->nactions = list_length(actions);
	u->actions = palloc(sizeof(DdbUpdateAction) * Max(u->nactions, 1));
	foreach(lc, actions)
		u->actions[i++] = *(DdbUpdateAction *) lfirst(lc);
	return u;
}


/* ----------------------------------------------------------------
 * Projection expressions
 * ----------------------------------------------------------------
 */

DdbProjection *
ddb_parse_projection(DdbExprContext *cx, const char *field, const char *text)
{
	Parser		p;
	List	   *paths = NIL;
	DdbProjection *proj = palloc0(sizeof(DdbProjection));
	ListCell   *lc;
	int			i = 0;

	parser_init(&p, cx, field, text);
	for (;;)
	{
		int			off = p.tok.off;
		DdbPath    *path;

		if ((p.tok.kind != TOK_NAME && p.tok.kind != TOK_ATTR_NAME) || is_any_keyword(&p, &p.tok))
			unexpected(&p, "a document path");
		path = parse_path(&p);
		foreach(lc, paths)
			if (paths_overlap(lfirst(lc), path))
				error_at(&p, off, NULL, "the paths %s and %s overlap",
						 ddb_path_to_string(lfirst(lc)), ddb_path_to_string(path));
		if (++p.nodes > DDB_MAX_NODES)
			error_at(&p, off, NULL, "the expression has more than %d paths", DDB_MAX_NODES);
		paths = lappend(paths, path);
		if (p.tok.kind == TOK_EOF)
			break;
		expect(&p, TOK_COMMA, "\",\" or the end of the expression");
	}
	proj->npaths = list_length(paths);
	proj->paths = palloc(sizeof(DdbPath *) * proj->npaths);
	foreach(lc, paths)
		proj->paths[i++] = lfirst(lc);
	return proj;
}
