/*
 * share.c — the guest side of shared folders: each capsule.vol=TAG,MODE,PATH
 * on the kernel command line is a virtiofs file system (its server runs on
 * the host, see hv/vfsd.h) to mount at PATH, read-only if MODE is "ro".
 * The host checked PATH (proto/volume.h) and enforces a read-only share
 * itself: the "ro" here only makes the guest say EROFS early.
 */
#include <errno.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>

#include "agent.h"

#define SHARE_CMDLINE_MAX	4096
#define SHARE_KEY		"capsule.vol="
#define SHARE_MODULES		"/etc/capsule/modules-vol"

/* Calls fn for each capsule.vol token; returns how many there were. */
static int
share_each(void (*fn)(char *tag, int ro, char *path))
{
	char buf[SHARE_CMDLINE_MAX], *tok, *save = NULL;
	int n = 0;

	if (init_read_file("/proc/cmdline", buf, sizeof(buf)) < 0)
		return 0;
	for (tok = strtok_r(buf, " \t\n", &save); tok;
	    tok = strtok_r(NULL, " \t\n", &save)) {
		char *tag, *mode, *path;

		if (strncmp(tok, SHARE_KEY, strlen(SHARE_KEY)) != 0)
			continue;
		tag = tok + strlen(SHARE_KEY);
		if ((mode = strchr(tag, ',')) == NULL ||
		    (path = strchr(mode + 1, ',')) == NULL || path[1] != '/') {
			agent_log("%s: not TAG,MODE,PATH", tok);
			continue;
		}
		*mode++ = '\0';
		*path++ = '\0';
		n++;
		if (fn != NULL)
			fn(tag, strcmp(mode, "ro") == 0, path);
	}
	return n;
}

/* mkdir -p, as root in the guest's own root file system. */
static int
share_mkdirs(char *path)
{
	for (char *p = path + 1; ; p++) {
		if (*p != '/' && *p != '\0')
			continue;
		char c = *p;

		*p = '\0';
		if (mkdir(path, 0755) < 0 && errno != EEXIST) {
			*p = c;
			return -errno;
		}
		*p = c;
		if (c == '\0')
			return 0;
	}
}

static void
share_mount(char *tag, int ro, char *path)
{
	int r;

	if ((r = share_mkdirs(path)) < 0) {
		agent_log("shared folder %s: mkdir %s: %s", tag, path,
		    strerror(-r));
		return;
	}
	if (mount(tag, path, "virtiofs", MS_NOSUID | MS_NODEV |
	    (ro ? MS_RDONLY : 0), NULL) < 0)
		agent_log("shared folder %s: mount on %s: %s", tag, path,
		    strerror(errno));
}

void
share_modules(void)
{
	if (share_each(NULL) > 0)
		init_modules(SHARE_MODULES);
}

void
share_mount_all(void)
{
	share_each(share_mount);
}
