/*
 * test_agent.c — capsuled's end of the agent channel (daemon/agent.c)
 * against a scripted guest on a socketpair. The guest is untrusted: a wrong
 * version, garbage, or output beyond its window must end cleanly, never
 * hang or be believed.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <arpa/inet.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/event.h>

#include "agent.h"
#include "chan.h"
#include "log.h"

struct fixture {
	struct event_base	*base;
	struct agent		*agent;
	int			 guest;		/* the scripted guest's end */
	int			 ready;
	uint32_t		 boot_ms;
	char			 failed[512];
	/* stream results */
	size_t			 out_bytes;
	int			 exited;
	int			 exit_code;
	char			 exit_msg[512];
	int			 credit_calls;
	uint32_t		 started_pid;
	char			 started_log[256];
	int			 silent_calls;
	unsigned		 silent_ms;
	int			 heard_calls;
	/* channel v5 */
	int			 take_opens;	/* open callback takes streams */
	struct agent_stream	*opened_stream;
	struct chan_open	 last_open;
	char			 open_name[CHAN_MAX_NAME + 1];
	int			 bytes_opened;
	size_t			 bytes_in;
	int			 bytes_eof;
	int			 bytes_credit;
	int			 bytes_ended;
	uint32_t		 bytes_code;
	char			 bytes_msg[256];
	int			 net_done;
	uint32_t		 net_code;
	char			 net_msg[256];
};

static void
on_ready(struct agent *a, uint32_t boot_ms, void *arg)
{
	struct fixture *f = arg;

	f->ready = 1;
	f->boot_ms = boot_ms;
}

static void
on_failed(struct agent *a, const char *why, void *arg)
{
	struct fixture *f = arg;

	snprintf(f->failed, sizeof(f->failed), "%s", why);
}

static void
on_silent(struct agent *a, unsigned ms, void *arg)
{
	struct fixture *f = arg;

	f->silent_calls++;
	f->silent_ms = ms;
}

static void
on_heard(struct agent *a, void *arg)
{
	((struct fixture *)arg)->heard_calls++;
}

static void	on_open(struct agent *, struct agent_stream *,
		    const struct chan_open *, void *);

static void
on_net_done(struct agent *a, uint32_t code, const char *msg, size_t len,
    void *arg)
{
	struct fixture *f = arg;

	f->net_done++;
	f->net_code = code;
	snprintf(f->net_msg, sizeof(f->net_msg), "%.*s", (int)len, msg);
}

static const struct agent_cbs cbs = { on_ready, on_failed, on_silent,
	on_heard, on_open, on_net_done };

static void
on_bytes_opened(struct agent_stream *s, void *arg)
{
	((struct fixture *)arg)->bytes_opened++;
}

static void
on_bytes_data(struct agent_stream *s, const uint8_t *buf, size_t len,
    void *arg)
{
	((struct fixture *)arg)->bytes_in += len;	/* held on purpose */
}

static void
on_bytes_eof(struct agent_stream *s, void *arg)
{
	((struct fixture *)arg)->bytes_eof++;
}

static void
on_bytes_credit(struct agent_stream *s, void *arg)
{
	((struct fixture *)arg)->bytes_credit++;
}

static void
on_bytes_end(struct agent_stream *s, uint32_t code, const char *msg,
    size_t len, void *arg)
{
	struct fixture *f = arg;

	f->bytes_ended++;
	f->bytes_code = code;
	snprintf(f->bytes_msg, sizeof(f->bytes_msg), "%.*s", (int)len,
	    msg != NULL ? msg : "");
	if (f->opened_stream == s)
		f->opened_stream = NULL;
}

static const struct agent_bytes_cbs bcbs = { on_bytes_opened, on_bytes_data,
	on_bytes_eof, on_bytes_credit, on_bytes_end };

static void
on_open(struct agent *a, struct agent_stream *s, const struct chan_open *o,
    void *arg)
{
	struct fixture *f = arg;

	f->last_open = *o;
	snprintf(f->open_name, sizeof(f->open_name), "%.*s",
	    (int)o->name_len, o->name != NULL ? o->name : "");
	f->last_open.name = NULL;
	if (!f->take_opens)
		return;
	agent_bytes_take(s, &bcbs, f);
	f->opened_stream = s;
}

static void
on_output(struct agent_stream *s, int kind, const uint8_t *buf, size_t len,
    void *arg)
{
	struct fixture *f = arg;

	f->out_bytes += len;	/* held: not released on purpose */
}

static void
on_credit(struct agent_stream *s, void *arg)
{
	((struct fixture *)arg)->credit_calls++;
}

