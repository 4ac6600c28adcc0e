/*
 * fuzz_ctl.c — libFuzzer harness for control requests: any line gets a
 * parsed request or an error, and any error becomes a reply with a message.
 */
#include <stdint.h>
#include <stdlib.h>

#include "ctl.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ctl_limits lim = { .max_vcpus = 4, .max_memory_mib = 4096 };
	struct ctl_start s;
	struct cap_err err = { 0 };
	const char *op, *id;
	int all;
	json_t *req = NULL, *reply;

	if (ctl_parse_request((const char *)data, size, &req, &op, &err) == 0) {
		if (ctl_parse_start(req, &lim, &s, &err) == 0)
			ctl_start_free(&s);
		ctl_parse_stop(req, &id, &all, &err);
	}
	err.msg[0] = '\0';
	reply = ctl_reply_error(req, &err);
	/* An error reply always carries a message and a code. */
	if (reply == NULL || json_object_get(reply, "error") == NULL ||
	    json_object_get(reply, "code") == NULL)
		abort();
	json_decref(reply);
	json_decref(req);
	return 0;
}
