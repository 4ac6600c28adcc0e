/*
 * cmd_exec.c — exec and run: relay a command's stdio through a VM's proxy
 * socket (cleanroom vsockexec JSON lines, proto/execmsg.h).
 *
 * The socket is non-blocking with an output queue: if we blocked writing
 * stdin while the guest blocked writing stdout to us, neither would move.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#include "client.h"
#include "proto.h"

#define EXEC_READ_CHUNK		32768
#define EXEC_QUEUE_HIGH		(512 * 1024)

static volatile sig_atomic_t got_signal[65];
static int sigpipe_fds[2] = { -1, -1 };
static struct termios saved_tio;
static int tio_saved;

static void
restore_terminal(void)
{
	if (tio_saved) {
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved_tio);
		tio_saved = 0;
	}
}

static void
on_signal(int sig)
{
	int e = errno;

	if (sig > 0 && sig < 65)
		got_signal[sig] = 1;
	if (write(sigpipe_fds[1], "", 1) < 0) {
		/* the loop is already awake */
	}
	errno = e;
}

static void
raw_terminal(void)
{
	struct termios t;

	if (!isatty(STDIN_FILENO) || tcgetattr(STDIN_FILENO, &saved_tio) < 0)
		return;
	t = saved_tio;
	cfmakeraw(&t);
	if (tcsetattr(STDIN_FILENO, TCSAFLUSH, &t) == 0) {
		tio_saved = 1;
		atexit(restore_terminal);
	}
}

struct outq {
	char	*buf;
	size_t	 len, off;
};

static int
outq_push(struct outq *q, char *line, size_t n)
{
	char *nb;

	if (line == NULL || n == 0) {
		free(line);
		return -1;
	}
	if (q->off > 0 && q->off == q->len)
		q->len = q->off = 0;
	nb = realloc(q->buf, q->len + n);
	if (nb == NULL) {
		free(line);
		return -1;
	}
	q->buf = nb;
	memcpy(q->buf + q->len, line, n);
	q->len += n;
	free(line);
	return 0;
}

static int
send_input(struct outq *q, int type, const uint8_t *data, size_t len,
    uint16_t cols, uint16_t rows, int sig)
{
	struct exec_msg m = { .type = type, .data = (uint8_t *)data,
	    .len = len, .cols = cols, .rows = rows, .signal = sig };
	size_t n = 0;
	char *line = execmsg_encode_input(&m, &n);

	return outq_push(q, line, n);
}

static void
send_winsize(struct outq *q)
{
	struct winsize ws;

	if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0 &&
	    ws.ws_row > 0)
		send_input(q, EXEC_IN_RESIZE, NULL, 0, ws.ws_col, ws.ws_row, 0);
}

static int
write_all(int fd, const uint8_t *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && errno == EAGAIN) {
			struct pollfd pfd = { .fd = fd, .events = POLLOUT };

			poll(&pfd, 1, -1);
			continue;
		}
		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Handles one output line; returns 1 once the exit line has come. */
static int
handle_line(const char *line, size_t len, int *status)
{
	struct exec_msg m;
	struct cap_err err;

	if (execmsg_parse_output(line, len, &m, &err) < 0) {
		cli_error("bad line from capsuled: %s", err.msg);
		*status = EXIT_CAPSULE_ERROR;
		return 1;
	}
	switch (m.type) {
	case EXEC_OUT_STDOUT:
	case EXEC_OUT_STDERR:
		if (write_all(m.type == EXEC_OUT_STDOUT ? STDOUT_FILENO :
		    STDERR_FILENO, m.data, m.len) < 0 && errno != EPIPE) {
			/* our own stdout is gone; keep draining */
		}
		break;
	case EXEC_OUT_EXIT:
		restore_terminal();
		if (m.error != NULL && m.error[0] != '\0')
			cli_error("%s", m.error);
		*status = m.exit_code;
		exec_msg_free(&m);
		return 1;
	default:
		break;
	}
	exec_msg_free(&m);
	return 0;
}

