/*-------------------------------------------------------------------------
 *
 * condition.c
 *	  Transition and branch conditions: Allma's expression language, and
 *	  PostgreSQL jsonpath predicates.
 *
 * Allma's condition language (what its transitions' "condition" fields
 * hold) is a list of atoms joined by "||" and "&&" ("&&" binds tighter,
 * both short-circuit, no parentheses).  Allma itself splits the text at
 * every "||" and "&&"; the split here ignores those inside quoted strings
 * and inside the brackets of a JSONPath, so "$.a[?(@.x > 1 && @.y)]" and
 * "$.s == 'a||b'" are one atom.  An atom is
 *
 *		[!] JSONPath							truthiness
 *		[!] JSONPath op rhs						comparison
 *
 * with op one of > < >= <= = == === != !== or, as allma extensions, the
 * words endsWith, startsWith and contains; rhs is true, false, null,
 * undefined, a number, a '...' or "..." string, or another JSONPath.  A
 * leading "!" negates the whole atom (an allma extension too).
 *
 * Values follow JavaScript: an absent path is undefined; == and != are
 * loose equality (1 == "1", null == undefined, true == 1, arrays compare
 * through their string form), === and !== strict equality; < > <= >=
 * compare two strings by code point and anything else as numbers (NaN
 * compares false).  Objects and arrays are equal when their JSON is
 * equal, where JavaScript would compare references.  Truthiness is
 * allma_jsonb_truthy's (an empty array is false).
 *
 * A condition that does not fit this grammar is tried as a PostgreSQL
 * jsonpath, as written (lax mode unless it says "strict"): a predicate
 * ("$.a > 5 && exists($.b ? (@ == "x"))", "$.x like_regex "^a"") is true
 * when it yields true; any other jsonpath is true when its first result
 * is truthy.  Evaluation errors inside such a path (type mismatches) are
 * suppressed and count as false.
 *
 * Parsed conditions are kept in a bounded cache (parsecache.h).  Atoms
 * keep the text of their JSONPaths and evaluate them through
 * allma_path_get, which has its own cache, so evaluating a condition never
 * empties the condition cache under it.
 *
 * Copyright (c) 2026, the allma authors
 *
 * IDENTIFICATION
 *	  src/condition.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <ctype.h>
#include <math.h>

#include "fmgr.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/float.h"
#include "utils/fmgrprotos.h"
#include "utils/jsonb.h"
#include "utils/jsonpath.h"
#include "utils/memutils.h"
#include "utils/numeric.h"

#include "condition.h"
#include "jsonb_util.h"
#include "parsecache.h"
#include "path.h"

PG_FUNCTION_INFO_V1(allma_eval_condition);

/* parsed conditions (and bytes of their text) kept before the cache is emptied */
#define COND_CACHE_SIZE 256
#define COND_CACHE_MAX_BYTES (1024 * 1024)

typedef enum CondOp
{
	COP_TRUTHY,					/* no operator */
	COP_LOOSE_EQ,				/* = == */
	COP_LOOSE_NE,				/* != */
	COP_STRICT_EQ,				/* === */
	COP_STRICT_NE,				/* !== */
	COP_LT,
	COP_LE,
	COP_GT,
	COP_GE,
	COP_ENDS_WITH,
	COP_STARTS_WITH,
	COP_CONTAINS
} CondOp;

typedef enum RhsKind
{
	RHS_NONE,
	RHS_UNDEFINED,
	RHS_NULL,
	RHS_BOOL,
	RHS_NUMBER,
	RHS_STRING,
	RHS_PATH
} RhsKind;

/* one atom of Allma's language */
typedef struct CondAtom
{
	bool		negate;			/* leading "!" */
	char	   *lhs;			/* JSONPath */
	CondOp		op;
	RhsKind		rkind;
	bool		rbool;			/* RHS_BOOL */
	double		rnum;			/* RHS_NUMBER */
	char	   *rtext;			/* RHS_STRING: the string; RHS_PATH: path */
	int			rlen;			/* strlen(rtext) */
} CondAtom;

/* a parsed condition */
typedef struct ParsedCond
{
	bool		is_pg;			/* a PostgreSQL jsonpath, not Allma syntax */
	/* Allma syntax: ngroups "||" groups of "&&"-joined atoms */
	int			ngroups;
	int		   *group_start;	/* ngroups + 1 offsets into atoms */
	int			natoms;
	CondAtom   *atoms;
	/* PostgreSQL jsonpath */
	JsonPath   *jsp;
	bool		pg_predicate;	/* jsp is a predicate (yields a boolean) */
} ParsedCond;

