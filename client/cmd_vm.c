/*
 * cmd_vm.c — ping, start, stop, pause, resume, ps.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "client.h"
#include "proto.h"
#include "volume.h"

static int
has_flag(int argc, char **argv, const char *flag)
{
	for (int i = 1; i < argc; i++)
		if (strcmp(argv[i], flag) == 0)
			return 1;
	return 0;
}

int
cmd_ping(int argc, char **argv)
{
	int json = 0;
	json_t *r;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--json") == 0)
			json = 1;
		else {
			cli_error("usage: capsule ping [--json]");
			return CLI_EXIT_USAGE;
		}
	}
	if ((r = conn_request(json_pack("{s:s}", J_OP, OP_PING))) == NULL)
		return CLI_EXIT_FAIL;
	if (json)
		cli_print_json(r);
	else {
		printf("capsuled %s (protocol %lld): backend %s (%s), accel "
		    "%s, %lld VM(s)\n", cli_str(r, J_VERSION),
		    json_integer_value(json_object_get(r, J_PROTOCOL)),
		    cli_str(r, J_BACKEND), cli_str(r, J_HYPERVISOR), cli_str(r, J_ACCEL),
		    json_integer_value(json_object_get(r, J_VMS)));
		if (cli_str(r, J_ACCEL_NOTE)[0])
			printf("  %s\n", cli_str(r, J_ACCEL_NOTE));
	}
	json_decref(r);
	return 0;
}

int
parse_uint(const char *opt, const char *s, long long lo, long long hi,
    long long *out)
{
	char *end;

	errno = 0;
	*out = strtoll(s, &end, 10);
	if (errno || *end || end == s || *out < lo || *out > hi) {
		cli_error("%s takes a number from %lld to %lld, not \"%s\"", opt,
		    lo, hi, s);
		return -1;
	}
	return 0;
}

/* N with an optional unit: "512M", "8G", "1T" (MiB by default) into MiB,
 * or "90", "30s", "10m", "2h" (seconds by default) into seconds. */
static int
parse_scaled(const char *opt, const char *s, const char *units,
    const unsigned long long *scale, unsigned long long *out)
{
	char *end;
	const char *u;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno == 0 && s[0] >= '0' && s[0] <= '9') {
		if (*end == '\0') {
			*out = v;
			return 0;
		}
		if (end[1] == '\0' && (u = strchr(units, *end)) != NULL &&
		    v <= ~0ULL / scale[u - units]) {
			*out = v * scale[u - units];
			return 0;
		}
	}
	cli_error("%s takes a number with an optional unit (%s), not \"%s\"",
	    opt, units, s);
	return -1;
}

/* --disk-size SIZE, --idle-timeout DURATION. */
static int
scaled_option(json_t *req, int argc, char **argv, int *i)
{
	static const unsigned long long mib[] = { 1, 1, 1024, 1024, 1 << 20,
	    1 << 20 }, secs[] = { 1, 60, 3600 };
	const char *opt = argv[*i];
	unsigned long long v;

	if (strcmp(opt, "--disk-size") != 0 &&
	    strcmp(opt, "--idle-timeout") != 0)
		return 0;
	if (*i + 1 >= argc) {
		cli_error("%s needs a value", opt);
		return -1;
	}
	(*i)++;
	if (strcmp(opt, "--disk-size") == 0) {
		if (parse_scaled(opt, argv[*i], "MmGgTt", mib, &v) < 0)
			return -1;
		json_object_set_new(req, J_DISK_SIZE_MIB, json_integer(
		    v > (1ULL << 50) ? (json_int_t)1 << 50 : (json_int_t)v));
	} else {
		if (parse_scaled(opt, argv[*i], "smh", secs, &v) < 0)
			return -1;
		json_object_set_new(req, J_IDLE_TIMEOUT, json_integer(
		    v > (1ULL << 40) ? (json_int_t)1 << 40 : (json_int_t)v));
	}
	return 1;
}

/* --network MODE, --allow ENTRY (implies allow), --publish SPEC: the
 * daemon checks the values, and names a bad one. */
