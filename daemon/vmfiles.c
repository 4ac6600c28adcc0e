/*
 * vmfiles.c — a VM's files on the host (see vmfiles.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "proto.h"
#include "rmtree.h"
#include "util.h"
#include "vmfiles.h"

/* What an op is for. */
enum {
	ROLE_PRIVATE,
	ROLE_PUBLIC,
	ROLE_KERNEL,
	ROLE_INITRD,
	ROLE_ROOTFS,
	ROLE_RUN_DIR,
	ROLE_CONSOLE,
	ROLE_PROXY,
	ROLE_PORT0,
	ROLE_VOLUME0 = ROLE_PORT0 + CTL_MAX_SERIAL_PORTS,
};

int
vmfiles_check_initrd(const uint8_t *b, size_t len, struct cap_err *err)
{
	static const struct { const char *magic; size_t len; } kinds[] = {
		{ "\x1f\x8b", 2 },			/* gzip */
		{ "\x28\xb5\x2f\xfd", 4 },		/* zstd */
		{ "\xfd" "7zXZ", 5 },			/* xz */
		{ "\x02\x21\x4c\x18", 4 },		/* lz4 (legacy) */
		{ "BZh", 3 },				/* bzip2 */
		{ "\x5d\x00\x00", 3 },		/* lzma */
		{ "0707", 4 },				/* plain cpio */
	};

	for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
		if (len >= kinds[i].len &&
		    memcmp(b, kinds[i].magic, kinds[i].len) == 0)
			return 0;
	return cap_err_set(err, EINVAL, E_INVALID_ARGUMENT,
	    "is not an initramfs (cpio, possibly compressed)");
}

int
vmfiles_check_rootfs(const uint8_t *b, size_t len, struct cap_err *err)
{
	/* ext2/3/4 superblock magic 0xEF53 at byte 1080. */
	if (len >= 1082 && b[1080] == 0x53 && b[1081] == 0xef)
		return 0;
	return cap_err_set(err, EINVAL, E_INVALID_ARGUMENT,
	    "is not an ext4 file system image");
}

static void
files_init(struct vm_files *f)
{
	memset(f, 0, sizeof(*f));
	f->private_fd = f->kernel = f->initrd = f->rootfs = -1;
	f->console = f->proxy = -1;
	for (size_t i = 0; i < CTL_MAX_SERIAL_PORTS; i++)
		f->ports[i] = -1;
	for (size_t i = 0; i < VOLUME_MAX; i++)
		f->volumes[i] = -1;
	f->private_dir.dir_fd = -1;
	f->public_dir.dir_fd = -1;
	for (size_t i = 0; i < VMFILES_MAX; i++)
		f->made[i].dir_fd = -1;
}

static void
add(struct caller_op *ops, int *roles, size_t *n, int role,
    enum caller_kind kind, const char *field, const char *path, int at)
{
	caller_op_init(&ops[*n], kind, field, path, at);
	roles[(*n)++] = role;
}

/* Splits the work: what capsuled does itself (`here`), what a child does
 * as the caller (`there`). */
