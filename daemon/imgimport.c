/*
 * imgimport.c — making an image from a path or a registry (imgimport.h).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "image.h"
#include "imgimport.h"
#include "job.h"
#include "log.h"
#include "oci.h"
#include "proto.h"
#include "rmtree.h"
#include "util.h"

#define SKOPEO		"/usr/bin/skopeo"
#define UMOCI		"/usr/bin/umoci"
#define DU		"/usr/bin/du"
#define RM		"/bin/rm"
#define MKFS		"/sbin/mkfs.ext4"
#define TAG		"capsule"	/* the one tag of a job's layout */
#define LAYOUT		"layout"
#define BUNDLE		"bundle"
#define OUT		"out"
#define TAR_SCAN_MAX	100000		/* headers looked at to tell formats */
#define REF_MARK	"capsule-ref-name: "	/* fetch child -> daemon */
#define FETCH_TIMEOUT_S	(6 * 3600)
#define WORK_TIMEOUT_S	(2 * 3600)

enum stage { ST_FETCH, ST_VERIFY, ST_UNPACK, ST_SIZE, ST_MKFS, ST_WAIT };

struct imgimport {
	TAILQ_ENTRY(imgimport)	 entry;
	struct event_base	*base;
	struct caller		 who;
	char			*src;		/* path, or docker://ref */
	int			 pull, tls_verify;
	char			*name;
	char			 id[37];
	enum stage		 stage;
	struct job		*job;
	struct event		*guard;		/* the store's free space */
	struct imgimport	*leader;	/* ST_WAIT: for this one */
	char			 digest[OCI_DIGEST_LEN + 1];
	struct oci_config	 config;
	struct oci_manifest	 manifest;
	uint64_t		 content;	/* du of the bundle */
	int			 tmp_made, fetch_made;
	int			 named;		/* the request gave the name */
	unsigned		 lines;		/* of the fetch's output */
	struct imgimport_cbs	 cbs;
	void			*arg;
	/* for the fetch child */
	char			 home[PATH_MAX];
	char			 dest[PATH_MAX];	/* fetch/<id> */
};

static TAILQ_HEAD(, imgimport) imports = TAILQ_HEAD_INITIALIZER(imports);


/* Imports in progress: all, or uid's. */
static size_t
imp_count(int all, uid_t uid)
{
	struct imgimport *m;
	size_t n = 0;

	TAILQ_FOREACH(m, &imports, entry)
		if (all || m->who.uid == uid)
			n++;
	return n;
}

/* ---- removing a job's directories, beside the loop ---- */

/* A removal in progress: the trees an import leaves can be as large as a
 * layer makes them, so `rm -rf` (no depth limit) does it as a job. The
 * fetch dir holds what the caller put there: it is emptied as the caller
 * (root never walks it), then root removes the empty directory. */
struct sweep {
	TAILQ_ENTRY(sweep)	 entry;
	struct job		*job;
	char			 id[64];
	int			 fetch;		/* fetch/<id>, else tmp/<id> */
};

static TAILQ_HEAD(, sweep) sweeps = TAILQ_HEAD_INITIALIZER(sweeps);
static struct event_base *imp_base;

static void
sweep_done(void *arg, int status, const char *tail, int timed_out)
{
	struct sweep *s = arg;
	char how[128];

	(void)status;
	s->job = NULL;
	if (s->fetch && unlinkat(image_fetch_fd(), s->id, AT_REMOVEDIR) < 0 &&
	    errno != ENOENT) {
		job_describe(status, timed_out, how, sizeof(how));
		log_warn("images: %s/%s is left behind (rm %s: %.200s)",
		    image_fetch_path(), s->id, how, tail);
	}
	TAILQ_REMOVE(&sweeps, s, entry);
	free(s);
}

/* Removes fetch/<id> (as who) or tmp/<id> (who NULL: as the daemon). */
static void
sweep(const char *id, const struct caller *who)
{
	static const char *const envp[] = { "PATH=/usr/bin:/bin", NULL };
	struct job_opts o = { .as = who, .timeout_s = 600, .keep_fd = -1,
	    .envp = envp };
	_cleanup_free_ char *path = NULL;
	struct cap_err err;
	struct sweep *s;

	if ((s = calloc(1, sizeof(*s))) == NULL)
		return;
	snprintf(s->id, sizeof(s->id), "%s", id);
	s->fetch = who != NULL;
	path = util_strdup_printf("%s/%s/%s", who ? image_fetch_path() :
	    image_store_path(), who ? "" : IMAGE_TMP, id);
	if (path == NULL) {
		free(s);
		return;
	}
	{
		char *argv[] = { RM, "-rf", "--one-file-system", "--", path,
		    NULL };

		s->job = job_exec(imp_base, argv, &o, sweep_done, s, &err);
	}
	if (s->job == NULL) {
		log_warn("images: cannot remove %s: %s", path, err.msg);
		free(s);
		return;
	}
	TAILQ_INSERT_TAIL(&sweeps, s, entry);
}

static void
imp_clean(struct imgimport *m)
{
	if (m->fetch_made)
		sweep(m->id, &m->who);
	if (m->tmp_made)
		sweep(m->id, NULL);
	m->fetch_made = m->tmp_made = 0;
}

static void
imp_progress(struct imgimport *m, const char *stage, const char *msg)
{
	if (m->cbs.progress != NULL)
		m->cbs.progress(m->arg, stage, msg);
}

static void	imp_end(struct imgimport *m, const struct cap_err *err);

/* Frees an import nobody waits for and that has not answered (start-up
 * failures, daemon shutdown). */
