/*
 * metrics.c — Prometheus metrics (see metrics.h).
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/http.h>

#include "log.h"
#include "metrics.h"
#include "osdep.h"
#include "proto.h"
#include "util.h"
#include "vm.h"

/* StartVM to ready, in seconds: boots under TCG take a few. */
static const double start_buckets[] = { 0.1, 0.25, 0.5, 1, 2, 3, 5, 10,
	30 };
#define NBUCKETS	(sizeof(start_buckets) / sizeof(start_buckets[0]))

static struct {
	struct evhttp	*http;
	char		 sock_path[108];	/* unix: the socket we made */
	struct util_sock sock;
	uint64_t	 starts, start_failures, crashes, adopted, stops;
	uint64_t	 execs, exec_failures, exec_refused;
	uint64_t	 bytes[3];
	uint64_t	 start_count, start_bucket[NBUCKETS];
	double		 start_sum;
} m;

void
metrics_event(const char *event, json_t *fields)
{
	json_t *v;

	if (strcmp(event, EV_READY) == 0 &&
	    json_is_integer(v = json_object_get(fields, T_VM_READY))) {
		double s = (double)json_integer_value(v) / 1000.0;

		m.starts++;
		m.start_count++;
		m.start_sum += s;
		for (size_t i = 0; i < NBUCKETS; i++)
			if (s <= start_buckets[i])
				m.start_bucket[i]++;
	} else if (strcmp(event, EV_START_FAILED) == 0) {
		m.start_failures++;
	} else if (strcmp(event, EV_CRASHED) == 0) {
		m.crashes++;
	} else if (strcmp(event, EV_ADOPTED) == 0) {
		m.adopted++;
	} else if (strcmp(event, EV_STOPPED) == 0) {
		m.stops++;
	} else if (strcmp(event, EV_EXEC_STARTED) == 0) {
		m.execs++;
	} else if (strcmp(event, EV_EXEC_ENDED) == 0 &&
	    json_is_integer(v = json_object_get(fields, X_EXIT_CODE)) &&
	    json_integer_value(v) == EXIT_CAPSULE_ERROR) {
		m.exec_failures++;
	}
}

void
metrics_exec_refused(void)
{
	m.exec_refused++;
}

void
metrics_bytes(enum metrics_stream s, size_t n)
{
	m.bytes[s] += n;
}

static long
rss_bytes(void)
{
	long n = osdep_rss();

	return n < 0 ? 0 : n;
}

static int
open_fds(void)
{
	int n = osdep_nfds();

	return n < 0 ? 0 : n;
}

#define HELP(f, name, type, help) fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", \
	    name, help, name, type)

static void
counter(FILE *f, const char *name, const char *help, uint64_t v)
{
	HELP(f, name, "counter", help);
	fprintf(f, "%s %llu\n", name, (unsigned long long)v);
}

char *
metrics_text(void)
{
	static const struct { enum vm_state st; const char *name; } states[] = {
		{ VM_STARTING, VMSTATE_STARTING },
		{ VM_RUNNING, VMSTATE_RUNNING },
		{ VM_UNRESPONSIVE, VMSTATE_UNRESPONSIVE },
		{ VM_PAUSED, VMSTATE_PAUSED },
		{ VM_STOPPING, VMSTATE_STOPPING },
		{ VM_STOPPED, VMSTATE_STOPPED },
		{ VM_CRASHED, VMSTATE_CRASHED },
	};
	static const char *const streams[3] = { "stdin", "stdout", "stderr" };
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	if (f == NULL)
		return NULL;
	HELP(f, "capsule_vms", "gauge", "VMs capsuled knows, by state.");
	for (size_t i = 0; i < sizeof(states) / sizeof(states[0]); i++)
		fprintf(f, "capsule_vms{state=\"%s\"} %d\n", states[i].name,
		    vm_count_state(states[i].st));
	counter(f, "capsule_vm_starts_total", "VMs that started and answered.",
	    m.starts);
	counter(f, "capsule_vm_start_failures_total", "StartVM requests that "
	    "failed after they were accepted.", m.start_failures);
	counter(f, "capsule_vm_crashes_total", "VMs that ended on their own, "
	    "not cleanly.", m.crashes);
	counter(f, "capsule_vm_stops_total", "VMs that stopped.", m.stops);
	counter(f, "capsule_vms_adopted_total", "VMs taken over from an "
	    "earlier capsuled.", m.adopted);
	HELP(f, "capsule_vm_start_seconds", "histogram",
	    "From StartVM to the guest agent's answer.");
	for (size_t i = 0; i < NBUCKETS; i++)
		fprintf(f, "capsule_vm_start_seconds_bucket{le=\"%g\"} %llu\n",
		    start_buckets[i], (unsigned long long)m.start_bucket[i]);
	fprintf(f, "capsule_vm_start_seconds_bucket{le=\"+Inf\"} %llu\n",
	    (unsigned long long)m.start_count);
	fprintf(f, "capsule_vm_start_seconds_sum %.3f\n", m.start_sum);
	fprintf(f, "capsule_vm_start_seconds_count %llu\n",
	    (unsigned long long)m.start_count);
	counter(f, "capsule_execs_total", "Commands and copies started in VMs.",
	    m.execs);
	counter(f, "capsule_exec_failures_total", "Commands and copies that "
	    "started, then were lost or could not run (exit 125).",
	    m.exec_failures);
	counter(f, "capsule_exec_refused_total", "Exec and copy requests "
	    "turned down before they started (bad request, VM not ready, too "
	    "many sessions).", m.exec_refused);
	HELP(f, "capsule_exec_bytes_total", "counter",
	    "Bytes through exec streams.");
	for (int i = 0; i < 3; i++)
		fprintf(f, "capsule_exec_bytes_total{stream=\"%s\"} %llu\n",
		    streams[i], (unsigned long long)m.bytes[i]);
	HELP(f, "process_resident_memory_bytes", "gauge",
	    "capsuled's resident memory.");
	fprintf(f, "process_resident_memory_bytes %ld\n", rss_bytes());
	HELP(f, "process_open_fds", "gauge", "capsuled's open descriptors.");
	fprintf(f, "process_open_fds %d\n", open_fds());
	fclose(f);
	return buf;
}