int
exec_session(const char *proxy_path, struct exec_req *req)
{
	static const int fwd[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGWINCH };
	struct outq q = { 0 };
	char *in = NULL, *line;
	size_t inlen = 0, incap = 0, n;
	uint8_t chunk[EXEC_READ_CHUNK];
	int fd, status = EXIT_CAPSULE_ERROR, done = 0, stdin_open = 1;
	int interrupts = 0;
	struct sigaction sa;

	if ((fd = conn_open(proxy_path, "the VM's exec socket")) < 0)
		return EXIT_CAPSULE_ERROR;
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	if (pipe2(sigpipe_fds, O_CLOEXEC | O_NONBLOCK) < 0) {
		close(fd);
		return EXIT_CAPSULE_ERROR;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	for (size_t i = 0; i < sizeof(fwd) / sizeof(fwd[0]); i++)
		sigaction(fwd[i], &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	line = execmsg_encode_request(req, &n);
	outq_push(&q, line, n);
	if (req->tty) {
		raw_terminal();
		send_winsize(&q);
	}

	while (!done) {
		struct pollfd pfd[3] = {
			{ .fd = fd, .events = POLLIN },
			{ .fd = sigpipe_fds[0], .events = POLLIN },
			{ .fd = STDIN_FILENO, .events = POLLIN },
		};
		nfds_t nfds = 2;

		if (q.off < q.len)
			pfd[0].events |= POLLOUT;
		if (stdin_open && q.len - q.off < EXEC_QUEUE_HIGH)
			nfds = 3;
		if (poll(pfd, nfds, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (pfd[1].revents & POLLIN) {
			char b[64];

			while (read(sigpipe_fds[0], b, sizeof(b)) > 0)
				;
			for (int s = 1; s < 65; s++) {
				if (!got_signal[s])
					continue;
				got_signal[s] = 0;
				if (s == SIGWINCH) {
					if (req->tty)
						send_winsize(&q);
					continue;
				}
				/* Twice Ctrl-C: the user wants out. Closing
				 * the connection kills the command. */
				if (s == SIGINT && ++interrupts > 1) {
					cli_error("interrupted");
					status = 128 + SIGINT;
					done = 1;
					break;
				}
				send_input(&q, EXEC_IN_SIGNAL, NULL, 0, 0, 0, s);
			}
			if (done)
				break;
		}
		if (nfds == 3 && (pfd[2].revents & (POLLIN | POLLHUP))) {
			ssize_t r = read(STDIN_FILENO, chunk, sizeof(chunk));

			if (r > 0)
				send_input(&q, EXEC_IN_STDIN, chunk, (size_t)r,
				    0, 0, 0);
			else if (r == 0 || (errno != EINTR && errno != EAGAIN)) {
				stdin_open = 0;
				send_input(&q, EXEC_IN_EOF, NULL, 0, 0, 0, 0);
			}
		} else if (nfds == 3 && (pfd[2].revents & POLLNVAL)) {
			stdin_open = 0;
			send_input(&q, EXEC_IN_EOF, NULL, 0, 0, 0, 0);
		}
		if ((pfd[0].revents & POLLOUT) && q.off < q.len) {
			ssize_t w = write(fd, q.buf + q.off, q.len - q.off);

			if (w > 0)
				q.off += (size_t)w;
			else if (w < 0 && errno != EAGAIN && errno != EINTR) {
				/* The command is done with its input and the
				 * daemon closed; its exit line may be waiting
				 * to be read. */
				q.off = q.len = 0;
				stdin_open = 0;
			}
		}
		if (pfd[0].revents & (POLLIN | POLLHUP | POLLERR)) {
			ssize_t r;

			if (incap - inlen < EXEC_READ_CHUNK) {
				char *nb = realloc(in, incap + 2 *
				    EXEC_READ_CHUNK);

				if (nb == NULL)
					break;
				in = nb;
				incap += 2 * EXEC_READ_CHUNK;
			}
			r = read(fd, in + inlen, incap - inlen);
			if (r == 0)
				break;
			if (r < 0) {
				/* ECONNRESET comes after the data: the daemon
				 * closed while our input was unread. */
				if (errno == EAGAIN || errno == EINTR)
					continue;
				break;
			}
			inlen += (size_t)r;
			for (;;) {
				char *nl = memchr(in, '\n', inlen);
				size_t ll;

				if (nl == NULL)
					break;
				ll = (size_t)(nl - in);
				if (handle_line(in, ll, &status)) {
					done = 1;
					break;
				}
				memmove(in, nl + 1, inlen - ll - 1);
				inlen -= ll + 1;
			}
			if (!done && inlen > PROTO_MAX_LINE) {
				cli_error("capsuled sent an over-long line");
				break;
			}
		}
	}
	restore_terminal();
	if (!done) {
		cli_error("lost the connection to capsuled before the command "
		    "finished");
		status = EXIT_CAPSULE_ERROR;
	}
	free(in);
	free(q.buf);
	close(fd);
	close(sigpipe_fds[0]);
	close(sigpipe_fds[1]);
	return status;
}

static void
exec_usage(const char *cmd)
{
	if (strcmp(cmd, "run") == 0)
		cli_error("usage: capsule run [-t] [-w DIR] [-e K=V]... [--cpus N] "
		    "[--memory MiB] [--kernel P] [--rootfs P] -- CMD [ARG...]");
	else
		cli_error("usage: capsule exec [-t] [-w DIR] [-e K=V]... ID -- "
		    "CMD [ARG...]");
}

/* Parses exec options into req; for run, StartVM options into start.
 * Returns the index of the first argument after the options, or -1. */
static int
exec_options(int argc, char **argv, struct exec_req *req, json_t *start,
    char **env, const char **id)
{
	int i, t;

	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--") == 0)
			return i + 1;
		if (strcmp(argv[i], "-t") == 0 || strcmp(argv[i], "--tty") == 0)
			req->tty = 1;
		else if ((strcmp(argv[i], "-w") == 0 ||
		    strcmp(argv[i], "--workdir") == 0) && i + 1 < argc)
			req->dir = strdup(argv[++i]);
		else if ((strcmp(argv[i], "-e") == 0 ||
		    strcmp(argv[i], "--env") == 0) && i + 1 < argc) {
			if (strchr(argv[i + 1], '=') == NULL) {
				cli_error("--env takes KEY=VALUE, not \"%s\"",
				    argv[i + 1]);
				return -1;
			}
			env[req->envc++] = argv[++i];
		} else if (start != NULL &&
		    (t = start_option(start, argc, argv, &i)) != 0) {
			if (t < 0)
				return -1;
		} else if (start == NULL && *id == NULL && argv[i][0] != '-')
			*id = argv[i];
		else
			return argv[i][0] == '-' ? -1 : i;
		if (req->envc >= PROTO_MAX_ENV - 2)
			return -1;
	}
	return i;
}

static int
exec_prepare(int argc, char **argv, int first, struct exec_req *req,
    char **env)
{
	const char *term = getenv("TERM");
	static char termvar[256];

	if (first < 0 || first >= argc)
		return -1;
	req->argv = argv + first;
	req->argc = (size_t)(argc - first);
	if (req->tty && term != NULL) {
		snprintf(termvar, sizeof(termvar), "TERM=%s", term);
		env[req->envc++] = termvar;
	}
	req->env = env;
	return 0;
}

int
cmd_exec(int argc, char **argv)
{
	char **env = calloc(PROTO_MAX_ENV, sizeof(char *));
	struct exec_req req = { 0 };
	const char *id = NULL, *proxy, *state;
	json_t *vm;
	int first, status;

	if (env == NULL)
		return CLI_EXIT_FAIL;
	first = exec_options(argc, argv, &req, NULL, env, &id);
	if (id == NULL || exec_prepare(argc, argv, first, &req, env) < 0) {
		exec_usage("exec");
		free(env);
		free(req.dir);
		return CLI_EXIT_USAGE;
	}
	if ((vm = cli_find_vm(id)) == NULL) {
		free(env);
		free(req.dir);
		return EXIT_CAPSULE_ERROR;
	}
	state = json_string_value(json_object_get(vm, J_STATE));
	if (state == NULL || strcmp(state, VMSTATE_RUNNING) != 0) {
		cli_error("VM %s is %s%s%s", id, state ? state : "unknown",
		    json_string_value(json_object_get(vm, J_ERROR)) ? ": " : "",
		    json_string_value(json_object_get(vm, J_ERROR)) ?
		    json_string_value(json_object_get(vm, J_ERROR)) : "");
		json_decref(vm);
		free(env);
		free(req.dir);
		return EXIT_CAPSULE_ERROR;
	}
	proxy = json_string_value(json_object_get(vm, J_PROXY_SOCKET_PATH));
	status = exec_session(proxy ? proxy : "", &req);
	json_decref(vm);
	free(env);
	free(req.dir);
	return status;
}

int
cmd_run(int argc, char **argv)
{
	char **env = calloc(PROTO_MAX_ENV, sizeof(char *));
	json_t *start = json_pack("{s:s, s:b}", J_OP, OP_START_VM,
	    J_STOP_ON_DISCONNECT, 1), *r;
	struct exec_req req = { 0 };
	const char *id = NULL;
	char vm_id[64] = "", proxy[4096] = "";
	int first, status, fd;

	if (env == NULL || start == NULL)
		return CLI_EXIT_FAIL;
	first = exec_options(argc, argv, &req, start, env, &id);
	if (exec_prepare(argc, argv, first, &req, env) < 0) {
		exec_usage("run");
		json_decref(start);
		free(env);
		free(req.dir);
		return CLI_EXIT_USAGE;
	}
	/* The control connection stays open for the whole run: if we die,
	 * capsuled stops the VM (stop_on_disconnect). */
	if ((fd = conn_open(cli_socket, NULL)) < 0) {
		json_decref(start);
		free(env);
		free(req.dir);
		return EXIT_CAPSULE_ERROR;
	}
	r = conn_call(fd, start);
	if (r == NULL || cli_reply_failed(r)) {
		json_decref(r);
		close(fd);
		free(env);
		free(req.dir);
		return EXIT_CAPSULE_ERROR;
	}
	snprintf(vm_id, sizeof(vm_id), "%s",
	    json_string_value(json_object_get(r, J_VM_ID)));
	snprintf(proxy, sizeof(proxy), "%s",
	    json_string_value(json_object_get(r, J_PROXY_SOCKET_PATH)));
	json_decref(r);

	status = exec_session(proxy, &req);

	r = conn_call(fd, json_pack("{s:s, s:s}", J_OP, OP_STOP_VM, J_VM_ID,
	    vm_id));
	if (r == NULL || cli_reply_failed(r)) {
		cli_error("could not stop VM %s; stop it with `capsule stop %s`",
		    vm_id, vm_id);
		if (status == 0)
			status = EXIT_CAPSULE_ERROR;
	}
	json_decref(r);
	close(fd);
	free(env);
	free(req.dir);
	return status;
}
