/*
 * execmsg.c — codec for the vsockexec JSON lines (see execmsg.h). Pure: it
 * turns lines into structs and back and does no I/O.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "b64.h"
#include "ctl.h"
#include "execmsg.h"
#include "proto.h"

static json_t *
parse_object(const char *line, size_t len, const char *what,
    struct cap_err *err, int *rc)
{
	json_error_t jerr;
	json_t *o;

	o = json_loadb(line, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);
	if (o == NULL) {
		*rc = cap_err_set(err, EINVAL, E_INVALID_JSON,
		    "%s is not valid JSON: %s (column %d)", what, jerr.text,
		    jerr.column);
		return NULL;
	}
	if (!json_is_object(o)) {
		json_decref(o);
		*rc = cap_err_set(err, EINVAL, E_INVALID_ARGUMENT,
		    "%s must be a JSON object", what);
		return NULL;
	}
	*rc = 0;
	return o;
}

/* A string without embedded NULs, copied; -EINVAL otherwise. */
static int
dup_string(json_t *v, char **out)
{
	if (!json_is_string(v) || strlen(json_string_value(v)) !=
	    json_string_length(v))
		return -EINVAL;
	if ((*out = strdup(json_string_value(v))) == NULL)
		return -ENOMEM;
	return 0;
}

static int
dup_string_array(json_t *arr, size_t max, const char *field, int is_env,
    char ***out, size_t *count, struct cap_err *err)
{
	size_t i, n = json_array_size(arr);
	char **v;
	int r;

	if (n > max)
		return cap_err_set(err, E2BIG, E_TOO_LARGE,
		    "\"%s\" has %zu entries; at most %zu are allowed", field, n,
		    max);
	if ((v = calloc(n + 1, sizeof(*v))) == NULL)
		return cap_err_set(err, ENOMEM, E_INTERNAL, "out of memory");
	for (i = 0; i < n; i++) {
		if ((r = dup_string(json_array_get(arr, i), &v[i])) < 0)
			goto fail;
		if (is_env && (v[i][0] == '=' || strchr(v[i], '=') == NULL)) {
			r = -EINVAL;
			goto fail;
		}
	}
	*out = v;
	*count = n;
	return 0;
fail:
	for (size_t j = 0; j <= i && j < n; j++)
		free(v[j]);
	free(v);
	if (r == -ENOMEM)
		return cap_err_set(err, ENOMEM, E_INTERNAL, "out of memory");
	if (is_env)
		return cap_err_set(err, EINVAL, E_INVALID_ARGUMENT,
		    "\"%s\"[%zu] must be a string of the form KEY=VALUE", field, i);
	return cap_err_set(err, EINVAL, E_INVALID_ARGUMENT,
	    "\"%s\"[%zu] must be a string without NUL bytes", field, i);
}

/* {"copy":"in"|"out","path":"/abs"}: capsule cp instead of a command. */
static int
parse_copy(json_t *o, json_t *v, struct exec_req *req, struct cap_err *err)
{
	const char *how = json_is_string(v) ? json_string_value(v) : "";

	v = json_object_get(o, X_COMMAND);
	if (v != NULL && !json_is_null(v))
		return cap_err_set(err, EINVAL, E_INVALID_ARGUMENT,
		    "a request has \"%s\" or \"%s\", not both", X_COMMAND,
		    X_COPY);
	if (strcmp(how, XC_IN) == 0)
		req->copy = EXEC_COPY_IN;
	else if (strcmp(how, XC_OUT) == 0)
		req->copy = EXEC_COPY_OUT;
	else
		return cap_err_set(err, EINVAL, E_INVALID_ARGUMENT,
		    "\"%s\" must be \"%s\" or \"%s\"", X_COPY, XC_IN, XC_OUT);
	v = json_object_get(o, X_PATH);
	if (v == NULL || dup_string(v, &req->path) < 0 ||
	    req->path[0] != '/' || strlen(req->path) > 4096)
		return cap_err_set(err, EINVAL, E_INVALID_ARGUMENT,
		    "\"%s\" needs \"%s\": an absolute guest path of at most "
		    "4096 bytes", X_COPY, X_PATH);
	return 0;
}