static int
net_option(json_t *req, int argc, char **argv, int *i)
{
	json_t *net, *list;
	const char *opt = argv[*i];

	if (strcmp(opt, "--network") != 0 && strcmp(opt, "--allow") != 0 &&
	    strcmp(opt, "--publish") != 0)
		return 0;
	if (*i + 1 >= argc) {
		cli_error("%s needs a value", opt);
		return -1;
	}
	(*i)++;
	if (strcmp(opt, "--publish") == 0) {
		if ((list = json_object_get(req, J_PUBLISH)) == NULL)
			json_object_set_new(req, J_PUBLISH,
			    list = json_array());
		json_array_append_new(list, json_string(argv[*i]));
		return 1;
	}
	if ((net = json_object_get(req, J_NETWORK)) == NULL)
		json_object_set_new(req, J_NETWORK, net = json_object());
	if (strcmp(opt, "--network") == 0) {
		json_object_set_new(net, J_NET_MODE, json_string(argv[*i]));
		return 1;
	}
	if (json_object_get(net, J_NET_MODE) == NULL)
		json_object_set_new(net, J_NET_MODE,
		    json_string(NETMODE_ALLOW));
	if ((list = json_object_get(net, J_NET_ALLOW)) == NULL)
		json_object_set_new(net, J_NET_ALLOW, list = json_array());
	json_array_append_new(list, json_string(argv[*i]));
	return 1;
}

/* --volume/-v HOSTDIR:GUESTDIR[:ro]: checked here too, for a message
 * that names the option; a relative HOSTDIR is made absolute. */
static int
volume_option(json_t *req, int argc, char **argv, int *i)
{
	struct volume v;
	struct cap_err err;
	char abs[4096], *arg;
	json_t *list, *one;

	if (strcmp(argv[*i], "--volume") != 0 && strcmp(argv[*i], "-v") != 0)
		return 0;
	if (*i + 1 >= argc) {
		cli_error("%s needs HOSTDIR:GUESTDIR[:ro]", argv[*i]);
		return -1;
	}
	arg = argv[++(*i)];
	if (arg[0] != '/') {
		size_t n = strcspn(arg, ":");
		char rel[4096];

		snprintf(rel, sizeof(rel), "%.*s", (int)n, arg);
		if (n == 0 || realpath(rel, abs) == NULL) {
			cli_error("volume %s: %s: %s", arg, rel, n == 0 ?
			    "no host directory" : strerror(errno));
			return -1;
		}
		if (strlen(abs) + strlen(arg + n) >= sizeof(abs)) {
			cli_error("volume %s: path too long", arg);
			return -1;
		}
		strcat(abs, arg + n);
		arg = abs;
	}
	if (volume_parse_arg(arg, &v, &err) < 0) {
		cli_error("%s", err.msg);
		return -1;
	}
	if ((list = json_object_get(req, J_VOLUMES)) == NULL)
		json_object_set_new(req, J_VOLUMES, list = json_array());
	one = volume_json(&v, 1);
	json_array_append(list, json_array_get(one, 0));
	json_decref(one);
	volume_free(&v, 1);
	return 1;
}