static void
imp_free(struct imgimport *m)
{
	TAILQ_REMOVE(&imports, m, entry);
	if (m->guard != NULL)
		event_free(m->guard);
	job_cancel(m->job);
	free(m->src);
	free(m->name);
	oci_config_free(&m->config);
	free(m);
}

/* The import m waits for ended: m ends the same way (the leader is
 * always of m's own uid, so its words are m's to read). */
static void
imp_follow(struct imgimport *w, const struct imgimport *m,
    const struct cap_err *err)
{
	w->leader = NULL;
	if (err == NULL)
		memcpy(w->digest, m->digest, sizeof(w->digest));
	imp_end(w, err);
}

/* Answers m (naming the image for its owner if it succeeded), answers
 * those waiting for it, and frees it. Waiters never have waiters, and the
 * list is walked again after each, as each answer frees entries. */
static void
imp_end(struct imgimport *m, const struct cap_err *err)
{
	struct imgimport *w;
	struct cap_err nerr;
	json_t *img = NULL;

	/* Only a name the request gave may move to another image; one the
	 * image or its path suggested must not silently take over. */
	if (err == NULL && !m->named && image_name_taken(m->who.uid, m->name,
	    m->digest)) {
		cap_err_set(&nerr, EEXIST, E_CONFLICT, "you have an image called "
		    "\"%s\" already, and this is another one; give this one "
		    "a name (--name), or remove the other first", m->name);
		err = &nerr;
	}
	if (err == NULL && image_name_add(m->who.uid, m->name, m->digest,
	    &nerr) < 0)
		err = &nerr;
	if (err != NULL)
		log_warn("images: import of %s for uid %u failed: %s", m->src,
		    (unsigned)m->who.uid, err->msg);
	else {
		log_info("images: %s is %s for uid %u", m->name, m->digest,
		    (unsigned)m->who.uid);
		img = image_json(m->who.uid, m->name, m->digest);
	}
	for (;;) {
		TAILQ_FOREACH(w, &imports, entry)
			if (w->leader == m)
				break;
		if (w == NULL)
			break;
		imp_follow(w, m, err);
	}
	m->cbs.done(m->arg, err, img);
	imp_clean(m);
	imp_free(m);
}

static void __attribute__((format(printf, 3, 4)))
imp_failf(struct imgimport *m, const char *code, const char *fmt, ...)
{
	struct cap_err err;
	char msg[sizeof(err.msg)];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	cap_err_set(&err, EINVAL, code, "%s", msg);
	imp_end(m, &err);
}

/* A name from the image's index: a full reference (with a '/' or ':') as
 * it is, a bare tag after the name from the path; NULL if not a name. */
static char *
ref_default(const struct imgimport *m, const char *ref)
{
	char *n;

	if (strchr(ref, '/') != NULL || strchr(ref, ':') != NULL)
		n = strdup(ref);
	else
		n = util_strdup_printf("%s:%s", m->name, ref);
	if (n != NULL && !image_name_ok(n)) {
		free(n);
		n = NULL;
	}
	return n;
}

static void
imp_line(void *arg, const char *line)
{
	struct imgimport *m = arg;
	char *n;

	/* The image's ref.name, which the fetch child (not skopeo) prints
	 * first: the name, if the request gave none. */
	if (m->stage == ST_FETCH && m->lines++ == 0 && !m->pull &&
	    strncmp(line, REF_MARK, strlen(REF_MARK)) == 0) {
		line += strlen(REF_MARK);
		if (!m->named && (n = ref_default(m, line)) != NULL) {
			free(m->name);
			m->name = n;
		}
		return;
	}
	imp_progress(m, m->stage == ST_FETCH ? STAGE_FETCH :
	    m->stage == ST_UNPACK ? STAGE_UNPACK : STAGE_MKFS, line);
}

/* ---- fetch: skopeo, as the caller ---- */

/* What a regular file is, by its tar headers: "oci-archive",
 * "docker-archive", or NULL; an OCI archive's index.json into index
 * (NUL-terminated; "" if too big or absent). */
static const char *
tar_kind(int fd, char *index, size_t cap)
{
	unsigned char h[512];
	int docker = 0, oci = 0;

	for (int i = 0; i < TAR_SCAN_MAX; i++) {
		char name[101];
		unsigned long long size = 0, skip;
		const char *n = name;
		int zero = 1;

		if (read(fd, h, sizeof(h)) != (ssize_t)sizeof(h))
			break;
		for (size_t k = 0; k < sizeof(h) && zero; k++)
			zero = h[k] == 0;
		if (zero)
			break;
		if (memcmp(h + 257, "ustar", 5) != 0)
			return NULL;
		memcpy(name, h, 100);
		name[100] = '\0';
		if (strncmp(n, "./", 2) == 0)
			n += 2;
		if (strcmp(n, "oci-layout") == 0)
			oci = 1;
		if (strcmp(n, "manifest.json") == 0)
			docker = 1;
		if (h[124] & 0x80) {		/* GNU base-256 */
			for (int k = 1; k < 12; k++)
				size = size << 8 | h[124 + k];
		} else {
			for (int k = 0; k < 12 && h[124 + k] >= '0' &&
			    h[124 + k] <= '7'; k++)
				size = size * 8 + (h[124 + k] - '0');
		}
		skip = (size + 511) / 512 * 512;
		if (strcmp(n, "index.json") == 0 && size < cap && h[156] != '5') {
			ssize_t got = read(fd, index, (size_t)size);

			index[got > 0 ? got : 0] = '\0';
			skip -= got > 0 ? (unsigned long long)got : 0;
		}
		if (lseek(fd, (off_t)skip, SEEK_CUR) < 0)
			break;
		if (oci && index[0] != '\0')
			break;
	}
	return oci ? "oci-archive" : docker ? "docker-archive" : NULL;
}

