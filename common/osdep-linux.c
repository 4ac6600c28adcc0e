/*
 * osdep-linux.c — osdep.h on Linux.
 */
#include <errno.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "osdep.h"

static int
sock_flags(int flags)
{
	return ((flags & O_CLOEXEC) ? SOCK_CLOEXEC : 0) |
	    ((flags & O_NONBLOCK) ? SOCK_NONBLOCK : 0);
}

int
osdep_accept(int fd, struct sockaddr *addr, socklen_t *len)
{
	return accept4(fd, addr, len, SOCK_CLOEXEC | SOCK_NONBLOCK);
}

int
osdep_pipe(int fds[2], int flags)
{
	return pipe2(fds, flags);
}

int
osdep_socket(int domain, int type, int flags)
{
	return socket(domain, type | sock_flags(flags), 0);
}

int
osdep_socketpair(int domain, int type, int flags, int sv[2])
{
	return socketpair(domain, type | sock_flags(flags), 0, sv);
}