/* cleanroom's "entropy_seed": base64 bytes for the guest's pool. */
static int
parse_seed(json_t *o, struct exec_req *req, struct cap_err *err)
{
	json_t *v = json_object_get(o, X_ENTROPY_SEED);
	size_t n;
	long got;

	if (v == NULL || json_is_null(v))
		return 0;
	n = json_string_length(v);
	if (!json_is_string(v) || n > (PROTO_MAX_SEED + 2) / 3 * 4 ||
	    (req->seed = malloc(n / 4 * 3 + 3)) == NULL ||
	    (got = b64_decode(req->seed, json_string_value(v), n)) < 0 ||
	    got > PROTO_MAX_SEED)
		return cap_err_set(err, EINVAL, E_INVALID_ARGUMENT,
		    "\"%s\" must be base64 of at most %d bytes",
		    X_ENTROPY_SEED, PROTO_MAX_SEED);
	req->seed_len = (size_t)got;
	return 0;
}

static int
parse_request(const char *line, size_t len, struct exec_req *req,
    int need_command, struct cap_err *err)
{
	json_t *o, *v;
	int r;

	memset(req, 0, sizeof(*req));
	if ((o = parse_object(line, len, "exec request", err, &r)) == NULL)
		return r;
	if ((r = ctl_get_bool(o, X_STDIN_CREDIT, &req->stdin_credit, err)) < 0 ||
	    (r = parse_seed(o, req, err)) < 0)
		goto out;
	if ((v = json_object_get(o, X_COPY)) != NULL && !json_is_null(v)) {
		r = parse_copy(o, v, req, err);
		goto out;
	}
	v = json_object_get(o, X_COMMAND);
	if (!need_command && (v == NULL || json_is_null(v) ||
	    (json_is_array(v) && json_array_size(v) == 0)))
		v = NULL;	/* argc 0: the caller's default */
	else if (v == NULL || json_is_null(v) || (json_is_array(v) &&
	    json_array_size(v) == 0)) {
		r = cap_err_set(err, EINVAL, E_INVALID_ARGUMENT,
		    "missing command: \"%s\" must be a non-empty array of "
		    "strings", X_COMMAND);
		goto out;
	}
	if (v != NULL && !json_is_array(v)) {
		r = cap_err_set(err, EINVAL, E_INVALID_ARGUMENT,
		    "\"%s\" must be an array of strings", X_COMMAND);
		goto out;
	}
	if (v != NULL && (r = dup_string_array(v, PROTO_MAX_ARGS, X_COMMAND, 0,
	    &req->argv, &req->argc, err)) < 0)
		goto out;
	if (v != NULL && req->argv[0][0] == '\0') {
		r = cap_err_set(err, EINVAL, E_INVALID_ARGUMENT,
		    "\"%s\"[0] must not be empty", X_COMMAND);
		goto out;
	}
	if ((v = json_object_get(o, X_ENV)) != NULL && !json_is_null(v)) {
		if (!json_is_array(v)) {
			r = cap_err_set(err, EINVAL, E_INVALID_ARGUMENT,
			    "\"%s\" must be an array of KEY=VALUE strings",
			    X_ENV);
			goto out;
		}
		if ((r = dup_string_array(v, PROTO_MAX_ENV, X_ENV, 1, &req->env,
		    &req->envc, err)) < 0)
			goto out;
	}
	if ((v = json_object_get(o, X_DIR)) != NULL && !json_is_null(v)) {
		if ((r = dup_string(v, &req->dir)) < 0) {
			r = cap_err_set(err, EINVAL, E_INVALID_ARGUMENT,
			    "\"%s\" must be a string", X_DIR);
			goto out;
		}
		if (req->dir[0] != '\0' && req->dir[0] != '/') {
			r = cap_err_set(err, EINVAL, E_INVALID_ARGUMENT,
			    "\"%s\" must be an absolute path, not \"%s\"",
			    X_DIR, req->dir);
			goto out;
		}
	}
	if ((r = ctl_get_bool(o, X_TTY, &req->tty, err)) < 0 ||
	    (r = ctl_get_bool(o, X_DETACH, &req->detach, err)) < 0)
		goto out;
	if (req->detach && req->tty) {
		r = cap_err_set(err, EINVAL, E_INVALID_ARGUMENT,
		    "\"%s\" and \"%s\" cannot be combined: a detached "
		    "command has no terminal", X_DETACH, X_TTY);
		goto out;
	}
	if ((v = json_object_get(o, X_USER)) != NULL && !json_is_null(v)) {
		if (dup_string(v, &req->user) < 0 || req->user[0] == '\0' ||
		    strlen(req->user) > 256) {
			r = cap_err_set(err, EINVAL, E_INVALID_ARGUMENT,
			    "\"%s\" must be a non-empty string of at most 256 "
			    "bytes: UID[:GID] or NAME[:GROUP]", X_USER);
			goto out;
		}
	}
	if ((v = json_object_get(o, X_TIMEOUT)) != NULL && !json_is_null(v)) {
		double t = json_is_number(v) ? json_number_value(v) : -1;

		if (!(t > 0 && t <= PROTO_MAX_TIMEOUT)) {
			r = cap_err_set(err, EINVAL, E_INVALID_ARGUMENT,
			    "\"%s\" must be a number of seconds above 0 and at "
			    "most %d", X_TIMEOUT, PROTO_MAX_TIMEOUT);
			goto out;
		}
		req->timeout_ms = (uint32_t)(t * 1000.0 + 0.999);
		if (req->timeout_ms == 0)
			req->timeout_ms = 1;
	}
	r = 0;
out:
	json_decref(o);
	if (r < 0)
		exec_req_free(req);
	return r;
}

