/*
 * agent.c — capsule-agent: PID 1 of the guest, serving exec and byte
 * streams for capsuled over one virtio-serial port (see proto/chan.h).
 *
 * One thread and one poll(2) loop: the channel, a signalfd for SIGCHLD,
 * every stream's stdin, stdout and stderr, and whatever sockets net.c,
 * dns.c and sock.c hand it (agent_poll_fd); its timeout is the nearest
 * deadline any of them has. The exec stream table lives here; what a
 * stream does with its fds lives in exec.c, byte streams in sock.c.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE	/* pipe2, ptsname_r, signalfd: CMake defines it too */
#endif
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/random.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"
#include "proto.h"

#define AGENT_MODULES		"/etc/capsule/modules"
/* More modules for a network mode, named by capsule.net= on the kernel
 * command line: only the VMs that use them pay for loading them. */
#define AGENT_MODULES_NAT	"/etc/capsule/modules-nat"
#define AGENT_MODULES_ALLOW	"/etc/capsule/modules-allow"
#define AGENT_WAIT_MS		10000	/* root device, agent port */
#define AGENT_RECHECK_MS	200	/* host disconnected: poll period */
#define AGENT_TERM_MS		2000	/* SHUTDOWN: SIGTERM to SIGKILL */
#define AGENT_READS		8	/* reads per ready output fd */
#define AGENT_LOG_RATE		5	/* host ERROR lines logged per second */

enum agent_hello {
	AGENT_HELLO_WAIT,	/* ours sent, the host's not yet seen */
	AGENT_HELLO_OK,
	AGENT_HELLO_BAD,	/* version mismatch: only SHUTDOWN counts */
};

enum agent_role {
	AGENT_ROLE_SIGNAL,
	AGENT_ROLE_CHAN,
	AGENT_ROLE_FN,		/* agent_poll_fd(): the slot's fn says */
	AGENT_ROLE_STDIN,
	AGENT_ROLE_OUT,		/* + EXEC_STDOUT or EXEC_STDERR */
};

struct agent_slot {
	struct stream	*s;
	int		 role;
	agent_io_fn	*fn;
	void		*obj;
};

static struct {
	struct chanio	  chan;
	int		  sigfd;
	enum agent_hello  hello;
	uint32_t	  features;	/* CHAN_FEAT_* both sides named */
	uint32_t	  next_guest;	/* the next stream id we open */
	uint32_t	  ready_ms;	/* boot clock once the port is open */
	struct stream	**streams;	/* includes orphans until reaped */
	size_t		  nstreams, cap;
	struct pollfd	 *pfd;
	struct agent_slot *slot;
	size_t		  npfd, pcap;
} A = { .next_guest = 1 };

/* EXEC decoding targets; the decoded strings point into the frame. */
static const char *agent_argv[AGENT_MAX_ARGS + 1];
static const char *agent_envp[AGENT_MAX_ENV + 1];

/* ---- logging and the end ---- */

static void
agent_vlog(const char *fmt, va_list ap)
{
	char buf[1024];
	int n = snprintf(buf, sizeof(buf), "capsule-agent: ");

	n += vsnprintf(buf + n, sizeof(buf) - (size_t)n - 1, fmt, ap);
	if (n > (int)sizeof(buf) - 2)
		n = (int)sizeof(buf) - 2;
	buf[n++] = '\n';
	/* One write, so lines from the kernel do not split ours. */
	if (write(STDERR_FILENO, buf, (size_t)n) < 0)
		return;
}

void
agent_log(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	agent_vlog(fmt, ap);
	va_end(ap);
}

_Noreturn void
agent_poweroff(void)
{
	sync();
	reboot(RB_POWER_OFF);
	/* PID 1 must not exit: that is a kernel panic. */
	agent_log("power off: %s", strerror(errno));
	for (;;)
		pause();
}

_Noreturn void
agent_fatal(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	agent_vlog(fmt, ap);
	va_end(ap);
	agent_poweroff();
}

uint32_t
agent_boot_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_BOOTTIME, &ts);
	return (uint32_t)(ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
}

long
agent_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

