/*
 * b64.h — standard base64 with padding (RFC 4648 §4), as Go's
 * encoding/json writes a []byte: the `data` of exec stream lines.
 */
#ifndef CAPSULE_B64_H
#define CAPSULE_B64_H

#include <stddef.h>
#include <stdint.h>

#define B64_ENCODED_LEN(n)	((((n) + 2) / 3) * 4)
#define B64_DECODED_MAX(n)	(((n) / 4) * 3 + 3)

/* Writes B64_ENCODED_LEN(len) characters and a NUL; returns their count. */
size_t	b64_encode(char *out, const uint8_t *in, size_t len);
/* Returns the decoded length, or -1 if `in` is not valid padded base64. */
long	b64_decode(uint8_t *out, const char *in, size_t len);

#endif /* CAPSULE_B64_H */
