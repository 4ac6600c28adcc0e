/*
 * rmtree.c — removing a tree without following links (see rmtree.h).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "osdep.h"
#include "rmtree.h"

/* Deep enough for any tree a test or a guest makes; past it we stop
 * rather than run out of descriptors. */
#define RMTREE_MAX_DEPTH	256

static int	rmtree_dir(int fd, int depth);

static int
first_err(int r, int e)
{
	return r < 0 ? r : e;
}

/* Removes entry `name` of directory `dfd`, descending into directories. */
static int
rmtree_entry(int dfd, const char *name, int depth)
{
	struct stat st;
	int fd, r;

	if (unlinkat(dfd, name, 0) == 0)
		return 0;
	if (errno == ENOENT)
		return 0;
	if (errno != EISDIR && errno != EPERM)
		return -errno;
	if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISDIR(st.st_mode))
		return -EPERM;
	if (depth >= RMTREE_MAX_DEPTH)
		return -ELOOP;
	fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW |
	    O_CLOEXEC);
	if (fd < 0 && errno == EACCES) {
		/* A directory we may not read: make it ours to read. */
		if (osdep_chmod_dirat(dfd, name, 0700) < 0)
			return -errno;
		fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW |
		    O_CLOEXEC);
	}
	if (fd < 0)
		return -errno;
	r = rmtree_dir(fd, depth + 1);
	close(fd);
	if (unlinkat(dfd, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
		return first_err(r, -errno);
	return r;
}

/* Empties directory fd (which it does not close). */
static int
rmtree_dir(int fd, int depth)
{
	struct dirent *de;
	struct stat st;
	DIR *d;
	int dup_fd, r = 0;

	/* Entries can be unlinked only from a writable, searchable dir. */
	if (fstat(fd, &st) == 0 && (st.st_mode & 0700) != 0700)
		fchmod(fd, (st.st_mode & 07777) | 0700);
	if ((dup_fd = fcntl(fd, F_DUPFD_CLOEXEC, 0)) < 0)
		return -errno;
	if ((d = fdopendir(dup_fd)) == NULL) {
		r = -errno;
		close(dup_fd);
		return r;
	}
	for (;;) {
		errno = 0;
		if ((de = readdir(d)) == NULL)
			break;
		if (strcmp(de->d_name, ".") == 0 ||
		    strcmp(de->d_name, "..") == 0)
			continue;
		/* Unlinking entries readdir has returned leaves the rest
		 * of the listing intact. */
		r = first_err(r, rmtree_entry(dirfd(d), de->d_name, depth));
	}
	if (errno != 0)
		r = first_err(r, -errno);
	closedir(d);
	return r;
}

int
rmtree_contents(int fd)
{
	return rmtree_dir(fd, 0);
}

int
rmtree_at(int dirfd, const char *name)
{
	const char *slash = strrchr(name, '/');
	char parent[PATH_MAX];
	int pfd, r;

	if (slash == NULL)
		return rmtree_entry(dirfd, name, 0);
	if (slash[1] == '\0' || strcmp(slash + 1, ".") == 0 ||
	    strcmp(slash + 1, "..") == 0)
		return -EINVAL;
	if ((size_t)(slash - name) >= sizeof(parent))
		return -ENAMETOOLONG;
	if (slash == name)
		snprintf(parent, sizeof(parent), "/");
	else
		snprintf(parent, sizeof(parent), "%.*s", (int)(slash - name),
		    name);
	pfd = openat(dirfd, parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (pfd < 0)
		return errno == ENOENT ? 0 : -errno;
	r = rmtree_entry(pfd, slash + 1, 0);
	close(pfd);
	return r;
}

int
rmtree(const char *path)
{
	return rmtree_at(AT_FDCWD, path);
}