/* a JavaScript value, as conditions see jsonb values */
typedef enum JsKind
{
	JS_UNDEFINED,
	JS_NULL,
	JS_BOOL,
	JS_NUMBER,
	JS_STRING,
	JS_OBJECT					/* object or array (jb says which) */
} JsKind;

typedef struct JsVal
{
	JsKind		kind;
	bool		b;
	double		num;
	const char *str;			/* not NUL-terminated */
	int			len;
	Jsonb	   *jb;				/* JS_OBJECT */
} JsVal;

/* parsed conditions, by text (see parsecache.h) */
static AllmaParseCache cond_cache =
	ALLMA_PARSECACHE_INIT("allma condition cache", COND_CACHE_SIZE, COND_CACHE_MAX_BYTES);


/* ---------------------------------------------------------------------
 * Parsing
 * ---------------------------------------------------------------------
 */

/*
 * split_top splits [s, s+len) at every occurrence of sep ("||" or "&&")
 * that is outside quotes, brackets and parentheses.  Returns a List of
 * palloc'd, NUL-terminated pieces.
 */
static List *
split_top(const char *s, int len, const char *sep)
{
	List	   *parts = NIL;
	int			depth = 0;
	char		quote = '\0';
	int			start = 0;
	int			i;

	for (i = 0; i < len; i++)
	{
		char		c = s[i];

		if (quote)
		{
			if (c == '\\' && i + 1 < len)
				i++;
			else if (c == quote)
				quote = '\0';
		}
		else if (c == '\'' || c == '"')
			quote = c;
		else if (c == '[' || c == '(')
			depth++;
		else if ((c == ']' || c == ')') && depth > 0)
			depth--;
		else if (depth == 0 && c == sep[0] && i + 1 < len && s[i + 1] == sep[1])
		{
			parts = lappend(parts, pnstrdup(s + start, i - start));
			start = i + 2;
			i++;
		}
	}
	parts = lappend(parts, pnstrdup(s + start, len - start));
	return parts;
}

/* trims whitespace in place, returning the new start */
static char *
trim(char *s)
{
	char	   *end;

	while (isspace((unsigned char) *s))
		s++;
	end = s + strlen(s);
	while (end > s && isspace((unsigned char) end[-1]))
		end--;
	*end = '\0';
	return s;
}

/*
 * path_extent returns the length of the JSONPath at the start of s: up to
 * the first whitespace or comparison character outside quotes and
 * brackets.
 */
static int
path_extent(const char *s)
{
	int			depth = 0;
	char		quote = '\0';
	int			i;

	for (i = 0; s[i]; i++)
	{
		char		c = s[i];

		if (quote)
		{
			if (c == '\\' && s[i + 1])
				i++;
			else if (c == quote)
				quote = '\0';
		}
		else if (depth > 0 && (c == '\'' || c == '"'))
			quote = c;
		else if (c == '[')
			depth++;
		else if (c == ']' && depth > 0)
			depth--;
		else if (depth == 0 &&
				 (isspace((unsigned char) c) || strchr("<>=!", c) != NULL))
			break;
	}
	return i;
}

/*
 * parse_number reads a JavaScript decimal literal filling all of s;
 * false when s is not one.
 */
static bool
parse_number(const char *s, double *out)
{
	const char *p = s;
	char	   *endp;
	bool		digits = false;

	if (*p == '-' || *p == '+')
		p++;
	while (isdigit((unsigned char) *p))
		p++, digits = true;
	if (*p == '.')
	{
		p++;
		while (isdigit((unsigned char) *p))
			p++, digits = true;
	}
	if (!digits)
		return false;
	if (*p == 'e' || *p == 'E')
	{
		p++;
		if (*p == '-' || *p == '+')
			p++;
		if (!isdigit((unsigned char) *p))
			return false;
		while (isdigit((unsigned char) *p))
			p++;
	}
	if (*p != '\0')
		return false;
	*out = strtod(s, &endp);
	return true;
}

/*
 * parse_atom parses one atom into *atom.  false + *why (a sentence) when
 * it does not fit Allma's grammar.
 */
