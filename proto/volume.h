/*
 * volume.h — shared folders: a host directory seen in the guest at a path
 * (StartVM "volumes", `capsule run --volume HOST:GUEST[:ro]`).
 *
 * On the wire a volume is {"host": "/abs/dir", "guest": "/abs/path",
 * "read_only": false}. The guest path goes to the guest's agent on the
 * kernel command line, so it is kept plain: absolute, at most
 * VOLUME_MAX_GUEST bytes of printable ASCII without spaces, ',' ':' or
 * '\', no "." or ".." component, no empty component, and not "/" or
 * anything under /proc, /sys or /dev (the agent's own mounts).
 *
 * Pure: no I/O.
 */
#ifndef CAPSULE_VOLUME_H
#define CAPSULE_VOLUME_H

#include <jansson.h>

#include "err.h"

#define VOLUME_MAX		8
#define VOLUME_MAX_GUEST	200

struct volume {
	char	*host;		/* absolute */
	char	*guest;		/* absolute, checked as above */
	int	 ro;
};

/* "volumes" (absent or null: none) into out[0..*n); errors name the entry.
 * On failure nothing is held. */
int	volume_parse_json(json_t *v, struct volume *out, unsigned *n,
	    struct cap_err *err);
json_t	*volume_json(const struct volume *v, unsigned n);
/* The CLI's HOST:GUEST[:ro|:rw]; HOST is taken as given (the CLI makes it
 * absolute first). */
int	volume_parse_arg(const char *s, struct volume *out,
	    struct cap_err *err);
/* NULL if the guest path is fine, else what is wrong with it. */
const char *volume_guest_problem(const char *path);
void	volume_free(struct volume *v, unsigned n);

#endif /* CAPSULE_VOLUME_H */