int
execmsg_parse_request(const char *line, size_t len, struct exec_req *req,
    struct cap_err *err)
{
	return parse_request(line, len, req, 1, err);
}

int
execmsg_parse_request_lax(const char *line, size_t len, struct exec_req *req,
    struct cap_err *err)
{
	return parse_request(line, len, req, 0, err);
}

static void
free_strv(char **v)
{
	if (v == NULL)
		return;
	for (char **p = v; *p != NULL; p++)
		free(*p);
	free(v);
}

void
exec_req_free(struct exec_req *req)
{
	free_strv(req->argv);
	free_strv(req->env);
	free(req->dir);
	free(req->user);
	free(req->path);
	free(req->seed);
	memset(req, 0, sizeof(*req));
}

void
exec_msg_free(struct exec_msg *m)
{
	free(m->data);
	free(m->error);
	free(m->log_path);
	memset(m, 0, sizeof(*m));
}

static int
get_data(json_t *o, struct exec_msg *m, struct cap_err *err)
{
	json_t *v = json_object_get(o, X_DATA);
	const char *s;
	size_t n;
	long dec;

	if (v == NULL || json_is_null(v))
		return 0;
	if (!json_is_string(v))
		return cap_err_set(err, EINVAL, E_INVALID_ARGUMENT,
		    "\"%s\" must be a base64 string", X_DATA);
	s = json_string_value(v);
	n = json_string_length(v);
	if ((m->data = malloc(B64_DECODED_MAX(n) + 1)) == NULL)
		return cap_err_set(err, ENOMEM, E_INTERNAL, "out of memory");
	if ((dec = b64_decode(m->data, s, n)) < 0)
		return cap_err_set(err, EINVAL, E_INVALID_ARGUMENT,
		    "\"%s\" is not valid base64", X_DATA);
	m->len = (size_t)dec;
	return 0;
}

static int
get_int(json_t *o, const char *field, long long lo, long long hi,
    long long *out, struct cap_err *err)
{
	json_t *v = json_object_get(o, field);

	if (v == NULL || json_is_null(v)) {
		*out = 0;
		return 0;
	}
	if (!json_is_integer(v) || json_integer_value(v) < lo ||
	    json_integer_value(v) > hi)
		return cap_err_set(err, EINVAL, E_INVALID_ARGUMENT,
		    "\"%s\" must be an integer from %lld to %lld", field, lo,
		    hi);
	*out = json_integer_value(v);
	return 0;
}

static const char *
get_type(json_t *o)
{
	json_t *v = json_object_get(o, X_TYPE);

	return json_is_string(v) ? json_string_value(v) : NULL;
}

/*
 * The hot path: a data line exactly as our encoders write it,
 * {"type":"TYPE","data":"BASE64"}, decoded without a JSON parser. Any other
 * spelling (key order, blanks, escapes, more fields, bad base64) returns 0
 * and goes through jansson, so this changes the speed, never the meaning.
 * Returns 1 when m holds the data, 0 to fall back, -ENOMEM.
 */