static void
metrics_cb(struct evhttp_request *req, void *arg)
{
	struct evbuffer *out;
	char *text;

	if (evhttp_request_get_command(req) != EVHTTP_REQ_GET) {
		evhttp_send_error(req, 405, "GET only");
		return;
	}
	if ((text = metrics_text()) == NULL ||
	    (out = evbuffer_new()) == NULL) {
		free(text);
		evhttp_send_error(req, 500, "out of memory");
		return;
	}
	evbuffer_add(out, text, strlen(text));
	free(text);
	evhttp_add_header(evhttp_request_get_output_headers(req),
	    "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
	evhttp_send_reply(req, 200, "OK", out);
	evbuffer_free(out);
}

static void
other_cb(struct evhttp_request *req, void *arg)
{
	evhttp_send_error(req, 404, "metrics are at /metrics");
}

int
metrics_listen(struct event_base *base, const char *addr, struct cap_err *err)
{
	char host[128];
	const char *colon;
	unsigned long port;
	char *end;
	int fd;

	if ((m.http = evhttp_new(base)) == NULL)
		return cap_err_set(err, ENOMEM, E_INTERNAL, "out of memory");
	evhttp_set_cb(m.http, "/metrics", metrics_cb, NULL);
	evhttp_set_gencb(m.http, other_cb, NULL);
	/* Scrapers ask often and little: keep their requests small. */
	evhttp_set_max_headers_size(m.http, 8192);
	evhttp_set_max_body_size(m.http, 0);
	evhttp_set_timeout(m.http, 10);
	if (strncmp(addr, "unix:", 5) == 0) {
		if (strlen(addr + 5) >= sizeof(m.sock_path)) {
			cap_err_set(err, ENAMETOOLONG, E_INVALID_ARGUMENT,
			    "metrics_listen %s: the path is too long", addr);
			goto fail;
		}
		/* As for the control socket: a stale one of ours only. */
		if ((fd = util_listen_unix_own(addr + 5, 0600, &m.sock,
		    "metrics_listen", err)) < 0)
			goto fail;
		snprintf(m.sock_path, sizeof(m.sock_path), "%s", addr + 5);
		if (evhttp_accept_socket(m.http, fd) < 0) {
			close(fd);
			util_unlink_own(m.sock_path, &m.sock);
			cap_err_set(err, EIO, E_INTERNAL, "metrics: cannot "
			    "serve on %s", addr);
			goto fail;
		}
		log_info("metrics at http://unix:%s/metrics", addr + 5);
		return 0;
	}
	if ((colon = strrchr(addr, ':')) == NULL ||
	    (size_t)(colon - addr) >= sizeof(host) ||
	    (port = strtoul(colon + 1, &end, 10)) == 0 || port > 65535 ||
	    *end != '\0') {
		cap_err_set(err, EINVAL, E_INVALID_ARGUMENT, "metrics_listen "
		    "\"%s\": want HOST:PORT or unix:/PATH", addr);
		goto fail;
	}
	snprintf(host, sizeof(host), "%.*s", (int)(colon - addr), addr);
	if (host[0] == '[') {		/* [::1]:9464 */
		memmove(host, host + 1, strlen(host));
		host[strcspn(host, "]")] = '\0';
	}
	if (evhttp_bind_socket(m.http, host, (uint16_t)port) < 0) {
		cap_err_set(err, EADDRINUSE, E_INTERNAL, "metrics: cannot "
		    "listen on %s: %s", addr, strerror(errno));
		goto fail;
	}
	log_info("metrics at http://%s/metrics", addr);
	return 0;
fail:
	evhttp_free(m.http);
	m.http = NULL;
	return -1;
}

void
metrics_close(void)
{
	if (m.http != NULL)
		evhttp_free(m.http);
	m.http = NULL;
	util_unlink_own(m.sock_path, &m.sock);
}