static bool
parse_atom(char *text, CondAtom *atom, char **why)
{
	static const struct
	{
		const char *word;
		CondOp		op;
	}			ops[] =
	{
		{"===", COP_STRICT_EQ}, {"!==", COP_STRICT_NE}, {"==", COP_LOOSE_EQ},
		{"=", COP_LOOSE_EQ}, {"!=", COP_LOOSE_NE}, {">=", COP_GE},
		{"<=", COP_LE}, {">", COP_GT}, {"<", COP_LT},
		{"endsWith", COP_ENDS_WITH}, {"startsWith", COP_STARTS_WITH},
		{"contains", COP_CONTAINS}
	};
	char	   *s = trim(text);
	char	   *rest;
	char	   *opstart;
	char	   *perr = NULL;
	int			n;
	int			i;

	memset(atom, 0, sizeof(*atom));
	if (*s == '\0')
	{
		*why = pstrdup("An operand of \"&&\" or \"||\" is empty.");
		return false;
	}
	if (s[0] == '!' && s[1] != '=')
	{
		atom->negate = true;
		s = trim(s + 1);
	}
	if (s[0] != '$')
	{
		*why = psprintf("The operand \"%s\" does not start with a JSONPath.", s);
		return false;
	}

	n = path_extent(s);
	atom->lhs = pnstrdup(s, n);
	if (!allma_path_check(atom->lhs, &perr))
	{
		*why = psprintf("Invalid JSONPath \"%s\": %s", atom->lhs, perr);
		return false;
	}
	rest = trim(s + n);
	if (*rest == '\0')
	{
		atom->op = COP_TRUTHY;
		atom->rkind = RHS_NONE;
		return true;
	}

	/* the operator: a run of comparison characters, or a word */
	opstart = rest;
	if (strchr("<>=!", *rest) != NULL)
	{
		while (*rest && strchr("<>=!", *rest) != NULL)
			rest++;
	}
	else
	{
		while (isalpha((unsigned char) *rest) || *rest == '_')
			rest++;
	}
	if (rest == opstart)
	{
		*why = psprintf("Expected an operator after \"%s\", found \"%s\".",
						atom->lhs, opstart);
		return false;
	}
	for (i = 0; i < lengthof(ops); i++)
	{
		if (strlen(ops[i].word) == (size_t) (rest - opstart) &&
			strncmp(ops[i].word, opstart, rest - opstart) == 0)
			break;
	}
	if (i == lengthof(ops))
	{
		*why = psprintf("Unknown operator \"%.*s\" after \"%s\".",
						(int) (rest - opstart), opstart, atom->lhs);
		return false;
	}
	atom->op = ops[i].op;

	/* the right-hand side */
	rest = trim(rest);
	if (*rest == '\0')
	{
		*why = psprintf("The operator \"%.*s\" has no right-hand side.",
						(int) (rest - opstart), opstart);
		return false;
	}
	if (strcmp(rest, "true") == 0 || strcmp(rest, "false") == 0)
	{
		atom->rkind = RHS_BOOL;
		atom->rbool = (rest[0] == 't');
	}
	else if (strcmp(rest, "null") == 0)
		atom->rkind = RHS_NULL;
	else if (strcmp(rest, "undefined") == 0)
		atom->rkind = RHS_UNDEFINED;
	else if (rest[0] == '\'' || rest[0] == '"')
	{
		int			consumed = 0;
		char	   *serr = NULL;
		char	   *str = allma_js_string_literal(rest, &consumed, &serr);

		if (str == NULL)
		{
			*why = serr;
			return false;
		}
		if (rest[consumed] != '\0')
		{
			*why = psprintf("Unexpected text \"%s\" after the string literal.",
							rest + consumed);
			return false;
		}
		atom->rkind = RHS_STRING;
		atom->rtext = str;
		atom->rlen = strlen(str);
	}
	else if (rest[0] == '$')
	{
		if (!allma_path_check(rest, &perr))
		{
			*why = psprintf("Invalid JSONPath \"%s\" on the right-hand side: %s",
							rest, perr);
			return false;
		}
		atom->rkind = RHS_PATH;
		atom->rtext = pstrdup(rest);
		atom->rlen = strlen(rest);
	}
	else if (parse_number(rest, &atom->rnum))
		atom->rkind = RHS_NUMBER;
	else
	{
		*why = psprintf("Invalid right-hand side \"%s\": expected true, false, null, undefined, a number, a quoted string or a JSONPath.",
						rest);
		return false;
	}
	return true;
}