int
start_option(json_t *req, int argc, char **argv, int *i)
{
	static const struct {
		const char	*opt;
		const char	*field;
		int		 number;
	} opts[] = {
		{ "--cpus", J_VCPUS, 1 },
		{ "--memory", J_MEMORY_MIB, 1 },
		{ "--kernel", J_KERNEL_PATH, 0 },
		{ "--rootfs", J_ROOTFS_PATH, 0 },
		{ "--image", J_IMAGE, 0 },
		{ "--arch", J_ARCH, 0 },
		{ "--initrd", J_INITRD_PATH, 0 },
		{ "--boot-args", J_BOOT_ARGS, 0 },
		{ "--launch-timeout", J_LAUNCH_SECONDS, 1 },
		{ "--name", J_NAME, 0 },
	};
	char abs[4096];
	long long v;
	int r;

	if ((r = net_option(req, argc, argv, i)) != 0 ||
	    (r = volume_option(req, argc, argv, i)) != 0 ||
	    (r = scaled_option(req, argc, argv, i)) != 0)
		return r;
	for (size_t k = 0; k < sizeof(opts) / sizeof(opts[0]); k++) {
		if (strcmp(argv[*i], opts[k].opt) != 0)
			continue;
		if (*i + 1 >= argc) {
			cli_error("%s needs a value", opts[k].opt);
			return -1;
		}
		(*i)++;
		if (opts[k].number) {
			if (parse_uint(opts[k].opt, argv[*i], 0, 1LL << 40,
			    &v) < 0)
				return -1;
			json_object_set_new(req, opts[k].field,
			    json_integer(v));
		} else if (strcmp(opts[k].field, J_BOOT_ARGS) != 0 &&
		    strcmp(opts[k].field, J_IMAGE) != 0 &&
		    strcmp(opts[k].field, J_ARCH) != 0 &&
		    strcmp(opts[k].field, J_NAME) != 0 &&
		    argv[*i][0] != '/' && realpath(argv[*i], abs) != NULL) {
			/* The daemon wants absolute paths; be kind. */
			json_object_set_new(req, opts[k].field,
			    json_string(abs));
		} else {
			json_object_set_new(req, opts[k].field,
			    json_string(argv[*i]));
		}
		return 1;
	}
	return 0;
}

int
cmd_start(int argc, char **argv)
{
	json_t *req = json_pack("{s:s}", J_OP, OP_START_VM), *r;
	const char *name = NULL, *from = NULL;
	int json = 0, t, opts = 0;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--from") == 0 && i + 1 < argc &&
		    from == NULL) {
			from = argv[++i];
			continue;
		}
		if ((t = start_option(req, argc, argv, &i)) < 0) {
			json_decref(req);
			return CLI_EXIT_USAGE;
		}
		opts += t;
		if (t)
			continue;
		if (strcmp(argv[i], "--json") == 0)
			json = 1;
		else if (argv[i][0] != '-' && name == NULL)
			name = argv[i];
		else {
			cli_error("usage: capsule start NAME | [--cpus N] "
			    "[--memory MiB] [--kernel P] [--rootfs P | --image "
			    "NAME] [--arch x86_64|aarch64] [--disk-size SIZE] "
			    "[--idle-timeout DURATION] [--initrd P] "
			    "[--boot-args S] [--launch-timeout S] [--network "
			    "none|nat|allow] [--allow ENTRY]... [--publish "
			    "[ADDR:]HOSTPORT:GUESTPORT]... [-v "
			    "HOSTDIR:GUESTDIR[:ro]]... [--json]");
			json_decref(req);
			return CLI_EXIT_USAGE;
		}
	}
	if (json_object_get(req, J_NAME) != NULL) {
		cli_error("start takes no --name: `capsule create --name NAME "
		    "...` makes a sandbox, `capsule start NAME` starts it");
		json_decref(req);
		return CLI_EXIT_USAGE;
	}
	if (name != NULL && opts > 0) {
		cli_error("a sandbox starts as it was created: `capsule start "
		    "%s` takes no other options", name);
		json_decref(req);
		return CLI_EXIT_USAGE;
	}
	if (from != NULL && (opts > 0 || name != NULL)) {
		cli_error("a VM from a snapshot starts as it was saved: `capsule "
		    "start --from %s` takes no other options", from);
		json_decref(req);
		return CLI_EXIT_USAGE;
	}
	if (name != NULL)
		json_object_set_new(req, J_SANDBOX, json_string(name));
	if (from != NULL)
		json_object_set_new(req, J_SNAPSHOT, json_string(from));
	if ((r = conn_request(req)) == NULL)
		return CLI_EXIT_FAIL;
	if (json)
		cli_print_json(r);
	else
		printf("%s\n", cli_str(r, J_VM_ID));
	json_decref(r);
	return 0;
}

/* Every VM this user may see. */
static int
stop_all(int json)
{
	json_t *r, *v;
	size_t i;

	r = conn_request(json_pack("{s:s, s:b}", J_OP, OP_STOP_VM, J_ALL, 1));
	if (r == NULL)
		return CLI_EXIT_FAIL;
	if (json)
		cli_print_json(r);
	else
		json_array_foreach(json_object_get(r, J_STOPPED), i, v)
			printf("%s\n", json_string_value(v));
	json_decref(r);
	return 0;
}

