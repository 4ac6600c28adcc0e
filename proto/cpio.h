/*
 * cpio.h — the SVR4 "newc" cpio header, the archive format `capsule cp`
 * streams between the host and the guest (see common/copy.h).
 *
 * Each entry is a 110-byte ASCII header, the name, then the data:
 *
 *	"070701" then 13 fields of 8 hex digits: ino, mode, uid, gid, nlink,
 *	mtime, filesize, devmajor, devminor, rdevmajor, rdevminor,
 *	namesize (including the NUL), check (0)
 *	name, NUL-terminated, padded with NULs to a multiple of 4 bytes
 *	counting from the start of the header
 *	filesize bytes of data, padded with NULs to a multiple of 4
 *
 * The archive ends with an entry named CPIO_TRAILER. This is what
 * `cpio -o -H newc` writes and `cpio -i` reads.
 *
 * Everything here is pure: it encodes into and decodes from caller buffers.
 * The agent links this file and libc only.
 */
#ifndef CAPSULE_CPIO_H
#define CAPSULE_CPIO_H

#include <stddef.h>
#include <stdint.h>

#define CPIO_MAGIC	"070701"
#define CPIO_HDR_LEN	110
#define CPIO_NAME_MAX	4096	/* namesize limit, NUL included */
#define CPIO_TRAILER	"TRAILER!!!"
/* The most a header with its name and padding can take. */
#define CPIO_HDR_MAX	(CPIO_HDR_LEN + CPIO_NAME_MAX + 3)

struct cpio_entry {
	uint32_t	ino;
	uint32_t	mode;		/* file type and permission bits */
	uint32_t	uid, gid;
	uint32_t	nlink;
	uint32_t	mtime;
	uint32_t	size;		/* data bytes after the header */
	uint32_t	namesize;	/* decode only: strlen(name) + 1 */
};

/* The padding (0-3 bytes) that brings n to a multiple of 4. */
size_t	cpio_pad4(size_t n);
/* The whole header's length, name and padding included. */
size_t	cpio_header_len(uint32_t namesize);

/*
 * Writes e's header and `name` (e->namesize is ignored). Returns the bytes
 * written, -EINVAL for an empty name or one of CPIO_NAME_MAX bytes or more,
 * or -EMSGSIZE if it does not fit `cap`. Device fields and check are 0.
 */
long	cpio_header_encode(uint8_t *out, size_t cap, const struct cpio_entry *e,
	    const char *name);
/* The archive's last entry. Returns its length or -EMSGSIZE. */
long	cpio_trailer_encode(uint8_t *out, size_t cap);

/*
 * Decodes the header at `in`. Returns its whole length (header, name and
 * padding) when all of it is there, 0 when more bytes are needed, or
 * -EBADMSG for a bad magic, a field that is not 8 hex digits, a namesize
 * of 0, 1 or over CPIO_NAME_MAX, or a name that is not a string of exactly
 * namesize - 1 non-NUL bytes. Once the fixed CPIO_HDR_LEN bytes are there
 * and valid, e is filled in even when it returns 0, so a reader can ask for
 * exactly cpio_header_len(e->namesize) bytes. *name points into `in`.
 */
long	cpio_header_decode(const uint8_t *in, size_t have,
	    struct cpio_entry *e, const char **name);
int	cpio_is_trailer(const char *name);

#endif /* CAPSULE_CPIO_H */
