/*-------------------------------------------------------------------------
 *
 * parsecache.h
 *	  A bounded per-process cache of parsed texts (JSONPaths, conditions,
 *	  templates), keyed by the text.
 *
 * Usage:
 *
 *	  static AllmaParseCache cache = ALLMA_PARSECACHE_INIT("allma path cache",
 *														  256, 1024 * 1024);
 *	  ParsedThing *p = allma_parsecache_get(&cache, text, parse_thing, NULL, &err);
 *
 * On a miss the parse function runs with CurrentMemoryContext set to a new
 * small context that belongs to the entry, so everything it allocates
 * (the parsed form and its scratch) lives as long as the entry and nothing
 * has to be copied.  When it fails (returns NULL) its context is freed and
 * its message is copied into the caller's context first.
 *
 * The cache lives in its own memory context under TopMemoryContext and is
 * emptied at once, every entry freed, when adding an entry would pass
 * max_entries entries or max_key_bytes bytes of key text.  So a parsed form
 * returned by allma_parsecache_get must not be used after anything that
 * may call allma_parsecache_get on the same cache again (such as parsing
 * or evaluating a nested text of the same kind): copy what is needed
 * first.
 *
 * IDENTIFICATION
 *	  src/parsecache.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ALLMA_PARSECACHE_H
#define ALLMA_PARSECACHE_H

#include "postgres.h"

struct ParseCacheEntry;

typedef struct AllmaParseCache
{
	const char *name;			/* identifies its memory context (a constant) */
	int			max_entries;
	Size		max_key_bytes;

	/* private to parsecache.c */
	MemoryContext cxt;
	struct ParseCacheEntry **buckets;
	int			nbuckets;
	int			nentries;
	Size		key_bytes;
} AllmaParseCache;

#define ALLMA_PARSECACHE_INIT(name, max_entries, max_key_bytes) \
	{(name), (max_entries), (max_key_bytes), NULL, NULL, 0, 0, 0}

/*
 * A parse function: returns the parsed form of text (allocated in
 * CurrentMemoryContext), or NULL with *errmsg set (may be left NULL) when
 * text does not parse.  It may throw only on out-of-memory and the like.
 */
typedef void *(*AllmaParseFunction) (const char *text, void *arg, char **errmsg);

/*
 * allma_parsecache_get returns the parsed form of text, from the cache or
 * by calling parse (with arg) and keeping its result.  NULL with *errmsg
 * (in the caller's context, or NULL) when text does not parse; failures
 * are not cached.
 */
extern void *allma_parsecache_get(AllmaParseCache *cache, const char *text,
								  AllmaParseFunction parse, void *arg,
								  char **errmsg);

/* allma_parsecache_reset empties the cache */
extern void allma_parsecache_reset(AllmaParseCache *cache);

#endif							/* ALLMA_PARSECACHE_H */