/* op (StopVM, PauseVM, ResumeVM) for each ID|NAME in argv; --json. */
static int
each_vm(int argc, char **argv, const char *op)
{
	int json = has_flag(argc, argv, "--json"), rc = 0, n = 0;
	json_t *vm, *r;

	for (int i = 1; i < argc; i++)
		if (argv[i][0] == '-' && strcmp(argv[i], "--json") != 0)
			return -1;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--json") == 0)
			continue;
		n++;
		if ((vm = cli_find_vm(argv[i])) == NULL) {
			rc = CLI_EXIT_FAIL;
			continue;
		}
		r = conn_request(json_pack("{s:s, s:s}", J_OP, op, J_VM_ID,
		    cli_str(vm, J_VM_ID)));
		if (r == NULL)
			rc = CLI_EXIT_FAIL;
		else if (json)
			cli_print_json(r);
		else
			printf("%s\n", cli_str(vm, J_VM_ID));
		json_decref(r);
		json_decref(vm);
	}
	return n == 0 ? -1 : rc;
}

int
cmd_stop(int argc, char **argv)
{
	int json = has_flag(argc, argv, "--json"), rc;

	if (has_flag(argc, argv, "--all")) {
		if (argc > 2 + json) {
			cli_error("usage: capsule stop [--json] --all");
			return CLI_EXIT_USAGE;
		}
		return stop_all(json);
	}
	if ((rc = each_vm(argc, argv, OP_STOP_VM)) < 0) {
		cli_error("usage: capsule stop [--json] ID|NAME... | --all");
		return CLI_EXIT_USAGE;
	}
	return rc;
}

static int
pause_resume(int argc, char **argv, const char *op)
{
	int rc;

	if ((rc = each_vm(argc, argv, op)) < 0) {
		cli_error("usage: capsule %s [--json] ID|NAME...", argv[0]);
		return CLI_EXIT_USAGE;
	}
	return rc;
}

int
cmd_pause(int argc, char **argv)
{
	return pause_resume(argc, argv, OP_PAUSE_VM);
}

int
cmd_resume(int argc, char **argv)
{
	return pause_resume(argc, argv, OP_RESUME_VM);
}

/* fork [--json] [-n K] ID|NAME: K copies of a running VM (ForkVM); their
 * ids, one per line. */
int
cmd_fork(int argc, char **argv)
{
	const char *ref = NULL;
	json_t *vm, *r, *v;
	int json = 0;
	long n = 1;
	size_t i;
	char *end;

	for (int k = 1; k < argc; k++) {
		if (strcmp(argv[k], "--json") == 0)
			json = 1;
		else if ((strcmp(argv[k], "-n") == 0 ||
		    strcmp(argv[k], "--count") == 0) && k + 1 < argc) {
			n = strtol(argv[++k], &end, 10);
			if (*argv[k] == '\0' || *end != '\0' || n < 1 ||
			    n > 1000) {
				cli_error("fork: -n takes a number of copies, "
				    "not \"%s\"", argv[k]);
				return CLI_EXIT_USAGE;
			}
		} else if (argv[k][0] != '-' && ref == NULL) {
			ref = argv[k];
		} else {
			ref = NULL;
			break;
		}
	}
	if (ref == NULL) {
		cli_error("usage: capsule fork [--json] [-n K] ID|NAME");
		return CLI_EXIT_USAGE;
	}
	if ((vm = cli_find_vm(ref)) == NULL)
		return CLI_EXIT_FAIL;
	r = conn_request(json_pack("{s:s, s:s, s:i}", J_OP, OP_FORK_VM,
	    J_VM_ID, cli_str(vm, J_VM_ID), J_COUNT, (int)n));
	json_decref(vm);
	if (r == NULL)
		return CLI_EXIT_FAIL;
	if (json)
		cli_print_json(r);
	else
		json_array_foreach(json_object_get(r, J_VMS), i, v)
			printf("%s\n", cli_str(v, J_VM_ID));
	json_decref(r);
	return 0;
}

