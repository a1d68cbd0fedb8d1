/*-------------------------------------------------------------------------
 *
 * worker_gate.c
 *	  The workers' schema gate: may a pass run against the extension's SQL
 *	  objects as installed in this database?
 *
 * The library may be newer than the extension's SQL objects (binaries
 * upgraded, ALTER EXTENSION allma UPDATE not run yet), or the extension
 * may be missing or dropped.  Every pass first reads the installed version
 * from pg_extension (one index lookup) and runs only when it is
 * ALLMA_SCHEMA_VERSION; it holds the extension object in share mode until
 * it commits, so that DROP EXTENSION waits for the pass instead of
 * deadlocking with it.  A change of the extension's OID or version throws
 * away every cache the worker keeps.  What a closed gate means is said
 * once in the log (shmem.c remembers who said it).
 *
 * IDENTIFICATION
 *	  src/worker_gate.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <ctype.h>

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/indexing.h"
#include "catalog/pg_extension.h"
#include "commands/dbcommands.h"
#include "miscadmin.h"
#include "storage/lmgr.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/rel.h"

#include "shmem.h"
#include "worker_gate.h"

/* the extension as the last pass found it (a change resets every cache) */
static Oid	known_extension_oid = InvalidOid;
static char known_extension_version[NAMEDATALEN] = "";

void
allma_worker_gate_forget(void)
{
	known_extension_oid = InvalidOid;
	known_extension_version[0] = '\0';
}

/*
 * installed_extension returns the OID of extension allma in this database
 * (InvalidOid when it is not installed) and copies its version into
 * version[NAMEDATALEN].  One lookup in pg_extension's name index, like
 * get_extension_oid's.
 */