static void
on_stream_exit(struct agent_stream *s, int code, int sig, const char *msg,
    size_t len, void *arg)
{
	struct fixture *f = arg;

	f->exited = 1;
	f->exit_code = code;
	snprintf(f->exit_msg, sizeof(f->exit_msg), "%.*s", (int)len, msg);
}

static void
on_started(struct agent_stream *s, uint32_t pid, const char *log, size_t len,
    void *arg)
{
	struct fixture *f = arg;

	f->started_pid = pid;
	snprintf(f->started_log, sizeof(f->started_log), "%.*s", (int)len,
	    log);
}

static const struct agent_stream_cbs scbs = { on_output, on_credit,
	on_stream_exit, on_started };

static int
setup(void **state)
{
	static struct fixture f;
	int sv[2];

	memset(&f, 0, sizeof(f));
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0,
	    sv), 0);
	f.base = event_base_new();
	f.agent = agent_new(f.base, sv[0], &cbs, &f);
	f.guest = sv[1];
	assert_non_null(f.agent);
	*state = &f;
	return 0;
}

static int
teardown(void **state)
{
	struct fixture *f = *state;

	agent_free(f->agent, "test over");
	close(f->guest);
	event_base_free(f->base);
	return 0;
}

static void
spin(struct fixture *f)
{
	for (int i = 0; i < 20; i++)
		event_base_loop(f->base, EVLOOP_NONBLOCK);
}

static void
guest_send(struct fixture *f, uint8_t kind, uint32_t stream, const void *p,
    size_t len)
{
	struct chan_hdr h = { .kind = kind, .stream = stream,
	    .len = (uint32_t)len };
	uint8_t hdr[CHAN_HDR_LEN];

	chan_hdr_encode(hdr, &h);
	assert_int_equal(write(f->guest, hdr, sizeof(hdr)), sizeof(hdr));
	if (len > 0)
		assert_int_equal(write(f->guest, p, len), (ssize_t)len);
	spin(f);
}

static void
guest_hello(struct fixture *f, uint32_t version)
{
	struct chan_hello h = { .version = version, .boot_ms = 1234 };
	uint8_t p[CHAN_HELLO_LEN];

	chan_hello_encode(p, sizeof(p), &h);
	guest_send(f, CHAN_HELLO, 0, p, sizeof(p));
}

/* Reads exactly n bytes from the daemon, letting its loop run meanwhile. */
static int
read_full(struct fixture *f, uint8_t *p, size_t n)
{
	size_t got = 0;

	for (int tries = 0; got < n && tries < 1000; tries++) {
		ssize_t r;

		spin(f);
		r = read(f->guest, p + got, n - got);
		if (r > 0)
			got += (size_t)r;
		else if (r == 0 || errno != EAGAIN)
			break;
	}
	return got == n ? 0 : -1;
}

/* Reads one frame the daemon sent to the guest; returns its kind. */
static int
guest_recv(struct fixture *f, struct chan_hdr *h, uint8_t *p, size_t cap)
{
	uint8_t hdr[CHAN_HDR_LEN];

	if (read_full(f, hdr, sizeof(hdr)) < 0)
		return -1;
	assert_int_equal(chan_hdr_decode(hdr, h), 0);
	assert_true(h->len <= cap);
	if (h->len > 0)
		assert_int_equal(read_full(f, p, h->len), 0);
	return h->kind;
}

static void
test_hello_makes_ready_and_is_answered(void **state)
{
	struct fixture *f = *state;
	struct chan_hdr h;
	struct chan_hello hello;
	uint8_t p[64];

	guest_hello(f, CHAN_VERSION);
	assert_true(f->ready);
	assert_int_equal(f->boot_ms, 1234);
	assert_int_equal(guest_recv(f, &h, p, sizeof(p)), CHAN_HELLO);
	assert_int_equal(chan_hello_decode(p, h.len, &hello), 0);
	assert_int_equal(hello.version, CHAN_VERSION);
	assert_string_equal(f->failed, "");
}

static void
test_version_mismatch_is_a_clear_error(void **state)
{
	struct fixture *f = *state;

	char want[16];

	guest_hello(f, CHAN_VERSION + 41);
	assert_false(f->ready);
	assert_non_null(strstr(f->failed, "version"));
	snprintf(want, sizeof(want), "%u", CHAN_VERSION + 41);
	assert_non_null(strstr(f->failed, want));
}

static void
test_garbage_fails_the_channel(void **state)
{
	struct fixture *f = *state;
	static const char junk[] = "this is not a frame header at all";

	guest_hello(f, CHAN_VERSION);
	assert_int_equal(write(f->guest, junk, sizeof(junk)), sizeof(junk));
	spin(f);
	assert_non_null(strstr(f->failed, "malformed"));
}

