/*
 * image.h — the image store: root file systems made from OCI images,
 * kept by digest, known to their owners by name.
 *
 *   <state>/images/              capsuled's own (0700)
 *     index.json                 the names: owner, name, digest; written
 *                                whole to a new file and renamed over
 *     sha256-<hex>/              one image (hex: its config digest)
 *       rootfs.ext4              the root file system, never written
 *       image.json               digest, layers, config, created_at
 *     tmp/<job>/                 imports in progress (imgimport.c);
 *                                emptied at start-up
 *   <state>/fetch/<job>/         what skopeo fetched as the caller
 *                                (the caller's, 0700); emptied at start-up
 *
 * An image's data is shared by everyone who imported it (it is content,
 * named by its digest); a name is its owner's: another uid neither sees
 * nor uses it, and a digest resolves only through one of the caller's
 * names (root sees all). An image directory appears by one rename once
 * it is complete, so a crash leaves an import absent, never half there.
 */
#ifndef CAPSULE_IMAGE_H
#define CAPSULE_IMAGE_H

#include <stdint.h>
#include <sys/types.h>

#include <jansson.h>

#include "err.h"
#include "oci.h"

#define IMAGE_DIR		"images"
#define IMAGE_FETCH_DIR		"fetch"
#define IMAGE_TMP		"tmp"
#define IMAGE_ROOTFS_FILE	"rootfs.ext4"
#define IMAGE_META		"image.json"
#define IMAGE_INDEX		"index.json"
#define IMAGE_PREFIX		"sha256-"

/* Is a running VM of uid's (0: anyone's) using the image with this
 * digest? */
typedef int image_in_use_fn(const char *digest, uid_t uid);

/* Opens the store (making it) and loads the names. */
int	image_init(const char *state_dir, image_in_use_fn *in_use,
	    struct cap_err *err);
void	image_shutdown(void);
/* The store's directories (for imgimport.c). */
int	image_store_fd(void);
int	image_fetch_fd(void);
const char *image_store_path(void);
const char *image_fetch_path(void);

/* Is name a valid image name (1-128 of [A-Za-z0-9._:/@-], not starting
 * with '-' or '.')? */
int	image_name_ok(const char *name);
/* Is s 1-max of those characters, not starting with '-' (a registry
 * reference, which skopeo parses further)? */
int	image_ref_ok(const char *s, size_t max);
/* Is the image with this digest in the store? */
int	image_have(const char *digest);
/* Does uid's name mean an image other than digest? */
int	image_name_taken(uid_t uid, const char *name, const char *digest);
/* Does uid have a name for the stored image with this digest? */
int	image_owned(uid_t uid, const char *digest);
/* An image uid has a name for with the same layers (diff_ids) and the
 * same runtime config as c, whatever format it came in: 1 and its
 * digest. */
int	image_find_same(uid_t uid, const struct oci_config *c,
	    char out[OCI_DIGEST_LEN + 1]);
/* The layers' diff_ids as image.json keeps them. */
json_t	*image_diff_ids_json(const struct oci_config *c);
/* Gives uid the name for digest (replacing what the name meant). */
int	image_name_add(uid_t uid, const char *name, const char *digest,
	    struct cap_err *err);

/* What StartVM needs of an image uid may use (ref: a name or a digest). */
struct image_use {
	char			 digest[OCI_DIGEST_LEN + 1];
	char			*rootfs;	/* absolute path */
	struct oci_config	 config;
};
int	image_resolve(uid_t uid, const char *ref, struct image_use *u,
	    struct cap_err *err);
/* The same for an image kept by digest (a sandbox's, resolved with its
 * owner's rights when it was made), whoever names it now. */
int	image_use_digest(const char *digest, struct image_use *u,
	    struct cap_err *err);
void	image_use_free(struct image_use *u);
/* Something that kept the image let go of it: it goes if nothing names
 * or uses it any more. */
void	image_release(const char *digest);
/* The config of an image by digest (a VM adopted after a restart). */
int	image_config(const char *digest, struct oci_config *c,
	    struct cap_err *err);

/* Control ops' replies (objects to merge, or errors). */
json_t	*image_list_json(uid_t uid);
/* One image by ref as uid sees it (name, digest, size, config). */
int	image_inspect(uid_t uid, const char *ref, json_t **out,
	    struct cap_err *err);
/* ImportImage's reply object for uid's name. */
json_t	*image_json(uid_t uid, const char *name, const char *digest);
/* Removes uid's name ref (or, for a digest, every name of uid's for it);
 * then the image itself if no name and no VM needs it. conflict: a
 * running VM uses it (nothing is removed). */
int	image_remove(uid_t uid, const char *ref, json_t **removed,
	    struct cap_err *err);
/* Removes every image no name refers to and no VM uses. */
int	image_prune(json_t **removed, struct cap_err *err);

#endif /* CAPSULE_IMAGE_H */
