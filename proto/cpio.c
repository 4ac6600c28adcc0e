/*
 * cpio.c — the newc cpio header codec (see cpio.h).
 * Pure: no I/O, no allocation. Linked by the CLI and capsule-agent.
 */
#include <errno.h>
#include <string.h>

#include "cpio.h"

/* Field order after the magic; each is 8 hex digits. */
enum {
	F_INO, F_MODE, F_UID, F_GID, F_NLINK, F_MTIME, F_SIZE,
	F_DEVMAJ, F_DEVMIN, F_RDEVMAJ, F_RDEVMIN, F_NAMESIZE, F_CHECK,
	F_COUNT
};

size_t
cpio_pad4(size_t n)
{
	return (4 - (n & 3)) & 3;
}

size_t
cpio_header_len(uint32_t namesize)
{
	size_t n = CPIO_HDR_LEN + (size_t)namesize;

	return n + cpio_pad4(n);
}

static void
put_hex(uint8_t *p, uint32_t v)
{
	static const char digits[] = "0123456789ABCDEF";
	int i;

	for (i = 7; i >= 0; i--, v >>= 4)
		p[i] = (uint8_t)digits[v & 0xf];
}

static int
get_hex(const uint8_t *p, uint32_t *v)
{
	uint32_t r = 0;
	int i, d;

	for (i = 0; i < 8; i++) {
		if (p[i] >= '0' && p[i] <= '9')
			d = p[i] - '0';
		else if (p[i] >= 'a' && p[i] <= 'f')
			d = p[i] - 'a' + 10;
		else if (p[i] >= 'A' && p[i] <= 'F')
			d = p[i] - 'A' + 10;
		else
			return -EBADMSG;
		r = r << 4 | (uint32_t)d;
	}
	*v = r;
	return 0;
}

long
cpio_header_encode(uint8_t *out, size_t cap, const struct cpio_entry *e,
    const char *name)
{
	uint32_t f[F_COUNT] = { 0 };
	size_t namesize = strlen(name) + 1, len;
	int i;

	if (namesize < 2 || namesize > CPIO_NAME_MAX)
		return -EINVAL;
	len = cpio_header_len((uint32_t)namesize);
	if (len > cap)
		return -EMSGSIZE;
	f[F_INO] = e->ino;
	f[F_MODE] = e->mode;
	f[F_UID] = e->uid;
	f[F_GID] = e->gid;
	f[F_NLINK] = e->nlink;
	f[F_MTIME] = e->mtime;
	f[F_SIZE] = e->size;
	f[F_NAMESIZE] = (uint32_t)namesize;
	memcpy(out, CPIO_MAGIC, 6);
	for (i = 0; i < F_COUNT; i++)
		put_hex(out + 6 + 8 * i, f[i]);
	memcpy(out + CPIO_HDR_LEN, name, namesize);
	memset(out + CPIO_HDR_LEN + namesize, 0,
	    len - CPIO_HDR_LEN - namesize);
	return (long)len;
}

long
cpio_trailer_encode(uint8_t *out, size_t cap)
{
	struct cpio_entry e = { .nlink = 1 };

	return cpio_header_encode(out, cap, &e, CPIO_TRAILER);
}

long
cpio_header_decode(const uint8_t *in, size_t have, struct cpio_entry *e,
    const char **name)
{
	uint32_t f[F_COUNT];
	size_t len;
	int i;

	*name = NULL;
	/* Fail fast on a stream that is not cpio at all. */
	if (memcmp(in, CPIO_MAGIC, have < 6 ? have : 6) != 0)
		return -EBADMSG;
	if (have < CPIO_HDR_LEN)
		return 0;
	for (i = 0; i < F_COUNT; i++)
		if (get_hex(in + 6 + 8 * i, &f[i]) < 0)
			return -EBADMSG;
	if (f[F_NAMESIZE] < 2 || f[F_NAMESIZE] > CPIO_NAME_MAX)
		return -EBADMSG;
	e->ino = f[F_INO];
	e->mode = f[F_MODE];
	e->uid = f[F_UID];
	e->gid = f[F_GID];
	e->nlink = f[F_NLINK];
	e->mtime = f[F_MTIME];
	e->size = f[F_SIZE];
	e->namesize = f[F_NAMESIZE];
	len = cpio_header_len(e->namesize);
	if (have < len)
		return 0;
	if (in[CPIO_HDR_LEN + e->namesize - 1] != '\0' ||
	    memchr(in + CPIO_HDR_LEN, '\0', e->namesize - 1) != NULL)
		return -EBADMSG;
	*name = (const char *)(in + CPIO_HDR_LEN);
	return (long)len;
}

int
cpio_is_trailer(const char *name)
{
	return strcmp(name, CPIO_TRAILER) == 0;
}
