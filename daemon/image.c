/*
 * image.c — the image store (see image.h).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "image.h"
#include "log.h"
#include "proto.h"
#include "rmtree.h"
#include "util.h"

#define IMAGE_MAX_NAMES		16384
#define IMAGE_MAX_NAMES_PER_UID	1024

struct name {
	uid_t		 owner;
	char		 name[PROTO_MAX_IMAGE_NAME + 1];
	char		 digest[OCI_DIGEST_LEN + 1];
	long long	 created_at;
};

static struct {
	char		 dir[PATH_MAX];		/* <state>/images */
	char		 fetch[PATH_MAX];	/* <state>/fetch */
	int		 fd;			/* its fd */
	int		 fetch_fd;		/* <state>/fetch */
	struct name	*names;
	size_t		 nnames;
	image_in_use_fn	*in_use;
} st = { .fd = -1, .fetch_fd = -1 };

int
image_store_fd(void)
{
	return st.fd;
}

int
image_fetch_fd(void)
{
	return st.fetch_fd;
}

const char *
image_store_path(void)
{
	return st.dir;
}

const char *
image_fetch_path(void)
{
	return st.fetch;
}

int
image_ref_ok(const char *s, size_t max)
{
	size_t n = strlen(s);

	if (n == 0 || n > max || s[0] == '-')
		return 0;
	for (; *s != '\0'; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		    (*s >= '0' && *s <= '9') || strchr("._:/@-", *s) != NULL))
			return 0;
	return 1;
}

int
image_name_ok(const char *s)
{
	return s[0] != '.' && image_ref_ok(s, PROTO_MAX_IMAGE_NAME);
}

/* "sha256:<hex>" -> "sha256-<hex>" */
static void
digest_dir(const char *digest, char out[OCI_DIGEST_LEN + 1])
{
	snprintf(out, OCI_DIGEST_LEN + 1, IMAGE_PREFIX "%s", digest + 7);
}

int
image_have(const char *digest)
{
	char d[OCI_DIGEST_LEN + 1];
	struct stat sb;

	if (!oci_digest_ok(digest))
		return 0;
	digest_dir(digest, d);
	return fstatat(st.fd, d, &sb, AT_SYMLINK_NOFOLLOW) == 0 &&
	    S_ISDIR(sb.st_mode);
}

/* ---- the names, kept in index.json ---- */

static int
names_save(struct cap_err *err)
{
	json_t *a = json_array();
	char *text;
	int r = 0;

	for (size_t i = 0; i < st.nnames; i++)
		json_array_append_new(a, json_pack("{s:I,s:s,s:s,s:I}",
		    J_OWNER_UID, (json_int_t)st.names[i].owner, J_NAME,
		    st.names[i].name, J_DIGEST, st.names[i].digest,
		    J_CREATED_AT, (json_int_t)st.names[i].created_at));
	text = json_dumps(a, JSON_INDENT(1));
	json_decref(a);
	if (text == NULL)
		return cap_err_set(err, ENOMEM, E_INTERNAL, "out of memory");
	if ((r = util_write_atomic(st.fd, IMAGE_INDEX, text,
	    strlen(text))) < 0)
		r = cap_err_set(err, -r, E_INTERNAL, "cannot write %s/%s: %s",
		    st.dir, IMAGE_INDEX, strerror(-r));
	free(text);
	return r;
}