static void
files_plan(struct vm_files *f, const struct vm_spec *s,
    const struct caller *who)
{
	const struct { const char *path; int named, role;
	    const char *field; } img[] = {
		{ s->kernel, s->kernel_named, ROLE_KERNEL, J_KERNEL_PATH },
		{ s->initrd, s->initrd_named, ROLE_INITRD, J_INITRD_PATH },
		{ s->rootfs, s->rootfs_named, ROLE_ROOTFS, J_ROOTFS_PATH },
	};
	int rundir;

	/* The private dir comes first: the daemon's files go in it. */
	add(f->here, f->here_role, &f->nhere, ROLE_PRIVATE, CALLER_DIR,
	    "the VM's private directory", s->private_dir, -1);
	for (size_t i = 0; i < 3; i++)
		if (img[i].named)
			add(f->there, f->there_role, &f->nthere, img[i].role,
			    CALLER_READ, img[i].field, img[i].path, -1);
		else
			add(f->here, f->here_role, &f->nhere, img[i].role,
			    CALLER_READ, img[i].field, img[i].path, -1);
	/* A run dir nobody named: capsuled makes it and gives it away. */
	if (!s->run_dir_named) {
		struct caller_op *op = &f->here[f->nhere];

		add(f->here, f->here_role, &f->nhere, ROLE_PUBLIC, CALLER_DIR,
		    "the VM's run directory", s->run_dir, -1);
		op->chown_to = 1;
		op->uid = who->uid;
		op->gid = who->gid;
	}
	/* Everything in the run dir is the caller's to make. */
	rundir = (int)f->nthere;
	add(f->there, f->there_role, &f->nthere, ROLE_RUN_DIR, CALLER_DIR,
	    J_RUN_DIR, s->run_dir, -1);
#define PLACE(place, role, kind, field, path, name)			\
	do {								\
		if ((place) == VM_PLACE_RUN_DIR)			\
			add(f->there, f->there_role, &f->nthere, role,	\
			    kind, field, name, rundir);			\
		else							\
			add(f->there, f->there_role, &f->nthere, role,	\
			    kind, field, path, -1);			\
	} while (0)
	PLACE(s->console_place, ROLE_CONSOLE, CALLER_CREATE,
	    J_CONSOLE_LOG_PATH, s->console_path, VMSPEC_CONSOLE);
	PLACE(s->proxy_place, ROLE_PROXY, CALLER_BIND, J_PROXY_SOCKET_PATH,
	    s->proxy_path, VMSPEC_PROXY);
	for (unsigned i = 0; i < s->nports; i++)
		PLACE(VM_PLACE_RUN_DIR, ROLE_PORT0 + (int)i, CALLER_BIND,
		    J_SERIAL_PORTS, NULL, caller_basename(s->port_paths[i]));
#undef PLACE
	/* A shared dir is opened as the caller: sharing it gives the guest
	 * nothing the caller could not reach. */
	for (unsigned i = 0; i < s->nvolumes; i++)
		add(f->there, f->there_role, &f->nthere, ROLE_VOLUME0 + (int)i,
		    CALLER_SHARE, J_VOLUMES, s->volumes[i].host, -1);
}

static void
ops_close(struct caller_op *ops, size_t n)
{
	for (size_t i = 0; i < n; i++)
		caller_op_close(&ops[i]);
}

/* Removes a directory tree capsuled made, if it is still the one. */
static void
remove_made_tree(int dfd, const char *name, const struct caller_ident *id)
{
	struct caller_ident now;
	int r;

	if (dfd < 0 || name == NULL || caller_ident_at(dfd, name, &now,
	    NULL) < 0 || !caller_ident_same(&now, id))
		return;
	if ((r = rmtree_at(dfd, name)) < 0)
		log_warn("cannot remove %s: %s", name, strerror(-r));
}

/* Removes what the `here` ops made: the private and public dirs and all
 * in them. */
static void
here_undo(struct vm_files *f)
{
	for (size_t i = 0; i < f->nhere; i++) {
		struct caller_op *p = &f->here[i];

		if (p->kind == CALLER_DIR && p->created)
			remove_made_tree(p->dir_fd, caller_basename(p->path),
			    &p->id);
	}
	ops_close(f->here, f->nhere);
	f->nhere = 0;
}

/* Removes what the `there` ops made, as caller.c would have. */
static void
there_undo(struct vm_files *f)
{
	for (size_t i = f->nthere; i-- > 0;) {
		struct caller_op *op = &f->there[i];
		struct caller_made m;

		if ((op->kind == CALLER_CREATE || op->kind == CALLER_BIND ||
		    (op->kind == CALLER_DIR && op->created)) &&
		    caller_made_take(&m, f->there, i) == 0)
			caller_made_remove(&m);
	}
	ops_close(f->there, f->nthere);
	f->nthere = 0;
}

static int
image_error(const struct caller_op *op, struct cap_err *err)
{
	return cap_err_wrap(err, "%s %s", op->field, op->path);
}