/*
 * parse_allma parses cond as Allma's language into pc.  false + *why when
 * it does not fit.
 */
static bool
parse_allma(const char *cond, ParsedCond *pc, char **why)
{
	List	   *ors = split_top(cond, strlen(cond), "||");
	ListCell   *lc;
	int			g = 0;
	int			maxatoms = 8;

	pc->ngroups = list_length(ors);
	pc->group_start = palloc((pc->ngroups + 1) * sizeof(int));
	pc->atoms = palloc(maxatoms * sizeof(CondAtom));
	pc->natoms = 0;

	foreach(lc, ors)
	{
		char	   *or_part = (char *) lfirst(lc);
		List	   *ands = split_top(or_part, strlen(or_part), "&&");
		ListCell   *lc2;

		pc->group_start[g++] = pc->natoms;
		foreach(lc2, ands)
		{
			if (pc->natoms == maxatoms)
			{
				maxatoms *= 2;
				pc->atoms = repalloc(pc->atoms, maxatoms * sizeof(CondAtom));
			}
			if (!parse_atom((char *) lfirst(lc2), &pc->atoms[pc->natoms], why))
				return false;
			pc->natoms++;
		}
	}
	pc->group_start[g] = pc->natoms;
	return true;
}

/* true when the jsonpath's top item yields a boolean */
static bool
jsonpath_is_predicate(JsonPath *jsp)
{
	JsonPathItem v;

	jspInit(&v, jsp);
	switch (v.type)
	{
		case jpiAnd:
		case jpiOr:
		case jpiNot:
		case jpiIsUnknown:
		case jpiEqual:
		case jpiNotEqual:
		case jpiLess:
		case jpiGreater:
		case jpiLessOrEqual:
		case jpiGreaterOrEqual:
		case jpiExists:
		case jpiStartsWith:
		case jpiLikeRegex:
			return true;
		default:
			return false;
	}
}

/*
 * jsonpath_variable returns the name of the first "$name" variable used in
 * the jsonpath item chain starting at v, or NULL.  Conditions have no
 * variables to pass, so such a path could only fail at run time.
 */
static char *
jsonpath_variable(JsonPathItem *v)
{
	JsonPathItem arg;
	JsonPathItem to;
	char	   *name;
	int32		len;
	int			i;

	check_stack_depth();
	for (;;)
	{
		switch (v->type)
		{
			case jpiVariable:
				name = jspGetString(v, &len);
				return pnstrdup(name, len);
			case jpiAnd:
			case jpiOr:
			case jpiEqual:
			case jpiNotEqual:
			case jpiLess:
			case jpiGreater:
			case jpiLessOrEqual:
			case jpiGreaterOrEqual:
			case jpiAdd:
			case jpiSub:
			case jpiMul:
			case jpiDiv:
			case jpiMod:
			case jpiStartsWith:
				jspGetLeftArg(v, &arg);
				if ((name = jsonpath_variable(&arg)) != NULL)
					return name;
				jspGetRightArg(v, &arg);
				if ((name = jsonpath_variable(&arg)) != NULL)
					return name;
				break;
			case jpiNot:
			case jpiIsUnknown:
			case jpiExists:
			case jpiPlus:
			case jpiMinus:
			case jpiFilter:
				jspGetArg(v, &arg);
				if ((name = jsonpath_variable(&arg)) != NULL)
					return name;
				break;
			case jpiLikeRegex:
				jspInitByBuffer(&arg, v->base, v->content.like_regex.expr);
				if ((name = jsonpath_variable(&arg)) != NULL)
					return name;
				break;
			case jpiIndexArray:
				for (i = 0; i < v->content.array.nelems; i++)
				{
					bool		range = jspGetArraySubscript(v, &arg, &to, i);

					if ((name = jsonpath_variable(&arg)) != NULL)
						return name;
					if (range && (name = jsonpath_variable(&to)) != NULL)
						return name;
				}
				break;
			default:
				break;
		}
		if (!jspGetNext(v, &arg))
			return NULL;
		*v = arg;
	}
}

