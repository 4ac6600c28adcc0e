/*
 * fuzz_chan.c — libFuzzer harness for the agent channel codec: whatever a
 * (possibly hostile) guest sends must be split and decoded without reading
 * out of bounds, and credit accounting must never let a window overflow.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "chan.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *argv[64], *envp[64];
	struct chan_rx_window rx;
	struct chan_tx_window tx;
	struct chan_hdr h;
	size_t off = 0;
	long n;

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
		switch (h.kind) {
		case CHAN_HELLO:
			chan_hello_decode(p, h.len, &hello);
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
