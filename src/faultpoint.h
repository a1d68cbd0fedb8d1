/*-------------------------------------------------------------------------
 *
 * faultpoint.h
 *	  Engine faults: fault points, compiled only into a test build.
 *
 * ALLMA_FAULT_POINT("name") marks a place where a test may make the worker
 * fail: raise an ERROR, exit with FATAL, or SIGKILL itself (the postmaster
 * then restarts the whole server).  Only a build made with
 * "make FAULT_INJECTION=1" (-DALLMA_FAULT_INJECTION) has them and the
 * setting that drives them, allma.fault_point = '<name>:<error|fatal|sigkill>';
 * in any other build the macro is nothing at all.
 *
 * Names: after-claim, before-http-send, after-http-send, mid-fan-out,
 * before-join (and during-resume, for the lifecycle's resumes).  See
 * docs/engine-faults.md for the state each one ends in.
 *
 * IDENTIFICATION
 *	  src/faultpoint.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ALLMA_FAULTPOINT_H
#define ALLMA_FAULTPOINT_H

#ifdef ALLMA_FAULT_INJECTION
extern void allma_fault_point(const char *name);
extern void allma_fault_point_step(const char *step_id);
#define ALLMA_FAULT_POINT(name) allma_fault_point(name)
#define ALLMA_FAULT_POINT_STEP(step_id) allma_fault_point_step(step_id)
#else
#define ALLMA_FAULT_POINT(name) ((void) 0)
#define ALLMA_FAULT_POINT_STEP(step_id) ((void) 0)
#endif

extern void allma_faultpoint_define_gucs(void);

#endif							/* ALLMA_FAULTPOINT_H */
