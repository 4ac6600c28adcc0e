/*
 * b64.c — base64 codec (see b64.h). Pure.
 */
#include "b64.h"

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t
b64_encode(char *out, const uint8_t *in, size_t len)
{
	size_t i, o = 0;
	uint32_t v;

	for (i = 0; i + 2 < len; i += 3) {
		v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
		out[o++] = b64_alphabet[v >> 18];
		out[o++] = b64_alphabet[(v >> 12) & 63];
		out[o++] = b64_alphabet[(v >> 6) & 63];
		out[o++] = b64_alphabet[v & 63];
	}
	if (i < len) {
		v = (uint32_t)in[i] << 16;
		if (i + 1 < len)
			v |= (uint32_t)in[i + 1] << 8;
		out[o++] = b64_alphabet[v >> 18];
		out[o++] = b64_alphabet[(v >> 12) & 63];
		out[o++] = i + 1 < len ? b64_alphabet[(v >> 6) & 63] : '=';
		out[o++] = '=';
	}
	out[o] = '\0';
	return o;
}

static int
b64_value(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

long
b64_decode(uint8_t *out, const char *in, size_t len)
{
	size_t i, o = 0;
	int a, b, c, d;

	if (len % 4 != 0)
		return -1;
	for (i = 0; i < len; i += 4) {
		int last = i + 4 == len;

		a = b64_value(in[i]);
		b = b64_value(in[i + 1]);
		if (a < 0 || b < 0)
			return -1;
		out[o++] = (uint8_t)(a << 2 | b >> 4);
		if (last && in[i + 2] == '=') {
			if (in[i + 3] != '=' || (b & 15))
				return -1;
			break;
		}
		c = b64_value(in[i + 2]);
		if (c < 0)
			return -1;
		out[o++] = (uint8_t)((b & 15) << 4 | c >> 2);
		if (last && in[i + 3] == '=') {
			if (c & 3)
				return -1;
			break;
		}
		d = b64_value(in[i + 3]);
		if (d < 0)
			return -1;
		out[o++] = (uint8_t)((c & 3) << 6 | d);
	}
	return (long)o;
}