static void
test_oversized_frame_fails_the_channel(void **state)
{
	struct fixture *f = *state;
	struct chan_hdr h = { .kind = CHAN_STDOUT, .stream = 1,
	    .len = CHAN_MAX_DATA + 1 };
	uint8_t hdr[CHAN_HDR_LEN];

	guest_hello(f, CHAN_VERSION);
	chan_hdr_encode(hdr, &h);
	assert_int_equal(write(f->guest, hdr, sizeof(hdr)), sizeof(hdr));
	spin(f);
	assert_non_null(strstr(f->failed, "oversized"));
}

static void
test_closed_channel_fails(void **state)
{
	struct fixture *f = *state;

	guest_hello(f, CHAN_VERSION);
	close(f->guest);
	f->guest = socket(AF_UNIX, SOCK_STREAM, 0);	/* for teardown */
	spin(f);
	assert_non_null(strstr(f->failed, "closed"));
}

static struct agent_stream *
start_exec(struct fixture *f, uint32_t *id)
{
	const char *argv[] = { "true" };
	struct chan_exec x = { .argc = 1, .argv = argv, .dir = "" };
	struct agent_stream *s;
	struct cap_err err;
	struct chan_hdr h;
	static uint8_t p[CHAN_MAX_PAYLOAD];

	guest_hello(f, CHAN_VERSION);
	assert_int_equal(guest_recv(f, &h, p, sizeof(p)), CHAN_HELLO);
	s = agent_exec(f->agent, &x, &scbs, f, &err);
	assert_non_null(s);
	assert_int_equal(guest_recv(f, &h, p, sizeof(p)), CHAN_EXEC);
	*id = h.stream;
	assert_true(*id > 0);
	return s;
}

static void
test_started_ends_only_a_detached_stream(void **state)
{
	struct fixture *f = *state;
	struct chan_started st = { .pid = 42, .log = "/var/log/x.log",
	    .log_len = 14 };
	const char *argv[] = { "sleep" };
	struct chan_exec x = { .argc = 1, .argv = argv, .dir = "",
	    .detach = 1 };
	static uint8_t big[CHAN_MAX_PAYLOAD];
	struct cap_err err;
	struct chan_hdr h;
	uint8_t p[64];
	uint32_t id;
	int n;

	n = chan_started_encode(p, sizeof(p), &st);
	/* An attached exec cannot be STARTED: the guest is confused. */
	start_exec(f, &id);
	guest_send(f, CHAN_STARTED, id, p, (size_t)n);
	assert_true(f->exited);
	assert_int_equal(f->exit_code, 125);
	assert_int_equal(f->started_pid, 0);
	/* A detached one is, once; the stream is then gone. */
	assert_int_equal(guest_recv(f, &h, big, sizeof(big)), CHAN_CLOSE);
	f->exited = 0;
	assert_non_null(agent_exec(f->agent, &x, &scbs, f, &err));
	assert_int_equal(guest_recv(f, &h, big, sizeof(big)), CHAN_EXEC);
	id = h.stream;
	guest_send(f, CHAN_STARTED, id, p, (size_t)n);
	assert_int_equal(f->started_pid, 42);
	assert_string_equal(f->started_log, "/var/log/x.log");
	guest_send(f, CHAN_EXIT, id, "\0\0\0\0\0\0\0\0", 8);
	assert_false(f->exited);
	assert_string_equal(f->failed, "");
}

static void
test_output_beyond_window_ends_the_stream(void **state)
{
	struct fixture *f = *state;
	static uint8_t data[CHAN_MAX_DATA], p[CHAN_MAX_PAYLOAD];
	struct chan_hdr h;
	uint32_t id;
	size_t sent = 0;

	start_exec(f, &id);
	/* The daemon releases nothing (on_output holds it), so the guest may
	 * send exactly one window and not a byte more. */
	while (sent < CHAN_WINDOW) {
		guest_send(f, CHAN_STDOUT, id, data, sizeof(data));
		sent += sizeof(data);
	}
	assert_int_equal(f->out_bytes, CHAN_WINDOW);
	assert_false(f->exited);
	guest_send(f, CHAN_STDOUT, id, data, 1);
	assert_true(f->exited);
	assert_int_equal(f->exit_code, 125);
	assert_non_null(strstr(f->exit_msg, "window"));
	assert_int_equal(f->out_bytes, CHAN_WINDOW);
	/* ...and the guest is told to kill the command. */
	assert_int_equal(guest_recv(f, &h, p, sizeof(p)), CHAN_CLOSE);
	assert_int_equal(h.stream, id);
	assert_string_equal(f->failed, "");
}