static void
names_load(void)
{
	json_error_t je;
	json_t *a, *e;
	size_t i;
	int fd;

	if ((fd = openat(st.fd, IMAGE_INDEX, O_RDONLY | O_NOFOLLOW |
	    O_CLOEXEC)) < 0) {
		if (errno != ENOENT)
			log_warn("images: %s/%s: %s", st.dir, IMAGE_INDEX,
			    strerror(errno));
		return;
	}
	a = json_loadfd(fd, JSON_REJECT_DUPLICATES, &je);
	close(fd);
	if (!json_is_array(a)) {
		log_warn("images: %s/%s is not a list of names (%s); no image "
		    "has a name now", st.dir, IMAGE_INDEX, je.text);
		json_decref(a);
		return;
	}
	st.names = calloc(json_array_size(a) + 1, sizeof(*st.names));
	if (st.names == NULL) {
		json_decref(a);
		return;
	}
	json_array_foreach(a, i, e) {
		json_int_t uid = json_integer_value(json_object_get(e,
		    J_OWNER_UID));
		const char *n = json_string_value(json_object_get(e, J_NAME));
		const char *d = json_string_value(json_object_get(e, J_DIGEST));
		struct name *x = &st.names[st.nnames];

		if (n == NULL || d == NULL || uid < 0 || uid > 0x7fffffff ||
		    !image_name_ok(n) || !oci_digest_ok(d) || !image_have(d) ||
		    st.nnames >= IMAGE_MAX_NAMES) {
			log_warn("images: entry %zu of %s is not valid or names "
			    "a missing image; dropped", i, IMAGE_INDEX);
			continue;
		}
		x->owner = (uid_t)uid;
		snprintf(x->name, sizeof(x->name), "%s", n);
		memcpy(x->digest, d, sizeof(x->digest));
		x->created_at = json_integer_value(json_object_get(e,
		    J_CREATED_AT));
		st.nnames++;
	}
	json_decref(a);
}

static struct name *
name_find(uid_t uid, const char *name)
{
	for (size_t i = 0; i < st.nnames; i++)
		if (st.names[i].owner == uid &&
		    strcmp(st.names[i].name, name) == 0)
			return &st.names[i];
	return NULL;
}

static int
digest_named(const char *digest)
{
	for (size_t i = 0; i < st.nnames; i++)
		if (strcmp(st.names[i].digest, digest) == 0)
			return 1;
	return 0;
}

int
image_name_add(uid_t uid, const char *name, const char *digest,
    struct cap_err *err)
{
	struct name *n = name_find(uid, name), *grown;

	if (n == NULL) {
		size_t mine = 0;

		for (size_t i = 0; i < st.nnames; i++)
			mine += st.names[i].owner == uid;
		if (mine >= IMAGE_MAX_NAMES_PER_UID)
			return cap_err_set(err, ENOSPC, E_LIMIT, "you have %d "
			    "image names; remove some first",
			    IMAGE_MAX_NAMES_PER_UID);
		if (st.nnames >= IMAGE_MAX_NAMES)
			return cap_err_set(err, ENOSPC, E_LIMIT, "capsuled "
			    "keeps at most %d image names", IMAGE_MAX_NAMES);
		grown = realloc(st.names, (st.nnames + 1) * sizeof(*grown));
		if (grown == NULL)
			return cap_err_set(err, ENOMEM, E_INTERNAL,
			    "out of memory");
		st.names = grown;
		n = &st.names[st.nnames++];
		memset(n, 0, sizeof(*n));
		n->owner = uid;
		snprintf(n->name, sizeof(n->name), "%s", name);
	}
	memcpy(n->digest, digest, sizeof(n->digest));
	n->created_at = (long long)time(NULL);
	return names_save(err);
}

/* The digest uid means by ref: one of its names, or a digest (or its
 * first 12+ hex digits) one of its names refers to. */
static const char *
ref_digest(uid_t uid, const char *ref)
{
	struct name *n;
	size_t len = strlen(ref);
	const char *hex = strncmp(ref, "sha256:", 7) == 0 ? ref + 7 : ref;

	if ((n = name_find(uid, ref)) != NULL)
		return n->digest;
	if (len > OCI_DIGEST_LEN || strlen(hex) < 12)
		return NULL;
	for (size_t i = 0; i < st.nnames; i++)
		if ((uid == 0 || st.names[i].owner == uid) &&
		    strncmp(st.names[i].digest + 7, hex, strlen(hex)) == 0)
			return st.names[i].digest;
	return NULL;
}

static int
unknown(const char *ref, struct cap_err *err)
{
	char shown[160];

	cap_show(ref, strlen(ref), shown, sizeof(shown));
	return cap_err_set(err, ENOENT, E_NOT_FOUND, "no image \"%s\" (see "
	    "capsule image ls)", shown);
}

/* ---- one image's metadata ---- */

