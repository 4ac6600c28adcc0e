/*
 * cmd_cp.c — capsule cp: copy files and trees into and out of a running VM.
 *
 * The exec socket carries it like a command ({"copy":"in"|"out","path":...},
 * proto/execmsg.h): the tree travels as a newc cpio archive in the stdin or
 * stdout lines, so flow control, credit and errors are exec's. On our side a
 * child process writes the archive (copy in) or unpacks it (copy out) at the
 * other end of a pipe, and the relay loop in cmd_exec.c stays as it is.
 * "-" instead of a host path is the archive itself on stdin or stdout.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "client.h"
#include "copy.h"
#include "osdep.h"
#include "proto.h"

#define CP_MSG_MAX	1024

struct cp_child {
	pid_t	pid;
	int	msg_fd;		/* its error message, if it fails */
};

/* "ID:/path" names a guest path; anything with a '/' before its first
 * colon (or no colon) is a host path, as docker cp reads them. */
static int
cp_split(const char *arg, char *id, size_t idcap, const char **path)
{
	const char *colon = strchr(arg, ':');
	size_t n;

	if (colon == NULL || colon == arg || memchr(arg, '/',
	    (size_t)(colon - arg)) != NULL)
		return 0;
	n = (size_t)(colon - arg);
	if (n >= idcap)
		return 0;
	memcpy(id, arg, n);
	id[n] = '\0';
	*path = colon + 1;
	return 1;
}

/* Runs fn in a child with one end of a pipe; the other end is returned in
 * *fd (for_reading: we read what the child writes). */
static int
cp_spawn(struct cp_child *c, int for_reading, int *fd,
    int (*fn)(int, const char *, char *, size_t), const char *path)
{
	int data[2], msg[2];
	char err[CP_MSG_MAX] = "";

	if (osdep_pipe(data, O_CLOEXEC) < 0)
		return -1;
	if (osdep_pipe(msg, O_CLOEXEC) < 0) {
		close(data[0]);
		close(data[1]);
		return -1;
	}
	if ((c->pid = fork()) < 0) {
		close(data[0]);
		close(data[1]);
		close(msg[0]);
		close(msg[1]);
		return -1;
	}
	if (c->pid == 0) {
		int r, mine = for_reading ? data[1] : data[0];

		/* Ctrl-C reaches the whole process group, us included. We
		 * must not die holding a temporary file: the parent ends the
		 * copy by closing our pipe, and we clean up and fail. */
		signal(SIGPIPE, SIG_IGN);
		signal(SIGINT, SIG_IGN);
		signal(SIGTERM, SIG_IGN);
		signal(SIGHUP, SIG_IGN);
		signal(SIGQUIT, SIG_IGN);
		close(for_reading ? data[0] : data[1]);
		close(msg[0]);
		r = fn(mine, path, err, sizeof(err));
		if (r < 0 && write(msg[1], err, strlen(err)) < 0)
			_exit(1);
		_exit(r < 0 ? (-r > 255 ? 255 : -r) : 0);
	}
	close(for_reading ? data[1] : data[0]);
	close(msg[1]);
	c->msg_fd = msg[0];
	*fd = for_reading ? data[0] : data[1];
	return 0;
}

/* Waits for the child; returns its errno (0: it succeeded), message in
 * msg. */
static int
cp_reap(struct cp_child *c, char *msg, size_t cap)
{
	ssize_t n;
	int st;

	n = read(c->msg_fd, msg, cap - 1);
	msg[n > 0 ? n : 0] = '\0';
	close(c->msg_fd);
	while (waitpid(c->pid, &st, 0) < 0 && errno == EINTR)
		;
	if (WIFEXITED(st))
		return WEXITSTATUS(st);
	snprintf(msg, cap, "copy process killed by signal %d",
	    WIFSIGNALED(st) ? WTERMSIG(st) : 0);
	return EINTR;
}

static int
archive_fn(int fd, const char *src, char *err, size_t errlen)
{
	return copy_archive(src, fd, err, errlen);
}

static char cp_top[4096];	/* the name copy out must unpack */