static void
test_stdin_respects_credit(void **state)
{
	struct fixture *f = *state;
	static uint8_t big[CHAN_WINDOW + 1000], p[CHAN_MAX_PAYLOAD];
	struct agent_stream *s;
	struct chan_hdr h;
	uint8_t credit[4];
	size_t n, got = 0;
	uint32_t id;

	s = start_exec(f, &id);
	n = agent_stream_write(s, big, sizeof(big));
	assert_int_equal(n, CHAN_WINDOW);
	assert_int_equal(agent_stream_write(s, big, 10), 0);
	while (got < CHAN_WINDOW) {
		assert_int_equal(guest_recv(f, &h, p, sizeof(p)), CHAN_STDIN);
		assert_true(h.len <= CHAN_MAX_DATA);
		got += h.len;
	}
	assert_int_equal(got, CHAN_WINDOW);
	/* A grant reopens exactly that much. */
	chan_u32_encode(credit, sizeof(credit), 1000);
	guest_send(f, CHAN_CREDIT, id, credit, sizeof(credit));
	assert_int_equal(f->credit_calls, 1);
	assert_int_equal(agent_stream_write(s, big, sizeof(big)), 1000);
	/* Handing back all it holds is fine; one byte more than the window
	 * is a lie, and the stream ends. */
	chan_u32_encode(credit, sizeof(credit), CHAN_WINDOW);
	guest_send(f, CHAN_CREDIT, id, credit, sizeof(credit));
	assert_false(f->exited);
	chan_u32_encode(credit, sizeof(credit), 1);
	guest_send(f, CHAN_CREDIT, id, credit, sizeof(credit));
	assert_true(f->exited);
	assert_int_equal(f->exit_code, 125);
	assert_non_null(strstr(f->exit_msg, "CREDIT"));
}

static void
test_exit_ends_stream_and_unknown_streams_are_ignored(void **state)
{
	struct fixture *f = *state;
	struct chan_exit ex = { .exit_code = 7, .msg = "bye", .msg_len = 3 };
	uint8_t p[64];
	uint32_t id;
	int n;

	start_exec(f, &id);
	/* Frames for a stream nobody opened change nothing. */
	guest_send(f, CHAN_STDOUT, id + 100, "zz", 2);
	assert_int_equal(f->out_bytes, 0);
	n = chan_exit_encode(p, sizeof(p), &ex);
	guest_send(f, CHAN_EXIT, id, p, (size_t)n);
	assert_true(f->exited);
	assert_int_equal(f->exit_code, 7);
	assert_string_equal(f->exit_msg, "bye");
	assert_string_equal(f->failed, "");
}

/* Runs the daemon's loop for about ms milliseconds. */
static void
run_for(struct fixture *f, int ms)
{
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

	event_base_loopexit(f->base, &tv);
	event_base_dispatch(f->base);
}

static void
test_heartbeat_pings_and_notices_silence(void **state)
{
	struct fixture *f = *state;
	static uint8_t p[CHAN_MAX_PAYLOAD];
	struct chan_hdr h;
	uint32_t seq;

	agent_set_heartbeat(f->agent, 50, 300);
	guest_hello(f, CHAN_VERSION);
	assert_int_equal(guest_recv(f, &h, p, sizeof(p)), CHAN_HELLO);
	/* PINGs come, numbered. */
	run_for(f, 120);
	assert_int_equal(guest_recv(f, &h, p, sizeof(p)), CHAN_PING);
	assert_int_equal(h.stream, 0);
	assert_int_equal(chan_u32_decode(p, h.len, &seq), 0);
	assert_true(seq >= 1);
	/* An answering guest is never silent. */
	for (int i = 0; i < 8; i++) {
		guest_send(f, CHAN_PONG, 0, p, 4);
		run_for(f, 60);
	}
	assert_int_equal(f->silent_calls, 0);
	/* A guest that says nothing is reported once, then heard again. */
	run_for(f, 700);
	assert_int_equal(f->silent_calls, 1);
	assert_true(f->silent_ms >= 300);
	assert_int_equal(f->heard_calls, 0);
	guest_send(f, CHAN_PONG, 0, p, 4);
	assert_int_equal(f->heard_calls, 1);
	assert_string_equal(f->failed, "");
}

