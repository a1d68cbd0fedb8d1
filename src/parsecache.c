/*-------------------------------------------------------------------------
 *
 * parsecache.c
 *	  A bounded per-process cache of parsed texts (see parsecache.h), used
 *	  for JSONPaths and dot paths (path.c), conditions (condition.c) and
 *	  templates (template.c).
 *
 * Entries are chained in a fixed array of buckets, indexed by a hash of the
 * text and matched on the whole text.  Each entry has its own small memory
 * context (a child of the cache's), in which the text was parsed, so that
 * a failed parse is freed on its own and emptying the cache is one reset.
 *
 * IDENTIFICATION
 *	  src/parsecache.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/hashfn.h"
#include "utils/memutils.h"

#include "parsecache.h"

typedef struct ParseCacheEntry
{
	struct ParseCacheEntry *next;	/* in its bucket */
	uint32		hash;
	Size		len;
	char	   *text;
	void	   *parsed;
} ParseCacheEntry;

void
allma_parsecache_reset(AllmaParseCache *cache)
{
	if (cache->cxt != NULL)
		MemoryContextReset(cache->cxt);
	cache->buckets = NULL;
	cache->nentries = 0;
	cache->key_bytes = 0;
}

/* the bucket array, (re)made after the cache was created or emptied */
static void
ensure_buckets(AllmaParseCache *cache)
{
	if (cache->cxt == NULL)
	{
		cache->cxt = AllocSetContextCreate(TopMemoryContext, "allma parse cache",
										   ALLOCSET_DEFAULT_SIZES);
		MemoryContextSetIdentifier(cache->cxt, cache->name);
	}
	if (cache->buckets == NULL)
	{
		/* a power of two, about twice the entries */
		cache->nbuckets = 16;
		while (cache->nbuckets < cache->max_entries * 2)
			cache->nbuckets *= 2;
		cache->buckets = MemoryContextAllocZero(cache->cxt,
												sizeof(ParseCacheEntry *) * cache->nbuckets);
	}
}

void *
allma_parsecache_get(AllmaParseCache *cache, const char *text,
					 AllmaParseFunction parse, void *arg, char **errmsg)
{
	Size		len = strlen(text);
	uint32		hash = hash_bytes((const unsigned char *) text, (int) len);
	MemoryContext callercxt = CurrentMemoryContext;
	MemoryContext entrycxt;
	ParseCacheEntry *entry;
	void	   *parsed;
	char	   *err = NULL;

	if (errmsg)
		*errmsg = NULL;
	if (cache->buckets != NULL)
	{
		for (entry = cache->buckets[hash & (cache->nbuckets - 1)];
			 entry != NULL; entry = entry->next)
		{
			if (entry->hash == hash && entry->len == len &&
				memcmp(entry->text, text, len) == 0)
				return entry->parsed;
		}
	}

	/* a miss: make room first, so that the new entry survives */
	if (cache->nentries >= cache->max_entries ||
		cache->key_bytes + len > cache->max_key_bytes)
		allma_parsecache_reset(cache);
	ensure_buckets(cache);

	entrycxt = AllocSetContextCreate(cache->cxt, "allma parsed text",
									 ALLOCSET_SMALL_SIZES);
	MemoryContextSwitchTo(entrycxt);
	PG_TRY();
	{
		parsed = parse(text, arg, &err);
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(callercxt);
		MemoryContextDelete(entrycxt);
		PG_RE_THROW();
	}
	PG_END_TRY();
	MemoryContextSwitchTo(callercxt);

	if (parsed == NULL)
	{
		if (errmsg && err)
			*errmsg = pstrdup(err);
		MemoryContextDelete(entrycxt);
		return NULL;
	}

	entry = MemoryContextAlloc(entrycxt, sizeof(ParseCacheEntry));
	entry->hash = hash;
	entry->len = len;
	entry->text = MemoryContextStrdup(entrycxt, text);
	entry->parsed = parsed;
	entry->next = cache->buckets[hash & (cache->nbuckets - 1)];
	cache->buckets[hash & (cache->nbuckets - 1)] = entry;
	cache->nentries++;
	cache->key_bytes += len;
	return parsed;
}
