/*
 * test_b64.c — base64 as the exec stream's `data` carries it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "testrng.h"

#include "b64.h"

static const char alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* A second, bit-at-a-time encoder to hold the real one against. */
static void
ref_encode(char *out, const uint8_t *in, size_t len)
{
	size_t bits = len * 8, o = 0;

	for (size_t b = 0; b < bits; b += 6) {
		unsigned v = 0;

		for (size_t k = 0; k < 6; k++) {
			size_t bit = b + k;
			unsigned x = bit < bits ?
			    (in[bit / 8] >> (7 - bit % 8)) & 1 : 0;

			v = v << 1 | x;
		}
		out[o++] = alphabet[v];
	}
	while (o % 4)
		out[o++] = '=';
	out[o] = '\0';
}

static void
check_vector(const char *plain, const char *enc)
{
	char out[64];
	uint8_t dec[64];
	size_t n = strlen(plain);

	memset(out, 'X', sizeof(out));
	assert_int_equal(b64_encode(out, (const uint8_t *)plain, n),
	    strlen(enc));
	assert_string_equal(out, enc);
	assert_int_equal(B64_ENCODED_LEN(n), strlen(enc));
	assert_int_equal(b64_decode(dec, enc, strlen(enc)), n);
	assert_memory_equal(dec, plain, n);
}

static void
test_rfc4648_vectors(void **state)
{
	(void)state;
	check_vector("", "");
	check_vector("f", "Zg==");
	check_vector("fo", "Zm8=");
	check_vector("foo", "Zm9v");
	check_vector("foob", "Zm9vYg==");
	check_vector("fooba", "Zm9vYmE=");
	check_vector("foobar", "Zm9vYmFy");
}

static void
test_binary_vectors(void **state)
{
	static const uint8_t all_ones[] = { 0xfb, 0xff, 0xbf };
	static const uint8_t zeros[] = { 0, 0, 0, 0 };
	uint8_t dec[8];
	char out[16];

	(void)state;
	/* The two non-alphanumeric digits, and NUL bytes. */
	b64_encode(out, all_ones, 3);
	assert_string_equal(out, "+/+/");
	assert_int_equal(b64_decode(dec, "+/+/", 4), 3);
	assert_memory_equal(dec, all_ones, 3);
	b64_encode(out, zeros, 4);
	assert_string_equal(out, "AAAAAA==");
	assert_int_equal(b64_decode(dec, "AAAAAA==", 8), 4);
	assert_memory_equal(dec, zeros, 4);
	b64_encode(out, (const uint8_t *)"\xff", 1);
	assert_string_equal(out, "/w==");
	b64_encode(out, (const uint8_t *)"\xff\xff", 2);
	assert_string_equal(out, "//8=");
}

static void
test_random_round_trip(void **state)
{
	uint8_t in[64], dec[B64_DECODED_MAX(B64_ENCODED_LEN(64)) + 1];
	char out[B64_ENCODED_LEN(64) + 2], ref[B64_ENCODED_LEN(64) + 2];

	(void)state;
	rng_state = 0xB64B64;
	for (int iter = 0; iter < 50; iter++) {
		for (size_t len = 0; len <= 64; len++) {
			size_t n;

			for (size_t i = 0; i < len; i++)
				in[i] = (uint8_t)rng();
			memset(out, 'X', sizeof(out));
			n = b64_encode(out, in, len);
			assert_int_equal(n, B64_ENCODED_LEN(len));
			assert_int_equal(out[n], '\0');
			assert_int_equal(out[n + 1], 'X');
			ref_encode(ref, in, len);
			assert_string_equal(out, ref);

			memset(dec, 0xaa, sizeof(dec));
			assert_int_equal(b64_decode(dec, out, n), len);
			assert_memory_equal(dec, in, len);
			assert_true(B64_DECODED_MAX(n) >= len);
		}
	}
}

static void
rejects(const char *s)
{
	uint8_t dec[64];

	if (b64_decode(dec, s, strlen(s)) != -1)
		fail_msg("\"%s\" was accepted", s);
}