static void
test_silence_ends_nothing_until_the_owner_says(void **state)
{
	struct fixture *f = *state;
	uint32_t id;

	start_exec(f, &id);
	agent_set_heartbeat(f->agent, 50, 200);
	run_for(f, 500);
	assert_int_equal(f->silent_calls, 1);
	assert_false(f->exited);
	agent_end_streams(f->agent, "the VM stopped answering");
	assert_true(f->exited);
	assert_int_equal(f->exit_code, 125);
	assert_string_equal(f->exit_msg, "the VM stopped answering");
}

static void
test_second_hello_means_the_guest_started_over(void **state)
{
	struct fixture *f = *state;

	guest_hello(f, CHAN_VERSION);
	assert_true(f->ready);
	assert_string_equal(f->failed, "");
	guest_hello(f, CHAN_VERSION);
	assert_non_null(strstr(f->failed, "started over"));
}

/* ---- channel v5 ---- */

static void
guest_hello_v(struct fixture *f, uint32_t version, uint32_t features)
{
	struct chan_hello h = { .version = version, .boot_ms = 1234,
	    .features = features };
	uint8_t p[CHAN_HELLO_LEN];
	int n = chan_hello_encode(p, sizeof(p), &h);

	guest_send(f, CHAN_HELLO, 0, p, (size_t)n);
}

static void
guest_open(struct fixture *f, uint32_t id, const struct chan_open *o)
{
	uint8_t p[512];
	long n = chan_open_encode(p, sizeof(p), o);

	assert_true(n > 0);
	guest_send(f, CHAN_OPEN, id, p, (size_t)n);
}

/* The next frame must be RESET on stream id with code; returns it. */
static void
expect_reset(struct fixture *f, uint32_t id, uint32_t code)
{
	struct chan_status st;
	struct chan_hdr h;
	uint8_t p[CHAN_MAX_MSG + 8];

	assert_int_equal(guest_recv(f, &h, p, sizeof(p)), CHAN_RESET);
	assert_int_equal(h.stream, id);
	assert_int_equal(chan_status_decode(p, h.len, &st), 0);
	assert_int_equal(st.code, code);
	assert_true(st.msg_len > 0);
}

static void
test_v4_agent_still_runs_commands(void **state)
{
	struct fixture *f = *state;
	struct chan_open o = { .type = CHAN_OPEN_DNS, .qtype = 1,
	    .name = "a.test", .name_len = 6 };
	struct chan_net net = { .mode = CHAN_NET_NONE };
	struct chan_hello hello;
	struct cap_err err;
	struct chan_hdr h;
	static uint8_t p[CHAN_MAX_PAYLOAD];
	uint32_t id;

	/* A VM started before this capsuled: its agent speaks version 4,
	 * in version 4's 8-byte HELLO, and hears its own version back. */
	guest_hello_v(f, 4, 0);
	assert_true(f->ready);
	assert_int_equal(guest_recv(f, &h, p, sizeof(p)), CHAN_HELLO);
	assert_int_equal(h.len, CHAN_HELLO_V4_LEN);
	assert_int_equal(chan_hello_decode(p, h.len, &hello), 0);
	assert_int_equal(hello.version, 4);
	assert_int_equal(agent_features(f->agent), 0);
	/* No network, no forwards; said plainly. */
	assert_true(agent_net(f->agent, &net, &err) < 0);
	assert_non_null(strstr(err.msg, "too old"));
	assert_null(agent_forward(f->agent, 80, &bcbs, f, &err));
	assert_non_null(strstr(err.msg, "too old"));
	/* A guest OPEN is not understood by a v4 peer: ignored. */
	f->take_opens = 1;
	guest_open(f, CHAN_STREAM_GUEST | 1, &o);
	assert_int_equal(f->last_open.type, 0);
	/* Commands still run. */
	f->exited = 0;
	{
		const char *argv[] = { "true" };
		struct chan_exec x = { .argc = 1, .argv = argv, .dir = "" };

		assert_non_null(agent_exec(f->agent, &x, &scbs, f, &err));
	}
	assert_int_equal(guest_recv(f, &h, p, sizeof(p)), CHAN_EXEC);
	id = h.stream;
	{
		struct chan_exit ex = { .exit_code = 0 };
		uint8_t e[16];
		int n = chan_exit_encode(e, sizeof(e), &ex);

		guest_send(f, CHAN_EXIT, id, e, (size_t)n);
	}
	assert_true(f->exited);
	assert_int_equal(f->exit_code, 0);
	assert_string_equal(f->failed, "");
}

