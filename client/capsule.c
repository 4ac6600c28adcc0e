/*
 * capsule.c — the CLI's entry point and command table.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client.h"
#include "ctl.h"
#include "proto.h"

const char *cli_socket;

static const struct {
	const char	*name;
	int		(*fn)(int, char **);
	const char	*usage;
} commands[] = {
	{ "ping", cmd_ping, "ping [--json]" },
	{ "start", cmd_start, "start NAME | --from SNAP | [--cpus N] [--memory MiB] [--kernel P] "
	    "[--rootfs P | --image NAME]\n                [--arch x86_64|aarch64] [--disk-size SIZE] "
	    "[--idle-timeout DURATION] [--network none|nat|allow] "
	    "[--allow ENTRY]... [--publish [ADDR:]PORT:PORT]...\n"
	    "                [-v HOSTDIR:GUESTDIR[:ro]]... [--json]" },
	{ "create", cmd_create, "create --name NAME [start options] [--json]" },
	{ "stop", cmd_stop, "stop [--json] ID|NAME... | --all" },
	{ "rm", cmd_rm, "rm [-f|--force] [--json] NAME..." },
	{ "pause", cmd_pause, "pause [--json] ID|NAME..." },
	{ "resume", cmd_resume, "resume [--json] ID|NAME..." },
	{ "fork", cmd_fork, "fork [--json] [-n K] ID|NAME" },
	{ "snapshot", cmd_snapshot, "snapshot [--json] ID|NAME --name SNAP | "
	    "snapshot ls [--json] | snapshot rm SNAP..." },
	{ "ps", cmd_ps, "ps [-a] [--json]" },
	{ "pool", cmd_pool, "pool SIZE [start options] [--json] | pool ls "
	    "[--json]" },
	{ "exec", cmd_exec, "exec [-t] [-d] [-u USER] [-w DIR] [-e K=V]... "
	    "[--env-file F] [--timeout S] ID -- CMD..." },
	{ "shell", cmd_shell, "shell [-u USER] [-w DIR] [-e K=V]... ID" },
	{ "cp", cmd_cp, "cp SRC ID:DST | cp ID:SRC DST  (- for a cpio "
	    "stream)" },
	{ "run", cmd_run, "run [exec options] [start options] -- CMD..." },
	{ "image", cmd_image, "image import PATH | pull REF [--name NAME] "
	    "[--json]\n                | ls [--json] | inspect NAME | rm NAME... "
	    "| prune" },
	{ "events", cmd_events, "events [--json]" },
	{ "doctor", cmd_doctor, "doctor [--json]" },
};

static void
usage(FILE *f)
{
	fprintf(f, "usage: capsule [--socket PATH] COMMAND [ARGS]\n\n");
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		fprintf(f, "  capsule %s\n", commands[i].usage);
	fprintf(f, "\nThe socket is --socket, else $CAPSULE_SOCKET, else "
	    "capsuled's default\n(/run/capsule/capsuled.sock as root, "
	    "$XDG_RUNTIME_DIR/capsule/capsuled.sock otherwise);\nif nobody "
	    "listens on the default one, capsule starts capsuled --daemon\n"
	    "(CAPSULE_NO_AUTOSTART=1: it does not).\n"
	    "exec and run exit with the command's exit status; 125 means "
	    "capsule itself\ncould not run it.\n");
}

int
main(int argc, char *argv[])
{
	static char sock[4096];
	struct cap_err err;
	int i = 1;

	while (i < argc && argv[i][0] == '-') {
		if (strcmp(argv[i], "--socket") == 0 && i + 1 < argc) {
			cli_socket = argv[i + 1];
			i += 2;
		} else if (strncmp(argv[i], "--socket=", 9) == 0) {
			cli_socket = argv[i] + 9;
			i++;
		} else if (strcmp(argv[i], "-h") == 0 ||
		    strcmp(argv[i], "--help") == 0) {
			usage(stdout);
			return 0;
		} else if (strcmp(argv[i], "--version") == 0) {
			printf("capsule %s\n", CAPSULE_VERSION);
			return 0;
		} else {
			usage(stderr);
			return CLI_EXIT_USAGE;
		}
	}
	if (i >= argc) {
		usage(stderr);
		return CLI_EXIT_USAGE;
	}
	if (cli_socket == NULL)
		cli_socket = getenv("CAPSULE_SOCKET");
	if (cli_socket == NULL || cli_socket[0] == '\0') {
		const char *no = getenv("CAPSULE_NO_AUTOSTART");

		if (ctl_default_socket(sock, sizeof(sock), &err) < 0) {
			cli_error("%s", err.msg);
			return CLI_EXIT_FAIL;
		}
		cli_socket = sock;
		cli_autostart = no == NULL || strcmp(no, "1") != 0;
	}
	for (size_t k = 0; k < sizeof(commands) / sizeof(commands[0]); k++)
		if (strcmp(argv[i], commands[k].name) == 0)
			return commands[k].fn(argc - i, argv + i);
	cli_error("unknown command \"%s\"", argv[i]);
	usage(stderr);
	return CLI_EXIT_USAGE;
}