/* In the fetch child, as the caller: tells what the path is, then
 * becomes skopeo. */
static int
fetch_child(void *arg)
{
	struct imgimport *m = arg;
	char src[PATH_MAX + 32], dst[PATH_MAX + 32], home[PATH_MAX + 8];
	char tmp[PATH_MAX + 8];
	char *argv[10];
	char *envp[] = { home, "PATH=/usr/bin:/bin", "TMPDIR=/var/tmp", NULL };
	static char index[256 * 1024];
	char ref[PROTO_MAX_IMAGE_NAME + 1];
	const char *kind = "oci";
	struct stat sb;
	int n = 0, fd, ifd;

	if (m->pull) {
		snprintf(src, sizeof(src), "%s", m->src);
	} else {
		if ((fd = open(m->src, O_RDONLY | O_CLOEXEC | O_NONBLOCK)) < 0 ||
		    fstat(fd, &sb) < 0) {
			dprintf(2, "%s: %s\n", m->src, strerror(errno));
			return 2;
		}
		index[0] = '\0';
		if (S_ISREG(sb.st_mode))
			kind = tar_kind(fd, index, sizeof(index));
		else if (!S_ISDIR(sb.st_mode))
			kind = NULL;
		else if ((ifd = openat(fd, "index.json", O_RDONLY |
		    O_CLOEXEC | O_NONBLOCK)) >= 0) {
			ssize_t got = read(ifd, index, sizeof(index) - 1);

			index[got > 0 ? got : 0] = '\0';
			close(ifd);
		}
		close(fd);
		/* The image's own name for itself, for the daemon (which
		 * takes it only as a default and checks it). */
		if (index[0] != '\0' && oci_index_ref_name(index, strlen(index),
		    ref, sizeof(ref)) == 0 && strchr(ref, '\n') == NULL)
			dprintf(1, REF_MARK "%s\n", ref);
		if (kind == NULL) {
			dprintf(2, "%s is neither an OCI image layout directory "
			    "nor an OCI or docker archive\n", m->src);
			return 2;
		}
		snprintf(src, sizeof(src), "%s:%s", kind, m->src);
	}
	snprintf(dst, sizeof(dst), "oci:%s/" LAYOUT ":" TAG, m->dest);
	snprintf(home, sizeof(home), "HOME=%s", m->home);
	/* skopeo unpacks an OCI archive into a temporary dir: in the job's
	 * own, so a killed fetch leaves nothing in /var/tmp. */
	snprintf(tmp, sizeof(tmp), "%s/tmp", m->dest);
	if (mkdir(tmp, 0700) < 0) {
		dprintf(2, "%s: %s\n", tmp, strerror(errno));
		return 2;
	}
	argv[n++] = SKOPEO;
	argv[n++] = "--tmpdir";
	argv[n++] = tmp;
	argv[n++] = "copy";
	if (m->pull && !m->tls_verify)
		argv[n++] = "--src-tls-verify=false";
	argv[n++] = src;
	argv[n++] = dst;
	argv[n] = NULL;
	execve(SKOPEO, argv, envp);
	dprintf(2, "cannot run %s: %s\n", SKOPEO, strerror(errno));
	return 127;
}

/* ---- verify: the layout, copied in with the daemon's rights ---- */

/* The child's fd 3 is fetch/<id>/layout, fd 4 tmp/<id>/layout. */
#define COPY_SRC	3
#define COPY_DST	4

/* Set before the copy child is forked: whose files it takes. */
static uid_t copy_uid;

/* Copies one regular file of the caller's (its own, one link: not a
 * hard link to someone else's) of at most max bytes, if the store's file
 * system keeps IMGIMPORT_RESERVE free after it. */