/* Reaps everything for up to `ms`; returns once no child is left. */
static void
agent_reap_all(long ms)
{
	long deadline = agent_now_ms() + ms;
	struct timespec tick = { 0, 10 * 1000000L };

	for (;;) {
		pid_t pid;

		while ((pid = waitpid(-1, NULL, WNOHANG)) > 0)
			;
		if (pid < 0 && errno == ECHILD)
			return;
		if (agent_now_ms() >= deadline)
			return;
		nanosleep(&tick, NULL);
	}
}

static _Noreturn void
agent_shutdown(void)
{
	kill(-1, SIGTERM);
	agent_reap_all(AGENT_TERM_MS);
	kill(-1, SIGKILL);
	agent_reap_all(500);
	sync();
	/* Best effort: leaves the ext4 clean if nothing holds it busy. */
	mount(NULL, "/", NULL, MS_REMOUNT | MS_RDONLY, NULL);
	agent_poweroff();
}

/* ---- the stream table ---- */

static struct stream *
agent_find(uint32_t id)
{
	size_t i;

	if (id == 0)
		return NULL;
	for (i = 0; i < A.nstreams; i++)
		if (A.streams[i]->id == id && !A.streams[i]->dead)
			return A.streams[i];
	return NULL;
}

static size_t
agent_active(void)
{
	size_t i, n = 0;

	for (i = 0; i < A.nstreams; i++)
		if (A.streams[i]->id != 0 && !A.streams[i]->dead)
			n++;
	return n;
}

int
agent_streams_full(void)
{
	return agent_active() + sock_count() >= AGENT_MAX_STREAMS;
}

uint32_t
agent_features(void)
{
	return A.chan.up && A.hello == AGENT_HELLO_OK ? A.features : 0;
}

/* Never reused while the VM runs: a late frame for an old stream must
 * not land on a new one. */
uint32_t
agent_guest_id(void)
{
	uint32_t id = A.next_guest++;

	if (A.next_guest == CHAN_STREAM_GUEST)
		A.next_guest = 1;	/* 2^31 streams on: cannot happen */
	return id | CHAN_STREAM_GUEST;
}

static int
agent_add(struct stream *s)
{
	if (A.nstreams == A.cap) {
		size_t cap = A.cap ? A.cap * 2 : 64;
		struct stream **p = realloc(A.streams, cap * sizeof(*p));

		if (p == NULL)
			return -ENOMEM;
		A.streams = p;
		A.cap = cap;
	}
	A.streams[A.nstreams++] = s;
	return 0;
}

/* Frees the streams whose EXIT is out. Only done between poll rounds, so
 * the pollfd slots never point at freed memory. */
static void
agent_sweep(void)
{
	size_t i, j = 0;

	for (i = 0; i < A.nstreams; i++) {
		if (A.streams[i]->dead)
			exec_free(A.streams[i]);
		else
			A.streams[j++] = A.streams[i];
	}
	A.nstreams = j;
}

/* Ends a command for good: no EXIT will follow (the host is gone, or
 * the stream was reset). */
static void
agent_orphan(struct stream *s)
{
	exec_abort(s);
	s->id = 0;
	if (s->reaped)
		s->dead = 1;
}

/* The host is gone: nobody is left to see the output, so fail closed.
 * Detached commands were never the host's to see: they run on. */
static void
agent_orphan_all(void)
{
	size_t i;

	for (i = 0; i < A.nstreams; i++) {
		struct stream *s = A.streams[i];

		if (s->dead || s->detached)
			continue;
		agent_orphan(s);
	}
}

static void
agent_reap(void)
{
	struct signalfd_siginfo si;
	size_t i;
	pid_t pid;
	int st;

	while (read(A.sigfd, &si, sizeof(si)) > 0)
		;
	while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
		for (i = 0; i < A.nstreams; i++) {
			struct stream *s = A.streams[i];

			if (s->pid == pid && !s->reaped && !s->dead) {
				s->reaped = 1;
				s->status = st;
				/* What the command left behind in its group
				 * (a stray `cmd &`) must not run on unseen.
				 * A detached command's group is its own. */
				if (!s->detached)
					kill(-pid, SIGKILL);
				break;
			}
		}
	}
}

/* Streams whose leader is reaped: send what is left, then EXIT. */
static void
agent_pump(void)
{
	size_t i;

	for (i = 0; i < A.nstreams; i++) {
		struct stream *s = A.streams[i];

		if (s->dead || !s->reaped)
			continue;
		if (s->id == 0) {
			exec_close_fds(s);
			s->dead = 1;
		} else if (exec_drain(s, &A.chan)) {
			exec_finish(s, &A.chan);
		}
	}
}

