/*
 * user.c — who a command runs as: "name", "uid", "name:group", "uid:gid"
 * and mixed forms, looked up in the guest's /etc/passwd and /etc/group.
 *
 * The agent is static, so getpwnam() and friends (NSS) are out; the files
 * are parsed here, as docker and runc do. Only the files count: a name
 * that only LDAP knows is unknown to us.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE	/* pipe2, ptsname_r, signalfd: CMake defines it too */
#endif
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent.h"

#define USER_PASSWD	"/etc/passwd"
#define USER_GROUP	"/etc/group"
#define USER_SPEC_MAX	256	/* of the request's user in messages */

void
user_free(struct user *u)
{
	free(u->name);
	free(u->home);
	free(u->groups);
	memset(u, 0, sizeof(*u));
}

/* A decimal id, 0 to 2^32-2: (uid_t)-1 means "unchanged" to the kernel. */
static int
user_parse_id(const char *s, uint32_t *id)
{
	unsigned long long v = 0;

	if (*s == '\0')
		return -EINVAL;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return -EINVAL;
		v = v * 10 + (unsigned)(*s - '0');
		if (v >= 0xffffffffULL)
			return -ERANGE;
	}
	*id = (uint32_t)v;
	return 0;
}

/* Splits a file line at ':' into at most `max` fields; returns how many. */
static int
user_fields(char *line, char **f, int max)
{
	int n = 0;

	line[strcspn(line, "\n")] = '\0';
	while (n < max && line != NULL)
		f[n++] = strsep(&line, ":");
	return n;
}

/*
 * Finds the passwd entry with this name (name != NULL) or uid. Fills
 * name, home and gid. Returns 0, -ENOENT when there is none.
 */
static int
user_passwd(const char *name, uint32_t uid, struct user *u)
{
	char *line = NULL, *f[7];
	size_t cap = 0;
	uint32_t id, gid;
	int r = -ENOENT;
	FILE *fp;

	if ((fp = fopen(USER_PASSWD, "re")) == NULL)
		return errno == ENOENT ? -ENOENT : -errno;
	while (getline(&line, &cap, fp) > 0) {
		if (user_fields(line, f, 7) < 7 ||
		    user_parse_id(f[2], &id) < 0 ||
		    user_parse_id(f[3], &gid) < 0)
			continue;
		if (name != NULL ? strcmp(f[0], name) != 0 : id != uid)
			continue;
		u->uid = id;
		u->gid = gid;
		if ((u->name = strdup(f[0])) == NULL ||
		    (u->home = strdup(f[5])) == NULL)
			r = -ENOMEM;
		else
			r = 0;
		break;
	}
	free(line);
	fclose(fp);
	return r;
}

/* Adds gid to the supplementary groups unless it is there already. */
static int
user_add_group(struct user *u, gid_t gid, size_t *cap)
{
	size_t i;
	long max = sysconf(_SC_NGROUPS_MAX);

	for (i = 0; i < u->ngroups; i++)
		if (u->groups[i] == gid)
			return 0;
	/* setgroups() would refuse more; the rest are dropped. */
	if (max > 0 && u->ngroups >= (size_t)max)
		return 0;
	if (u->ngroups == *cap) {
		size_t n = *cap ? *cap * 2 : 8;
		gid_t *g = realloc(u->groups, n * sizeof(*g));

		if (g == NULL)
			return -ENOMEM;
		u->groups = g;
		*cap = n;
	}
	u->groups[u->ngroups++] = gid;
	return 0;
}

static int
user_is_member(char *members, const char *name)
{
	char *m;

	while ((m = strsep(&members, ",")) != NULL)
		if (strcmp(m, name) == 0)
			return 1;
	return 0;
}

/*
 * One pass over /etc/group: the gid of the group named `group` (if not
 * NULL) and, if u->name is known, every group that lists it as a member.
 */
