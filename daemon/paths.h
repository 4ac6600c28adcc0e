/*
 * paths.h — where capsuled keeps things, and where it finds the guest image.
 *
 *   control socket  /run/capsule/capsuled.sock (root)
 *                   $XDG_RUNTIME_DIR/capsule/capsuled.sock (others)
 *   state dir       /var/lib/capsule (root), $XDG_STATE_HOME/capsule
 *   private dirs    <state dir>/vms/<vm_id>/ (mode 0700, capsuled's own)
 *   guest image     vmlinuz, initramfs.img, rootfs.ext4 in the first of:
 *                   --image-dir, $CAPSULE_IMAGE_DIR, $XDG_DATA_HOME/capsule,
 *                   $XDG_DATA_DIRS/capsule, the install datadir, the build
 *                   tree's image/ directory.
 */
#ifndef CAPSULE_PATHS_H
#define CAPSULE_PATHS_H

#include <limits.h>
#include <stddef.h>

#include "ctl.h"
#include "err.h"

#define IMAGE_KERNEL	"vmlinuz"
#define IMAGE_INITRD	"initramfs.img"
#define IMAGE_ROOTFS	"rootfs.ext4"

int	paths_default_state_dir(char *buf, size_t len, struct cap_err *err);
/* Fills dir with the first directory holding all three image files for
 * `arch`; the error lists where it looked. `override` (may be NULL) comes
 * first. The host's architecture's image lies in an image directory
 * itself, another's in its subdirectory named after the architecture
 * (e.g. build/image/aarch64). */
int	paths_find_image_dir(const char *override, enum ctl_arch arch,
	    char *dir, size_t len,
	    struct cap_err *err);

#endif /* CAPSULE_PATHS_H */