static int
snapshot_usage(void)
{
	cli_error("usage: capsule snapshot [--json] ID|NAME --name SNAP | "
	    "snapshot ls [--json] | snapshot rm SNAP...");
	return CLI_EXIT_USAGE;
}

static int
snapshot_ls(int json)
{
	json_t *r, *snaps, *s;
	char when[32];
	size_t i;

	if ((r = conn_request(json_pack("{s:s}", J_OP,
	    OP_LIST_SNAPSHOTS))) == NULL)
		return CLI_EXIT_FAIL;
	if (json) {
		cli_print_json(r);
		json_decref(r);
		return 0;
	}
	snaps = json_object_get(r, J_SNAPSHOTS);
	printf("%-24s %-20s %8s %9s %9s  %s\n", "NAME", "CREATED", "MEMORY",
	    "DISK", "ON DISK", "FROM VM");
	json_array_foreach(snaps, i, s) {
		time_t t = (time_t)json_integer_value(json_object_get(s,
		    J_CREATED_AT));
		struct tm tm;

		gmtime_r(&t, &tm);
		strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
		printf("%-24s %-20s %5lld MiB %5lld MiB %5lld MiB  %s\n",
		    cli_str(s, J_NAME), when,
		    json_integer_value(json_object_get(s, J_MEMORY_MIB)),
		    json_integer_value(json_object_get(s, J_DISK_SIZE_MIB)),
		    json_integer_value(json_object_get(s, J_BYTES)) >> 20,
		    cli_str(s, J_VM_ID));
	}
	json_decref(r);
	return 0;
}

/* snapshot ID|NAME --name SNAP | snapshot ls | snapshot rm SNAP... */
int
cmd_snapshot(int argc, char **argv)
{
	int json = has_flag(argc, argv, "--json"), rc = 0;
	const char *ref = NULL, *name = NULL;
	json_t *vm, *r;

	if (argc >= 2 && strcmp(argv[1], "ls") == 0) {
		if (argc > 2 + json)
			return snapshot_usage();
		return snapshot_ls(json);
	}
	if (argc >= 2 && strcmp(argv[1], "rm") == 0) {
		if (argc < 3)
			return snapshot_usage();
		for (int i = 2; i < argc; i++) {
			if (strcmp(argv[i], "--json") == 0)
				continue;
			r = conn_request(json_pack("{s:s, s:s}", J_OP,
			    OP_REMOVE_SNAPSHOT, J_NAME, argv[i]));
			if (r == NULL)
				rc = CLI_EXIT_FAIL;
			else if (json)
				cli_print_json(r);
			else
				printf("%s\n", argv[i]);
			json_decref(r);
		}
		return rc;
	}
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--json") == 0)
			continue;
		if (strcmp(argv[i], "--name") == 0 && i + 1 < argc &&
		    name == NULL)
			name = argv[++i];
		else if (argv[i][0] != '-' && ref == NULL)
			ref = argv[i];
		else
			return snapshot_usage();
	}
	if (ref == NULL || name == NULL)
		return snapshot_usage();
	if ((vm = cli_find_vm(ref)) == NULL)
		return CLI_EXIT_FAIL;
	r = conn_request(json_pack("{s:s, s:s, s:s}", J_OP, OP_SNAPSHOT_VM,
	    J_VM_ID, cli_str(vm, J_VM_ID), J_NAME, name));
	json_decref(vm);
	if (r == NULL)
		return CLI_EXIT_FAIL;
	if (json)
		cli_print_json(r);
	else
		printf("%s\n", name);
	json_decref(r);
	return 0;
}

