/*
 * osdep-darwin.c — osdep.h on macOS.
 *
 * Darwin has no accept4, pipe2 or SOCK_CLOEXEC: the descriptor is made
 * first and its flags set after. capsuled is single-threaded, so no other
 * thread can fork and exec in between.
 */
#include <errno.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "osdep.h"

/* Sets flags (O_CLOEXEC, O_NONBLOCK) on fd; closes it if that fails. */
static int
set_flags(int fd, int flags)
{
	int e;

	if (fd < 0)
		return -1;
	if (((flags & O_CLOEXEC) && fcntl(fd, F_SETFD, FD_CLOEXEC) < 0) ||
	    ((flags & O_NONBLOCK) &&
	    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0)) {
		e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

/* Both ends, or neither. */
static int
set_flags2(int fds[2], int flags)
{
	int e;

	if (set_flags(fds[0], flags) < 0) {
		e = errno;
		close(fds[1]);
		errno = e;
		return -1;
	}
	if (set_flags(fds[1], flags) < 0) {
		e = errno;
		close(fds[0]);
		errno = e;
		return -1;
	}
	return 0;
}

int
osdep_accept(int fd, struct sockaddr *addr, socklen_t *len)
{
	return set_flags(accept(fd, addr, len), O_CLOEXEC | O_NONBLOCK);
}

int
osdep_pipe(int fds[2], int flags)
{
	if (pipe(fds) < 0)
		return -1;
	return set_flags2(fds, flags);
}

int
osdep_socket(int domain, int type, int flags)
{
	return set_flags(socket(domain, type, 0), flags);
}

int
osdep_socketpair(int domain, int type, int flags, int sv[2])
{
	if (socketpair(domain, type, 0, sv) < 0)
		return -1;
	return set_flags2(sv, flags);
}
