/*
 * execmsg_check.h — helpers shared by the exec-line unit tests
 * (test_execmsg.c, test_execmsg_ext.c). Include after cmocka.h.
 */
#ifndef CAPSULE_EXECMSG_CHECK_H
#define CAPSULE_EXECMSG_CHECK_H

#include <errno.h>
#include <string.h>

#include <jansson.h>

#include "execmsg.h"

static inline int
parse_req(const char *s, struct exec_req *r, struct cap_err *e)
{
	cap_err_clear(e);
	return execmsg_parse_request(s, strlen(s), r, e);
}

static inline int
parse_in(const char *s, struct exec_msg *m, struct cap_err *e)
{
	cap_err_clear(e);
	return execmsg_parse_input(s, strlen(s), m, e);
}

static inline int
parse_out(const char *s, struct exec_msg *m, struct cap_err *e)
{
	cap_err_clear(e);
	return execmsg_parse_output(s, strlen(s), m, e);
}

/* The request fails with -EINVAL, `code`, and a message holding `needle`;
 * and leaves nothing behind for the caller to free. */
static inline void
req_fails(const char *line, int errnum, const char *code, const char *needle)
{
	struct exec_req r;
	struct cap_err e;
	int rc;

	memset(&r, 0x5a, sizeof(r));
	rc = parse_req(line, &r, &e);
	if (rc != -errnum)
		fail_msg("%s: got %d, want %d", line, rc, -errnum);
	assert_string_equal(e.code, code);
	assert_int_equal(e.errnum, errnum);
	if (strstr(e.msg, needle) == NULL)
		fail_msg("%s: message \"%s\" lacks \"%s\"", line, e.msg,
		    needle);
	assert_null(r.argv);
	assert_null(r.env);
	assert_null(r.dir);
	assert_null(r.user);
	assert_null(r.path);
	assert_int_equal(r.argc, 0);
	exec_req_free(&r);
}

/* One line: ends in '\n', no other newline, NUL right after, length right. */
static inline void
check_line(const char *line, size_t len)
{
	assert_non_null(line);
	assert_true(len >= 3);
	assert_int_equal(strlen(line), len);
	assert_int_equal(line[len - 1], '\n');
	assert_ptr_equal(memchr(line, '\n', len), line + len - 1);
}

/* Parses an exit line with jansson; checks keys and returns the object. */
static inline json_t *
exit_object(const char *line, size_t len)
{
	json_error_t jerr;
	json_t *o;

	check_line(line, len);
	o = json_loadb(line, len, 0, &jerr);
	assert_non_null(o);
	assert_string_equal(json_string_value(json_object_get(o, "type")),
	    "exit");
	assert_true(json_is_integer(json_object_get(o, "exit_code")));
	assert_true(json_is_string(json_object_get(o, "error")));
	return o;
}

static inline void
out_fails(const char *line, const char *needle)
{
	struct exec_msg m;
	struct cap_err e;

	memset(&m, 0x5a, sizeof(m));
	if (parse_out(line, &m, &e) != -EINVAL)
		fail_msg("%s: accepted", line);
	if (strstr(e.msg, needle) == NULL)
		fail_msg("%s: message \"%s\" lacks \"%s\"", line, e.msg,
		    needle);
	assert_null(m.data);
	assert_null(m.error);
}

#endif /* CAPSULE_EXECMSG_CHECK_H */