/* A line on the VM's network, when it has one or publishes ports. */
static void
ps_network(json_t *vm)
{
	json_t *net = json_object_get(vm, J_NETWORK), *eg, *p, *v;
	const char *mode = cli_str(net, J_NET_MODE);
	size_t i;

	p = json_object_get(vm, J_PUBLISH);
	if ((mode[0] == '\0' || strcmp(mode, NETMODE_NONE) == 0) &&
	    json_array_size(p) == 0)
		return;
	printf("    network %s", mode[0] ? mode : NETMODE_NONE);
	if ((eg = json_object_get(vm, J_EGRESS)) != NULL)
		printf(" (%lld connections allowed, %lld denied; %lld names "
		    "denied)",
		    json_integer_value(json_object_get(eg, J_EG_ALLOWED)),
		    json_integer_value(json_object_get(eg, J_EG_DENIED)),
		    json_integer_value(json_object_get(eg, J_EG_DNS_DENIED)));
	json_array_foreach(p, i, v)
		printf("%s%s", i == 0 ? "; publish " : ", ",
		    json_string_value(v));
	printf("\n");
}

/* A line on the VM's shared folders, if it has any. */
static void
ps_volumes(json_t *vm)
{
	json_t *vols = json_object_get(vm, J_VOLUMES), *v;
	size_t i;

	if (json_array_size(vols) == 0)
		return;
	printf("    volumes");
	json_array_foreach(vols, i, v)
		printf("%s%s:%s%s", i == 0 ? " " : ", ", cli_str(v, J_HOST),
		    cli_str(v, J_GUEST), json_is_true(json_object_get(v,
		    J_READ_ONLY)) ? ":ro" : "");
	printf("\n");
}

int
cmd_ps(int argc, char **argv)
{
	json_t *r, *vms, *vm, *sr = NULL;
	int json = 0, all = 0;
	size_t i;

	for (int k = 1; k < argc; k++) {
		if (strcmp(argv[k], "--json") == 0)
			json = 1;
		else if (strcmp(argv[k], "-a") == 0 ||
		    strcmp(argv[k], "--all") == 0)
			all = 1;
		else {
			cli_error("usage: capsule ps [-a] [--json]");
			return CLI_EXIT_USAGE;
		}
	}
	if ((r = conn_request(json_pack("{s:s}", J_OP, OP_LIST_VMS))) == NULL)
		return CLI_EXIT_FAIL;
	if (all && (sr = conn_request(json_pack("{s:s}", J_OP,
	    OP_LIST_SANDBOXES))) == NULL) {
		json_decref(r);
		return CLI_EXIT_FAIL;
	}
	vms = json_object_get(r, J_VMS);
	if (json) {
		/* -a: both lists; without, the VMs as before. */
		if (all) {
			json_t *o = json_pack("{s:O, s:O}", J_VMS, vms,
			    J_SANDBOXES, json_object_get(sr, J_SANDBOXES));

			cli_print_json(o);
			json_decref(o);
		} else
			cli_print_json(vms);
		json_decref(r);
		json_decref(sr);
		return 0;
	}
	printf("%-36s  %-12s  %7s  %4s  %7s  %-7s  %-5s  %s\n", "VM ID",
	    "STATE", "PID", "CPUS", "MEMORY", "ARCH", "ACCEL", "CREATED");
	json_array_foreach(vms, i, vm) {
		printf("%-36s  %-12s  %7lld  %4lld  %4lldMiB  %-7s  %-5s  %s\n",
		    cli_str(vm, J_VM_ID), cli_str(vm, J_STATE),
		    json_integer_value(json_object_get(vm, J_PID)),
		    json_integer_value(json_object_get(vm, J_VCPUS)),
		    json_integer_value(json_object_get(vm, J_MEMORY_MIB)),
		    cli_str(vm, J_ARCH), cli_str(vm, J_ACCEL),
		    cli_str(vm, J_CREATED_AT));
		if (cli_str(vm, J_SANDBOX)[0])
			printf("    sandbox %s\n", cli_str(vm, J_SANDBOX));
		if (json_is_true(json_object_get(vm, J_POOLED)))
			printf("    pooled: ready for a matching start "
			    "(capsule pool ls)\n");
		if (cli_str(vm, J_ERROR)[0])
			printf("    %s\n", cli_str(vm, J_ERROR));
		ps_network(vm);
		ps_volumes(vm);
	}
	if (all)
		cli_ps_sandboxes(json_object_get(sr, J_SANDBOXES));
	json_decref(r);
	json_decref(sr);
	return 0;
}
