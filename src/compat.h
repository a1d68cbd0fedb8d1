/*-------------------------------------------------------------------------
 *
 * compat.h
 *	  What differs between the PostgreSQL major versions allma may be built
 *	  against (15 to 18), in one place.
 *
 * allma is written against PostgreSQL 15.  Every server API it calls whose
 * name or signature changed in a later major version is reached through a
 * macro below, so that porting is a change of this header, not of the code
 * that calls it.  Code must not use the raw names listed here.
 *
 * Checked for 15 to 18, among the APIs the extension calls:
 *
 *	  changed, wrapped here
 *		MyProc->lxid			17: MyProc->vxid.lxid
 *		MyProc->pgprocno		17: gone; GetNumberFromPGProc(MyProc)
 *		pg_database_ownercheck	16: object_ownercheck(DatabaseRelationId, ...)
 *		pg_proc_aclcheck		16: object_aclcheck(ProcedureRelationId, ...)
 *		pg_namespace_aclcheck	16: object_aclcheck(NamespaceRelationId, ...)
 *		CreateWaitEventSet		17: takes a ResourceOwner (NULL: lives as
 *								long as the process) instead of a context
 *		pg_b64_encode			18: the source is "const uint8 *"
 *		DATCONNLIMIT_INVALID_DB	15.4 and later minor releases only
 *
 *	  unchanged from 15 to 18 (no wrapper needed)
 *		shmem_request_hook and RequestAddinShmemSpace (15 and later: the
 *		hook is where the request must be made); background worker
 *		registration, BackgroundWorkerInitializeConnection(ByOid) with flags
 *		0; BeginInternalSubTransaction / ReleaseCurrentSubTransaction /
 *		RollbackAndReleaseCurrentSubTransaction and saving
 *		CurrentResourceOwner around them (17's resource owner rework changed
 *		only how custom resource kinds are registered, which allma has none
 *		of); the jsonpath item walk (jspInit, jspGetNext, jspGetArg,
 *		jspGetLeftArg, jspGetRightArg, jspGetArraySubscript; 17 adds item
 *		types, which the walks' default branches cover); jsonpath_in,
 *		jsonb_path_query_array; SPI including SPI_execute_plan_extended;
 *		NewGUCNestLevel / AtEOXact_GUC / set_config_option; the GUC
 *		definition functions, check hooks and MarkGUCPrefixReserved;
 *		InitMaterializedSRF; ConditionVariableTimedSleep; WaitLatch and
 *		WaitEventSetWait with PG_WAIT_EXTENSION; RegisterXactCallback and
 *		RegisterSubXactCallback; the ProcessUtility_hook signature;
 *		get_extension_oid; escape_json; int64_to_numeric and
 *		numeric_float8_no_overflow.
 *
 *	  not used by allma: pg_strtoint*, TupleDescAttr (SPI hands out the
 *	  values), custom wait events (17) and PG_MODULE_MAGIC_EXT (18), which
 *	  would be optional improvements.
 *
 * IDENTIFICATION
 *	  src/compat.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ALLMA_COMPAT_H
#define ALLMA_COMPAT_H

#include "postgres.h"

#include "catalog/pg_database.h"
#include "catalog/pg_proc.h"
#include "common/base64.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "utils/acl.h"
#include "utils/memutils.h"

#if PG_VERSION_NUM < 150000
#error "allma needs PostgreSQL 15 or later"
#endif

/* the local transaction id of this backend's current transaction */
#if PG_VERSION_NUM >= 170000
#define ALLMA_MY_LXID			(MyProc->vxid.lxid)
#else
#define ALLMA_MY_LXID			(MyProc->lxid)
#endif

/* this backend's PGPROC number, whose latch others may set */
#if PG_VERSION_NUM >= 170000
#define ALLMA_MY_PROCNO			GetNumberFromPGProc(MyProc)
#else
#define ALLMA_MY_PROCNO			(MyProc->pgprocno)
#endif

/* the latch of the process with PGPROC number procno */
#define ALLMA_PROC_LATCH(procno)	(&GetPGProcByNumber(procno)->procLatch)

/* may roleid drop (own) database dboid? */
#if PG_VERSION_NUM >= 160000
#define allma_database_ownercheck(dboid, roleid) \
	object_ownercheck(DatabaseRelationId, (dboid), (roleid))
#else
#define allma_database_ownercheck(dboid, roleid) \
	pg_database_ownercheck((dboid), (roleid))
#endif

/* ACL_EXECUTE and the like on a function */
#if PG_VERSION_NUM >= 160000
#define allma_proc_aclcheck(procoid, roleid, mode) \
	object_aclcheck(ProcedureRelationId, (procoid), (roleid), (mode))
#else
#define allma_proc_aclcheck(procoid, roleid, mode) \
	pg_proc_aclcheck((procoid), (roleid), (mode))
#endif

/* ACL_CREATE and the like on a schema */
#if PG_VERSION_NUM >= 160000
#define allma_namespace_aclcheck(nspoid, roleid, mode) \
	object_aclcheck(NamespaceRelationId, (nspoid), (roleid), (mode))
#else
#define allma_namespace_aclcheck(nspoid, roleid, mode) \
	pg_namespace_aclcheck((nspoid), (roleid), (mode))
#endif

/* a wait event set that lives as long as the process */
#if PG_VERSION_NUM >= 170000
#define allma_create_session_wait_set(nevents) \
	CreateWaitEventSet(NULL, (nevents))
#else
#define allma_create_session_wait_set(nevents) \
	CreateWaitEventSet(TopMemoryContext, (nevents))
#endif

/* base64 of len bytes at src into dst (dstlen bytes); -1 on overflow */
#if PG_VERSION_NUM >= 180000
#define allma_b64_encode(src, len, dst, dstlen) \
	pg_b64_encode((const uint8 *) (src), (len), (dst), (dstlen))
#else
#define allma_b64_encode(src, len, dst, dstlen) \
	pg_b64_encode((const char *) (src), (len), (dst), (dstlen))
#endif

/*
 * pg_database.datconnlimit of a database whose DROP DATABASE was
 * interrupted (only defined by minor releases from 15.4 on)
 */
#ifndef DATCONNLIMIT_INVALID_DB
#define DATCONNLIMIT_INVALID_DB	(-2)
#endif

#endif							/* ALLMA_COMPAT_H */
