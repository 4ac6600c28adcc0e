/*
 * testfs.h — a scratch directory for unit tests that work on real files:
 * P("rel") names a path in it, tfs_put() writes a small file there. The
 * including test sets tfs_base (mkdtemp) and removes it with rmtree().
 * Include after <cmocka.h>.
 */
#ifndef CAPSULE_TESTFS_H
#define CAPSULE_TESTFS_H

#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char tfs_base[64];

/* tfs_base/rel, from a ring of buffers so one call can take several. */
static inline const char *
P(const char *rel)
{
	static char ring[16][PATH_MAX];
	static int next;
	char *p = ring[next++ % 16];

	snprintf(p, PATH_MAX, "%s/%s", tfs_base, rel);
	return p;
}

/* A new file with exactly this text and mode (whatever the umask). */
static inline void
tfs_put(const char *rel, const char *text, mode_t mode)
{
	int fd = open(P(rel), O_WRONLY | O_CREAT | O_EXCL, mode);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	assert_int_equal(fchmod(fd, mode), 0);
	close(fd);
}

#endif /* CAPSULE_TESTFS_H */
