/*
 * client.h — the capsule CLI: a table of commands, each of which builds a
 * request, sends it and renders the reply (after vmctl and crun).
 */
#ifndef CAPSULE_CLIENT_H
#define CAPSULE_CLIENT_H

#include <jansson.h>

#include "execmsg.h"

/* Exit statuses of the CLI itself. */
#define CLI_EXIT_USAGE	2
#define CLI_EXIT_FAIL	1

extern const char *cli_socket;	/* resolved control socket path */
/* The default socket and no CAPSULE_NO_AUTOSTART: if nobody listens,
 * conn_open starts a daemon (`capsuled --daemon`), as gpg does. */
extern int cli_autostart;

/* conn.c */
int	conn_open(const char *path, const char *what);
/* Sends req (taking the reference), waits for one reply line. NULL on a
 * broken connection (message printed). */
json_t	*conn_call(int fd, json_t *req);
/* The next line from capsuled (a progress line, or the reply). */
json_t	*conn_read(int fd);
/* One request on a fresh connection; prints the error reply and returns
 * NULL if it failed. */
json_t	*conn_request(json_t *req);
void	 cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int	 cli_reply_failed(json_t *reply);
void	 cli_print_json(json_t *o);
/* o's string field key, "" if it has none. */
const char *cli_str(json_t *o, const char *key);
/* Resolves an id or unique id prefix to the VM's ListVMs entry. */
json_t	*cli_find_vm(const char *id_or_prefix);

/* cmd_vm.c */
int	cmd_ping(int argc, char **argv);
int	cmd_start(int argc, char **argv);
int	cmd_stop(int argc, char **argv);
int	cmd_ps(int argc, char **argv);
int	cmd_pause(int argc, char **argv);
int	cmd_fork(int argc, char **argv);
int	cmd_snapshot(int argc, char **argv);
int	cmd_resume(int argc, char **argv);
/* cmd_pool.c */
int	cmd_pool(int argc, char **argv);
/* cmd_sandbox.c */
int	cmd_create(int argc, char **argv);
int	cmd_rm(int argc, char **argv);
void	cli_ps_sandboxes(json_t *sandboxes);
/* The ListSandboxes entry named name (or with that id), or NULL. */
json_t	*cli_find_sandbox(const char *name);
/* StartVM options shared by start and run; returns 1 if it took argv[*i]
 * (and maybe its value), 0 if not an option of StartVM, -1 on error. */
int	start_option(json_t *req, int argc, char **argv, int *i);
/* A whole number for opt in [lo, hi], or -1 having said what was wrong. */
int	parse_uint(const char *opt, const char *s, long long lo, long long hi,
	    long long *out);

/* cmd_exec.c */
int	cmd_exec(int argc, char **argv);
int	cmd_shell(int argc, char **argv);
int	cmd_run(int argc, char **argv);

struct exec_io {
	int	 in_fd;		/* sent as stdin; -1: none (EOF at once) */
	int	 out_fd;	/* gets stdout; stderr goes to ours */
	char	*errbuf;	/* non-NULL: the exit line's error goes here, */
	size_t	 errlen;	/* not to stderr */
	void	(*detached)(uint32_t pid, const char *log_path);
	int	 interrupted;	/* set: a signal of ours was forwarded */
};
/* Runs req on the proxy socket, relaying stdio; returns the exit status. */
int	exec_session(const char *proxy_path, struct exec_req *req,
	    struct exec_io *io);
/* The ListVMs entry of a running VM and its exec socket; NULL (message
 * printed) if there is no such VM or it is not running. */
json_t	*cli_running_vm(const char *id, const char **proxy);

/* cmd_image.c */
int	cmd_image(int argc, char **argv);

/* cmd_cp.c */
int	cmd_cp(int argc, char **argv);

/* cmd_watch.c */
int	cmd_events(int argc, char **argv);
int	cmd_doctor(int argc, char **argv);

#endif /* CAPSULE_CLIENT_H */