/* ---- frames from the host ---- */

static void
agent_violation(struct stream *s, const char *what)
{
	chanio_send_error(&A.chan, s->id, "protocol error: %s", what);
	exec_abort(s);
}

/* A new stream in the table, or NULL once EXIT has said why not. */
static struct stream *
agent_new_stream(uint32_t id)
{
	char err[CHAN_MAX_MSG];
	struct stream *s;

	if (agent_streams_full()) {
		snprintf(err, sizeof(err), "capsule-agent: too many concurrent "
		    "streams (limit %d)", AGENT_MAX_STREAMS);
		exec_send_exit(&A.chan, id, EXIT_CAPSULE_ERROR, 0, err);
		return NULL;
	}
	if ((s = exec_new(id)) == NULL || agent_add(s) < 0) {
		exec_free(s);
		exec_send_exit(&A.chan, id, EXIT_CAPSULE_ERROR, 0,
		    "capsule-agent: out of memory");
		return NULL;
	}
	return s;
}

/* May the host open a stream with this id? If not, ERROR says why: a
 * RESET or an EXIT could end the stream that already has it. */
static int
agent_stream_unused(const struct chan_hdr *h)
{
	if ((A.features & CHAN_FEAT_STREAMS) &&
	    (h->stream & CHAN_STREAM_GUEST)) {
		chanio_send_error(&A.chan, h->stream, "%s on stream %u, an id "
		    "only the agent gives out", chan_kind_name(h->kind),
		    h->stream);
		return 0;
	}
	if (agent_find(h->stream) == NULL && sock_find(h->stream) == NULL)
		return 1;
	chanio_send_error(&A.chan, h->stream, "%s on stream %u, which is "
	    "already in use", chan_kind_name(h->kind), h->stream);
	return 0;
}

/* The host's seed goes into the pool before the command runs: mixed in
 * (written), not credited, so it can only add to what the guest has. */
static void
agent_add_entropy(const uint8_t *seed, size_t len)
{
	int fd = open("/dev/urandom", O_WRONLY | O_CLOEXEC);

	if (fd < 0)
		return;
	if (write(fd, seed, len) != (ssize_t)len)
		agent_log("could not add the host's entropy seed: %s",
		    strerror(errno));
	close(fd);
}

static void
agent_exec(const struct chan_hdr *h, const uint8_t *p)
{
	struct chan_exec x = { .argv = agent_argv, .envp = agent_envp };
	char err[CHAN_MAX_MSG];
	struct stream *s;
	struct user u;
	int r;

	if (!agent_stream_unused(h))
		return;
	r = chan_exec_decode(p, h->len, &x, AGENT_MAX_ARGS, AGENT_MAX_ENV);
	if (r < 0) {
		/* ERROR for the protocol slip, EXIT so the stream ends. */
		chanio_send_error(&A.chan, h->stream, "bad EXEC: %s",
		    r == -E2BIG ? "too many arguments or environment entries" :
		    "malformed payload");
		exec_send_exit(&A.chan, h->stream, EXIT_CAPSULE_ERROR, 0,
		    "capsule-agent: bad EXEC frame");
		return;
	}
	if ((s = agent_new_stream(h->stream)) == NULL)
		return;
	if (x.seed_len > 0)
		agent_add_entropy(x.seed, x.seed_len);
	/* In the agent, before fork: the child only has to switch. */
	if ((r = user_resolve(x.user, &u, err, sizeof(err))) < 0) {
		exec_send_exit(&A.chan, h->stream, r == -ENOMEM ?
		    EXIT_CAPSULE_ERROR : EXIT_CANNOT_EXEC, 0, err);
		s->dead = 1;
		return;
	}
	r = exec_start(s, &x, &u, err, sizeof(err));
	user_free(&u);
	if (r < 0) {
		exec_send_exit(&A.chan, h->stream, EXIT_CAPSULE_ERROR, 0, err);
		s->dead = 1;
	} else if (x.detach) {
		exec_detach(s, &A.chan);
	}
}