/*
 * parse_condition parses cond (Allma syntax first, then a PostgreSQL
 * jsonpath) into a ParsedCond in CurrentMemoryContext.  NULL + *errmsg
 * when it is neither.  Never throws for bad input.
 */
static ParsedCond *
parse_condition(const char *cond, char **errmsg)
{
	ParsedCond *pc = palloc0(sizeof(ParsedCond));
	char	   *why = NULL;
	char	   *pgerr = NULL;
	char	   *copy = pstrdup(cond);

	if (*trim(copy) == '\0')
	{
		if (errmsg)
			*errmsg = pstrdup("The condition is empty.");
		return NULL;
	}
	if (parse_allma(cond, pc, &why))
		return pc;

	pc->is_pg = true;
	pc->jsp = allma_jsonpath_parse(cond, &pgerr);
	if (pc->jsp != NULL)
	{
		JsonPathItem v;
		char	   *var;

		jspInit(&v, pc->jsp);
		var = jsonpath_variable(&v);
		if (var != NULL)
		{
			if (errmsg)
				*errmsg = psprintf("%s As a PostgreSQL jsonpath it uses the variable \"$%s\", but conditions have no variables.",
								   why, var);
			return NULL;
		}
		pc->pg_predicate = jsonpath_is_predicate(pc->jsp);
		return pc;
	}
	if (errmsg)
		*errmsg = psprintf("%s It is not a PostgreSQL jsonpath either: %s.", why, pgerr);
	return NULL;
}

/* the parse function of the cache */
static void *
parse_condition_text(const char *text, void *arg, char **errmsg)
{
	return parse_condition(text, errmsg);
}

/*
 * get_condition returns the parsed form of cond from the cache, parsing
 * and caching it on a miss.  NULL + *errmsg when it does not parse.
 */
static ParsedCond *
get_condition(const char *cond, char **errmsg)
{
	return allma_parsecache_get(&cond_cache, cond, parse_condition_text, NULL,
								errmsg);
}


/* ---------------------------------------------------------------------
 * JavaScript values
 * ---------------------------------------------------------------------
 */

/* the JavaScript view of a jsonb value (NULL: undefined) */
static JsVal
js_from_jsonb(Jsonb *jb)
{
	JsVal		v;
	JsonbValue	sv;

	memset(&v, 0, sizeof(v));
	if (jb == NULL)
	{
		v.kind = JS_UNDEFINED;
		return v;
	}
	if (!allma_jsonb_scalar(jb, &sv))
	{
		v.kind = JS_OBJECT;
		v.jb = jb;
		return v;
	}
	switch (sv.type)
	{
		case jbvNull:
			v.kind = JS_NULL;
			break;
		case jbvBool:
			v.kind = JS_BOOL;
			v.b = sv.val.boolean;
			break;
		case jbvNumeric:
			v.kind = JS_NUMBER;
			v.num = DatumGetFloat8(DirectFunctionCall1(numeric_float8_no_overflow,
													   NumericGetDatum(sv.val.numeric)));
			break;
		case jbvString:
			v.kind = JS_STRING;
			v.str = sv.val.string.val;
			v.len = sv.val.string.len;
			break;
		default:
			v.kind = JS_UNDEFINED;
			break;
	}
	return v;
}

/* appends a number as JavaScript's Number.prototype.toString does */
static void
js_number_text(StringInfo buf, double d)
{
	int			prec;
	char		tmp[64];

	if (isnan(d))
		appendStringInfoString(buf, "NaN");
	else if (isinf(d))
		appendStringInfoString(buf, d > 0 ? "Infinity" : "-Infinity");
	else if (d == floor(d) && fabs(d) < 1e21)
		appendStringInfo(buf, "%.0f", d == 0 ? 0.0 : d);
	else
	{
		/* the shortest form that reads back as the same double */
		for (prec = 1; prec <= 17; prec++)
		{
			snprintf(tmp, sizeof(tmp), "%.*g", prec, d);
			if (strtod(tmp, NULL) == d)
				break;
		}
		appendStringInfoString(buf, tmp);
	}
}

/*
 * js_text appends JavaScript's String(v) for primitives, and for arrays
 * and objects their ToPrimitive form: elements joined by "," (null and
 * undefined elements empty), "[object Object]" for objects.
 */