static int
copy_file(int sdir, int ddir, const char *name, uint64_t max)
{
	char buf[65536];
	struct statvfs vfs;
	struct stat sb;
	ssize_t n;
	int in, out, r = 0;

	in = openat(sdir, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (in < 0 || fstat(in, &sb) < 0 || !S_ISREG(sb.st_mode) ||
	    sb.st_nlink != 1 || sb.st_uid != copy_uid) {
		dprintf(2, "the fetched layout's %s is missing or not a "
		    "regular file of the caller's\n", name);
		if (in >= 0)
			close(in);
		return -1;
	}
	if ((uint64_t)sb.st_size > max) {
		dprintf(2, "the fetched layout's %s is larger than %llu "
		    "bytes\n", name, (unsigned long long)max);
		close(in);
		return -1;
	}
	if (fstatvfs(ddir, &vfs) < 0 || (uint64_t)vfs.f_bavail * vfs.f_frsize <
	    (uint64_t)sb.st_size + IMGIMPORT_RESERVE) {
		dprintf(2, "no room for the image: %s needs %lld bytes and the "
		    "store keeps %llu free\n", name, (long long)sb.st_size,
		    (unsigned long long)IMGIMPORT_RESERVE);
		close(in);
		return -1;
	}
	out = openat(ddir, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW |
	    O_CLOEXEC, 0600);
	if (out < 0) {
		dprintf(2, "cannot create %s: %s\n", name, strerror(errno));
		close(in);
		return -1;
	}
	while ((n = read(in, buf, sizeof(buf))) > 0)
		if (write(out, buf, (size_t)n) != n) {
			r = -1;
			break;
		}
	if (n < 0 || r < 0 || fsync(out) < 0) {
		dprintf(2, "cannot copy %s: %s\n", name, strerror(errno));
		r = -1;
	}
	close(in);
	close(out);
	return r;
}

static int
open_sub(int at, const char *name, int make)
{
	if (make && mkdirat(at, name, 0700) < 0)
		return -1;
	return openat(at, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW |
	    O_CLOEXEC);
}

static char	*layout_read(int lfd, const char *name, size_t *len,
		    struct cap_err *err);

/* Copies the blob with this digest; *text (if text) gets its contents. */
static int
copy_blob(int ss, int ds, int dst, const char *digest, uint64_t max,
    char **text, size_t *len)
{
	char path[96];
	struct cap_err err;

	if (copy_file(ss, ds, digest + 7, max) < 0)
		return -1;
	if (text == NULL)
		return 0;
	snprintf(path, sizeof(path), "blobs/sha256/%s", digest + 7);
	if ((*text = layout_read(dst, path, len, &err)) == NULL) {
		dprintf(2, "%s\n", err.msg);
		return -1;
	}
	return 0;
}

/* Copies in what the index leads to, and nothing else: the manifest,
 * its config and its layers, each once, within IMGIMPORT_MAX_BYTES in
 * all. (Their digests are umoci's to check.) */
static int
copy_child(void *arg)
{
	int src = COPY_SRC, dst = COPY_DST, sb, db, ss, ds;
	char mdigest[OCI_DIGEST_LEN + 1], *text = NULL;
	struct oci_manifest *man;
	struct cap_err err;
	uint64_t left = IMGIMPORT_MAX_BYTES;
	size_t len;

	(void)arg;
	if (copy_file(src, dst, "oci-layout", 4096) < 0 ||
	    copy_file(src, dst, "index.json", OCI_MAX_JSON) < 0)
		return 1;
	if ((sb = open_sub(src, "blobs", 0)) < 0 ||
	    (ss = open_sub(sb, "sha256", 0)) < 0) {
		dprintf(2, "the fetched layout has no blobs/sha256 directory\n");
		return 1;
	}
	if ((db = open_sub(dst, "blobs", 1)) < 0 ||
	    (ds = open_sub(db, "sha256", 1)) < 0) {
		dprintf(2, "cannot make blobs/sha256: %s\n", strerror(errno));
		return 1;
	}
	if ((text = layout_read(dst, "index.json", &len, &err)) == NULL ||
	    oci_parse_index(text, len, mdigest, &err) < 0) {
		dprintf(2, "%s\n", err.msg);
		return 1;
	}
	free(text);
	if ((man = malloc(sizeof(*man))) == NULL ||
	    copy_blob(ss, ds, dst, mdigest, OCI_MAX_JSON, &text, &len) < 0)
		return 1;
	if (oci_parse_manifest(text, len, man, &err) < 0) {
		dprintf(2, "%s\n", err.msg);
		return 1;
	}
	if (copy_blob(ss, ds, dst, man->config, OCI_MAX_JSON, NULL, NULL) < 0)
		return 1;
	for (size_t i = 0; i < man->nlayers; i++) {
		struct stat st;
		char path[96];

		/* A layer listed twice is copied once. */
		snprintf(path, sizeof(path), "%s", man->layers[i] + 7);
		if (fstatat(ds, path, &st, AT_SYMLINK_NOFOLLOW) == 0)
			continue;
		if (copy_blob(ss, ds, dst, man->layers[i], left, NULL,
		    NULL) < 0 || fstatat(ds, path, &st, 0) < 0)
			return 1;
		left -= (uint64_t)st.st_size;
	}
	return fsync(ds) < 0 ? 1 : 0;
}

/* ---- the steps ---- */

static void	imp_unpack(struct imgimport *m);
static void	imp_step_done(void *arg, int status, const char *tail,
		    int timed_out);

static int
imp_tmp_fd(struct imgimport *m, const char *sub)
{
	char p[128];

	snprintf(p, sizeof(p), "%s/%s%s%s", IMAGE_TMP, m->id, sub ? "/" : "",
	    sub ? sub : "");
	return openat(image_store_fd(), p, O_RDONLY | O_DIRECTORY | O_NOFOLLOW |
	    O_CLOEXEC);
}

static char *
imp_tmp_path(struct imgimport *m, const char *sub)
{
	return util_strdup_printf("%s/%s/%s/%s", image_store_path(), IMAGE_TMP,
	    m->id, sub);
}

/* While umoci or mkfs write into the store, no more than its free space
 * down to half the reserve is theirs: a layer that unpacks to more (a
 * compression bomb) ends the import, not the disk. */
static void
imp_guard_cb(evutil_socket_t fd, short what, void *arg)
{
	struct imgimport *m = arg;
	struct statvfs vfs;
	struct cap_err err;

	(void)fd;
	(void)what;
	if (m->job == NULL || fstatvfs(image_store_fd(), &vfs) < 0 ||
	    (uint64_t)vfs.f_bavail * vfs.f_frsize >= IMGIMPORT_RESERVE / 2)
		return;
	job_cancel(m->job);
	m->job = NULL;
	cap_err_set(&err, ENOSPC, E_LIMIT, "the image does not fit: the "
	    "store's file system is down to %llu MiB free while %s",
	    (unsigned long long)((uint64_t)vfs.f_bavail * vfs.f_frsize >> 20),
	    m->stage == ST_UNPACK ? "unpacking its layers" :
	    "making its root file system");
	imp_end(m, &err);
}

static void
imp_run(struct imgimport *m, enum stage stage, char *const argv[],
    job_fn *fn, const struct job_opts *o)
{
	struct timeval second = { 1, 0 };
	struct cap_err err;

	if (stage >= ST_UNPACK && m->guard == NULL &&
	    ((m->guard = event_new(m->base, -1, EV_PERSIST, imp_guard_cb,
	    m)) == NULL || event_add(m->guard, &second) < 0)) {
		cap_err_set(&err, ENOMEM, E_INTERNAL, "out of memory");
		imp_end(m, &err);
		return;
	}
	m->stage = stage;
	if (fn != NULL)
		m->job = job_fork(m->base, fn, NULL, o, imp_step_done, m, &err);
	else
		m->job = job_exec(m->base, argv, o, imp_step_done, m, &err);
	if (m->job == NULL)
		imp_end(m, &err);
}

/* Reads a file of the job's layout (bounded) into a new buffer. */
static char *
layout_read(int lfd, const char *name, size_t *len, struct cap_err *err)
{
	struct stat sb;
	char *buf;
	ssize_t n;
	int fd;

	fd = openat(lfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode)) {
		cap_err_set(err, ENOENT, E_INVALID_ARGUMENT, "the image has no "
		    "%s", name);
		if (fd >= 0)
			close(fd);
		return NULL;
	}
	if (sb.st_size > OCI_MAX_JSON) {
		close(fd);
		cap_err_set(err, EFBIG, E_INVALID_ARGUMENT, "the image's %s is "
		    "larger than %d bytes", name, OCI_MAX_JSON);
		return NULL;
	}
	buf = malloc((size_t)sb.st_size + 1);
	n = buf ? read(fd, buf, (size_t)sb.st_size) : -1;
	close(fd);
	if (n != sb.st_size) {
		free(buf);
		cap_err_set(err, EIO, E_INTERNAL, "cannot read the image's %s",
		    name);
		return NULL;
	}
	buf[n] = '\0';
	*len = (size_t)n;
	return buf;
}

