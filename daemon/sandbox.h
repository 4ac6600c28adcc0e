/*
 * sandbox.h — named sandboxes that persist: a VM configuration and a
 * writable disk that outlive the VMs started from them and capsuled
 * itself.
 *
 * A sandbox lives in <state>/sandboxes/<id>/ (mode 0700, capsuled's own):
 * sandbox.json, its record (written whole and renamed, so a torn write
 * leaves the old one), and disk.img, the VM's upper layer (disk.h). The
 * record keeps the StartVM fields it was created with (the image as its
 * digest, so a name moved later does not change what the disk was written
 * over) and is read back at start-up as untrusted input; one that does not
 * validate is reported and left alone. A sandbox is made in
 * .creating-<id> and renamed into place whole, and renamed to
 * .removing-<id> before it is deleted: start-up removes what it finds
 * under those names, and nothing else.
 *
 * Names are unique per owner. Only the owner starts a sandbox; root sees
 * and removes everyone's. At most one VM runs from a sandbox at a time
 * (the VM's spec names the sandbox's id; vm.c is asked which is active).
 */
#ifndef CAPSULE_SANDBOX_H
#define CAPSULE_SANDBOX_H

#include <sys/types.h>

#include <jansson.h>

#include "caller.h"
#include "err.h"
#include "oci.h"

#define SANDBOX_DIR		"sandboxes"
#define SANDBOX_RECORD		"sandbox.json"
#define SANDBOX_FORMAT		1
#define SANDBOX_MAX_NAME	64
#define SANDBOX_MAX		4096	/* on this host */
#define SANDBOX_MAX_PER_UID	256

struct sandbox;

/* Is a VM running from the sandbox with this id? Its vm_id, or NULL;
 * and if so its state's name in *state. */
typedef const char *sandbox_vm_fn(const char *id, const char **state);
/* The image a sandbox is created with: resolves a name or digest the
 * caller may use into its digest (image.h). */
typedef int sandbox_image_fn(uid_t uid, const char *ref,
    char digest[OCI_DIGEST_LEN + 1], struct cap_err *err);

int	sandbox_init(const char *state_dir, sandbox_vm_fn *vm_of,
	    sandbox_image_fn *image_of, struct cap_err *err);
void	sandbox_shutdown(void);

/* 1-64 of A-Z a-z 0-9 . _ -, not starting with . or -. */
int	sandbox_name_ok(const char *s);

/* CreateSandbox: req is the request (op, id, name and StartVM's fields;
 * already checked by ctl_parse_start as a StartVM). */
int	sandbox_create(const struct caller *who, json_t *req, json_t **out,
	    struct cap_err *err);
/* A sandbox uid may see, by name (its own) or id (root: anyone's). */
struct sandbox *sandbox_find(uid_t uid, const char *ref);
struct sandbox *sandbox_by_id(const char *id);
const char *sandbox_id(const struct sandbox *sb);
const char *sandbox_name(const struct sandbox *sb);
uid_t	sandbox_owner(const struct sandbox *sb);
/* The StartVM request that starts it (a new reference). */
json_t	*sandbox_start_request(const struct sandbox *sb);
/* Its disk, opened read-write for a VM. */
int	sandbox_open_disk(const struct sandbox *sb, struct cap_err *err);
/* RemoveSandbox: refused (conflict) while a VM runs from it. */
int	sandbox_remove(uid_t uid, const char *ref, json_t **out,
	    struct cap_err *err);
json_t	*sandbox_json(const struct sandbox *sb);
json_t	*sandbox_list_json(uid_t uid);
/* Bytes its disk takes on the host now (0 if it cannot be read). */
uint64_t sandbox_disk_used(const struct sandbox *s);
/* The sizes of uid's sandboxes' disks, MiB. */
uint64_t sandbox_disk_total(uid_t uid);
/* Does a sandbox of uid's (uid 0: anyone's) keep this image? */
int	sandbox_image_in_use(const char *digest, uid_t uid);

#endif /* CAPSULE_SANDBOX_H */
