/*
 * rmtree.h — `rm -rf` that cannot be led outside the tree it removes.
 *
 * Every step is relative to a directory file descriptor, every open is
 * O_NOFOLLOW, and a symbolic link is removed, never followed: a link to /
 * inside the tree removes the link, not /. Directories the walk cannot
 * enter or empty (mode 0000 ones made by a test, say) are made 0700 first,
 * never following a link (see osdep_chmod_dirat).
 *
 * libc and osdep only: the daemon, the CLI's tests, the unit tests and the
 * fuzz harnesses all use this one.
 */
#ifndef CAPSULE_RMTREE_H
#define CAPSULE_RMTREE_H

/* Removes `name` in directory `dirfd` (AT_FDCWD for the working directory)
 * and, if it is a directory, everything below it. `name` is one path
 * component, or an absolute/relative path whose last component is removed
 * (earlier components are followed as usual: they are the caller's).
 * A missing `name` is success. Returns 0 or a negative errno (the first
 * failure; the walk goes on past it to remove what it can). */
int	rmtree_at(int dirfd, const char *name);
/* rmtree_at(AT_FDCWD, path). */
int	rmtree(const char *path);
/* Removes what is inside the directory `fd`, not the directory itself. */
int	rmtree_contents(int fd);

#endif /* CAPSULE_RMTREE_H */
