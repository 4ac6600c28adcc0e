/*
 * conn.c — talking to capsuled's control socket (blocking: the CLI does
 * one thing at a time).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "client.h"
#include "osdep.h"
#include "proto.h"

void
cli_error(const char *fmt, ...)
{
	va_list ap;

	fputs("capsule: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

int cli_autostart;

/* capsuled --daemon, from beside this CLI if it is there, else from
 * PATH: it returns once the daemon listens (or failed to). */
static int
autostart(void)
{
	char self[4096], path[4096 + 16], *slash;
	const char *prog = "capsuled";
	pid_t pid;
	int st;

	if (osdep_exe_path(self, sizeof(self)) == 0 &&
	    (slash = strrchr(self, '/')) != NULL) {
		*slash = '\0';
		snprintf(path, sizeof(path), "%s/capsuled", self);
		if (access(path, X_OK) == 0)
			prog = path;
	}
	fprintf(stderr, "capsule: starting capsuled (%s --daemon); set "
	    "CAPSULE_NO_AUTOSTART=1 to not\n", prog);
	if ((pid = fork()) < 0)
		return -1;
	if (pid == 0) {
		if (strchr(prog, '/') != NULL)
			execl(prog, "capsuled", "--daemon", (char *)NULL);
		else
			execlp(prog, "capsuled", "--daemon", (char *)NULL);
		fprintf(stderr, "capsule: cannot run %s: %s\n", prog,
		    strerror(errno));
		_exit(127);
	}
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
}

static int
connect_to(const char *path, int *err)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	int fd;

	strcpy(sun.sun_path, path);
	if ((fd = osdep_socket(AF_UNIX, SOCK_STREAM, O_CLOEXEC)) < 0) {
		*err = errno;
		return -1;
	}
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		*err = errno;
		close(fd);
		return -1;
	}
	return fd;
}

int
conn_open(const char *path, const char *what)
{
	struct sockaddr_un sun;
	int fd, e = 0;

	if (strlen(path) >= sizeof(sun.sun_path)) {
		cli_error("socket path too long: %s", path);
		return -1;
	}
	fd = connect_to(path, &e);
	/* Nobody listens on the usual socket: start the daemon, once. */
	if (fd < 0 && what == NULL && cli_autostart &&
	    (e == ENOENT || e == ECONNREFUSED)) {
		cli_autostart = 0;
		if (autostart() == 0)
			fd = connect_to(path, &e);
	}
	if (fd < 0) {
		if (what != NULL)
			cli_error("cannot reach %s at %s: %s", what, path,
			    strerror(e));
		else
			cli_error("cannot reach capsuled at %s: %s\n"
			    "  Is it running? Start it with `capsuled --daemon` "
			    "(or `systemctl start capsuled`),\n  or point "
			    "--socket or CAPSULE_SOCKET at the socket it "
			    "listens on.", path, strerror(e));
		return -1;
	}
	return fd;
}

/* Reads one line (without the newline) into a malloc'd buffer. */
static char *
read_line(int fd, size_t *lenp)
{
	size_t len = 0, cap = 4096;
	char *buf = malloc(cap), c;
	ssize_t n;

	while (buf != NULL) {
		n = read(fd, &c, 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			free(buf);
			return NULL;
		}
		if (c == '\n')
			break;
		if (len + 1 >= cap) {
			char *nb = cap > PROTO_MAX_LINE ? NULL :
			    realloc(buf, cap * 2);

			if (nb == NULL) {
				free(buf);
				return NULL;
			}
			buf = nb;
			cap *= 2;
		}
		buf[len++] = c;
	}
	if (buf != NULL)
		buf[len] = '\0';
	*lenp = len;
	return buf;
}

json_t *
conn_call(int fd, json_t *req)
{
	char *s = json_dumps(req, JSON_COMPACT);
	size_t len, off = 0;

	json_decref(req);
	if (s == NULL)
		return NULL;
	len = strlen(s);
	s[len++] = '\n';	/* json_dumps left room: replace the NUL */
	while (off < len) {
		ssize_t n = write(fd, s + off, len - off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			cli_error("lost the connection to capsuled: %s",
			    strerror(errno));
			free(s);
			return NULL;
		}
		off += (size_t)n;
	}
	free(s);
	return conn_read(fd);
}