static int
fast_data(const char *line, size_t len, const char *type, struct exec_msg *m)
{
	static const char k1[] = "{\"" X_TYPE "\":\"", k2[] = "\",\"" X_DATA
	    "\":\"";
	size_t tl = strlen(type), pre = sizeof(k1) - 1 + tl + sizeof(k2) - 1;
	long n;

	if (len < pre + 2 || memcmp(line, k1, sizeof(k1) - 1) != 0 ||
	    memcmp(line + sizeof(k1) - 1, type, tl) != 0 ||
	    memcmp(line + sizeof(k1) - 1 + tl, k2, sizeof(k2) - 1) != 0 ||
	    line[len - 2] != '"' || line[len - 1] != '}')
		return 0;
	if ((m->data = malloc(B64_DECODED_MAX(len - pre - 2) + 1)) == NULL)
		return -ENOMEM;
	if ((n = b64_decode(m->data, line + pre, len - pre - 2)) < 0) {
		free(m->data);
		m->data = NULL;
		return 0;
	}
	m->len = (size_t)n;
	return 1;
}

int
execmsg_parse_input(const char *line, size_t len, struct exec_msg *m,
    struct cap_err *err)
{
	const char *type;
	long long n;
	json_t *o;
	int r;

	memset(m, 0, sizeof(*m));
	if ((r = fast_data(line, len, XT_STDIN, m)) != 0) {
		if (r < 0)
			return cap_err_set(err, ENOMEM, E_INTERNAL,
			    "out of memory");
		m->type = EXEC_IN_STDIN;
		return 0;
	}
	if ((o = parse_object(line, len, "exec input line", err, &r)) == NULL)
		return r;
	if ((type = get_type(o)) == NULL) {
		r = cap_err_set(err, EINVAL, E_INVALID_ARGUMENT,
		    "exec input line has no \"%s\" string", X_TYPE);
		goto out;
	}
	if (strcmp(type, XT_STDIN) == 0) {
		m->type = EXEC_IN_STDIN;
		r = get_data(o, m, err);
	} else if (strcmp(type, XT_EOF) == 0) {
		m->type = EXEC_IN_EOF;
	} else if (strcmp(type, XT_RESIZE) == 0) {
		m->type = EXEC_IN_RESIZE;
		if ((r = get_int(o, X_COLS, 0, 65535, &n, err)) < 0)
			goto out;
		m->cols = (uint16_t)n;
		if ((r = get_int(o, X_ROWS, 0, 65535, &n, err)) < 0)
			goto out;
		m->rows = (uint16_t)n;
	} else if (strcmp(type, XT_SIGNAL) == 0) {
		m->type = EXEC_IN_SIGNAL;
		if ((r = get_int(o, X_SIGNAL, 1, 64, &n, err)) < 0)
			goto out;
		if (n == 0) {
			r = cap_err_set(err, EINVAL, E_INVALID_ARGUMENT,
			    "\"%s\" line needs \"%s\" from 1 to 64",
			    XT_SIGNAL, X_SIGNAL);
			goto out;
		}
		m->signal = (int)n;
	} else {
		m->type = EXEC_IN_UNKNOWN;
	}
out:
	json_decref(o);
	if (r < 0)
		exec_msg_free(m);
	return r;
}

/* {"type":"TYPE","data":"BASE64"}\n, built by hand: every byte of stdin
 * and output goes through here. */
static char *
encode_data(const char *type, const uint8_t *data, size_t len,
    size_t *outlen)
{
	char *line, *p;
	size_t cap;

	/* Built by hand: this is the hot path of every byte of output. */
	cap = 64 + B64_ENCODED_LEN(len);
	if ((line = malloc(cap)) == NULL)
		return NULL;
	p = line + sprintf(line, "{\"%s\":\"%s\",\"%s\":\"", X_TYPE, type,
	    X_DATA);
	p += b64_encode(p, data, len);
	p += sprintf(p, "\"}\n");
	*outlen = (size_t)(p - line);
	return line;
}

char *
execmsg_encode_data(int out_type, const uint8_t *data, size_t len,
    size_t *outlen)
{
	return encode_data(out_type == EXEC_OUT_STDERR ? XT_STDERR : XT_STDOUT,
	    data, len, outlen);
}

