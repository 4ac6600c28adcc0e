/*
 * fuzz_copy.c — libFuzzer harness for capsule cp's unpacker as the host runs
 * it on what a (possibly hostile) guest sends: any archive must be refused
 * or unpacked below the destination, never crash, never leave a temporary
 * file, and never write outside the scratch directory (a throwaway one
 * under $TMPDIR, removed without following any link the archive made).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE	/* memfd_create: CMake defines it too */
#endif
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "copy.h"
#include "cpio.h"
#include "rmtree.h"

static char scratch[PATH_MAX];
static char outside[sizeof(scratch) + 16];

/* No temporary file may survive an extraction. (FTW_PHYS: links are
 * reported, never followed.) */
static int
check_one(const char *path, const struct stat *st, int flag, struct FTW *f)
{
	if (strstr(path, ".capsule-cp.") != NULL)
		abort();
	return 0;
}

static size_t
entries(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	size_t n = 0;

	if (d == NULL)
		return 0;
	while ((e = readdir(d)) != NULL)
		n++;
	closedir(d);
	return n;
}

/* The archive may hold links to / and directories without permissions:
 * removal goes through rmtree, which never follows a link and changes
 * modes only through descriptors of the directories it walks. */
static void
cleanup(void)
{
	rmtree(scratch);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct cpio_entry e;
	const char *name;
	char dst[sizeof(scratch) + 16], err[512];
	int fd;

	/* The header codec on its own, at every offset. */
	for (size_t off = 0; off < size && off < 512; off += 4)
		cpio_header_decode(data + off, size - off, &e, &name);

	if (outside[0] == '\0') {
		const char *tmp = getenv("TMPDIR");

		snprintf(scratch, sizeof(scratch), "%s/capsule-fuzz-copy.XXXXXX",
		    tmp != NULL && tmp[0] == '/' ? tmp : "/tmp");
		if (mkdtemp(scratch) == NULL)
			abort();
		snprintf(outside, sizeof(outside), "%s/o", scratch);
		if (mkdir(outside, 0700) < 0)
			abort();
		atexit(cleanup);
	}
	snprintf(dst, sizeof(dst), "%s/d", scratch);
	if ((fd = memfd_create("archive", 0)) < 0)
		abort();
	if (write(fd, data, size) != (ssize_t)size || lseek(fd, 0, 0) != 0)
		abort();
	copy_extract_top(fd, dst, "top", COPY_UNTRUSTED, err, sizeof(err));
	close(fd);
	/* Whatever happened, only dst may exist beside the sentinel dir,
	 * and the sentinel stays empty. */
	if (entries(outside) != 2 || entries(scratch) > 4)
		abort();
	nftw(dst, check_one, 16, FTW_PHYS);
	if (rmtree(dst) < 0)
		abort();
	return 0;
}