static void
test_features_are_what_both_speak(void **state)
{
	struct fixture *f = *state;
	struct chan_hello hello;
	struct chan_hdr h;
	uint8_t p[64];

	guest_hello_v(f, CHAN_VERSION, CHAN_FEAT_STREAMS | 0x80000000u);
	assert_int_equal(guest_recv(f, &h, p, sizeof(p)), CHAN_HELLO);
	assert_int_equal(h.len, CHAN_HELLO_LEN);
	assert_int_equal(chan_hello_decode(p, h.len, &hello), 0);
	assert_int_equal(hello.version, CHAN_VERSION);
	assert_int_equal(hello.features, CHAN_FEATURES);
	/* An unknown bit of the guest's is not ours; NET it did not say. */
	assert_int_equal(agent_features(f->agent), CHAN_FEAT_STREAMS);
}

static void
test_unknown_kind_refuses_only_its_stream(void **state)
{
	struct fixture *f = *state;
	const char *argv[] = { "true" };
	struct chan_exec x = { .argc = 1, .argv = argv, .dir = "" };
	struct chan_exit ex = { .exit_code = 3 };
	struct cap_err err;
	struct chan_hdr h;
	static uint8_t p[CHAN_MAX_PAYLOAD];
	uint8_t e[16];
	uint32_t a, b;
	int n;

	guest_hello_v(f, CHAN_VERSION, CHAN_FEATURES);
	assert_int_equal(guest_recv(f, &h, p, sizeof(p)), CHAN_HELLO);
	assert_non_null(agent_exec(f->agent, &x, &scbs, f, &err));
	assert_int_equal(guest_recv(f, &h, p, sizeof(p)), CHAN_EXEC);
	a = h.stream;
	assert_non_null(agent_exec(f->agent, &x, &scbs, f, &err));
	assert_int_equal(guest_recv(f, &h, p, sizeof(p)), CHAN_EXEC);
	b = h.stream;
	/* Kind 99 from a newer agent on stream a: a is refused... */
	guest_send(f, 99, a, "xyz", 3);
	expect_reset(f, a, EPROTONOSUPPORT);
	assert_true(f->exited);
	assert_int_equal(f->exit_code, 125);
	assert_non_null(strstr(f->exit_msg, "99"));
	/* ... and b, and the channel, go on. */
	f->exited = 0;
	n = chan_exit_encode(e, sizeof(e), &ex);
	guest_send(f, CHAN_EXIT, b, e, (size_t)n);
	assert_true(f->exited);
	assert_int_equal(f->exit_code, 3);
	assert_string_equal(f->failed, "");
}

static void
test_guest_opens_nobody_takes_are_refused(void **state)
{
	struct fixture *f = *state;
	struct chan_open o = { .type = CHAN_OPEN_CONNECT, .port = 443,
	    .addr_kind = CHAN_ADDR_NAME, .name = "pypi.org", .name_len = 8 };
	struct chan_open fw = { .type = CHAN_OPEN_FORWARD, .port = 80 };
	struct chan_hdr h;
	uint8_t p[64];
	uint8_t bad[8] = { 77, 0, 0, 0, 1, 2, 3, 4 };	/* type 77 */
	uint8_t junk[6] = { CHAN_OPEN_CONNECT, 0, 0, 0, 0, 0 };

	guest_hello_v(f, CHAN_VERSION, CHAN_FEATURES);
	assert_int_equal(guest_recv(f, &h, p, sizeof(p)), CHAN_HELLO);
	guest_open(f, CHAN_STREAM_GUEST | 1, &o);
	assert_int_equal(f->last_open.type, CHAN_OPEN_CONNECT);
	assert_int_equal(f->last_open.port, 443);
	assert_string_equal(f->open_name, "pypi.org");
	expect_reset(f, CHAN_STREAM_GUEST | 1, EPERM);
	guest_open(f, CHAN_STREAM_GUEST | 2, &fw);
	expect_reset(f, CHAN_STREAM_GUEST | 2, EPERM);
	guest_send(f, CHAN_OPEN, CHAN_STREAM_GUEST | 3, bad, sizeof(bad));
	expect_reset(f, CHAN_STREAM_GUEST | 3, EPROTONOSUPPORT);
	guest_send(f, CHAN_OPEN, CHAN_STREAM_GUEST | 4, junk, sizeof(junk));
	expect_reset(f, CHAN_STREAM_GUEST | 4, EBADMSG);
	assert_string_equal(f->failed, "");
}

/*
 * A guest that keeps opening (each refused OPEN costs capsuled a RESET)
 * and never reads: capsuled stops reading once about a MiB waits for the
 * guest, so the guest's writes block; once the guest reads, every OPEN
 * it sent is answered.
 */