static json_t *
meta_load(const char *digest, struct cap_err *err)
{
	char d[OCI_DIGEST_LEN + 1], path[OCI_DIGEST_LEN + 32];
	json_error_t je;
	json_t *m;
	int fd;

	digest_dir(digest, d);
	snprintf(path, sizeof(path), "%s/%s", d, IMAGE_META);
	if ((fd = openat(st.fd, path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)) < 0) {
		cap_err_set(err, errno, E_INTERNAL, "image %.19s: %s: %s",
		    digest, IMAGE_META, strerror(errno));
		return NULL;
	}
	m = json_loadfd(fd, JSON_REJECT_DUPLICATES, &je);
	close(fd);
	if (!json_is_object(m)) {
		json_decref(m);
		cap_err_set(err, EINVAL, E_INTERNAL, "image %.19s: %s is not "
		    "valid: %s", digest, IMAGE_META, je.text);
		return NULL;
	}
	return m;
}

static uint64_t
rootfs_bytes(const char *digest)
{
	char d[OCI_DIGEST_LEN + 1], path[OCI_DIGEST_LEN + 32];
	struct stat sb;

	digest_dir(digest, d);
	snprintf(path, sizeof(path), "%s/%s", d, IMAGE_ROOTFS_FILE);
	if (fstatat(st.fd, path, &sb, AT_SYMLINK_NOFOLLOW) < 0)
		return 0;
	return (uint64_t)sb.st_blocks * 512;
}

int
image_config(const char *digest, struct oci_config *c, struct cap_err *err)
{
	json_t *m = meta_load(digest, err);
	int r;

	memset(c, 0, sizeof(*c));
	if (m == NULL)
		return -EINVAL;
	r = oci_config_from_json(json_object_get(m, J_CONFIG), c, err);
	json_decref(m);
	return r;
}

static json_t *
describe(const struct name *n, const char *digest)
{
	json_t *o = json_object(), *m, *names;
	struct cap_err err;

	if (n != NULL) {
		json_object_set_new(o, J_NAME, json_string(n->name));
		json_object_set_new(o, J_OWNER_UID,
		    json_integer((json_int_t)n->owner));
		json_object_set_new(o, J_CREATED_AT,
		    json_integer(n->created_at));
	}
	json_object_set_new(o, J_DIGEST, json_string(digest));
	json_object_set_new(o, J_SIZE,
	    json_integer((json_int_t)rootfs_bytes(digest)));
	if ((m = meta_load(digest, &err)) != NULL) {
		json_object_set(o, J_CONFIG, json_object_get(m, J_CONFIG));
		json_decref(m);
	}
	names = json_array();
	if (n != NULL)
		for (size_t i = 0; i < st.nnames; i++)
			if (st.names[i].owner == n->owner &&
			    strcmp(st.names[i].digest, digest) == 0)
				json_array_append_new(names,
				    json_string(st.names[i].name));
	json_object_set_new(o, J_NAMES, names);
	return o;
}

json_t *
image_json(uid_t uid, const char *name, const char *digest)
{
	return describe(name_find(uid, name), digest);
}

json_t *
image_list_json(uid_t uid)
{
	json_t *a = json_array();

	for (size_t i = 0; i < st.nnames; i++)
		if (uid == 0 || st.names[i].owner == uid)
			json_array_append_new(a, describe(&st.names[i],
			    st.names[i].digest));
	return a;
}

int
image_inspect(uid_t uid, const char *ref, json_t **out, struct cap_err *err)
{
	const char *d = ref_digest(uid, ref);
	struct name *n;

	if (d == NULL)
		return unknown(ref, err);
	if ((n = name_find(uid, ref)) == NULL)
		for (size_t i = 0; i < st.nnames && n == NULL; i++)
			if (strcmp(st.names[i].digest, d) == 0 &&
			    (uid == 0 || st.names[i].owner == uid))
				n = &st.names[i];
	*out = describe(n, d);
	return 0;
}

int
image_resolve(uid_t uid, const char *ref, struct image_use *u,
    struct cap_err *err)
{
	const char *d = ref_digest(uid, ref);

	memset(u, 0, sizeof(*u));
	if (d == NULL)
		return unknown(ref, err);
	return image_use_digest(d, u, err);
}

