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

/* Ends the recorded process (pidfd) and waits for it to go. */
static void
reap_kill(const struct record *r, int fd)
{
	struct pollfd pfd;

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
}

/* A pidfd for the recorded process if it still is the one recorded,
 * -ESRCH if it is gone (or ran in another boot), -ESTALE otherwise. */
static int
reap_find(const struct record *r, const char *boot_id)
{
	int fd;

	if (strcmp(r->boot_id, boot_id) != 0) {
		log_info("vm %s: its process ran in an earlier boot", r->vm_id);
		return -ESRCH;
	}
	fd = procid_open(&r->proc);
	if (fd == -ESTALE)
		log_warn("vm %s: pid %d now belongs to another process; not "
		    "signalling it", r->vm_id, (int)r->proc.pid);
	else if (fd < 0 && fd != -ESRCH)
		log_warn("vm %s: cannot check pid %d: %s", r->vm_id,
		    (int)r->proc.pid, strerror(-fd));
	return fd;
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

/* Removes <state>/run/<name>: capsuled made it, its name says which. */
static void
reap_public(int run_fd, const char *name)
{
	struct stat st;
	int r;

	if (run_fd < 0 || fstatat(run_fd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return;
	if (!S_ISDIR(st.st_mode)) {
		log_warn("run/%s is not a directory capsule made; left alone",
		    name);
		return;
	}
	if ((r = rmtree_at(run_fd, name)) < 0)
		log_warn("vm %s: cannot remove its run dir: %s", name,
		    strerror(-r));
}

static void
reap_one(int vms_fd, int run_fd, const char *name, const char *boot_id,
    reap_adopt_fn *adopt, void *arg)
{
	struct record rec;
	struct cap_err err;
	struct stat st;
	int fd, pfd = -1, r;

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
	if (r == 0) {
		pfd = reap_find(&rec, boot_id);
		if (adopt != NULL && pfd != -ESTALE &&
		    adopt(&rec, fd, pfd >= 0, arg) == 0) {
			closep(&pfd);
			record_free(&rec);
			close(fd);
			return;
		}
		if (pfd >= 0)
			reap_kill(&rec, pfd);
		closep(&pfd);
		reap_made(&rec);
		record_free(&rec);
	}
	close(fd);
	log_info("vm %s: removing the private dir a previous capsuled left",
	    name);
	reap_public(run_fd, name);
	if ((r = rmtree_at(vms_fd, name)) < 0)
		log_warn("vm %s: cannot remove its private dir: %s", name,
		    strerror(-r));
}

/* A run dir whose VM has no private dir (a daemon that died between
 * making the two) is capsule's and goes. */
static void
reap_stray_public(int vms_fd, int run_fd)
{
	struct dirent *de;
	struct stat st;
	int dfd;
	DIR *d;

	if (run_fd < 0 || (dfd = fcntl(run_fd, F_DUPFD_CLOEXEC, 0)) < 0)
		return;
	if ((d = fdopendir(dfd)) == NULL) {
		close(dfd);
		return;
	}
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.' || !record_id_ok(de->d_name) ||
		    fstatat(vms_fd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0)
			continue;
		log_info("vm %s: removing a run dir without a VM", de->d_name);
		reap_public(run_fd, de->d_name);
	}
	closedir(d);
}

int
reap_all(int vms_fd, int run_fd, reap_adopt_fn *adopt, void *arg)
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
		reap_one(vms_fd, run_fd, de->d_name, boot_id, adopt, arg);
	}
	closedir(d);
	reap_stray_public(vms_fd, run_fd);
	return n;
}