/* Moves op results into their places; checks the images. */
static int
files_take(struct vm_files *f, struct caller_op *ops, int *roles, size_t n,
    int there, struct cap_err *err)
{
	int r;

	for (size_t i = 0; i < n; i++) {
		struct caller_op *op = &ops[i];

		switch (roles[i]) {
		case ROLE_PRIVATE:
			f->private_fd = TAKE_FD(op->fd);
			break;
		case ROLE_PUBLIC:
			break;
		case ROLE_KERNEL:
			if ((r = f->hv->check_kernel(f->arch, op->head,
			    op->head_len, err)) < 0)
				return image_error(op, err);
			f->kernel = TAKE_FD(op->fd);
			break;
		case ROLE_INITRD:
			if ((r = vmfiles_check_initrd(op->head, op->head_len,
			    err)) < 0)
				return image_error(op, err);
			f->initrd = TAKE_FD(op->fd);
			break;
		case ROLE_ROOTFS:
			if ((r = vmfiles_check_rootfs(op->head, op->head_len,
			    err)) < 0)
				return image_error(op, err);
			f->rootfs = TAKE_FD(op->fd);
			break;
		case ROLE_RUN_DIR:
			break;
		case ROLE_CONSOLE:
			f->console = TAKE_FD(op->fd);
			break;
		case ROLE_PROXY:
			f->proxy = TAKE_FD(op->fd);
			break;
		default:
			if (roles[i] >= ROLE_VOLUME0)
				f->volumes[roles[i] - ROLE_VOLUME0] =
				    TAKE_FD(op->fd);
			else
				f->ports[roles[i] - ROLE_PORT0] =
				    TAKE_FD(op->fd);
			break;
		}
	}
	if (!there)
		return 0;
	/* What the caller's side made goes when the VM does, in reverse
	 * order (files before the run dir holding them); a console log the
	 * caller named is the caller's and stays. */
	for (size_t i = n; i-- > 0;) {
		struct caller_op *op = &ops[i];
		int named_log = roles[i] == ROLE_CONSOLE && op->at < 0;

		if (op->kind == CALLER_READ || op->kind == CALLER_SHARE ||
		    named_log ||
		    (op->kind == CALLER_DIR && !op->created))
			continue;
		if (caller_made_take(&f->made[f->nmade], ops, i) < 0)
			return cap_err_set(err, ENOMEM, E_INTERNAL,
			    "out of memory");
		f->nmade++;
	}
	return 0;
}

static void
files_fail(struct vm_files *f, const struct cap_err *err)
{
	there_undo(f);
	here_undo(f);
	vmfiles_release(f);
	f->done(f, err, f->arg);
}

static void
files_finish(struct vm_files *f)
{
	struct cap_err err;

	if (files_take(f, f->here, f->here_role, f->nhere, 0, &err) < 0 ||
	    files_take(f, f->there, f->there_role, f->nthere, 1, &err) < 0) {
		files_fail(f, &err);
		return;
	}
	/* The private and public dirs are removed by name in their
	 * parents, if they are still the ones made here. */
	for (size_t i = 0; i < f->nhere; i++) {
		struct caller_made *m = f->here_role[i] == ROLE_PRIVATE ?
		    &f->private_dir : f->here_role[i] == ROLE_PUBLIC ?
		    &f->public_dir : NULL;

		if (m != NULL && caller_made_take(m, f->here, i) < 0) {
			cap_err_set(&err, ENOMEM, E_INTERNAL, "out of memory");
			files_fail(f, &err);
			return;
		}
	}
	ops_close(f->here, f->nhere);
	ops_close(f->there, f->nthere);
	f->nhere = f->nthere = 0;
	f->done(f, NULL, f->arg);
}

static void
there_done(struct caller_op *ops, size_t n, const struct cap_err *err,
    void *arg)
{
	struct vm_files *f = arg;

	f->job = NULL;
	if (err != NULL) {
		here_undo(f);
		vmfiles_release(f);
		f->done(f, err, f->arg);
		return;
	}
	files_finish(f);
}

static void
deferred_cb(evutil_socket_t fd, short what, void *arg)
{
	files_finish(arg);
}

int
vmfiles_open(struct vm_files *f, struct event_base *base,
    const struct vm_spec *spec, const struct caller *who,
    const struct hv_ops *hv, vmfiles_done_fn *done, void *arg,
    struct cap_err *err)
{
	int r;

