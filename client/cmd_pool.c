/*
 * cmd_pool.c — `capsule pool`: warm pools of ready VMs (docs/templates.md).
 *
 * A pool made here holds VMs of `capsule run`'s request with the same
 * start options (they stop when the run's client goes), so `capsule run
 * [start options] -- CMD` takes a ready one.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client.h"
#include "proto.h"

static void
pool_line(json_t *p)
{
	json_t *req = json_object_get(p, J_REQUEST);
	char *fields = req != NULL ? json_dumps(req, JSON_COMPACT |
	    JSON_SORT_KEYS) : NULL;

	printf("%-4lld %4lld %5lld %8lld %10lld  %s\n",
	    (long long)json_integer_value(json_object_get(p, J_POOL_ID)),
	    (long long)json_integer_value(json_object_get(p, J_SIZE)),
	    (long long)json_integer_value(json_object_get(p, J_READY)),
	    (long long)json_integer_value(json_object_get(p, J_STARTING)),
	    (long long)json_integer_value(json_object_get(p, J_HANDED_OUT)),
	    fields != NULL ? fields : "");
	if (json_object_get(p, J_ERROR) != NULL)
		printf("     not refilling: %s\n", cli_str(p, J_ERROR));
	free(fields);
}

static int
pool_ls(int json)
{
	json_t *r, *p;
	size_t i;

	if ((r = conn_request(json_pack("{s:s}", J_OP, OP_LIST_POOLS))) ==
	    NULL)
		return CLI_EXIT_FAIL;
	if (json)
		cli_print_json(json_object_get(r, J_POOLS));
	else {
		printf("POOL SIZE READY STARTING HANDED_OUT  REQUEST\n");
		json_array_foreach(json_object_get(r, J_POOLS), i, p)
			pool_line(p);
	}
	json_decref(r);
	return 0;
}

int
cmd_pool(int argc, char **argv)
{
	json_t *req, *r, *p;
	long long size;
	int json = 0, t;

	if (argc >= 2 && strcmp(argv[1], "ls") == 0) {
		if (argc > 3 || (argc == 3 && strcmp(argv[2], "--json") != 0)) {
			cli_error("usage: capsule pool ls [--json]");
			return CLI_EXIT_USAGE;
		}
		return pool_ls(argc == 3);
	}
	if (argc < 2 || parse_uint("pool size", argv[1], 0, 1000, &size) < 0) {
		cli_error("usage: capsule pool SIZE [start options] [--json] | "
		    "capsule pool ls [--json]");
		return CLI_EXIT_USAGE;
	}
	req = json_pack("{s:s, s:I, s:b}", J_OP, OP_SET_POOL, J_SIZE,
	    (json_int_t)size, J_STOP_ON_DISCONNECT, 1);
	for (int i = 2; i < argc; i++) {
		if ((t = start_option(req, argc, argv, &i)) < 0) {
			json_decref(req);
			return CLI_EXIT_USAGE;
		}
		if (t && json_object_get(req, J_NAME) != NULL) {
			cli_error("a sandbox cannot be pooled");
			json_decref(req);
			return CLI_EXIT_USAGE;
		}
		if (t)
			continue;
		if (strcmp(argv[i], "--json") == 0)
			json = 1;
		else {
			cli_error("usage: capsule pool SIZE [start options] "
			    "[--json]");
			json_decref(req);
			return CLI_EXIT_USAGE;
		}
	}
	if ((r = conn_request(req)) == NULL)
		return CLI_EXIT_FAIL;
	p = json_object_get(r, J_POOL);
	if (json)
		cli_print_json(p);
	else if (json_is_null(p))
		printf("pool removed\n");
	else {
		printf("POOL SIZE READY STARTING HANDED_OUT  REQUEST\n");
		pool_line(p);
	}
	json_decref(r);
	return 0;
}
