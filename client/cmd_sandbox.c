/*
 * cmd_sandbox.c — create, rm, and the sandbox half of `ps -a`: named
 * sandboxes that keep their disk (start NAME, stop NAME, exec NAME go
 * through cmd_vm.c and cmd_exec.c, which accept a name for an id).
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "client.h"
#include "proto.h"

int
cmd_create(int argc, char **argv)
{
	json_t *req = json_pack("{s:s}", J_OP, OP_CREATE_SANDBOX), *r, *sb;
	int json = 0, t;

	for (int i = 1; i < argc; i++) {
		if ((t = start_option(req, argc, argv, &i)) < 0) {
			json_decref(req);
			return CLI_EXIT_USAGE;
		}
		if (t)
			continue;
		if (strcmp(argv[i], "--json") == 0)
			json = 1;
		else {
			cli_error("usage: capsule create --name NAME [start "
			    "options] [--json]");
			json_decref(req);
			return CLI_EXIT_USAGE;
		}
	}
	if (json_object_get(req, J_NAME) == NULL) {
		cli_error("create needs --name NAME");
		json_decref(req);
		return CLI_EXIT_USAGE;
	}
	if ((r = conn_request(req)) == NULL)
		return CLI_EXIT_FAIL;
	sb = json_object_get(r, J_SANDBOX);
	if (json)
		cli_print_json(sb);
	else
		printf("%s\n", cli_str(sb, J_NAME));
	json_decref(r);
	return 0;
}

json_t *
cli_find_sandbox(const char *name)
{
	json_t *r, *sbs, *sb, *found = NULL;
	size_t i;

	if ((r = conn_request(json_pack("{s:s}", J_OP,
	    OP_LIST_SANDBOXES))) == NULL)
		return NULL;
	sbs = json_object_get(r, J_SANDBOXES);
	/* One's own by name (root sees everyone's); anyone's by id. */
	json_array_foreach(sbs, i, sb)
		if ((strcmp(cli_str(sb, J_NAME), name) == 0 &&
		    json_integer_value(json_object_get(sb, J_OWNER_UID)) ==
		    (json_int_t)getuid()) || strcmp(cli_str(sb, J_ID), name) == 0) {
			found = json_incref(sb);
			break;
		}
	json_decref(r);
	return found;
}

/* rm [--force] NAME...: --force stops a running one first. */
int
cmd_rm(int argc, char **argv)
{
	int force = 0, json = 0, n = 0, rc = 0;
	json_t *r;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--force") == 0 ||
		    strcmp(argv[i], "-f") == 0)
			force = 1;
		else if (strcmp(argv[i], "--json") == 0)
			json = 1;
		else if (argv[i][0] == '-') {
			cli_error("usage: capsule rm [-f|--force] [--json] "
			    "NAME...");
			return CLI_EXIT_USAGE;
		}
	}
	for (int i = 1; i < argc; i++) {
		if (argv[i][0] == '-')
			continue;
		n++;
		/* The daemon stops it first (force) and removes it: one
		 * request, for the sandbox it resolves, nothing else. */
		r = conn_request(json_pack("{s:s, s:s, s:b}", J_OP,
		    OP_REMOVE_SANDBOX, J_SANDBOX, argv[i], J_FORCE, force));
		if (r == NULL) {
			rc = CLI_EXIT_FAIL;
			continue;
		}
		if (json)
			cli_print_json(r);
		else
			printf("%s\n", argv[i]);
		json_decref(r);
	}
	if (n == 0) {
		cli_error("usage: capsule rm [-f|--force] [--json] NAME...");
		return CLI_EXIT_USAGE;
	}
	return rc;
}

/* The sandboxes table of `ps -a`. */
void
cli_ps_sandboxes(json_t *sbs)
{
	json_t *sb;
	size_t i;

	if (json_array_size(sbs) == 0)
		return;
	printf("\n%-24s  %-8s  %-19s  %-14s  %s\n", "SANDBOX", "STATE",
	    "DISK USED/SIZE", "IMAGE", "VM ID");
	json_array_foreach(sbs, i, sb) {
		char disk[32];
		const char *img = cli_str(sb, J_IMAGE);

		snprintf(disk, sizeof(disk), "%.1f/%lld MiB",
		    (double)json_integer_value(json_object_get(sb,
		    J_DISK_USED)) / (1 << 20),
		    json_integer_value(json_object_get(sb, J_DISK_SIZE_MIB)));
		printf("%-24s  %-8s  %-19s  %-14.14s  %s\n", cli_str(sb, J_NAME),
		    cli_str(sb, J_STATE), disk, img[0] ? img + 7 : "-",
		    cli_str(sb, J_VM_ID)[0] ? cli_str(sb, J_VM_ID) : "-");
	}
}