static void
js_text(StringInfo buf, JsVal v)
{
	switch (v.kind)
	{
		case JS_UNDEFINED:
			appendStringInfoString(buf, "undefined");
			break;
		case JS_NULL:
			appendStringInfoString(buf, "null");
			break;
		case JS_BOOL:
			appendStringInfoString(buf, v.b ? "true" : "false");
			break;
		case JS_NUMBER:
			js_number_text(buf, v.num);
			break;
		case JS_STRING:
			appendBinaryStringInfo(buf, v.str, v.len);
			break;
		case JS_OBJECT:
			if (allma_jsonb_is_array(v.jb))
			{
				List	   *elems = allma_jsonb_array_elements(v.jb);
				ListCell   *lc;
				bool		first = true;

				foreach(lc, elems)
				{
					JsVal		e = js_from_jsonb((Jsonb *) lfirst(lc));

					if (!first)
						appendStringInfoChar(buf, ',');
					first = false;
					if (e.kind != JS_NULL && e.kind != JS_UNDEFINED)
						js_text(buf, e);
				}
			}
			else
				appendStringInfoString(buf, "[object Object]");
			break;
	}
}

/* ToPrimitive: arrays and objects become their string form */
static JsVal
js_to_primitive(JsVal v)
{
	StringInfoData buf;

	if (v.kind != JS_OBJECT)
		return v;
	initStringInfo(&buf);
	js_text(&buf, v);
	v.kind = JS_STRING;
	v.str = buf.data;
	v.len = buf.len;
	v.jb = NULL;
	return v;
}

/* JavaScript's Number(string) */
static double
js_string_to_number(const char *s, int len)
{
	char	   *tmp = pnstrdup(s, len);
	char	   *t = trim(tmp);
	double		d;
	const char *digits;
	int			base = 0;

	if (*t == '\0')
		return 0.0;
	if (strcmp(t, "Infinity") == 0 || strcmp(t, "+Infinity") == 0)
		return get_float8_infinity();
	if (strcmp(t, "-Infinity") == 0)
		return -get_float8_infinity();
	if (t[0] == '0' && (t[1] == 'x' || t[1] == 'X'))
		base = 16;
	else if (t[0] == '0' && (t[1] == 'o' || t[1] == 'O'))
		base = 8;
	else if (t[0] == '0' && (t[1] == 'b' || t[1] == 'B'))
		base = 2;
	if (base != 0)
	{
		d = 0;
		digits = t + 2;
		if (*digits == '\0')
			return get_float8_nan();
		for (; *digits; digits++)
		{
			int			dv;

			if (isdigit((unsigned char) *digits))
				dv = *digits - '0';
			else if (isalpha((unsigned char) *digits))
				dv = tolower((unsigned char) *digits) - 'a' + 10;
			else
				return get_float8_nan();
			if (dv >= base)
				return get_float8_nan();
			d = d * base + dv;
		}
		return d;
	}
	if (parse_number(t, &d))
		return d;
	return get_float8_nan();
}

/* JavaScript's ToNumber for primitives */
static double
js_to_number(JsVal v)
{
	switch (v.kind)
	{
		case JS_UNDEFINED:
			return get_float8_nan();
		case JS_NULL:
			return 0.0;
		case JS_BOOL:
			return v.b ? 1.0 : 0.0;
		case JS_NUMBER:
			return v.num;
		case JS_STRING:
			return js_string_to_number(v.str, v.len);
		case JS_OBJECT:
			return js_to_number(js_to_primitive(v));
	}
	return get_float8_nan();
}

static bool
js_is_nullish(JsVal v)
{
	return v.kind == JS_UNDEFINED || v.kind == JS_NULL;
}

/* strict equality; objects and arrays compare by JSON value */
static bool
js_strict_eq(JsVal a, JsVal b)
{
	if (a.kind != b.kind)
		return false;
	switch (a.kind)
	{
		case JS_UNDEFINED:
		case JS_NULL:
			return true;
		case JS_BOOL:
			return a.b == b.b;
		case JS_NUMBER:
			return a.num == b.num;
		case JS_STRING:
			return a.len == b.len && memcmp(a.str, b.str, a.len) == 0;
		case JS_OBJECT:
			return compareJsonbContainers(&a.jb->root, &b.jb->root) == 0;
	}
	return false;
}