static char *
dump_line(json_t *o, size_t *outlen)
{
	char *s, *line;
	size_t n;

	if (o == NULL)
		return NULL;
	s = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	if (s == NULL)
		return NULL;
	n = strlen(s);
	if ((line = realloc(s, n + 2)) == NULL) {
		free(s);
		return NULL;
	}
	line[n] = '\n';
	line[n + 1] = '\0';
	*outlen = n + 1;
	return line;
}

char *
execmsg_encode_exit(int exit_code, int signal, const char *error,
    size_t error_len, size_t *outlen)
{
	char *msg;
	json_t *o;

	/* The message comes from the guest and may be cut mid-character at
	 * CHAN_MAX_MSG; the exit line must go out whatever it holds. */
	if (error == NULL)
		error_len = 0;
	if ((msg = malloc(error_len + 1)) == NULL)
		return NULL;
	if (error_len > 0)
		memcpy(msg, error, error_len);
	msg[error_len] = '\0';
	cap_utf8_scrub(msg, error_len);
	o = json_pack("{s:s, s:i, s:s%}", X_TYPE, XT_EXIT, X_EXIT_CODE,
	    exit_code, X_ERROR, msg, error_len);
	free(msg);
	if (o != NULL && signal > 0)
		json_object_set_new(o, X_SIGNAL, json_integer(signal));
	return dump_line(o, outlen);
}

char *
execmsg_encode_credit(uint32_t bytes, size_t *outlen)
{
	return dump_line(json_pack("{s:s, s:I}", X_TYPE, XT_CREDIT, X_BYTES,
	    (json_int_t)bytes), outlen);
}

char *
execmsg_encode_started(uint32_t pid, const char *log, size_t log_len,
    size_t *outlen)
{
	char *path;
	json_t *o;

	if ((path = strndup(log, log_len)) == NULL)
		return NULL;
	cap_utf8_scrub(path, strlen(path));
	o = json_pack("{s:s, s:i, s:s, s:I, s:s}", X_TYPE, XT_EXIT,
	    X_EXIT_CODE, 0, X_ERROR, "", X_PID, (json_int_t)pid, X_LOG_PATH,
	    path);
	free(path);
	return dump_line(o, outlen);
}

static json_t *
strv_json(char **v, size_t n)
{
	json_t *a = json_array();

	/* JSON carries UTF-8 only. An argument that is not must fail the
	 * request, not silently drop out of the command line. */
	for (size_t i = 0; a != NULL && i < n; i++) {
		if (json_array_append_new(a, json_string(v[i])) < 0) {
			json_decref(a);
			return NULL;
		}
	}
	return a;
}

char *
execmsg_encode_request(const struct exec_req *req, size_t *outlen)
{
	json_t *o = json_object();

	if (o == NULL)
		return NULL;
	if (req->copy != EXEC_COPY_NONE) {
		if (json_object_set_new(o, X_COPY, json_string(req->copy ==
		    EXEC_COPY_IN ? XC_IN : XC_OUT)) < 0 ||
		    json_object_set_new(o, X_PATH, json_string(req->path)) < 0 ||
		    (req->stdin_credit && json_object_set_new(o,
		    X_STDIN_CREDIT, json_true()) < 0)) {
			json_decref(o);
			return NULL;
		}
		return dump_line(o, outlen);
	}
	/* Extensions only when asked for: cleanroom's agent sees its own
	 * fields alone. json_object_set_new fails on a NULL value, i.e.
	 * non-UTF-8 text. */
	if ((req->user != NULL && json_object_set_new(o, X_USER,
	    json_string(req->user)) < 0) ||
	    (req->timeout_ms > 0 && json_object_set_new(o, X_TIMEOUT,
	    json_real(req->timeout_ms / 1000.0)) < 0) ||
	    (req->detach && json_object_set_new(o, X_DETACH,
	    json_true()) < 0) ||
	    (req->stdin_credit && json_object_set_new(o, X_STDIN_CREDIT,
	    json_true()) < 0)) {
		json_decref(o);
		return NULL;
	}
	if (json_object_set_new(o, X_COMMAND, strv_json(req->argv,
	    req->argc)) < 0 ||
	    (req->dir != NULL && json_object_set_new(o, X_DIR,
	    json_string(req->dir)) < 0) ||
	    (req->envc > 0 && json_object_set_new(o, X_ENV, strv_json(req->env,
	    req->envc)) < 0) ||
	    json_object_set_new(o, X_TTY, json_boolean(req->tty)) < 0) {
		json_decref(o);
		return NULL;
	}
	return dump_line(o, outlen);
}