static void
test_guest_that_does_not_read_is_not_queued_for(void **state)
{
	struct fixture *f = *state;
	uint8_t frame[CHAN_HDR_LEN + 4], p[256];
	uint8_t body[4] = { 77, 0, 0, 0 };	/* an unknown type: refused */
	struct chan_hdr h = { .kind = CHAN_OPEN, .len = sizeof(body) };
	unsigned sent = 0, resets = 0;
	int blocked = 0;

	guest_hello_v(f, CHAN_VERSION, CHAN_FEATURES);
	assert_int_equal(guest_recv(f, &h, p, sizeof(p)), CHAN_HELLO);
	h = (struct chan_hdr){ .kind = CHAN_OPEN, .len = sizeof(body) };
	/* 200,000 refusals would be ~12 MiB of RESETs. */
	while (sent < 200000 && !blocked) {
		size_t off = 0;

		h.stream = CHAN_STREAM_GUEST | (sent % 100000 + 1);
		chan_hdr_encode(frame, &h);
		memcpy(frame + CHAN_HDR_LEN, body, sizeof(body));
		while (off < sizeof(frame)) {
			ssize_t n = write(f->guest, frame + off,
			    sizeof(frame) - off);

			if (n > 0) {
				off += (size_t)n;
				continue;
			}
			assert_int_equal(errno, EAGAIN);
			/* Let capsuled read what it will, then look again. */
			spin(f);
			if ((n = write(f->guest, frame + off,
			    sizeof(frame) - off)) > 0) {
				off += (size_t)n;
				continue;
			}
			if (off == 0) {
				blocked = 1;
				break;
			}
			/* Half a frame is in: the next spin takes it. */
		}
		if (!blocked)
			sent++;
		if (sent % 1000 == 0)
			event_base_loop(f->base, EVLOOP_NONBLOCK);
	}
	assert_true(blocked);
	assert_true(sent < 200000);
	/* Reading resumes as the guest drains: every OPEN is answered. */
	while (resets < sent && guest_recv(f, &h, p, sizeof(p)) == CHAN_RESET)
		resets++;
	assert_int_equal(resets, sent);
	assert_string_equal(f->failed, "");
}

static void
test_guest_stream_data_eof_and_window(void **state)
{
	struct fixture *f = *state;
	struct chan_open o = { .type = CHAN_OPEN_CONNECT, .port = 80,
	    .addr_kind = CHAN_ADDR_IPV4, .ipv4 = { 203, 0, 113, 7 } };
	static uint8_t data[CHAN_MAX_DATA];
	struct chan_hdr h;
	uint8_t p[64];
	uint32_t id = CHAN_STREAM_GUEST | 9;

	f->take_opens = 1;
	guest_hello_v(f, CHAN_VERSION, CHAN_FEATURES);
	assert_int_equal(guest_recv(f, &h, p, sizeof(p)), CHAN_HELLO);
	guest_open(f, id, &o);
	assert_non_null(f->opened_stream);
	assert_memory_equal(f->last_open.ipv4, o.ipv4, 4);
	agent_bytes_opened(f->opened_stream);
	assert_int_equal(guest_recv(f, &h, p, sizeof(p)), CHAN_OPENED);
	assert_int_equal(h.stream, id);
	/* Our DATA goes out; then the guest's comes in. */
	assert_int_equal(agent_bytes_write(f->opened_stream,
	    (const uint8_t *)"hello", 5), 5);
	assert_int_equal(guest_recv(f, &h, p, sizeof(p)), CHAN_DATA);
	assert_int_equal(h.len, 5);
	for (size_t sent = 0; sent < CHAN_WINDOW; sent += sizeof(data))
		guest_send(f, CHAN_DATA, id, data, sizeof(data));
	assert_int_equal(f->bytes_in, CHAN_WINDOW);
	/* One byte more than the window: the stream ends, not the channel. */
	guest_send(f, CHAN_DATA, id, data, 1);
	expect_reset(f, id, EPROTO);
	assert_int_equal(f->bytes_ended, 1);
	assert_int_equal(f->bytes_code, EPROTO);
	assert_string_equal(f->failed, "");

	/* Another: EOF both ways ends it cleanly. */
	f->bytes_ended = 0;
	guest_open(f, id + 1, &o);
	agent_bytes_opened(f->opened_stream);
	assert_int_equal(guest_recv(f, &h, p, sizeof(p)), CHAN_OPENED);
	guest_send(f, CHAN_EOF, id + 1, NULL, 0);
	assert_int_equal(f->bytes_eof, 1);
	assert_int_equal(f->bytes_ended, 0);
	assert_int_equal(agent_bytes_eof(f->opened_stream), 1);
	assert_int_equal(guest_recv(f, &h, p, sizeof(p)), CHAN_EOF);
	/* Freed by agent_bytes_eof, without a callback. */
	assert_int_equal(f->bytes_ended, 0);
}

