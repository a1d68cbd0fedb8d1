/*-------------------------------------------------------------------------
 *
 * path_parse.h
 *	  Parsed JSONPaths and dot paths, shared by their parser
 *	  (path_parse.c) and their evaluation (path.c).  Internal to those two
 *	  files: everything else goes through path.h.
 *
 * IDENTIFICATION
 *	  src/path_parse.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ALLMA_PATH_PARSE_H
#define ALLMA_PATH_PARSE_H

#include "allma.h"

#include "utils/jsonpath.h"

/* largest index accepted in a path; keeps arithmetic far from overflow */
#define PATH_MAX_INDEX 100000000

/* the kinds of segment a simple path is made of */
typedef enum PathSegKind
{
	SEG_KEY,					/* .name, ['name'] */
	SEG_INDEX,					/* [n]; negative counts from the end */
	SEG_DYNAMIC					/* [$.inner.path], resolved at run time */
} PathSegKind;

typedef struct PathSeg
{
	PathSegKind kind;
	int			index;			/* SEG_INDEX */
	char	   *text;			/* SEG_KEY: key; SEG_DYNAMIC: inner JSONPath */
	int			len;			/* strlen(text) */
} PathSeg;

/* a parsed JSONPath or dot path */
typedef struct ParsedPath
{
	bool		is_dot;			/* a dot path, not a JSONPath */
	bool		simple;			/* only keys, indexes and dynamic segments */
	bool		settable;		/* simple and no negative index */
	bool		dynamic;		/* has a dynamic segment */
	int			nsegs;			/* segments, meaningful when simple */
	PathSeg    *segs;
	char	   *pgtext;			/* PostgreSQL jsonpath; NULL when dynamic */
	JsonPath   *jsp;			/* pgtext compiled, when not simple */
} ParsedPath;

/*
 * allma_path_parse parses a JSONPath (or, with is_dot, a dot path) into a
 * ParsedPath in CurrentMemoryContext.  NULL + *errmsg (a full sentence)
 * on error; never throws for bad input.
 */
extern ParsedPath *allma_path_parse(const char *text, bool is_dot, char **errmsg);

/*
 * allma_path_canonical_index: is [s, s+len) a canonical non-negative
 * integer ("0", "12", not "012") of at most PATH_MAX_INDEX?  Its value in
 * *out (when not NULL).
 */
extern bool allma_path_canonical_index(const char *s, int len, int *out);

#endif							/* ALLMA_PATH_PARSE_H */