int
image_use_digest(const char *d, struct image_use *u, struct cap_err *err)
{
	char dir[OCI_DIGEST_LEN + 1];
	int r;

	memset(u, 0, sizeof(*u));
	if (!image_have(d))
		return cap_err_set(err, ENOENT, E_NOT_FOUND, "image %.80s is no "
		    "longer in the store", d);
	memcpy(u->digest, d, sizeof(u->digest));
	digest_dir(d, dir);
	u->rootfs = util_strdup_printf("%s/%s/%s", st.dir, dir,
	    IMAGE_ROOTFS_FILE);
	if (u->rootfs == NULL)
		return cap_err_set(err, ENOMEM, E_INTERNAL, "out of memory");
	if ((r = image_config(d, &u->config, err)) < 0) {
		image_use_free(u);
		return r;
	}
	return 0;
}

void
image_use_free(struct image_use *u)
{
	free(u->rootfs);
	oci_config_free(&u->config);
	memset(u, 0, sizeof(*u));
}

json_t *
image_diff_ids_json(const struct oci_config *c)
{
	json_t *a = json_array();

	for (size_t i = 0; i < c->ndiff_ids; i++)
		json_array_append_new(a, json_string(c->diff_ids[i]));
	return a;
}

int
image_name_taken(uid_t uid, const char *name, const char *digest)
{
	struct name *n = name_find(uid, name);

	return n != NULL && strcmp(n->digest, digest) != 0;
}

int
image_owned(uid_t uid, const char *digest)
{
	for (size_t i = 0; i < st.nnames; i++)
		if (st.names[i].owner == uid &&
		    strcmp(st.names[i].digest, digest) == 0)
			return image_have(digest);
	return 0;
}

