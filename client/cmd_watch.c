/*
 * cmd_watch.c — events and doctor: watching capsuled rather than a VM.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "client.h"
#include "proto.h"

static const char *
s_of(json_t *o, const char *key)
{
	const char *s = json_string_value(json_object_get(o, key));

	return s ? s : "";
}

/* One event as a line a person reads: time, event, VM, the rest. */
static void
print_event(json_t *ev)
{
	const char *key;
	json_t *v;
	int first = 1;

	printf("%s  %-13s %s", s_of(ev, EV_TIME), s_of(ev, EV_EVENT),
	    json_object_get(ev, J_VM_ID) ? s_of(ev, J_VM_ID) : "-");
	json_object_foreach(ev, key, v) {
		char *t;

		if (strcmp(key, EV_TIME) == 0 || strcmp(key, EV_EVENT) == 0 ||
		    strcmp(key, J_VM_ID) == 0 || strcmp(key, EV_SEQ) == 0)
			continue;
		t = json_is_string(v) ? NULL : json_dumps(v, JSON_ENCODE_ANY);
		printf("%s%s=%s", first ? "  " : " ", key, t != NULL ? t :
		    json_string_value(v));
		free(t);
		first = 0;
	}
	putchar('\n');
	fflush(stdout);
}

int
cmd_events(int argc, char **argv)
{
	json_t *r, *ev;
	char line[65536];
	int json = 0, fd;
	FILE *in;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--json") == 0)
			json = 1;
		else {
			cli_error("usage: capsule events [--json]");
			return CLI_EXIT_USAGE;
		}
	}
	if ((fd = conn_open(cli_socket, NULL)) < 0)
		return CLI_EXIT_FAIL;
	r = conn_call(fd, json_pack("{s:s}", J_OP, OP_EVENTS));
	if (r == NULL || cli_reply_failed(r)) {
		json_decref(r);
		close(fd);
		return CLI_EXIT_FAIL;
	}
	json_decref(r);
	if ((in = fdopen(fd, "r")) == NULL) {
		close(fd);
		return CLI_EXIT_FAIL;
	}
	while (fgets(line, sizeof(line), in) != NULL) {
		if (json) {
			fputs(line, stdout);
			fflush(stdout);
			continue;
		}
		if ((ev = json_loads(line, 0, NULL)) == NULL)
			continue;
		print_event(ev);
		json_decref(ev);
	}
	fclose(in);
	cli_error("capsuled closed the event stream");
	return CLI_EXIT_FAIL;
}

int
cmd_doctor(int argc, char **argv)
{
	json_t *r, *c, *v;
	const char *key;
	int json = 0, failed = 0;
	size_t i;

	for (int k = 1; k < argc; k++) {
		if (strcmp(argv[k], "--json") == 0)
			json = 1;
		else {
			cli_error("usage: capsule doctor [--json]");
			return CLI_EXIT_USAGE;
		}
	}
	if ((r = conn_request(json_pack("{s:s}", J_OP, OP_DOCTOR))) == NULL)
		return CLI_EXIT_FAIL;
	json_array_foreach(json_object_get(r, J_CHECKS), i, c)
		if (strcmp(s_of(c, J_CHECK_STATUS), CHECK_FAIL) == 0)
			failed = 1;
	if (json) {
		json_object_del(r, J_OK);
		cli_print_json(r);
		json_decref(r);
		return failed;
	}
	json_array_foreach(json_object_get(r, J_CHECKS), i, c)
		printf("%-5s %-16s %s\n", s_of(c, J_CHECK_STATUS),
		    s_of(c, J_CHECK_NAME), s_of(c, J_CHECK_MESSAGE));
	printf("\ncapabilities:\n");
	json_object_foreach(json_object_get(r, J_CAPABILITIES), key, v)
		printf("  %-28s %s\n", key, json_is_true(v) ? "yes" : "no");
	json_decref(r);
	return failed;
}