static void
agent_copy(const struct chan_hdr *h, const uint8_t *p)
{
	char err[CHAN_MAX_MSG];
	struct stream *s;

	if (!agent_stream_unused(h))
		return;
	if (chan_path_check(p, h->len) < 0) {
		chanio_send_error(&A.chan, h->stream, "bad %s: the path must "
		    "be absolute, 1 to %d bytes, without NUL",
		    chan_kind_name(h->kind), CHAN_MAX_PATH);
		exec_send_exit(&A.chan, h->stream, EXIT_CAPSULE_ERROR, 0,
		    "capsule-agent: bad copy path");
		return;
	}
	if ((s = agent_new_stream(h->stream)) == NULL)
		return;
	if (exec_copy(s, h->kind, p, h->len, err, sizeof(err)) < 0) {
		exec_send_exit(&A.chan, h->stream, EXIT_CAPSULE_ERROR, 0, err);
		s->dead = 1;
	}
}

static void
agent_stream_frame(struct stream *s, const struct chan_hdr *h,
    const uint8_t *p)
{
	uint16_t cols, rows;
	uint32_t v;
	int r;

	switch (h->kind) {
	case CHAN_STDIN:
		if ((r = exec_stdin(s, &A.chan, p, h->len)) == -EPROTO)
			agent_violation(s, "STDIN beyond the window");
		else if (r < 0)
			agent_violation(s, strerror(-r));
		break;
	case CHAN_EOF:
		exec_eof(s, &A.chan);
		break;
	case CHAN_RESIZE:
		if (chan_resize_decode(p, h->len, &cols, &rows) < 0)
			chanio_send_error(&A.chan, s->id, "bad RESIZE payload");
		else
			exec_resize(s, cols, rows);
		break;
	case CHAN_SIGNAL:
		if (chan_u32_decode(p, h->len, &v) < 0)
			chanio_send_error(&A.chan, s->id, "bad SIGNAL payload");
		else if (v < 1 || v > 64)
			chanio_send_error(&A.chan, s->id,
			    "invalid signal number %u", v);
		else if (s->copy)
			/* An interrupted copy: let it fail on its closed
			 * pipe, which removes its temporary file; a signal
			 * would kill it with the file still there. */
			exec_abort(s);
		else
			exec_kill(s, (int)v);
		break;
	case CHAN_CLOSE:
		exec_abort(s);
		break;
	case CHAN_RESET:
		/* The host gave up on it: no EXIT is wanted any more. */
		agent_orphan(s);
		break;
	case CHAN_OPENED: case CHAN_DATA:
		agent_violation(s, "a byte stream's frame on a command's");
		break;
	case CHAN_CREDIT:
		if (chan_u32_decode(p, h->len, &v) < 0)
			agent_violation(s, "bad CREDIT payload");
		else if (chan_tx_grant(&s->tx, v) < 0)
			agent_violation(s, "CREDIT beyond the window");
		break;
	}
}

static void
agent_hello(const struct chan_hdr *h, const uint8_t *p)
{
	struct chan_hello hello;

	if (h->stream != 0) {
		chanio_send_error(&A.chan, h->stream, "HELLO on stream %u",
		    h->stream);
		return;
	}
	if (A.hello == AGENT_HELLO_OK) {
		chanio_send_error(&A.chan, 0, "duplicate HELLO");
		return;
	}
	if (chan_hello_decode(p, h->len, &hello) < 0) {
		chanio_send_error(&A.chan, 0, "bad HELLO payload");
		return;
	}
	if (hello.version < CHAN_VERSION_MIN || hello.version > CHAN_VERSION) {
		agent_log("host speaks channel version %u, we speak %u to %u",
		    hello.version, CHAN_VERSION_MIN, CHAN_VERSION);
		chanio_send_error(&A.chan, 0, "capsule-agent speaks channel "
		    "version %u to %u, host speaks %u", CHAN_VERSION_MIN,
		    CHAN_VERSION, hello.version);
		A.hello = AGENT_HELLO_BAD;
		return;
	}
	/* A version 4 host decodes with none: the agent is then a v4 one. */
	A.features = hello.features & CHAN_FEATURES;
	A.hello = AGENT_HELLO_OK;
}

static void	agent_link(void *, int);

/* This guest is a copy (restored from a template, or the VM a template
 * was taken from): take the host's time and randomness before anything
 * runs, then start the connection over with a HELLO. */