static int
user_groups(const char *group, uint32_t *gid, struct user *u)
{
	char *line = NULL, *f[4];
	size_t cap = 0, gcap = u->ngroups;
	int r = group != NULL ? -ENOENT : 0;
	uint32_t id;
	FILE *fp;

	if ((fp = fopen(USER_GROUP, "re")) == NULL)
		return errno == ENOENT ? r : -errno;
	while (getline(&line, &cap, fp) > 0) {
		if (user_fields(line, f, 4) < 4 ||
		    user_parse_id(f[2], &id) < 0)
			continue;
		if (group != NULL && r == -ENOENT && strcmp(f[0], group) == 0) {
			*gid = id;
			r = 0;
		}
		if (u->name != NULL && user_is_member(f[3], u->name) &&
		    user_add_group(u, id, &gcap) < 0) {
			r = -ENOMEM;
			break;
		}
	}
	free(line);
	fclose(fp);
	return r;
}

/*
 * Resolves the request's user into ids, supplementary groups and the
 * passwd name and home. "" leaves u->set at 0: run as the agent (root),
 * exactly as before users existed. A numeric uid need not be in
 * /etc/passwd: its gid is then the uid and it has no other groups.
 * Returns 0, or -errno with a message in err: -ENOENT for an unknown user
 * or group, -EINVAL for a malformed one.
 */
int
user_resolve(const char *spec, struct user *u, char *err, size_t errlen)
{
	char *copy, *group;
	const char *gname;
	uint32_t id, gid;
	int r;

	memset(u, 0, sizeof(*u));
	if (spec[0] == '\0')
		return 0;
	if ((copy = strdup(spec)) == NULL) {
		snprintf(err, errlen, "capsule-agent: out of memory");
		return -ENOMEM;
	}
	if ((group = strchr(copy, ':')) != NULL)
		*group++ = '\0';
	if (copy[0] == '\0' || (group != NULL && group[0] == '\0')) {
		snprintf(err, errlen, "user \"%.*s\": expected name or uid, "
		    "then optionally :group or :gid", USER_SPEC_MAX, spec);
		r = -EINVAL;
		goto out;
	}

	if ((r = user_parse_id(copy, &id)) == -ERANGE)
		goto bad_id;
	if (r == 0) {
		r = user_passwd(NULL, id, u);
		if (r == -ENOENT) {
			u->uid = id;
			u->gid = id;
			r = 0;
		}
	} else if ((r = user_passwd(copy, 0, u)) == -ENOENT) {
		snprintf(err, errlen, "user \"%.*s\": no such user in %s",
		    USER_SPEC_MAX, spec, USER_PASSWD);
		goto out;
	}
	if (r < 0)
		goto fail;

	/* A numeric group needs no lookup; the member scan is still done. */
	gid = u->gid;
	gname = NULL;
	if (group != NULL) {
		if ((r = user_parse_id(group, &gid)) == -ERANGE)
			goto bad_id;
		if (r < 0)
			gname = group;
	}
	r = user_groups(gname, &gid, u);
	/* As initgroups(3) does, the primary group is one of the groups. */
	if (r == 0 && u->name != NULL) {
		size_t gcap = u->ngroups;

		r = user_add_group(u, gid, &gcap);
	}
	if (r == -ENOENT) {
		snprintf(err, errlen, "user \"%.*s\": no such group \"%.*s\" "
		    "in %s", USER_SPEC_MAX, spec, USER_SPEC_MAX, group,
		    USER_GROUP);
		goto out;
	}
	if (r < 0)
		goto fail;
	u->gid = gid;
	u->set = 1;
	r = 0;
	goto out;

bad_id:
	snprintf(err, errlen, "user \"%.*s\": id out of range",
	    USER_SPEC_MAX, spec);
	r = -ERANGE;
	goto out;
fail:
	snprintf(err, errlen, "user \"%.*s\": %s", USER_SPEC_MAX, spec,
	    strerror(-r));
out:
	free(copy);
	if (r < 0)
		user_free(u);
	return r;
}
