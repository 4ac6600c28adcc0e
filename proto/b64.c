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

/* Character to 6-bit value; 255 for anything outside the alphabet. */
static const uint8_t b64_values[256] = {
	255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
	255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
	255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,  62, 255, 255, 255,  63,
	 52,  53,  54,  55,  56,  57,  58,  59,  60,  61, 255, 255, 255, 255, 255, 255,
	255,   0,   1,   2,   3,   4,   5,   6,   7,   8,   9,  10,  11,  12,  13,  14,
	 15,  16,  17,  18,  19,  20,  21,  22,  23,  24,  25, 255, 255, 255, 255, 255,
	255,  26,  27,  28,  29,  30,  31,  32,  33,  34,  35,  36,  37,  38,  39,  40,
	 41,  42,  43,  44,  45,  46,  47,  48,  49,  50,  51, 255, 255, 255, 255, 255,
	255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
	255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
	255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
	255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
	255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
	255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
	255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
	255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
};

/* Every byte of stdin and of output is decoded here, so: a table, and one
 * check per four characters (a bad one has bit 7 set in the OR). */
long
b64_decode(uint8_t *out, const char *in, size_t len)
{
	const uint8_t *p = (const uint8_t *)in;
	size_t i, o = 0, full;
	unsigned a, b, c, d;

	if (len % 4 != 0)
		return -1;
	full = len == 0 ? 0 : len - 4;		/* the last quad may pad */
	for (i = 0; i < full; i += 4) {
		a = b64_values[p[i]];
		b = b64_values[p[i + 1]];
		c = b64_values[p[i + 2]];
		d = b64_values[p[i + 3]];
		if ((a | b | c | d) & 0x80)
			return -1;
		out[o++] = (uint8_t)(a << 2 | b >> 4);
		out[o++] = (uint8_t)((b & 15) << 4 | c >> 2);
		out[o++] = (uint8_t)((c & 3) << 6 | d);
	}
	if (len == 0)
		return 0;
	a = b64_values[p[i]];
	b = b64_values[p[i + 1]];
	if ((a | b) & 0x80)
		return -1;
	out[o++] = (uint8_t)(a << 2 | b >> 4);
	if (p[i + 2] == '=') {
		if (p[i + 3] != '=' || (b & 15))
			return -1;
		return (long)o;
	}
	if ((c = b64_values[p[i + 2]]) & 0x80)
		return -1;
	out[o++] = (uint8_t)((b & 15) << 4 | c >> 2);
	if (p[i + 3] == '=') {
		if (c & 3)
			return -1;
		return (long)o;
	}
	if ((d = b64_values[p[i + 3]]) & 0x80)
		return -1;
	out[o++] = (uint8_t)((c & 3) << 6 | d);
	return (long)o;
}
