/*
 * reap.c — cleaning up after a previous capsuled (see reap.h).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "caller.h"
#include "log.h"
#include "procid.h"
#include "reap.h"
#include "record.h"
#include "rmtree.h"
#include "util.h"

#define REAP_KILL_WAIT_MS	5000

/* Ends the recorded process if it is still the one recorded. */
static void
reap_process(const struct record *r, const char *boot_id)
{
	struct pollfd pfd;
	int fd;

	if (strcmp(r->boot_id, boot_id) != 0) {
		log_info("vm %s: its process ran in an earlier boot", r->vm_id);
		return;
	}
	fd = procid_open(&r->proc);
	if (fd == -ESRCH)
		return;
	if (fd == -ESTALE) {
		log_warn("vm %s: pid %d now belongs to another process; not "
		    "signalling it", r->vm_id, (int)r->proc.pid);
		return;
	}
	if (fd < 0) {
		log_warn("vm %s: cannot check pid %d: %s", r->vm_id,
		    (int)r->proc.pid, strerror(-fd));
		return;
	}
	log_warn("vm %s: killing its %s process %d, left running by a "
	    "previous capsuled", r->vm_id, r->backend, (int)r->proc.pid);
	if (procid_signal(fd, SIGKILL) == 0) {
		/* The pidfd turns readable when the process is gone. */
		pfd.fd = fd;
		pfd.events = POLLIN;
		if (poll(&pfd, 1, REAP_KILL_WAIT_MS) <= 0)
			log_warn("vm %s: pid %d did not end within %d ms",
			    r->vm_id, (int)r->proc.pid, REAP_KILL_WAIT_MS);
	}
	close(fd);
}

static void
reap_made(const struct record *r)
{
	for (size_t i = 0; i < r->nmade; i++) {
		const struct record_made *rm = &r->made[i];
		struct caller_made m = {
			.dir_fd = -1,
			.dir_path = strdup(rm->dir),
			.dir_id = { rm->dir_dev, rm->dir_ino, rm->dir_btime },
			.name = strdup(rm->name),
			.id = { rm->dev, rm->ino, rm->btime },
			.type = rm->type,
		};
		int e;

		if (m.dir_path == NULL || m.name == NULL) {
			caller_made_free(&m);
			continue;
		}
		if ((e = caller_made_reopen(&m)) == 0)
			e = caller_made_remove(&m);
		else
			caller_made_free(&m);
		if (e == -ESTALE)
			log_warn("vm %s: %s/%s is no longer what capsule made; "
			    "left alone", r->vm_id, rm->dir, rm->name);
		else if (e < 0 && e != -ENOENT && e != -ENOTEMPTY)
			log_warn("vm %s: cannot remove %s/%s: %s", r->vm_id,
			    rm->dir, rm->name, strerror(-e));
	}
}

static void
reap_one(int vms_fd, const char *name, const char *boot_id)
{
	struct record rec;
	struct cap_err err;
	struct stat st;
	int fd, r;

	if (fstatat(vms_fd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return;
	if (S_ISLNK(st.st_mode) && record_id_ok(name)) {
		/* An older capsuled linked caller run dirs in here; what
		 * those hold is the caller's to write, so none of it is
		 * trusted: only the link goes. */
		log_warn("removing %s, a link to a run dir left by an older "
		    "capsuled; nothing in that run dir is trusted or touched "
		    "(a VM process it started may still be running)", name);
		unlinkat(vms_fd, name, 0);
		return;
	}
	if (!S_ISDIR(st.st_mode) || !record_id_ok(name)) {
		log_warn("%s in the state dir's vms/ is not capsule's; left "
		    "alone", name);
		return;
	}
	fd = openat(vms_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW |
	    O_CLOEXEC);
	if (fd < 0)
		return;
	if ((r = record_read(fd, &rec, &err)) < 0) {
		log_warn("vm %s: %s; removing its private dir, touching "
		    "nothing it names", name, err.msg);
	} else if (strcmp(rec.vm_id, name) != 0) {
		log_warn("vm %s: its record names vm %s; removing its private "
		    "dir, touching nothing it names", name, rec.vm_id);
		record_free(&rec);
		r = -EINVAL;
	}
	close(fd);
	if (r == 0) {
		reap_process(&rec, boot_id);
		reap_made(&rec);
		record_free(&rec);
	}
	log_info("vm %s: removing the private dir a previous capsuled left",
	    name);
	if ((r = rmtree_at(vms_fd, name)) < 0)
		log_warn("vm %s: cannot remove its private dir: %s", name,
		    strerror(-r));
}

int
reap_all(int vms_fd)
{
	char boot_id[PROCID_BOOT_ID_LEN + 1] = "";
	struct dirent *de;
	int dfd, n = 0;
	DIR *d;

	if (procid_boot_id(boot_id) < 0)
		log_warn("cannot read this boot's id; no recorded process "
		    "will be signalled");
	if ((dfd = fcntl(vms_fd, F_DUPFD_CLOEXEC, 0)) < 0 ||
	    (d = fdopendir(dfd)) == NULL) {
		if (dfd >= 0)
			close(dfd);
		return 0;
	}
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		n++;
		reap_one(vms_fd, de->d_name, boot_id);
	}
	closedir(d);
	return n;
}