static int
extract_fn(int fd, const char *dst, char *err, size_t errlen)
{
	/* What comes out of a guest is untrusted: no setuid bits, nothing
	 * outside dst, and the tree lands under the name we asked for, not
	 * one the guest chose (".ssh", say). */
	return copy_extract_top(fd, dst, cp_top, COPY_UNTRUSTED, err, errlen);
}

int
cmd_cp(int argc, char **argv)
{
	char id[128], sid[128];
	char guest_err[CP_MSG_MAX] = "", host_err[CP_MSG_MAX] = "";
	struct exec_io io = { .in_fd = -1, .out_fd = STDOUT_FILENO,
	    .errbuf = guest_err, .errlen = sizeof(guest_err) };
	struct exec_req req = { 0 };
	struct cp_child child = { .pid = -1, .msg_fd = -1 };
	const char *src, *dst, *gpath, *spath, *proxy, *host;
	int to_guest, status, herr = 0, fd = -1;
	struct stat st;
	json_t *vm;

	if (argc != 3) {
		cli_error("usage: capsule cp SRC ID:DST | capsule cp ID:SRC DST "
		    "(a host path may be -: a cpio archive on stdin/stdout)");
		return CLI_EXIT_USAGE;
	}
	src = argv[1];
	dst = argv[2];
	to_guest = cp_split(dst, id, sizeof(id), &gpath);
	if (cp_split(src, sid, sizeof(sid), &spath)) {
		if (to_guest) {
			cli_error("cp: both paths are in a VM; one must be on "
			    "this host");
			return CLI_EXIT_USAGE;
		}
		memcpy(id, sid, sizeof(id));
		gpath = spath;
	} else if (!to_guest) {
		cli_error("cp: neither path is in a VM; write one as ID:/path");
		return CLI_EXIT_USAGE;
	}
	host = to_guest ? src : dst;
	if (gpath[0] != '/') {
		cli_error("cp: the guest path must be absolute, not \"%s\"",
		    gpath);
		return CLI_EXIT_USAGE;
	}
	if (!to_guest && copy_top_name(gpath, cp_top, sizeof(cp_top)) < 0) {
		cli_error("cp: guest path too long: %s", gpath);
		return CLI_EXIT_USAGE;
	}
	if (to_guest && strcmp(host, "-") != 0 && lstat(host, &st) < 0) {
		cli_error("cp: %s: %s", host, strerror(errno));
		return CLI_EXIT_FAIL;
	}
	if ((vm = cli_running_vm(id, &proxy)) == NULL)
		return EXIT_CAPSULE_ERROR;

	if (strcmp(host, "-") == 0) {
		fd = to_guest ? STDIN_FILENO : STDOUT_FILENO;
	} else if (cp_spawn(&child, to_guest, &fd, to_guest ? archive_fn :
	    extract_fn, host) < 0) {
		cli_error("cp: %s", strerror(errno));
		json_decref(vm);
		return CLI_EXIT_FAIL;
	}
	if (to_guest)
		io.in_fd = fd;
	else
		io.out_fd = fd;
	req.copy = to_guest ? EXEC_COPY_IN : EXEC_COPY_OUT;
	req.path = (char *)gpath;

	status = exec_session(proxy, &req, &io);
	json_decref(vm);
	if (child.pid > 0) {
		close(fd);
		herr = cp_reap(&child, host_err, sizeof(host_err));
	}
	if (io.interrupted) {
		cli_error("cp: interrupted by signal %d; no file was left "
		    "half-written", io.interrupted);
		return 128 + io.interrupted;
	}
	/* The first failure is the one to report: ours when we could not
	 * read the source (the guest then only saw a cut archive), the
	 * guest's when it could not take or send the tree (our end then only
	 * saw a broken pipe or an empty archive). */
	if (to_guest && herr != 0 && herr != EPIPE) {
		cli_error("cp: %s", host_err);
		return CLI_EXIT_FAIL;
	}
	if (status != 0) {
		if (guest_err[0] != '\0')
			cli_error("cp: %s", guest_err);
		return status == EXIT_CAPSULE_ERROR ? status : CLI_EXIT_FAIL;
	}
	if (herr != 0) {
		cli_error("cp: %s", host_err[0] ? host_err : strerror(herr));
		return CLI_EXIT_FAIL;
	}
	return 0;
}