static Oid
installed_extension(char *version)
{
	Relation	rel;
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tup;
	Oid			extoid = InvalidOid;

	version[0] = '\0';
	rel = table_open(ExtensionRelationId, AccessShareLock);
	ScanKeyInit(&key, Anum_pg_extension_extname, BTEqualStrategyNumber, F_NAMEEQ,
				CStringGetDatum(ALLMA_EXTENSION_NAME));
	scan = systable_beginscan(rel, ExtensionNameIndexId, true, NULL, 1, &key);
	tup = systable_getnext(scan);
	if (HeapTupleIsValid(tup))
	{
		bool		isnull;
		Datum		d = heap_getattr(tup, Anum_pg_extension_extversion,
									 RelationGetDescr(rel), &isnull);

		extoid = ((Form_pg_extension) GETSTRUCT(tup))->oid;
		if (!isnull)
			text_to_cstring_buffer(DatumGetTextPP(d), version, NAMEDATALEN);
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return extoid;
}

/*
 * compare_versions compares two dotted version strings ("1.0", "1.10")
 * component by component as numbers; false when either is not made of
 * numbers and dots.
 */
static bool
compare_versions(const char *a, const char *b, int *cmp)
{
	while (*a || *b)
	{
		char	   *enda;
		char	   *endb;
		long		x;
		long		y;

		if (!isdigit((unsigned char) *a) || !isdigit((unsigned char) *b))
			return false;
		x = strtol(a, &enda, 10);
		y = strtol(b, &endb, 10);
		if (x != y)
		{
			*cmp = x < y ? -1 : 1;
			return true;
		}
		if ((*enda != '.' && *enda != '\0') || (*endb != '.' && *endb != '\0'))
			return false;
		a = *enda ? enda + 1 : enda;
		b = *endb ? endb + 1 : endb;
		if (*a == '\0' && *b != '\0')
		{
			*cmp = -1;
			return true;
		}
		if (*b == '\0' && *a != '\0')
		{
			*cmp = 1;
			return true;
		}
	}
	*cmp = 0;
	return true;
}

/*
 * allma_worker_check_schema is the schema gate: may this pass run against the
 * extension's SQL objects as installed?  Needs a transaction.  When the
 * extension's OID or version changed since the last pass, every cached
 * plan and definition is thrown away (reset_caches).  The first worker to find a version
 * it cannot run against says so in the log (once, not every pass); the
 * first to find it fixed says that it resumes.
 */
AllmaSchemaGate
allma_worker_check_schema(void (*reset_caches) (void))
{
	char		version[NAMEDATALEN];
	Oid			extoid = installed_extension(version);
	char	   *dbname;
	int			cmp;
	AllmaSchemaGate	gate;

	if (extoid != known_extension_oid ||
		strcmp(version, known_extension_version) != 0)
	{
		reset_caches();
		known_extension_oid = extoid;
		strlcpy(known_extension_version, version, NAMEDATALEN);
	}
	if (!OidIsValid(extoid))
		return ALLMA_GATE_NO_EXTENSION;

	/*
	 * The pass holds the extension object in share mode until it commits.
	 * DROP EXTENSION takes that object first (exclusively), before any of
	 * the tables: so it waits for the pass to end, or the pass waits for it
	 * before touching a table.  Without this, a pass holding one table and
	 * wanting the next deadlocked with a DROP holding them the other way
	 * round.  Once granted, the extension may be gone: look again.
	 */
	LockDatabaseObject(ExtensionRelationId, extoid, 0, AccessShareLock);
	if (installed_extension(version) != extoid)
	{
		reset_caches();
		known_extension_oid = InvalidOid;
		known_extension_version[0] = '\0';
		return ALLMA_GATE_NO_EXTENSION;
	}
	if (strcmp(version, ALLMA_SCHEMA_VERSION) == 0)
	{
		if (allma_shmem_gate_open(MyDatabaseId))
			ereport(LOG,
					(errmsg("allma's workers resume: extension \"%s\" is at version %s",
							ALLMA_EXTENSION_NAME, version)));
		return ALLMA_GATE_OPEN;
	}

	if (compare_versions(version, ALLMA_SCHEMA_VERSION, &cmp) && cmp < 0)
		gate = ALLMA_GATE_NEEDS_UPDATE;
	else
		gate = ALLMA_GATE_VERSION_MISMATCH;
	if (!allma_shmem_gate_notice(MyDatabaseId, version))
		return gate;

	dbname = get_database_name(MyDatabaseId);
	if (gate == ALLMA_GATE_NEEDS_UPDATE)
		ereport(LOG,
				(errmsg("allma's workers are idle: extension \"%s\" in database \"%s\" is at version %s, but this allma library needs version %s",
						ALLMA_EXTENSION_NAME, dbname ? dbname : "?", version,
						ALLMA_SCHEMA_VERSION),
				 errdetail("No execution advances until the extension is updated."),
				 errhint("Run ALTER EXTENSION %s UPDATE in database \"%s\"; the workers resume by themselves once it commits.",
						 ALLMA_EXTENSION_NAME, dbname ? dbname : "?")));
	else
		ereport(LOG,
				(errmsg("allma's workers are idle: extension \"%s\" in database \"%s\" is at version %s, which this allma library (schema version %s) cannot run",
						ALLMA_EXTENSION_NAME, dbname ? dbname : "?", version,
						ALLMA_SCHEMA_VERSION),
				 errdetail("No execution advances until the library and the extension match."),
				 errhint("Install the allma binaries of version %s and restart the server.",
						 version)));
	return gate;
}

AllmaWorkerState
allma_worker_gate_state(AllmaSchemaGate gate)
{
	switch (gate)
	{
		case ALLMA_GATE_NO_EXTENSION:
			return ALLMA_WORKER_NO_EXTENSION;
		case ALLMA_GATE_NEEDS_UPDATE:
			return ALLMA_WORKER_NEEDS_UPDATE;
		case ALLMA_GATE_VERSION_MISMATCH:
			return ALLMA_WORKER_VERSION_MISMATCH;
		case ALLMA_GATE_OPEN:
			break;
	}
	return ALLMA_WORKER_IDLE;
}
