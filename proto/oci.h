/*
 * oci.h — the parts of an OCI image layout capsule reads: index.json,
 * the image manifest and the image config (image-spec v1; a docker save
 * archive arrives converted by skopeo).
 *
 * Pure (jansson, no I/O): buffers in, validated values out, errors that
 * name what was wrong. An image is untrusted input: every count and
 * length is bounded and every string checked before it goes anywhere.
 */
#ifndef CAPSULE_OCI_H
#define CAPSULE_OCI_H

#include <stddef.h>

#include <jansson.h>

#include "err.h"

#define OCI_DIGEST_LEN		71	/* "sha256:" + 64 hex */
#define OCI_MAX_JSON		(4 * 1024 * 1024)	/* any one of them */
#define OCI_MAX_LAYERS		256
#define OCI_MAX_STR		4096	/* WorkingDir, User, one argv entry */

struct oci_manifest {
	char	config[OCI_DIGEST_LEN + 1];
	char	layers[OCI_MAX_LAYERS][OCI_DIGEST_LEN + 1];
	size_t	nlayers;
};

/* What an image's config says about running it; absent is NULL/0. */
struct oci_config {
	char	**env;		/* "K=V", NULL-terminated (if not NULL) */
	size_t	envc;
	char	**entrypoint, **cmd;
	size_t	entrypointc, cmdc;
	char	*working_dir;
	char	*user;
	/* rootfs.diff_ids: the uncompressed layers' digests, the same
	 * whatever format carried the image (only from the image's own
	 * config; oci_config_json leaves them out). */
	char	(*diff_ids)[OCI_DIGEST_LEN + 1];
	size_t	ndiff_ids;
};

/* Is s "sha256:" and 64 lowercase hex digits? */
int	oci_digest_ok(const char *s);
/* index.json: the one image manifest it lists (a layout capsule's own
 * skopeo wrote, so exactly one), its digest into out. */
int	oci_parse_index(const char *buf, size_t len,
	    char out[OCI_DIGEST_LEN + 1], struct cap_err *err);
/* The org.opencontainers.image.ref.name of an index's first manifest
 * (an image's own index, as a name to give it), into out; 0 if there is
 * one that fits, -1 if not. */
int	oci_index_ref_name(const char *buf, size_t len, char *out,
	    size_t outlen);
int	oci_parse_manifest(const char *buf, size_t len, struct oci_manifest *m,
	    struct cap_err *err);
int	oci_parse_config(const char *buf, size_t len, struct oci_config *c,
	    struct cap_err *err);
void	oci_config_free(struct oci_config *c);
/* As capsule keeps and reports it: {"env":[...],"working_dir":...}. */
json_t	*oci_config_json(const struct oci_config *c);
int	oci_config_from_json(json_t *o, struct oci_config *c,
	    struct cap_err *err);

#endif /* CAPSULE_OCI_H */