/* JavaScript's IsLooselyEqual (==) */
static bool
js_loose_eq(JsVal a, JsVal b)
{
	JsVal		n;

	if (a.kind == b.kind)
		return js_strict_eq(a, b);
	if (js_is_nullish(a) || js_is_nullish(b))
		return js_is_nullish(a) && js_is_nullish(b);
	if (a.kind == JS_NUMBER && b.kind == JS_STRING)
		return a.num == js_to_number(b);
	if (a.kind == JS_STRING && b.kind == JS_NUMBER)
		return js_to_number(a) == b.num;
	memset(&n, 0, sizeof(n));
	n.kind = JS_NUMBER;
	if (a.kind == JS_BOOL)
	{
		n.num = a.b ? 1 : 0;
		return js_loose_eq(n, b);
	}
	if (b.kind == JS_BOOL)
	{
		n.num = b.b ? 1 : 0;
		return js_loose_eq(a, n);
	}
	if (a.kind == JS_OBJECT)
		return js_loose_eq(js_to_primitive(a), b);
	if (b.kind == JS_OBJECT)
		return js_loose_eq(a, js_to_primitive(b));
	return false;
}

/*
 * js_compare implements < > <= >=: two strings compare by code point
 * (UTF-8 byte order), anything else numerically; NaN gives false.
 */
static bool
js_compare(JsVal a, JsVal b, CondOp op)
{
	int			cmp;

	a = js_to_primitive(a);
	b = js_to_primitive(b);
	if (a.kind == JS_STRING && b.kind == JS_STRING)
	{
		cmp = memcmp(a.str, b.str, Min(a.len, b.len));
		if (cmp == 0)
			cmp = (a.len > b.len) - (a.len < b.len);
	}
	else
	{
		double		x = js_to_number(a);
		double		y = js_to_number(b);

		if (isnan(x) || isnan(y))
			return false;
		cmp = (x > y) - (x < y);
	}
	switch (op)
	{
		case COP_LT:
			return cmp < 0;
		case COP_LE:
			return cmp <= 0;
		case COP_GT:
			return cmp > 0;
		case COP_GE:
			return cmp >= 0;
		default:
			return false;
	}
}

/* finds needle in haystack (lengths given) */
static bool
bytes_contain(const char *hay, int hlen, const char *needle, int nlen)
{
	int			i;

	for (i = 0; i + nlen <= hlen; i++)
		if (memcmp(hay + i, needle, nlen) == 0)
			return true;
	return false;
}

/*
 * js_word_op implements endsWith, startsWith and contains.  The string
 * operators need a string on the left and a primitive on the right
 * (converted with String()); contains also accepts an array on the left
 * and tests whether an element is strictly equal to the right side.
 */
static bool
js_word_op(JsVal a, JsVal b, CondOp op)
{
	StringInfoData needle;

	if (op == COP_CONTAINS && a.kind == JS_OBJECT && allma_jsonb_is_array(a.jb))
	{
		List	   *elems = allma_jsonb_array_elements(a.jb);
		ListCell   *lc;

		foreach(lc, elems)
		{
			if (js_strict_eq(js_from_jsonb((Jsonb *) lfirst(lc)), b))
				return true;
		}
		return false;
	}
	if (a.kind != JS_STRING || b.kind == JS_UNDEFINED || b.kind == JS_OBJECT)
		return false;
	initStringInfo(&needle);
	js_text(&needle, b);
	if (needle.len > a.len)
		return false;
	switch (op)
	{
		case COP_STARTS_WITH:
			return memcmp(a.str, needle.data, needle.len) == 0;
		case COP_ENDS_WITH:
			return memcmp(a.str + a.len - needle.len, needle.data, needle.len) == 0;
		case COP_CONTAINS:
			return bytes_contain(a.str, a.len, needle.data, needle.len);
		default:
			return false;
	}
}


/* ---------------------------------------------------------------------
 * Evaluation
 * ---------------------------------------------------------------------
 */