int
image_find_same(uid_t uid, const struct oci_config *c,
    char out[OCI_DIGEST_LEN + 1])
{
	json_t *ids = image_diff_ids_json(c), *cfg = oci_config_json(c), *m;
	struct dirent *de;
	struct cap_err err;
	char digest[OCI_DIGEST_LEN + 1];
	int fd, found = 0;
	DIR *dir;

	if ((fd = openat(st.fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0 ||
	    (dir = fdopendir(fd)) == NULL) {
		if (fd >= 0)
			close(fd);
		json_decref(ids);
		json_decref(cfg);
		return 0;
	}
	while (!found && (de = readdir(dir)) != NULL) {
		if (strncmp(de->d_name, IMAGE_PREFIX,
		    strlen(IMAGE_PREFIX)) != 0)
			continue;
		snprintf(digest, sizeof(digest), "sha256:%s",
		    de->d_name + strlen(IMAGE_PREFIX));
		if (!oci_digest_ok(digest) || !image_owned(uid, digest) ||
		    (m = meta_load(digest, &err)) == NULL)
			continue;
		found = json_equal(json_object_get(m, J_DIFF_IDS), ids) &&
		    json_equal(json_object_get(m, J_CONFIG), cfg);
		json_decref(m);
	}
	closedir(dir);
	json_decref(ids);
	json_decref(cfg);
	if (found)
		memcpy(out, digest, OCI_DIGEST_LEN + 1);
	return found;
}

/* ---- removing ---- */

/* Removes the image itself if nothing needs it; 1 if it did. */
static int
drop_if_unused(const char *digest)
{
	char d[OCI_DIGEST_LEN + 1];
	int r;

	if (digest_named(digest) || st.in_use(digest, 0))
		return 0;
	digest_dir(digest, d);
	if ((r = rmtree_at(st.fd, d)) < 0) {
		log_warn("images: cannot remove %s/%s: %s", st.dir, d,
		    strerror(-r));
		return 0;
	}
	log_info("images: removed %s", digest);
	return 1;
}

int
image_remove(uid_t uid, const char *ref, json_t **removed,
    struct cap_err *err)
{
	const char *d0 = ref_digest(uid, ref);
	char digest[OCI_DIGEST_LEN + 1];
	int by_name;
	size_t i;

	if (d0 == NULL)
		return unknown(ref, err);
	memcpy(digest, d0, sizeof(digest));
	by_name = name_find(uid, ref) != NULL;
	/* Your VM uses it: say so. Another user's VM keeps the data, but
	 * your names are yours to remove. */
	if (st.in_use(digest, uid))
		return cap_err_set(err, EBUSY, E_CONFLICT, "image %s (%.19s) is "
		    "in use by a running VM or a sandbox of yours; stop or "
		    "remove it first", ref, digest);
	*removed = json_array();
	for (i = 0; i < st.nnames;) {
		struct name *n = &st.names[i];

		if ((n->owner == uid || (uid == 0 && !by_name)) &&
		    strcmp(n->digest, digest) == 0 &&
		    (!by_name || strcmp(n->name, ref) == 0)) {
			json_array_append_new(*removed, json_string(n->name));
			st.names[i] = st.names[--st.nnames];
		} else
			i++;
	}
	if (names_save(err) < 0) {
		json_decref(*removed);
		*removed = NULL;
		return -EIO;
	}
	drop_if_unused(digest);
	return 0;
}

void
image_release(const char *digest)
{
	if (oci_digest_ok(digest))
		drop_if_unused(digest);
}

int
image_prune(json_t **removed, struct cap_err *err)
{
	struct dirent *de;
	char digest[OCI_DIGEST_LEN + 1];
	DIR *dir;
	int fd;

	*removed = json_array();
	if (st.fd < 0)
		return 0;	/* no store: nothing to prune */
	if ((fd = openat(st.fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0 ||
	    (dir = fdopendir(fd)) == NULL) {
		if (fd >= 0)
			close(fd);
		json_decref(*removed);
		*removed = NULL;
		return cap_err_set(err, errno, E_INTERNAL, "%s: %s", st.dir,
		    strerror(errno));
	}
	while ((de = readdir(dir)) != NULL) {
		if (strncmp(de->d_name, IMAGE_PREFIX,
		    strlen(IMAGE_PREFIX)) != 0)
			continue;
		snprintf(digest, sizeof(digest), "sha256:%s",
		    de->d_name + strlen(IMAGE_PREFIX));
		if (oci_digest_ok(digest) && drop_if_unused(digest))
			json_array_append_new(*removed, json_string(digest));
	}
	closedir(dir);
	return 0;
}

/* ---- start-up ---- */

/* The directory name in at (made if missing): capsuled's own, mode mode. */
static int
open_dir(int at, const char *name, unsigned mode, struct cap_err *err)
{
	struct stat sb;
	int fd;

	if (mkdirat(at, name, mode) < 0 && errno != EEXIST)
		return cap_err_set(err, errno, E_INTERNAL, "cannot make %s: %s",
		    name, strerror(errno));
	fd = openat(at, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return cap_err_set(err, errno, E_INTERNAL, "cannot open %s: %s",
		    name, strerror(errno));
	if (fstat(fd, &sb) < 0 || sb.st_uid != geteuid() ||
	    fchmod(fd, mode) < 0) {
		close(fd);
		return cap_err_set(err, EPERM, E_INTERNAL, "%s is not "
		    "capsuled's own directory", name);
	}
	return fd;
}

int
image_init(const char *state_dir, image_in_use_fn *in_use,
    struct cap_err *err)
{
	int sfd;

	st.in_use = in_use;
	snprintf(st.dir, sizeof(st.dir), "%s/%s", state_dir, IMAGE_DIR);
	snprintf(st.fetch, sizeof(st.fetch), "%s/%s", state_dir,
	    IMAGE_FETCH_DIR);
	if ((sfd = open(state_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
		return cap_err_set(err, errno, E_INTERNAL, "%s: %s", state_dir,
		    strerror(errno));
	st.fd = open_dir(sfd, IMAGE_DIR, 0700, err);
	/* Each fetch dir within is its caller's: they pass through. */
	st.fetch_fd = st.fd < 0 ? -1 : open_dir(sfd, IMAGE_FETCH_DIR, 0711,
	    err);
	close(sfd);
	if (st.fd < 0 || st.fetch_fd < 0 || (mkdirat(st.fd, IMAGE_TMP, 0700) <
	    0 && errno != EEXIST && cap_err_set(err, errno, E_INTERNAL,
	    "cannot make %s/%s: %s", st.dir, IMAGE_TMP, strerror(errno)))) {
		image_shutdown();
		return -EPERM;
	}
	/* What imports a previous daemon left unfinished is removed by
	 * imgimport_init, beside the loop. */
	/* Earlier builds wrote index.json by way of this name. */
	unlinkat(st.fd, IMAGE_INDEX ".new", 0);
	names_load();
	return 0;
}

void
image_shutdown(void)
{
	closep(&st.fd);
	closep(&st.fetch_fd);
	free(st.names);
	st.names = NULL;
	st.nnames = 0;
}
