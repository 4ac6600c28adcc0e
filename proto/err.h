/*
 * err.h — capsule's error convention (after crun's libcrun_error_t).
 *
 * A function that can fail returns 0 (or a count) on success and a negative
 * errno on failure, and takes `struct cap_err *err` as its last argument. On
 * failure it fills `err` with a stable machine word (proto.h E_*) and a
 * sentence a person can act on, so each failure is a one-line
 *	return cap_err_set(err, EINVAL, E_INVALID_ARGUMENT, "...", ...);
 * Only the request dispatcher turns an error into a JSON reply.
 */
#ifndef CAPSULE_ERR_H
#define CAPSULE_ERR_H

#include <stddef.h>

struct cap_err {
	int	errnum;		/* positive errno */
	char	code[32];	/* E_* word */
	char	msg[1024];
};

/* Sets err (if non-NULL) and returns -errnum. */
int	cap_err_set(struct cap_err *err, int errnum, const char *code,
	    const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* Prefixes the message already in err with more context. */
int	cap_err_wrap(struct cap_err *err, const char *fmt, ...)
	    __attribute__((format(printf, 2, 3)));
void	cap_err_clear(struct cap_err *err);
/* Replaces, in place, each byte that does not begin a valid UTF-8 sequence
 * with '?', so that any text can go into JSON. cap_err_set and cap_err_wrap
 * do this to err->msg (snprintf can cut a multi-byte character in two). */
void	cap_utf8_scrub(char *s, size_t len);
/* A caller's text for an error message, in out (cap bytes, >= 12):
 * printable ASCII as it is, anything else (and \ and ") as \xNN, cut
 * short with "..." (a bad name may hold anything, NUL bytes and newlines
 * included). */
void	cap_show(const char *s, size_t len, char *out, size_t cap);

#endif /* CAPSULE_ERR_H */