static void
test_bad_chars(void **state)
{
	static const char bad[] = "-_!.*~ \t\r\n\"\\\x7f\x80\xff";
	uint8_t dec[16];
	char s[5];

	(void)state;
	for (size_t i = 0; bad[i] != '\0'; i++) {
		/* In each of the four positions of a final quartet. */
		for (int pos = 0; pos < 4; pos++) {
			memcpy(s, "Zm9v", 5);
			s[pos] = bad[i];
			rejects(s);
		}
	}
	rejects("Zm9vYmFy Zm9v");
	rejects("Zm9v\nYmFy");
	/* A NUL inside the counted length. */
	assert_int_equal(b64_decode(dec, "Zm\0v", 4), -1);
	assert_int_equal(b64_decode(dec, "Zg\0=", 4), -1);
}

static void
test_bad_length(void **state)
{
	uint8_t dec[16];

	(void)state;
	rejects("Z");
	rejects("Zg");
	rejects("Zg=");
	rejects("Zm9");
	rejects("Zm9vY");
	rejects("Zm9vYmFy=");
	/* Length counts, not the NUL: a prefix of a longer, valid string
	 * is cut mid-quartet and must not be read past its end. */
	for (size_t n = 1; n < 8; n++) {
		if (n == 4)
			continue;
		assert_int_equal(b64_decode(dec, "Zm9vYmFy", n), -1);
		assert_int_equal(b64_decode(dec, "Zm9vYg==", n), -1);
	}
	assert_int_equal(b64_decode(dec, "Zm9vYg==", 4), 3);
	assert_memory_equal(dec, "foo", 3);
}

static void
test_bad_padding(void **state)
{
	(void)state;
	rejects("====");
	rejects("Z===");
	rejects("=g==");
	rejects("Zg=A");
	rejects("Zm=v");
	rejects("==Zg");
	/* Padding anywhere but the last quartet. */
	rejects("Zg==Zm9v");
	rejects("Zm8=Zm9v");
	rejects("Zg==Zg==");
}

static void
test_trailing_bits(void **state)
{
	uint8_t dec[4];
	char s[5] = "AA==";
	int a, b, c, accepted;

	(void)state;
	/* RFC 4648 §3.5: the bits after the last byte must be zero, so every
	 * byte string has exactly one encoding. Checked exhaustively over
	 * every padded final quartet. */
	rejects("Zh==");
	rejects("Zm9=");
	accepted = 0;
	for (a = 0; a < 64; a++) {
		for (b = 0; b < 64; b++) {
			char back[8];
			long n;

			s[0] = alphabet[a];
			s[1] = alphabet[b];
			s[2] = s[3] = '=';
			n = b64_decode(dec, s, 4);
			if ((b & 15) == 0) {
				assert_int_equal(n, 1);
				b64_encode(back, dec, 1);
				assert_string_equal(back, s);
				accepted++;
			} else {
				assert_int_equal(n, -1);
			}
			for (c = 0; c < 64; c++) {
				s[2] = alphabet[c];
				s[3] = '=';
				n = b64_decode(dec, s, 4);
				if ((c & 3) == 0) {
					assert_int_equal(n, 2);
					b64_encode(back, dec, 2);
					assert_string_equal(back, s);
					accepted++;
				} else {
					assert_int_equal(n, -1);
				}
			}
		}
	}
	/* Exactly one spelling for each of the 256 + 65536 byte strings. */
	assert_int_equal(accepted, 256 + 65536);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rfc4648_vectors),
		cmocka_unit_test(test_binary_vectors),
		cmocka_unit_test(test_random_round_trip),
		cmocka_unit_test(test_bad_chars),
		cmocka_unit_test(test_bad_length),
		cmocka_unit_test(test_bad_padding),
		cmocka_unit_test(test_trailing_bits),
	};

	return cmocka_run_group_tests_name("b64", tests, NULL, NULL);
}