static void
agent_refresh(const struct chan_hdr *h, const uint8_t *p)
{
	struct {
		int	entropy_count;
		int	buf_size;
		uint8_t	buf[CHAN_REFRESH_SEED];
	} add;
	struct chan_refresh r;
	struct timespec ts;
	int fd;

	if (chan_refresh_decode(p, h->len, &r) < 0) {
		chanio_send_error(&A.chan, 0, "bad REFRESH payload");
		return;
	}
	ts.tv_sec = (time_t)(r.realtime_ns / 1000000000u);
	ts.tv_nsec = (long)(r.realtime_ns % 1000000000u);
	if (clock_settime(CLOCK_REALTIME, &ts) < 0)
		agent_log("REFRESH: cannot set the clock: %s", strerror(errno));
	/* Credited (the host's getrandom), and the generator reseeded at
	 * once: from here on no two copies share a random stream. */
	add.entropy_count = CHAN_REFRESH_SEED * 8;
	add.buf_size = CHAN_REFRESH_SEED;
	memcpy(add.buf, r.seed, CHAN_REFRESH_SEED);
	if ((fd = open("/dev/urandom", O_WRONLY | O_CLOEXEC)) < 0 ||
	    ioctl(fd, RNDADDENTROPY, &add) < 0 ||
	    ioctl(fd, RNDRESEEDCRNG) < 0)
		agent_log("REFRESH: cannot reseed the random generator: %s",
		    strerror(errno));
	if (fd >= 0)
		close(fd);
	explicit_bzero(&add, sizeof(add));
	/* The copy's own name, if the host gave one. */
	if (r.hostname[0] != '\0' &&
	    sethostname(r.hostname, strlen(r.hostname)) < 0)
		agent_log("REFRESH: cannot set the hostname: %s",
		    strerror(errno));
	explicit_bzero(&r, sizeof(r));
	agent_link(NULL, 0);
	agent_link(NULL, 1);
}