static void
test_forward_and_net(void **state)
{
	struct fixture *f = *state;
	struct chan_net net = { .mode = CHAN_NET_ALLOW, .nroutes = 1,
	    .routes = { { htonl(0xcb007100), 24 } } }, got;
	struct chan_status st = { .code = 0 };
	struct chan_open o;
	struct cap_err err;
	struct chan_hdr h;
	uint8_t p[CHAN_MAX_MSG + 64];
	struct agent_stream *s;
	int n;

	guest_hello_v(f, CHAN_VERSION, CHAN_FEATURES);
	assert_int_equal(guest_recv(f, &h, p, sizeof(p)), CHAN_HELLO);
	/* NET goes on stream 0; NET_DONE comes back to net_done. */
	assert_int_equal(agent_net(f->agent, &net, &err), 0);
	assert_int_equal(guest_recv(f, &h, p, sizeof(p)), CHAN_NET);
	assert_int_equal(h.stream, 0);
	assert_int_equal(chan_net_decode(p, h.len, &got), 0);
	assert_int_equal(got.nroutes, 1);
	st.code = ENODEV;
	st.msg = "no nf_tables";
	st.msg_len = 12;
	n = chan_status_encode(p, sizeof(p), &st);
	guest_send(f, CHAN_NET_DONE, 0, p, (size_t)n);
	assert_int_equal(f->net_done, 1);
	assert_int_equal(f->net_code, ENODEV);
	assert_string_equal(f->net_msg, "no nf_tables");

	/* A forward: OPEN FORWARD, answered OPENED, then refused data. */
	s = agent_forward(f->agent, 8080, &bcbs, f, &err);
	assert_non_null(s);
	assert_int_equal(guest_recv(f, &h, p, sizeof(p)), CHAN_OPEN);
	assert_true(h.stream > 0 && h.stream < CHAN_STREAM_GUEST);
	assert_int_equal(chan_open_decode(p, h.len, &o), 0);
	assert_int_equal(o.type, CHAN_OPEN_FORWARD);
	assert_int_equal(o.port, 8080);
	/* Nothing may be written before it is up. */
	assert_int_equal(agent_bytes_write(s, (const uint8_t *)"x", 1), 0);
	guest_send(f, CHAN_OPENED, h.stream, NULL, 0);
	assert_int_equal(f->bytes_opened, 1);
	st.code = ECONNREFUSED;
	st.msg = "nothing listens on port 8080";
	st.msg_len = 28;
	n = chan_status_encode(p, sizeof(p), &st);
	guest_send(f, CHAN_RESET, h.stream, p, (size_t)n);
	assert_int_equal(f->bytes_ended, 1);
	assert_int_equal(f->bytes_code, ECONNREFUSED);
	assert_string_equal(f->bytes_msg, "nothing listens on port 8080");
	assert_string_equal(f->failed, "");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(
		    test_hello_makes_ready_and_is_answered, setup, teardown),
		cmocka_unit_test_setup_teardown(
		    test_version_mismatch_is_a_clear_error, setup, teardown),
		cmocka_unit_test_setup_teardown(test_garbage_fails_the_channel,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(
		    test_oversized_frame_fails_the_channel, setup, teardown),
		cmocka_unit_test_setup_teardown(test_closed_channel_fails,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(
		    test_output_beyond_window_ends_the_stream, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stdin_respects_credit,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(
		    test_exit_ends_stream_and_unknown_streams_are_ignored,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(
		    test_started_ends_only_a_detached_stream, setup, teardown),
		cmocka_unit_test_setup_teardown(
		    test_heartbeat_pings_and_notices_silence, setup, teardown),
		cmocka_unit_test_setup_teardown(
		    test_silence_ends_nothing_until_the_owner_says, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(
		    test_second_hello_means_the_guest_started_over, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(
		    test_v4_agent_still_runs_commands, setup, teardown),
		cmocka_unit_test_setup_teardown(
		    test_features_are_what_both_speak, setup, teardown),
		cmocka_unit_test_setup_teardown(
		    test_unknown_kind_refuses_only_its_stream, setup, teardown),
		cmocka_unit_test_setup_teardown(
		    test_guest_opens_nobody_takes_are_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(
		    test_guest_that_does_not_read_is_not_queued_for, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(
		    test_guest_stream_data_eof_and_window, setup, teardown),
		cmocka_unit_test_setup_teardown(test_forward_and_net, setup,
		    teardown),
	};

	log_init(LOG_LVL_ERROR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
