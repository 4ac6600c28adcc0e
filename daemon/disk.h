/*
 * disk.h — a VM's writable disk: a raw, sparse file with an empty ext4 on
 * it, which the guest agent mounts as the upper layer of an overlay over
 * the read-only base image (so the base is shared and never written, and
 * no backend needs qcow2: Virtualization.framework has none). An
 * ephemeral VM's disk lives in its private dir and goes with it; a
 * sandbox's lives in the sandbox's dir and stays.
 */
#ifndef CAPSULE_DISK_H
#define CAPSULE_DISK_H

#include <stdint.h>
#include <sys/types.h>

#include "err.h"

#define DISK_MKFS		"/sbin/mkfs.ext4"
#define DISK_FILE		"disk.img"
/* A disk is sparse: its size is a promise the host file system may not
 * keep. None is made on one with less than this free. */
#define DISK_FREE_MIN		(32ULL << 20)

/* Creates name in dir_fd (new, mode 0600) as a sparse file of size_mib
 * MiB and makes an ext4 on it. Returns its fd (read-write), or -errno
 * with err set; nothing is left behind on failure. Synchronous: mkfs of
 * an empty sparse file takes milliseconds. */
int	disk_make(int dir_fd, const char *name, uint64_t size_mib,
	    struct cap_err *err);
/* Opens an existing disk capsuled made (a regular file, no link). */
int	disk_open(int dir_fd, const char *name, struct cap_err *err);
/* Copies size bytes of in to out (both from offset 0; out is truncated
 * to size), leaving holes where in has them. 0 or -errno. */
int	disk_copy(int in, int out, off_t size);
/* Bytes the disk takes on the host (its allocated blocks). */
uint64_t disk_used(int fd);

#endif /* CAPSULE_DISK_H */
