/*
 * bench/loadgen.c: a bare libcurl-multi HTTP load generator, the practical
 * ceiling that allma's HTTP steps are measured against (bench/scenarios/
 * httpceiling.sh).  It does what allma's worker does for its requests and
 * nothing else: one multi handle, keep-alive connections reused from the
 * multi handle's cache, easy handles reused, at most CONC requests in flight;
 * as soon as one completes the next one starts (sustained arrivals), until
 * TOTAL have completed.
 *
 *   gcc -O2 -o loadgen bench/loadgen.c -lcurl
 *   loadgen -c 2000 -n 10000 [-X POST] [-d BODY] [-H 'Name: value']... URL
 *
 * Prints one line: completed, failed, seconds (first request sent to the
 * last completion), completions per second, and the peak number of
 * requests in flight.  Only for the mock on 127.0.0.1: the URL must start
 * with http://127.0.0.1.  Exit status 1 if any request failed (a transport
 * error or a status >= 400).
 */
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#define MAX_HEADERS 16

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* the response body is read and dropped, as allma reads it into a buffer */
static size_t
discard(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	size_t	   *bytes = userdata;

	(void) ptr;
	*bytes += size * nmemb;
	return size * nmemb;
}

static size_t received = 0;

static void
setup(CURL *e, const char *url, const char *method, const char *body,
	  struct curl_slist *headers)
{
	curl_easy_setopt(e, CURLOPT_URL, url);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, discard);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, &received);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 60000L);
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
	if (headers)
		curl_easy_setopt(e, CURLOPT_HTTPHEADER, headers);
	if (body)
	{
		curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, (long) strlen(body));
	}
	if (strcmp(method, "GET") != 0 && strcmp(method, "POST") != 0)
		curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
}

static void
usage(void)
{
	fprintf(stderr, "usage: loadgen -c CONC -n TOTAL [-X METHOD] [-d BODY] [-H HEADER]... URL\n");
	exit(2);
}

int
main(int argc, char **argv)
{
	long		conc = 2000,
				total = 10000;
	const char *method = "GET",
			   *body = NULL,
			   *url;
	struct curl_slist *headers = NULL;
	int			nheaders = 0,
				opt;
	CURLM	   *multi;
	CURL	  **free_handles;
	long		nfree = 0,
				started = 0,
				done = 0,
				failed = 0,
				running = 0,
				peak = 0;
	double		t0,
				t1;
	struct rlimit rl;

	while ((opt = getopt(argc, argv, "c:n:X:d:H:")) != -1)
	{
		switch (opt)
		{
			case 'c':
				conc = atol(optarg);
				break;
			case 'n':
				total = atol(optarg);
				break;
			case 'X':
				method = optarg;
				break;
			case 'd':
				body = optarg;
				break;
			case 'H':
				if (++nheaders > MAX_HEADERS)
					usage();
				headers = curl_slist_append(headers, optarg);
				break;
			default:
				usage();
		}
	}
	if (optind != argc - 1 || conc < 1 || conc > 100000 || total < 1)
		usage();
	url = argv[optind];
	if (strncmp(url, "http://127.0.0.1", 16) != 0)
	{
		fprintf(stderr, "loadgen: only http://127.0.0.1 (the mock) is allowed\n");
		return 2;
	}
	if (body && strcmp(method, "GET") == 0)
		method = "POST";

	/* one socket per request in flight */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max)
	{
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}

	curl_global_init(CURL_GLOBAL_DEFAULT);
	multi = curl_multi_init();
	/* keep every connection: up to CONC of them to the one host */
	curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, conc);
	curl_multi_setopt(multi, CURLMOPT_MAX_HOST_CONNECTIONS, 0L);
	curl_multi_setopt(multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, 0L);
	free_handles = calloc(conc, sizeof(CURL *));
	if (free_handles == NULL)
		return 2;

	t0 = now_s();
	while (done < total)
	{
		CURLMsg    *m;
		int			left,
					still;

		/* start requests while there is room */
		while (running < conc && started < total)
		{
			CURL	   *e = nfree > 0 ? free_handles[--nfree] : curl_easy_init();

			setup(e, url, method, body, headers);
			curl_multi_add_handle(multi, e);
			running++;
			started++;
		}
		if (running > peak)
			peak = running;
		curl_multi_perform(multi, &still);
		while ((m = curl_multi_info_read(multi, &left)) != NULL)
		{
			long		status = 0;

			if (m->msg != CURLMSG_DONE)
				continue;
			curl_easy_getinfo(m->easy_handle, CURLINFO_RESPONSE_CODE, &status);
			if (m->data.result != CURLE_OK || status >= 400)
			{
				if (failed < 5)
					fprintf(stderr, "loadgen: request failed: %s, status %ld\n",
							curl_easy_strerror(m->data.result), status);
				failed++;
			}
			curl_multi_remove_handle(multi, m->easy_handle);
			curl_easy_reset(m->easy_handle);
			free_handles[nfree++] = m->easy_handle;
			running--;
			done++;
		}
		if (done < total && running > 0)
			curl_multi_poll(multi, NULL, 0, 100, NULL);
	}
	t1 = now_s();
	printf("completed %ld failed %ld seconds %.3f per_second %.0f peak_in_flight %ld\n",
		   done, failed, t1 - t0, done / (t1 - t0), peak);

	while (nfree > 0)
		curl_easy_cleanup(free_handles[--nfree]);
	curl_multi_cleanup(multi);
	curl_slist_free_all(headers);
	curl_global_cleanup();
	return failed > 0 ? 1 : 0;
}
