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
#include "osdep.h"
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
handle_line(const char *line, size_t len, struct exec_io *io, size_t *credit,
    int *status)
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
		if (write_all(m.type == EXEC_OUT_STDOUT ? io->out_fd :
		    STDERR_FILENO, m.data, m.len) < 0 && errno != EPIPE) {
			/* our own stdout is gone; keep draining */
		}
		break;
	case EXEC_OUT_CREDIT:
		*credit += m.bytes;
		break;
	case EXEC_OUT_EXIT:
		restore_terminal();
		if (m.error != NULL && m.error[0] != '\0') {
			if (io->errbuf != NULL)
				snprintf(io->errbuf, io->errlen, "%s", m.error);
			else
				cli_error("%s", m.error);
		}
		if (m.pid > 0 && io->detached != NULL) {
			io->detached(m.pid, m.log_path ? m.log_path : "");
		}
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
exec_session(const char *proxy_path, struct exec_req *req,
    struct exec_io *io)
{
	static const int fwd[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGWINCH };
	struct outq q = { 0 };
	char *in = NULL, *line;
	size_t inlen = 0, incap = 0, n;
	uint8_t chunk[EXEC_READ_CHUNK];
	int fd, status = EXIT_CAPSULE_ERROR, done = 0, stdin_open;
	int interrupts = 0;
	size_t credit = 0;	/* stdin bytes capsuled will take */
	size_t off, scan = 0;	/* in[]: line start, end of the search */
	struct sigaction sa;

	/* Our stdin is kept within capsuled's credit, so what we queue for
	 * the socket stays small and a signal line gets through at once. */
	req->stdin_credit = 1;
	stdin_open = io->in_fd >= 0 && !req->detach;

