/*
 * err.c — filling struct cap_err (see err.h).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "err.h"

/* Length of the valid UTF-8 sequence at p (RFC 3629: no overlong forms,
 * no surrogates, nothing past U+10FFFF), or 0. */
static size_t
utf8_seq_len(const unsigned char *p, size_t avail)
{
	size_t n, i;
	unsigned lo = 0x80, hi = 0xbf;

	if (p[0] < 0x80)
		return 1;
	if (p[0] >= 0xc2 && p[0] <= 0xdf)
		n = 2;
	else if (p[0] >= 0xe0 && p[0] <= 0xef)
		n = 3;
	else if (p[0] >= 0xf0 && p[0] <= 0xf4)
		n = 4;
	else
		return 0;
	if (avail < n)
		return 0;
	if (p[0] == 0xe0)
		lo = 0xa0;
	else if (p[0] == 0xed)
		hi = 0x9f;
	else if (p[0] == 0xf0)
		lo = 0x90;
	else if (p[0] == 0xf4)
		hi = 0x8f;
	for (i = 1; i < n; i++) {
		if (p[i] < lo || p[i] > hi)
			return 0;
		lo = 0x80;
		hi = 0xbf;
	}
	return n;
}

void
cap_utf8_scrub(char *s, size_t len)
{
	size_t i = 0, n;

	while (i < len) {
		if ((n = utf8_seq_len((const unsigned char *)s + i,
		    len - i)) == 0) {
			s[i++] = '?';
			continue;
		}
		i += n;
	}
}

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
		cap_utf8_scrub(err->msg, strlen(err->msg));
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
	cap_utf8_scrub(err->msg, strlen(err->msg));
	return -(err->errnum > 0 ? err->errnum : EIO);
}

void
cap_err_clear(struct cap_err *err)
{
	if (err != NULL)
		memset(err, 0, sizeof(*err));
}

void
cap_show(const char *s, size_t len, char *out, size_t cap)
{
	size_t o = 0;

	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (o + 8 >= cap) {
			memcpy(out + o, "...", 4);
			return;
		}
		if (c >= 0x20 && c < 0x7f && c != '\\' && c != '"')
			out[o++] = (char)c;
		else
			o += (size_t)snprintf(out + o, cap - o, "\\x%02x", c);
	}
	out[o] = '\0';
}