json_t *
conn_read(int fd)
{
	json_t *reply;
	size_t len;
	char *line;

	if ((line = read_line(fd, &len)) == NULL) {
		cli_error("capsuled closed the connection without replying");
		return NULL;
	}
	reply = json_loadb(line, len, 0, NULL);
	free(line);
	if (!json_is_object(reply)) {
		json_decref(reply);
		cli_error("capsuled sent a reply that is not a JSON object");
		return NULL;
	}
	return reply;
}

int
cli_reply_failed(json_t *reply)
{
	json_t *ok = json_object_get(reply, J_OK);

	if (json_is_true(ok))
		return 0;
	cli_error("%s", json_string_value(json_object_get(reply, J_ERROR)) ?
	    json_string_value(json_object_get(reply, J_ERROR)) :
	    "request failed");
	return 1;
}

json_t *
conn_request(json_t *req)
{
	json_t *reply;
	int fd;

	if ((fd = conn_open(cli_socket, NULL)) < 0) {
		json_decref(req);
		return NULL;
	}
	reply = conn_call(fd, req);
	close(fd);
	if (reply != NULL && cli_reply_failed(reply)) {
		json_decref(reply);
		return NULL;
	}
	return reply;
}

const char *
cli_str(json_t *o, const char *key)
{
	const char *s = json_string_value(json_object_get(o, key));

	return s ? s : "";
}

void
cli_print_json(json_t *o)
{
	json_dumpf(o, stdout, JSON_INDENT(2));
	fputc('\n', stdout);
}

/* A VM by the name of one of the caller's own sandboxes: the one not yet
 * stopped that runs from it. (Root sees every user's VMs, and users may
 * pick the same names.) */
static json_t *
find_by_sandbox(json_t *vms, const char *name)
{
	json_t *vm;
	size_t i;

	json_array_foreach(vms, i, vm) {
		const char *st = cli_str(vm, J_STATE);

		if (strcmp(cli_str(vm, J_SANDBOX), name) == 0 &&
		    json_integer_value(json_object_get(vm, J_OWNER_UID)) ==
		    (json_int_t)getuid() &&
		    strcmp(st, VMSTATE_STOPPED) != 0 &&
		    strcmp(st, VMSTATE_CRASHED) != 0)
			return vm;
	}
	return NULL;
}

json_t *
cli_find_vm(const char *id)
{
	json_t *reply, *vms, *vm, *found = NULL, *sb;
	size_t i, n = strlen(id), matches = 0;

	reply = conn_request(json_pack("{s:s}", J_OP, OP_LIST_VMS));
	if (reply == NULL)
		return NULL;
	vms = json_object_get(reply, J_VMS);
	/* An exact id, then a sandbox's name, then an id prefix. */
	json_array_foreach(vms, i, vm)
		if (strcmp(cli_str(vm, J_VM_ID), id) == 0)
			found = vm;
	if (found == NULL && n > 0)
		found = find_by_sandbox(vms, id);
	if (found != NULL) {
		json_incref(found);
		json_decref(reply);
		return found;
	}
	json_array_foreach(vms, i, vm) {
		if (n > 0 && strncmp(cli_str(vm, J_VM_ID), id, n) == 0) {
			found = vm;
			matches++;
		}
	}
	if (matches == 1)
		json_incref(found);
	else {
		if (matches > 1)
			cli_error("VM id prefix %s is ambiguous: %zu VMs match",
			    id, matches);
		else if (n > 0 && (sb = cli_find_sandbox(id)) != NULL) {
			cli_error("sandbox %s is not running (capsule start %s)",
			    id, id);
			json_decref(sb);
		} else
			cli_error("no VM with id or sandbox name %s (see "
			    "`capsule ps -a`)", id);
		found = NULL;
	}
	json_decref(reply);
	return found;
}