static char *
blob_name(const char *digest)
{
	return util_strdup_printf("blobs/sha256/%s", digest + 7);
}

/* The copied layout's index, manifest and config. */
static int
imp_read_layout(struct imgimport *m, struct cap_err *err)
{
	_cleanup_close_ int lfd = imp_tmp_fd(m, LAYOUT);
	_cleanup_free_ char *index = NULL, *man = NULL, *cfg = NULL;
	_cleanup_free_ char *mname = NULL, *cname = NULL;
	char mdigest[OCI_DIGEST_LEN + 1];
	size_t len;
	int r;

	if (lfd < 0)
		return cap_err_set(err, errno, E_INTERNAL, "the job's layout: "
		    "%s", strerror(errno));
	if ((index = layout_read(lfd, "index.json", &len, err)) == NULL)
		return -EINVAL;
	if ((r = oci_parse_index(index, len, mdigest, err)) < 0)
		return r;
	if ((mname = blob_name(mdigest)) == NULL)
		return cap_err_set(err, ENOMEM, E_INTERNAL, "out of memory");
	if ((man = layout_read(lfd, mname, &len, err)) == NULL)
		return -EINVAL;
	if ((r = oci_parse_manifest(man, len, &m->manifest, err)) < 0)
		return r;
	if ((cname = blob_name(m->manifest.config)) == NULL)
		return cap_err_set(err, ENOMEM, E_INTERNAL, "out of memory");
	if ((cfg = layout_read(lfd, cname, &len, err)) == NULL)
		return -EINVAL;
	if ((r = oci_parse_config(cfg, len, &m->config, err)) < 0)
		return r;
	memcpy(m->digest, m->manifest.config, sizeof(m->digest));
	return 0;
}

/* Another import making the same image, past its verify step. */
static struct imgimport *
imp_maker(const struct imgimport *m)
{
	struct imgimport *o;

	TAILQ_FOREACH(o, &imports, entry)
		if (o != m && o->leader == NULL && o->stage > ST_VERIFY &&
		    o->stage != ST_WAIT && o->who.uid == m->who.uid &&
		    strcmp(o->digest, m->digest) == 0)
			return o;
	return NULL;
}

static int
imp_has_waiters(const struct imgimport *m)
{
	struct imgimport *w;

	TAILQ_FOREACH(w, &imports, entry)
		if (w->leader == m)
			return 1;
	return 0;
}

static void
imp_verified(struct imgimport *m)
{
	struct imgimport *o;
	struct cap_err err;

	sweep(m->id, &m->who);
	m->fetch_made = 0;
	if (imp_read_layout(m, &err) < 0) {
		imp_end(m, &err);
		return;
	}
	imp_progress(m, STAGE_VERIFY, m->digest);
	/* Nothing is checked against its digest yet (umoci does that): a
	 * layout that only claims an image proves nothing. So shortcuts are
	 * taken only to images the caller has already (by digest, or the
	 * same layers and config from another format: a docker archive's
	 * config is not an OCI one) and to imports of its own; anyone else
	 * unpacks, and a stored image it turns out to be is shared then. */
	if (image_owned(m->who.uid, m->digest) ||
	    image_find_same(m->who.uid, &m->config, m->digest)) {
		imp_end(m, NULL);
		return;
	}
	if (!imp_has_waiters(m) && (o = imp_maker(m)) != NULL) {
		log_info("images: %s is being made already; waiting for it",
		    m->digest);
		m->stage = ST_WAIT;
		m->leader = o;
		imp_clean(m);
		return;
	}
	imp_unpack(m);
}

static void
imp_unpack(struct imgimport *m)
{
	_cleanup_free_ char *image = NULL, *bundle = NULL;
	char *argv[7];
	static const char *const envp[] = { "PATH=/usr/bin:/bin",
	    "TMPDIR=/var/tmp", NULL };
	struct job_opts o = { .timeout_s = WORK_TIMEOUT_S,
	    .fsize_max = IMGIMPORT_MAX_BYTES, .keep_fd = -1, .envp = envp,
	    .line = imp_line };
	int n = 0;

	image = imp_tmp_path(m, LAYOUT ":" TAG);
	bundle = imp_tmp_path(m, BUNDLE);
	if (image == NULL || bundle == NULL) {
		imp_failf(m, E_INTERNAL, "out of memory");
		return;
	}
	imp_progress(m, STAGE_UNPACK, "applying layers");
	argv[n++] = UMOCI;
	argv[n++] = "unpack";
	if (geteuid() != 0)
		argv[n++] = "--rootless";
	argv[n++] = "--image";
	argv[n++] = image;
	argv[n++] = bundle;
	argv[n] = NULL;
	imp_run(m, ST_UNPACK, argv, NULL, &o);
}

