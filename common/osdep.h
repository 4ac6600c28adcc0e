/*
 * osdep.h — the calls that differ between the host systems capsule runs on.
 *
 * After tmux's osdep-*.c: one file per system (osdep-linux.c,
 * osdep-darwin.c), chosen by CMake from CMAKE_SYSTEM_NAME, and no #ifdef
 * in the code that calls them. Only what is small and has a real
 * equivalent on each system lives here; bigger differences (process
 * watching, memory files, systemd) are their own modules.
 *
 * Each function stands in for a system call and behaves like one: on
 * failure it returns -1 and sets errno. `flags` arguments take O_CLOEXEC
 * and O_NONBLOCK, as pipe2() does, whatever the call.
 *
 * Host side only: the guest agent always runs on Linux and does not link
 * this.
 */
#ifndef CAPSULE_OSDEP_H
#define CAPSULE_OSDEP_H

#include <sys/types.h>
#include <sys/socket.h>

/* accept(), the new socket close-on-exec and non-blocking. */
int	osdep_accept(int fd, struct sockaddr *addr, socklen_t *len);
/* pipe() with flags on both ends. */
int	osdep_pipe(int fds[2], int flags);
/* socket(domain, type, 0) with flags. */
int	osdep_socket(int domain, int type, int flags);
/* socketpair(domain, type, 0, sv) with flags on both ends. */
int	osdep_socketpair(int domain, int type, int flags, int sv[2]);

/* Who is at the other end of a connected Unix socket, as the kernel saw
 * it at connect(): effective uid and gid, and pid. Any pointer may be
 * NULL. */
int	osdep_peer(int fd, uid_t *uid, gid_t *gid, pid_t *pid);
/* That peer's supplementary groups: at most *n of them (the first ones if
 * it has more: fewer groups only ever mean fewer rights); *n is set to how
 * many were stored. */
int	osdep_peergroups(int fd, gid_t *groups, size_t *n);

/* Fills buf with len random bytes from the kernel (all of them, or -1). */
int	osdep_random(void *buf, size_t len);
/* Closes every descriptor from lowfd up. For a child between fork and
 * exec: it does not allocate. */
void	osdep_closefrom(int lowfd);

#endif /* CAPSULE_OSDEP_H */
