/*
 * paths.c — default locations (see paths.h).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "paths.h"
#include "proto.h"

static int
join(char *buf, size_t len, const char *a, const char *b)
{
	if (snprintf(buf, len, "%s/%s", a, b) >= (int)len)
		return -ENAMETOOLONG;
	return 0;
}

int
paths_default_state_dir(char *buf, size_t len, struct cap_err *err)
{
	const char *base = getenv("XDG_STATE_HOME"), *home = getenv("HOME");
	int r;

	if (geteuid() == 0)
		r = snprintf(buf, len, "/var/lib/capsule");
	else if (base != NULL && base[0] == '/')
		r = snprintf(buf, len, "%s/capsule", base);
	else if (home != NULL && home[0] == '/')
		r = snprintf(buf, len, "%s/.local/state/capsule", home);
	else
		return cap_err_set(err, ENOENT, E_INVALID_ARGUMENT,
		    "HOME is not set; pass --state-dir DIR");
	if (r >= (int)len)
		return cap_err_set(err, ENAMETOOLONG, E_INVALID_ARGUMENT,
		    "state directory path is too long");
	return 0;
}

static int
has_image(const char *dir)
{
	static const char *const files[] = { IMAGE_KERNEL, IMAGE_INITRD,
	    IMAGE_ROOTFS };
	char p[PATH_MAX];

	for (size_t i = 0; i < 3; i++)
		if (join(p, sizeof(p), dir, files[i]) < 0 ||
		    access(p, R_OK) != 0)
			return 0;
	return 1;
}

int
paths_find_image_dir(const char *override, enum ctl_arch arch, char *dir,
    size_t len, struct cap_err *err)
{
	char cand[8][PATH_MAX], looked[2048] = "", sub[32] = "";
	const char *v, *home = getenv("HOME");
	size_t n = 0, used = 0;

	if (arch != CTL_ARCH_DEFAULT && arch != ctl_arch_host())
		snprintf(sub, sizeof(sub), "/%s", ctl_arch_name(arch));

	if (override != NULL)
		snprintf(cand[n++], PATH_MAX, "%s", override);
	if ((v = getenv("CAPSULE_IMAGE_DIR")) != NULL && v[0] == '/')
		snprintf(cand[n++], PATH_MAX, "%s", v);
	if ((v = getenv("XDG_DATA_HOME")) != NULL && v[0] == '/')
		snprintf(cand[n++], PATH_MAX, "%s/capsule", v);
	else if (home != NULL && home[0] == '/')
		snprintf(cand[n++], PATH_MAX, "%s/.local/share/capsule", home);
	v = getenv("XDG_DATA_DIRS");
	if (v == NULL || v[0] == '\0')
		v = "/usr/local/share:/usr/share";
	while (*v != '\0' && n < 6) {
		size_t l = strcspn(v, ":");

		if (l > 0 && v[0] == '/')
			snprintf(cand[n++], PATH_MAX, "%.*s/capsule", (int)l, v);
		v += l + (v[l] == ':');
	}
	snprintf(cand[n++], PATH_MAX, "%s", CAPSULE_INSTALL_DATADIR);
	snprintf(cand[n++], PATH_MAX, "%s", CAPSULE_BUILD_IMAGE_DIR);
	for (size_t i = 0; i < n; i++) {
		size_t l = strlen(cand[i]);

		if (snprintf(cand[i] + l, PATH_MAX - l, "%s", sub) >=
		    (int)(PATH_MAX - l))
			continue;
		if (has_image(cand[i])) {
			if (snprintf(dir, len, "%s", cand[i]) >= (int)len)
				break;
			return 0;
		}
		if (used < sizeof(looked) - 1) {
			int w = snprintf(looked + used, sizeof(looked) - used,
			    "%s%s", used ? ", " : "", cand[i]);
			if (w > 0)
				used += (size_t)w;
		}
	}
	return cap_err_set(err, ENOENT, E_UNAVAILABLE,
	    "no %s guest image (%s, %s, %s) found in: %s; build it with "
	    "`cmake --build build --target image%s%s` or pass kernel_path and "
	    "rootfs_path", ctl_arch_name(arch), IMAGE_KERNEL, IMAGE_INITRD,
	    IMAGE_ROOTFS, looked, sub[0] ? "-" : "", sub[0] ? sub + 1 : "");
}