/* Ends whatever stream has this id, and tells the host with RESET. */
static void
agent_refuse(uint32_t id, uint32_t code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
agent_refuse(uint32_t id, uint32_t code, const char *fmt, ...)
{
	char msg[CHAN_MAX_MSG];
	struct stream *s;
	struct sock *k;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if ((s = agent_find(id)) != NULL)
		agent_orphan(s);
	else if ((k = sock_find(id)) != NULL)
		sock_end(k);
	else
		dns_end(id);
	chanio_send_status(&A.chan, CHAN_RESET, id, code, "%s", msg);
}

/* The host opens a stream. Only FORWARD is the host's to open. */
static void
agent_open(const struct chan_hdr *h, const uint8_t *p)
{
	struct chan_open o;

	if (!agent_stream_unused(h))
		return;
	if (chan_open_decode(p, h->len, &o) < 0)
		chanio_send_status(&A.chan, CHAN_RESET, h->stream, EBADMSG,
		    "capsule-agent: malformed OPEN");
	else if (o.unknown)
		chanio_send_status(&A.chan, CHAN_RESET, h->stream,
		    EPROTONOSUPPORT, "capsule-agent does not know stream "
		    "type %u", o.type);
	else if (o.type == CHAN_OPEN_CONNECT || o.type == CHAN_OPEN_DNS)
		chanio_send_status(&A.chan, CHAN_RESET, h->stream, EPERM,
		    "only the guest opens %s streams",
		    o.type == CHAN_OPEN_DNS ? "DNS" : "CONNECT");
	else if (!(A.features & CHAN_FEAT_NET))
		chanio_send_status(&A.chan, CHAN_RESET, h->stream,
		    EPROTONOSUPPORT, "FORWARD needs the NET feature, which "
		    "the host did not name");
	else
		sock_forward(&A.chan, h->stream, o.port);
}

/* A frame for a stream that is already open, whoever opened it. */
static void
agent_stream_any(const struct chan_hdr *h, const uint8_t *p)
{
	struct stream *s;
	struct sock *k;

	if ((s = agent_find(h->stream)) != NULL)
		agent_stream_frame(s, h, p);
	else if ((k = sock_find(h->stream)) != NULL)
		sock_frame(&A.chan, k, h, p);
	else if (h->stream & CHAN_STREAM_GUEST)
		dns_frame(&A.chan, h, p);
	/* Else one that is over (or never was): the host catching up. */
}

/* The host's ERROR text is untrusted: show a bounded, printable copy. */
static void
agent_host_error(const struct chan_hdr *h, const uint8_t *p)
{
	static long window;
	static unsigned shown;
	char text[201];
	size_t i, n = h->len < sizeof(text) - 1 ? h->len : sizeof(text) - 1;

	/* The serial console is slow and writing it blocks the loop. */
	if (agent_now_ms() / 1000 != window) {
		window = agent_now_ms() / 1000;
		shown = 0;
	}
	if (++shown > AGENT_LOG_RATE)
		return;
	for (i = 0; i < n; i++)
		text[i] = (p[i] >= 0x20 && p[i] < 0x7f) ? (char)p[i] : '?';
	text[n] = '\0';
	agent_log("host reports an error on stream %u: %s", h->stream, text);
}

static void
agent_frame(void *arg, const struct chan_hdr *h, const uint8_t *p)
{
	(void)arg;
	if (h->kind == CHAN_SHUTDOWN && h->stream == 0)
		agent_shutdown();
	if (A.hello == AGENT_HELLO_BAD)
		return;
	/* Never answer an ERROR with an ERROR: two confused peers would
	 * keep each other busy forever. */
	if (h->kind == CHAN_ERROR) {
		agent_host_error(h, p);
		return;
	}
	if (h->kind == CHAN_HELLO) {
		agent_hello(h, p);
		return;
	}
	if (A.hello != AGENT_HELLO_OK) {
		chanio_send_error(&A.chan, h->stream, "%s before HELLO",
		    chan_kind_name(h->kind));
		return;
	}
	if (h->kind == CHAN_PING && h->stream == 0) {
		/* The host's heartbeat: answer with its number. */
		chanio_send(&A.chan, CHAN_PONG, 0, p, h->len < 4 ? h->len : 4);
		return;
	}
	if (h->kind == CHAN_REFRESH && h->stream == 0 &&
	    (A.features & CHAN_FEAT_REFRESH)) {
		agent_refresh(h, p);
		return;
	}
	if (h->kind == CHAN_NET && h->stream == 0 &&
	    (A.features & CHAN_FEAT_NET)) {
		net_frame(&A.chan, p, h->len);
		return;
	}
	if (h->stream == 0) {
		chanio_send_error(&A.chan, 0, "%s on stream 0",
		    chan_kind_name(h->kind));
		return;
	}
	/* Newer than us: refuse that stream, keep the channel. */
	if (!chan_kind_valid(h->kind)) {
		if (A.features & CHAN_FEAT_STREAMS)
			agent_refuse(h->stream, EPROTONOSUPPORT, "capsule-agent "
			    "does not know frame kind %u", h->kind);
		else
			chanio_send_error(&A.chan, h->stream, "unknown frame "
			    "kind %u", h->kind);
		return;
	}
	switch (h->kind) {
	case CHAN_EXEC:
		agent_exec(h, p);
		break;
	case CHAN_COPY_IN: case CHAN_COPY_OUT:
		agent_copy(h, p);
		break;
	case CHAN_OPEN:
		if (!(A.features & CHAN_FEAT_STREAMS))
			goto unexpected;
		agent_open(h, p);
		break;
	case CHAN_OPENED: case CHAN_RESET: case CHAN_DATA:
		if (!(A.features & CHAN_FEAT_STREAMS))
			goto unexpected;
		agent_stream_any(h, p);
		break;
	case CHAN_STDIN: case CHAN_EOF: case CHAN_RESIZE: case CHAN_SIGNAL:
	case CHAN_CLOSE: case CHAN_CREDIT:
		/* Frames for streams we do not know (finished, or never
		 * started) are the host catching up: not an error. */
		agent_stream_any(h, p);
		break;
	default:
	unexpected:
		chanio_send_error(&A.chan, h->stream, "unexpected %s from the "
		    "host", chan_kind_name(h->kind));
		break;
	}
}

static void
agent_link(void *arg, int up)
{
	struct chan_hello hello = { .version = CHAN_VERSION,
	    .boot_ms = A.ready_ms, .features = CHAN_FEATURES };
	uint8_t p[CHAN_HELLO_LEN];
	int n;

	(void)arg;
	A.hello = AGENT_HELLO_WAIT;
	A.features = 0;
	if (!up) {
		/* Fail closed: connections out and answers wait on a host
		 * that is not there. */
		agent_orphan_all();
		sock_link(0);
		dns_link(0);
		return;
	}
	if ((n = chan_hello_encode(p, sizeof(p), &hello)) > 0)
		chanio_send(&A.chan, CHAN_HELLO, 0, p, (size_t)n);
}

/* A bad header leaves no way to find the next frame. */
static _Noreturn void
agent_broken(int r)
{
	size_t i;

	agent_log("channel: bad frame header (%s), powering off",
	    strerror(-r));
	chanio_send_error(&A.chan, 0, "bad frame header: %s", strerror(-r));
	chanio_flush(&A.chan, 1000);
	for (i = 0; i < A.nstreams; i++)
		if (!A.streams[i]->dead)
			exec_kill(A.streams[i], SIGKILL);
	agent_poweroff();
}

/* ---- the loop ---- */

/* A stream left out of the set would stall: no room is fatal. */
static void
agent_poll_add(int fd, short events, struct stream *s, int role,
    agent_io_fn *fn, void *obj)
{
	if (A.npfd == A.pcap) {
		size_t cap = A.pcap ? A.pcap * 2 : 64;
		struct pollfd *pfd = realloc(A.pfd, cap * sizeof(*pfd));
		struct agent_slot *slot;

		if (pfd != NULL)
			A.pfd = pfd;
		if (pfd == NULL ||
		    (slot = realloc(A.slot, cap * sizeof(*slot))) == NULL)
			agent_fatal("out of memory");
		A.slot = slot;
		A.pcap = cap;
	}
	A.pfd[A.npfd] = (struct pollfd){ .fd = fd, .events = events };
	A.slot[A.npfd] = (struct agent_slot){ .s = s, .role = role,
	    .fn = fn, .obj = obj };
	A.npfd++;
}

void
agent_poll_fd(int fd, short events, agent_io_fn *fn, void *obj)
{
	agent_poll_add(fd, events, NULL, AGENT_ROLE_FN, fn, obj);
}

static size_t
agent_poll_set(void)
{
	size_t i;
	int j, room;

	A.npfd = 0;
	agent_poll_add(A.sigfd, POLLIN, NULL, AGENT_ROLE_SIGNAL, NULL, NULL);
	if (A.chan.up)
		agent_poll_add(A.chan.fd, chanio_events(&A.chan), NULL,
		    AGENT_ROLE_CHAN, NULL, NULL);
	room = A.chan.up && chanio_queued(&A.chan) < AGENT_QUEUE_HIGH;
	for (i = 0; i < A.nstreams; i++) {
		struct stream *s = A.streams[i];

		if (s->dead || s->id == 0)
			continue;
		if (s->in_fd >= 0 && (s->in_len > 0 || (s->eof && !s->eof_done)))
			agent_poll_add(s->in_fd, POLLOUT, s, AGENT_ROLE_STDIN,
			    NULL, NULL);
		/* Output waits for credit; after the leader's exit it is
		 * drained by agent_pump() instead. */
		if (!room || s->reaped || s->closed ||
		    chan_tx_allow(&s->tx, 1) == 0)
			continue;
		for (j = 0; j < EXEC_NOUT; j++)
			if (s->out_fd[j] >= 0)
				agent_poll_add(s->out_fd[j], POLLIN, s,
				    AGENT_ROLE_OUT + j, NULL, NULL);
	}
	sock_poll(&A.chan);
	dns_poll();
	return A.npfd;
}

static void
agent_poll_event(size_t k)
{
	struct stream *s = A.slot[k].s;
	int role = A.slot[k].role, fd = A.pfd[k].fd, i, r;

	switch (role) {
	case AGENT_ROLE_SIGNAL:
		agent_reap();
		return;
	case AGENT_ROLE_CHAN:
		if ((r = chanio_handle(&A.chan, A.pfd[k].revents)) < 0)
			agent_broken(r);
		return;
	case AGENT_ROLE_FN:
		A.slot[k].fn(&A.chan, A.slot[k].obj, fd, A.pfd[k].revents);
		return;
	}
	/* An earlier event in this round may have closed or reused the fd. */
	if (s->dead || s->id == 0)
		return;
	if (role == AGENT_ROLE_STDIN) {
		if (s->in_fd == fd)
			exec_write(s, &A.chan);
		return;
	}
	role -= AGENT_ROLE_OUT;
	for (i = 0; i < AGENT_READS; i++) {
		if (s->out_fd[role] != fd || s->closed ||
		    chanio_queued(&A.chan) >= AGENT_QUEUE_HIGH)
			return;
		if (exec_read(s, &A.chan, role) <= 0)
			return;
	}
}

/* Kills what is past its deadline; returns the poll timeout until the
 * next one (-1: none), or the recheck period while the host is away. */
static int
agent_expire(void)
{
	long now = agent_now_ms(), next = -1, left;
	long more[3];
	size_t i;

	for (i = 0; i < A.nstreams; i++)
		if ((left = exec_expire(A.streams[i], now)) >= 0 &&
		    (next < 0 || left < next))
			next = left;
	more[0] = sock_expire(&A.chan, now);
	more[1] = dns_expire(&A.chan, now);
	more[2] = net_expire(&A.chan, now);
	for (i = 0; i < 3; i++)
		if (more[i] >= 0 && (next < 0 || more[i] < next))
			next = more[i];
	if (!A.chan.up && (next < 0 || next > AGENT_RECHECK_MS))
		next = AGENT_RECHECK_MS;
	return next > INT_MAX ? INT_MAX : (int)next;
}

static _Noreturn void
agent_loop(void)
{
	for (;;) {
		size_t n, k;
		int r, ms;

		agent_pump();
		agent_sweep();
		sock_sweep();
		dns_sweep();
		if (!A.chan.up && chanio_check(&A.chan) < 0)
			agent_fatal("channel: %s", strerror(errno));
		ms = agent_expire();
		n = agent_poll_set();
		r = poll(A.pfd, n, ms);
		if (r < 0 && errno != EINTR)
			agent_fatal("poll: %s", strerror(errno));
		for (k = 0; r > 0 && k < n; k++)
			if (A.pfd[k].revents)
				agent_poll_event(k);
		if (A.chan.up && chanio_queued(&A.chan) > 0)
			chanio_handle(&A.chan, POLLOUT);
	}
}

int
main(void)
{
	char net[16];
	sigset_t mask;
	int fd, r;

	if (getpid() != 1) {
		fprintf(stderr, "capsule-agent: this is the guest's init; it "
		    "must run as PID 1\n");
		return 1;
	}
	umask(022);
	/* Before any fork: SIGCHLD only ever arrives through the signalfd. */
	sigemptyset(&mask);
	sigaddset(&mask, SIGCHLD);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	signal(SIGPIPE, SIG_IGN);

	if ((r = init_early()) < 0)
		agent_fatal("early mounts: %s", strerror(-r));
	init_modules(AGENT_MODULES);
	if (init_cmdline("capsule.net", net, sizeof(net)) == 0) {
		if (strcmp(net, "nat") == 0)
			init_modules(AGENT_MODULES_NAT);
		else if (strcmp(net, "allow") == 0)
			init_modules(AGENT_MODULES_ALLOW);
		else
			agent_log("capsule.net=%s: no such mode", net);
	}
	share_modules();
	if ((r = init_switch_root(AGENT_WAIT_MS)) < 0)
		agent_fatal("cannot mount the root file system: %s",
		    strerror(-r));
	init_late();
	share_mount_all();
	if ((r = net_lo_up()) < 0)
		agent_log("bring up lo: %s", strerror(-r));
	if ((r = exec_init()) < 0)
		agent_log("raise RLIMIT_NOFILE: %s", strerror(-r));

	if ((A.sigfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC)) < 0)
		agent_fatal("signalfd: %s", strerror(errno));
	if ((fd = init_open_port(AGENT_PORT_NAME, AGENT_WAIT_MS)) < 0)
		agent_fatal("no agent port %s: %s", AGENT_PORT_NAME,
		    strerror(-fd));
	if ((r = chanio_init(&A.chan, fd, agent_frame, agent_link, NULL)) < 0)
		agent_fatal("channel: %s", strerror(-r));
	/* Every HELLO, also after a reconnect, reports this same moment. */
	A.ready_ms = agent_boot_ms();
	agent_log("ready in %u ms", A.ready_ms);
	agent_loop();
}
