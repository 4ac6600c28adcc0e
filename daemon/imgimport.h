/*
 * imgimport.h — making an image: ImportImage and PullImage.
 *
 * An import runs as a chain of jobs (job.h), each a real tool or a child
 * of capsuled's own, and reports each step to its requester:
 *
 *   fetch   skopeo copy, AS THE CALLER (its uid, gid and groups): it reads
 *           the path the caller named (an OCI layout dir, an OCI archive,
 *           a docker save archive) or pulls the reference over the network
 *           with the caller's rights, into <state>/fetch/<job>/layout, a
 *           directory the caller owns.
 *   verify  a child of capsuled's copies that layout into the store's own
 *           <state>/images/tmp/<job>/layout, walking it with O_NOFOLLOW
 *           and taking only what a layout holds (oci-layout, index.json,
 *           blobs/sha256/<hex> regular files), so nothing the caller could
 *           change or link reaches the root-owned steps; the index,
 *           manifest and config are parsed (proto/oci.h). The config's
 *           digest names the image: if the store has it, or another
 *           import is making it, this one just waits for or takes it.
 *   unpack  umoci unpack (root: owners, modes, hard links, whiteouts;
 *           layer digests verified, paths confined to the bundle).
 *   mkfs    du, then mkfs.ext4 -d into a sparse file; image.json; one
 *           rename makes it appear in the store, then the name is added.
 *
 * A second request for the same source by the same uid while one is in
 * progress waits for it. A failure removes the job's directories; a crash
 * leaves them for the next start-up to clear (image_init).
 */
#ifndef CAPSULE_IMGIMPORT_H
#define CAPSULE_IMGIMPORT_H

#include <event2/event.h>
#include <jansson.h>

#include "caller.h"
#include "err.h"

#define IMGIMPORT_MAX		8		/* at once */
#define IMGIMPORT_MAX_PER_UID	4		/* ... for one user */
#define IMGIMPORT_MAX_BYTES	(64ULL << 30)	/* any file it writes */
#define IMGIMPORT_DISK_MIN	(256ULL << 20)	/* root fs size, sparse */
#define IMGIMPORT_RESERVE	(1ULL << 30)	/* free space an import leaves */

struct imgimport;

struct imgimport_req {
	const struct caller *who;
	const char	*path;		/* ImportImage: absolute */
	const char	*ref;		/* PullImage */
	const char	*name;		/* NULL: from the path or ref */
	int		 tls_verify;
};

struct imgimport_cbs {
	void	(*progress)(void *arg, const char *stage, const char *msg);
	/* Once: err NULL and image (the reply's object, the callee's) or
	 * err set and image NULL. */
	void	(*done)(void *arg, const struct cap_err *err, json_t *image);
};

int	imgimport_start(struct event_base *base, const struct imgimport_req *r,
	    const struct imgimport_cbs *cbs, void *arg, struct cap_err *err);
/* After image_init: removes what unfinished imports left (as jobs). */
void	imgimport_init(struct event_base *base);
/* Daemon shutdown: kills every job; no callback comes. */
void	imgimport_shutdown(void);

#endif /* CAPSULE_IMGIMPORT_H */