	files_init(f);
	f->hv = hv;
	f->arch = spec->arch;
	f->done = done;
	f->arg = arg;
	files_plan(f, spec, who);
	if ((r = caller_run_here(f->here, f->nhere, err)) < 0) {
		f->nhere = 0;
		return r;
	}
	if (!f->here[0].created) {
		here_undo(f);
		return cap_err_set(err, EEXIST, E_CONFLICT, "the VM's private "
		    "directory %s already exists", spec->private_dir);
	}
	if (f->nthere == 0) {
		/* Report from the loop, as when a child does the work. */
		struct timeval now = { 0, 0 };

		f->defer = evtimer_new(base, deferred_cb, f);
		if (f->defer == NULL || evtimer_add(f->defer, &now) < 0) {
			here_undo(f);
			return cap_err_set(err, ENOMEM, E_INTERNAL,
			    "out of memory");
		}
		return 0;
	}
	f->job = caller_run(base, who, f->there, f->nthere, there_done, f,
	    err);
	if (f->job == NULL) {
		here_undo(f);
		return -EIO;
	}
	return 0;
}

void
vmfiles_cancel(struct vm_files *f)
{
	if (f->job != NULL) {
		caller_cancel(f->job);
		f->job = NULL;
		f->nthere = 0;
	}
	if (f->defer != NULL) {
		event_free(f->defer);
		f->defer = NULL;
	}
	there_undo(f);
	here_undo(f);
	vmfiles_release(f);
}

/* What the VM's process was handed, and the deferred step. */
static void
vmfiles_close_fds(struct vm_files *f)
{
	if (f->defer != NULL) {
		event_free(f->defer);
		f->defer = NULL;
	}
	closep(&f->kernel);
	closep(&f->initrd);
	closep(&f->rootfs);
	closep(&f->console);
	closep(&f->proxy);
	for (size_t i = 0; i < CTL_MAX_SERIAL_PORTS; i++)
		closep(&f->ports[i]);
	for (size_t i = 0; i < VOLUME_MAX; i++)
		closep(&f->volumes[i]);
}

void
vmfiles_release(struct vm_files *f)
{
	vmfiles_close_fds(f);
	for (size_t i = 0; i < f->nmade; i++) {
		int r = caller_made_remove(&f->made[i]);

		if (r == -ENOTEMPTY)
			log_info("left %s/%s in place: it is not empty",
			    f->made[i].dir_path ? f->made[i].dir_path : "",
			    f->made[i].name ? f->made[i].name : "");
		else if (r < 0 && r != -EBADF)
			log_warn("cannot remove a file capsule made: %s",
			    strerror(-r));
	}
	f->nmade = 0;
	closep(&f->private_fd);
	remove_made_tree(f->public_dir.dir_fd, f->public_dir.name,
	    &f->public_dir.id);
	caller_made_free(&f->public_dir);
	remove_made_tree(f->private_dir.dir_fd, f->private_dir.name,
	    &f->private_dir.id);
	caller_made_free(&f->private_dir);
}

void
vmfiles_close(struct vm_files *f)
{
	vmfiles_close_fds(f);
	for (size_t i = 0; i < f->nmade; i++)
		caller_made_free(&f->made[i]);
	f->nmade = 0;
	closep(&f->private_fd);
	caller_made_free(&f->public_dir);
	caller_made_free(&f->private_dir);
}

/* m describes dir/name in dfd as it is now. */
static int
made_here(struct caller_made *m, int dfd, const char *dir, const char *name)
{
	memset(m, 0, sizeof(*m));
	m->dir_fd = -1;
	m->type = S_IFDIR;
	if (caller_ident_at(dfd, name, &m->id, NULL) < 0)
		return -errno;
	m->dir_fd = fcntl(dfd, F_DUPFD_CLOEXEC, 0);
	m->dir_path = strdup(dir);
	m->name = strdup(name);
	if (m->dir_fd < 0 || m->dir_path == NULL || m->name == NULL) {
		caller_made_free(m);
		return -ENOMEM;
	}
	return 0;
}

int
vmfiles_adopt(struct vm_files *f, int private_fd, int vms_fd, int run_fd,
    const char *vm_id, int public, struct caller_made *made, size_t nmade)
{
	int r;

	files_init(f);
	f->private_fd = private_fd;
	if ((r = made_here(&f->private_dir, vms_fd, VMSPEC_PRIVATE,
	    vm_id)) < 0)
		return r;
	if (public && (r = made_here(&f->public_dir, run_fd, VMSPEC_PUBLIC,
	    vm_id)) < 0)
		return r;
	for (size_t i = 0; i < nmade && i < VMFILES_MAX; i++) {
		f->made[f->nmade++] = made[i];
		memset(&made[i], 0, sizeof(made[i]));
		made[i].dir_fd = -1;
	}
	return 0;
}