char *
execmsg_encode_input(const struct exec_msg *m, size_t *outlen)
{
	json_t *o = NULL;

	switch (m->type) {
	case EXEC_IN_STDIN:
		return encode_data(XT_STDIN, m->data, m->len, outlen);
	case EXEC_IN_EOF:
		o = json_pack("{s:s}", X_TYPE, XT_EOF);
		break;
	case EXEC_IN_RESIZE:
		o = json_pack("{s:s, s:i, s:i}", X_TYPE, XT_RESIZE, X_COLS,
		    (int)m->cols, X_ROWS, (int)m->rows);
		break;
	case EXEC_IN_SIGNAL:
		o = json_pack("{s:s, s:i}", X_TYPE, XT_SIGNAL, X_SIGNAL,
		    m->signal);
		break;
	}
	return dump_line(o, outlen);
}

int
execmsg_parse_output(const char *line, size_t len, struct exec_msg *m,
    struct cap_err *err)
{
	const char *type;
	long long n;
	json_t *o, *v;
	int r;

	memset(m, 0, sizeof(*m));
	m->type = EXEC_OUT_STDOUT;
	if ((r = fast_data(line, len, XT_STDOUT, m)) == 0) {
		m->type = EXEC_OUT_STDERR;
		r = fast_data(line, len, XT_STDERR, m);
	}
	if (r < 0)
		return cap_err_set(err, ENOMEM, E_INTERNAL, "out of memory");
	if (r > 0)
		return 0;
	m->type = EXEC_OUT_UNKNOWN;
	if ((o = parse_object(line, len, "exec output line", err, &r)) == NULL)
		return r;
	/* A line without a type is cleanroom's legacy one-shot response:
	 * it ends the stream like an exit line. */
	type = get_type(o);
	if (type == NULL && json_object_get(o, X_TYPE) != NULL) {
		r = cap_err_set(err, EINVAL, E_INVALID_ARGUMENT,
		    "\"%s\" must be a string", X_TYPE);
		goto out;
	}
	if (type == NULL || strcmp(type, XT_EXIT) == 0) {
		m->type = EXEC_OUT_EXIT;
		if ((r = get_int(o, X_EXIT_CODE, 0, 255, &n, err)) < 0)
			goto out;
		m->exit_code = (int)n;
		if ((r = get_int(o, X_SIGNAL, 0, 64, &n, err)) < 0)
			goto out;
		m->signal = (int)n;
		v = json_object_get(o, X_ERROR);
		m->error = strdup(json_is_string(v) ? json_string_value(v) : "");
		if (m->error == NULL) {
			r = cap_err_set(err, ENOMEM, E_INTERNAL, "out of memory");
			goto out;
		}
		if ((r = get_int(o, X_PID, 0, UINT32_MAX, &n, err)) < 0)
			goto out;
		m->pid = (uint32_t)n;
		v = json_object_get(o, X_LOG_PATH);
		if (json_is_string(v) &&
		    (m->log_path = strdup(json_string_value(v))) == NULL)
			r = cap_err_set(err, ENOMEM, E_INTERNAL, "out of memory");
	} else if (strcmp(type, XT_CREDIT) == 0) {
		m->type = EXEC_OUT_CREDIT;
		if ((r = get_int(o, X_BYTES, 0, UINT32_MAX, &n, err)) < 0)
			goto out;
		m->bytes = (uint32_t)n;
	} else if (strcmp(type, XT_STDOUT) == 0 ||
	    strcmp(type, XT_STDERR) == 0) {
		m->type = strcmp(type, XT_STDOUT) == 0 ? EXEC_OUT_STDOUT :
		    EXEC_OUT_STDERR;
		r = get_data(o, m, err);
	} else {
		m->type = EXEC_OUT_UNKNOWN;
	}
out:
	json_decref(o);
	if (r < 0)
		exec_msg_free(m);
	return r;
}
