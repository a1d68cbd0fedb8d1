/*-------------------------------------------------------------------------
 *
 * http_limits.c
 *	  What one worker's HTTP client may hold: the limits the allma.http_*
 *	  settings ask for, bounded by the sockets the worker may open.
 *
 * Every request in flight holds a socket.  Sockets are not PostgreSQL's
 * virtual file descriptors, so the worker raises its soft open-files limit
 * to the hard one, and keeps in flight at most what that limit leaves
 * beside max_files_per_process and a reserve.
 *
 * IDENTIFICATION
 *	  src/http_limits.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>
#include <sys/resource.h>

#include "storage/fd.h"

#include "allma.h"
#include "limit_gucs.h"
#include "http_limits.h"

/*
 * allma_http_raise_fd_limit: every HTTP request in flight holds a socket, and the
 * default soft limit (often 1024) would cap a worker far below
 * allma.http_max_in_flight.  Sockets are not PostgreSQL's virtual file
 * descriptors, so raising the soft limit to the hard one is safe.
 */
void
allma_http_raise_fd_limit(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max)
	{
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
			ereport(DEBUG1, (errmsg_internal("allma could not raise its file descriptor limit: %m")));
	}
}

/*
 * fd_room: how many sockets this worker can hold beside PostgreSQL's own
 * files (max_files_per_process) and a reserve; -1 when unknown.
 */
static int
fd_room(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY)
		return -1;
	return (int) Min((rlim_t) INT_MAX, rl.rlim_cur) - max_files_per_process - 64;
}

void
allma_http_limits_from_gucs(AllmaHttpLimits *limits)
{
	static int	said_fd_room = 0;
	int			room = fd_room();

	memset(limits, 0, sizeof(*limits));
	limits->max_in_flight = allma_http_max_in_flight;
	if (room >= 0 && limits->max_in_flight > Max(room, 16))
	{
		limits->max_in_flight = Max(room, 16);
		if (said_fd_room != limits->max_in_flight)
			ereport(LOG,
					(errmsg("allma worker keeps at most %d HTTP requests in flight, not allma.http_max_in_flight = %d",
							limits->max_in_flight, allma_http_max_in_flight),
					 errdetail("Each request holds a socket; the open-files limit (ulimit -n) leaves room for %d beside max_files_per_process = %d.",
							   Max(room, 0), max_files_per_process),
					 errhint("Raise the server's open-files limit (LimitNOFILE in its systemd unit) or lower allma.http_max_in_flight.")));
		said_fd_room = limits->max_in_flight;
	}
	limits->max_per_host = allma_http_max_per_host;
	limits->connect_timeout_ms = allma_http_connect_timeout_ms;
	limits->timeout_ms = allma_http_timeout_ms;
	limits->max_response_bytes = allma_http_max_response_bytes;
	limits->max_inflight_bytes = (size_t) allma_max_inflight_kb * 1024;	/* limit_gucs.c */
}
