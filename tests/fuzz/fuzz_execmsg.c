/*
 * fuzz_execmsg.c — libFuzzer harness for the vsockexec JSON lines: every
 * line a client or the daemon could send parses or fails cleanly, and what
 * parses re-encodes.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "execmsg.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *line = (const char *)data;
	struct exec_req req;
	struct exec_msg m;
	struct cap_err err;
	size_t n;
	char *out;

	if (execmsg_parse_request(line, size, &req, &err) == 0) {
		out = execmsg_encode_request(&req, &n);
		free(out);
		exec_req_free(&req);
	}
	if (execmsg_parse_input(line, size, &m, &err) == 0) {
		out = execmsg_encode_input(&m, &n);
		/* Stdin re-encodes in our own spelling, which the fast path
		 * decodes: it must give back the very same bytes. */
		if (m.type == EXEC_IN_STDIN) {
			struct exec_msg again;

			if (out == NULL || execmsg_parse_input(out, n - 1,
			    &again, &err) != 0 || again.type != m.type ||
			    again.len != m.len ||
			    (m.len > 0 && memcmp(again.data, m.data, m.len)))
				abort();
			exec_msg_free(&again);
		}
		free(out);
		exec_msg_free(&m);
	}
	if (execmsg_parse_output(line, size, &m, &err) == 0) {
		if (m.type == EXEC_OUT_STDOUT || m.type == EXEC_OUT_STDERR) {
			out = execmsg_encode_data(m.type, m.data, m.len, &n);
			free(out);
		} else if (m.type == EXEC_OUT_EXIT) {
			out = execmsg_encode_exit(m.exit_code, m.signal, m.error,
			    0, &n);
			if (out == NULL)
				abort();
			free(out);
		}
		exec_msg_free(&m);
	}
	return 0;
}
