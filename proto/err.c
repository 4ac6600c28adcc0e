/*
 * err.c — filling struct cap_err (see err.h).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "err.h"

int
cap_err_set(struct cap_err *err, int errnum, const char *code,
    const char *fmt, ...)
{
	va_list ap;

	if (errnum <= 0)
		errnum = EIO;
	if (err != NULL) {
		err->errnum = errnum;
		snprintf(err->code, sizeof(err->code), "%s", code);
		va_start(ap, fmt);
		vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
		va_end(ap);
	}
	return -errnum;
}

int
cap_err_wrap(struct cap_err *err, const char *fmt, ...)
{
	char prefix[512], old[sizeof(err->msg)];
	va_list ap;

	if (err == NULL)
		return -EIO;
	va_start(ap, fmt);
	vsnprintf(prefix, sizeof(prefix), fmt, ap);
	va_end(ap);
	memcpy(old, err->msg, sizeof(old));
	/* A message cut short is still better than none. */
	if (snprintf(err->msg, sizeof(err->msg), "%s: %s", prefix, old) < 0)
		err->msg[0] = '\0';
	return -(err->errnum > 0 ? err->errnum : EIO);
}

void
cap_err_clear(struct cap_err *err)
{
	if (err != NULL)
		memset(err, 0, sizeof(*err));
}
