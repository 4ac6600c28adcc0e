/*
 * fuzz_chan.c — libFuzzer harness for the agent channel codec: whatever a
 * (possibly hostile) guest sends must be split and decoded without reading
 * out of bounds, and credit accounting must never let a window overflow.
 * What the stream and network payloads (OPEN, RESET, NET_DONE, NET) decode
 * to encodes to the very same bytes; the whole input is also tried as each
 * of those payloads, so they are reached without a frame around them.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "chan.h"

static uint8_t again[CHAN_NET_FIXED + 8 * CHAN_NET_MAX_ROUTES + CHAN_MAX_MSG];

static void
check_hello(const uint8_t *p, size_t len)
{
	struct chan_hello h;
	size_t words = 4;
	int n;

	if (chan_hello_decode(p, len, &h) != 0)
		return;
	if (len < 4 || (h.version < 5 && h.features != 0))
		abort();
	n = chan_hello_encode(again, sizeof(again), &h);
	if (n != (h.version < 5 ? CHAN_HELLO_V4_LEN : CHAN_HELLO_LEN))
		abort();
	/* The words that were read come back as they were. */
	if (len >= CHAN_HELLO_V4_LEN)
		words = CHAN_HELLO_V4_LEN;
	if (len >= CHAN_HELLO_LEN && h.version >= 5)
		words = CHAN_HELLO_LEN;
	if (memcmp(again, p, words) != 0)
		abort();
}

static void
check_open(const uint8_t *p, size_t len)
{
	struct chan_open o;
	long n;

	if (chan_open_decode(p, len, &o) != 0 || o.unknown)
		return;
	if (o.name != NULL && ((const uint8_t *)o.name != p + 8 ||
	    8 + (size_t)o.name_len != len ||
	    chan_name_check(o.name, o.name_len) != 0))
		abort();
	if ((o.type == CHAN_OPEN_CONNECT || o.type == CHAN_OPEN_FORWARD) &&
	    o.port == 0)
		abort();
	n = chan_open_encode(again, sizeof(again), &o);
	if (n < 0 || (size_t)n != len || memcmp(again, p, len) != 0)
		abort();
}

static void
check_status(const uint8_t *p, size_t len)
{
	struct chan_status st;
	int n;

	if (chan_status_decode(p, len, &st) != 0)
		return;
	if (st.code > 4095 || st.msg_len > CHAN_MAX_MSG)
		abort();
	n = chan_status_encode(again, sizeof(again), &st);
	if (n < 0 || (size_t)n != len || memcmp(again, p, len) != 0)
		abort();
}

static void
check_net(const uint8_t *p, size_t len)
{
	static struct chan_net net;
	long n;

	if (chan_net_decode(p, len, &net) != 0)
		return;
	if (net.mode > CHAN_NET_ALLOW || net.prefix > 32 ||
	    net.nroutes > CHAN_NET_MAX_ROUTES ||
	    (net.mode != CHAN_NET_ALLOW && net.nroutes != 0))
		abort();
	n = chan_net_encode(again, sizeof(again), &net);
	if (n < 0 || (size_t)n != len || memcmp(again, p, len) != 0)
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *argv[64], *envp[64];
	struct chan_rx_window rx;
	struct chan_tx_window tx;
	struct chan_hdr h;
	size_t off = 0;
	long n;

	check_hello(data, size);
	check_open(data, size);
	check_status(data, size);
	check_net(data, size);
	chan_rx_init(&rx);
	chan_tx_init(&tx);
	while (off < size) {
		const uint8_t *p;
		struct chan_exec x = { .argv = argv, .envp = envp };
		struct chan_hello hello;
		struct chan_exit ex;
		struct chan_started st;
		uint16_t cols, rows;
		uint32_t v;

		n = chan_frame_ready(data + off, size - off, &h);
		if (n <= 0)
			break;
		p = data + off + CHAN_HDR_LEN;
		/* Only the control stream insists on kinds it knows. */
		if (h.stream == 0 && !chan_kind_valid(h.kind))
			abort();
		switch (h.kind) {
		case CHAN_HELLO:
			chan_hello_decode(p, h.len, &hello);
			check_hello(p, h.len);
			break;
		case CHAN_OPEN:
			check_open(p, h.len);
			break;
		case CHAN_RESET:
		case CHAN_NET_DONE:
			check_status(p, h.len);
			break;
		case CHAN_NET:
			check_net(p, h.len);
			break;
		case CHAN_EXEC:
			if (chan_exec_decode(p, h.len, &x, 64, 64) == 0) {
				/* Every decoded string lies inside the frame. */
				for (uint32_t i = 0; i < x.argc; i++)
					if ((const uint8_t *)x.argv[i] < p ||
					    (const uint8_t *)x.argv[i] +
					    strlen(x.argv[i]) >= p + h.len)
						abort();
			}
			break;
		case CHAN_EXIT:
			if (chan_exit_decode(p, h.len, &ex) == 0 &&
			    ex.msg_len > CHAN_MAX_MSG)
				abort();
			break;
		case CHAN_RESIZE:
			chan_resize_decode(p, h.len, &cols, &rows);
			break;
		case CHAN_STARTED:
			if (chan_started_decode(p, h.len, &st) == 0 &&
			    (st.log_len > CHAN_MAX_PATH ||
			    memchr(st.log, '\0', st.log_len) != NULL))
				abort();
			break;
		case CHAN_COPY_IN:
		case CHAN_COPY_OUT:
			if (chan_path_check(p, h.len) == 0 && p[0] != '/')
				abort();
			break;
		case CHAN_CREDIT:
			if (chan_u32_decode(p, h.len, &v) == 0 &&
			    chan_tx_grant(&tx, v) == 0 &&
			    tx.credit > CHAN_WINDOW)
				abort();
			break;
		case CHAN_STDOUT:
		case CHAN_STDERR:
		case CHAN_DATA:
			if (h.len > CHAN_MAX_DATA)
				abort();
			if (chan_rx_receive(&rx, h.len) == 0) {
				if (rx.held + rx.released > CHAN_WINDOW)
					abort();
				chan_rx_release(&rx, h.len / 2);
			}
			break;
		}
		off += (size_t)n;
	}
	return 0;
}