	if ((line = execmsg_encode_request(req, &n)) == NULL) {
		cli_error("the command, its environment or a path is not valid "
		    "UTF-8");
		return EXIT_CAPSULE_ERROR;
	}
	if ((fd = conn_open(proxy_path, "the VM's exec socket")) < 0) {
		free(line);
		return EXIT_CAPSULE_ERROR;
	}
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	if (osdep_pipe(sigpipe_fds, O_CLOEXEC | O_NONBLOCK) < 0) {
		free(line);
		close(fd);
		return EXIT_CAPSULE_ERROR;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	for (size_t i = 0; i < sizeof(fwd) / sizeof(fwd[0]); i++)
		sigaction(fwd[i], &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	outq_push(&q, line, n);
	if (!stdin_open && !req->detach)
		send_input(&q, EXEC_IN_EOF, NULL, 0, 0, 0, 0);
	if (req->tty) {
		raw_terminal();
		send_winsize(&q);
	}

	while (!done) {
		struct pollfd pfd[3] = {
			{ .fd = fd, .events = POLLIN },
			{ .fd = sigpipe_fds[0], .events = POLLIN },
			{ .fd = io->in_fd, .events = POLLIN },
		};
		nfds_t nfds = 2;

		if (q.off < q.len)
			pfd[0].events |= POLLOUT;
		if (stdin_open && credit > 0 && q.len - q.off < EXEC_QUEUE_HIGH)
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
				io->interrupted = s;
			}
			if (done)
				break;
		}
		if (nfds == 3 && (pfd[2].revents & (POLLIN | POLLHUP))) {
			ssize_t r = read(io->in_fd, chunk, credit <
			    sizeof(chunk) ? credit : sizeof(chunk));

			if (r > 0) {
				send_input(&q, EXEC_IN_STDIN, chunk, (size_t)r,
				    0, 0, 0);
				credit -= (size_t)r;
			}
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
			/* Lines from `off`; no newline before `scan`. */
			for (off = 0;;) {
				char *nl = memchr(in + scan, '\n', inlen - scan);

				if (nl == NULL)
					break;
				if (handle_line(in + off, (size_t)(nl - in) -
				    off, io, &credit, &status)) {
					done = 1;
					break;
				}
				off = scan = (size_t)(nl - in) + 1;
			}
			if (off > 0) {
				memmove(in, in + off, inlen - off);
				inlen -= off;
			}
			scan = inlen;
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

#define EXEC_OPTS	"[-t] [-d] [-u USER] [-w DIR] [-e K=V]... [--env-file F] " \
			"[--timeout S]"

static void
exec_usage(const char *cmd)
{
	if (strcmp(cmd, "run") == 0)
		cli_error("usage: capsule run " EXEC_OPTS " [--cpus N] "
		    "[--memory MiB] [--kernel P] [--rootfs P | --image NAME] "
		    "[--arch x86_64|aarch64] [--network none|nat|allow] [--allow ENTRY]... [--publish "
		    "[ADDR:]HOSTPORT:GUESTPORT]... [-v HOSTDIR:GUESTDIR[:ro]]... "
		    "-- CMD [ARG...]\n"
		    "       (with --image, no CMD runs the image's Entrypoint "
		    "and Cmd)");
	else if (strcmp(cmd, "shell") == 0)
		cli_error("usage: capsule shell [-u USER] [-w DIR] [-e K=V]... "
		    "ID");
	else
		cli_error("usage: capsule exec " EXEC_OPTS " ID -- CMD "
		    "[ARG...]");
}

struct exec_env {
	char	**v;		/* PROTO_MAX_ENV slots */
	size_t	  n;
	char	**owned;	/* strings read from env files */
	size_t	  nowned;
};

static int
env_add(struct exec_env *e, char *kv, int owned)
{
	if (e->n >= PROTO_MAX_ENV - 2) {
		cli_error("too many environment variables (at most %d)",
		    PROTO_MAX_ENV - 2);
		if (owned)
			free(kv);
		return -1;
	}
	e->v[e->n++] = kv;
	if (owned)
		e->owned[e->nowned++] = kv;
	return 0;
}

static void
env_free(struct exec_env *e)
{
	for (size_t i = 0; i < e->nowned; i++)
		free(e->owned[i]);
	free(e->owned);
	free(e->v);
}

/* An env file, as docker reads one: KEY=VALUE lines taken verbatim, a bare
 * KEY takes our own value (or is skipped), blank and # lines are skipped. */
static int
env_file(struct exec_env *e, const char *path)
{
	FILE *f = fopen(path, "r");
	char *line = NULL, *kv;
	size_t cap = 0, lineno = 0;
	ssize_t n;
	int r = 0;

	if (f == NULL) {
		cli_error("--env-file %s: %s", path, strerror(errno));
		return -1;
	}
	while (r == 0 && (n = getline(&line, &cap, f)) >= 0) {
		char *p = line, *eq;

		lineno++;
		while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
			line[--n] = '\0';
		while (*p == ' ' || *p == '\t')
			p++;
		if (*p == '\0' || *p == '#')
			continue;
		if ((size_t)n != strlen(line)) {
			cli_error("%s:%zu: NUL byte in line", path, lineno);
			r = -1;
			break;
		}
		eq = strchr(p, '=');
		if (eq == p || strcspn(p, " \t") < (size_t)(eq ? eq - p :
		    (ssize_t)strlen(p))) {
			cli_error("%s:%zu: \"%s\" is not KEY=VALUE (a key "
			    "is non-empty and has no blanks)", path, lineno, p);
			r = -1;
			break;
		}
		if (eq == NULL) {
			const char *v = getenv(p);

			if (v == NULL)
				continue;
			if (asprintf(&kv, "%s=%s", p, v) < 0)
				kv = NULL;
		} else {
			kv = strdup(p);
		}
		if (kv == NULL || env_add(e, kv, 1) < 0)
			r = -1;
	}
	free(line);
	fclose(f);
	return r;
}

static int
opt_value(int argc, char **argv, int *i, const char *name, const char **v)
{
	size_t n = strlen(name);

	if (strcmp(argv[*i], name) == 0) {
		if (*i + 1 >= argc) {
			cli_error("%s needs a value", name);
			return -1;
		}
		*v = argv[++*i];
		return 1;
	}
	if (name[1] == '-' && strncmp(argv[*i], name, n) == 0 &&
	    argv[*i][n] == '=') {
		*v = argv[*i] + n + 1;
		return 1;
	}
	return 0;
}

/* Parses exec options into req; for run, StartVM options into start.
 * Returns the index of the first argument after the options, or -1. */
static int
exec_options(int argc, char **argv, struct exec_req *req, json_t *start,
    struct exec_env *env, const char **id)
{
	const char *v;
	char *end;
	double t;
	int i, r;

	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--") == 0)
			return i + 1;
		if (strcmp(argv[i], "-t") == 0 || strcmp(argv[i], "--tty") == 0)
			req->tty = 1;
		else if (strcmp(argv[i], "-d") == 0 ||
		    strcmp(argv[i], "--detach") == 0)
			req->detach = 1;
		else if ((r = opt_value(argc, argv, &i, "-w", &v)) != 0 ||
		    (r = opt_value(argc, argv, &i, "--workdir", &v)) != 0) {
			if (r < 0)
				return -1;
			free(req->dir);
			req->dir = strdup(v);
		} else if ((r = opt_value(argc, argv, &i, "-u", &v)) != 0 ||
		    (r = opt_value(argc, argv, &i, "--user", &v)) != 0) {
			if (r < 0)
				return -1;
			free(req->user);
			req->user = strdup(v);
		} else if ((r = opt_value(argc, argv, &i, "-e", &v)) != 0 ||
		    (r = opt_value(argc, argv, &i, "--env", &v)) != 0) {
			if (r < 0)
				return -1;
			if (strchr(v, '=') == NULL || v[0] == '=') {
				cli_error("--env takes KEY=VALUE, not \"%s\"",
				    v);
				return -1;
			}
			if (env_add(env, (char *)v, 0) < 0)
				return -1;
		} else if ((r = opt_value(argc, argv, &i, "--env-file",
		    &v)) != 0) {
			if (r < 0 || env_file(env, v) < 0)
				return -1;
		} else if ((r = opt_value(argc, argv, &i, "--timeout",
		    &v)) != 0) {
			if (r < 0)
				return -1;
			errno = 0;
			t = strtod(v, &end);
			if (errno != 0 || end == v || *end != '\0' ||
			    !(t > 0 && t <= PROTO_MAX_TIMEOUT)) {
				cli_error("--timeout takes seconds above 0 "
				    "and at most %d, not \"%s\"",
				    PROTO_MAX_TIMEOUT, v);
				return -1;
			}
			req->timeout_ms = (uint32_t)(t * 1000.0 + 0.999);
		} else if (start != NULL &&
		    (r = start_option(start, argc, argv, &i)) != 0) {
			if (r < 0)
				return -1;
		} else if (start == NULL && *id == NULL && argv[i][0] != '-') {
			*id = argv[i];
		} else if (argv[i][0] == '-') {
			cli_error("unknown option \"%s\"", argv[i]);
			return -1;
		} else {
			return i;
		}
	}
	return i;
}

static int
exec_prepare(int argc, char **argv, int first, struct exec_req *req,
    struct exec_env *env, int no_cmd_ok)
{
	const char *term = getenv("TERM");
	static char termvar[256];

	if (first < 0 || (first >= argc && !no_cmd_ok))
		return -1;
	if (req->detach && req->tty) {
		cli_error("-d and -t cannot be combined: a detached command "
		    "has no terminal");
		return -1;
	}
	req->argv = argv + first;
	req->argc = (size_t)(argc - first);
	if (req->tty && term != NULL && term[0] != '\0') {
		snprintf(termvar, sizeof(termvar), "TERM=%s", term);
		/* Ahead of -e, so an explicit TERM=... wins in the guest. */
		memmove(env->v + 1, env->v, env->n * sizeof(*env->v));
		env->v[0] = termvar;
		env->n++;
	}
	req->env = env->v;
	req->envc = env->n;
	return 0;
}

static int
env_init(struct exec_env *e)
{
	memset(e, 0, sizeof(*e));
	e->v = calloc(PROTO_MAX_ENV, sizeof(char *));
	e->owned = calloc(PROTO_MAX_ENV, sizeof(char *));
	return e->v != NULL && e->owned != NULL ? 0 : -1;
}

/* What a detached exec prints: where to find its output. */
static void
print_detached(uint32_t pid, const char *log)
{
	printf("%s\n", log);
	fflush(stdout);
	fprintf(stderr, "capsule: started pid %u in the guest; its output "
	    "goes to %s\n", pid, log);
}

/* Resolves id to a running VM's exec socket; NULL (message printed) if it
 * is not running. */
json_t *
cli_running_vm(const char *id, const char **proxy)
{
	json_t *vm;
	const char *state, *why;

	if ((vm = cli_find_vm(id)) == NULL)
		return NULL;
	state = json_string_value(json_object_get(vm, J_STATE));
	if (state == NULL || strcmp(state, VMSTATE_RUNNING) != 0) {
		why = json_string_value(json_object_get(vm, J_ERROR));
		cli_error("VM %s is %s%s%s", id, state ? state : "unknown",
		    why ? ": " : "", why ? why : "");
		json_decref(vm);
		return NULL;
	}
	*proxy = json_string_value(json_object_get(vm, J_PROXY_SOCKET_PATH));
	if (*proxy == NULL)
		*proxy = "";
	return vm;
}

static int
exec_in_vm(const char *cmd, int argc, char **argv, int shell)
{
	static char *sh[] = { "/bin/sh", "-l", NULL };
	struct exec_io io = { .in_fd = STDIN_FILENO, .out_fd = STDOUT_FILENO,
	    .detached = print_detached };
	struct exec_env env;
	struct exec_req req = { 0 };
	const char *id = NULL, *proxy;
	json_t *vm;
	int first, status = CLI_EXIT_USAGE;

	if (env_init(&env) < 0)
		return CLI_EXIT_FAIL;
	first = exec_options(argc, argv, &req, NULL, &env, &id);
	if (shell) {
		/* A shell is interactive: a terminal, never detached. */
		req.tty = 1;
		if (req.detach)
			first = -1;
		else if (first >= 0 && first == argc) {
			first = 0;
			argc = 2;
			argv = sh;
		}
	}
	if (id == NULL || exec_prepare(argc, argv, first, &req, &env, 0) < 0) {
		exec_usage(cmd);
		goto out;
	}
	status = EXIT_CAPSULE_ERROR;
	if ((vm = cli_running_vm(id, &proxy)) == NULL)
		goto out;
	status = exec_session(proxy, &req, &io);
	json_decref(vm);
out:
	req.argv = req.env = NULL;
	exec_req_free(&req);
	env_free(&env);
	return status;
}

int
cmd_exec(int argc, char **argv)
{
	return exec_in_vm("exec", argc, argv, 0);
}

int
cmd_shell(int argc, char **argv)
{
	return exec_in_vm("shell", argc, argv, 1);
}

int
cmd_run(int argc, char **argv)
{
	json_t *start = json_pack("{s:s, s:b}", J_OP, OP_START_VM,
	    J_STOP_ON_DISCONNECT, 1), *r;
	struct exec_io io = { .in_fd = STDIN_FILENO, .out_fd = STDOUT_FILENO };
	struct exec_env env;
	struct exec_req req = { 0 };
	const char *id = NULL, *name;
	json_t *sb = NULL;
	char vm_id[64] = "", proxy[4096] = "";
	int first, status = CLI_EXIT_USAGE, fd = -1;

	if (env_init(&env) < 0 || start == NULL) {
		json_decref(start);
		env_free(&env);
		return CLI_EXIT_FAIL;
	}
	first = exec_options(argc, argv, &req, start, &env, &id);
	if (first >= 0 && req.detach) {
		cli_error("run cannot detach: its VM stops when the command "
		    "ends (use start, then exec -d)");
		goto out;
	}
	if ((name = json_string_value(json_object_get(start, J_NAME))) !=
	    NULL && (sb = cli_find_sandbox(name)) != NULL &&
	    json_object_size(start) > 3) {
		cli_error("sandbox %s exists: it runs as it was created, "
		    "without other start options", name);
		status = CLI_EXIT_USAGE;
		goto out;
	}
	if (exec_prepare(argc, argv, first, &req, &env,
	    json_object_get(sb != NULL ? sb : start, J_IMAGE) != NULL) < 0) {
		exec_usage("run");
		goto out;
	}
	/* --name: the sandbox, made first if it is new; it stays. */
	if (name != NULL && sb == NULL) {
		json_t *c = json_deep_copy(start), *r2;

		status = EXIT_CAPSULE_ERROR;
		json_object_set_new(c, J_OP, json_string(OP_CREATE_SANDBOX));
		json_object_del(c, J_STOP_ON_DISCONNECT);
		if ((r2 = conn_request(c)) == NULL)
			goto out;
		json_decref(r2);
	}
	if (name != NULL) {
		json_t *s2 = json_pack("{s:s, s:s, s:b}", J_OP, OP_START_VM,
		    J_SANDBOX, name, J_STOP_ON_DISCONNECT, 1);

		json_decref(start);
		start = s2;
	}
	/* The control connection stays open for the whole run: if we die,
	 * capsuled stops the VM (stop_on_disconnect). */
	status = EXIT_CAPSULE_ERROR;
	if ((fd = conn_open(cli_socket, NULL)) < 0)
		goto out;
	r = conn_call(fd, start);
	start = NULL;
	if (r == NULL || cli_reply_failed(r)) {
		json_decref(r);
		goto out;
	}
	snprintf(vm_id, sizeof(vm_id), "%s",
	    json_string_value(json_object_get(r, J_VM_ID)));
	snprintf(proxy, sizeof(proxy), "%s",
	    json_string_value(json_object_get(r, J_PROXY_SOCKET_PATH)));
	json_decref(r);

	status = exec_session(proxy, &req, &io);

	r = conn_call(fd, json_pack("{s:s, s:s}", J_OP, OP_STOP_VM, J_VM_ID,
	    vm_id));
	if (r == NULL || cli_reply_failed(r)) {
		cli_error("could not stop VM %s; stop it with `capsule stop %s`",
		    vm_id, vm_id);
		if (status == 0)
			status = EXIT_CAPSULE_ERROR;
	}
	json_decref(r);
out:
	if (fd >= 0)
		close(fd);
	json_decref(sb);
	json_decref(start);
	req.argv = req.env = NULL;
	exec_req_free(&req);
	env_free(&env);
	return status;
}
