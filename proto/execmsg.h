/*
 * execmsg.h — the exec stream: buildkite/cleanroom's vsockexec JSON lines.
 *
 * One connection to a VM's proxy socket runs one command. The client's first
 * line is the request; after it the client sends input lines and the server
 * sends output lines, the last of which is `exit`:
 *
 *   -> {"command":["sh","-c","..."],"dir":"/","env":["K=V"],"tty":false}
 *   -> {"type":"stdin","data":"<base64>"}  {"type":"eof"}
 *   -> {"type":"resize","cols":C,"rows":R} {"type":"signal","signal":N}
 *   <- {"type":"stdout","data":"<base64>"} {"type":"stderr","data":"..."}
 *   <- {"type":"exit","exit_code":N,"error":"","signal":N}
 *
 * capsule's extensions, all opt-in, so a cleanroom client sees none of them:
 *   request "user", "timeout" (seconds), "detach" (the exit line then comes
 *   at once, with "pid" and "log_path"), "stdin_credit" (the server sends
 *   {"type":"credit","bytes":N} lines; the client keeps the stdin bytes it
 *   has sent and not been credited for within the first grant, so signal
 *   and resize lines never wait behind stdin), and, instead of "command",
 *   {"copy":"in"|"out","path":"/guest/path"} for capsule cp (the archive
 *   travels as stdin or stdout data; see common/copy.h).
 *
 * Unknown request fields and unknown input types are ignored, as cleanroom's
 * own agent does, so newer clients keep working. Both sides live here: the
 * daemon parses requests and input and encodes output; the CLI the reverse.
 */
#ifndef CAPSULE_EXECMSG_H
#define CAPSULE_EXECMSG_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

struct exec_req {
	char	**argv;		/* argc entries, NULL-terminated */
	size_t	argc;
	char	**env;		/* envc entries, NULL-terminated */
	size_t	envc;
	char	*dir;		/* NULL: the guest's default */
	int	tty;
	char	*user;		/* NULL: root */
	uint32_t timeout_ms;	/* 0: none */
	int	detach;
	int	stdin_credit;
	int	copy;		/* EXEC_COPY_*; then argv is NULL */
	char	*path;		/* copy: the guest path */
	uint8_t	*seed;		/* entropy_seed, decoded; NULL: none */
	size_t	seed_len;
};

enum { EXEC_COPY_NONE = 0, EXEC_COPY_IN, EXEC_COPY_OUT };

enum exec_in_type {
	EXEC_IN_UNKNOWN = 0,	/* ignored, for forward compatibility */
	EXEC_IN_STDIN,
	EXEC_IN_EOF,
	EXEC_IN_RESIZE,
	EXEC_IN_SIGNAL,
};

enum exec_out_type {
	EXEC_OUT_UNKNOWN = 0,
	EXEC_OUT_STDOUT,
	EXEC_OUT_STDERR,
	EXEC_OUT_EXIT,
	EXEC_OUT_CREDIT,
};

struct exec_msg {
	int		type;		/* exec_in_type or exec_out_type */
	uint8_t		*data;		/* stdin/stdout/stderr, malloc'd */
	size_t		len;
	uint16_t	cols, rows;	/* resize */
	int		signal;		/* signal, or exit's signal (0: none) */
	int		exit_code;	/* exit */
	char		*error;		/* exit's error, malloc'd, may be "" */
	uint32_t	bytes;		/* credit */
	uint32_t	pid;		/* exit of a detached exec, else 0 */
	char		*log_path;	/* ... malloc'd, else NULL */
};

/* Server side. */
int	execmsg_parse_request(const char *line, size_t len, struct exec_req *req,
	    struct cap_err *err);
/* The same, but a missing or empty "command" is no error: argc is 0 and
 * argv NULL, for the server to fill from its defaults (an image's). */
int	execmsg_parse_request_lax(const char *line, size_t len,
	    struct exec_req *req, struct cap_err *err);
void	exec_req_free(struct exec_req *req);
int	execmsg_parse_input(const char *line, size_t len, struct exec_msg *m,
	    struct cap_err *err);
/* Output lines, newline-terminated and malloc'd; *outlen gets the length. */
char	*execmsg_encode_data(int out_type, const uint8_t *data, size_t len,
	    size_t *outlen);
char	*execmsg_encode_exit(int exit_code, int signal, const char *error,
	    size_t error_len, size_t *outlen);
char	*execmsg_encode_credit(uint32_t bytes, size_t *outlen);
/* The exit line of a detached exec: exit_code 0, its pid and log file. */
char	*execmsg_encode_started(uint32_t pid, const char *log, size_t log_len,
	    size_t *outlen);

/* Client side. */
char	*execmsg_encode_request(const struct exec_req *req, size_t *outlen);
char	*execmsg_encode_input(const struct exec_msg *m, size_t *outlen);
int	execmsg_parse_output(const char *line, size_t len, struct exec_msg *m,
	    struct cap_err *err);

void	exec_msg_free(struct exec_msg *m);

#endif /* CAPSULE_EXECMSG_H */
