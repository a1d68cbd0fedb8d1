/*-------------------------------------------------------------------------
 *
 * limit_gucs.h
 *	  The settings that bound what one definition, input or server response
 *	  may cost (docs/limits.md).
 *
 * IDENTIFICATION
 *	  src/limit_gucs.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ALLMA_LIMIT_GUCS_H
#define ALLMA_LIMIT_GUCS_H

extern int	allma_template_max_iterations;
extern int	allma_template_max_output;
extern int	allma_max_retry_after_ms;
extern int	allma_max_input_bytes;
extern int	allma_max_inflight_kb;

extern void allma_define_limit_gucs(void);

#endif							/* ALLMA_LIMIT_GUCS_H */