static void
imp_size_line(void *arg, const char *line)
{
	struct imgimport *m = arg;

	if (m->content == 0)
		m->content = strtoull(line, NULL, 10);
}

static void
imp_size(struct imgimport *m)
{
	_cleanup_free_ char *rootfs = imp_tmp_path(m, BUNDLE "/rootfs");
	char *argv[] = { DU, "-s", "-B1", "-x", rootfs, NULL };
	struct job_opts o = { .timeout_s = WORK_TIMEOUT_S, .keep_fd = -1,
	    .line = imp_size_line };

	if (rootfs == NULL) {
		imp_failf(m, E_INTERNAL, "out of memory");
		return;
	}
	imp_run(m, ST_SIZE, argv, NULL, &o);
}

static void
imp_mkfs(struct imgimport *m)
{
	_cleanup_free_ char *rootfs = imp_tmp_path(m, BUNDLE "/rootfs");
	_cleanup_free_ char *file = imp_tmp_path(m, OUT "/" IMAGE_ROOTFS_FILE);
	_cleanup_close_ int tfd = imp_tmp_fd(m, NULL);
	uint64_t bytes = m->content + m->content / 4 + (512ULL << 20);
	char size[32];
	char *argv[] = { MKFS, "-q", "-F", "-t", "ext4", "-i", "8192",
	    "-J", "size=16", "-L", "capsule-root", "-d", rootfs, file, size,
	    NULL };
	struct job_opts o = { .timeout_s = WORK_TIMEOUT_S, .keep_fd = -1,
	    .fsize_max = IMGIMPORT_MAX_BYTES + (1ULL << 30), .line = imp_line };

	if (rootfs == NULL || file == NULL || tfd < 0 ||
	    mkdirat(tfd, OUT, 0700) < 0) {
		imp_failf(m, E_INTERNAL, "cannot make the image's directory: "
		    "%s", strerror(errno));
		return;
	}
	if (bytes < IMGIMPORT_DISK_MIN)
		bytes = IMGIMPORT_DISK_MIN;
	if (bytes > IMGIMPORT_MAX_BYTES) {
		imp_failf(m, E_LIMIT, "the image needs more than %llu GiB",
		    (unsigned long long)(IMGIMPORT_MAX_BYTES >> 30));
		return;
	}
	snprintf(size, sizeof(size), "%lluk",
	    (unsigned long long)(bytes >> 10));
	imp_progress(m, STAGE_MKFS, "making the root file system");
	imp_run(m, ST_MKFS, argv, NULL, &o);
}

/* out/ gets image.json and becomes sha256-<hex>; the rest goes. */
static int
imp_commit(struct imgimport *m, struct cap_err *err)
{
	_cleanup_close_ int ofd = imp_tmp_fd(m, OUT);
	json_t *meta, *layers = json_array();
	char from[128], to[OCI_DIGEST_LEN + 1];
	char *text;
	size_t len;
	int fd, ok;

	for (size_t i = 0; i < m->manifest.nlayers; i++)
		json_array_append_new(layers,
		    json_string(m->manifest.layers[i]));
	meta = json_pack("{s:s,s:o,s:o,s:o,s:I,s:I}", J_DIGEST, m->digest,
	    J_CONFIG, oci_config_json(&m->config), "layers", layers,
	    J_DIFF_IDS, image_diff_ids_json(&m->config),
	    J_CREATED_AT, (json_int_t)time(NULL), "content_bytes",
	    (json_int_t)m->content);
	text = meta ? json_dumps(meta, JSON_INDENT(1)) : NULL;
	json_decref(meta);
	if (text == NULL || ofd < 0)
		return cap_err_set(err, ENOMEM, E_INTERNAL, "cannot describe "
		    "the image");
	len = strlen(text);
	fd = openat(ofd, IMAGE_META, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW |
	    O_CLOEXEC, 0600);
	ok = fd >= 0 && write(fd, text, len) == (ssize_t)len && fsync(fd) == 0;
	free(text);
	if (fd >= 0)
		close(fd);
	if (!ok || fsync(ofd) < 0)
		return cap_err_set(err, errno ? errno : EIO, E_INTERNAL,
		    "cannot write the image's %s", IMAGE_META);
	snprintf(from, sizeof(from), "%s/%s/%s", IMAGE_TMP, m->id, OUT);
	snprintf(to, sizeof(to), "%s%s", IMAGE_PREFIX, m->digest + 7);
	/* The same image stored meanwhile (by another user: umoci checked
	 * both against the same digests): that one is kept. */
	if (renameat(image_store_fd(), from, image_store_fd(), to) < 0 &&
	    errno != EEXIST && errno != ENOTEMPTY)
		return cap_err_set(err, errno, E_INTERNAL, "cannot store the "
		    "image: %s", strerror(errno));
	fsync(image_store_fd());
	return 0;
}