/* evaluates one atom over doc */
static bool
eval_atom(CondAtom *atom, Jsonb *doc)
{
	Jsonb	   *left = allma_path_get(doc, atom->lhs);
	JsVal		a;
	JsVal		b;
	bool		result;

	if (atom->op == COP_TRUTHY)
		return allma_jsonb_truthy(left) != atom->negate;

	a = js_from_jsonb(left);
	memset(&b, 0, sizeof(b));
	switch (atom->rkind)
	{
		case RHS_UNDEFINED:
		case RHS_NONE:
			b.kind = JS_UNDEFINED;
			break;
		case RHS_NULL:
			b.kind = JS_NULL;
			break;
		case RHS_BOOL:
			b.kind = JS_BOOL;
			b.b = atom->rbool;
			break;
		case RHS_NUMBER:
			b.kind = JS_NUMBER;
			b.num = atom->rnum;
			break;
		case RHS_STRING:
			b.kind = JS_STRING;
			b.str = atom->rtext;
			b.len = atom->rlen;
			break;
		case RHS_PATH:
			b = js_from_jsonb(allma_path_get(doc, atom->rtext));
			break;
	}

	switch (atom->op)
	{
		case COP_LOOSE_EQ:
			result = js_loose_eq(a, b);
			break;
		case COP_LOOSE_NE:
			result = !js_loose_eq(a, b);
			break;
		case COP_STRICT_EQ:
			result = js_strict_eq(a, b);
			break;
		case COP_STRICT_NE:
			result = !js_strict_eq(a, b);
			break;
		case COP_LT:
		case COP_LE:
		case COP_GT:
		case COP_GE:
			result = js_compare(a, b, atom->op);
			break;
		default:
			result = js_word_op(a, b, atom->op);
			break;
	}
	return result != atom->negate;
}

/* evaluates a PostgreSQL jsonpath condition over doc (errors suppressed) */
static bool
eval_pg(ParsedCond *pc, Jsonb *doc)
{
	Jsonb	   *res;
	JsonbValue *first;

	res = DatumGetJsonbP(DirectFunctionCall4(jsonb_path_query_array,
											 JsonbPGetDatum(doc),
											 PointerGetDatum(pc->jsp),
											 JsonbPGetDatum(allma_jsonb_empty_object()),
											 BoolGetDatum(true)));
	if (JB_ROOT_COUNT(res) == 0)
		return false;
	first = getIthJsonbValueFromContainer(&res->root, 0);
	if (pc->pg_predicate)
		return first->type == jbvBool && first->val.boolean;
	return allma_jsonb_truthy(JsonbValueToJsonb(first));
}

bool
allma_condition_check(const char *cond, char **errmsg)
{
	return get_condition(cond, errmsg) != NULL;
}

/*
 * allma_condition_eval evaluates cond over doc (NULL: an empty document).
 * Throws ERRCODE_ALLMA_INVALID_CONDITION when cond does not parse.
 */
bool
allma_condition_eval(const char *cond, Jsonb *doc)
{
	char	   *err = NULL;
	ParsedCond *pc = get_condition(cond, &err);
	int			g;

	if (pc == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_ALLMA_INVALID_CONDITION),
				 errmsg("invalid condition \"%s\"", cond),
				 errdetail("%s", err)));
	if (doc == NULL)
		doc = allma_jsonb_empty_object();
	if (pc->is_pg)
		return eval_pg(pc, doc);

	/*
	 * Evaluating atoms only uses the path cache, never this one, so pc stays
	 * valid throughout.
	 */
	for (g = 0; g < pc->ngroups; g++)
	{
		int			i;
		bool		all = true;

		for (i = pc->group_start[g]; i < pc->group_start[g + 1]; i++)
		{
			if (!eval_atom(&pc->atoms[i], doc))
			{
				all = false;
				break;
			}
		}
		if (all)
			return true;
	}
	return false;
}

/*
 * allma_eval_condition(condition text, context jsonb) RETURNS boolean
 */
Datum
allma_eval_condition(PG_FUNCTION_ARGS)
{
	char	   *cond = text_to_cstring(PG_GETARG_TEXT_PP(0));
	Jsonb	   *doc = PG_GETARG_JSONB_P(1);

	PG_RETURN_BOOL(allma_condition_eval(cond, doc));
}

/*
 * Test entry point, not in the extension's SQL script: the regression
 * tests create it with CREATE FUNCTION ... AS '$libdir/allma'.
 *
 * allma_test_condition_check(condition text) RETURNS text: NULL when the
 * condition parses, else the message.
 */
PG_FUNCTION_INFO_V1(allma_test_condition_check);

Datum
allma_test_condition_check(PG_FUNCTION_ARGS)
{
	char	   *err = NULL;

	if (allma_condition_check(text_to_cstring(PG_GETARG_TEXT_PP(0)), &err))
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(err ? err : "(no message)"));
}