static void
imp_step_done(void *arg, int status, const char *tail, int timed_out)
{
	struct imgimport *m = arg;
	struct cap_err err;
	char how[128];

	m->job = NULL;
	if (timed_out || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		job_describe(status, timed_out, how, sizeof(how));
		switch (m->stage) {
		case ST_FETCH:
			cap_err_set(&err, EINVAL, E_INVALID_ARGUMENT,
			    "cannot %s %s: skopeo %s: %.700s", m->pull ?
			    "pull" : "read the image at", m->src, how, tail);
			break;
		case ST_VERIFY:
			cap_err_set(&err, EINVAL, E_INVALID_ARGUMENT,
			    "the image fetched from %s is not a usable OCI "
			    "layout: %.700s", m->src, tail);
			break;
		case ST_UNPACK:
			cap_err_set(&err, EINVAL, E_INVALID_ARGUMENT,
			    "cannot unpack the layers of %s (umoci %s): "
			    "%.700s", m->src, how, tail);
			break;
		default:
			cap_err_set(&err, EIO, E_INTERNAL, "cannot make the "
			    "root file system of %s (%s %s): %.700s", m->src,
			    m->stage == ST_SIZE ? "du" : "mkfs.ext4", how,
			    tail);
			break;
		}
		imp_end(m, &err);
		return;
	}
	switch (m->stage) {
	case ST_FETCH: {
		struct job_opts o = { .timeout_s = WORK_TIMEOUT_S,
		    .fsize_max = IMGIMPORT_MAX_BYTES };
		_cleanup_close_ int dst = -1, src = -1;
		char p[128];

		snprintf(p, sizeof(p), "%s/" LAYOUT, m->id);
		src = openat(image_fetch_fd(), p, O_RDONLY | O_DIRECTORY |
		    O_NOFOLLOW | O_CLOEXEC);
		dst = imp_tmp_fd(m, NULL);
		if (src < 0 || dst < 0 || mkdirat(dst, LAYOUT, 0700) < 0) {
			imp_failf(m, E_INVALID_ARGUMENT, "skopeo left no image "
			    "layout for %s%s", m->src, "");
			return;
		}
		closep(&dst);
		dst = imp_tmp_fd(m, LAYOUT);
		imp_progress(m, STAGE_VERIFY, "copying the fetched image in");
		o.keep_fd = src;
		o.keep_fd2 = dst;
		copy_uid = m->who.uid;
		imp_run(m, ST_VERIFY, NULL, copy_child, &o);
		return;
	}
	case ST_VERIFY:
		imp_verified(m);
		return;
	case ST_UNPACK:
		imp_size(m);
		return;
	case ST_SIZE:
		imp_mkfs(m);
		return;
	case ST_MKFS:
		if (imp_commit(m, &err) < 0) {
			imp_end(m, &err);
			return;
		}
		imp_end(m, NULL);
		return;
	case ST_WAIT:
		return;
	}
}

/* ---- starting ---- */

/* The name an import gets unless told: the reference, or the path's last
 * component without ".tar". */
static char *
default_name(const struct imgimport_req *r)
{
	const char *b;
	char *n;
	size_t len;

	if (r->ref != NULL)
		return strdup(strncmp(r->ref, "docker://", 9) == 0 ?
		    r->ref + 9 : r->ref);
	len = strlen(r->path);
	while (len > 1 && r->path[len - 1] == '/')
		len--;
	for (b = r->path + len; b > r->path && b[-1] != '/'; b--)
		;
	len -= (size_t)(b - r->path);
	if (len > 4 && strncmp(b + len - 4, ".tar", 4) == 0)
		len -= 4;
	if ((n = malloc(len + 1)) == NULL)
		return NULL;
	memcpy(n, b, len);
	n[len] = '\0';
	return n;
}

static int
check_req(const struct imgimport_req *r, struct cap_err *err)
{
	char shown[160];

	if (r->path != NULL) {
		cap_show(r->path, strlen(r->path), shown, sizeof(shown));
		if (r->path[0] != '/')
			return cap_err_set(err, EINVAL, E_INVALID_ARGUMENT,
			    "path \"%s\" is not absolute", shown);
		if (strchr(r->path, ':') != NULL || strlen(r->path) >= 2048)
			return cap_err_set(err, EINVAL, E_INVALID_ARGUMENT,
			    "path \"%s\" holds a ':' (skopeo would take it for "
			    "a tag) or is too long", shown);
	} else {
		const char *ref = strncmp(r->ref, "docker://", 9) == 0 ?
		    r->ref + 9 : r->ref;

		cap_show(r->ref, strlen(r->ref), shown, sizeof(shown));
		if (!image_ref_ok(ref, 512))
			return cap_err_set(err, EINVAL, E_INVALID_ARGUMENT,
			    "ref \"%s\" is not an image reference like "
			    "registry.example/name:tag", shown);
	}
	if (r->name != NULL && !image_name_ok(r->name)) {
		cap_show(r->name, strlen(r->name), shown, sizeof(shown));
		return cap_err_set(err, EINVAL, E_INVALID_ARGUMENT, "name \"%s\" "
		    "is not an image name: 1-%d of A-Z a-z 0-9 . _ : / @ -, "
		    "not starting with - or .", shown, PROTO_MAX_IMAGE_NAME);
	}
	return 0;
}

int
imgimport_start(struct event_base *base, const struct imgimport_req *r,
    const struct imgimport_cbs *cbs, void *arg, struct cap_err *err)
{
	struct job_opts o = { .timeout_s = FETCH_TIMEOUT_S,
	    .fsize_max = IMGIMPORT_MAX_BYTES, .keep_fd = -1, .line = imp_line };
	struct imgimport *m, *o2;
	struct passwd *pw;
	char shown[160];
	int r2;

	if ((r2 = check_req(r, err)) < 0)
		return r2;
	if (imp_count(1, 0) >= IMGIMPORT_MAX)
		return cap_err_set(err, EAGAIN, E_LIMIT, "%d imports are in "
		    "progress already; try again when one is done",
		    IMGIMPORT_MAX);
	if (imp_count(0, r->who->uid) >= IMGIMPORT_MAX_PER_UID)
		return cap_err_set(err, EAGAIN, E_LIMIT, "you have %d imports "
		    "in progress already; try again when one is done",
		    IMGIMPORT_MAX_PER_UID);
	if ((m = calloc(1, sizeof(*m))) == NULL)
		return cap_err_set(err, ENOMEM, E_INTERNAL, "out of memory");
	TAILQ_INSERT_TAIL(&imports, m, entry);
	m->base = base;
	m->who = *r->who;
	m->pull = r->ref != NULL;
	m->tls_verify = r->tls_verify;
	m->cbs = *cbs;
	m->arg = arg;
	util_uuid(m->id);
	if (m->pull)
		m->src = strncmp(r->ref, "docker://", 9) == 0 ? strdup(r->ref) :
		    util_strdup_printf("docker://%s", r->ref);
	else
		m->src = strdup(r->path);
	m->name = r->name ? strdup(r->name) : default_name(r);
	m->named = r->name != NULL;
	if (m->src == NULL || m->name == NULL) {
		imp_free(m);
		return cap_err_set(err, ENOMEM, E_INTERNAL, "out of memory");
	}
	if (!image_name_ok(m->name)) {
		cap_show(m->name, strlen(m->name), shown, sizeof(shown));
		imp_free(m);
		return cap_err_set(err, EINVAL, E_INVALID_ARGUMENT, "\"%s\" is "
		    "not an image name; pass one (--name)", shown);
	}
	/* The same uid asking for the same source waits for the first. */
	TAILQ_FOREACH(o2, &imports, entry)
		if (o2 != m && o2->leader == NULL && o2->who.uid == m->who.uid &&
		    o2->tls_verify == m->tls_verify &&
		    strcmp(o2->src, m->src) == 0) {
			m->stage = ST_WAIT;
			m->leader = o2;
			log_info("images: %s for uid %u is in progress; waiting",
			    m->src, (unsigned)m->who.uid);
			return 0;
		}
	/* The fetch dir is the caller's; the job's tmp dir the daemon's. */
	{
		char p[64];

		snprintf(p, sizeof(p), "%s/%s", IMAGE_TMP, m->id);
		if (mkdirat(image_store_fd(), p, 0700) < 0) {
			r2 = cap_err_set(err, errno, E_INTERNAL, "cannot make "
			    "the import's directory: %s", strerror(errno));
			imp_free(m);
			return r2;
		}
		m->tmp_made = 1;
		if (mkdirat(image_fetch_fd(), m->id, 0700) < 0 ||
		    fchownat(image_fetch_fd(), m->id, m->who.uid, m->who.gid,
		    AT_SYMLINK_NOFOLLOW) < 0) {
			r2 = cap_err_set(err, errno, E_INTERNAL, "cannot make "
			    "the fetch directory: %s", strerror(errno));
			imp_clean(m);
			imp_free(m);
			return r2;
		}
		m->fetch_made = 1;
	}
	snprintf(m->dest, sizeof(m->dest), "%s/%s", image_fetch_path(), m->id);
	pw = getpwuid(m->who.uid);
	snprintf(m->home, sizeof(m->home), "%s", pw && pw->pw_dir ?
	    pw->pw_dir : "/nonexistent");
	o.as = &m->who;
	log_info("images: %s %s for uid %u as %s", m->pull ? "pulling" :
	    "importing", m->src, (unsigned)m->who.uid, m->name);
	imp_progress(m, STAGE_FETCH, m->src);
	m->stage = ST_FETCH;
	m->job = job_fork(base, fetch_child, m, &o, imp_step_done, m, err);
	if (m->job == NULL) {
		r2 = -EIO;
		imp_clean(m);
		imp_free(m);
		return r2;
	}
	return 0;
}

/* What a previous daemon's imports left: each tmp/<id> goes as the
 * daemon, each fetch/<id> as the uid that owns it. */
static void
sweep_dir(int dfd, int fetch)
{
	struct dirent *de;
	struct caller who;
	struct stat sb;
	DIR *d;
	int fd;

	if ((fd = openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0 ||
	    (d = fdopendir(fd)) == NULL) {
		if (fd >= 0)
			close(fd);
		return;
	}
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.' || fstatat(dfd, de->d_name, &sb,
		    AT_SYMLINK_NOFOLLOW) < 0 || !S_ISDIR(sb.st_mode))
			continue;
		log_info("images: removing %s/%s, left by an import that did "
		    "not finish", fetch ? image_fetch_path() :
		    image_store_path(), de->d_name);
		memset(&who, 0, sizeof(who));
		who.uid = sb.st_uid;
		who.gid = sb.st_gid;
		sweep(de->d_name, fetch ? &who : NULL);
	}
	closedir(d);
}

void
imgimport_init(struct event_base *base)
{
	int tfd;

	imp_base = base;
	sweep_dir(image_fetch_fd(), 1);
	if ((tfd = openat(image_store_fd(), IMAGE_TMP, O_RDONLY | O_DIRECTORY |
	    O_NOFOLLOW | O_CLOEXEC)) >= 0) {
		sweep_dir(tfd, 0);
		close(tfd);
	}
}

void
imgimport_shutdown(void)
{
	struct sweep *s;

	struct imgimport *m;

	/* What they leave, the next start removes. */
	while ((m = TAILQ_FIRST(&imports)) != NULL)
		imp_free(m);
	while ((s = TAILQ_FIRST(&sweeps)) != NULL) {
		TAILQ_REMOVE(&sweeps, s, entry);
		job_cancel(s->job);
		free(s);
	}
}
